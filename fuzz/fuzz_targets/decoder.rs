//! The decoder front end over arbitrary bytes: probing by content, every container and codec,
//! downmixing. Must return an error or audio, never panic or hang. Output is capped so that a
//! valid header declaring hours of audio does not make one run slow.
#![no_main]

use std::io::Cursor;

use asr_pipeline::decode::Decoder;
use libfuzzer_sys::fuzz_target;

/// Frames decoded per input at most (about 20 s at 48 kHz).
const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(mut d) = Decoder::from_reader(Cursor::new(data.to_vec()), None) else {
        return;
    };
    let mut out = Vec::new();
    while out.len() < CAP {
        match d.read_mono(&mut out) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(out.iter().all(|v| v.is_finite()), "non-finite sample");
});
