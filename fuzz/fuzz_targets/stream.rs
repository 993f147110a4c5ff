//! The whole front end over arbitrary bytes: decode → mono → 16 kHz → DC removal and loudness.
//! Blocks must stay on the timeline (each starts where the previous one ended). Output capped.
#![no_main]

use std::io::Cursor;

use asr_pipeline::stream::{AudioStream, StreamOptions};
use libfuzzer_sys::fuzz_target;

/// 16 kHz samples per input at most (about 65 s).
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(mut s) =
        AudioStream::from_reader(Cursor::new(data.to_vec()), None, StreamOptions::default())
    else {
        return;
    };
    let mut next = 0u64;
    while next < CAP {
        match s.next_block() {
            Ok(Some(b)) => {
                assert_eq!(b.start, next, "a block off the timeline");
                next += b.samples.len() as u64;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
