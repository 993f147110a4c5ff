//! An AMR-WB (adaptive multi-rate wideband) speech decoder. The algorithms follow the 3GPP
//! specifications: TS 26.190 (transcoding), TS 26.173 (the fixed-point reference code, whose
//! arithmetic is reproduced operator by operator), TS 26.191/26.192/26.193 (concealment,
//! comfort noise, DTX) and TS 26.201 / RFC 4867 (frame format). The normative constant tables
//! were transcribed from rvoip-codec-core's copy of the reference tables.
//!
//! Conformance: the output is verified bit-exact with rvoip-codec-core 0.4 (a Rust port of
//! the reference decoder, used as the test oracle) on speech in all nine modes, DTX, damaged
//! and lost frames and arbitrary payloads. It has not been checked against the 3GPP
//! conformance vectors, which were not available. Where rvoip-codec-core departs from the
//! reference code (comfort noise, DTX and erasure handling), this decoder reproduces its
//! behaviour; the departures are listed in the `decoder` module's documentation
//! (`src/decoder.rs`, "Agreement with the oracle").
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

use decoder::{Core, Frame};
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
        let frame = match frame_type {
            0..=8 => {
                self.mode = frame_type;
                match bits::parse_speech(usize::from(frame_type), payload) {
                    Some(params) => {
                        let frame = Frame::Speech {
                            params: &params,
                            intact: quality_ok,
                        };
                        self.core.decode(usize::from(frame_type), frame, out);
                        return;
                    }
                    None => Frame::Lost,
                }
            }
            9 if payload.len() >= PAYLOAD_BYTES[9] => {
                // Octet 4: STI (update vs first) in bit 4, mode indication in bits 0–3.
                let kind = match (quality_ok, payload[4] & 0x10 != 0) {
                    (false, _) => Rx::SidBad,
                    (true, true) => Rx::SidUpdate,
                    (true, false) => Rx::SidFirst,
                };
                let indicated = payload[4] & 0x0f;
                let mode = if indicated <= 8 { indicated } else { self.mode };
                let frame = Frame::Sid {
                    kind,
                    params: bits::parse_sid(payload),
                };
                self.core.decode(usize::from(mode), frame, out);
                return;
            }
            9 | 14 => Frame::Lost,
            _ => Frame::NoData,
        };
        self.core.decode(usize::from(self.mode), frame, out);
    }

    /// Decodes a frame the transport reports as missing: concealment inside a talk spurt,
    /// comfort noise inside a DTX period (the reference's `RX_SPEECH_LOST`).
    pub fn decode_lost(&mut self, out: &mut [i16; FRAME_LEN]) {
        self.core.decode(usize::from(self.mode), Frame::Lost, out);
    }
}
