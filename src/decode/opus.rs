//! Ogg Opus with `ogg` + `opus-rs` (pure Rust). Decoded at 48 kHz, or at 8, 12, 16 or 24 kHz
//! when asked ([`Backend::lower_rate`]: Opus synthesises those natively, and SILK's speech
//! layer then skips its own upsampler). The OpusHead pre-skip is dropped at the start, the
//! granule position of the last (end-of-stream) page trims the end, and the header's output
//! gain is applied, as RFC 7845 asks; pre-skip and granule positions count 48 kHz samples at
//! any output rate.

use ogg::reading::PacketReader;
use opus_rs::OpusDecoder;

use super::source::Src;
use super::{malformed, truncated, unsupported, Backend};
use crate::error::Result;

/// The largest Opus packet: 120 ms at 48 kHz.
const MAX_FRAME: usize = 5760;

pub(crate) struct OpusBackend {
    reader: PacketReader<Src>,
    dec: OpusDecoder,
    serial: u32,
    channels: usize,
    /// 48 kHz samples per output sample: 1, 2, 3, 4 or 6.
    div: u64,
    /// At 48 kHz.
    pre_skip: u64,
    /// Samples per channel decoded so far at 48 kHz, pre-skip included (the granule scale).
    pos: u64,
    gain: f32,
    buf: Vec<f32>,
    last_frame: usize,
    skipped: u64,
    done: bool,
}

/// The OpusHead fields we use.
pub(crate) struct Head {
    /// Output frames, from the granule position of the last page (a hint).
    pub(crate) frames_hint: Option<u64>,
    pub(crate) channels: u8,
    pub(crate) pre_skip: u16,
    pub(crate) gain_q8: i16,
}

/// What went wrong in the Ogg layer, in words (the `ogg` crate prints only "I/O error").
fn ogg_text(e: &ogg::OggReadError) -> String {
    match e {
        ogg::OggReadError::ReadError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends inside an Ogg page".to_string()
        }
        ogg::OggReadError::ReadError(io) => format!("Ogg: reading failed: {io}"),
        ogg::OggReadError::HashMismatch(..) => format!("Ogg: page checksum mismatch ({e})"),
        other => format!("Ogg: {other}"),
    }
}

fn ogg_err(e: ogg::OggReadError) -> crate::Error {
    truncated(ogg_text(&e))
}

/// The duration in samples at 48 kHz of an Opus packet, from its TOC byte (RFC 6716 §3.1).
fn packet_samples(p: &[u8]) -> Option<usize> {
    let toc = *p.first()?;
    let config = usize::from(toc >> 3);
    let per_frame = match config {
        0..=11 => [480, 960, 1920, 2880][config % 4],
        12..=15 => [480, 960][config % 2],
        _ => [120, 240, 480, 960][config % 4],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => usize::from(*p.get(1)? & 0x3F),
    };
    Some(per_frame * frames).filter(|&n| n <= MAX_FRAME)
}

/// The granule position of the last page of stream `serial`, from the last 64 KiB.
fn last_granule(src: &mut Src, serial: u32) -> std::io::Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let len = src.len();
    let from = len.saturating_sub(64 * 1024);
    src.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity((len - from) as usize);
    Read::take(&mut *src, len - from).read_to_end(&mut tail)?;
    src.seek(SeekFrom::Start(0))?;
    let mut best = None;
    for i in 0..tail.len().saturating_sub(27) {
        if &tail[i..i + 4] == b"OggS" && tail[i + 4] == 0 {
            let gp = u64::from_le_bytes(tail[i + 6..i + 14].try_into().unwrap_or([0xFF; 8]));
            let sn = u32::from_le_bytes(tail[i + 14..i + 18].try_into().unwrap_or([0; 4]));
            if sn == serial && gp != u64::MAX {
                best = Some(gp);
            }
        }
    }
    Ok(best)
}

impl OpusBackend {
    pub(crate) fn open(mut src: Src) -> Result<(OpusBackend, Head)> {
        // The first page's serial number sits at bytes 14..18.
        let mut first_page = [0u8; 18];
        super::probe::read_up_to(&mut src, &mut first_page)?;
        let serial0 = u32::from_le_bytes([
            first_page[14],
            first_page[15],
            first_page[16],
            first_page[17],
        ]);
        let last_gp = last_granule(&mut src, serial0)?;
        let mut reader = PacketReader::new(src);
        let first = reader
            .read_packet()
            .map_err(|e| malformed(ogg_text(&e)))?
            .ok_or_else(|| malformed("Ogg stream has no packets"))?;
        let h = &first.data;
        if h.len() < 19 || !h.starts_with(b"OpusHead") {
            return Err(malformed("OpusHead packet is too short"));
        }
        if h[8] >> 4 != 0 {
            return Err(unsupported(format!("Ogg Opus header version {}", h[8])));
        }
        let pre_skip = u64::from(u16::from_le_bytes([h[10], h[11]]));
        let head = Head {
            frames_hint: last_gp.map(|g| g.saturating_sub(pre_skip)),
            channels: h[9],
            pre_skip: u16::from_le_bytes([h[10], h[11]]),
            gain_q8: i16::from_le_bytes([h[16], h[17]]),
        };
        let family = h[18];
        if head.channels == 0 {
            return Err(malformed("OpusHead claims 0 channels"));
        }
        if family != 0 || head.channels > 2 {
            return Err(unsupported(format!(
                "Opus channel mapping family {family} with {} channels (multistream)",
                head.channels
            )));
        }
        let serial = first.stream_serial();
        // The comment header (OpusTags) follows; it may span pages.
        loop {
            let p = reader
                .read_packet()
                .map_err(|e| malformed(ogg_text(&e)))?
                .ok_or_else(|| malformed("Ogg Opus stream ends before its comment header"))?;
            if p.stream_serial() == serial {
                break;
            }
        }
        let channels = usize::from(head.channels);
        let dec = OpusDecoder::new(48_000, channels)
            .map_err(|e| malformed(format!("Opus decoder: {e}")))?;
        let gain = 10f32.powf(f32::from(head.gain_q8) / (20.0 * 256.0));
        Ok((
            OpusBackend {
                reader,
                dec,
                serial,
                channels,
                div: 1,
                pre_skip: u64::from(head.pre_skip),
                pos: 0,
                gain,
                buf: vec![0.0; MAX_FRAME * channels],
                last_frame: 960,
                skipped: 0,
                done: false,
            },
            head,
        ))
    }
}

impl Backend for OpusBackend {
    fn next(&mut self, out: &mut Vec<f32>, mix: bool) -> Result<usize> {
        while !self.done {
            let Some(pkt) = self.reader.read_packet().map_err(ogg_err)? else {
                return Ok(0);
            };
            if pkt.stream_serial() != self.serial {
                continue;
            }
            let eos = pkt.last_in_stream();
            self.done = eos;
            if pkt.data.is_empty() {
                continue;
            }
            let div = self.div as usize;
            let max = MAX_FRAME / div;
            let n = match self.dec.decode(&pkt.data, max, &mut self.buf) {
                Ok(n) if n <= max => n,
                _ => {
                    // Undecodable packet: keep time with silence of its nominal duration.
                    self.skipped += 1;
                    let n = packet_samples(&pkt.data).map_or(self.last_frame, |n| n / div);
                    self.buf[..n * self.channels].fill(0.0);
                    n
                }
            };
            self.last_frame = n.max(1);
            // This packet covers [pos, end) at 48 kHz; output sample k is at pos + k·div.
            let start = self.pos;
            let mut end = start + n as u64 * self.div;
            if eos {
                // End trimming: the final granule position is the true end.
                end = end.min(pkt.absgp_page().max(start));
            }
            self.pos = end;
            let upto = |t: u64| (t.saturating_sub(start).div_ceil(self.div) as usize).min(n);
            let (s, n) = (upto(self.pre_skip), upto(end));
            let g = self.gain;
            match self.channels {
                1 => out.extend(self.buf[s..n].iter().map(|&x| x * g)),
                c if !mix => out.extend(self.buf[c * s..c * n].iter().map(|&x| x * g)),
                _ => out.extend(
                    self.buf[2 * s..2 * n]
                        .chunks_exact(2)
                        .map(|c| (c[0] + c[1]) * 0.5 * g),
                ),
            }
            if n > s {
                return Ok(n - s);
            }
        }
        Ok(0)
    }

    fn skipped_packets(&self) -> u64 {
        self.skipped
    }

    fn lower_rate(&mut self, rate: u32) -> Result<Option<u32>> {
        let Some(&new) = [8_000, 12_000, 16_000, 24_000]
            .iter()
            .find(|&&r| r >= rate && u64::from(r) < 48_000 / self.div)
        else {
            return Ok(None);
        };
        self.dec = OpusDecoder::new(new as i32, self.channels)
            .map_err(|e| malformed(format!("Opus decoder: {e}")))?;
        self.div = 48_000 / u64::from(new);
        self.last_frame = 960 / self.div as usize;
        Ok(Some(new))
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Decoder;
    use std::path::Path;

    fn decode(name: &str, rate: Option<u32>) -> (Vec<f32>, Decoder) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/formats")
            .join(name);
        let mut d = Decoder::open(&p).unwrap();
        if let Some(r) = rate {
            d.prefer_rate(r).unwrap();
        }
        let mut x = Vec::new();
        while d.read_mono(&mut x).unwrap() > 0 {}
        (x, d)
    }

    /// Normalised correlation of `a[i]` with `b[i + lag]`.
    fn corr(a: &[f32], b: &[f32], lag: isize) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (i, &x) in a.iter().enumerate() {
            let Some(&y) = b.get((i as isize + lag) as usize) else {
                continue;
            };
            ab += f64::from(x) * f64::from(y);
            aa += f64::from(x) * f64::from(x);
            bb += f64::from(y) * f64::from(y);
        }
        ab / (aa * bb).sqrt().max(1e-30)
    }

    /// Decoded at 16 kHz, the file has a third of the samples and the same waveform on the
    /// same timeline (pre-skip and end trimming at 48 kHz scale), as decoding at 48 kHz and
    /// keeping every third sample (the content is below 8 kHz): CELT (the tone; exactly
    /// aligned) and SILK (speech at 16 kbit/s, where 16 kHz skips SILK's own upsampler; 40 µs
    /// apart).
    #[test]
    fn decoding_at_16k_keeps_the_timeline() {
        for (name, len48) in [
            ("tone_48k_mono.opus", Some(72_000)),
            ("speech_voip.opus", None),
        ] {
            let (x48, d48) = decode(name, None);
            let (x16, d16) = decode(name, Some(16_000));
            assert_eq!(d48.info().sample_rate.get(), 48_000);
            assert_eq!(d16.info().sample_rate.get(), 16_000);
            if let Some(n) = len48 {
                assert_eq!(x48.len(), n, "{name}");
            }
            assert_eq!(x16.len(), x48.len().div_ceil(3), "{name}");
            assert_eq!(
                d16.info().frames_hint,
                d48.info().frames_hint.map(|f| f / 3),
                "{name}"
            );
            let third: Vec<f32> = x48.iter().step_by(3).copied().collect();
            // SILK's resampling delay is not normative and differs by output rate by a
            // fraction of a millisecond: the best alignment is within one sample at 16 kHz.
            let c: Vec<f64> = (-4..=4).map(|lag| corr(&x16, &third, lag)).collect();
            let best = (0..c.len())
                .max_by(|&i, &j| c[i].total_cmp(&c[j]))
                .unwrap_or(0);
            assert!(c[best] > 0.95, "{name}: correlation {:.3}", c[best]);
            assert!((3..=5).contains(&best), "{name}: lags −4..4 {c:.3?}");
        }
    }

    /// Asked for less than 8 kHz or more than 24 kHz, or after reading started, it stays.
    #[test]
    fn other_rates_and_late_requests_change_nothing() {
        let (_, d) = decode("tone_48k_mono.opus", Some(32_000));
        assert_eq!(d.info().sample_rate.get(), 48_000);
        let (x, d) = decode("tone_48k_mono.opus", Some(11_025));
        assert_eq!((d.info().sample_rate.get(), x.len()), (12_000, 18_000));
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/formats/tone_48k_mono.opus");
        let mut d = Decoder::open(&p).unwrap();
        let mut x = Vec::new();
        d.read_mono(&mut x).unwrap();
        d.prefer_rate(16_000).unwrap();
        assert_eq!(d.info().sample_rate.get(), 48_000);
    }
}
