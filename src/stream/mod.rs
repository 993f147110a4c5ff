//! Stage `stream`: the pull-based front end. Any recording in, exact 16 kHz mono blocks out,
//! in constant memory.
//!
//! [`AudioStream`] pulls packets from a [`MonoSource`] (normally the [`Decoder`]: mono f32 at
//! the file's native rate), resamples them to 16 kHz ([`Resampler`], delay compensated), removes
//! DC and measures loudness ([`crate::normalize`]), and hands out [`Block`]s. Each block's
//! `start` is its position in samples at 16 kHz on the original timeline: sample `k` of the
//! stream is original time `k / 16000` s, and the total length is exactly
//! [`rescale`]`(frames decoded, native rate)`.
//!
//! # Memory
//! Buffers are allocated once and reused: one decoded packet at the native rate, one output
//! block, the resampler's FFT blocks and the loudness meter's histogram. Nothing grows with the
//! duration of the input.
//!
//! # Normalisation
//! See [`Normalization`] and the design notes in [`crate::normalize`]: by default the stream
//! removes DC and measures; the gain is applied later per segment
//! ([`crate::normalize::normalize_in_place`]), or in a second pass with
//! [`Normalization::Fixed`] after [`measure_path`].
//!
//! # Errors mid-stream
//! When the source fails part way through (typically [`ErrorKind::Truncated`]: the file broke
//! mid-frame), the stream first delivers everything decoded before the break (the resampler is
//! flushed, so those samples are complete and exact: `rescale(decoded_frames, rate)` samples in
//! all), and only the NEXT call to [`AudioStream::next_block`] returns the error. After the
//! error, `next_block` returns `Ok(None)`. A caller that wants to keep a broken file's audio
//! just keeps what it received before the error.

mod tracks;

pub(crate) use tracks::{FrameSource, Mono, TrackOptions, TrackStream, Tracks};

use std::io::{Read, Seek};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use crate::decode::{Decoder, SourceInfo};

#[allow(unused_imports)] // named in the docs
use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::normalize::{apply_gain, DcBlocker, Loudness, LoudnessMeter};
use crate::resample::Resampler;
use crate::time::{rescale, Samples, RATE};

/// A source of mono f32 samples at a fixed native rate: what [`AudioStream`] pulls from.
///
/// The [`Decoder`] is the source for files; tests and callers with their own audio can
/// implement it for anything else.
pub trait MonoSource: Send {
    /// The native sample rate of the samples `read_mono` delivers.
    fn sample_rate(&self) -> NonZeroU32;
    /// Decodes the next packet(s), APPENDS mono samples to `out`, returns how many were
    /// appended; `Ok(0)` only at the end of the stream. The streams that read it take a sample
    /// that is not a finite number (NaN, ±infinity) as 0 and clip anything beyond ±1 to ±1.
    fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize>;
}

/// What the stream does about level. Default: [`Normalization::DcOnly`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Normalization {
    /// Samples as resampled, untouched.
    Off,
    /// DC removed ([`DcBlocker`], 20 Hz high-pass); level untouched. The default: the gain is
    /// applied per segment later, or in a second pass.
    #[default]
    DcOnly,
    /// DC removed, then multiplied by this linear gain (from a measuring pass:
    /// [`Loudness::gain`]). Samples are clamped to ±1.0 as a last safety.
    Fixed(f32),
}

/// Options for [`AudioStream`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamOptions {
    /// DC removal and gain. Default [`Normalization::DcOnly`].
    pub normalize: Normalization,
    /// Measure loudness and peak of the stream (after DC removal, before any gain), readable
    /// with [`AudioStream::loudness`]. Default `true` (costs about 1% of the decode time).
    pub measure: bool,
    /// A block is handed out once it holds at least this many 16 kHz samples (or at the end).
    /// Default 4000 (250 ms). Blocks can be longer by up to one decoded packet.
    pub min_block: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            normalize: Normalization::DcOnly,
            measure: true,
            min_block: 4000,
        }
    }
}

impl StreamOptions {
    /// Default options with the given normalisation.
    pub fn with_normalization(normalize: Normalization) -> Self {
        StreamOptions {
            normalize,
            ..Self::default()
        }
    }
}

/// One block of the stream: 16 kHz mono samples starting at `start` on the original timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block<'a> {
    /// Position of `samples[0]` in samples at 16 kHz from the start of the recording.
    pub start: Samples,
    /// The samples (16 kHz mono, f32 in ±1.0).
    pub samples: &'a [f32],
}

impl Block<'_> {
    /// The position just past the block's last sample.
    pub fn end(&self) -> Samples {
        self.start + self.samples.len() as Samples
    }
}

enum State {
    Running,
    /// The source failed; the flushed audio has been handed out, the error is next.
    Failed(Error),
    Done,
}

/// The pull-based 16 kHz front end over a [`MonoSource`] (by default the [`Decoder`]).
pub struct AudioStream<S: MonoSource = Decoder> {
    source: S,
    path: Option<PathBuf>,
    opts: StreamOptions,
    resampler: Resampler,
    dc: DcBlocker,
    meter: Option<LoudnessMeter>,
    /// Native-rate samples of the current packet (reused).
    decoded: Vec<f32>,
    /// The 16 kHz block being built / handed out (reused).
    out: Vec<f32>,
    /// Start of the next block.
    pos: Samples,
    frames_in: u64,
    state: State,
}

impl<S: MonoSource> std::fmt::Debug for AudioStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioStream")
            .field("path", &self.path)
            .field("rate_in", &self.resampler.rate_in())
            .field("position", &self.pos)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl<S: MonoSource> AudioStream<S> {
    /// A stream over any [`MonoSource`]. `name` is used in errors.
    pub fn from_source(source: S, name: Option<&Path>, opts: StreamOptions) -> Result<Self> {
        let path = name.map(Path::to_path_buf);
        let resampler = Resampler::new(source.sample_rate()).map_err(|e| match &path {
            Some(p) => e.with_path(p),
            None => e,
        })?;
        if let Normalization::Fixed(g) = opts.normalize {
            if !(g.is_finite() && g >= 0.0) {
                return Err(Error::config(format!(
                    "stream gain {g} is not a finite gain ≥ 0"
                )));
            }
        }
        let min_block = opts.min_block.max(1);
        Ok(AudioStream {
            source,
            path,
            meter: opts.measure.then(LoudnessMeter::new),
            opts: StreamOptions { min_block, ..opts },
            resampler,
            dc: DcBlocker::new(),
            decoded: Vec::new(),
            out: Vec::with_capacity(min_block * 2),
            pos: 0,
            frames_in: 0,
            state: State::Running,
        })
    }

    /// The native sample rate of the source.
    pub fn rate_in(&self) -> NonZeroU32 {
        self.resampler.rate_in()
    }

    /// Position of the next block (= 16 kHz samples handed out so far).
    pub fn position(&self) -> Samples {
        self.pos
    }

    /// Native-rate frames pulled from the source so far.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Loudness and peak measured so far (after DC removal, before any gain); `None` when
    /// [`StreamOptions::measure`] is off. Complete once `next_block` returned `None`.
    pub fn loudness(&self) -> Option<Loudness> {
        self.meter.as_ref().map(LoudnessMeter::loudness)
    }

    /// The source, e.g. for [`Decoder::frames_decoded`].
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Next block of 16 kHz mono samples, `None` at the end. See the module docs for what
    /// happens when the source fails mid-stream.
    pub fn next_block(&mut self) -> Result<Option<Block<'_>>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => return Ok(None),
            State::Failed(e) => return Err(e),
            State::Running => self.state = State::Running,
        }
        self.out.clear();
        while self.out.len() < self.opts.min_block {
            self.decoded.clear();
            match self.source.read_mono(&mut self.decoded) {
                Ok(0) => {
                    self.flush()?;
                    self.state = State::Done;
                    break;
                }
                Ok(n) => {
                    self.frames_in += n as u64;
                    crate::decode::to_full_scale(&mut self.decoded);
                    let start = self.out.len();
                    if let Err(e) = self.resampler.process(&self.decoded, &mut self.out) {
                        self.state = State::Done;
                        return Err(self.name(e));
                    }
                    self.post(start);
                }
                Err(e) => {
                    self.flush()?;
                    self.state = State::Failed(self.name(e));
                    break;
                }
            }
        }
        if self.out.is_empty() {
            return match std::mem::replace(&mut self.state, State::Done) {
                State::Failed(e) => Err(e),
                _ => Ok(None),
            };
        }
        let start = self.pos;
        self.pos += self.out.len() as Samples;
        Ok(Some(Block {
            start,
            samples: &self.out,
        }))
    }

    /// Flushes the resampler's tail into `out`.
    fn flush(&mut self) -> Result<()> {
        let start = self.out.len();
        if let Err(e) = self.resampler.finish(&mut self.out) {
            self.state = State::Done;
            return Err(self.name(e));
        }
        self.post(start);
        debug_assert_eq!(
            self.pos + self.out.len() as u64,
            rescale(self.frames_in, self.rate_in())
        );
        Ok(())
    }

    /// DC removal, metering and gain on the new samples `out[start..]`.
    fn post(&mut self, start: usize) {
        let Some(new) = self.out.get_mut(start..) else {
            return;
        };
        if new.is_empty() {
            return;
        }
        match self.opts.normalize {
            Normalization::Off => {
                if let Some(m) = &mut self.meter {
                    m.feed(new);
                }
            }
            Normalization::DcOnly => {
                self.dc.process(new);
                if let Some(m) = &mut self.meter {
                    m.feed(new);
                }
            }
            Normalization::Fixed(g) => {
                self.dc.process(new);
                if let Some(m) = &mut self.meter {
                    m.feed(new);
                }
                apply_gain(new, g);
                new.iter_mut().for_each(|s| *s = s.clamp(-1.0, 1.0));
            }
        }
    }

    fn name(&self, e: Error) -> Error {
        match &self.path {
            Some(p) => e.with_path(p),
            None => e,
        }
    }

    /// Reads the whole stream, calling `f` on each block; returns the number of samples.
    /// On a source error, `f` has seen everything decoded before it.
    pub fn for_each_block(&mut self, mut f: impl FnMut(Block<'_>)) -> Result<Samples> {
        while let Some(b) = self.next_block()? {
            f(b);
        }
        Ok(self.pos)
    }
}

/// Reads `s` to the end and returns its loudness measurement: the measuring pass of
/// whole-file normalisation for any source (see `measure_path` for files). Errors from the
/// source are returned; `InvalidConfig` if the stream was built with `measure: false`.
pub fn measure<S: MonoSource>(s: &mut AudioStream<S>) -> Result<Loudness> {
    while s.next_block()?.is_some() {}
    s.loudness()
        .ok_or_else(|| Error::config("measure: the stream was built with `measure: false`"))
}

// ---------------------------------------------------------------------------------------------
// Files: the Decoder as the source.
// ---------------------------------------------------------------------------------------------

impl MonoSource for Decoder {
    fn sample_rate(&self) -> NonZeroU32 {
        self.info().sample_rate
    }
    fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        Decoder::read_mono(self, out)
    }
}

impl AudioStream<Decoder> {
    /// Opens the file at `path` (format probed by content) as a 16 kHz stream. Errors name
    /// the file.
    pub fn open(path: &Path, opts: StreamOptions) -> Result<Self> {
        let mut d = Decoder::open(path)?;
        d.prefer_rate(RATE)?;
        Self::from_source(d, Some(path), opts)
    }

    /// A stream over any seekable byte source (e.g. an upload in memory:
    /// `std::io::Cursor<Vec<u8>>`). `name` is used in errors only.
    pub fn from_reader<R: Read + Seek + Send + Sync + 'static>(
        r: R,
        name: Option<&Path>,
        opts: StreamOptions,
    ) -> Result<Self> {
        let mut d = Decoder::from_reader(r, name)?;
        d.prefer_rate(RATE)?;
        Self::from_source(d, name, opts)
    }

    /// A stream over an already opened decoder.
    pub fn from_decoder(mut d: Decoder, opts: StreamOptions) -> Result<Self> {
        d.prefer_rate(RATE)?;
        Self::from_source(d, None, opts)
    }

    /// What the decoder found in the file's header.
    pub fn info(&self) -> &SourceInfo {
        self.source.info()
    }
}

/// The measuring pass of whole-file normalisation: decodes `path` to 16 kHz, removes DC and
/// measures loudness and peak, holding nothing but the stream's fixed buffers. Apply the
/// result with a second stream using [`Normalization::Fixed`]`(loudness.gain(&opts))`.
///
/// A file that breaks mid-stream returns the decoder's error (e.g. [`ErrorKind::Truncated`]).
pub fn measure_path(path: &Path) -> Result<Loudness> {
    let mut s = AudioStream::open(path, StreamOptions::default())?;
    measure(&mut s)
}
