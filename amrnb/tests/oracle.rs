//! Our decoder against the oracle (rvoip-codec-core, a port of the 3GPP fixed-point reference) on
//! real speech in every mode, DTX, mode switches, damaged, lost and reserved frames and random
//! payloads: every frame bit-exact (and every frame kind at ≥ 40 dB SNR), the exact length; and arbitrary input
//! never panics.
//!
//! `cargo test -p asr-pipeline-amrnb --release --test oracle -- --nocapture` prints the table.

#[macro_use]
mod common;

ours!(amrnb, false);

#[test]
fn every_frame_kind_agrees_with_the_reference() {
    common::run::<Ours>();
}

/// Any bytes, any frame type, any order, short payloads: the decoder never panics (also in
/// debug builds, where an integer overflow would).
#[test]
fn arbitrary_input_never_panics() {
    let mut r = 0x1357_9bdfu32;
    let mut next = || {
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        r
    };
    for stream in 0..8 {
        let mut d = amrnb::Decoder::new();
        let mut out = [0i16; amrnb::FRAME_LEN];
        for _ in 0..5000 {
            let v = next();
            let ft = match stream {
                0 => (v % 16) as u8,
                1 => (v % 8) as u8,
                2 => [8u8, 15, 7][(v % 3) as usize],
                _ => [(v % 8) as u8, 8, 15, 3][(v >> 8) as usize % 4],
            };
            let len = if v % 13 == 0 {
                (v >> 4) as usize % 40
            } else {
                amrnb::PAYLOAD_BYTES[ft as usize]
            };
            // Mostly loud, saturated-looking bytes in some streams to reach the saturating paths.
            let payload: Vec<u8> = (0..len)
                .map(|_| {
                    if stream == 5 {
                        0xff
                    } else if stream == 6 {
                        0
                    } else {
                        next() as u8
                    }
                })
                .collect();
            if v % 17 == 0 {
                d.decode_lost(&mut out);
            } else {
                d.decode(ft, v % 7 != 0, &payload, &mut out);
            }
        }
    }
}
