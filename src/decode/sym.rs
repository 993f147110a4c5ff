//! The Symphonia backend: WAV ADPCM (and every WAV header, see `pcm`), FLAC, Ogg Vorbis, MP3 and
//! AAC in MP4.
//!
//! Decoded planar buffers are mixed straight into the caller's `Vec<f32>` (mean of channels),
//! without an interleaved intermediate and without per-sample allocation.

use std::ops::Range;

use symphonia::core::audio::conv::FromSample;
use symphonia::core::audio::sample::Sample;
use symphonia::core::audio::{Audio, AudioBuffer, GenericAudioBufferRef};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};

use super::mp4::Trim;
use super::source::Src;
use super::{malformed, truncated, unsupported, AudioFormat, Backend};
use crate::error::Result;

/// Longest gap (in frames) inserted for one undecodable packet: 10 s at 192 kHz. Also the
/// silence allowed in all beyond the audio that really decoded (see [`SymBackend::allow_fill`]).
const MAX_GAP: u64 = 192_000 * 10;

pub(crate) struct SymBackend {
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    trim: Trim,
    skipped: u64,
    channels: usize,
    /// For containers whose packet timestamps count frames from 0 (FLAC, WAV): where the
    /// next packet should start. A later start means the reader dropped a damaged packet
    /// (FLAC resyncs past a frame whose CRC fails); the gap is filled with silence.
    expect_ts: Option<i64>,
    /// Frames of real decoded audio handed out.
    real: u64,
    /// Frames of silence inserted for skipped or undecodable packets.
    filled: u64,
}

/// What Symphonia told us at open time.
pub(crate) struct Opened {
    pub(crate) backend: SymBackend,
    pub(crate) rate: Option<u32>,
    pub(crate) channels: Option<usize>,
    pub(crate) codec: String,
    pub(crate) num_frames: Option<u64>,
    /// Encoder delay the container declared (MP3: LAME/Xing tag), if any.
    pub(crate) delay: Option<u32>,
}

fn map_open_err(e: SymError) -> crate::Error {
    match e {
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            malformed("the file ends inside its header or before the first audio packet")
        }
        // Symphonia's bit readers report corrupt data ("unexpected end of bitstream") as
        // `io::ErrorKind::Other`; the OS never produces that kind, so it is the data.
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::Other => {
            malformed(format!("corrupt header data: {e}"))
        }
        SymError::IoError(e) => crate::Error::from(e),
        SymError::Unsupported(what) => unsupported(what),
        other => malformed(other.to_string()),
    }
}

impl SymBackend {
    pub(crate) fn open(src: Src, format: AudioFormat) -> Result<Opened> {
        let mss = MediaSourceStream::new(Box::new(src), MediaSourceStreamOptions::default());
        let opts = FormatOptions::default();
        use symphonia::default::formats as f;
        let reader: Box<dyn FormatReader> = match format {
            AudioFormat::Wav => Box::new(f::WavReader::try_new(mss, opts).map_err(map_open_err)?),
            AudioFormat::Flac => Box::new(f::FlacReader::try_new(mss, opts).map_err(map_open_err)?),
            AudioFormat::OggVorbis => {
                Box::new(f::OggReader::try_new(mss, opts).map_err(map_open_err)?)
            }
            AudioFormat::Mp3 => Box::new(f::MpaReader::try_new(mss, opts).map_err(map_open_err)?),
            AudioFormat::Mp4Aac => {
                Box::new(f::IsoMp4Reader::try_new(mss, opts).map_err(|e| match e {
                    // Symphonia calls a missing `moov`/`ftyp` "unsupported"; for a file that
                    // starts with `ftyp` it means the file was cut short (the `moov` of a
                    // non-faststart file comes last) or never finished by its writer.
                    SymError::Unsupported(what) if what.contains("missing") => malformed(format!(
                        "{what}: the MP4 is cut short or was never finished"
                    )),
                    other => map_open_err(other),
                })?)
            }
            other => return Err(unsupported(format!("{other:?} through Symphonia"))),
        };
        let track = reader
            .default_track(TrackType::Audio)
            .ok_or_else(|| unsupported("no audio track"))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| unsupported("the track has no audio codec parameters"))?
            .clone();
        let track_id = track.id;
        let num_frames = track.num_frames;
        let delay = track.delay;
        let mut dopts = AudioDecoderOptions::default();
        dopts.gapless = true;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &dopts)
            .map_err(|e| match e {
                SymError::Unsupported(_) => unsupported(format!(
                    "codec {:?} in a {format:?} container",
                    params.codec
                )),
                other => map_open_err(other),
            })?;
        let codec = decoder.codec_info().short_name.to_string();
        let channels = params.channels.as_ref().map(|c| c.count());
        Ok(Opened {
            backend: SymBackend {
                reader,
                decoder,
                track_id,
                trim: Trim {
                    skip: 0,
                    keep: None,
                },
                skipped: 0,
                channels: channels.unwrap_or(0),
                expect_ts: matches!(format, AudioFormat::Flac | AudioFormat::Wav).then_some(0),
                real: 0,
                filled: 0,
            },
            rate: params.sample_rate,
            channels,
            codec,
            num_frames,
            delay,
        })
    }

    /// Applies an encoder-priming trim (AAC in MP4).
    pub(crate) fn set_trim(&mut self, t: Trim) {
        self.trim = t;
    }

    /// How many of `want` frames of silence may be inserted for a skipped packet: at most
    /// [`MAX_GAP`] at once, and never more in all than the real audio decoded + `MAX_GAP`.
    /// Packet durations and timestamps are untrusted: without the total cap, a small file
    /// of undecodable packets each claiming a long duration (MP4 `stts`) decoded to hours
    /// of silence.
    fn allow_fill(&mut self, want: u64) -> u64 {
        let budget = (self.real + MAX_GAP).saturating_sub(self.filled);
        let n = want.min(MAX_GAP).min(budget);
        self.filled += n;
        n
    }

    /// The part `0..n` of a decoded buffer that survives the trim.
    fn trimmed(&mut self, n: usize) -> Range<usize> {
        let s = (self.trim.skip.min(n as u64)) as usize;
        self.trim.skip -= s as u64;
        let mut e = n;
        if let Some(k) = self.trim.keep.as_mut() {
            e = s + ((e - s) as u64).min(*k) as usize;
            *k -= (e - s) as u64;
        }
        s..e
    }
}

/// Mixes `range` of every plane of `buf` into `out` as the mean of the channels.
fn mix<S>(buf: &AudioBuffer<S>, r: Range<usize>, out: &mut Vec<f32>) -> usize
where
    S: Sample,
    f32: FromSample<S>,
{
    let planes = buf.num_planes();
    let len = r.len();
    match planes {
        0 => return 0,
        // Sized first, then written in place: loops over slices that LLVM vectorises.
        1 => {
            if let Some(p) = buf.plane(0).and_then(|p| p.get(r)) {
                let start = out.len();
                out.resize(start + p.len(), 0.0);
                for (o, &s) in out[start..].iter_mut().zip(p) {
                    *o = f32::from_sample(s);
                }
            }
        }
        2 => {
            if let Some((a, b)) = buf.plane_pair(0, 1) {
                if let (Some(a), Some(b)) = (a.get(r.clone()), b.get(r)) {
                    let start = out.len();
                    out.resize(start + a.len().min(b.len()), 0.0);
                    for ((o, &x), &y) in out[start..].iter_mut().zip(a).zip(b) {
                        *o = (f32::from_sample(x) + f32::from_sample(y)) * 0.5;
                    }
                }
            }
        }
        n => {
            let start = out.len();
            out.resize(start + len, 0.0);
            let dst = &mut out[start..];
            for i in 0..n {
                if let Some(p) = buf.plane(i).and_then(|p| p.get(r.clone())) {
                    for (o, &s) in dst.iter_mut().zip(p) {
                        *o += f32::from_sample(s);
                    }
                }
            }
            let k = 1.0 / n as f32;
            for o in dst {
                *o *= k;
            }
        }
    }
    len
}

/// [`mix`] for two planes of `i32`.
fn mix2_i32(buf: &AudioBuffer<i32>, r: Range<usize>, out: &mut Vec<f32>) -> usize {
    const SCALE: f32 = 0.5 / 2_147_483_648.0;
    if let Some((a, b)) = buf.plane_pair(0, 1) {
        if let (Some(a), Some(b)) = (a.get(r.clone()), b.get(r.clone())) {
            let start = out.len();
            out.resize(start + a.len().min(b.len()), 0.0);
            for ((o, &x), &y) in out[start..].iter_mut().zip(a).zip(b) {
                *o = (x as f32 + y as f32) * SCALE;
            }
        }
    }
    r.len()
}

/// Appends `range` of `buf` to `out` interleaved (frame by frame, every plane).
fn interleave<S>(buf: &AudioBuffer<S>, r: Range<usize>, out: &mut Vec<f32>) -> usize
where
    S: Sample,
    f32: FromSample<S>,
{
    let planes = buf.num_planes();
    let len = r.len();
    if planes == 0 {
        return 0;
    }
    let start = out.len();
    out.resize(start + len * planes, 0.0);
    let dst = &mut out[start..];
    for i in 0..planes {
        if let Some(p) = buf.plane(i).and_then(|p| p.get(r.clone())) {
            for (o, &s) in dst.iter_mut().skip(i).step_by(planes).zip(p) {
                *o = f32::from_sample(s);
            }
        }
    }
    len
}

/// Mixes (`mix`) or interleaves `range` of `buf` into `out`; returns the frames appended.
fn take_generic(
    buf: &GenericAudioBufferRef<'_>,
    r: Range<usize>,
    out: &mut Vec<f32>,
    mix_down: bool,
) -> usize {
    macro_rules! any {
        ($b:expr) => {
            if mix_down {
                mix($b, r, out)
            } else {
                interleave($b, r, out)
            }
        };
    }
    match buf {
        // FLAC and most lossless decoders give `i32`: mixed without Symphonia's per-sample
        // conversion through `f64` (exact for sources of up to 24 bits, as that one is).
        GenericAudioBufferRef::S32(b) if mix_down && b.num_planes() == 2 => mix2_i32(b, r, out),
        GenericAudioBufferRef::U8(b) => any!(b),
        GenericAudioBufferRef::U16(b) => any!(b),
        GenericAudioBufferRef::U24(b) => any!(b),
        GenericAudioBufferRef::U32(b) => any!(b),
        GenericAudioBufferRef::S8(b) => any!(b),
        GenericAudioBufferRef::S16(b) => any!(b),
        GenericAudioBufferRef::S24(b) => any!(b),
        GenericAudioBufferRef::S32(b) => any!(b),
        GenericAudioBufferRef::F32(b) => any!(b),
        GenericAudioBufferRef::F64(b) => any!(b),
    }
}

impl Backend for SymBackend {
    fn next(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize> {
        let width = if mix { 1 } else { self.channels.max(1) };
        loop {
            let packet = match self.reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(0),
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(truncated("the file ends inside a packet"))
                }
                Err(SymError::ResetRequired) => {
                    return Err(unsupported("stream parameters that change mid-stream"))
                }
                Err(e) => return Err(truncated(format!("demuxing failed: {e}"))),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let mut gap = 0usize;
            if let Some(expect) = self.expect_ts.as_mut() {
                let pts = packet.pts.get();
                if pts > *expect {
                    self.skipped += 1;
                    gap = (pts - *expect) as u64 as usize;
                }
                *expect = pts.max(*expect) + packet.dur.get() as i64;
            }
            if gap > 0 {
                gap = self.allow_fill(gap as u64) as usize;
                out.resize(out.len() + gap * width, 0.0);
            }
            let n = gap
                + match self.decoder.decode(&packet) {
                    Ok(buf) => {
                        if buf.num_planes() != self.channels && self.channels != 0 {
                            return Err(unsupported("a channel count that changes mid-stream"));
                        }
                        let frames = buf.frames();
                        let r = {
                            // Borrow juggling: compute the trimmed range without holding `buf`.
                            let s = (self.trim.skip.min(frames as u64)) as usize;
                            let mut e = frames;
                            if let Some(k) = self.trim.keep {
                                e = s + ((e - s) as u64).min(k) as usize;
                            }
                            s..e
                        };
                        let n = take_generic(&buf, r.clone(), out, mix);
                        self.real += n as u64;
                        self.trim.skip -= r.start as u64;
                        if let Some(k) = self.trim.keep.as_mut() {
                            *k -= r.len() as u64;
                        }
                        n
                    }
                    Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                        // Skip the packet but keep time: silence for its duration.
                        self.skipped += 1;
                        let dur = self.allow_fill(packet.dur.get()) as usize;
                        let r = self.trimmed(dur);
                        out.resize(out.len() + r.len() * width, 0.0);
                        r.len()
                    }
                    Err(SymError::ResetRequired) => {
                        return Err(unsupported("stream parameters that change mid-stream"))
                    }
                    Err(e) => return Err(truncated(format!("decoding failed: {e}"))),
                };
            if n > 0 {
                return Ok(n);
            }
            if self.trim.keep == Some(0) {
                return Ok(0);
            }
        }
    }

    fn skipped_packets(&self) -> u64 {
        self.skipped
    }
}
