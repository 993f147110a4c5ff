//! The direct WAV backend for the codecs that are plain sample formats: PCM integer (8-bit
//! unsigned, 16/24/32-bit signed little-endian), IEEE float 32/64, A-law and µ-law, plain or
//! `WAVE_FORMAT_EXTENSIBLE`. The `data` chunk is read in blocks of [`BLOCK`] bytes (at most
//! [`MAX_FRAMES`] frames) into one reusable buffer and converted straight into the caller's
//! `Vec<f32>`: mixed to mono or appended interleaved. (Through Symphonia, each packet of 1152
//! frames was copied into a planar typed buffer, then converted and mixed: ~15 % of the CPU of
//! a whole pipeline run on a 48 kHz stereo WAV.)
//!
//! # Same output as Symphonia, bit for bit
//! The header is still parsed by Symphonia (see the WAV branch of `Decoder::open_inner`), so
//! what is accepted or refused, the channel count and the codec names are unchanged; this
//! backend only replaces the reading of the samples, and reproduces Symphonia 0.6's arithmetic
//! exactly (`symphonia-codec-pcm`, `symphonia_core::audio::conv`, and the mixing of `sym.rs`):
//!
//! | codec | sample → `f32` |
//! |---|---|
//! | `pcm_u8` | `s as f32 / 128 - 1` |
//! | `pcm_s16le` | `s as f32 / 32768` |
//! | `pcm_s24le` | `s as f32 / 8388608` (sign-extended from 24 bits) |
//! | `pcm_s32le` | `(s as f64 / 2147483648) as f32` |
//! | `pcm_f32le` | `s` |
//! | `pcm_f64le` | `s as f32` |
//! | `pcm_alaw`, `pcm_mulaw` | G.711 expansion to `i16`, then `as f32 / 32768` |
//!
//! A WAV's "valid bits per sample" never shifts anything (Symphonia gives the PCM decoder the
//! same value as coded and decoded width). Mixing, per frame, as `sym::mix`: one channel is
//! the sample; two are `(a + b) * 0.5` (`pcm_s32le`: `(a as f32 + b as f32) * (0.5 / 2³¹)`, as
//! `sym::mix2_i32`); more start from `0.0`, add every channel in order, then multiply by
//! `1.0 / channels as f32`. Only whole frames decode: trailing bytes that do not fill a frame
//! (`bytes per sample × channels`, Symphonia's, whatever the header's block align says) are
//! ignored, as Symphonia ignores them.
//!
//! One thing is not reproducible, in either direction: the payload of a NaN that a mix of
//! float samples produces from two NaNs (Rust leaves it to the code generated, which operand's
//! payload survives `a + b`). It is a NaN either way (the [`super::Decoder`] then hands every NaN
//! out as 0, whichever backend decoded it, and clips everything to ±1).
//!
//! Errors: the data ends where the canonical header says (clamped to the file's length), so a
//! shortfall is reported by the [`super::Decoder`] against the declared size; a read that fails
//! or finds the file shorter than measured at open hands out the whole frames read, then
//! [`crate::ErrorKind::Truncated`].

use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom};

use super::source::Src;
use super::{malformed, truncated, Backend};
use crate::error::Result;

/// Bytes of the `data` chunk read per call (rounded down to whole frames): the one buffer the
/// backend holds, whatever the file's length.
const BLOCK: usize = 64 * 1024;
/// Most frames handed out per call, whatever the sample size: the stream after the decoder
/// sizes its reads and queues in frames, and 64 KiB of 8 kHz µ-law are 8 s of audio (the
/// read-ahead then held 4 times the audio it means to: 66 MB of peak memory on an hour, 44 MB
/// with this cap).
const MAX_FRAMES: usize = 8192;

/// The sample formats decoded here, named after Symphonia's codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    U8,
    S16,
    S24,
    S32,
    F32,
    F64,
    ALaw,
    MuLaw,
}

impl Kind {
    /// The format of a Symphonia codec short name (as in [`super::SourceInfo::codec`]), if it is
    /// one decoded here.
    pub(crate) fn from_codec(short_name: &str) -> Option<Kind> {
        Some(match short_name {
            "pcm_u8" => Kind::U8,
            "pcm_s16le" => Kind::S16,
            "pcm_s24le" => Kind::S24,
            "pcm_s32le" => Kind::S32,
            "pcm_f32le" => Kind::F32,
            "pcm_f64le" => Kind::F64,
            "pcm_alaw" => Kind::ALaw,
            "pcm_mulaw" => Kind::MuLaw,
            _ => return None,
        })
    }

    /// Bytes per coded sample.
    fn bytes(self) -> usize {
        match self {
            Kind::U8 | Kind::ALaw | Kind::MuLaw => 1,
            Kind::S16 => 2,
            Kind::S24 => 3,
            Kind::S32 | Kind::F32 => 4,
            Kind::F64 => 8,
        }
    }
}

/// G.711 A-law expansion to 16-bit linear (ITU-T G.711; the classic `alaw2linear`).
const fn alaw_to_i16(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mantissa = ((a & 0x0F) as i16) << 4;
    let segment = (a & 0x70) >> 4;
    let magnitude = match segment {
        0 => mantissa + 0x8,
        1 => mantissa + 0x108,
        s => (mantissa + 0x108) << (s - 1),
    };
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// G.711 µ-law expansion to 16-bit linear (ITU-T G.711; the classic `ulaw2linear`).
const fn mulaw_to_i16(code: u8) -> i16 {
    const BIAS: i16 = 0x84;
    let u = !code;
    let t = ((((u & 0x0F) as i16) << 3) + BIAS) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        BIAS - t
    } else {
        t - BIAS
    }
}

const fn g711_table(alaw: bool) -> [f32; 256] {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        let v = if alaw {
            alaw_to_i16(i as u8)
        } else {
            mulaw_to_i16(i as u8)
        };
        // Symphonia decodes G.711 to i16, then converts i16 to f32 like any 16-bit sample.
        t[i] = v as f32 / 32_768.0;
        i += 1;
    }
    t
}

static ALAW: [f32; 256] = g711_table(true);
static MULAW: [f32; 256] = g711_table(false);

/// Appends the whole frames of `bytes` (samples of `N` bytes, `channels` per frame) to `out`:
/// each sample through `one`, or mixed to mono when `mix` (two channels through `pair`).
#[inline(always)]
fn put<const N: usize>(
    bytes: &[u8],
    channels: usize,
    mix: bool,
    out: &mut Vec<f32>,
    one: impl Fn([u8; N]) -> f32,
    pair: impl Fn([u8; N], [u8; N]) -> f32,
) {
    let (samples, _) = bytes.as_chunks::<N>();
    if !mix || channels == 1 {
        // Interleaved output is the file's own sample order.
        out.extend(samples.iter().map(|&s| one(s)));
    } else if channels == 2 {
        let (frames, _) = samples.as_chunks::<2>();
        out.extend(frames.iter().map(|&[a, b]| pair(a, b)));
    } else {
        let k = 1.0 / channels as f32;
        out.extend(samples.chunks_exact(channels).map(|frame| {
            let mut acc = 0.0f32;
            for &s in frame {
                acc += one(s);
            }
            acc * k
        }));
    }
}

/// `(one(a) + one(b)) * 0.5`, the two-channel mix of `sym::mix`.
#[inline(always)]
fn mean2<const N: usize>(one: impl Fn([u8; N]) -> f32) -> impl Fn([u8; N], [u8; N]) -> f32 {
    move |a, b| (one(a) + one(b)) * 0.5
}

fn s24(b: [u8; 3]) -> f32 {
    (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0
}

fn s32(b: [u8; 4]) -> f32 {
    (f64::from(i32::from_le_bytes(b)) / 2_147_483_648.0) as f32
}

/// Converts whole frames of `kind` in `bytes` into `out`.
fn convert(kind: Kind, bytes: &[u8], channels: usize, mix: bool, out: &mut Vec<f32>) {
    match kind {
        Kind::U8 => {
            let f = |[b]: [u8; 1]| f32::from(b) / 128.0 - 1.0;
            put(bytes, channels, mix, out, f, mean2(f));
        }
        Kind::S16 => {
            let f = |b: [u8; 2]| f32::from(i16::from_le_bytes(b)) / 32_768.0;
            put(bytes, channels, mix, out, f, mean2(f));
        }
        Kind::S24 => put(bytes, channels, mix, out, s24, mean2(s24)),
        Kind::S32 => {
            // `sym::mix2_i32`: Symphonia's `i32` planes mixed without the trip through `f64`.
            const SCALE: f32 = 0.5 / 2_147_483_648.0;
            let pair = |a: [u8; 4], b: [u8; 4]| {
                (i32::from_le_bytes(a) as f32 + i32::from_le_bytes(b) as f32) * SCALE
            };
            put(bytes, channels, mix, out, s32, pair);
        }
        Kind::F32 => {
            let f = f32::from_le_bytes;
            put(bytes, channels, mix, out, f, mean2(f));
        }
        Kind::F64 => {
            let f = |b: [u8; 8]| f64::from_le_bytes(b) as f32;
            put(bytes, channels, mix, out, f, mean2(f));
        }
        Kind::ALaw => {
            let f = |[b]: [u8; 1]| ALAW[usize::from(b)];
            put(bytes, channels, mix, out, f, mean2(f));
        }
        Kind::MuLaw => {
            let f = |[b]: [u8; 1]| MULAW[usize::from(b)];
            put(bytes, channels, mix, out, f, mean2(f));
        }
    }
}

/// Reads a WAV `data` chunk of a plain sample format; see the module docs.
pub(crate) struct PcmBackend {
    src: Src,
    kind: Kind,
    channels: usize,
    /// Bytes per frame.
    frame: usize,
    /// Bytes of whole frames still to read.
    left: u64,
    /// The read buffer: [`BLOCK`] bytes rounded down to whole frames (at most [`MAX_FRAMES`]),
    /// allocated once.
    buf: Vec<u8>,
    /// Why the data stopped short of `left` (the file shrank, a read failed): reported by the
    /// call after the one that handed out the last whole frames.
    broken: Option<String>,
}

impl PcmBackend {
    /// Reads `data_len` bytes from `data_at` in `src` (positions as `src` presents them) as
    /// `kind`, `channels` samples per frame.
    pub(crate) fn open(
        mut src: Src,
        kind: Kind,
        channels: usize,
        data_at: u64,
        data_len: u64,
    ) -> Result<PcmBackend> {
        let frame = kind.bytes() * channels;
        if frame == 0 {
            return Err(malformed("no channels"));
        }
        src.seek(SeekFrom::Start(data_at))?;
        let block = (BLOCK / frame).clamp(1, MAX_FRAMES) * frame;
        Ok(PcmBackend {
            src,
            kind,
            channels,
            frame,
            left: data_len - data_len % frame as u64,
            buf: vec![0; block],
            broken: None,
        })
    }

    /// Fills `buf[..want]` as far as the source allows; returns the bytes read.
    fn fill(&mut self, want: usize) -> usize {
        let mut got = 0;
        while got < want {
            match self.src.read(&mut self.buf[got..want]) {
                Ok(0) => {
                    self.broken = Some("the file ends inside the data chunk".into());
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => {
                    self.broken = Some(format!("reading the audio data failed: {e}"));
                    break;
                }
            }
        }
        got
    }
}

impl Backend for PcmBackend {
    fn next(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize> {
        if let Some(what) = self.broken.take() {
            self.left = 0;
            return Err(truncated(what));
        }
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
        let got = self.fill(want);
        let whole = got - got % self.frame;
        if whole == 0 {
            let what = self
                .broken
                .take()
                .unwrap_or_else(|| "the file ends inside the data chunk".into());
            self.left = 0;
            return Err(truncated(what));
        }
        self.left = if self.broken.is_some() {
            0
        } else {
            self.left - whole as u64
        };
        convert(self.kind, &self.buf[..whole], self.channels, mix, out);
        Ok(whole / self.frame)
    }

    fn skipped_packets(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    //! The direct backend against the Symphonia path it replaces (the WAV branch of
    //! `Decoder::open_inner` as it was), on generated files: every format, plain and
    //! `WAVE_FORMAT_EXTENSIBLE`, 1 to 5 channels, odd lengths, partial last frames, data chunks
    //! that claim more than the file holds. Every sample is compared bit for bit.

    use std::io::Cursor;
    use std::num::{NonZeroU16, NonZeroU32};
    use std::path::Path;

    use super::super::{probe, sym, wav, AudioFormat, Decoder, SourceInfo, State};
    use super::{Kind, Src};
    use crate::error::Result;

    const NAME: &str = "gen.wav";

    /// A decoder over `bytes` through Symphonia's reader and decoder, exactly as WAV was opened
    /// before the direct backend.
    fn symphonia_decoder(bytes: Vec<u8>) -> Result<Decoder> {
        let open = || -> Result<Decoder> {
            let mut src = Src::new(Box::new(Cursor::new(bytes)))?;
            assert_eq!(probe::probe(&mut src)?, AudioFormat::Wav);
            let c = wav::check(&mut src)?;
            let o = sym::SymBackend::open(src, AudioFormat::Wav)?;
            let rate = o.rate.and_then(NonZeroU32::new).expect("rate");
            let channels = o
                .channels
                .and_then(|c| u16::try_from(c).ok())
                .and_then(NonZeroU16::new)
                .expect("channels");
            Ok(Decoder {
                backend: Box::new(o.backend),
                info: SourceInfo {
                    format: AudioFormat::Wav,
                    codec: o.codec,
                    sample_rate: rate,
                    channels,
                    frames_hint: c.present_frames,
                },
                path: Some(NAME.into()),
                frames: 0,
                declared: c.declared_frames,
                state: State::Running,
                full_scale: true,
            })
        };
        open().map_err(|e| e.with_path(Path::new(NAME)))
    }

    /// Whether the new path reads `bytes` with [`super::PcmBackend`] (not Symphonia's reader).
    fn is_direct(bytes: &[u8]) -> bool {
        let mut src = Src::new(Box::new(Cursor::new(bytes.to_vec()))).expect("src");
        probe::probe(&mut src).expect("probe");
        let Ok(c) = wav::check(&mut src) else {
            return false;
        };
        let Some(d) = c.direct else { return false };
        let head = Src::new(Box::new(Cursor::new(d.head))).expect("head");
        sym::SymBackend::open(head, AudioFormat::Wav)
            .is_ok_and(|o| Kind::from_codec(&o.codec).is_some())
    }

    /// Everything a decoder hands out: info, samples as bits, frame counts after each call,
    /// and how it ended.
    #[derive(Debug, PartialEq)]
    struct Run {
        info: SourceInfo,
        samples: Vec<u32>,
        calls: Vec<u64>,
        end: String,
        frames: u64,
    }

    fn run(d: Result<Decoder>, mix: bool) -> std::result::Result<Run, String> {
        let mut d = d.map_err(|e| e.to_string())?;
        // The backends' own samples: NaNs, infinities and values beyond ±1 compared too.
        d.full_scale = false;
        let mut out = Vec::new();
        let mut calls = Vec::new();
        let end = loop {
            let r = if mix {
                d.read_mono(&mut out)
            } else {
                d.read_interleaved(&mut out)
            };
            match r {
                Ok(0) => break "end".to_string(),
                Ok(_) => calls.push(d.frames_decoded()),
                Err(e) => break format!("{e} / {:?}", e.kind()),
            }
        };
        assert_eq!(d.read_mono(&mut out).ok(), Some(0));
        let channels = usize::from(d.info().channels.get());
        let width = if mix { 1 } else { channels };
        assert_eq!(out.len() as u64, d.frames_decoded() * width as u64);
        Ok(Run {
            info: d.info().clone(),
            // Rust leaves the payload of a NaN that arithmetic produces unspecified (which of
            // two NaN operands `a + b` keeps depends on the code generated): the NaNs of a mix
            // compare as NaNs; everything else, NaNs copied or converted included, bit for bit.
            samples: out
                .iter()
                .map(|v| {
                    if v.is_nan() && mix && channels > 1 {
                        u32::MAX
                    } else {
                        v.to_bits()
                    }
                })
                .collect(),
            calls,
            end,
            frames: d.frames_decoded(),
        })
    }

    /// Decodes `bytes` both ways, mixed and interleaved, and compares everything but the
    /// sizes of the individual reads (Symphonia hands out 1152 frames at a time).
    fn same(bytes: &[u8], what: &str) -> bool {
        let direct = is_direct(bytes);
        for mix in [true, false] {
            let new = run(
                Decoder::from_reader(Cursor::new(bytes.to_vec()), Some(Path::new(NAME))),
                mix,
            );
            let old = run(symphonia_decoder(bytes.to_vec()), mix);
            match (new, old) {
                (Ok(mut a), Ok(mut b)) => {
                    assert_eq!(a.calls.last(), b.calls.last(), "{what} mix {mix}");
                    a.calls.clear();
                    b.calls.clear();
                    if a != b {
                        let first = a.samples.iter().zip(&b.samples).position(|(x, y)| x != y);
                        let values = first.map(|i| (a.samples[i], b.samples[i]));
                        panic!(
                            "{what} mix {mix}: differ (first sample at {first:?}: {values:x?}; lengths {} {}; \
                             ends {:?} {:?}; info {:?} {:?})",
                            a.samples.len(),
                            b.samples.len(),
                            a.end,
                            b.end,
                            a.info,
                            b.info
                        );
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{what} mix {mix}"),
                (a, b) => panic!("{what} mix {mix}: new {a:?}, old {b:?}"),
            }
        }
        direct
    }

    /// How the `fmt ` chunk is written.
    #[derive(Debug, Clone, Copy)]
    enum Fmt {
        /// 16 bytes, no `cbSize`.
        Short,
        /// 18 bytes, `cbSize` 0.
        Ex,
        /// 40 bytes, not extensible (a `WAVEFORMATEX` followed by 22 bytes of extension).
        Long,
        /// `WAVE_FORMAT_EXTENSIBLE` with this many valid bits (0: all).
        Extensible(u16),
    }

    struct Wav {
        tag: u16,
        bits: u16,
        channels: u16,
        fmt: Fmt,
        /// Overrides the block align field.
        align: Option<u16>,
        /// Overrides the data chunk size field.
        data_size: Option<u32>,
        fact: bool,
        list_before: bool,
        list_after: bool,
    }

    impl Wav {
        fn new(tag: u16, bits: u16, channels: u16, fmt: Fmt) -> Wav {
            Wav {
                tag,
                bits,
                channels,
                fmt,
                align: None,
                data_size: None,
                fact: false,
                list_before: false,
                list_after: false,
            }
        }

        fn bytes(&self, data: &[u8]) -> Vec<u8> {
            let align = self.align.unwrap_or(self.channels * self.bits.div_ceil(8));
            let ext = matches!(self.fmt, Fmt::Extensible(_));
            let mut f = Vec::new();
            f.extend_from_slice(&(if ext { 0xFFFE } else { self.tag }).to_le_bytes());
            f.extend_from_slice(&self.channels.to_le_bytes());
            f.extend_from_slice(&8000u32.to_le_bytes());
            f.extend_from_slice(&(8000 * u32::from(align)).to_le_bytes());
            f.extend_from_slice(&align.to_le_bytes());
            f.extend_from_slice(&self.bits.to_le_bytes());
            match self.fmt {
                Fmt::Short => {}
                Fmt::Ex => f.extend_from_slice(&[0, 0]),
                Fmt::Long => {
                    f.extend_from_slice(&22u16.to_le_bytes());
                    f.extend_from_slice(&[0; 22]);
                }
                Fmt::Extensible(valid) => {
                    f.extend_from_slice(&22u16.to_le_bytes());
                    let valid = if valid == 0 { self.bits } else { valid };
                    f.extend_from_slice(&valid.to_le_bytes());
                    // A mask with the wrong bit count: the check rewrites it.
                    f.extend_from_slice(&0x3u32.to_le_bytes());
                    f.extend_from_slice(&self.tag.to_le_bytes());
                    f.extend_from_slice(&[
                        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38,
                        0x9B, 0x71,
                    ]);
                }
            }
            let mut body = Vec::new();
            let mut chunk = |id: &[u8; 4], b: &[u8], size: Option<u32>| {
                body.extend_from_slice(id);
                body.extend_from_slice(&size.unwrap_or(b.len() as u32).to_le_bytes());
                body.extend_from_slice(b);
                if b.len() % 2 == 1 {
                    body.push(0);
                }
            };
            if self.list_before {
                chunk(b"LIST", b"INFOISFT\x05\0\0\0test\0\0", None);
            }
            chunk(b"fmt ", &f, None);
            if self.fact {
                chunk(b"fact", &12345u32.to_le_bytes(), None);
            }
            chunk(b"data", data, self.data_size);
            if self.list_after {
                chunk(b"LIST", b"INFOISFT\x04\0\0\0abc\0", None);
            }
            let mut out = b"RIFF".to_vec();
            out.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
            out.extend_from_slice(b"WAVE");
            out.extend_from_slice(&body);
            out
        }
    }

    const FORMATS: [(u16, u16); 8] = [
        (1, 8),
        (1, 16),
        (1, 24),
        (1, 32),
        (3, 32),
        (3, 64),
        (6, 8),
        (7, 8),
    ];

    #[test]
    fn same_as_symphonia_bit_for_bit() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut direct = 0;
        let mut cases = 0;
        for (tag, bits) in FORMATS {
            let bps = usize::from(bits / 8);
            let mut fmts = vec![Fmt::Short, Fmt::Ex, Fmt::Extensible(0)];
            if tag == 1 {
                fmts.push(Fmt::Long);
                if bits > 8 {
                    fmts.push(Fmt::Extensible(bits - 4));
                }
            }
            if tag == 3 {
                fmts.push(Fmt::Long);
            }
            for fmt in fmts {
                for channels in [1u16, 2, 3, 5] {
                    let frame = bps * usize::from(channels);
                    // Across Symphonia's packets of 1152 frames and the blocks (64 KiB or
                    // 8192 frames).
                    let big = (200_000 / frame) | 1;
                    for frames in [0, 1, 1151, 1153, 4097, big] {
                        // Random bytes: every code of A-law and µ-law, NaNs and infinities.
                        let whole: Vec<u8> = (0..frames * frame).map(|_| rng.u8(..)).collect();
                        let what =
                            format!("tag {tag} bits {bits} {fmt:?} ch {channels} n {frames}");
                        let w = Wav::new(tag, bits, channels, fmt);
                        let mut check = |b: Vec<u8>, what: String| {
                            cases += 1;
                            if same(&b, &what) {
                                direct += 1;
                            }
                        };
                        check(w.bytes(&whole), what.clone());
                        // A partial last frame inside the data chunk.
                        if frame > 1 {
                            let mut d = whole.clone();
                            d.extend((0..frame - 1).map(|_| rng.u8(..)));
                            check(w.bytes(&d), format!("{what} partial frame"));
                        }
                        // A data chunk that claims more than the file holds, the file cut
                        // inside a frame.
                        let mut d = whole.clone();
                        d.extend((0..frame / 2).map(|_| rng.u8(..)));
                        let claims = Wav {
                            data_size: Some(d.len() as u32 + 1001),
                            ..Wav::new(tag, bits, channels, fmt)
                        };
                        check(claims.bytes(&d), format!("{what} claims more"));
                        let claims = Wav {
                            data_size: Some(0xFFFF_FF00),
                            ..Wav::new(tag, bits, channels, fmt)
                        };
                        check(claims.bytes(&d), format!("{what} claims 4 GB"));
                        // The streaming writers' unknown size.
                        let unknown = Wav {
                            data_size: Some(u32::MAX),
                            ..Wav::new(tag, bits, channels, fmt)
                        };
                        check(unknown.bytes(&d), format!("{what} unknown size"));
                        if frames == 1151 {
                            // Other chunks around, a block align that disagrees with the
                            // sample size.
                            let chunks = Wav {
                                fact: true,
                                list_before: true,
                                list_after: true,
                                ..Wav::new(tag, bits, channels, fmt)
                            };
                            check(chunks.bytes(&d), format!("{what} chunks"));
                            for align in [1, frame as u16 + 1, frame as u16 * 2] {
                                let odd = Wav {
                                    align: Some(align),
                                    ..Wav::new(tag, bits, channels, fmt)
                                };
                                check(odd.bytes(&d), format!("{what} align {align}"));
                            }
                        }
                    }
                }
            }
        }
        // All of them go the direct way (none is ADPCM, none has an unknown size over 4 GiB).
        assert_eq!(direct, cases, "{direct} of {cases} read directly");
    }

    #[test]
    fn g711_tables_match_symphonia() {
        for (tag, name) in [(6, "pcm_alaw"), (7, "pcm_mulaw")] {
            let codes: Vec<u8> = (0..=255).collect();
            let b = Wav::new(tag, 8, 1, Fmt::Ex).bytes(&codes);
            assert!(same(&b, name), "{name} not decoded directly");
            let d = Decoder::from_reader(Cursor::new(b), None).expect("open");
            assert_eq!(d.info().codec, name);
        }
    }

    #[test]
    fn headers_the_direct_way_does_not_take() {
        // An extensible fmt of 48 bytes: Symphonia reads 40 and takes the other 8 for a chunk
        // header (here a `data` chunk 8 bytes before the real one).
        let mut b = Wav::new(1, 16, 2, Fmt::Extensible(0)).bytes(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[12..20], b"fmt \x28\0\0\0");
        b[16..20].copy_from_slice(&48u32.to_le_bytes());
        b.splice(60..60, *b"data\x04\0\0\0");
        let riff = b.len() as u32 - 8;
        b[4..8].copy_from_slice(&riff.to_le_bytes());
        assert!(!same(&b, "extensible fmt of 48 bytes"));
        // IMA ADPCM: 256-byte blocks of 505 frames.
        let mut rng = fastrand::Rng::with_seed(3);
        let mut data: Vec<u8> = (0..256 * 3 + 100).map(|_| rng.u8(..)).collect();
        for blk in data.chunks_mut(256) {
            blk[2] %= 89;
            blk[3] = 0;
        }
        let mut b = Wav {
            align: Some(256),
            ..Wav::new(0x11, 4, 1, Fmt::Ex)
        }
        .bytes(&data);
        // cbSize 2, 505 frames per block.
        assert_eq!(&b[36..38], &[0, 0]);
        b[36..38].copy_from_slice(&2u16.to_le_bytes());
        b.splice(38..38, 505u16.to_le_bytes());
        b[16..20].copy_from_slice(&20u32.to_le_bytes());
        let riff = b.len() as u32 - 8;
        b[4..8].copy_from_slice(&riff.to_le_bytes());
        assert!(!same(&b, "IMA ADPCM"));
        let d = Decoder::from_reader(Cursor::new(b), None).expect("open");
        assert_eq!(d.info().codec, "adpcm_ima_wav");
    }

    #[test]
    fn headers_symphonia_refuses_are_refused_alike() {
        let data = [0u8; 64];
        let cases = [
            ("12-bit PCM", Wav::new(1, 12, 1, Fmt::Ex)),
            ("16-bit float", Wav::new(3, 16, 1, Fmt::Ex)),
            (
                "40-bit extensible PCM",
                Wav::new(1, 40, 1, Fmt::Extensible(0)),
            ),
            ("valid bits > bits", Wav::new(1, 16, 1, Fmt::Extensible(20))),
            (
                "float valid bits < bits",
                Wav::new(3, 32, 1, Fmt::Extensible(24)),
            ),
            ("27 channels", Wav::new(1, 16, 27, Fmt::Ex)),
        ];
        for (what, w) in cases {
            let b = w.bytes(&data);
            same(&b, what);
            assert!(
                Decoder::from_reader(Cursor::new(b), None).is_err(),
                "{what} accepted"
            );
        }
        // A fact chunk that is not 4 bytes.
        let mut b = Wav {
            fact: true,
            ..Wav::new(1, 16, 1, Fmt::Ex)
        }
        .bytes(&data);
        let at = b.windows(4).position(|w| w == b"fact").expect("fact");
        b[at + 4..at + 8].copy_from_slice(&2u32.to_le_bytes());
        same(&b, "fact of 2 bytes");
        assert!(Decoder::from_reader(Cursor::new(b), None).is_err());
    }
}
