//! End-to-end: the pipeline against the local emulator, on generated audio with speech (the
//! committed espeak-ng units of `testdata/speech/`) at known positions.
//!
//! - Sync: the emulator answers each `/asr` request with the duration and a CRC-32 of the audio
//!   it received; the test recomputes the CRC of the ORIGINAL audio at each result's
//!   `[start, end)` (through the same DC filter and per-segment normalisation), so a match
//!   proves the result sits exactly where its audio came from.
//! - Async: the emulator's timestamps are the true times of sound in the uploaded file; after
//!   the merge every unit's results must start and end within 10 ms of where the unit was put
//!   on the ORIGINAL timeline (also with long silences cut out before upload, and for a file
//!   over 400 minutes sent in two parts).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asr_pipeline::botlhale::{Client, Credentials, PollOptions, Secret};
use asr_pipeline::normalize::{normalize_in_place, DcBlocker, NormalizeOptions};
use asr_pipeline::pipeline::{
    split_only, Job, Pipeline, PipelineBuilder, Progress, Route, SplitOptions, UploadedPart,
};
use asr_pipeline::segment::SegmentPlan;
use asr_pipeline::transcript::{Source, Transcript, TranscriptSegment};
use asr_pipeline::ErrorKind;
use botlhale_emulator::{Emulator, EmulatorConfig, RunningEmulator};

const SR: u64 = 16_000;
/// 10 ms in samples: the acceptance tolerance.
const TOL: u64 = 160;

pub(crate) fn units() -> Vec<Arc<Vec<i16>>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/speech");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "speech units in {}", dir.display());
    names
        .iter()
        .map(|p| {
            let mut r = hound::WavReader::open(p).unwrap();
            assert_eq!(r.spec().sample_rate, 16_000);
            let x: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
            // Sharp edges (first and last sample at ≥ 0.05 of full scale), so that where a
            // unit is heard does not depend on how a detector's frames fall on it.
            let loud = |s: &i16| s.unsigned_abs() >= 1638;
            let a = x.iter().position(loud).unwrap();
            let b = x.iter().rposition(loud).unwrap() + 1;
            Arc::new(x[a..b].to_vec())
        })
        .collect()
}

/// Where a unit was put: `[start, end)` in samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// Places `units[k]` at each `(position, k)`; returns the placements.
pub(crate) fn place(units: &[Arc<Vec<i16>>], at: &[(u64, usize)]) -> Vec<(Placed, Arc<Vec<i16>>)> {
    at.iter()
        .map(|&(pos, k)| {
            let u = units[k % units.len()].clone();
            (
                Placed {
                    start: pos,
                    end: pos + u.len() as u64,
                },
                u,
            )
        })
        .collect()
}

/// The whole signal: units in digital silence with a faint deterministic noise floor
/// (−80 dBFS).
pub(crate) fn render(len: u64, placed: &[(Placed, Arc<Vec<i16>>)]) -> Vec<i16> {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut x: Vec<i16> = (0..len).map(|_| rng.i16(-3..=3)).collect();
    for (p, u) in placed {
        for (i, &s) in u.iter().enumerate() {
            x[p.start as usize + i] = s;
        }
    }
    x
}

fn write_wav(path: &Path, x: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in x {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

pub(crate) async fn emulator() -> RunningEmulator {
    let mut cfg = EmulatorConfig::default();
    cfg.async_base_delay = Duration::from_millis(20);
    cfg.async_speed = 1.0e7;
    Emulator::start(cfg).await.unwrap()
}

fn client(emu: &RunningEmulator) -> Client {
    Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
        .org_id(emu.org_id())
        .build()
        .unwrap()
}

fn fast_poll() -> PollOptions {
    PollOptions::default().with_delays(
        Duration::from_millis(30),
        Duration::from_millis(200),
        Duration::from_secs(600),
    )
}

pub(crate) fn builder(emu: &RunningEmulator) -> PipelineBuilder {
    Pipeline::builder()
        .client(client(emu))
        .poll_options(Some(fast_poll()))
}

fn crc32(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut c = !0u32;
    for b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The CRC the emulator reports for audio the pipeline sent as 16-bit WAV: quantised by the
/// sender, read back as `q / 32768`, re-quantised by the emulator (`round(x * 32767)`).
fn emulator_crc(audio: &[f32]) -> u32 {
    crc32(audio.iter().flat_map(|&x| {
        let q1 = asr_pipeline::encode::quantize(x);
        let y = f32::from(q1) * (1.0 / 32768.0);
        let q2 = (y.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        q2.to_le_bytes()
    }))
}

/// Parses `[emulator] 12.345 s, crc32 0a1b2c3d`.
fn parse_sync_text(t: &str) -> (f64, u32) {
    let rest = t
        .strip_prefix("[emulator] ")
        .unwrap_or_else(|| panic!("{t:?}"));
    let (secs, crc) = rest
        .split_once(" s, crc32 ")
        .unwrap_or_else(|| panic!("{t:?}"));
    (secs.parse().unwrap(), u32::from_str_radix(crc, 16).unwrap())
}

/// Every unit's results start and end within 10 ms of where the unit was put on the original
/// timeline; no result outside a unit; a unit never split between parts. (The units have
/// sharp edges, so the emulator's energy detector hears them exactly at their first and last
/// sample, whatever the phase of its 10 ms frames.)
pub(crate) fn assert_on_true_times(t: &Transcript, placed: &[(Placed, Arc<Vec<i16>>)]) {
    assert!(!t.segments.is_empty());
    for s in &t.segments {
        let hits = placed
            .iter()
            .filter(|(p, _)| s.start < p.end + TOL && p.start < s.end + TOL)
            .count();
        assert_eq!(hits, 1, "result {s:?} lies on exactly one unit");
    }
    let mut worst = 0;
    for (p, _) in placed {
        let (ta, tb) = (p.start as i64, p.end as i64);
        let mine: Vec<&TranscriptSegment> = t
            .segments
            .iter()
            .filter(|s| s.start < p.end + TOL && p.start < s.end + TOL)
            .collect();
        assert!(!mine.is_empty(), "unit at {p:?} has a result");
        let a = mine.iter().map(|s| s.start).min().unwrap() as i64;
        let b = mine.iter().map(|s| s.end).max().unwrap() as i64;
        assert!(
            (a - ta).abs() <= TOL as i64 && (b - tb).abs() <= TOL as i64,
            "unit put at {}..{} ms came back at {}..{} ms",
            ta / 16,
            tb / 16,
            a / 16,
            b / 16
        );
        worst = worst.max((a - ta).abs()).max((b - tb).abs());
        let parts: Vec<Source> = mine.iter().map(|s| s.source).collect();
        assert!(
            parts.windows(2).all(|w| w[0] == w[1]),
            "a unit is never split between parts: {parts:?}"
        );
    }
    eprintln!(
        "largest timing error: {worst} samples ({:.3} ms)",
        worst as f64 / 16.0
    );
}

/// Requests that upload (upload forms and storage POSTs) the emulator has seen.
pub(crate) fn upload_requests(emu: &RunningEmulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.path.contains("upload") || r.path.starts_with("/s3"))
        .count()
}

/// The uploads reported in `events` (what a batch journals), through a JSON round trip as the
/// CLI stores them.
pub(crate) fn journaled(events: &[Progress]) -> Vec<UploadedPart> {
    let v: Vec<UploadedPart> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Uploaded(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap()
}

pub(crate) fn collector() -> (
    Arc<Mutex<Vec<Progress>>>,
    impl Fn(&Progress) + Send + Sync + 'static,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    (events, move |p: &Progress| {
        e2.lock().unwrap().push(p.clone())
    })
}

/// Positions over `secs` seconds: a unit every `every` seconds (jittered), gaps ≥ 0.5 s.
fn positions(secs: u64, every: f64, seed: u64) -> Vec<(u64, usize)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = Vec::new();
    let mut t = SR / 2;
    let mut k = 0;
    while t + 3 * SR < secs * SR {
        v.push((t, k));
        k += 1;
        t += 2 * SR + (rng.f64() * every * SR as f64) as u64;
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_route_results_sit_exactly_where_their_audio_was() {
    let units = units();
    let len = 150 * SR + 1234;
    let placed = place(&units, &positions(150, 6.0, 1));
    let signal = render(len, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many units.wav");
    write_wav(&path, &signal);

    let emu = emulator().await;
    let (events, sink) = collector();
    let p = builder(&emu)
        .route(Route::Sync)
        .concurrency(3)
        .build()
        .unwrap();
    let t = p.transcribe(Job::path(&path).progress(sink)).await.unwrap();
    assert_eq!(t.metadata.route, Route::Sync);
    assert_eq!(t.metadata.source, "many units.wav");
    assert_eq!(t.metadata.duration, len);
    assert!(!t.metadata.no_speech);
    assert_eq!(t.metadata.requests, t.segments.len() as u64);
    assert_eq!(t.metadata.segments_planned, t.segments.len() as u64);
    assert!(t.segments.len() >= 3, "{}", t.segments.len());

    // The reference: the original audio through the same DC filter, then each result's span
    // normalised on its own, as the pipeline does per segment.
    let mut reference: Vec<f32> = signal.iter().map(|&s| f32::from(s) / 32768.0).collect();
    DcBlocker::new().process(&mut reference);
    // What each request sent: its kept stretches (long silences between units left out).
    let kept: Vec<Vec<(usize, usize)>> = {
        let events = events.lock().unwrap();
        let mut v: Vec<(usize, Vec<(usize, usize)>)> = events
            .iter()
            .filter_map(|e| match e {
                Progress::SegmentPlanned { index, kept, .. } => Some((
                    *index,
                    kept.iter()
                        .map(|k| {
                            (
                                (k[0] * SR as f64).round() as usize,
                                (k[1] * SR as f64).round() as usize,
                            )
                        })
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    };
    assert_eq!(kept.len(), t.segments.len());
    let mut sent = 0;
    let mut shortened = 0;
    for (i, s) in t.segments.iter().enumerate() {
        assert_eq!(s.source, Source::Sync { segment: i });
        let spans = &kept[i];
        assert_eq!(spans.first().map(|k| k.0 as u64), Some(s.start));
        assert_eq!(spans.last().map(|k| k.1 as u64), Some(s.end));
        let billed: usize = spans.iter().map(|k| k.1 - k.0).sum();
        shortened += usize::from(spans.len() > 1);
        assert!(billed as u64 <= 60 * SR);
        let (secs, crc) = parse_sync_text(&s.text);
        assert!(
            (secs - billed as f64 / SR as f64).abs() < 0.0011,
            "{secs} s vs {s:?}"
        );
        let mut audio: Vec<f32> = spans
            .iter()
            .flat_map(|&(a, b)| reference[a..b].iter().copied())
            .collect();
        normalize_in_place(&mut audio, &NormalizeOptions::default());
        assert_eq!(
            crc,
            emulator_crc(&audio),
            "result {i} at {}..{} carries exactly the audio of that span",
            s.start,
            s.end
        );
        sent += billed as u64;
    }
    assert!(
        shortened > 0,
        "packed requests leave the long gaps between units out"
    );
    assert!((t.metadata.audio_seconds_sent - sent as f64 / SR as f64).abs() < 1e-6);
    for (u, _) in &placed {
        assert!(
            t.segments
                .iter()
                .any(|s| s.start <= u.start && u.end <= s.end),
            "unit {u:?} inside one segment"
        );
    }
    let asr = emu
        .requests()
        .iter()
        .filter(|r| r.path == "/asr" && r.status == 200)
        .count();
    assert_eq!(asr, t.segments.len());

    let events = events.lock().unwrap();
    let count = |f: &dyn Fn(&Progress) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(
        count(&|e| matches!(e, Progress::SegmentSent { .. })),
        t.segments.len()
    );
    assert_eq!(
        count(&|e| matches!(e, Progress::SegmentDone { .. })),
        t.segments.len()
    );
    let last_decoded = events
        .iter()
        .filter_map(|e| match e {
            Progress::Decoded { seconds, .. } => Some(*seconds),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert!((last_decoded - len as f64 / SR as f64).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_route_results_land_at_true_times() {
    let units = units();
    let len = 90 * SR;
    let at = positions(90, 4.0, 2);
    let placed = place(&units, &at);
    let signal = render(len, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("async.wav");
    write_wav(&path, &signal);

    let emu = emulator().await;
    // The emulator finds sound with a fixed −40 dBFS detector, so the level is left as
    // recorded here: the test is about time, not loudness.
    // Everything uploaded (`remove_silence(None)`), then by default: stretches without speech
    // of 2 s or more left out, restored by the time map.
    let whole = builder(&emu)
        .route(Route::Auto)
        .diarization(true)
        .normalize(None)
        .remove_silence(None)
        .temp_dir(dir.path())
        .build()
        .unwrap();
    let t = whole.transcribe_path(&path).await.unwrap();
    assert!((t.metadata.audio_seconds_sent - 90.0).abs() < 1e-6);
    assert_on_true_times(&t, &placed);
    let p = builder(&emu)
        .route(Route::Auto)
        .diarization(true)
        .normalize(None)
        .temp_dir(dir.path())
        .build()
        .unwrap();
    assert_eq!(p.route(), Route::Async, "auto + diarization → async");
    let t = p.transcribe_path(&path).await.unwrap();
    assert_eq!(t.metadata.route, Route::Async);
    assert_eq!(t.metadata.duration, len);
    assert_eq!(t.metadata.parts.len(), 1);
    assert_eq!(t.metadata.parts[0].offset, 0);
    let speech: f64 = placed
        .iter()
        .map(|(span, _)| (span.end - span.start) as f64 / 16_000.0)
        .sum();
    eprintln!(
        "sent {:.1} s of 90 s for {speech:.1} s of speech",
        t.metadata.audio_seconds_sent
    );
    assert!(t.metadata.audio_seconds_sent < 90.0 && t.metadata.audio_seconds_sent >= speech);
    assert_on_true_times(&t, &placed);
    for s in &t.segments {
        assert!(matches!(
            s.speaker.as_deref(),
            Some("speaker_0" | "speaker_1")
        ));
        assert_eq!(s.source, Source::Async { part: 0 });
    }
    // The temporary FLAC is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("async.wav")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_with_silences_removed_maps_back_to_original_times() {
    let units = units();
    let len = 240 * SR;
    // Speech in clusters separated by long silences.
    let at: Vec<(u64, usize)> = [3.0, 5.5, 61.0, 64.0, 66.5, 150.0, 232.0]
        .iter()
        .enumerate()
        .map(|(k, &s)| ((s * SR as f64) as u64, k))
        .collect();
    let placed = place(&units, &at);
    let signal = render(len, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.wav");
    write_wav(&path, &signal);

    let emu = emulator().await;
    let p = builder(&emu)
        .route(Route::Async)
        .normalize(None)
        .remove_silence(Some(Duration::from_secs(3)))
        .build()
        .unwrap();
    let t = p.transcribe_path(&path).await.unwrap();
    assert!(
        t.metadata.audio_seconds_sent < 40.0,
        "only speech and a little silence uploaded: {} s",
        t.metadata.audio_seconds_sent
    );
    assert_eq!(t.metadata.duration, len);
    assert_on_true_times(&t, &placed);
}

/// A WAV file that is never stored: a 44-byte header, then 16-bit samples computed on the fly
/// (silence, with units at their positions).
struct SynthWav {
    len: u64,
    pos: u64,
    placed: Vec<(Placed, Arc<Vec<i16>>)>,
    /// Bytes read so far.
    read: Arc<AtomicU64>,
}

impl SynthWav {
    fn header(&self) -> [u8; 44] {
        let data = (self.len * 2) as u32;
        let mut h = [0u8; 44];
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
        h[8..16].copy_from_slice(b"WAVEfmt ");
        h[16..20].copy_from_slice(&16u32.to_le_bytes());
        h[20..22].copy_from_slice(&1u16.to_le_bytes());
        h[22..24].copy_from_slice(&1u16.to_le_bytes());
        h[24..28].copy_from_slice(&16_000u32.to_le_bytes());
        h[28..32].copy_from_slice(&32_000u32.to_le_bytes());
        h[32..34].copy_from_slice(&2u16.to_le_bytes());
        h[34..36].copy_from_slice(&16u16.to_le_bytes());
        h[36..40].copy_from_slice(b"data");
        h[40..44].copy_from_slice(&data.to_le_bytes());
        h
    }
    fn total(&self) -> u64 {
        44 + 2 * self.len
    }
}

impl Read for SynthWav {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64)
            .min(self.total().saturating_sub(self.pos))
            .min(1 << 16) as usize;
        let buf = &mut buf[..n];
        buf.fill(0);
        let h = self.header();
        for (i, b) in buf.iter_mut().enumerate() {
            let at = self.pos + i as u64;
            if at < 44 {
                *b = h[at as usize];
            } else {
                break;
            }
        }
        let (lo, hi) = (self.pos, self.pos + n as u64);
        for (p, u) in &self.placed {
            let (ua, ub) = (44 + 2 * p.start, 44 + 2 * p.end);
            for at in ua.max(lo)..ub.min(hi) {
                let k = ((at - ua) / 2) as usize;
                let bytes = u[k].to_le_bytes();
                buf[(at - lo) as usize] = bytes[((at - ua) % 2) as usize];
            }
        }
        self.pos += n as u64;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for SynthWav {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.total() as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if p < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "negative seek",
            ));
        }
        self.pos = p as u64;
        Ok(self.pos)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_400_minutes_is_sent_in_parts_merged_at_their_offsets() {
    let units = units();
    let min = 60 * SR;
    let len = 410 * min + 777;
    let at = [
        (30 * SR, 0),
        (200 * min, 1),
        // straddles the 400-minute mark: must not be cut
        (400 * min - SR / 2, 2),
        (405 * min, 3),
        (len - 3 * SR, 4),
    ];
    let placed = place(&units, &at);
    let wav = SynthWav {
        len,
        pos: 0,
        placed: placed.clone(),
        read: Arc::default(),
    };
    let emu = emulator().await;
    let (events, sink) = collector();
    // Everything uploaded: mostly silence, the file would fit one part otherwise.
    let p = builder(&emu)
        .route(Route::Async)
        .normalize(None)
        .remove_silence(None)
        .build()
        .unwrap();
    let t = p
        .transcribe(Job::reader(wav, "long call.wav").progress(sink))
        .await
        .unwrap();
    assert_eq!(t.metadata.duration, len);
    let parts = &t.metadata.parts;
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].offset, 0);
    assert_eq!(parts[1].offset, parts[0].duration, "parts are contiguous");
    assert_eq!(parts[1].offset + parts[1].duration, len);
    for part in parts {
        assert!(part.duration <= 400 * min);
    }
    // cut in the silence between the units at 200 and ~400 minutes
    assert!(parts[1].offset > placed[1].0.end && parts[1].offset < placed[2].0.start);
    assert_on_true_times(&t, &placed);
    assert!(t
        .segments
        .iter()
        .any(|s| s.source == Source::Async { part: 1 }));
    let uploaded: Vec<UploadedPart> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Progress::Uploaded(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(uploaded.len(), 2);
    assert_eq!(uploaded[1].offset, parts[1].offset);
    assert_eq!(uploaded[1].file_name, parts[1].file_name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_async_jobs_are_polled_not_uploaded_again() {
    let units = units();
    let len = 40 * SR;
    let placed = place(&units, &positions(40, 3.0, 3));
    let signal = render(len, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resume.wav");
    write_wav(&path, &signal);

    let emu = emulator().await;
    let p = builder(&emu)
        .route(Route::Async)
        .normalize(None)
        .build()
        .unwrap();
    let (events, sink) = collector();
    let first = p.transcribe(Job::path(&path).progress(sink)).await.unwrap();
    let journal = journaled(&events.lock().unwrap());
    assert_eq!(journal.len(), 1);
    emu.clear_requests();
    let again = p
        .transcribe(Job::path(&path).resume(journal.clone()))
        .await
        .unwrap();
    assert_eq!(again.segments, first.segments);
    assert_eq!(upload_requests(&emu), 0, "{:?}", emu.requests());
    // A complete journal does not even need the audio.
    std::fs::remove_file(&path).unwrap();
    let third = p
        .transcribe(Job::path(&path).resume(journal))
        .await
        .unwrap();
    assert_eq!(third.segments, first.segments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_speech_is_an_empty_transcript_without_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quiet.wav");
    write_wav(&path, &render(20 * SR, &[]));
    let emu = emulator().await;
    for route in [Route::Sync, Route::Async] {
        let p = builder(&emu).route(route).build().unwrap();
        let t = p.transcribe_path(&path).await.unwrap();
        assert!(t.metadata.no_speech, "{route:?}");
        assert!(t.segments.is_empty());
        assert_eq!(t.metadata.requests, 0);
        assert_eq!(t.metadata.duration, 20 * SR);
    }
    let calls = emu
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/asr"))
        .count();
    assert_eq!(calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_give_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty file.wav");
    std::fs::write(&empty, b"").unwrap();
    let junk = dir.path().join("junk.mp3");
    std::fs::write(
        &junk,
        b"this is not audio at all, just some text ...".repeat(50),
    )
    .unwrap();
    let missing = dir.path().join("missing.wav");
    let emu = emulator().await;
    for route in [Route::Sync, Route::Async] {
        let p = builder(&emu).route(route).build().unwrap();
        for (path, name) in [
            (&empty, "empty file.wav"),
            (&junk, "junk.mp3"),
            (&missing, "missing.wav"),
        ] {
            let e = p.transcribe_path(path).await.unwrap_err();
            assert!(e.to_string().contains(name), "{route:?}: {e}");
            assert_eq!(e.path(), Some(path.as_path()), "{e}");
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Empty { .. }
                        | ErrorKind::UnrecognizedFormat { .. }
                        | ErrorKind::Io { .. }
                ),
                "{e:?}"
            );
        }
    }
    assert_eq!(
        emu.requests()
            .iter()
            .filter(|r| r.path.starts_with("/asr"))
            .count(),
        0
    );
}

#[test]
fn split_only_writes_segments_and_a_manifest() {
    let units = units();
    let placed = place(&units, &positions(60, 5.0, 4));
    let signal = render(60 * SR, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.wav");
    write_wav(&path, &signal);
    let out = dir.path().join("out");
    let plan = split_only(&path, &out, &SplitOptions::default()).unwrap();
    assert!(!plan.segments.is_empty());
    let manifest =
        SegmentPlan::from_json(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest, plan);
    assert_eq!(plan.total_samples, 60 * SR);
    for s in &plan.segments {
        let f = out.join(s.file.as_deref().unwrap());
        let r = hound::WavReader::open(&f).unwrap();
        let billed: u64 = s.spans.iter().map(|k| k[1] - k[0]).sum();
        assert_eq!(u64::from(r.len()), billed);
        assert_eq!(s.spans.first().map(|k| k[0]), Some(s.start_sample));
        assert_eq!(s.spans.last().map(|k| k[1]), Some(s.end_sample));
        assert_eq!(s.start_ms, (s.start_sample + 8) / 16);
    }
    for (u, _) in &placed {
        assert!(plan
            .segments
            .iter()
            .any(|s| s.start_sample <= u.start && u.end <= s.end_sample));
    }
    // segment files + manifest, nothing else
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        plan.segments.len() + 1
    );
}

#[test]
fn a_nan_or_an_infinity_in_a_float_wav_does_not_silence_the_rest_of_the_file() {
    // The same kind of file as above, stored as 32-bit float with a NaN, infinities and values
    // beyond full scale near the start: left in, a NaN would spread through the resampler and
    // the DC blocker and nothing after it would be found.
    let units = units();
    let placed = place(&units, &positions(30, 5.0, 3));
    let signal = render(30 * SR, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("float.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    // (where, what is written, what the decoder hands out)
    let bad = [
        (1_000, f32::NAN, 0.0),
        (1_001, f32::INFINITY, 0.0),
        (2_000, f32::NEG_INFINITY, 0.0),
        (2_500, 3.0e38, 1.0),
        (2_501, -1.5, -1.0),
    ];
    for (i, &v) in signal.iter().enumerate() {
        let v = bad
            .iter()
            .find(|b| b.0 == i)
            .map_or(f32::from(v) / 32_768.0, |b| b.1);
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    assert!(placed.iter().all(|(u, _)| u.start > 2_501));

    let mut d = asr_pipeline::decode::Decoder::open(&path).unwrap();
    let mut x = Vec::new();
    while d.read_mono(&mut x).unwrap() > 0 {}
    assert_eq!(x.len(), signal.len());
    for (i, (&got, &want)) in x.iter().zip(&signal).enumerate() {
        let want = bad
            .iter()
            .find(|b| b.0 == i)
            .map_or(f32::from(want) / 32_768.0, |b| b.2);
        assert_eq!(got.to_bits(), want.to_bits(), "sample {i}");
    }

    let out = dir.path().join("out");
    let plan = split_only(&path, &out, &SplitOptions::default()).unwrap();
    for (u, _) in &placed {
        assert!(
            plan.segments
                .iter()
                .any(|s| s.start_sample <= u.start && u.end <= s.end_sample),
            "the unit at {}..{} is in no segment",
            u.start,
            u.end
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_48_khz_stereo_file_comes_back_on_its_own_timeline() {
    // The same units at 48 kHz (each 16 kHz sample held for 3 frames), stereo: the decoder
    // downmixes, the resampler brings it to 16 kHz with its delay compensated; times must
    // still land within 10 ms.
    let units = units();
    let len = 60 * SR;
    let placed = place(&units, &positions(60, 4.0, 6));
    let signal = render(len, &placed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("48k stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &s in &signal {
        for _ in 0..3 {
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
    let emu = emulator().await;
    let p = builder(&emu)
        .route(Route::Async)
        .normalize(None)
        .build()
        .unwrap();
    let t = p.transcribe_path(&path).await.unwrap();
    assert_eq!(t.metadata.duration, len);
    assert_on_true_times(&t, &placed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_run_stops_decoding() {
    // A 400-minute input on both routes: the run is dropped after a moment; its decoding
    // thread must stop soon after instead of reading the whole file.
    let units = units();
    let emu = emulator().await;
    for route in [Route::Sync, Route::Async] {
        let read = Arc::new(AtomicU64::new(0));
        let wav = SynthWav {
            len: 400 * 60 * SR,
            pos: 0,
            placed: place(&units, &[(SR, 0), (100 * 60 * SR, 1)]),
            read: read.clone(),
        };
        let p = builder(&emu).route(route).build().unwrap();
        let run = p.transcribe(Job::reader(wav, "abandoned.wav"));
        assert!(tokio::time::timeout(Duration::from_millis(300), run)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = read.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = read.load(Ordering::Relaxed);
        assert_eq!(a, b, "{route:?}: still decoding after the run was dropped");
        assert!(b < 400 * 60 * SR, "{route:?}: read {b} bytes");
    }
}

/// A pipeline whose client never retries, against an emulator whose `/asr` answers 500 to a
/// seed-determined fraction of requests.
async fn flaky_sync(rate: f64) -> (RunningEmulator, Pipeline) {
    let mut cfg = EmulatorConfig::default();
    let mut f = botlhale_emulator::FaultConfig::with_rate(rate);
    f.kinds = vec![botlhale_emulator::FaultKind::InternalError];
    f.max_consecutive = None;
    f.routes = Some(vec!["/asr".into()]);
    cfg.faults = f;
    let emu = Emulator::start(cfg).await.unwrap();
    let client = Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
        .org_id(emu.org_id())
        .retry(asr_pipeline::botlhale::RetryPolicy::new(
            1,
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .build()
        .unwrap();
    let p = Pipeline::builder()
        .client(client)
        .route(Route::Sync)
        .concurrency(2)
        // one segment per utterance: many requests
        .segmenter(asr_pipeline::segment::SegmenterOptions::default())
        .build()
        .unwrap();
    (emu, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_segment_is_recorded_and_the_others_kept() {
    let units = units();
    let len = 60 * SR;
    let placed = place(&units, &positions(60, 3.0, 2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flaky.wav");
    write_wav(&path, &render(len, &placed));
    let (emu, p) = flaky_sync(0.4).await;
    let (events, sink) = collector();
    let t = p.transcribe(Job::path(&path).progress(sink)).await.unwrap();
    let planned = t.metadata.segments_planned as usize;
    let failed = &t.metadata.failed_segments;
    assert!(!failed.is_empty(), "the seed makes some requests fail");
    assert!(!t.segments.is_empty(), "the others are kept");
    assert_eq!(failed.len() + t.segments.len(), planned);
    // Every planned segment is either in the transcript or recorded as failed, once.
    let mut seen: Vec<usize> = t
        .segments
        .iter()
        .map(|s| match s.source {
            Source::Sync { segment } => segment,
            other => panic!("{other:?}"),
        })
        .chain(failed.iter().map(|f| f.index))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..planned).collect::<Vec<_>>());
    // Each failure carries its segment's times and the server's refusal.
    let events = events.lock().unwrap();
    for f in failed {
        let planned_at = events
            .iter()
            .find_map(|e| match e {
                Progress::SegmentPlanned {
                    index, start, end, ..
                } if *index == f.index => Some((*start, *end)),
                _ => None,
            })
            .unwrap();
        assert!((planned_at.0 - f.start as f64 / SR as f64).abs() < 1e-6);
        assert!((planned_at.1 - f.end as f64 / SR as f64).abs() < 1e-6);
        assert!(f.error.contains("500"), "{}", f.error);
        assert!(events
            .iter()
            .any(|e| matches!(e, Progress::SegmentFailed { index, .. } if *index == f.index)));
    }
    let refused = emu
        .requests()
        .iter()
        .filter(|r| r.path == "/asr" && r.status == 500)
        .count();
    assert_eq!(refused, failed.len());
    // Serialised, and back.
    let json = asr_pipeline::export::Format::Json.render(&t).unwrap();
    assert!(json.contains("\"failed_segments\""));
    let back = Transcript::from_json(&json).unwrap();
    assert_eq!(back.metadata.failed_segments.len(), failed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_fails_only_when_every_segment_failed() {
    let units = units();
    let len = 20 * SR;
    let placed = place(&units, &positions(20, 3.0, 3));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all fail.wav");
    write_wav(&path, &render(len, &placed));
    let (_emu, p) = flaky_sync(1.0).await;
    let e = p.transcribe_path(&path).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Api { status: 500, .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_transcribed_up_to_the_break() {
    let units = units();
    let len = 40 * SR;
    let placed = place(&units, &positions(40, 3.0, 4));
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.wav");
    write_wav(&whole, &render(len, &placed));
    let mut bytes = std::fs::read(&whole).unwrap();
    // Cut 15 s before the end, mid-sample; the header still announces 40 s.
    bytes.truncate(bytes.len() - 15 * SR as usize * 2 - 1);
    let kept = (bytes.len() - 44) / 2;
    let path = dir.path().join("cut.wav");
    std::fs::write(&path, &bytes).unwrap();
    let emu = emulator().await;
    for route in [Route::Sync, Route::Async] {
        let t = builder(&emu)
            .route(route)
            .build()
            .unwrap()
            .transcribe_path(&path)
            .await
            .unwrap();
        let tr = t.metadata.truncated.as_ref().expect("truncation recorded");
        assert!(
            (tr.decoded_secs - kept as f64 / SR as f64).abs() < 1e-3,
            "{tr:?} vs {kept}"
        );
        assert!(!tr.what.is_empty());
        assert_eq!(t.metadata.duration, kept as u64, "{route:?}");
        assert!(!t.segments.is_empty(), "{route:?}");
        assert!(t.segments.iter().all(|s| s.end <= kept as u64));
        let json = asr_pipeline::export::Format::Json.render(&t).unwrap();
        assert!(json.contains("\"truncated\""));
    }
    // Opting out: the decoder's error, as before.
    let e = builder(&emu)
        .route(Route::Sync)
        .keep_truncated(false)
        .build()
        .unwrap()
        .transcribe_path(&path)
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Truncated { .. }), "{e}");
    // A whole file says nothing about truncation.
    let t = builder(&emu)
        .route(Route::Sync)
        .build()
        .unwrap()
        .transcribe_path(&whole)
        .await
        .unwrap();
    assert!(t.metadata.truncated.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_upload_progress_is_forwarded_per_mib() {
    let units = units();
    let len = 120 * SR;
    let placed = place(&units, &positions(120, 3.0, 6));
    // Loud noise under the speech: the FLAC part is several MiB.
    let mut signal = render(len, &placed);
    let mut rng = fastrand::Rng::with_seed(9);
    for s in &mut signal {
        *s = s.saturating_add(rng.i16(-8000..=8000));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loud.wav");
    write_wav(&path, &signal);
    let emu = emulator().await;
    let (events, sink) = collector();
    let p = builder(&emu)
        .route(Route::Async)
        .normalize(None)
        .build()
        .unwrap();
    p.transcribe(Job::path(&path).progress(sink)).await.unwrap();
    let events = events.lock().unwrap();
    let up: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Progress::UploadBytes {
                part: 0,
                sent,
                total,
            } => Some((*sent, *total)),
            _ => None,
        })
        .collect();
    let total = up.last().unwrap().1;
    assert!(total > 2 << 20, "part of {total} bytes");
    assert_eq!(up.last().unwrap().0, total);
    // One event per MiB passed, plus the end (and the start at 0).
    let mib = total >> 20;
    assert!(up.len() as u64 > mib, "{up:?}");
    for w in up.windows(2) {
        assert!(w[0].0 <= w[1].0, "{up:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_max_len_is_an_option() {
    let units = units();
    let len = 60 * SR;
    let placed = place(&units, &positions(60, 1.0, 8));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turns.wav");
    write_wav(&path, &render(len, &placed));
    let emu = emulator().await;
    let run = |max: Duration| {
        let p = builder(&emu)
            .route(Route::Async)
            .diarization(true)
            .join_speaker_turns(Some(Duration::from_secs(10)))
            .join_max_len(max)
            .build()
            .unwrap();
        let path = path.clone();
        async move { p.transcribe_path(&path).await.unwrap() }
    };
    let long = run(Duration::from_secs(3600)).await;
    let short = run(Duration::from_secs(5)).await;
    assert!(
        long.segments.len() < short.segments.len(),
        "{} vs {}",
        long.segments.len(),
        short.segments.len()
    );
    // The limit is what bounds joining: the longest joined turn outgrows the short limit.
    let longest = |t: &asr_pipeline::transcript::Transcript| {
        t.segments
            .iter()
            .map(|s| s.end - s.start)
            .max()
            .unwrap_or(0)
    };
    assert!(
        longest(&long) > longest(&short) && longest(&long) > 10 * SR,
        "{} vs {}",
        longest(&long),
        longest(&short)
    );
}

/// A 410-minute call between two voices, with diarization: it goes up in two parts, and the
/// emulator, like the service, numbers speakers per job in the order it first hears them.
/// The second part's lead-in (the end of the first, heard by both jobs) matches its speakers
/// to the first part's: each voice keeps one label over the whole file, and what is said in
/// the lead-in is transcribed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_voices_keep_their_labels_across_the_parts_of_a_410_minute_file() {
    let min = 60 * SR;
    let len = 410 * min;
    // The emulator tells voices apart by pitch: a low and a high voice, 2.5 s turns.
    let voice = |hz: f64| -> Arc<Vec<i16>> {
        let n = 5 * SR / 2;
        Arc::new(
            (0..n)
                .map(|i| {
                    let t = i as f64 / SR as f64;
                    let am = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
                    (9000.0 * am * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                })
                .collect(),
        )
    };
    let voices = [voice(200.0), voice(900.0)];
    // Turns every 8 s, alternating, the high voice first; the second part's job happens to
    // hear the low voice first, so it numbers the voices the other way round (checked
    // below). A real speech unit at the start and the end gives the detector speech.
    let mut at: Vec<(u64, usize)> = (0..len / (8 * SR) - 1)
        .map(|k| (8 * SR * k + 4 * SR, ((k + 1) % 2) as usize))
        .collect();
    let mut placed = place(&voices, &at);
    let units = units();
    at = vec![(SR / 2, 0), (len - 3 * SR, 1)];
    let speech = place(&units, &at);
    placed.extend(speech.iter().cloned());
    placed.sort_by_key(|(p, _)| p.start);
    let wav = SynthWav {
        len,
        pos: 0,
        placed: placed.clone(),
        read: Arc::default(),
    };
    let emu = emulator().await;
    let p = builder(&emu)
        .route(Route::Async)
        .diarization(true)
        .normalize(None)
        .remove_silence(None)
        .build()
        .unwrap();
    let t = p
        .transcribe(Job::reader(wav, "long two-voice call.wav"))
        .await
        .unwrap();
    let parts = &t.metadata.parts;
    assert_eq!(parts.len(), 2, "{parts:?}");
    let lead = parts[1].lead_in;
    assert!(
        lead >= 3 * min - SR && lead <= 3 * min + SR,
        "lead-in {lead}"
    );
    let own_from = parts[1].offset + lead;
    assert_eq!(own_from, parts[0].offset + parts[0].duration);
    let m = parts[1]
        .speakers
        .as_ref()
        .expect("part 2's speakers matched");
    assert!(m.unmatched.is_empty(), "{m:?}");
    // The second job did number the voices the other way round.
    assert_eq!(
        m.labels.get("speaker_0").map(String::as_str),
        Some("speaker_1"),
        "{m:?}"
    );
    // Each voice one label over the whole file, the two different; every turn once (the
    // one the part boundary falls in, if any, in two pieces).
    let mut labels: [std::collections::BTreeSet<String>; 2] = Default::default();
    let tones: Vec<(&Placed, usize)> = placed
        .iter()
        .filter_map(|(p, u)| {
            voices
                .iter()
                .position(|v| Arc::ptr_eq(v, u))
                .map(|k| (p, k))
        })
        .collect();
    let mut heard = vec![0usize; tones.len()];
    for s in &t.segments {
        let hit = tones
            .iter()
            .position(|(p, _)| s.start < p.end + TOL && p.start < s.end + TOL);
        if let Some(i) = hit {
            heard[i] += 1;
            labels[tones[i].1].insert(s.speaker.clone().unwrap_or_default());
        }
    }
    assert_eq!(labels[0].len(), 1, "low voice labels {:?}", labels[0]);
    assert_eq!(labels[1].len(), 1, "high voice labels {:?}", labels[1]);
    assert_ne!(labels[0], labels[1]);
    for (i, (p, _)) in tones.iter().enumerate() {
        let straddles = p.start < own_from && own_from < p.end;
        assert!(
            heard[i] == 1 || (straddles && heard[i] == 2),
            "turn at {} s heard {} times",
            p.start / SR,
            heard[i]
        );
    }
}
