//! `--split-only`: each input's speech segments as 16 kHz WAV files plus `manifest.json`, no
//! API at all.

use crate::engine::{Engine, FileError, Finished, Job};

/// The journal settings of split-only runs.
pub const SETTINGS: &str = "split-only v1";

/// Writes segment files and a manifest per input.
pub struct SplitEngine;

impl SplitEngine {
    /// The engine.
    pub fn new() -> SplitEngine {
        SplitEngine
    }
}

impl Engine for SplitEngine {
    async fn process(&self, job: Job<'_>) -> Result<Finished, FileError> {
        let _ = job;
        Err(FileError::output(anyhow::anyhow!("not merged yet")))
    }
}
