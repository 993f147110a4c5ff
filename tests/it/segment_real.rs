//! The segmenter on real recorded speech and real music (the reduced, deterministic corpus of
//! `tests/it/corpus`, assembled from Debian packages that `.ci/run` installs).
//!
//! Each case is written as a WAV file in memory (8 kHz telephone calls, one of them µ-law) and
//! read back through the library's own front end, exactly as the pipeline reads a file.

use crate::corpus;

use std::io::Cursor;
use std::sync::OnceLock;

use asr_pipeline::segment::{Segment, Segmenter, SegmenterOptions, MAX_SEGMENT};
use asr_pipeline::stream::{AudioStream, StreamOptions};
use corpus::{Case, Score};

struct Run {
    case: Case,
    segments: Vec<Segment>,
    score: Score,
}

/// The corpus, built and segmented once for all tests of this file.
fn runs() -> &'static [Run] {
    static RUNS: OnceLock<Vec<Run>> = OnceLock::new();
    RUNS.get_or_init(|| {
        corpus::require();
        corpus::cases(true)
            .into_iter()
            .map(|(case, mulaw)| {
                let segments = segment(&corpus::wav_bytes(&case, mulaw));
                let score = corpus::score(&case, &segments);
                eprintln!(
                    "{:<18} utts {:>3} whole {:>6.2} % split {} missed {} covered {:>6.2} % music {:>5.2} % billed {:.3} requests {}",
                    case.name,
                    score.utterances,
                    score.whole_pct(),
                    score.split,
                    score.missed,
                    score.coverage_pct(),
                    score.music_pct(),
                    score.billed_ratio(),
                    score.requests
                );
                Run {
                    case,
                    segments,
                    score,
                }
            })
            .collect()
    })
}

fn segment(wav: &[u8]) -> Vec<Segment> {
    let mut s = AudioStream::from_reader(Cursor::new(wav.to_vec()), None, StreamOptions::default())
        .expect("the corpus WAV opens");
    let mut seg = Segmenter::new(SegmenterOptions::requests()).unwrap();
    let mut out = Vec::new();
    while let Some(b) = s.next_block().expect("the corpus WAV decodes") {
        seg.push(b.samples, &mut out);
    }
    seg.finish(&mut out);
    out
}

fn speech_runs() -> impl Iterator<Item = &'static Run> {
    runs()
        .iter()
        .filter(|r| r.case.kind == "call" || r.case.kind == "dialogue")
}

fn run(name: &str) -> &'static Run {
    runs().iter().find(|r| r.case.name == name).unwrap()
}

#[test]
fn no_utterance_is_ever_cut_and_none_is_missed() {
    for r in speech_runs() {
        assert_eq!(r.score.split, 0, "{}: an utterance was cut", r.case.name);
        assert_eq!(
            r.score.missed, 0,
            "{}: an utterance was never sent",
            r.case.name
        );
    }
}

#[test]
fn the_call_and_its_level_and_mulaw_versions_meet_the_targets() {
    for name in ["call_es_it", "call_es_it_m45", "call_es_it_ulaw"] {
        let sc = &run(name).score;
        assert!(sc.whole_pct() >= 99.7, "{name}: {sc:?}");
        assert!(sc.coverage_pct() >= 99.5, "{name}: {sc:?}");
        // One 25 s hold here, right after a turn: its first second was sent (3.8 %) until
        // runs of flat sound into more sound were dropped (see the hold tests below); now none
        // of it is. Issue 9 asks for at most 3 %; this guards what was reached.
        assert!(sc.music_pct() <= 0.5, "{name}: hold music sent: {sc:?}");
        assert!(sc.billed_ratio() <= 1.10, "{name}: {sc:?}");
    }
    let clean = &run("call_es_it").score;
    for name in ["call_es_it_m45", "call_es_it_ulaw"] {
        let v = &run(name).score;
        assert!(
            (v.whole_pct() - clean.whole_pct()).abs() <= 1.0,
            "{name}: {v:?} vs {clean:?}"
        );
        assert!(
            (v.coverage_pct() - clean.coverage_pct()).abs() <= 1.0,
            "{name}: {v:?}"
        );
        assert!(
            (v.billed_ratio() - clean.billed_ratio()).abs() <= 0.01 * clean.billed_ratio(),
            "{name}: {v:?} vs {clean:?}"
        );
    }
}

#[test]
fn the_other_conversations_stay_where_they_are() {
    // Issue 9 asks for 99.7 % whole everywhere. Regression guard for the 5 dB SNR call: on the
    // full corpus 99.1 % of it is sent whole (the quieter speaker's speech is only about 2 dB
    // above the noise); this 6-minute cut sends all of it, 95 % before the model was put back
    // to its state after the last words when speech follows a hold buried in the noise (11 s
    // after it were lost) and 89 % before it stopped losing onsets after dead air; see
    // BENCHMARKS.md.
    for (name, whole, covered, billed) in [
        ("dialogue_nl", 99.7, 99.5, 1.08),
        ("call_ru_nl", 99.7, 98.5, 1.12),
        ("call_es_it_snr5", 99.0, 99.0, 1.10),
    ] {
        let sc = &run(name).score;
        assert!(sc.whole_pct() >= whole, "{name}: {sc:?}");
        assert!(sc.coverage_pct() >= covered, "{name}: {sc:?}");
        assert!(sc.billed_ratio() <= billed, "{name}: {sc:?}");
    }
}

#[test]
fn every_request_is_at_most_60_s_and_on_the_timeline() {
    for r in runs() {
        let len = (r.case.audio.len() * (16_000 / r.case.rate)) as u64;
        let mut prev_end = 0;
        for s in &r.segments {
            assert!(s.billed() <= MAX_SEGMENT, "{}: {s:?}", r.case.name);
            assert!(s.start >= prev_end && s.end <= len && s.start < s.end);
            let spans = s.kept.spans();
            assert_eq!(spans.first().map(|k| k.original), Some(s.start));
            assert_eq!(spans.last().map(|k| k.original + k.len), Some(s.end));
            prev_end = s.end;
        }
    }
}

#[test]
fn music_alone_and_dead_air_make_no_request() {
    for name in ["music_only_8k", "music_only_16k", "silence_only"] {
        let r = run(name);
        assert!(
            r.segments.is_empty(),
            "{name}: {} requests",
            r.segments.len()
        );
    }
    for r in speech_runs().filter(|r| r.score.music > 0) {
        // On this cut every call sends none of its hold music; before flat runs into sound
        // were dropped (`Run::runs_into_sound`) the clean call sent 3.8 % and the 5 dB SNR
        // call 6.0 %. Issue 9 asks for at most 3 %; this guards what was reached.
        assert!(r.score.music_pct() <= 0.5, "{}: {:?}", r.case.name, r.score);
    }
}

/// Issue 9's acceptance on this cut: no utterance split, 99.7 % whole, music at most 3 %,
/// and the −45 dBFS and 5 dB SNR versions within 1 % of the clean call on every figure. On
/// the full corpus (`make_corpus`) the same holds (see BENCHMARKS.md).
#[test]
fn the_whole_acceptance_of_issue_9() {
    let mut total = Score::default();
    for r in speech_runs() {
        total.add(&r.score);
        assert_eq!(r.score.split, 0, "{}: {:?}", r.case.name, r.score);
        if r.score.music > 0 {
            assert!(r.score.music_pct() <= 3.0, "{}: {:?}", r.case.name, r.score);
        }
    }
    assert!(total.whole_pct() >= 99.7, "{total:?}");
    let clean = &run("call_es_it").score;
    assert!(clean.billed_ratio() <= 1.10, "{clean:?}");
    for name in ["call_es_it_m45", "call_es_it_snr5"] {
        let v = &run(name).score;
        let near = |a: f64, b: f64| (a - b).abs() <= 1.0;
        assert!(near(v.whole_pct(), clean.whole_pct()), "{v:?} vs {clean:?}");
        assert!(
            near(v.coverage_pct(), clean.coverage_pct()),
            "{v:?} vs {clean:?}"
        );
        assert!(near(v.music_pct(), clean.music_pct()), "{v:?} vs {clean:?}");
        // Billed ratios within 1 % of each other.
        assert!(
            (v.billed_ratio() / clean.billed_ratio() - 1.0).abs() <= 0.01,
            "{v:?} vs {clean:?}"
        );
    }
}

/// Four ru prompts, each after 40 s from the middle of a real track and a pause of `pause`
/// samples, must each be sent whole. With `line` = (speech dBFS, noise dBFS) the prompt is set
/// to that level and line noise is added under everything.
fn prompts_after_hold_music_are_sent(pause: usize, line: Option<(f32, f32)>) {
    corpus::require();
    let speech = corpus::clips(&corpus::voice_files(corpus::VOICES[2].1), 4, 6.0);
    assert!(speech.len() == 4, "four ru prompts");
    let mut checked = 0;
    for (k, path) in corpus::music_files().iter().take(4).enumerate() {
        let music = corpus::decode(path);
        let from = music.len().saturating_sub(40 * corpus::RATE) / 2;
        let mut audio: Vec<f32> = music[from..(from + 40 * corpus::RATE).min(music.len())].to_vec();
        audio.extend(std::iter::repeat_n(0.0, pause));
        let clip = &speech[k];
        let mut prompt = clip.audio.clone();
        if let Some((level, _)) = line {
            corpus::set_level(&mut prompt, level);
        }
        let offset = audio.len();
        audio.extend_from_slice(&prompt);
        audio.extend(std::iter::repeat_n(0.0, corpus::RATE));
        if let Some((_, noise_db)) = line {
            let mut rng = corpus::Rng::new(7 + k as u64);
            let noise = corpus::line_noise(&mut rng, audio.len(), noise_db);
            audio.iter_mut().zip(&noise).for_each(|(a, n)| *a += n);
        }

        let mut seg = Segmenter::new(SegmenterOptions::requests()).unwrap();
        let mut out = Vec::new();
        for c in audio.chunks(4096) {
            seg.push(c, &mut out);
        }
        seg.finish(&mut out);
        for &(s, e) in &clip.utts {
            let (s, e) = ((offset + s) as u64 + 160, (offset + e) as u64 - 160);
            assert!(
                out.iter().any(|r| r.start <= s && r.end >= e),
                "{}: utterance {:.2}-{:.2} s after the music is not sent whole: {:?}",
                path.display(),
                s as f64 / 16e3,
                e as f64 / 16e3,
                out.iter()
                    .map(|r| (r.start as f64 / 16e3, r.end as f64 / 16e3))
                    .collect::<Vec<_>>()
            );
            checked += 1;
        }
    }
    assert!(checked >= 4);
}

/// The agent's first words after hold music: the speech model remembers a minute of music
/// and, before the model's state was put back at the pause, it missed them (1.2 s pause).
#[test]
fn the_first_words_after_hold_music_are_sent() {
    prompts_after_hold_music_are_sent(corpus::RATE * 6 / 5, None);
}

/// The same on a line with noise (-40 dBFS, the speech at -20) and a 2 s pause: the model hears
/// the pause's noise, and the state it goes on from after the pause must be the one put back
/// at the pause, not a snapshot of the music taken before that.
#[test]
fn the_first_words_after_hold_music_are_sent_on_a_noisy_line() {
    prompts_after_hold_music_are_sent(2 * corpus::RATE, Some((-20.0, -40.0)));
}

/// The first words after long dead air on a noisy line. While only the line's noise is heard,
/// the running speech level sinks towards it; the automatic gain then lifted the noise to the
/// level of speech and, after 15 s of it, the speech model answered 0.00 to the first 300 ms
/// of a loud reply (the 5 dB SNR call lost onsets and a whole 0.6 s reply this way).
#[test]
fn the_first_words_after_long_dead_air_on_a_noisy_line_are_sent() {
    corpus::require();
    let speech = corpus::clips(&corpus::voice_files(corpus::VOICES[0].1), 6, 6.0);
    assert!(speech.len() == 6, "six es prompts");
    let mut rng = corpus::Rng::new(11);
    let mut checked = 0;
    for pair in speech.chunks(2) {
        let (mut first, mut reply) = (pair[0].audio.clone(), pair[1].audio.clone());
        corpus::set_level(&mut first, -20.0);
        corpus::set_level(&mut reply, -20.0);
        // A telephone call (8 kHz): prompt, 15 s of nothing but line noise, the reply; the
        // noise 11 dB under the speech.
        let mut audio = vec![0.0; corpus::RATE];
        audio.extend_from_slice(&first);
        audio.extend(std::iter::repeat_n(0.0, 15 * corpus::RATE));
        let offset = audio.len();
        audio.extend_from_slice(&reply);
        audio.extend(std::iter::repeat_n(0.0, corpus::RATE));
        let mut line = corpus::telephone(&audio);
        let noise = corpus::line_noise(&mut rng, line.len(), -31.0);
        line.iter_mut().zip(&noise).for_each(|(a, n)| *a += n);
        let out = segment(&corpus::wav_bytes_channels(corpus::RATE / 2, &[&line]));
        // Where the reply is first heard over the line: its first 10 ms (at 8 kHz) at least
        // 6 dB above the noise.
        let clean = corpus::telephone(&audio);
        let audible = (offset / 2..clean.len() - 80)
            .step_by(80)
            .find(|&i| {
                let e = clean[i..i + 80].iter().map(|x| x * x).sum::<f32>() / 80.0;
                10.0 * e.max(1e-12).log10() >= -31.0 + 6.0
            })
            .expect("the reply is heard");
        let at = (2 * audible) as u64;
        let end = (offset + pair[1].utts.last().unwrap().1) as u64 - 160;
        // Whole, and heard at once: the request starts a padding (300 ms) before the onset
        // the segmenter found; that onset is at most 100 ms after the reply became audible.
        assert!(
            out.iter().any(|r| r.start + 200 * 16 <= at && r.end >= end),
            "the reply heard from {:.2} s after the dead air is not sent whole from its start: {:?}",
            at as f64 / 16e3,
            out.iter()
                .map(|r| (r.start as f64 / 16e3, r.end as f64 / 16e3))
                .collect::<Vec<_>>()
        );
        checked += 1;
    }
    assert!(checked >= 3);
}

/// Speech, a gap of `gap` samples, then 25 s from the middle of each of the first `tracks`
/// music files, as an 8 kHz call, with the prompt at −20 dBFS and the music at −24 dBFS.
/// Returns, per track, the audio's segments, where the prompt's utterances are and where the
/// music starts (all at 16 kHz).
fn prompt_then_music(gap: usize, tracks: usize) -> Vec<PromptThenMusic> {
    corpus::require();
    let speech = corpus::clips(&corpus::voice_files(corpus::VOICES[0].1), tracks, 6.0);
    assert!(speech.len() == tracks, "{tracks} es prompts");
    corpus::music_files()
        .iter()
        .take(tracks)
        .zip(&speech)
        .map(|(path, clip)| {
            let music = corpus::decode(path);
            let from = music.len().saturating_sub(25 * corpus::RATE) / 2;
            let mut hold = music[from..(from + 25 * corpus::RATE).min(music.len())].to_vec();
            corpus::set_level(&mut hold, -24.0);
            let mut prompt = clip.audio.clone();
            corpus::set_level(&mut prompt, -20.0);
            let mut audio = vec![0.0; corpus::RATE];
            audio.extend_from_slice(&prompt);
            audio.extend(std::iter::repeat_n(0.0, gap));
            let at = audio.len() as u64;
            audio.extend_from_slice(&hold);
            audio.extend(std::iter::repeat_n(0.0, corpus::RATE));
            let line = corpus::telephone(&audio);
            let out = segment(&corpus::wav_bytes_channels(corpus::RATE / 2, &[&line]));
            let utts = clip
                .utts
                .iter()
                .map(|&(s, e)| ((corpus::RATE + s) as u64, (corpus::RATE + e) as u64))
                .collect();
            PromptThenMusic { out, utts, at }
        })
        .collect()
}

/// One call of [`prompt_then_music`], at 16 kHz.
struct PromptThenMusic {
    /// The requests made.
    out: Vec<Segment>,
    /// Where the prompt's utterances are.
    utts: Vec<(u64, u64)>,
    /// Where the music starts.
    at: u64,
}

/// Hold music that starts right after a turn (a second's pause): the speech model takes its
/// first notes for speech, and before runs whose level stayed flat into more sound were
/// dropped, the first second of each hold was sent (3.8 % of the corpus cut's hold).
#[test]
fn the_first_second_of_hold_music_after_a_turn_is_not_sent() {
    let mut sent = 0u64;
    let mut music = 0u64;
    for PromptThenMusic { out, utts, at } in prompt_then_music(corpus::RATE * 11 / 10, 4) {
        let end = at + 25 * corpus::RATE as u64;
        music += end - at;
        for r in &out {
            for sp in r.kept.spans() {
                let (a, b) = (sp.original, sp.original + sp.len);
                sent += b.min(end).saturating_sub(a.max(at));
            }
        }
        for &(s, e) in &utts {
            assert!(
                out.iter().any(|r| r.start <= s + 160 && r.end + 160 >= e),
                "the prompt before the hold is not sent whole: {out:?}"
            );
        }
    }
    let pct = 100.0 * sent as f64 / music as f64;
    assert!(pct <= 1.0, "{pct:.2} % of the hold music sent");
}

/// The other side of the rule above: words that run straight into music (no pause) still go
/// out whole. Speech rises and falls by syllables, the music's first notes do not.
#[test]
fn words_that_run_straight_into_music_are_sent() {
    for gap in [0, corpus::RATE / 20] {
        for PromptThenMusic { out, utts, .. } in prompt_then_music(gap, 4) {
            for &(s, e) in &utts {
                assert!(
                    out.iter().any(|r| r.start <= s + 160 && r.end + 160 >= e),
                    "gap {gap}: the words before the music are not sent whole: {out:?}"
                );
            }
        }
    }
}
