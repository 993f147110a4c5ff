//! An AMR-NB (adaptive multi-rate narrowband) speech decoder, written from the 3GPP
//! specification: TS 26.090 (transcoding) and TS 26.073 (the fixed-point reference, whose
//! arithmetic it reproduces), TS 26.091/26.092/26.093 (concealment, comfort noise, DTX) and
//! TS 26.101 / RFC 4867 (frame format).
//!
//! One [`Decoder`] per stream; it turns each 20 ms frame of the RFC 4867 storage format into
//! 160 samples at 8 kHz, whatever the frame carries: speech in any of the eight modes, a SID
//! (comfort-noise) update, NO_DATA (a DTX gap), a damaged frame (concealed) or a lost one. No
//! frame is ever dropped, so a file's duration is exactly `frames × 20 ms`.
//!
//! No I/O and no allocation per frame: the caller parses the container and hands in payloads.
//!
//! # Exactness and speed
//!
//! The arithmetic follows TS 26.073's fixed-point reference, so that the output can be exact to
//! the bit. What is verified is bit-exactness with `rvoip-codec-core` 0.4, a port of that
//! reference and the decoder asr-pipeline used before: `tests/oracle.rs` compares every frame
//! of real speech in every mode, DTX, damaged, lost, reserved and random frames. The 3GPP
//! conformance test vectors were not available here. The reference's saturating operators are
//! used only where saturation can change a result; the hot filters run in plain integer
//! arithmetic under bounds that are checked per block, falling back to the saturating form
//! when a bound does not hold, and the reference's global overflow flag is recovered locally
//! where the decoder consults it. Input bytes are never trusted: every table index is in range
//! by construction or clamped. The normative constant tables were transcribed mechanically from
//! `rvoip-codec-core`'s copy (see `tables.rs`); the code is this crate's own.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Filter loops index several fixed-size arrays in lockstep; explicit indices read like the
// equations they implement.
#![allow(clippy::needless_range_loop)]

mod bits;
mod codebook;
mod decoder;
mod dtx;
mod enhance;
mod filter;
mod gain;
mod lag;
mod lsf;
mod ops;
mod postfilter;
mod tables;

use bits::{unpack, MAX_PARAMS, SID};
use decoder::Core;
use dtx::Rx;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_LEN: usize = 160;

/// Payload octets that follow the ToC byte, per storage-format frame type (RFC 4867 §5.3,
/// TS 26.101): modes 0–7 (4.75 … 12.2 kbit/s), SID, then types without payload.
pub const PAYLOAD_BYTES: [usize; 16] = [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0];

/// An AMR-NB decoder: state carries from one frame to the next.
#[derive(Clone)]
pub struct Decoder {
    core: Core,
    /// The last speech mode received (initially 12.2 kbit/s), used by NO_DATA and lost frames.
    mode: u8,
    /// Scratch parameter vector (kept here so nothing is allocated or re-zeroed per frame).
    params: [i16; MAX_PARAMS],
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder in its home state.
    pub fn new() -> Decoder {
        Decoder {
            core: Core::new(),
            mode: 7,
            params: [0; MAX_PARAMS],
        }
    }

    /// Decodes one storage-format frame into `out`.
    ///
    /// `frame_type` is the ToC's FT field (0–15), `quality_ok` its Q bit, `payload` the octets
    /// after the ToC (at least [`PAYLOAD_BYTES`]`[frame_type]`; more are ignored). Speech with
    /// `quality_ok` false is a bad frame and concealed; a SID with `quality_ok` false is a bad
    /// SID; types 9–15 (foreign SIDs, reserved, NO_DATA) are NO_DATA. A payload shorter than its
    /// type needs is treated as a lost frame. Always writes [`FRAME_LEN`] samples.
    pub fn decode(
        &mut self,
        frame_type: u8,
        quality_ok: bool,
        payload: &[u8],
        out: &mut [i16; FRAME_LEN],
    ) {
        // A value above 15 cannot come from a 4-bit FT field: NO_DATA, as in the AMR-WB crate.
        let ft = if frame_type > 15 { 15 } else { frame_type };
        if ft <= 7 {
            self.mode = ft;
            if !unpack(ft as usize, payload, &mut self.params) {
                return self.decode_lost(out);
            }
            let rx = if quality_ok {
                Rx::SpeechGood
            } else {
                Rx::SpeechBad
            };
            self.core.frame(rx, ft, &mut self.params, out);
        } else if ft == 8 {
            if payload.len() < PAYLOAD_BYTES[8] || !unpack(SID, payload, &mut self.params) {
                return self.decode_lost(out);
            }
            // Bit 35 is the SID type indicator, bits 36-38 the speech mode, least significant
            // bit first (TS 26.101).
            let tail = payload[4];
            let update = (tail >> 4) & 1 != 0;
            let mode = ((tail >> 3) & 1) | (((tail >> 2) & 1) << 1) | (((tail >> 1) & 1) << 2);
            let rx = if !quality_ok {
                Rx::SidBad
            } else if update {
                Rx::SidUpdate
            } else {
                Rx::SidFirst
            };
            self.core.frame(rx, mode, &mut self.params, out);
        } else {
            self.core
                .frame(Rx::NoData, self.mode, &mut self.params, out);
        }
    }

    /// Decodes a frame the transport reports as missing: concealment inside a talk spurt,
    /// comfort noise inside a DTX period (the reference's `RX_NO_DATA`).
    pub fn decode_lost(&mut self, out: &mut [i16; FRAME_LEN]) {
        self.core
            .frame(Rx::NoData, self.mode, &mut self.params, out);
    }
}
