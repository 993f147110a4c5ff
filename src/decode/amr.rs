//! AMR-NB and AMR-WB in the RFC 4867 §5 single-channel storage format, decoded by this
//! workspace's own decoders (`asr-pipeline-amrnb`, `asr-pipeline-amrwb`: pure Rust, written from
//! the 3GPP specification, checked bit for bit against `rvoip-codec-core`, the port of the
//! fixed-point reference this module used before).
//!
//! The storage format is parsed here: after the magic, each frame is a ToC byte
//! (`P FT(4) Q P P`) followed by the frame's octet-aligned payload, whose size the frame type
//! fixes. Every frame is 20 ms, whatever it carries: speech, SID (comfort noise), NO_DATA
//! (DTX gap: comfort noise continues), a reserved type (treated as NO_DATA), SPEECH_LOST or a
//! damaged frame (Q = 0; concealed). So a file's duration is exactly `frames × 20 ms`.
//! No allocation per frame: the payload and sample buffers are reused.

use std::io::{BufReader, Seek, SeekFrom};

use super::probe::read_up_to;
use super::source::Src;
use super::{truncated, Backend};
use crate::error::Result;

/// Frames decoded per `next` call (1 s).
const BATCH: usize = 50;

/// One of the two decoders (boxed: their states are a few kilobytes).
enum Codec {
    Narrow(Box<amrnb::Decoder>),
    Wide(Box<amrwb::Decoder>),
}

pub(crate) struct AmrBackend {
    rd: BufReader<Src>,
    codec: Codec,
    frame: [u8; 64],
    pcm_nb: [i16; amrnb::FRAME_LEN],
    pcm_wb: [i16; amrwb::FRAME_LEN],
    /// Frames that carried nothing usable: marked damaged (Q = 0), lost (AMR-WB's
    /// SPEECH_LOST), or of a type an AMR file should not hold (reserved, foreign SIDs), which
    /// the decoder concealed or filled with comfort noise. A run of garbage after the magic
    /// shows up here.
    unusable: u64,
}

impl AmrBackend {
    /// Opens the stream; `wide` selects AMR-WB. The magic has already been probed.
    pub(crate) fn open(mut src: Src, wide: bool) -> Result<AmrBackend> {
        let magic: &[u8] = if wide { b"#!AMR-WB\n" } else { b"#!AMR\n" };
        src.seek(SeekFrom::Start(magic.len() as u64))?;
        let codec = if wide {
            Codec::Wide(Box::default())
        } else {
            Codec::Narrow(Box::default())
        };
        Ok(AmrBackend {
            rd: BufReader::with_capacity(16 * 1024, src),
            codec,
            frame: [0; 64],
            pcm_nb: [0; amrnb::FRAME_LEN],
            pcm_wb: [0; amrwb::FRAME_LEN],
            unusable: 0,
        })
    }
}

impl Backend for AmrBackend {
    fn next(&mut self, out: &mut Vec<f32>, _mix: bool) -> Result<usize> {
        let mut total = 0;
        for _ in 0..BATCH {
            let mut toc = [0u8; 1];
            if read_up_to(&mut self.rd, &mut toc)? == 0 {
                break;
            }
            let ft = (toc[0] >> 3) & 0x0F;
            let quality_ok = toc[0] & 0x04 != 0;
            let size = match self.codec {
                Codec::Narrow(_) => amrnb::PAYLOAD_BYTES[usize::from(ft)],
                Codec::Wide(_) => amrwb::PAYLOAD_BYTES[usize::from(ft)],
            };
            let payload = &mut self.frame[..size];
            let got = read_up_to(&mut self.rd, payload)?;
            if got < size {
                if total > 0 {
                    // Hand over what decoded; the next call reports the break.
                    self.rd.seek_relative(-1 - got as i64)?;
                    return Ok(total);
                }
                return Err(truncated("the file ends inside an AMR frame"));
            }
            let wide = matches!(self.codec, Codec::Wide(_));
            // Speech and SID types, then NO_DATA; everything else is reserved (for AMR-WB 14
            // is SPEECH_LOST) or a foreign SID (AMR-NB 9-11).
            let carries = ft <= if wide { 9 } else { 8 };
            if (carries && !quality_ok) || (!carries && ft != 15) {
                self.unusable += 1;
            }
            let pcm: &[i16] = match &mut self.codec {
                Codec::Narrow(d) => {
                    d.decode(ft, quality_ok, payload, &mut self.pcm_nb);
                    &self.pcm_nb
                }
                Codec::Wide(d) => {
                    d.decode(ft, quality_ok, payload, &mut self.pcm_wb);
                    &self.pcm_wb
                }
            };
            out.extend(pcm.iter().map(|&s| f32::from(s) * (1.0 / 32768.0)));
            total += pcm.len();
        }
        Ok(total)
    }

    fn skipped_packets(&self) -> u64 {
        self.unusable
    }
}
