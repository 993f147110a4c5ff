//! The AMR-NB and AMR-WB decoders over arbitrary frame sequences: the first byte picks the
//! codec, then each frame is a ToC byte (frame type, Q bit) and that type's payload, taken from
//! the input, with ToC byte 0xFF standing for a frame the transport lost. No input may panic,
//! and every frame must come out as exactly 20 ms.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut rest)) = data.split_first() else {
        return;
    };
    let wide = which & 1 == 1;
    let mut nb = amrnb::Decoder::new();
    let mut wb = amrwb::Decoder::new();
    let mut out_nb = [0i16; amrnb::FRAME_LEN];
    let mut out_wb = [0i16; amrwb::FRAME_LEN];
    while let Some((&toc, tail)) = rest.split_first() {
        let ft = (toc >> 3) & 0x0F;
        let q = toc & 0x04 != 0;
        let need = if wide {
            amrwb::PAYLOAD_BYTES[usize::from(ft)]
        } else {
            amrnb::PAYLOAD_BYTES[usize::from(ft)]
        };
        // A short tail is handed over short: the decoders must take it as a lost frame.
        let (payload, next) = tail.split_at(need.min(tail.len()));
        rest = next;
        match (wide, toc == 0xFF) {
            (false, true) => nb.decode_lost(&mut out_nb),
            (false, false) => nb.decode(ft, q, payload, &mut out_nb),
            (true, true) => wb.decode_lost(&mut out_wb),
            (true, false) => wb.decode(ft, q, payload, &mut out_wb),
        }
    }
});
