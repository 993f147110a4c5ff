//! Opening a job's input as a 16 kHz stream, once per pass, inside the decoding thread.

use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Progress, ProgressFn, ReadSeek};
use crate::channels::{self, ChannelMode, Choice, Lanes};
use crate::decode::Decoder;
use crate::stream::{FrameSource, Mono, MonoSource, TrackOptions, TrackStream, Tracks};
use crate::time::{rescale, to_secs, Samples, RATE};
use crate::transcript::Truncation;
use crate::{Error, ErrorKind, Result};

/// Makes a fresh sample source (called once per pass).
pub(crate) type MakeSource = Arc<dyn Fn() -> Result<Box<dyn MonoSource>> + Send + Sync>;

/// A job's input; cheap to clone into a decoding thread.
#[derive(Clone)]
pub(crate) enum Input {
    Path(PathBuf),
    Reader(SharedReader),
    Source(MakeSource),
}

impl Input {
    pub(crate) fn reader(r: Box<dyn ReadSeek + Send + Sync>) -> Input {
        Input::Reader(SharedReader(Arc::new(Mutex::new(r))))
    }
}

/// A reader shared between passes: each pass rewinds it and decodes from the start.
#[derive(Clone)]
pub(crate) struct SharedReader(Arc<Mutex<Box<dyn ReadSeek + Send + Sync>>>);

fn poisoned() -> std::io::Error {
    std::io::Error::other("reader lock poisoned")
}

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| poisoned())?.read(buf)
    }
}

impl Seek for SharedReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.lock().map_err(|_| poisoned())?.seek(pos)
    }
}

/// A boxed source as a [`MonoSource`].
pub(crate) struct Dyn(Box<dyn MonoSource>);

impl MonoSource for Dyn {
    fn sample_rate(&self) -> NonZeroU32 {
        self.0.sample_rate()
    }
    fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        self.0.read_mono(out)
    }
}

/// The routes' stream type.
pub(crate) type Stream = TrackStream;

/// The header's length hint of a decoder, in samples at 16 kHz.
fn hint(d: &Decoder) -> Option<Samples> {
    let info = d.info();
    info.frames_hint.map(|f| rescale(f, info.sample_rate))
}

/// What an input opens as: a decoder (file or reader; a reader is rewound, each pass
/// decodes from the start), or a ready source of samples.
enum Opened {
    Decoder(Decoder),
    Source(Box<dyn MonoSource>),
}

/// The decoder, set to synthesise at 16 kHz where its codec can (see
/// `Decoder::prefer_rate`): everything downstream works at [`RATE`].
fn at_16k(mut d: Decoder) -> Result<Decoder> {
    d.prefer_rate(RATE)?;
    Ok(d)
}

fn open_input(input: &Input, name: &Path) -> Result<Opened> {
    Ok(match input {
        Input::Path(p) => Opened::Decoder(at_16k(Decoder::open(p)?)?),
        Input::Reader(r) => {
            let mut r = r.clone();
            r.seek(SeekFrom::Start(0))
                .map_err(|e| Error::io(Some(name), e))?;
            Opened::Decoder(at_16k(Decoder::from_reader(r, Some(name))?)?)
        }
        Input::Source(make) => Opened::Source(make()?),
    })
}

/// Which channels a pass takes: decided by a [`ChannelMode`] (first pass), or fixed lanes
/// (a later pass repeating the first one's choice).
pub(crate) enum Select<'a> {
    Mode(&'a ChannelMode),
    Lanes(Lanes),
}

/// The lanes that repeat `choice`.
pub(crate) fn lanes_of(choice: &Choice) -> Lanes {
    match &choice.channels {
        None => Lanes::Mixed,
        Some(c) => Lanes::Channels(c.clone()),
    }
}

/// Opens `input` as 16 kHz tracks chosen by `select` (see [`crate::channels`]), with the
/// header's length hint as for [`open_mono`].
pub(crate) fn open_tracks(
    input: &Input,
    name: &Path,
    select: Select<'_>,
    opts: TrackOptions,
) -> Result<(Stream, Option<Samples>)> {
    let (src, hint): (Box<dyn FrameSource>, _) = match open_input(input, name)? {
        Opened::Decoder(d) => {
            let h = hint(&d);
            (Box::new(d), h)
        }
        Opened::Source(s) => (Box::new(Mono(Dyn(s))), None),
    };
    let lanes = match select {
        Select::Mode(m) => channels::lanes(m, src.channels()).map_err(|e| e.with_path(name))?,
        Select::Lanes(l) => l,
    };
    let stream = TrackStream::new(src, &lanes, Some(name), opts)?;
    Ok((stream, hint))
}

/// Set when the run that started a decoding thread is abandoned (its future dropped or
/// failed), so that the thread stops at its next block instead of decoding to the end.
#[derive(Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sets its [`Cancel`] when dropped.
pub(crate) struct CancelOnDrop(pub(crate) Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::Relaxed);
    }
}

/// The error a cancelled decoding thread ends with (nobody is left to read it).
pub(crate) fn cancelled() -> Error {
    Error::new(crate::ErrorKind::Cancelled)
}

/// Emits `Decoded` about every 10 s of audio.
pub(super) struct DecodeReporter {
    progress: Option<ProgressFn>,
    next: Samples,
    pass: u8,
}

impl DecodeReporter {
    pub(super) fn new(progress: Option<ProgressFn>, pass: u8) -> Self {
        DecodeReporter {
            progress,
            next: 0,
            pass,
        }
    }

    pub(super) fn at(&mut self, pos: Samples) {
        if pos >= self.next {
            self.next = pos + 10 * RATE as Samples;
            self.emit(pos);
        }
    }

    pub(super) fn emit(&self, pos: Samples) {
        if let Some(f) = &self.progress {
            f(&Progress::Decoded {
                seconds: to_secs(pos),
                pass: self.pass,
            });
        }
    }
}

/// With `keep`, a [`ErrorKind::Truncated`] error from the stream becomes the end of the input
/// plus a note; any other error (or `keep` false) stays an error.
pub(super) fn keep_truncation(e: Error, keep: bool, path: &Path) -> Result<Truncation> {
    match e.kind() {
        ErrorKind::Truncated {
            decoded_frames,
            sample_rate,
            what,
            ..
        } if keep => {
            let decoded_secs = if *sample_rate > 0 {
                *decoded_frames as f64 / f64::from(*sample_rate)
            } else {
                0.0
            };
            tracing::warn!(
                file = %path.display(),
                decoded_secs,
                "input truncated; transcribing what decoded"
            );
            Ok(Truncation {
                decoded_secs,
                what: what.clone(),
            })
        }
        _ => Err(e),
    }
}

/// How [`drive`] ended.
pub(super) enum Drove {
    /// The input ended; early, with the note, when it was truncated and that is allowed.
    End(Option<Truncation>),
    /// The body asked to stop.
    Stopped,
}

/// The routes' one stream loop: hands each block to `body` (`Ok(false)` stops it), reports
/// decode progress after each, and ends at the end of the input, or at a truncation when
/// `keep_truncated` allows (see [`keep_truncation`]).
pub(super) fn drive(
    stream: &mut Stream,
    path: &Path,
    keep_truncated: bool,
    report: &mut DecodeReporter,
    mut body: impl FnMut(Tracks<'_>) -> Result<bool>,
) -> Result<Drove> {
    loop {
        let block = match stream.next_block() {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Drove::End(None)),
            Err(e) => return Ok(Drove::End(Some(keep_truncation(e, keep_truncated, path)?))),
        };
        let end = block.end();
        if !body(block)? {
            return Ok(Drove::Stopped);
        }
        report.at(end);
    }
}
