//! Stage `pipeline`: route each file, transcribe, and merge back onto the original timeline.

pub mod plan;
