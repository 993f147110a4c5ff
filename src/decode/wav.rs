//! WAV checks done before any decoder sees the file: the `fmt ` parameters are validated (zero
//! or absurd rate / channel count, codecs we cannot decode named by their format tag), and the
//! header is rebuilt in canonical form in front of the untouched data (see [`Src`]): a `data`
//! chunk that claims more bytes than the file holds is clamped, so that everything present
//! decodes and the shortfall is reported as truncation; a 16-byte µ-law/A-law `fmt ` (common
//! from telephony systems, refused by Symphonia) gets its `cbSize`; chunks other than `fmt `,
//! `fact` and `data` are dropped.
//!
//! Symphonia's WAV reader always parses that canonical header (what it accepts and refuses,
//! the channel count and the codec name are its own). The samples of the plain sample formats
//! (PCM, float, A-law, µ-law) are then read by [`super::pcm`], from [`WavCheck::direct`]; the
//! other codecs (MS and IMA ADPCM), and the rare headers it does not cover, are read by
//! Symphonia.

use std::io::{Seek, SeekFrom};

use super::source::Src;
use super::{malformed, unsupported, MAX_CHANNELS, MAX_RATE, MIN_RATE};
use crate::error::Result;

/// What the pre-parse learnt about a WAV file.
#[derive(Debug)]
pub(crate) struct WavCheck {
    /// Frames the `data` chunk claims, when the claim is a real size (not the 0xFFFFFFFF that
    /// streaming writers use for "unknown") and the codec has one frame per block.
    pub(crate) declared_frames: Option<u64>,
    /// Frames actually present in the file (PCM-like codecs only).
    pub(crate) present_frames: Option<u64>,
    /// Where the direct backend ([`super::pcm`]) finds the samples, for the PCM-like codecs;
    /// `None` for the others and for the headers only Symphonia reads (see [`Direct`]).
    pub(crate) direct: Option<Direct>,
}

/// The canonical header and where its `data` lies, for a file whose samples can be read
/// without Symphonia's reader.
///
/// Only given when Symphonia's reader, parsing `head`, stops exactly at the first data byte
/// (so `data_at` is where it would have started reading) and the data has a size: not for a
/// `WAVE_FORMAT_EXTENSIBLE` `fmt ` longer than 40 bytes (Symphonia reads 40 and takes the rest
/// for the next chunk), nor for a size that stays unknown (0xFFFFFFFF over more than 4 GiB).
#[derive(Debug)]
pub(crate) struct Direct {
    /// The canonical header, as [`Src`] now presents it in front of the data.
    pub(crate) head: Vec<u8>,
    /// The first data byte, as a position in the [`Src`] (= `head.len()`).
    pub(crate) data_at: u64,
    /// The data size in the canonical header (clamped to the bytes present).
    pub(crate) data_len: u64,
}

const PCM: u16 = 0x0001;
const MS_ADPCM: u16 = 0x0002;
const FLOAT: u16 = 0x0003;
const ALAW: u16 = 0x0006;
const MULAW: u16 = 0x0007;
const IMA_ADPCM: u16 = 0x0011;
const EXTENSIBLE: u16 = 0xFFFE;
/// Speaker positions a `WAVE_FORMAT_EXTENSIBLE` channel mask can name (Symphonia's limit).
const MAX_MASK_CHANNELS: u16 = 18;

fn tag_name(tag: u16) -> &'static str {
    match tag {
        0x0010 => "OKI ADPCM",
        0x0014 => "G.723 ADPCM",
        0x0017 => "Dialogic OKI ADPCM",
        0x0022 => "DSP Group TrueSpeech",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0050 => "MPEG audio",
        0x0055 => "MPEG layer 3",
        0x0064 => "G.726 ADPCM",
        0x0065 => "G.722 ADPCM",
        0x0083 => "G.729",
        0x0161..=0x0163 => "Windows Media Audio",
        0x1610 => "AAC (HE)",
        0x00FF => "AAC",
        _ => "an unknown codec",
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .unwrap_or(0)
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// Walks the RIFF chunks up to `data`, validates `fmt `, and rebuilds the header on `src`.
/// Leaves `src` at byte 0.
pub(crate) fn check(src: &mut Src) -> Result<WavCheck> {
    let file_len = src.len();
    src.seek(SeekFrom::Start(12))?;
    let mut pos = 12u64;
    // Whether Symphonia's reader consumes the fmt chunk exactly (or refuses it): all but a
    // WAVE_FORMAT_EXTENSIBLE one longer than the 40 bytes it reads.
    let mut fmt_exact = true;
    let mut fmt: Option<(u16, u16, u32, u16)> = None; // tag, channels, rate, block_align
    let mut fmt_body = Vec::new();
    let mut fact_body = Vec::new();
    for _ in 0..10_000 {
        let mut hdr = [0u8; 8];
        let n = super::probe::read_up_to(src, &mut hdr)?;
        if n < 8 {
            return Err(if fmt.is_none() {
                malformed("WAV header cut short: no fmt chunk")
            } else {
                malformed("WAV has no data chunk")
            });
        }
        let size = u64::from(le32(&hdr, 4));
        let body = pos + 8;
        match &hdr[0..4] {
            b"fmt " => {
                if size < 16 {
                    return Err(malformed(format!("WAV fmt chunk is {size} bytes (< 16)")));
                }
                if size > 1024 {
                    return Err(malformed(format!("WAV fmt chunk is {size} bytes")));
                }
                let mut b = vec![0u8; size as usize];
                let got = super::probe::read_up_to(src, &mut b)?;
                if got < b.len() {
                    return Err(malformed("WAV header cut short inside the fmt chunk"));
                }
                let want = b.len();
                let mut tag = le16(&b, 0);
                let channels = le16(&b, 2);
                let rate = le32(&b, 4);
                let align = le16(&b, 12);
                let extensible = tag == EXTENSIBLE;
                if extensible {
                    if want < 40 {
                        return Err(malformed("WAVE_FORMAT_EXTENSIBLE fmt chunk is too short"));
                    }
                    tag = le16(&b, 24);
                }
                if channels == 0 || usize::from(channels) > MAX_CHANNELS {
                    return Err(malformed(format!(
                        "WAV claims {channels} channels (supported: 1 to {MAX_CHANNELS})"
                    )));
                }
                if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                    return Err(malformed(format!(
                        "WAV claims a sample rate of {rate} Hz (supported: {MIN_RATE} to {MAX_RATE})"
                    )));
                }
                if !matches!(tag, PCM | MS_ADPCM | FLOAT | ALAW | MULAW | IMA_ADPCM) {
                    return Err(unsupported(format!(
                        "WAV codec {} (format tag 0x{tag:04x})",
                        tag_name(tag)
                    )));
                }
                if align == 0 {
                    return Err(malformed("WAV block align is 0"));
                }
                if extensible && !matches!(tag, ALAW | MULAW) {
                    // Symphonia "repairs" a channel mask whose bit count differs from the
                    // channel count with shifts that overflow (a panic in debug builds, a
                    // wrong mask in release), and maps at most 18 positioned channels. We
                    // mix every channel alike, so positions do not matter: hand it the
                    // canonical mask of the first `channels` positions.
                    if channels > MAX_MASK_CHANNELS {
                        return Err(unsupported(format!(
                            "WAVE_FORMAT_EXTENSIBLE with {channels} channels (at most {MAX_MASK_CHANNELS})"
                        )));
                    }
                    let mask = (1u32 << channels) - 1;
                    b[20..24].copy_from_slice(&mask.to_le_bytes());
                }
                fmt = Some((tag, channels, rate, align));
                fmt_exact = !extensible || want == 40 || matches!(tag, ALAW | MULAW);
                if matches!(tag, ALAW | MULAW) {
                    // Symphonia takes G.711 only as a plain 18-byte fmt (not 16 bytes, not
                    // WAVE_FORMAT_EXTENSIBLE).
                    b.truncate(16);
                    b[0..2].copy_from_slice(&tag.to_le_bytes());
                    b.extend_from_slice(&[0, 0]);
                }
                fmt_body = b;
            }
            b"fact" if size <= 64 => {
                fact_body = vec![0u8; size as usize];
                if super::probe::read_up_to(src, &mut fact_body)? < fact_body.len() {
                    return Err(malformed("WAV header cut short inside the fact chunk"));
                }
            }
            b"data" => {
                let Some((tag, _, _, align)) = fmt else {
                    return Err(malformed("WAV data chunk comes before the fmt chunk"));
                };
                let align = u64::from(align);
                let present = file_len.saturating_sub(body);
                let present = present - present % align;
                let unknown = size == u64::from(u32::MAX);
                let pcm_like = matches!(tag, PCM | FLOAT | ALAW | MULAW);
                // The reader sees the bytes that are really there.
                // An unknown size (0xFFFFFFFF) over more than 4 GiB of data stays unknown:
                // the reader then reads to the end of the file.
                let limit = u64::from(u32::MAX - 1) - 256;
                let endless = unknown && present > limit;
                let data_len = size.min(present).min(limit);
                let data_len = data_len - data_len % align;
                let mut h = Vec::with_capacity(64 + fmt_body.len() + fact_body.len());
                h.extend_from_slice(b"RIFF\0\0\0\0WAVE");
                for (id, b) in [(b"fmt ", &fmt_body), (b"fact", &fact_body)] {
                    if id == b"fact" && b.is_empty() {
                        continue;
                    }
                    h.extend_from_slice(id);
                    h.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    h.extend_from_slice(b);
                    if b.len() % 2 == 1 {
                        h.push(0);
                    }
                }
                h.extend_from_slice(b"data");
                h.extend_from_slice(&(data_len as u32).to_le_bytes());
                let riff = (h.len() as u64 - 8 + data_len) as u32;
                h[4..8].copy_from_slice(&riff.to_le_bytes());
                if endless {
                    let n = h.len();
                    h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
                    h[n - 4..n].copy_from_slice(&u32::MAX.to_le_bytes());
                }
                let direct = (pcm_like && fmt_exact && !endless).then(|| Direct {
                    head: h.clone(),
                    data_at: h.len() as u64,
                    data_len,
                });
                src.replace_head(h, body)?;
                return Ok(WavCheck {
                    declared_frames: (pcm_like && !unknown).then_some(size / align),
                    present_frames: pcm_like
                        .then_some(if unknown { present } else { size.min(present) } / align),
                    direct,
                });
            }
            _ => {}
        }
        pos = body + size + (size & 1);
        if pos >= file_len {
            return Err(if fmt.is_none() {
                malformed("WAV has no fmt chunk")
            } else {
                malformed("WAV has no data chunk")
            });
        }
        src.seek(SeekFrom::Start(pos))?;
    }
    Err(malformed("WAV has more than 10000 chunks before its data"))
}
