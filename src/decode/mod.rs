//! Stage `decode`: any supported audio file → mono `f32` at its native sample rate.
//!
//! # Formats
//! The container and codec are found from the content (magic bytes), never from the file
//! name:
//!
//! | [`AudioFormat`] | Recognised by | Decoder |
//! |---|---|---|
//! | WAV: 8/16/24/32-bit PCM, 32/64-bit float, µ-law, A-law, `WAVE_FORMAT_EXTENSIBLE` | `RIFF....WAVE` | this crate (header parsed by Symphonia) |
//! | WAV: IMA/MS ADPCM | `RIFF....WAVE` | Symphonia |
//! | FLAC | `fLaC` (also after an ID3 tag) | Symphonia |
//! | Ogg Vorbis | `OggS`, first packet `\x01vorbis` | Symphonia |
//! | Ogg Opus | `OggS`, first packet `OpusHead` | `opus-rs` + `ogg` |
//! | MP3 (MPEG-1/2/2.5 layer III) | `ID3`, or two consecutive frame headers | Symphonia |
//! | AAC in MP4/M4A | `ftyp` at byte 4 | Symphonia |
//! | AMR-NB / AMR-WB storage format | `#!AMR\n` / `#!AMR-WB\n` | `asr-pipeline-amrnb` / `-amrwb` (this workspace) |
//!
//! Multichannel AMR (`#!AMR_MC1.0\n`, `#!AMR-WB_MC1.0\n`), RF64, Ogg FLAC/Speex, raw ADTS
//! AAC and MPEG audio layers I and II (`.mp2`: Symphonia's `mp1`/`mp2` features are not
//! built) are recognised and refused with [`ErrorKind::Unsupported`].
//!
//! # Downmix
//! [`Decoder::read_mono`]: every channel counts the same: mono sample = mean of all channels
//! (`(L + R) / 2` for stereo). No channel weighting, no normalisation: a mono file comes out
//! unchanged, a stereo file with the same signal in both channels too.
//! [`Decoder::read_interleaved`] hands out every channel instead, from the same decoding (the
//! channel-separated route of [`crate::channels`]).
//!
//! # Time 0 is the first real sample
//! MP3 encoder delay and padding (LAME/Xing header) and Vorbis are trimmed by Symphonia's
//! gapless mode; AAC priming and padding in MP4 are trimmed here from the track's edit list
//! (or `iTunSMPB`); Opus pre-skip is dropped and the final granule position trims the end.
//!
//! An MP3 without a LAME tag (no Xing/Info frame, or one without the LAME extension) does
//! not say how much delay it has. Its output is then trimmed by the layer III decoder's own
//! delay only: 529 frames (528 + 1, the synthesis filterbank; the same value LAME, mpg123,
//! ffmpeg and Symphonia add to a tagged file's encoder delay), at the start, and nothing at
//! the end. Time 0 is then the first sample the ENCODER saw, so the audio starts one encoder
//! delay late (576 frames for LAME, 1105 if the decoder delay were not trimmed) and keeps the
//! encoder's padding at the end (up to one frame, 1152 frames). Checked against ffmpeg 5.1 on a
//! click: ffmpeg (which trims nothing without a tag) puts it 529 frames later than we do.
//! AMR DTX gaps (SID, NO_DATA, lost frames) each produce their 20 ms of comfort noise, so
//! durations are exact.
//!
//! # Sample rates and channel counts
//! Rates from 1 000 to 384 000 Hz and 1 to 64 channels are accepted; anything else is
//! [`ErrorKind::Malformed`]. (The 16 kHz front end, [`crate::resample`], takes 8 to 192 kHz.)
//!
//! # Bad input
//! Every error names the file ([`Error::with_path`]) and has a kind: `Empty` (no bytes),
//! `UnrecognizedFormat` (no known magic: text, random bytes, whatever the extension says),
//! `Unsupported` (a known container with a codec or layout we do not decode: GSM or MP3 in
//! WAV, multichannel AMR, RF64, Ogg FLAC, multistream Opus), `Malformed` (a header that is cut
//! short or claims impossible parameters), `Truncated` (the stream broke after some audio:
//! see [`Decoder::read_mono`]). Buffers are sized by constants, never by header fields (a
//! WAV claiming 4 GB gets its sizes clamped to the bytes present; an MP4 `moov` is read only
//! up to 64 MiB). Every call into a decoder runs under `catch_unwind`: a panic inside a
//! third-party decoder becomes `Malformed` (while opening) or `Truncated` (while decoding)
//! instead of taking the process down; it costs nothing unless a panic happens. Samples
//! come out within full scale: a NaN or an infinity (a float WAV can hold them) as 0, anything
//! beyond ±1 (a float WAV's over-range or garbage values, a lossy decoder's overshoot) clipped
//! to ±1, as any conversion to 16 bits does. Left in, a NaN would spread through the resampler
//! and the DC blocker to the rest of the file, and a huge value overflow the resampler.
//!
//! A packet that fails to decode (a recoverable codec error) does not stop the stream: it is
//! replaced by silence of its duration (AMR: concealed by the decoder, as the standard says)
//! and counted in [`Decoder::packets_skipped`]. The same
//! holds when Symphonia's FLAC/WAV reader skips a damaged frame (detected by a jump in packet
//! timestamps). So the timeline stays exact, within one limit: durations and timestamps of
//! damaged packets are untrusted, so the silence inserted is at most 10 s at 192 kHz per gap
//! and, in all, at most that much more than the audio that really decoded (a file of nothing
//! but undecodable packets claiming long durations does not decode to hours of silence).

use std::fs::File;
use std::num::{NonZeroU16, NonZeroU32};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

mod amr;
mod mp4;
mod opus;
mod pcm;
mod probe;
mod source;
mod sym;
mod wav;

use source::Src;

/// The lowest sample rate accepted, in Hz.
pub(crate) const MIN_RATE: u32 = 1_000;
/// The highest sample rate accepted, in Hz.
pub(crate) const MAX_RATE: u32 = 384_000;
/// Frames of delay the MPEG audio layer III decoder adds (528 + 1): trimmed from MP3s that
/// carry no LAME tag (a tagged file's delay already includes it, see the module docs).
const MP3_DECODER_DELAY: u64 = 529;

/// The largest channel count accepted.
pub(crate) const MAX_CHANNELS: usize = 64;

/// A container + codec combination this module decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioFormat {
    /// RIFF/WAVE: PCM, float, µ-law, A-law, ADPCM.
    Wav,
    /// Native FLAC.
    Flac,
    /// Vorbis in Ogg.
    OggVorbis,
    /// Opus in Ogg.
    OggOpus,
    /// MPEG audio (layer III, also I and II).
    Mp3,
    /// AAC in an MP4/M4A container.
    Mp4Aac,
    /// AMR narrowband (8 kHz), RFC 4867 storage format.
    AmrNb,
    /// AMR wideband (16 kHz), RFC 4867 storage format.
    AmrWb,
}

impl AudioFormat {
    /// A short human-readable name, e.g. `"Ogg Opus"`.
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "WAV",
            AudioFormat::Flac => "FLAC",
            AudioFormat::OggVorbis => "Ogg Vorbis",
            AudioFormat::OggOpus => "Ogg Opus",
            AudioFormat::Mp3 => "MP3",
            AudioFormat::Mp4Aac => "MP4/AAC",
            AudioFormat::AmrNb => "AMR-NB",
            AudioFormat::AmrWb => "AMR-WB",
        }
    }
}

/// What a [`Decoder`] found out about its input when it opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceInfo {
    /// The container / codec, found by content.
    pub format: AudioFormat,
    /// The codec's short name, e.g. `"pcm_s16le"`, `"opus"`, `"amr-nb"`.
    pub codec: String,
    /// The rate of the decoded samples (Opus: 48 kHz; a 16 kHz stream over the decoder has it
    /// synthesise 16 kHz directly).
    pub sample_rate: NonZeroU32,
    /// Channels in the source (the output is always mono).
    pub channels: NonZeroU16,
    /// The number of frames the header announces, when it does. A hint only: it comes from
    /// an untrusted header (WAV hints are clamped to the bytes present), so never allocate
    /// by it.
    pub frames_hint: Option<u64>,
}

/// One decoding backend: appends ≥ 1 frames, mixed to mono (`mix`) or interleaved (every
/// channel of [`SourceInfo::channels`]), and returns how many frames; `Ok(0)` at the end.
/// Errors of kind [`ErrorKind::Truncated`] leave `decoded_frames` at 0 for the [`Decoder`]
/// to fill in.
trait Backend: Send {
    fn next(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize>;
    fn skipped_packets(&self) -> u64;
    /// Makes the codec synthesise at the lowest rate it can natively that is at least
    /// `rate` and below the current one; returns that rate, or `None` (nothing changed).
    /// Called only before the first [`Backend::next`].
    fn lower_rate(&mut self, _rate: u32) -> Result<Option<u32>> {
        Ok(None)
    }
}

pub(crate) fn malformed(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Malformed {
        path: None,
        what: what.into(),
    })
}

pub(crate) fn unsupported(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported {
        path: None,
        what: what.into(),
    })
}

pub(crate) fn truncated(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Truncated {
        path: None,
        decoded_frames: 0,
        sample_rate: 0,
        what: what.into(),
    })
}

/// Makes every sample a number within full scale: 0 in place of a NaN or an infinity, and
/// anything beyond ±1 clipped to ±1, as any conversion to 16 bits does (a float WAV can hold
/// NaN, infinities and values up to 3.4e38; a lossy decoder's overshoot is a few percent).
/// Left in, a NaN goes on through every filter after it (the resampler's FFT blocks, the DC
/// blocker's recursion) and silences the rest of the file, a huge value overflows the
/// resampler's FFT into NaN (rubato then panics), and a spike far above full scale would hold
/// the gain of the speech around it down by as much. (A select on every sample, not a store
/// on some: that vectorises.)
pub(crate) fn to_full_scale(samples: &mut [f32]) {
    for v in samples {
        *v = if v.is_finite() {
            v.clamp(-1.0, 1.0)
        } else {
            0.0
        };
    }
}

/// Text of a panic payload.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Ended (cleanly or after an error was reported): every further call returns `Ok(0)`.
    Finished,
}

/// A streaming decoder from any supported file to mono `f32` at the file's own rate.
///
/// ```no_run
/// # fn main() -> asr_pipeline::Result<()> {
/// use asr_pipeline::decode::Decoder;
/// let mut d = Decoder::open(std::path::Path::new("call.amr"))?;
/// let mut pcm = Vec::new();
/// while d.read_mono(&mut pcm)? > 0 {}
/// println!("{} frames at {} Hz", pcm.len(), d.info().sample_rate);
/// # Ok(()) }
/// ```
pub struct Decoder {
    backend: Box<dyn Backend>,
    info: SourceInfo,
    path: Option<PathBuf>,
    frames: u64,
    /// Frames the header promised, where that promise is exact (WAV data size, FLAC
    /// STREAMINFO): ending short of it is reported as truncation.
    declared: Option<u64>,
    state: State,
    /// [`to_full_scale`] on everything read: always, but in the tests that compare backends
    /// on the samples they make.
    full_scale: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("info", &self.info)
            .field("path", &self.path)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Opens the file at `path` and reads its header. Errors name the file.
    pub fn open(path: &Path) -> Result<Decoder> {
        let file = File::open(path).map_err(|e| Error::io(Some(path), e))?;
        Decoder::from_boxed(Box::new(file), Some(path))
    }

    /// Opens any seekable byte source, from byte 0. `name` is used in error messages only.
    pub fn from_reader<R: std::io::Read + std::io::Seek + Send + Sync + 'static>(
        r: R,
        name: Option<&Path>,
    ) -> Result<Decoder> {
        Decoder::from_boxed(Box::new(r), name)
    }

    fn from_boxed(r: Box<dyn source::ReadSeek>, name: Option<&Path>) -> Result<Decoder> {
        let opened =
            catch_unwind(AssertUnwindSafe(|| Decoder::open_inner(r))).unwrap_or_else(|p| {
                Err(malformed(format!(
                    "a decoder panicked while reading the header: {}",
                    panic_text(p.as_ref())
                )))
            });
        let (backend, info, declared) = match opened {
            Ok(x) => x,
            Err(e) => {
                return Err(match name {
                    Some(n) => e.with_path(n),
                    None => e,
                })
            }
        };
        Ok(Decoder {
            backend,
            info,
            path: name.map(Path::to_path_buf),
            frames: 0,
            declared,
            state: State::Running,
            full_scale: true,
        })
    }

    #[allow(clippy::type_complexity)]
    fn open_inner(
        r: Box<dyn source::ReadSeek>,
    ) -> Result<(Box<dyn Backend>, SourceInfo, Option<u64>)> {
        let mut src = Src::new(r)?;
        let format = probe::probe(&mut src)?;
        let info = |codec: &str, rate: Option<u32>, ch: Option<usize>, hint| {
            let rate = rate.ok_or_else(|| malformed("no sample rate in the header"))?;
            let ch = ch.ok_or_else(|| malformed("no channel count in the header"))?;
            if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                return Err(malformed(format!(
                    "sample rate {rate} Hz (supported: {MIN_RATE} to {MAX_RATE})"
                )));
            }
            if ch == 0 || ch > MAX_CHANNELS {
                return Err(malformed(format!(
                    "{ch} channels (supported: 1 to {MAX_CHANNELS})"
                )));
            }
            Ok(SourceInfo {
                format,
                codec: codec.to_string(),
                sample_rate: NonZeroU32::new(rate).ok_or_else(|| malformed("rate 0"))?,
                channels: u16::try_from(ch)
                    .ok()
                    .and_then(NonZeroU16::new)
                    .ok_or_else(|| malformed("channel count"))?,
                frames_hint: hint,
            })
        };
        match format {
            AudioFormat::OggOpus => {
                let (b, head) = opus::OpusBackend::open(src)?;
                let i = info(
                    "opus",
                    Some(48_000),
                    Some(usize::from(head.channels)),
                    head.frames_hint,
                )?;
                Ok((Box::new(b), i, None))
            }
            AudioFormat::AmrNb | AudioFormat::AmrWb => {
                let wide = format == AudioFormat::AmrWb;
                let b = amr::AmrBackend::open(src, wide)?;
                let (codec, rate) = if wide {
                    ("amr-wb", 16_000)
                } else {
                    ("amr-nb", 8_000)
                };
                let i = info(codec, Some(rate), Some(1), None)?;
                Ok((Box::new(b), i, None))
            }
            AudioFormat::Wav => {
                let c = wav::check(&mut src)?;
                if let Some(d) = c.direct {
                    // Symphonia parses the canonical header alone (a few dozen bytes), so what
                    // is accepted, the channel count and the codec name stay its own; the
                    // plain sample formats are then read directly from the data.
                    let head = Src::new(Box::new(std::io::Cursor::new(d.head)))?;
                    let o = sym::SymBackend::open(head, format)?;
                    if let (Some(kind), Some(ch)) = (pcm::Kind::from_codec(&o.codec), o.channels) {
                        let b = pcm::PcmBackend::open(src, kind, ch, d.data_at, d.data_len)?;
                        let i = info(&o.codec, o.rate, o.channels, c.present_frames)?;
                        return Ok((Box::new(b), i, c.declared_frames));
                    }
                }
                let o = sym::SymBackend::open(src, format)?;
                let i = info(&o.codec, o.rate, o.channels, c.present_frames)?;
                Ok((Box::new(o.backend), i, c.declared_frames))
            }
            _ => {
                let mut declared = None;
                let raw_trim = if format == AudioFormat::Mp4Aac {
                    mp4::trim(&mut src)?
                } else {
                    None
                };
                let o = sym::SymBackend::open(src, format)?;
                let mut backend = o.backend;
                let mut hint = o.num_frames;
                if format == AudioFormat::Mp3 && o.delay.is_none() {
                    // No LAME/Xing tag: trim at least the MPEG decoder's own delay of 529
                    // frames (the encoder's delay, 576 for LAME, is not recorded anywhere).
                    backend.set_trim(mp4::Trim {
                        skip: MP3_DECODER_DELAY,
                        keep: None,
                    });
                    hint = hint.map(|n| n.saturating_sub(MP3_DECODER_DELAY));
                }
                if format == AudioFormat::Flac {
                    declared = hint.filter(|&n| n > 0);
                }
                if let Some(t) = raw_trim.zip(o.rate).and_then(|(t, r)| t.at_rate(r)) {
                    backend.set_trim(t);
                    hint = hint.map(|n| n.saturating_sub(t.skip));
                    if let Some(k) = t.keep {
                        hint = Some(hint.map_or(k, |n| n.min(k)));
                    }
                }
                let i = info(&o.codec, o.rate, o.channels, hint)?;
                Ok((Box::new(backend), i, declared))
            }
        }
    }

    /// What the decoder found in the header.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Lets a codec that can synthesise its output at several rates decode directly at the
    /// lowest of them that is at least `rate` (Opus: 8, 12, 16, 24 or 48 kHz), instead of at
    /// full rate for a resampler to bring down: the pipeline, which needs 16 kHz, asks for
    /// it. [`Decoder::info`] then gives the rate decoded at (and the length hint at that rate).
    /// No effect on other codecs, or once reading has started.
    pub(crate) fn prefer_rate(&mut self, rate: u32) -> Result<()> {
        if self.frames > 0 || self.state != State::Running {
            return Ok(());
        }
        let old = self.info.sample_rate;
        let Some(new) = self.backend.lower_rate(rate).map_err(|e| self.fix(e))? else {
            return Ok(());
        };
        let Some(new) = NonZeroU32::new(new) else {
            return Ok(());
        };
        self.info.sample_rate = new;
        self.info.frames_hint = self
            .info
            .frames_hint
            .map(|f| (u128::from(f) * u128::from(new.get()) / u128::from(old.get())) as u64);
        Ok(())
    }

    /// Frames (per channel, at [`SourceInfo::sample_rate`]) appended by [`read_mono`] so far.
    ///
    /// [`read_mono`]: Decoder::read_mono
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    /// Packets that failed to decode and were replaced by audio of the same duration.
    /// A recoverable codec error on one packet (Symphonia's `DecodeError`, an Opus packet
    /// `opus-rs` refuses) does not stop decoding: the packet becomes silence, time is kept and
    /// the packet is counted here. AMR frames that carry nothing usable (marked damaged, lost,
    /// or of a reserved type) are counted too; the AMR decoders conceal them as the standard
    /// says (extrapolated speech, or comfort noise inside a DTX period) instead of silence.
    pub fn packets_skipped(&self) -> u64 {
        self.backend.skipped_packets()
    }

    /// Decodes the next packet(s), downmixes to mono (mean of channels) and APPENDS the
    /// frames to `out`. Returns how many frames were appended; `Ok(0)` only at end of stream.
    /// Encoder delay / priming / pre-skip are already trimmed: frame 0 is original time 0.
    ///
    /// # Truncation contract
    /// A stream that breaks part way (file cut short, corrupt container, a decoder that
    /// panics) first returns, through earlier `Ok` calls, every frame that decoded cleanly;
    /// then one call returns [`ErrorKind::Truncated`] with `decoded_frames` equal to
    /// [`frames_decoded`] (at `sample_rate`) and appends nothing. The caller may keep or drop
    /// the frames it has. After any error, further calls return `Ok(0)`.
    ///
    /// An end of data before the length a header declares exactly (WAV `data` size, FLAC
    /// STREAMINFO) is also reported as `Truncated`.
    ///
    /// Every error names the file when the decoder was given one.
    ///
    /// [`frames_decoded`]: Decoder::frames_decoded
    pub fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        self.read(out, true)
    }

    /// Like [`Decoder::read_mono`], but APPENDS every channel, interleaved (frame by frame:
    /// `[c0, c1, .., c0, c1, ..]`, [`SourceInfo::channels`] values per frame). Returns the
    /// number of FRAMES appended; the same truncation contract holds.
    ///
    /// This is what channel-separated transcription reads: the file is decoded once and
    /// each channel is taken from the same frames.
    pub fn read_interleaved(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        self.read(out, false)
    }

    fn read(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize> {
        if self.state == State::Finished {
            return Ok(0);
        }
        let before = out.len();
        let width = if mix {
            1
        } else {
            usize::from(self.info.channels.get())
        };
        let backend = &mut self.backend;
        let r = catch_unwind(AssertUnwindSafe(|| backend.next(out, mix))).unwrap_or_else(|p| {
            Err(truncated(format!(
                "the decoder panicked: {}",
                panic_text(p.as_ref())
            )))
        });
        match r {
            Ok(0) => {
                out.truncate(before);
                self.state = State::Finished;
                match self.declared {
                    Some(d) if self.frames < d => Err(self.fix(truncated(format!(
                        "the header declares {d} frames, the data ends after {}",
                        self.frames
                    )))),
                    _ => Ok(0),
                }
            }
            Ok(n) => {
                debug_assert_eq!(out.len() - before, n * width);
                self.frames += n as u64;
                if self.full_scale {
                    to_full_scale(&mut out[before..]);
                }
                Ok(n)
            }
            Err(e) => {
                out.truncate(before);
                self.state = State::Finished;
                Err(self.fix(e))
            }
        }
    }

    /// Fills in the decoded length and the file name of a backend error.
    fn fix(&self, e: Error) -> Error {
        let e = match e.into_kind() {
            ErrorKind::Truncated { path, what, .. } => Error::new(ErrorKind::Truncated {
                path,
                decoded_frames: self.frames,
                sample_rate: self.info.sample_rate.get(),
                what,
            }),
            other => Error::new(other),
        };
        match &self.path {
            Some(p) => e.with_path(p),
            None => e,
        }
    }
}
