//! An AMR-WB (adaptive multi-rate wideband) speech decoder, written from the 3GPP
//! specification: TS 26.190 (transcoding), TS 26.173 (the fixed-point reference it is bit-exact
//! with), TS 26.191/26.192/26.193 (concealment, comfort noise, DTX) and TS 26.201 / RFC 4867
//! (frame format).
//!
//! One [`Decoder`] per stream; it turns each 20 ms frame of the RFC 4867 storage format into
//! 320 samples at 16 kHz, whatever the frame carries: speech in any of the nine modes, a SID
//! (comfort-noise) update, NO_DATA (a DTX gap), a damaged frame (concealed) or a lost one. No
//! frame is ever dropped, so a file's duration is exactly `frames × 20 ms`.
//!
//! No I/O and no allocation per frame: the caller parses the container and hands in payloads.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Filters index neighbouring samples (x[i − 1], x[i + k], …) the way the specification
// writes them; iterator rewrites of those loops obscure the correspondence.
#![allow(clippy::needless_range_loop)]

mod acelp;
mod bits;
mod decoder;
mod dtx;
mod enhance;
mod gain;
mod highband;
mod lp;
mod ops;
mod pitch;
mod synth;
mod tables;

use decoder::{Core, Quality};
use dtx::Rx;

/// Samples in one 20 ms frame at 16 kHz.
pub const FRAME_LEN: usize = 320;

/// Payload octets that follow the ToC byte, per storage-format frame type (RFC 4867 §5.3,
/// TS 26.201): modes 0–8 (6.60 … 23.85 kbit/s), SID, then types without payload.
pub const PAYLOAD_BYTES: [usize; 16] = [17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0];

/// An AMR-WB decoder: state carries from one frame to the next.
#[derive(Clone)]
pub struct Decoder {
    core: Core,
    /// The last speech mode seen (NO_DATA and lost frames use it).
    mode: u8,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder in its home state.
    pub fn new() -> Decoder {
        Decoder {
            core: Core::new(),
            mode: 8,
        }
    }

    /// Decodes one storage-format frame into `out`.
    ///
    /// `frame_type` is the ToC's FT field (0–15), `quality_ok` its Q bit, `payload` the octets
    /// after the ToC (at least [`PAYLOAD_BYTES`]`[frame_type]`; more are ignored). Speech with
    /// `quality_ok` false is a bad frame and concealed; a SID with `quality_ok` false is a bad
    /// SID; type 14 (SPEECH_LOST) is lost, types 10–13 and 15 (reserved, NO_DATA) are NO_DATA.
    /// A payload shorter than its type needs is treated as a lost frame. Always writes
    /// [`FRAME_LEN`] samples.
    pub fn decode(
        &mut self,
        frame_type: u8,
        quality_ok: bool,
        payload: &[u8],
        out: &mut [i16; FRAME_LEN],
    ) {
        match frame_type {
            0..=8 => {
                self.mode = frame_type;
                let mode = usize::from(frame_type);
                match bits::parse_speech(mode, payload) {
                    Some(p) => {
                        let q = if quality_ok {
                            Quality::Good
                        } else {
                            Quality::Bad
                        };
                        self.core.speech(mode, Some(&p), q, None, out);
                    }
                    None => self.decode_lost(out),
                }
            }
            9 => {
                if payload.len() < PAYLOAD_BYTES[9] {
                    self.decode_lost(out);
                    return;
                }
                let rx = if !quality_ok {
                    Rx::SidBad
                } else if payload[4] & 0x10 != 0 {
                    Rx::SidUpdate
                } else {
                    Rx::SidFirst
                };
                let indicated = payload[4] & 0x0f;
                let mode = if indicated <= 8 { indicated } else { self.mode };
                let sid = bits::parse_sid(payload);
                self.core.comfort_frame(rx, sid, usize::from(mode), out);
            }
            14 => self.decode_lost(out),
            _ => self
                .core
                .comfort_frame(Rx::NoData, None, usize::from(self.mode), out),
        }
    }

    /// Decodes a frame the transport reports as missing: concealment inside a talk spurt,
    /// comfort noise inside a DTX period (the reference's `RX_SPEECH_LOST`).
    pub fn decode_lost(&mut self, out: &mut [i16; FRAME_LEN]) {
        self.core
            .speech(usize::from(self.mode), None, Quality::Lost, None, out);
    }
}
