//! The routes' stream loop on three threads: decoding and 16 kHz on one, the frame analysis of
//! the voice detector (energy gate, tone features, the state-free half of the speech model) on
//! a second, and the caller's body (the recurrent half, segmentation, encoding) on the
//! calling thread, with bounded queues between them so that memory stays flat.
//!
//! Every stage sees the blocks in order and the analysis depends on the audio alone, so the
//! results are exactly those of one thread ([`crate::vad::Analyser`]); only the wall time
//! changes. When as many files are already being read as the machine has cores (a batch with
//! `--jobs` ≥ cores), the loop runs on the calling thread alone: more threads would only
//! compete for the same cores.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver};

use super::source::{keep_truncation, DecodeReporter, Drove, Stream};
use crate::channels::Choice;
use crate::stream::TrackOptions;
use crate::vad::{Analysed, Analyser, VadOptions};
use crate::{Error, Result};

/// Blocks (of about 1 s) that may wait in each queue. With 4, two cores were busy 1.7 of 2
/// on a FLAC hour (the stages' bursts stalled each other); 16 brought it to 1.9 for 3 MB.
const QUEUE: usize = 16;

/// The stream options for [`drive_ahead`]: blocks of at least 1 s (fewer hand-overs between
/// the threads).
pub(super) fn track_options() -> TrackOptions {
    TrackOptions {
        min_block: crate::time::RATE as usize,
        ..TrackOptions::default()
    }
}

/// Streams read through [`drive_ahead`] right now, in this process.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// One block of every chosen track with the frames its analysis completed.
pub(super) struct Ahead<'a> {
    /// The tracks' samples, all of the same length (empty in the last call, which brings the
    /// analysis of the incomplete final frames).
    pub(super) tracks: &'a [Vec<f32>],
    /// Per track, the frames completed with this block (see
    /// [`crate::segment::Segmenter::push_analysed`]).
    pub(super) frames: &'a [Vec<Analysed>],
    /// What the tracks are.
    pub(super) choice: &'a Choice,
}

/// A decoded block on its way to the analysis.
struct Decoded {
    tracks: Vec<Vec<f32>>,
    /// With the first block only.
    choice: Option<Choice>,
}

enum ToAnalysis {
    Block(Decoded),
    /// The input ended (not on an error): the analysers' last frames may go.
    End,
}

/// An analysed block on its way to the body.
struct Ready {
    tracks: Vec<Vec<f32>>,
    frames: Vec<Vec<Analysed>>,
    choice: Option<Choice>,
}

/// Counts a stream in [`ACTIVE`] while it lives.
pub(super) struct Active;

/// Registers a stream being read; `true` when it may use threads of its own (fewer streams
/// are being read than the machine has cores).
pub(super) fn enter() -> (Active, bool) {
    let before = ACTIVE.fetch_add(1, Ordering::Relaxed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (Active, before + 1 < cores)
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// [`super::source::drive`] with the voice detector's frame analysis done ahead: hands each
/// block with its analysed frames to `body` (`Ok(false)` stops it), reports decode progress,
/// and ends at the end of the input, or at a truncation when `keep_truncated` allows. At the
/// end of the input (not after an error) `body` is called once more with empty tracks and the
/// analysis of the incomplete last frames.
pub(super) fn drive_ahead(
    stream: &mut Stream,
    path: &Path,
    keep_truncated: bool,
    report: &mut DecodeReporter,
    vad: &VadOptions,
    body: impl FnMut(Ahead<'_>) -> Result<bool>,
) -> Result<Drove> {
    let (_active, threads) = enter();
    drive_staged(stream, path, keep_truncated, report, vad, threads, body)
}

/// [`drive_ahead`] on three threads (four with the stream's read-ahead) or, without
/// `threads`, on the calling thread alone.
fn drive_staged(
    stream: &mut Stream,
    path: &Path,
    keep_truncated: bool,
    report: &mut DecodeReporter,
    vad: &VadOptions,
    threads: bool,
    mut body: impl FnMut(Ahead<'_>) -> Result<bool>,
) -> Result<Drove> {
    if !threads {
        return drive_inline(stream, path, keep_truncated, report, vad, body);
    }
    stream.read_ahead()?;
    std::thread::scope(|sc| {
        let (to_an, an_rx) = sync_channel::<ToAnalysis>(QUEUE);
        let (to_body, body_rx) = sync_channel::<Result<Ready>>(QUEUE);
        // Buffers go back up the chain to be reused.
        let (tracks_back, tracks_free) = channel::<Vec<Vec<f32>>>();
        let (frames_back, frames_free) = channel::<Vec<Vec<Analysed>>>();
        let decoder = std::thread::Builder::new()
            .name("asr-decode".into())
            .spawn_scoped(sc, move || {
                decode(stream, path, keep_truncated, report, &to_an, &tracks_free)
            })
            .map_err(|e| Error::internal(format!("cannot start the decoding thread: {e}")))?;
        let analysis = std::thread::Builder::new()
            .name("asr-analyse".into())
            .spawn_scoped(sc, move || analyse(vad, an_rx, &to_body, frames_free))
            .map_err(|e| Error::internal(format!("cannot start the analysis thread: {e}")))?;
        let mut choice: Option<Choice> = None;
        let mut stopped = false;
        let mut failed: Option<Error> = None;
        for msg in body_rx.iter() {
            let mut m = match msg {
                Ok(m) => m,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            if let Some(c) = m.choice.take() {
                choice = Some(c);
            }
            let Some(c) = &choice else {
                failed = Some(Error::internal("a block came without its tracks"));
                break;
            };
            match body(Ahead {
                tracks: &m.tracks,
                frames: &m.frames,
                choice: c,
            }) {
                Ok(true) => {}
                Ok(false) => {
                    stopped = true;
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            let _ = tracks_back.send(m.tracks);
            let _ = frames_back.send(m.frames);
        }
        // The other threads stop at their next send once this end is gone.
        drop(body_rx);
        analysis
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let decoded = decoder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if let Some(e) = failed {
            return Err(e);
        }
        if stopped {
            return Ok(Drove::Stopped);
        }
        decoded
    })
}

/// The decoding thread: blocks into the analysis queue, then `End` (or the error).
fn decode(
    stream: &mut Stream,
    path: &Path,
    keep_truncated: bool,
    report: &mut DecodeReporter,
    to_an: &std::sync::mpsc::SyncSender<ToAnalysis>,
    free: &Receiver<Vec<Vec<f32>>>,
) -> Result<Drove> {
    let mut first = true;
    loop {
        let block = match stream.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                let t = keep_truncation(e, keep_truncated, path)?;
                let _ = to_an.send(ToAnalysis::End);
                return Ok(Drove::End(Some(t)));
            }
        };
        let end = block.end();
        let mut tracks = free.try_recv().unwrap_or_default();
        tracks.resize_with(block.tracks.len(), Vec::new);
        for (d, s) in tracks.iter_mut().zip(block.tracks) {
            d.clear();
            d.extend_from_slice(s);
        }
        let choice = first.then(|| block.choice.clone());
        first = false;
        let msg = ToAnalysis::Block(Decoded { tracks, choice });
        if to_an.send(msg).is_err() {
            return Ok(Drove::Stopped);
        }
        report.at(end);
    }
    let _ = to_an.send(ToAnalysis::End);
    Ok(Drove::End(None))
}

/// One [`Analyser`] per track, created with the first block: the analysis both loops share.
struct Analysers(Vec<Analyser>);

impl Analysers {
    /// Analyses one block of every track into `frames` (one `Vec` per track, cleared first).
    fn push<T: AsRef<[f32]>>(
        &mut self,
        vad: &VadOptions,
        tracks: &[T],
        frames: &mut Vec<Vec<Analysed>>,
    ) -> Result<()> {
        if self.0.is_empty() {
            for _ in tracks {
                self.0.push(Analyser::new(vad)?);
            }
        }
        frames.resize_with(self.0.len(), Vec::new);
        for ((a, f), t) in self.0.iter_mut().zip(frames.iter_mut()).zip(tracks) {
            f.clear();
            a.push(t.as_ref(), f);
        }
        Ok(())
    }

    /// The analysis of every track's incomplete last frame, into `frames` (cleared first);
    /// `false` when no block came (nothing to finish).
    fn finish(&mut self, frames: &mut Vec<Vec<Analysed>>) -> bool {
        frames.resize_with(self.0.len(), Vec::new);
        for (a, f) in self.0.iter_mut().zip(frames.iter_mut()) {
            f.clear();
            a.finish(f);
        }
        !self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The analysis thread.
fn analyse(
    vad: &VadOptions,
    rx: Receiver<ToAnalysis>,
    to_body: &std::sync::mpsc::SyncSender<Result<Ready>>,
    free: Receiver<Vec<Vec<Analysed>>>,
) {
    let mut analysers = Analysers(Vec::new());
    for msg in rx.iter() {
        let mut frames = free.try_recv().unwrap_or_default();
        let m = match msg {
            ToAnalysis::Block(d) => {
                if let Err(e) = analysers.push(vad, &d.tracks, &mut frames) {
                    let _ = to_body.send(Err(e));
                    return;
                }
                Ready {
                    tracks: d.tracks,
                    frames,
                    choice: d.choice,
                }
            }
            ToAnalysis::End => {
                if analysers.finish(&mut frames) {
                    let _ = to_body.send(Ok(Ready {
                        tracks: vec![Vec::new(); analysers.len()],
                        frames,
                        choice: None,
                    }));
                }
                return;
            }
        };
        if to_body.send(Ok(m)).is_err() {
            return;
        }
    }
}

/// The same loop on the calling thread alone.
fn drive_inline(
    stream: &mut Stream,
    path: &Path,
    keep_truncated: bool,
    report: &mut DecodeReporter,
    vad: &VadOptions,
    mut body: impl FnMut(Ahead<'_>) -> Result<bool>,
) -> Result<Drove> {
    let mut analysers = Analysers(Vec::new());
    let mut frames: Vec<Vec<Analysed>> = Vec::new();
    let mut choice: Option<Choice> = None;
    let truncated = loop {
        let block = match stream.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => break None,
            Err(e) => break Some(keep_truncation(e, keep_truncated, path)?),
        };
        if choice.is_none() {
            choice = Some(block.choice.clone());
        }
        analysers.push(vad, block.tracks, &mut frames)?;
        let end = block.end();
        if !body(Ahead {
            tracks: block.tracks,
            frames: &frames,
            choice: block.choice,
        })? {
            return Ok(Drove::Stopped);
        }
        report.at(end);
    };
    if let Some(c) = &choice {
        if analysers.finish(&mut frames) {
            let empty = vec![Vec::new(); analysers.len()];
            if !body(Ahead {
                tracks: &empty,
                frames: &frames,
                choice: c,
            })? {
                return Ok(Drove::Stopped);
            }
        }
    }
    Ok(Drove::End(truncated))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use super::*;
    use crate::channels::Lanes;
    use crate::segment::{Cutter, Segment, SegmenterOptions};
    use crate::stream::{Mono, MonoSource, TrackStream};
    use crate::ErrorKind;

    /// Real voices with pauses, at their native rate, read 700 samples at a time; fails with
    /// a truncation after `fail_at` samples when set. Counts the samples read.
    struct Voices {
        rate: NonZeroU32,
        samples: Arc<Vec<f32>>,
        pos: usize,
        fail_at: Option<usize>,
        read: Arc<AtomicU64>,
    }

    impl MonoSource for Voices {
        fn sample_rate(&self) -> NonZeroU32 {
            self.rate
        }
        fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
            let end = (self.pos + 700).min(self.samples.len());
            if let Some(f) = self.fail_at.filter(|&f| self.pos >= f) {
                return Err(Error::new(ErrorKind::Truncated {
                    path: None,
                    decoded_frames: f as u64,
                    sample_rate: self.rate.get(),
                    what: "test break".into(),
                }));
            }
            let end = self.fail_at.map_or(end, |f| end.min(f));
            out.extend_from_slice(&self.samples[self.pos..end]);
            let n = end - self.pos;
            self.pos = end;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    /// The voices of testdata/speech with 0.2–1.4 s pauses, `rounds` times over.
    fn voices(rounds: usize) -> (NonZeroU32, Arc<Vec<f32>>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/speech");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wav"))
            .collect();
        files.sort();
        let mut clips = Vec::new();
        let mut rate = None;
        for f in &files {
            let mut d = crate::decode::Decoder::open(f).unwrap();
            let r = d.info().sample_rate;
            if *rate.get_or_insert(r) != r {
                continue;
            }
            let mut x = Vec::new();
            while d.read_mono(&mut x).unwrap() > 0 {}
            clips.push(x);
        }
        let rate = rate.unwrap();
        let mut all = Vec::new();
        for round in 0..rounds {
            for (i, c) in clips.iter().enumerate() {
                all.extend_from_slice(c);
                let pause = (200 + 300 * ((i + round) % 5)) * rate.get() as usize / 1000;
                all.extend(std::iter::repeat_n(0.0, pause));
            }
        }
        (rate, Arc::new(all))
    }

    fn stream(v: &(NonZeroU32, Arc<Vec<f32>>), fail_at: Option<usize>) -> (Stream, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        let src = Voices {
            rate: v.0,
            samples: Arc::clone(&v.1),
            pos: 0,
            fail_at,
            read: Arc::clone(&read),
        };
        let s =
            TrackStream::new(Box::new(Mono(src)), &Lanes::Mixed, None, track_options()).unwrap();
        (s, read)
    }

    /// Segments and frame count of a run, and how many calls brought no samples.
    fn run(
        v: &(NonZeroU32, Arc<Vec<f32>>),
        fail_at: Option<usize>,
        keep: bool,
        threads: bool,
    ) -> (Result<Drove>, Vec<Segment>, usize, usize) {
        let (mut s, _) = stream(v, fail_at);
        let opts = SegmenterOptions::default();
        let mut cutter = Cutter::new(opts.clone()).unwrap();
        let mut out = Vec::new();
        let (mut frames, mut empty) = (0, 0);
        let mut report = DecodeReporter::new(None, 1);
        let r = drive_staged(
            &mut s,
            Path::new("voices"),
            keep,
            &mut report,
            &opts.vad,
            threads,
            |b| {
                assert_eq!(b.tracks.len(), 1);
                assert_eq!(b.frames.len(), 1);
                frames += b.frames[0].len();
                empty += usize::from(b.tracks[0].is_empty());
                cutter.push_analysed(&b.tracks[0], &b.frames[0], &mut out);
                Ok(true)
            },
        );
        cutter.finish(&mut out);
        (r, out.into_iter().map(|(s, _)| s).collect(), frames, empty)
    }

    #[test]
    fn the_stages_on_their_threads_give_exactly_what_one_thread_gives() {
        let v = voices(6);
        let (r1, threaded, f1, e1) = run(&v, None, false, true);
        let (r2, inline, f2, e2) = run(&v, None, false, false);
        assert!(matches!(r1, Ok(Drove::End(None))));
        assert!(matches!(r2, Ok(Drove::End(None))));
        // And what the segmenter gives on the same 16 kHz samples pushed in one piece.
        let (mut s, _) = stream(&v, None);
        let mut all = Vec::new();
        while let Some(b) = s.next_block().unwrap() {
            all.extend_from_slice(&b.tracks[0]);
        }
        let mut seg = crate::segment::Segmenter::new(SegmenterOptions::default()).unwrap();
        let mut direct = Vec::new();
        seg.push(&all, &mut direct);
        seg.finish(&mut direct);
        assert!(direct.len() >= 10, "{} segments", direct.len());
        assert_eq!(threaded, direct);
        assert_eq!(inline, direct);
        // One decision per 32 ms frame, the incomplete last one in the final call.
        let n = all.len().div_ceil(crate::vad::FRAME);
        assert_eq!((f1, f2), (n, n));
        assert_eq!((e1, e2), (1, 1));
    }

    #[test]
    fn a_break_mid_file_is_an_error_or_the_end_as_asked_on_either_path() {
        let v = voices(2);
        let at = v.1.len() / 2;
        for threads in [true, false] {
            let (r, segs, _, empty) = run(&v, Some(at), false, threads);
            let e = r.err().expect("the break is an error");
            assert!(matches!(e.kind(), ErrorKind::Truncated { .. }), "{e}");
            // Nothing is flushed after an error.
            assert_eq!(empty, 0, "threads {threads}");
            assert!(segs
                .iter()
                .all(|s| s.end <= crate::time::rescale(at as u64, v.0)));
            let (r, kept, _, empty) = run(&v, Some(at), true, threads);
            assert!(matches!(r, Ok(Drove::End(Some(_)))), "threads {threads}");
            assert_eq!(empty, 1);
            assert!(!kept.is_empty());
        }
    }

    #[test]
    fn a_body_that_stops_or_fails_stops_the_reading_early() {
        let v = voices(40);
        for threads in [true, false] {
            for fail in [false, true] {
                let (mut s, read) = stream(&v, None);
                let mut report = DecodeReporter::new(None, 1);
                let mut calls = 0;
                let r = drive_staged(
                    &mut s,
                    Path::new("voices"),
                    false,
                    &mut report,
                    &VadOptions::default(),
                    threads,
                    |_| {
                        calls += 1;
                        if fail {
                            Err(Error::internal("body failed"))
                        } else {
                            Ok(false)
                        }
                    },
                );
                drop(s);
                assert_eq!(calls, 1);
                match r {
                    Ok(Drove::Stopped) => assert!(!fail),
                    Err(e) => assert!(fail && e.to_string().contains("body failed"), "{e}"),
                    Ok(Drove::End(_)) => panic!("ran to the end"),
                }
                let read = read.load(Ordering::Relaxed) as usize;
                assert!(read < v.1.len() / 4, "read {read} of {}", v.1.len());
            }
        }
    }
}
