//! The parsers of what the API and the storage service send back, over arbitrary bytes: the
//! first byte chooses the parser, the rest is the body. Must return a value or an error,
//! never panic.
#![no_main]

use std::time::{Duration, SystemTime};

use asr_pipeline::botlhale::{AsyncResult, JobStatus};
use asr_pipeline::botlhale::__fuzz::{parse_retry_after, parse_s3_error, parse_storage_answer};
use asr_pipeline::botlhale::SyncTranscription;
use asr_pipeline::segment::SegmentPlan;
use asr_pipeline::transcript::Transcript;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(body);
    match which % 8 {
        0 => {
            let _ = AsyncResult::from_json(body);
        }
        1 => {
            let _ = serde_json::from_slice::<SyncTranscription>(body);
        }
        2 => {
            let _ = parse_s3_error(&text);
        }
        3 => {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let _ = parse_retry_after(&text, now);
        }
        4 => {
            let _ = JobStatus::parse(&text);
        }
        5 => {
            let _ = Transcript::from_json(&text);
        }
        6 => {
            let _ = parse_storage_answer(body);
        }
        _ => {
            let _ = SegmentPlan::from_json(&text);
        }
    }
});
