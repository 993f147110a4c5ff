//! Exports checked by strict parsers written here (not by comparing with the exporter's own
//! output): SRT, WebVTT, RTTM columns, and a JSON round trip.

use asr_pipeline::export::{self, Format};
use asr_pipeline::transcript::{Metadata, Route, Source, Transcript, TranscriptSegment};

const MS: u64 = 16; // samples per millisecond at 16 kHz

/// A parsed cue: start and end in ms, speaker (if the format carries one on this cue), text
/// lines.
#[derive(Debug, PartialEq)]
struct Cue {
    start: u64,
    end: u64,
    speaker: Option<String>,
    lines: Vec<String>,
}

/// `HH:MM:SS<sep>mmm` with at least two hour digits, minutes and seconds < 60.
fn parse_clock(s: &str, sep: char) -> u64 {
    let (hms, ms) = s
        .split_once(sep)
        .unwrap_or_else(|| panic!("no {sep:?} in {s:?}"));
    assert_eq!(ms.len(), 3, "milliseconds need 3 digits: {s:?}");
    let parts: Vec<&str> = hms.split(':').collect();
    assert_eq!(parts.len(), 3, "HH:MM:SS expected: {s:?}");
    assert!(parts[0].len() >= 2, "hours need at least 2 digits: {s:?}");
    assert_eq!(parts[1].len(), 2, "{s:?}");
    assert_eq!(parts[2].len(), 2, "{s:?}");
    for p in parts.iter().chain([&ms]) {
        assert!(p.bytes().all(|b| b.is_ascii_digit()), "digits only: {s:?}");
    }
    let h: u64 = parts[0].parse().unwrap();
    let m: u64 = parts[1].parse().unwrap();
    let sec: u64 = parts[2].parse().unwrap();
    assert!(m < 60 && sec < 60, "{s:?}");
    ((h * 60 + m) * 60 + sec) * 1000 + ms.parse::<u64>().unwrap()
}

fn parse_timing(line: &str, sep: char) -> (u64, u64) {
    let (a, b) = line
        .split_once(" --> ")
        .unwrap_or_else(|| panic!("timing line expected: {line:?}"));
    let (a, b) = (parse_clock(a, sep), parse_clock(b, sep));
    assert!(b > a, "cue must have positive length: {line:?}");
    (a, b)
}

/// Strict SubRip: blocks separated by one blank line, numbered 1, 2, ...; a speaker prefix
/// `name: ` on the first line is split off when `speakers` lists the name.
fn parse_srt(s: &str, speakers: &[&str]) -> Vec<Cue> {
    let mut cues = Vec::new();
    if s.is_empty() {
        return cues;
    }
    assert!(s.ends_with("\n\n"), "last cue ends with a blank line");
    assert!(!s.contains('\r'));
    assert!(!s.contains("\n\n\n"), "exactly one blank line between cues");
    for (i, block) in s.trim_end_matches('\n').split("\n\n").enumerate() {
        let mut lines = block.lines();
        let n: usize = lines.next().unwrap().parse().expect("cue number");
        assert_eq!(n, i + 1, "cues are numbered from 1 without gaps");
        let (start, end) = parse_timing(lines.next().expect("timing"), ',');
        let mut text: Vec<String> = lines.map(str::to_string).collect();
        assert!(!text.is_empty(), "cue {n} has text");
        for l in &text {
            assert!(!l.trim().is_empty(), "no blank text line");
            assert!(!l.contains("-->"), "no arrow in text: {l:?}");
        }
        let mut speaker = None;
        for sp in speakers {
            if let Some(rest) = text[0].strip_prefix(&format!("{sp}: ")) {
                speaker = Some(sp.to_string());
                text[0] = rest.to_string();
            }
        }
        cues.push(Cue {
            start,
            end,
            speaker,
            lines: text,
        });
    }
    cues
}

fn unescape_vtt(s: &str) -> String {
    assert!(
        !s.contains('<') && !s.contains('>'),
        "raw angle bracket: {s:?}"
    );
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Strict WebVTT (the subset written): `WEBVTT`, blank line, cues of a timing line and text
/// lines, `<v name>` at the start of the first text line.
fn parse_vtt(s: &str) -> Vec<Cue> {
    let body = s
        .strip_prefix("WEBVTT\n\n")
        .expect("WEBVTT header then a blank line");
    let mut cues = Vec::new();
    if body.is_empty() {
        return cues;
    }
    assert!(body.ends_with("\n\n"));
    assert!(!body.contains("\n\n\n"));
    for block in body.trim_end_matches('\n').split("\n\n") {
        let mut lines = block.lines();
        let (start, end) = parse_timing(lines.next().unwrap(), '.');
        let mut raw: Vec<&str> = lines.collect();
        assert!(!raw.is_empty());
        let mut speaker = None;
        let first;
        if let Some(rest) = raw[0].strip_prefix("<v ") {
            let (name, text) = rest.split_once('>').expect("closing > of <v");
            speaker = Some(unescape_vtt(name));
            first = text;
            raw[0] = first;
        }
        let lines: Vec<String> = raw
            .iter()
            .map(|l| {
                assert!(!l.contains("-->"));
                assert!(!l.trim().is_empty());
                unescape_vtt(l)
            })
            .collect();
        cues.push(Cue {
            start,
            end,
            speaker,
            lines,
        });
    }
    cues
}

/// Strict RTTM: exactly ten space-separated columns per line.
fn parse_rttm(s: &str) -> Vec<(String, u64, u64, String)> {
    let mut out = Vec::new();
    for line in s.lines() {
        let c: Vec<&str> = line.split(' ').collect();
        assert_eq!(c.len(), 10, "ten columns: {line:?}");
        assert_eq!(c[0], "SPEAKER");
        assert_eq!(c[2], "1");
        for i in [5, 6, 8, 9] {
            assert_eq!(c[i], "<NA>", "{line:?}");
        }
        assert!(!c[1].is_empty() && !c[7].is_empty());
        let secs = |v: &str| -> u64 {
            let (a, b) = v.split_once('.').expect("seconds with decimals");
            assert_eq!(b.len(), 3, "{v}");
            a.parse::<u64>().unwrap() * 1000 + b.parse::<u64>().unwrap()
        };
        let (start, dur) = (secs(c[3]), secs(c[4]));
        assert!(dur > 0, "{line:?}");
        out.push((c[1].to_string(), start, dur, c[7].to_string()));
    }
    out
}

fn seg(start: u64, end: u64, speaker: Option<&str>, text: &str, i: usize) -> TranscriptSegment {
    TranscriptSegment {
        start,
        end,
        speaker: speaker.map(str::to_string),
        language: Some("zu-ZA".into()),
        text: text.into(),
        source: Source::Async { part: i },
        channel: None,
    }
}

fn transcript(segments: Vec<TranscriptSegment>) -> Transcript {
    let mut metadata = Metadata::default();
    metadata.source = "my call 1.wav".into();
    metadata.duration = 200 * 3600 * 16_000;
    metadata.route = Route::Async;
    metadata.requests = 3;
    metadata.audio_seconds_sent = 12.5;
    Transcript { segments, metadata }
}

fn random_transcript(seed: u64, n: usize) -> Transcript {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut t = 0u64;
    let speakers = ["speaker_0", "speaker_1", "p2:speaker_0"];
    let segments = (0..n)
        .map(|i| {
            t += rng.u64(0..5 * 16_000);
            let start = t;
            t += rng.u64(16..20 * 16_000);
            let words: Vec<String> = (0..rng.usize(1..8))
                .map(|_| (0..rng.usize(1..9)).map(|_| rng.lowercase()).collect())
                .collect();
            seg(
                start,
                t,
                Some(speakers[rng.usize(0..speakers.len())]),
                &words.join(" "),
                i,
            )
        })
        .collect();
    transcript(segments)
}

fn ms(samples: u64) -> u64 {
    (samples * 1000 + 8_000) / 16_000
}

#[test]
fn srt_vtt_rttm_carry_every_segment_at_its_time() {
    let t = random_transcript(7, 200);
    let srt = Format::Srt.render(&t).unwrap();
    let vtt = Format::Vtt.render(&t).unwrap();
    let rttm = Format::Rttm.render(&t).unwrap();
    let srt = parse_srt(&srt, &["speaker_0", "speaker_1", "p2:speaker_0"]);
    let vtt = parse_vtt(&vtt);
    let rttm = parse_rttm(&rttm);
    assert_eq!(srt.len(), t.segments.len());
    assert_eq!(vtt.len(), t.segments.len());
    assert_eq!(rttm.len(), t.segments.len());
    let mut last_speaker = None;
    for (i, s) in t.segments.iter().enumerate() {
        let (a, b) = (ms(s.start), ms(s.end));
        assert_eq!((srt[i].start, srt[i].end), (a, b));
        assert_eq!((vtt[i].start, vtt[i].end), (a, b));
        assert_eq!((rttm[i].1, rttm[i].2), (a, b - a));
        assert_eq!(rttm[i].0, "my_call_1");
        assert_eq!(Some(rttm[i].3.as_str()), s.speaker.as_deref());
        assert_eq!(vtt[i].speaker, s.speaker);
        assert_eq!(vtt[i].lines, vec![s.text.clone()]);
        assert_eq!(srt[i].lines, vec![s.text.clone()]);
        // the speaker is named on SRT cues exactly when it changes
        let changed = s.speaker != last_speaker;
        assert_eq!(srt[i].speaker.is_some(), changed, "cue {}", i + 1);
        last_speaker = s.speaker.clone();
    }
}

/// Overlapping turns of different speakers (crosstalk) stay whole: every cue is written, in
/// order of start, and the strict parsers accept the overlapping cues.
#[test]
fn overlapping_cues_are_valid_and_sorted_by_start() {
    let s = 16_000;
    let t = transcript(vec![
        seg(s, 20 * s, Some("speaker_1"), "one", 0),
        seg(0, 10 * s, Some("speaker_0"), "zero", 0),
        seg(2 * s, 3 * s, Some("speaker_2"), "two", 0),
    ]);
    let want = [(0, 10_000), (1000, 20_000), (2000, 3000)];
    let srt = parse_srt(
        &Format::Srt.render(&t).unwrap(),
        &["speaker_0", "speaker_1", "speaker_2"],
    );
    let vtt = parse_vtt(&Format::Vtt.render(&t).unwrap());
    let got_srt: Vec<_> = srt.iter().map(|c| (c.start, c.end)).collect();
    let got_vtt: Vec<_> = vtt.iter().map(|c| (c.start, c.end)).collect();
    assert_eq!(got_srt, want);
    assert_eq!(got_vtt, want);
    let names: Vec<_> = vtt.iter().map(|c| c.speaker.clone().unwrap()).collect();
    assert_eq!(names, ["speaker_0", "speaker_1", "speaker_2"]);
    let rttm = parse_rttm(&Format::Rttm.render(&t).unwrap());
    assert_eq!(rttm.len(), 3);
}

#[test]
fn json_round_trip() {
    // Times on whole milliseconds come back exactly.
    let mut t = random_transcript(11, 50);
    for s in &mut t.segments {
        s.start = s.start / MS * MS;
        s.end = (s.end / MS).max(s.start / MS + 1) * MS;
    }
    t.segments[3].speaker = None;
    t.segments[4].language = None;
    t.segments[5].source = Source::Sync { segment: 5 };
    t.segments[6].text = "quote \" backslash \\ newline \n tab \t ünïcödé 🎤".into();
    let json = Format::Json.render(&t).unwrap();
    let back = Transcript::from_json(&json).unwrap();
    assert_eq!(back, t);
    // Arbitrary sample times: the JSON is a fixed point after one trip.
    let t = random_transcript(12, 50);
    let json = Format::Json.render(&t).unwrap();
    let again = Format::Json
        .render(&Transcript::from_json(&json).unwrap())
        .unwrap();
    assert_eq!(json, again);
    // Times are seconds with at most 3 decimals.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for s in v["segments"].as_array().unwrap() {
        let x = s["start"].as_f64().unwrap();
        assert!(((x * 1000.0).round() / 1000.0 - x).abs() < 1e-12);
        assert!(s["source"]["route"].is_string());
    }
    assert_eq!(v["metadata"]["source"], "my call 1.wav");
}

#[test]
fn edge_cases() {
    let h = 3600 * 1000 * MS;
    let t = transcript(vec![
        seg(0, 4, Some("speaker_0"), "sub-millisecond, dropped", 0),
        seg(
            MS,
            2 * MS,
            Some("speaker_0"),
            "a --> b\n\n\r\nsecond line",
            0,
        ),
        seg(3 * MS, 4 * MS, None, "<b>not markup</b> & co", 0),
        seg(5 * MS, 6 * MS, Some("speaker one"), "   ", 0),
        seg(
            123 * h + 7 * MS,
            123 * h + 9 * MS,
            Some("speaker_1"),
            "late",
            0,
        ),
    ]);
    let srt = parse_srt(
        &Format::Srt.render(&t).unwrap(),
        &["speaker_0", "speaker_1"],
    );
    assert_eq!(srt.len(), 3, "{srt:?}");
    assert_eq!(srt[0].lines, vec!["a -> b", "second line"]);
    assert_eq!(srt[0].speaker.as_deref(), Some("speaker_0"));
    assert_eq!(srt[1].lines, vec!["<b>not markup</b> & co"]);
    assert_eq!(srt[2].start, 123 * 3_600_000 + 7);
    assert!(Format::Srt
        .render(&t)
        .unwrap()
        .contains("\n123:00:00,007 --> "));

    let vtt = parse_vtt(&Format::Vtt.render(&t).unwrap());
    assert_eq!(vtt.len(), 3);
    assert_eq!(vtt[0].lines, vec!["a --> b", "second line"]);
    assert_eq!(vtt[1].lines, vec!["<b>not markup</b> & co"]);
    assert_eq!(vtt[1].speaker, None);
    assert_eq!(vtt[2].speaker.as_deref(), Some("speaker_1"));

    // RTTM keeps the text-less speaker turn, with a speaker name without spaces.
    let rttm = parse_rttm(&Format::Rttm.render(&t).unwrap());
    assert_eq!(rttm.len(), 4);
    assert_eq!(rttm[1].3, "unknown");
    assert_eq!(rttm[2].3, "speaker_one");

    let txt = Format::Text.render(&t).unwrap();
    assert_eq!(
        txt,
        "speaker_0: a --> b second line\n<b>not markup</b> & co\nspeaker_1: late\n"
    );
}

#[test]
fn empty_transcript() {
    let t = transcript(vec![]);
    assert_eq!(Format::Srt.render(&t).unwrap(), "");
    assert!(parse_vtt(&Format::Vtt.render(&t).unwrap()).is_empty());
    assert_eq!(Format::Rttm.render(&t).unwrap(), "");
    assert_eq!(Format::Text.render(&t).unwrap(), "");
    let back = Transcript::from_json(&Format::Json.render(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn write_path_is_atomic_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = random_transcript(3, 5);
    for f in Format::ALL {
        let p = dir.path().join(format!("out.{}", f.extension()));
        export::write_path(f, &t, &p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), f.render(&t).unwrap());
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        5,
        "no temp files left"
    );
    let missing = dir.path().join("no such dir").join("x.srt");
    let e = export::write_path(Format::Srt, &t, &missing).unwrap_err();
    assert!(e.to_string().contains("no such dir"), "{e}");
    assert_eq!(Format::from_name("WebVTT").unwrap(), Format::Vtt);
    assert!(Format::from_name("docx").is_err());
}
