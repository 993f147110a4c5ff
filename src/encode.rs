//! Stage `encode`: mono 16-bit writers for what goes over the wire (normally 16 kHz), block by
//! block to any [`Write`], in constant memory.
//!
//! Samples are `f32` in `[-1, 1]`; they are quantised as `x × 32768` rounded to the nearest
//! integer (halves to even) and clamped to `[-32768, 32767]` (NaN becomes 0), which is the
//! exact inverse of the decoder's `s / 32768`: a 16-bit file written here decodes to the same
//! samples.

use std::io::{Seek, SeekFrom, Write};
use std::num::NonZeroU32;

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, Stream};
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};

use crate::error::{Error, ErrorKind, Result};

fn enc_err(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Encode { what: what.into() })
}

/// Quantises one sample to 16 bits (see the module docs).
#[inline]
pub fn quantize(x: f32) -> i16 {
    // Adding 1.5 × 2^23 leaves no fraction bits below 1 for |y| ≤ 2^22: the sum is y rounded
    // to the nearest integer (halves to even), in plain arithmetic that vectorises, where
    // `f32::round` is a libm call on baseline x86-64. NaN stays NaN and `as` makes it 0.
    const SHIFT: f32 = 12_582_912.0;
    let y = (x * 32768.0).clamp(-32768.0, 32767.0);
    ((y + SHIFT) - SHIFT) as i16
}

/// Appends `samples` to `out` as 16-bit little-endian PCM.
fn push_pcm16(samples: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 2 * samples.len(), 0);
    for (d, &x) in out[start..].chunks_exact_mut(2).zip(samples) {
        d.copy_from_slice(&quantize(x).to_le_bytes());
    }
}

/// A 16-bit PCM mono WAV writer to any `Write`, streaming.
///
/// With `total_frames: Some(n)` the header carries the true sizes and is written first;
/// [`finish`](WavWriter::finish) fails if a different number of frames was written.
/// With `None` (length unknown, `W` not seekable) the RIFF and `data` sizes are written as
/// `0xFFFFFFFF`, the convention streaming writers (ffmpeg, sox) use for "until end of file":
/// this crate's decoder, Symphonia, ffmpeg and sox read such files to their end, but strict
/// readers may not. Prefer `Some` when the length is known (e.g. a segment).
#[derive(Debug)]
pub struct WavWriter<W: Write> {
    w: W,
    declared: Option<u64>,
    written: u64,
    buf: Vec<u8>,
}

/// Largest number of 16-bit mono frames a RIFF size field can describe.
const WAV_MAX_FRAMES: u64 = (u32::MAX as u64 - 36) / 2;

fn wav_header(rate: u32, frames: Option<u64>) -> [u8; 44] {
    let (riff, data) = match frames {
        Some(n) => ((36 + 2 * n) as u32, (2 * n) as u32),
        None => (u32::MAX, u32::MAX),
    };
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

impl<W: Write> WavWriter<W> {
    /// Writes the header for a mono 16-bit file at `rate`; see the type docs for
    /// `total_frames`.
    pub fn new(mut w: W, rate: NonZeroU32, total_frames: Option<u64>) -> Result<Self> {
        if total_frames.is_some_and(|n| n > WAV_MAX_FRAMES) {
            return Err(enc_err(format!(
                "{} frames do not fit a WAV file (max {WAV_MAX_FRAMES})",
                total_frames.unwrap_or(0)
            )));
        }
        if rate.get() > u32::MAX / 2 {
            return Err(Error::config(format!(
                "sample rate {rate} is too high for WAV"
            )));
        }
        w.write_all(&wav_header(rate.get(), total_frames))?;
        Ok(WavWriter {
            w,
            declared: total_frames,
            written: 0,
            buf: Vec::new(),
        })
    }

    /// Appends samples (quantised to 16 bits).
    pub fn write(&mut self, samples: &[f32]) -> Result<()> {
        let n = samples.len() as u64;
        if let Some(d) = self.declared {
            if self.written + n > d {
                return Err(enc_err(format!(
                    "WAV header declared {d} frames; writing {} would exceed it",
                    self.written + n
                )));
            }
        } else if self.written + n > WAV_MAX_FRAMES {
            return Err(enc_err("WAV output exceeds 4 GiB"));
        }
        self.buf.clear();
        push_pcm16(samples, &mut self.buf);
        self.w.write_all(&self.buf)?;
        self.written += n;
        Ok(())
    }

    /// Flushes and returns the writer. Fails if a declared length was not met.
    pub fn finish(mut self) -> Result<W> {
        if let Some(d) = self.declared {
            if self.written != d {
                return Err(enc_err(format!(
                    "WAV header declared {d} frames but {} were written",
                    self.written
                )));
            }
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

/// A complete 16-bit mono WAV file in memory (for one segment, ≤ 60 s).
pub fn wav_bytes(samples: &[f32], rate: NonZeroU32) -> Vec<u8> {
    let frames = (samples.len() as u64).min(WAV_MAX_FRAMES);
    let samples = &samples[..frames as usize];
    let mut out = Vec::with_capacity(44 + 2 * samples.len());
    out.extend_from_slice(&wav_header(rate.get(), Some(frames)));
    push_pcm16(samples, &mut out);
    out
}

/// FLAC block size (frames per FLAC frame).
const FLAC_BLOCK: usize = 4096;
/// FLAC frames gathered and encoded at once, in parallel (about 4 s at 16 kHz).
const BATCH: usize = 16;

/// A 16-bit mono FLAC writer to any `Write`, streaming with `flacenc`'s per-frame encoder.
/// Frames are independent, so they are gathered 16 at a time and encoded in parallel on
/// rayon's global pool (shared by every writer in the process: a batch of files does not start
/// more threads than the machine has cores), then written in order. Memory is one batch
/// (about 4 s of audio), whatever the length.
///
/// Because `W` need not be seekable, STREAMINFO is written first: its total-samples, MD5 and
/// min/max frame-size fields are 0, which FLAC defines as "unknown" (what `flac -` to a pipe
/// produces). Some readers (libsndfile, and so servers built on it) cannot size such a stream:
/// when `W` is seekable, finish with [`FlacWriter::finish_seekable`], which goes back and writes
/// the true total-samples and frame-size fields.
pub struct FlacWriter<W: Write> {
    w: W,
    /// Bytes written so far (header included), to find STREAMINFO again.
    bytes: u64,
    /// Samples encoded so far.
    samples: u64,
    /// Smallest and largest encoded frame, in bytes.
    frame_min: u32,
    frame_max: u32,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: flacenc::component::StreamInfo,
    /// One frame buffer and one output sink per frame of a batch, made as needed.
    fbs: Vec<FrameBuf>,
    sinks: Vec<ByteSink>,
    /// Samples of the batch being gathered (up to `BATCH * FLAC_BLOCK`).
    pending: Vec<i32>,
    frame_no: usize,
}

impl<W: Write> std::fmt::Debug for FlacWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlacWriter")
            .field("frames_written", &self.frame_no)
            .finish_non_exhaustive()
    }
}

impl<W: Write> FlacWriter<W> {
    /// Writes the stream header for mono 16-bit FLAC at `rate`.
    pub fn new(mut w: W, rate: NonZeroU32) -> Result<Self> {
        let config = flacenc::config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| enc_err(format!("FLAC config: {e}")))?;
        let mut stream = Stream::new(rate.get() as usize, 1, 16)
            .map_err(|e| Error::config(format!("FLAC at {rate} Hz: {e}")))?;
        stream
            .stream_info_mut()
            .set_block_sizes(FLAC_BLOCK, FLAC_BLOCK)
            .map_err(|e| enc_err(format!("FLAC block size: {e}")))?;
        let info = stream.stream_info().clone();
        let mut sink = ByteSink::new();
        stream
            .write(&mut sink)
            .map_err(|e| enc_err(format!("FLAC header: {e}")))?;
        w.write_all(sink.as_slice())?;
        let bytes = sink.as_slice().len() as u64;
        Ok(FlacWriter {
            w,
            bytes,
            samples: 0,
            frame_min: u32::MAX,
            frame_max: 0,
            config,
            info,
            fbs: Vec::with_capacity(BATCH),
            sinks: Vec::with_capacity(BATCH),
            pending: Vec::with_capacity(BATCH * FLAC_BLOCK),
            frame_no: 0,
        })
    }

    /// Encodes the gathered samples (whole blocks, and a short last one at the end) in
    /// parallel and writes the frames in order.
    fn emit(&mut self) -> Result<()> {
        use rayon::prelude::*;
        if self.pending.is_empty() {
            return Ok(());
        }
        let (config, info, first) = (&self.config, &self.info, self.frame_no);
        let n = self.pending.len().div_ceil(FLAC_BLOCK);
        // Buffers for as many frames as a batch has had so far (a short write needs few).
        while self.fbs.len() < n {
            self.fbs.push(
                FrameBuf::with_size(1, FLAC_BLOCK)
                    .map_err(|e| enc_err(format!("FLAC frame buffer: {e}")))?,
            );
            self.sinks.push(ByteSink::new());
        }
        let encode =
            |(i, ((fb, sink), block)): (usize, ((&mut FrameBuf, &mut ByteSink), &[i32]))| {
                let no = first + i;
                if block.len() != FLAC_BLOCK {
                    fb.resize(block.len());
                }
                fb.fill_interleaved(block)
                    .map_err(|e| enc_err(format!("FLAC: {e}")))?;
                let frame = flacenc::encode_fixed_size_frame(config, fb, no, info)
                    .map_err(|e| enc_err(format!("FLAC frame {no}: {e}")))?;
                sink.clear();
                frame
                    .write(sink)
                    .map_err(|e| enc_err(format!("FLAC frame {no}: {e}")))
            };
        let (fbs, sinks) = (&mut self.fbs[..n], &mut self.sinks[..n]);
        if n > 1 {
            fbs.par_iter_mut()
                .zip(sinks.par_iter_mut())
                .zip(self.pending.par_chunks(FLAC_BLOCK))
                .enumerate()
                .try_for_each(encode)?;
        } else {
            fbs.iter_mut()
                .zip(sinks.iter_mut())
                .zip(self.pending.chunks(FLAC_BLOCK))
                .enumerate()
                .try_for_each(encode)?;
        }
        for sink in &self.sinks[..n] {
            self.w.write_all(sink.as_slice())?;
            let len = sink.as_slice().len();
            self.bytes += len as u64;
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            self.frame_min = self.frame_min.min(len);
            self.frame_max = self.frame_max.max(len);
        }
        self.samples += self.pending.len() as u64;
        self.frame_no += n;
        self.pending.clear();
        Ok(())
    }

    /// Appends samples (quantised to 16 bits); each full batch of blocks is encoded and written
    /// at once.
    pub fn write(&mut self, samples: &[f32]) -> Result<()> {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (BATCH * FLAC_BLOCK - self.pending.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.pending
                .extend(now.iter().map(|&x| i32::from(quantize(x))));
            rest = later;
            if self.pending.len() == BATCH * FLAC_BLOCK {
                self.emit()?;
            }
        }
        Ok(())
    }

    /// Encodes the last (short) block, flushes and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.emit()?;
        self.w.flush()?;
        Ok(self.w)
    }
}

impl<W: Write + Seek> FlacWriter<W> {
    /// Like [`FlacWriter::finish`], then seeks back to STREAMINFO and writes the true total
    /// sample count and min/max frame sizes, so readers that size the stream from its header
    /// (libsndfile, ffprobe's duration) see the real length. The writer is left at the end.
    pub fn finish_seekable(mut self) -> Result<W> {
        self.emit()?;
        // STREAMINFO starts after "fLaC" and its 4-byte block header; fields at these offsets:
        // 4..7 min frame size (24 bits), 7..10 max frame size, 10..18 packs rate (20 bits),
        // channels-1 (3), bits-1 (5) and total samples (36 bits).
        let start = 8;
        let mut info = [0u8; 18];
        self.w
            .seek(SeekFrom::Current(-(self.bytes as i64) + start + 4))?;
        let (min, max) = if self.frame_max == 0 {
            (0, 0)
        } else {
            (self.frame_min.min(0xFF_FFFF), self.frame_max.min(0xFF_FFFF))
        };
        info[0..3].copy_from_slice(&min.to_be_bytes()[1..]);
        info[3..6].copy_from_slice(&max.to_be_bytes()[1..]);
        let rate = self.info.sample_rate() as u64;
        let total = self.samples.min((1 << 36) - 1);
        // rate(20) | channels-1 (3) = 0 | bits-1 (5) = 15 | total(36)
        let packed: u64 = (rate << 44) | (15 << 36) | total;
        info[6..14].copy_from_slice(&packed.to_be_bytes());
        self.w.write_all(&info[..14])?;
        self.w.seek(SeekFrom::End(0))?;
        self.w.flush()?;
        Ok(self.w)
    }
}
