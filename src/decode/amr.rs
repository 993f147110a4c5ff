//! AMR-NB and AMR-WB in the RFC 4867 §5 single-channel storage format, decoded with
//! `rvoip-codec-core` (pure Rust, bit-exact with the 3GPP reference decoders).
//!
//! The storage format is parsed here: after the magic, each frame is a ToC byte
//! (`P FT(4) Q P P`) followed by the frame's octet-aligned payload, whose size the frame type
//! fixes. Every frame is 20 ms, whatever it carries: speech, SID (comfort noise), NO_DATA
//! (DTX gap: comfort noise continues), a reserved type (treated as NO_DATA) or SPEECH_LOST
//! (concealed). So a file's duration is exactly `frames × 20 ms`.
//!
//! # Allocation
//! The coded frame buffer is reused, but each 20 ms frame still costs one small allocation
//! (320 or 640 bytes) inside the codec: `VariableRateCodec::decode_frame` returns a `Vec<i16>`,
//! `AmrCodec` does not implement `AudioCodecExt::decode_to_buffer`, and the lower-level
//! `nb`/`wb` decoders that return fixed arrays would mean re-implementing `AmrCodec`'s
//! DTX/SID frame-type dispatch (the part that keeps it bit-exact with the 3GPP reference);
//! the narrowband bit parser allocates its parameter `Vec` per frame as well. At 50 frames
//! per second of audio this is far below the decoding cost; revisit if the crate gains a
//! buffer API.

use std::io::{BufReader, Seek, SeekFrom};

use codec_core::codecs::amr::AmrCodec;
use codec_core::types::{CodecConfig, CodedFrame, FrameKind, VariableRateCodec};

use super::probe::read_up_to;
use super::source::Src;
use super::{malformed, truncated, Backend};
use crate::error::Result;

/// Payload bytes (ToC excluded) per frame type, narrowband (RFC 4867 Table 1a / TS 26.101).
const NB_SIZE: [usize; 16] = [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0];
/// Payload bytes per frame type, wideband (TS 26.201).
const WB_SIZE: [usize; 16] = [17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0];

/// Frames decoded per `next` call (1 s).
const BATCH: usize = 50;

pub(crate) struct AmrBackend {
    rd: BufReader<Src>,
    codec: AmrCodec,
    wide: bool,
    /// The last speech mode seen, for NO_DATA and lost frames.
    mode: u8,
    frame: Vec<u8>,
    skipped: u64,
}

impl AmrBackend {
    /// Opens the stream; `wide` selects AMR-WB. The magic has already been probed.
    pub(crate) fn open(mut src: Src, wide: bool) -> Result<AmrBackend> {
        let magic: &[u8] = if wide { b"#!AMR-WB\n" } else { b"#!AMR\n" };
        src.seek(SeekFrom::Start(magic.len() as u64))?;
        let cfg = if wide {
            CodecConfig::amr_wb()
        } else {
            CodecConfig::amr_nb()
        };
        let codec = AmrCodec::new(&cfg).map_err(|e| malformed(format!("AMR decoder: {e}")))?;
        Ok(AmrBackend {
            rd: BufReader::with_capacity(16 * 1024, src),
            codec,
            wide,
            mode: if wide { 8 } else { 7 },
            frame: Vec::with_capacity(64),
            skipped: 0,
        })
    }

    /// Samples per 20 ms frame.
    fn frame_len(&self) -> usize {
        if self.wide {
            320
        } else {
            160
        }
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
            let ft = usize::from((toc[0] >> 3) & 0x0F);
            let quality_ok = toc[0] & 0x04 != 0;
            let size = if self.wide { WB_SIZE[ft] } else { NB_SIZE[ft] };
            self.frame.clear();
            self.frame.resize(size, 0);
            let got = read_up_to(&mut self.rd, &mut self.frame)?;
            if got < size {
                if total > 0 {
                    // Hand over what decoded; the next call reports the break.
                    self.rd.seek_relative(-1 - got as i64)?;
                    self.frame.clear();
                    return Ok(total);
                }
                return Err(truncated("the file ends inside an AMR frame"));
            }
            let (speech_max, sid, lost) = if self.wide { (8, 9, 14) } else { (7, 8, 99) };
            let kind = if ft <= speech_max {
                self.mode = ft as u8;
                FrameKind::Speech
            } else if ft == sid {
                FrameKind::ComfortNoise
            } else if ft == lost {
                FrameKind::Lost
            } else {
                // NO_DATA (15) and the reserved / foreign-SID types.
                FrameKind::NoData
            };
            let frame = CodedFrame {
                kind,
                mode: self.mode,
                quality_ok,
                data: std::mem::take(&mut self.frame),
            };
            let pcm = match self.codec.decode_frame(&frame) {
                Ok(p) if p.len() == self.frame_len() => p,
                _ => {
                    // A frame the decoder refuses: conceal it as lost, keeping its 20 ms.
                    self.skipped += 1;
                    let lost = CodedFrame {
                        kind: FrameKind::Lost,
                        mode: self.mode,
                        quality_ok: false,
                        data: Vec::new(),
                    };
                    match self.codec.decode_frame(&lost) {
                        Ok(p) if p.len() == self.frame_len() => p,
                        _ => vec![0; self.frame_len()],
                    }
                }
            };
            self.frame = frame.data;
            out.extend(pcm.iter().map(|&s| f32::from(s) * (1.0 / 32768.0)));
            total += pcm.len();
        }
        Ok(total)
    }

    fn skipped_packets(&self) -> u64 {
        self.skipped
    }
}
