//! Channel-separated transcription (`ChannelMode`), end to end against the emulator.
//!
//! - A 2-channel call built from real recorded speech (`corpus::assemble_stereo`: agent on
//!   channel 0 with the hold music, customer on channel 1, shared line noise, overlapping
//!   turns), on the sync route: every utterance is sent once, whole, in a request of its own
//!   channel, and comes back under that channel's name.
//! - The async route with sharp-edged units on two channels: one job per channel, every
//!   result on its own channel at the unit's true time.
//! - What `Auto` chooses on that call, on stereo music and on a duplicated mono signal; a
//!   channel list on a 3-channel file; one decoding per file.

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use asr_pipeline::channels::ChannelMode;
use asr_pipeline::pipeline::{Job, Progress, Route};
use asr_pipeline::transcript::{Source, Transcript};
use asr_pipeline::ErrorKind;

use crate::corpus::{self, CallSpec, Case};
use crate::pipeline::{
    assert_on_true_times, builder, collector, emulator, journaled, place, render, units,
    upload_requests, Placed,
};

const SR: u64 = 16_000;
/// 20 ms at 16 kHz: the acceptance tolerance.
const TOL: u64 = 320;

/// The 4-minute stereo telephone call (8 kHz), built once.
pub(crate) fn stereo_call() -> &'static (Case, Vec<u8>) {
    static CALL: OnceLock<(Case, Vec<u8>)> = OnceLock::new();
    CALL.get_or_init(|| {
        corpus::require();
        let es = corpus::clips(&corpus::voice_files(corpus::VOICES[0].1), 60, 12.0);
        let it = corpus::clips(&corpus::voice_files(corpus::VOICES[1].1), 60, 12.0);
        let music: Vec<Vec<f32>> = corpus::music_files()
            .iter()
            .take(3)
            .map(|p| corpus::decode(p))
            .collect();
        let spec = CallSpec {
            name: "stereo_call".into(),
            seed: 11,
            secs: 240.0,
            holds: 1,
            dead_air: 1,
            levels: [-20.0, -26.0],
            noise_dbfs: -60.0,
            overlap_p: 0.3,
            telephone: true,
        };
        let (case, [agent, customer]) = corpus::assemble_stereo(&spec, &es, &it, &music);
        let wav = corpus::wav_bytes_channels(case.rate, &[&agent, &customer]);
        (case, wav)
    })
}

/// A planned sync segment, from the progress events.
#[derive(Debug, Clone)]
struct Planned {
    index: usize,
    channel: Option<u16>,
    start: u64,
    end: u64,
    kept: Vec<(u64, u64)>,
}

fn samples(secs: f64) -> u64 {
    (secs * SR as f64).round() as u64
}

fn planned(events: &[Progress]) -> Vec<Planned> {
    events
        .iter()
        .filter_map(|e| match e {
            Progress::SegmentPlanned {
                index,
                channel,
                start,
                end,
                kept,
            } => Some(Planned {
                index: *index,
                channel: *channel,
                start: samples(*start),
                end: samples(*end),
                kept: kept
                    .iter()
                    .map(|k| (samples(k[0]), samples(k[1])))
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

/// Whether the kept spans cover `[a, b)` without a hole.
fn covers(kept: &[(u64, u64)], a: u64, b: u64) -> bool {
    let mut at = a;
    for &(s, e) in kept {
        if s <= at && e > at {
            at = e;
        }
    }
    at >= b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_channel_call_is_transcribed_per_channel_every_utterance_once() {
    let (case, wav) = stereo_call();
    let emu = emulator().await;
    let (events, on) = collector();
    let p = builder(&emu)
        .route(Route::Sync)
        .channels(ChannelMode::Auto)
        .channel_names(["agent", "customer"])
        .progress(on)
        .build()
        .unwrap();
    let t = p
        .transcribe(Job::reader(Cursor::new(wav.clone()), "stereo_call.wav"))
        .await
        .unwrap();
    let names = ["agent", "customer"];

    let ch = t.metadata.channels.as_ref().expect("channels recorded");
    assert_eq!(ch.file_channels, 2);
    let separate: Vec<(u16, &str)> = ch
        .separate
        .iter()
        .map(|c| (c.channel, c.name.as_str()))
        .collect();
    assert_eq!(
        separate,
        [(0, "agent"), (1, "customer")],
        "Auto separates a call with one talker per channel: {:?}",
        ch.auto
    );
    let stats = ch.auto.expect("Auto judged the file");
    eprintln!("auto: {stats:?}");

    let plan = planned(&events.lock().unwrap());
    assert_eq!(plan.len() as u64, t.metadata.segments_planned);
    for s in &plan {
        let billed: u64 = s.kept.iter().map(|(a, b)| b - a).sum();
        assert!(
            billed <= 60 * SR,
            "request {} bills {billed} samples",
            s.index
        );
        assert!(s.channel.is_some(), "every request is of one channel");
    }
    let k = SR / case.rate as u64;
    let (mut whole, mut attributed, mut twice, mut missed) = (0, 0, 0, 0);
    let spans: Vec<(u64, u64, u8)> = case
        .utterances
        .iter()
        .map(|u| (u.start as u64 * k, u.end as u64 * k, u.speaker))
        .collect();
    for &(us, ue, spk) in &spans {
        let (a, b) = (us + TOL, ue.saturating_sub(TOL).max(us + TOL + 1));
        let own: Vec<&Planned> = plan
            .iter()
            .filter(|s| s.channel == Some(u16::from(spk)) && s.start < b && s.end > a)
            .collect();
        match own.as_slice() {
            [] => missed += 1,
            [s] => {
                if s.start <= a && s.end >= b && covers(&s.kept, a, b) {
                    whole += 1;
                } else {
                    eprintln!("not whole: utterance {us}..{ue} of {spk}: {s:?}");
                }
                let seg = t
                    .segments
                    .iter()
                    .find(|x| x.source == Source::Sync { segment: s.index })
                    .expect("every request has its result");
                if seg.speaker.as_deref() == Some(names[usize::from(spk)])
                    && seg.channel == Some(u16::from(spk))
                {
                    attributed += 1;
                }
            }
            _ => twice += 1,
        }
    }
    // Utterances of the two talkers that overlap in time: both must be there.
    let (mut overlaps, mut overlaps_lost) = (0, 0);
    for (i, x) in spans.iter().enumerate() {
        for y in &spans[i + 1..] {
            if x.2 != y.2 && x.0 < y.1 && y.0 < x.1 {
                overlaps += 1;
                for u in [x, y] {
                    if !plan.iter().any(|s| {
                        s.channel == Some(u16::from(u.2)) && covers(&s.kept, u.0 + TOL, u.1 - TOL)
                    }) {
                        overlaps_lost += 1;
                        eprintln!("overlapping utterance {u:?} not sent whole on its channel");
                    }
                }
            }
        }
    }
    // Hold music (on the agent's channel) that went out.
    let music: u64 = case.music.iter().map(|&(s, e)| (e - s) as u64 * k).sum();
    let music_sent: u64 = case
        .music
        .iter()
        .map(|&(s, e)| {
            let (s, e) = (s as u64 * k, e as u64 * k);
            plan.iter()
                .flat_map(|p| p.kept.iter())
                .map(|&(a, b)| b.min(e).saturating_sub(a.max(s)))
                .sum::<u64>()
        })
        .sum();
    let n = spans.len();
    // Speech per channel (the union of its utterances), summed: what a perfect segmenter bills.
    let speech: u64 = [0u8, 1]
        .iter()
        .map(|&c| {
            let mut v: Vec<(u64, u64)> = spans
                .iter()
                .filter(|u| u.2 == c)
                .map(|u| (u.0, u.1))
                .collect();
            v.sort_unstable();
            let (mut total, mut end) = (0, 0);
            for (a, b) in v {
                total += b.saturating_sub(a.max(end));
                end = end.max(b);
            }
            total
        })
        .sum();
    eprintln!(
        "stereo call: {n} utterances, {overlaps} overlapping pairs ({overlaps_lost} of their utterances not whole), {} requests; whole {:.2} %, attributed {:.2} %, split {twice}, missed {missed}; music sent {:.2} %; billed {:.1} s for {:.1} s of speech ({:.3}), call {:.1} s",
        plan.len(),
        100.0 * whole as f64 / n as f64,
        100.0 * attributed as f64 / n as f64,
        100.0 * music_sent as f64 / music.max(1) as f64,
        t.metadata.audio_seconds_sent,
        speech as f64 / SR as f64,
        t.metadata.audio_seconds_sent * SR as f64 / speech as f64,
        t.metadata.duration as f64 / SR as f64,
    );
    assert_eq!(overlaps_lost, 0, "overlapping turns are both sent whole");
    assert!(overlaps > 0, "the call has overlapping turns");
    assert_eq!(missed, 0, "no utterance is left out");
    assert!(attributed * 100 >= n * 99, "{attributed} of {n} attributed");
    assert!(whole * 100 >= n * 98, "{whole} of {n} sent whole");
    assert!(twice * 100 <= n, "{twice} of {n} split");
}

/// Reads through to a cursor and counts the bytes read.
struct Counting {
    inner: Cursor<Vec<u8>>,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Counting {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_is_taken_from_one_decoding_of_the_file() {
    let (_, wav) = stereo_call();
    let emu = emulator().await;
    for mode in [ChannelMode::Separate(vec![]), ChannelMode::Mix] {
        let read = Arc::new(AtomicU64::new(0));
        let r = Counting {
            inner: Cursor::new(wav.clone()),
            read: read.clone(),
        };
        let p = builder(&emu)
            .route(Route::Sync)
            .channels(mode.clone())
            .build()
            .unwrap();
        let t = p.transcribe(Job::reader(r, "call.wav")).await.unwrap();
        assert!(!t.segments.is_empty());
        let got = read.load(Ordering::Relaxed);
        assert!(
            got >= wav.len() as u64 && got <= wav.len() as u64 + 64 * 1024,
            "{mode:?}: {got} bytes read for a file of {}: one decoding",
            wav.len()
        );
    }
}

/// A 2-channel 16-bit WAV at 16 kHz.
fn write_channels(path: &std::path::Path, channels: &[&[i16]]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..channels[0].len() {
        for c in channels {
            w.write_sample(c[i]).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Unit positions on one channel: every 3–6 s from `first`.
fn every(first: u64, secs: u64, seed: u64) -> Vec<(u64, usize)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = Vec::new();
    let mut t = first;
    let mut k = seed as usize;
    while t + 4 * SR < secs * SR {
        v.push((t, k));
        k += 1;
        t += 3 * SR + (rng.f64() * 3.0 * SR as f64) as u64;
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_route_sends_one_job_per_channel_and_keeps_true_times() {
    let u = units();
    let len = 60 * SR;
    let a = place(&u, &every(SR / 2, 60, 1));
    let b = place(&u, &every(2 * SR, 60, 2));
    let overlaps = a
        .iter()
        .filter(|(x, _)| b.iter().any(|(y, _)| x.start < y.end && y.start < x.end))
        .count();
    assert!(overlaps > 0, "the channels talk over each other somewhere");
    let (ca, cb) = (render(len, &a), render(len, &b));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.wav");
    write_channels(&path, &[&ca, &cb]);

    let emu = emulator().await;
    let p = builder(&emu)
        .route(Route::Async)
        .diarization(true)
        .normalize(None)
        .channels(ChannelMode::Separate(vec![]))
        .channel_names(["agent", "customer"])
        .temp_dir(dir.path())
        .build()
        .unwrap();
    let t = p.transcribe_path(&path).await.unwrap();
    let parts: Vec<Option<u16>> = t.metadata.parts.iter().map(|p| p.channel).collect();
    assert_eq!(parts, vec![Some(0), Some(1)], "one job per channel");
    // Silences of 2 s and more (the other party's turns) are left out of each channel's
    // upload: far less than twice the file's length.
    let secs = len as f64 / SR as f64;
    eprintln!(
        "uploaded {:.1} s for a {secs} s 2-channel file",
        t.metadata.audio_seconds_sent
    );
    assert!(
        t.metadata.audio_seconds_sent < 1.2 * secs,
        "{:?}",
        t.metadata
    );
    for (c, name, placed) in [(0u16, "agent", &a), (1, "customer", &b)] {
        let mine = Transcript {
            segments: t
                .segments
                .iter()
                .filter(|s| s.channel == Some(c))
                .cloned()
                .collect(),
            metadata: t.metadata.clone(),
        };
        for s in &mine.segments {
            let spk = s.speaker.as_deref().unwrap_or("");
            assert!(
                spk.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(":speaker_")),
                "speakers are labelled by channel first: {spk}"
            );
        }
        // Every unit of the channel, within 10 ms, and nothing else.
        let placed: Vec<(Placed, Arc<Vec<i16>>)> = placed.to_vec();
        assert_on_true_times(&mine, &placed);
    }
    assert!(t.segments.windows(2).all(|w| w[0].start <= w[1].start));
    // RTTM: one speaker per channel, the channel column 1-based.
    let rttm = asr_pipeline::export::Format::Rttm.render(&t).unwrap();
    assert!(rttm
        .lines()
        .all(|l| (l.contains(" 1 ") && l.contains(" agent:"))
            || (l.contains(" 2 ") && l.contains(" customer:"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mixes_stereo_music_and_a_duplicated_mono_signal() {
    let emu = emulator().await;
    let p = builder(&emu).route(Route::Sync).build().unwrap();
    // Real stereo music (orchestral, Vorbis 44.1 kHz): six tracks.
    corpus::require();
    for track in corpus::music_files().iter().take(6) {
        let t = p.transcribe_path(track).await.unwrap();
        let ch = t
            .metadata
            .channels
            .expect("a stereo file records its channels");
        eprintln!("stereo music {}: {:?}", track.display(), ch.auto);
        assert_eq!(ch.file_channels, 2);
        assert!(ch.separate.is_empty(), "music is mixed: {:?}", ch.auto);
        assert!(ch.auto.is_some());
        assert!(t.segments.iter().all(|s| s.channel.is_none()));
    }

    // The call's mono mix on both channels.
    let (case, _) = stereo_call();
    let mono = &case.audio;
    let wav = corpus::wav_bytes_channels(case.rate, &[mono, mono]);
    let t = p
        .transcribe(Job::reader(Cursor::new(wav), "dual_mono.wav"))
        .await
        .unwrap();
    let ch = t.metadata.channels.expect("channels recorded");
    eprintln!("dual mono: {:?}", ch.auto);
    assert!(ch.separate.is_empty(), "dual mono is mixed: {:?}", ch.auto);
    assert!(!t.segments.is_empty());
    assert!(t
        .segments
        .iter()
        .all(|s| s.channel.is_none() && s.speaker.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_list_takes_only_those_channels() {
    let u = units();
    let len = 30 * SR;
    let centre = place(&u, &every(SR, 30, 3));
    let side = place(&u, &every(2 * SR, 30, 4));
    let quiet = render(len, &[]);
    let (c, s) = (render(len, &centre), render(len, &side));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.wav");
    write_channels(&path, &[&s, &quiet, &c]);
    let emu = emulator().await;

    let p = builder(&emu)
        .route(Route::Sync)
        .channels(ChannelMode::Separate(vec![2]))
        .build()
        .unwrap();
    let t = p.transcribe_path(&path).await.unwrap();
    assert!(!t.segments.is_empty());
    assert!(t
        .segments
        .iter()
        .all(|x| x.channel == Some(2) && x.speaker.as_deref() == Some("channel_2")));
    let ch = t.metadata.channels.unwrap();
    assert_eq!((ch.file_channels, ch.separate.len()), (3, 1));

    // Auto keeps the mix for more than 2 channels.
    let p = builder(&emu).route(Route::Sync).build().unwrap();
    let t = p.transcribe_path(&path).await.unwrap();
    let ch = t.metadata.channels.unwrap();
    assert!(ch.separate.is_empty() && ch.auto.is_none());

    // A channel listed twice, a name that is another channel's default: refused up front.
    for b in [
        builder(&emu).channels(ChannelMode::Separate(vec![2, 2])),
        builder(&emu).channel_names(["channel_1"]),
        builder(&emu).channel_names(["agent", "agent"]),
    ] {
        let e = b.build().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidConfig { .. }), "{e}");
    }

    // A channel the file does not have: an error for this file (a batch goes on), naming it.
    let p = builder(&emu)
        .channels(ChannelMode::Separate(vec![3]))
        .build()
        .unwrap();
    let e = p.transcribe_path(&path).await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unsupported { .. }), "{e}");
    assert!(e.is_bad_input() && !e.stops_batch());
    assert!(e.to_string().contains("three.wav"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_channel_jobs_are_polled_not_uploaded_again() {
    let u = units();
    let len = 30 * SR;
    let a = place(&u, &every(SR / 2, 30, 5));
    let b = place(&u, &every(2 * SR, 30, 6));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    write_channels(&path, &[&render(len, &a), &render(len, &b)]);
    let emu = emulator().await;
    let p = builder(&emu)
        .route(Route::Async)
        .normalize(None)
        .channels(ChannelMode::Separate(vec![]))
        .temp_dir(dir.path())
        .build()
        .unwrap();
    let (events, sink) = collector();
    let first = p.transcribe(Job::path(&path).progress(sink)).await.unwrap();
    let journal = journaled(&events.lock().unwrap());
    let channels: Vec<Option<u16>> = journal.iter().map(|u| u.channel).collect();
    assert_eq!(channels.len(), 2, "one upload per channel: {channels:?}");
    // Half a journal (one channel uploaded): only the other channel goes up again.
    emu.clear_requests();
    let half = p
        .transcribe(Job::path(&path).resume(journal[..1].to_vec()))
        .await
        .unwrap();
    assert_eq!(half.segments, first.segments);
    assert_eq!(upload_requests(&emu), 2, "one upload (form + storage POST)");
    // A complete journal does not even need the audio.
    emu.clear_requests();
    std::fs::remove_file(&path).unwrap();
    let again = p
        .transcribe(Job::path(&path).resume(journal))
        .await
        .unwrap();
    assert_eq!(again.segments, first.segments);
    assert_eq!(upload_requests(&emu), 0);
    assert_eq!(again.metadata.channels.unwrap().separate.len(), 2);

    // Speech on one channel only: the silent channel has no part, and the journal of the
    // other is complete on its own.
    let one = dir.path().join("one.wav");
    write_channels(&one, &[&render(len, &a), &render(len, &[])]);
    let (events, sink) = collector();
    let first = p.transcribe(Job::path(&one).progress(sink)).await.unwrap();
    let journal = journaled(&events.lock().unwrap());
    assert_eq!(journal.len(), 1);
    emu.clear_requests();
    std::fs::remove_file(&one).unwrap();
    let again = p.transcribe(Job::path(&one).resume(journal)).await.unwrap();
    assert_eq!(again.segments, first.segments);
    assert_eq!(upload_requests(&emu), 0);
}

/// Seconds of `spans` (sample ranges at `rate`) counted once where they overlap.
fn union_secs(mut spans: Vec<(u64, u64)>, rate: u64) -> f64 {
    spans.sort();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in spans {
        match cur {
            Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                cur = Some((s, e));
            }
            None => cur = Some((s, e)),
        }
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total as f64 / rate as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_call_is_uploaded_without_its_hold_music_and_dead_air() {
    let (case, wav) = stereo_call();
    let emu = emulator().await;
    let run = |removal: Option<std::time::Duration>| {
        let p = builder(&emu)
            .route(Route::Async)
            .channels(ChannelMode::Mix)
            .remove_silence(removal)
            .build()
            .unwrap();
        async move {
            p.transcribe(Job::reader(Cursor::new(wav.clone()), "call.wav"))
                .await
                .unwrap()
        }
    };
    let whole = run(None).await;
    let lean = run(Some(std::time::Duration::from_secs(2))).await;
    let rate = case.rate as u64;
    let secs = case.audio.len() as f64 / rate as f64;
    let speech = union_secs(
        case.utterances
            .iter()
            .map(|u| (u.start as u64, u.end as u64))
            .collect(),
        rate,
    );
    let music = union_secs(
        case.music
            .iter()
            .map(|&(s, e)| (s as u64, e as u64))
            .collect(),
        rate,
    );
    eprintln!(
        "mixed call of {secs:.1} s ({speech:.1} s speech, {music:.1} s hold music): uploaded {:.1} s whole, {:.1} s by default ({:.2} x speech)",
        whole.metadata.audio_seconds_sent,
        lean.metadata.audio_seconds_sent,
        lean.metadata.audio_seconds_sent / speech
    );
    assert!((whole.metadata.audio_seconds_sent - secs).abs() < 0.1);
    assert!(
        lean.metadata.audio_seconds_sent <= secs - 0.9 * music,
        "the hold music is not uploaded"
    );
    assert!(lean.metadata.audio_seconds_sent >= speech);
    // Nothing heard in the whole upload is lost: each utterance is covered as much, on the
    // original timeline.
    let covered = |t: &Transcript, s: u64, e: u64| -> u64 {
        t.segments
            .iter()
            .map(|g| g.end.min(e).saturating_sub(g.start.max(s)))
            .sum()
    };
    let to16 = |x: usize| x as u64 * 16_000 / rate;
    for u in &case.utterances {
        let (s, e) = (to16(u.start), to16(u.end));
        let (a, b) = (covered(&whole, s, e), covered(&lean, s, e));
        assert!(
            b + (e - s) / 20 >= a,
            "utterance {s}..{e}: covered {b} by default, {a} whole"
        );
    }
}
