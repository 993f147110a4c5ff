//! The pipeline's front end with channels: one decoding, one 16 kHz lane per channel it
//! needs, the [`Chooser`] deciding which tracks come out (see [`crate::channels`]), and the
//! per-track loudness meter and gain.
//!
//! Same contract as [`super::AudioStream`]: block `start`s are positions at 16 kHz on the
//! original timeline, every track of a block covers the same samples, the total length is
//! exactly `rescale(frames decoded, native rate)`, and a source that fails part way first
//! delivers everything decoded before the break; the error comes with the next call.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use super::{MonoSource, Normalization};
use crate::channels::{Choice, Chooser, Lanes};
use crate::decode::Decoder;
use crate::normalize::{apply_gain, DcBlocker, Loudness, LoudnessMeter};
use crate::resample::Resampler;
use crate::time::Samples;
use crate::{Error, Result};

/// Most samples per track in one block handed out of the judging window (1 s).
const MAX_BLOCK: usize = 16_000;

/// A source of frames, mixed or interleaved: the [`Decoder`], or any [`MonoSource`] (one
/// channel).
pub(crate) trait FrameSource: Send {
    fn sample_rate(&self) -> NonZeroU32;
    fn channels(&self) -> u16;
    /// Appends frames, mixed (one value per frame) or interleaved ([`FrameSource::channels`]
    /// values per frame); returns the frames appended, `Ok(0)` only at the end.
    fn read_frames(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize>;
}

impl FrameSource for Decoder {
    fn sample_rate(&self) -> NonZeroU32 {
        self.info().sample_rate
    }
    fn channels(&self) -> u16 {
        self.info().channels.get()
    }
    fn read_frames(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize> {
        if mix {
            self.read_mono(out)
        } else {
            self.read_interleaved(out)
        }
    }
}

/// A [`MonoSource`] as a one-channel [`FrameSource`].
pub(crate) struct Mono<S>(pub(crate) S);

impl<S: MonoSource> FrameSource for Mono<S> {
    fn sample_rate(&self) -> NonZeroU32 {
        self.0.sample_rate()
    }
    fn channels(&self) -> u16 {
        1
    }
    fn read_frames(&mut self, out: &mut Vec<f32>, _mix: bool) -> Result<usize> {
        let before = out.len();
        let n = self.0.read_mono(out)?;
        // Any source's (the decoder has done it for files already).
        if let Some(new) = out.get_mut(before..) {
            crate::decode::to_full_scale(new);
        }
        Ok(n)
    }
}

/// Reads that may wait between a [`ReadAhead`]'s thread and the stream.
const READ_AHEAD: usize = 4;
/// Frames gathered into one read of a [`ReadAhead`] (about 0.4–2 s).
const READ_FRAMES: usize = 16_384;

/// One read of a [`ReadAhead`]: the frames and the samples holding them.
type Read = (usize, Vec<f32>);

/// A [`FrameSource`] decoded on a thread of its own, up to [`READ_AHEAD`] reads ahead of the
/// stream, in order (an error comes after everything read before it; a panic of the source
/// goes on on the reading side, as it would without the thread). Dropping it stops the thread
/// after the packet it is decoding and waits for it.
struct ReadAhead {
    rate: NonZeroU32,
    channels: u16,
    rx: Option<std::sync::mpsc::Receiver<Result<Read>>>,
    back: std::sync::mpsc::Sender<Vec<f32>>,
    /// Set when dropped: the thread stops gathering.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading `source` (mixed or interleaved as `mix` says) on a new thread.
    fn start(mut source: Box<dyn FrameSource>, mix: bool) -> Result<ReadAhead> {
        let (rate, channels) = (source.sample_rate(), source.channels());
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        let (back, free) = std::sync::mpsc::channel::<Vec<f32>>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("asr-read".into())
            .spawn(move || loop {
                // Packets are gathered into reads of about READ_FRAMES frames: fewer
                // hand-overs between the threads.
                let mut buf = free.try_recv().unwrap_or_default();
                buf.clear();
                let mut frames = 0;
                let end = loop {
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    match source.read_frames(&mut buf, mix) {
                        Ok(0) => break Some(Ok(0)),
                        Ok(n) => {
                            frames += n;
                            if frames >= READ_FRAMES {
                                break None;
                            }
                        }
                        Err(e) => break Some(Err(e)),
                    }
                };
                if frames > 0 && tx.send(Ok((frames, buf))).is_err() {
                    return;
                }
                if let Some(end) = end {
                    let _ = tx.send(end.map(|n| (n, Vec::new())));
                    return;
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the reading thread: {e}")))?;
        Ok(ReadAhead {
            rate,
            channels,
            rx: Some(rx),
            back,
            stop,
            thread: Some(thread),
        })
    }
}

/// A source that has ended (in place of a source moved into a [`ReadAhead`]).
struct Ended(NonZeroU32);

impl MonoSource for Ended {
    fn sample_rate(&self) -> NonZeroU32 {
        self.0
    }
    fn read_mono(&mut self, _: &mut Vec<f32>) -> Result<usize> {
        Ok(0)
    }
}

impl FrameSource for ReadAhead {
    fn sample_rate(&self) -> NonZeroU32 {
        self.rate
    }
    fn channels(&self) -> u16 {
        self.channels
    }
    /// `mix` was fixed when the thread started.
    fn read_frames(&mut self, out: &mut Vec<f32>, _mix: bool) -> Result<usize> {
        let Some(rx) = &self.rx else {
            return Ok(0);
        };
        match rx.recv() {
            Ok(Ok((0, _))) => {
                // The end: later calls answer `Ok(0)` too.
                self.rx = None;
                Ok(0)
            }
            Ok(Ok((n, mut buf))) => {
                if out.is_empty() {
                    // The usual case: the read becomes `out`, and `out`'s buffer goes back.
                    std::mem::swap(out, &mut buf);
                } else {
                    out.extend_from_slice(&buf);
                }
                let _ = self.back.send(buf);
                Ok(n)
            }
            Ok(Err(e)) => {
                self.rx = None;
                Err(e)
            }
            // The thread always sends the end (or an error) before it returns: gone without
            // it, it panicked, and the panic goes on here.
            Err(_) => {
                self.rx = None;
                if let Some(Err(p)) = self.thread.take().map(std::thread::JoinHandle::join) {
                    std::panic::resume_unwind(p);
                }
                Err(Error::internal("the reading thread ended without its end"))
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // The thread stops before its next packet, or at its next send (the receiver is gone).
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One channel on its way to 16 kHz.
struct Lane {
    /// The file's channel it takes (`None`: the decoder's mix).
    channel: Option<usize>,
    resampler: Resampler,
    dc: DcBlocker,
}

/// One block of every chosen track.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracks<'a> {
    /// Position of each track's first sample, at 16 kHz on the original timeline.
    pub(crate) start: Samples,
    /// The tracks' samples, all of the same length.
    pub(crate) tracks: &'a [Vec<f32>],
    /// What the tracks are.
    pub(crate) choice: &'a Choice,
}

impl Tracks<'_> {
    /// Samples in each track.
    pub(crate) fn len(&self) -> usize {
        self.tracks.first().map_or(0, Vec::len)
    }
    /// The position just past the block.
    pub(crate) fn end(&self) -> Samples {
        self.start + self.len() as Samples
    }
}

/// Options of a [`TrackStream`].
#[derive(Debug, Clone)]
pub(crate) struct TrackOptions {
    /// DC removal (always, in the lanes) and a gain per track: `Fixed` gains come from
    /// `gains` (one per track; missing ones are 1).
    pub(crate) normalize: Normalization,
    pub(crate) gains: Vec<f32>,
    /// Measure each track's loudness.
    pub(crate) measure: bool,
    /// Least samples per track per block (except at the end).
    pub(crate) min_block: usize,
}

impl Default for TrackOptions {
    fn default() -> Self {
        TrackOptions {
            normalize: Normalization::DcOnly,
            gains: Vec::new(),
            measure: false,
            min_block: 4000,
        }
    }
}

enum State {
    Running,
    /// The source ended; what the chooser holds is still to come.
    Ended,
    /// The source failed after the chooser got everything before the break.
    Failed(Error),
    Done,
}

/// The pipeline's front end: decode once, 16 kHz lanes, choose tracks, meter and gain.
pub(crate) struct TrackStream {
    source: Box<dyn FrameSource>,
    path: Option<PathBuf>,
    channels: usize,
    mixed_read: bool,
    /// The source is a [`ReadAhead`].
    reading_ahead: bool,
    lanes: Vec<Lane>,
    chooser: Chooser,
    opts: TrackOptions,
    meters: Vec<LoudnessMeter>,
    decoded: Vec<f32>,
    scratch: Vec<f32>,
    /// Each lane's new 16 kHz samples (reused).
    outs: Vec<Vec<f32>>,
    /// The tracks of the block being handed out (reused; swapped with `outs` when they
    /// pass straight through).
    out: Vec<Vec<f32>>,
    /// Samples per track already in `out`, passed through by the last fill.
    ready: usize,
    pos: Samples,
    /// Frames read from the source.
    frames_in: u64,
    state: State,
}

impl TrackStream {
    /// A stream over `source` with the lanes `lanes` needs. `name` is used in errors.
    pub(crate) fn new(
        source: Box<dyn FrameSource>,
        lanes: &Lanes,
        name: Option<&Path>,
        opts: TrackOptions,
    ) -> Result<TrackStream> {
        let rate = source.sample_rate();
        let channels = usize::from(source.channels());
        let named = |e: Error| match name {
            Some(p) => e.with_path(p),
            None => e,
        };
        let picks: Vec<Option<usize>> = match lanes {
            Lanes::Mixed => vec![None],
            Lanes::Channels(c) => c.iter().map(|&i| Some(usize::from(i))).collect(),
            Lanes::Judge => (0..channels).map(Some).collect(),
        };
        if picks.is_empty() || picks.iter().flatten().any(|&c| c >= channels) {
            return Err(named(Error::config(format!(
                "no channel, or one the source does not have, was asked for ({channels} channel(s))"
            ))));
        }
        let mut lane_v = Vec::with_capacity(picks.len());
        for channel in picks {
            lane_v.push(Lane {
                channel,
                resampler: Resampler::new(rate).map_err(named)?,
                dc: DcBlocker::new(),
            });
        }
        if let Normalization::Fixed(g) = opts.normalize {
            if !(g.is_finite() && g >= 0.0 && opts.gains.iter().all(|g| g.is_finite() && *g >= 0.0))
            {
                return Err(Error::config("track gains must be finite and ≥ 0"));
            }
        }
        // A mono file, or a mix asked for: the decoder mixes (cheapest, one lane).
        let mixed_read = lane_v.len() == 1 && lane_v[0].channel.is_none();
        let n_lanes = lane_v.len();
        Ok(TrackStream {
            source,
            path: name.map(Path::to_path_buf),
            channels,
            mixed_read,
            reading_ahead: false,
            lanes: lane_v,
            chooser: Chooser::new(lanes),
            opts: TrackOptions {
                min_block: opts.min_block.max(1),
                ..opts
            },
            meters: Vec::new(),
            decoded: Vec::new(),
            scratch: Vec::new(),
            outs: vec![Vec::new(); n_lanes],
            out: Vec::new(),
            ready: 0,
            pos: 0,
            frames_in: 0,
            state: State::Running,
        })
    }

    /// Decodes on a thread of its own from now on, a few packets ahead of the stream (see
    /// [`crate::pipeline`]'s staged loop). Call it before the first block; later calls do
    /// nothing. Fails only when the thread cannot be started (the source is then gone).
    pub(crate) fn read_ahead(&mut self) -> Result<()> {
        if self.frames_in > 0 || self.reading_ahead {
            return Ok(());
        }
        let rate = self.rate_in();
        let source = std::mem::replace(&mut self.source, Box::new(Mono(Ended(rate))));
        self.source = Box::new(ReadAhead::start(source, self.mixed_read)?);
        self.reading_ahead = true;
        Ok(())
    }

    /// What was chosen, once known (always known before the first block).
    pub(crate) fn choice(&self) -> Option<&Choice> {
        self.chooser.choice()
    }

    /// Frames read from the source so far (at its native rate).
    pub(crate) fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// The source's native rate.
    pub(crate) fn rate_in(&self) -> NonZeroU32 {
        self.source.sample_rate()
    }

    /// Channels in the source.
    pub(crate) fn file_channels(&self) -> u16 {
        u16::try_from(self.channels).unwrap_or(u16::MAX)
    }

    /// Position of the next block (= samples per track handed out so far).
    pub(crate) fn position(&self) -> Samples {
        self.pos
    }

    /// Each track's loudness so far (with [`TrackOptions::measure`]).
    pub(crate) fn loudness(&self) -> Vec<Loudness> {
        self.meters.iter().map(LoudnessMeter::loudness).collect()
    }

    fn name(&self, e: Error) -> Error {
        match &self.path {
            Some(p) => e.with_path(p),
            None => e,
        }
    }

    /// The next block of every chosen track; `None` at the end.
    pub(crate) fn next_block(&mut self) -> Result<Option<Tracks<'_>>> {
        loop {
            let n = match std::mem::take(&mut self.ready) {
                0 => self.chooser.take(&mut self.out, MAX_BLOCK),
                n => n,
            };
            if n > 0 {
                self.post();
                let start = self.pos;
                self.pos += n as Samples;
                let choice = self
                    .chooser
                    .choice()
                    .ok_or_else(|| Error::internal("tracks handed out before the choice"))?;
                return Ok(Some(Tracks {
                    start,
                    tracks: &self.out,
                    choice,
                }));
            }
            match std::mem::replace(&mut self.state, State::Done) {
                State::Running => self.state = State::Running,
                State::Ended | State::Done => return Ok(None),
                State::Failed(e) => return Err(e),
            }
            self.fill()?;
        }
    }

    /// Reads the source until every lane has `min_block` new samples (or the source ends or
    /// fails), and hands the lanes to the chooser.
    fn fill(&mut self) -> Result<()> {
        self.outs.iter_mut().for_each(Vec::clear);
        let mut end = None;
        while self.outs.first().map_or(0, Vec::len) < self.opts.min_block {
            self.decoded.clear();
            match self.source.read_frames(&mut self.decoded, self.mixed_read) {
                Ok(0) => {
                    end = Some(State::Ended);
                    break;
                }
                Ok(n) => {
                    self.frames_in += n as u64;
                    for (l, out) in self.lanes.iter_mut().zip(&mut self.outs) {
                        let start = out.len();
                        let r = match l.channel {
                            None => l.resampler.process(&self.decoded, out),
                            Some(c) => {
                                self.scratch.clear();
                                self.scratch.extend(
                                    self.decoded.iter().skip(c).step_by(self.channels.max(1)),
                                );
                                l.resampler.process(&self.scratch, out)
                            }
                        };
                        if let Err(e) = r {
                            self.state = State::Done;
                            return Err(self.name(e));
                        }
                        if let Some(new) = out.get_mut(start..) {
                            l.dc.process(new);
                        }
                    }
                }
                Err(e) => {
                    end = Some(State::Failed(self.name(e)));
                    break;
                }
            }
        }
        if end.is_some() {
            for (l, out) in self.lanes.iter_mut().zip(&mut self.outs) {
                let start = out.len();
                if let Err(e) = l.resampler.finish(out) {
                    self.state = State::Done;
                    return Err(self.name(e));
                }
                if let Some(new) = out.get_mut(start..) {
                    l.dc.process(new);
                }
            }
        }
        // Decided and nothing held: the lanes become the tracks without a copy; else the
        // chooser holds them (judging, or handing out what it held first).
        if let Some(n) = self.chooser.pass(&mut self.outs, &mut self.out) {
            self.ready = n;
        } else {
            self.chooser.push(&self.outs);
        }
        if let Some(s) = end {
            self.chooser.finish();
            self.state = s;
        }
        Ok(())
    }

    /// Metering and gain on the block in `out`.
    fn post(&mut self) {
        if self.opts.measure && self.meters.len() != self.out.len() {
            self.meters.resize_with(self.out.len(), LoudnessMeter::new);
        }
        for (i, t) in self.out.iter_mut().enumerate() {
            if let Some(m) = self.meters.get_mut(i) {
                m.feed(t);
            }
            if let Normalization::Fixed(g) = self.opts.normalize {
                let g = self.opts.gains.get(i).copied().unwrap_or(g);
                apply_gain(t, g);
                t.iter_mut().for_each(|s| *s = s.clamp(-1.0, 1.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two talkers on the two channels of a call (real voices of testdata/speech, each
    /// speaking while the other pauses), read 20 ms at a time, as AMR packets come; panics on
    /// read `panic_at` when set.
    struct Call {
        rate: NonZeroU32,
        frames: Vec<[f32; 2]>,
        pos: usize,
        reads: usize,
        panic_at: Option<usize>,
    }

    impl Call {
        fn new(panic_at: Option<usize>) -> Call {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/speech");
            let mut voices = Vec::new();
            let mut rate = None;
            for name in ["r1_please_hold", "u2_hello", "r3_two_nine", "u6_number"] {
                let mut d = Decoder::open(&dir.join(format!("{name}.wav"))).unwrap();
                assert_eq!(
                    *rate.get_or_insert(d.info().sample_rate),
                    d.info().sample_rate
                );
                let mut x = Vec::new();
                while d.read_mono(&mut x).unwrap() > 0 {}
                voices.push(x);
            }
            let mut frames = Vec::new();
            for round in 0..12 {
                for (i, v) in voices.iter().enumerate() {
                    let ch = (i + round) % 2;
                    for &s in v {
                        let mut f = [0.0; 2];
                        f[ch] = s;
                        f[1 - ch] = 0.001 * s; // a little crosstalk
                        frames.push(f);
                    }
                    frames.extend(std::iter::repeat_n([0.0; 2], 4000 + 900 * (i % 3)));
                }
            }
            Call {
                rate: rate.unwrap(),
                frames,
                pos: 0,
                reads: 0,
                panic_at,
            }
        }
    }

    impl FrameSource for Call {
        fn sample_rate(&self) -> NonZeroU32 {
            self.rate
        }
        fn channels(&self) -> u16 {
            2
        }
        fn read_frames(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize> {
            self.reads += 1;
            if self.panic_at == Some(self.reads) {
                panic!("the source broke");
            }
            let end = (self.pos + self.rate.get() as usize / 50).min(self.frames.len());
            for f in &self.frames[self.pos..end] {
                if mix {
                    out.push(0.5 * (f[0] + f[1]));
                } else {
                    out.extend_from_slice(f);
                }
            }
            let n = end - self.pos;
            self.pos = end;
            Ok(n)
        }
    }

    fn read_all(ahead: bool, panic_at: Option<usize>) -> (Vec<Vec<f32>>, Option<Choice>) {
        let mut s = TrackStream::new(
            Box::new(Call::new(panic_at)),
            &Lanes::Judge,
            None,
            TrackOptions {
                min_block: 16_000,
                ..TrackOptions::default()
            },
        )
        .unwrap();
        if ahead {
            s.read_ahead().unwrap();
        }
        let mut tracks: Vec<Vec<f32>> = Vec::new();
        while let Some(b) = s.next_block().unwrap() {
            tracks.resize_with(b.tracks.len(), Vec::new);
            for (t, x) in tracks.iter_mut().zip(b.tracks) {
                t.extend_from_slice(x);
            }
        }
        (tracks, s.choice().cloned())
    }

    /// The read-ahead hands the stream reads of ~16k frames instead of 160: the tracks and the
    /// channel choice (with its measurements) must not change.
    #[test]
    fn reading_ahead_changes_neither_the_audio_nor_the_channel_choice() {
        let (a, ca) = read_all(false, None);
        let (b, cb) = read_all(true, None);
        let choice = ca.clone().unwrap();
        assert_eq!(choice.channels, Some(vec![0, 1]), "two talkers: {choice:?}");
        assert_eq!(ca, cb);
        assert_eq!(a.len(), 2);
        assert!(a[0].len() > 16_000 * 60, "{} samples", a[0].len());
        assert!(a == b, "the tracks differ");
    }

    /// A caller's [`MonoSource`] with a NaN, an infinity and a huge value in it: the tracks
    /// stay finite and the tone after them is all there.
    #[test]
    fn a_mono_source_s_bad_samples_come_out_finite_and_within_full_scale() {
        struct Tone(usize);
        impl MonoSource for Tone {
            fn sample_rate(&self) -> NonZeroU32 {
                NonZeroU32::new(44_100).unwrap()
            }
            fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
                let end = (self.0 + 1000).min(44_100 * 2);
                out.extend((self.0..end).map(|i| match i {
                    500 => f32::NAN,
                    501 => f32::INFINITY,
                    502 => f32::MAX,
                    _ => 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 200.0 / 44_100.0).sin(),
                }));
                let n = end - self.0;
                self.0 = end;
                Ok(n)
            }
        }
        let mut s = TrackStream::new(
            Box::new(Mono(Tone(0))),
            &Lanes::Mixed,
            None,
            TrackOptions::default(),
        )
        .unwrap();
        let mut x = Vec::new();
        while let Some(b) = s.next_block().unwrap() {
            x.extend_from_slice(&b.tracks[0]);
        }
        assert_eq!(x.len(), 32_000);
        assert!(x.iter().all(|v| v.is_finite()));
        let tail = &x[8_000..];
        let rms = (tail.iter().map(|v| v * v).sum::<f32>() / tail.len() as f32).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
    }

    /// A source that panics on the reading thread: the panic reaches the stream's caller, as
    /// without the thread, instead of passing for the end of the input.
    #[test]
    fn a_panic_while_reading_ahead_is_not_taken_for_the_end() {
        for ahead in [false, true] {
            let r = std::panic::catch_unwind(|| read_all(ahead, Some(500)));
            assert!(r.is_err(), "ahead {ahead}: the stream ended normally");
        }
    }
}
