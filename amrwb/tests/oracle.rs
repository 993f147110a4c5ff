//! Our decoder against the oracle (rvoip-codec-core, a port of the 3GPP fixed-point reference) on
//! real speech in every mode, DTX, mode switches, damaged, lost and reserved frames and random
//! payloads: every frame bit-exact (and every frame kind at ≥ 40 dB SNR), the exact length; and arbitrary input
//! never panics.
//!
//! `cargo test -p asr-pipeline-amrwb --release --test oracle -- --nocapture` prints the table.

#[path = "../../amrnb/tests/common/mod.rs"]
#[macro_use]
mod common;

ours!(amrwb, true);

#[test]
fn every_frame_kind_agrees_with_the_reference() {
    common::run::<Ours>();
}

/// Arbitrary bytes of every frame type must decode without panicking (debug builds check
/// arithmetic overflow too) and always fill the frame.
#[test]
fn random_bytes_never_panic() {
    let mut r = 0x2545_f491u32;
    let mut next = || {
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        r
    };
    let mut d = amrwb::Decoder::new();
    let mut out = [0i16; 320];
    for i in 0..4000u32 {
        let ft = (next() % 16) as u8;
        let len = match next() % 8 {
            0 => (next() % 64) as usize,
            _ => amrwb::PAYLOAD_BYTES[usize::from(ft)],
        };
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let q = !next().is_multiple_of(7);
        if i.is_multiple_of(97) {
            d.decode_lost(&mut out);
        } else {
            d.decode(ft, q, &payload, &mut out);
        }
    }
    // Extreme payloads: all ones / all zeros in every mode.
    for fill in [0u8, 0xff] {
        for ft in 0..16u8 {
            let payload = vec![fill; 64];
            for _ in 0..20 {
                d.decode(ft, true, &payload, &mut out);
            }
        }
    }
}
