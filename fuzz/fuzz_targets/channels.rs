//! Channel separation over arbitrary bytes: decode once → one 16 kHz lane per channel →
//! Auto's judging window / a channel list → tracks. Blocks must stay on the timeline and
//! every track of a block must cover the same samples. The first byte picks the mode.
#![no_main]

use asr_pipeline::channels::{ChannelMode, __fuzz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let mode = match m % 4 {
        0 => ChannelMode::Auto,
        1 => ChannelMode::Mix,
        2 => ChannelMode::Separate(vec![]),
        _ => ChannelMode::Separate(vec![u16::from(m >> 2) % 3]),
    };
    // About 65 s of 16 kHz samples per track at most.
    __fuzz::tracks(rest, &mode, 1 << 20);
});
