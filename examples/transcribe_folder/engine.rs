//! What turns one input into its outputs: the [`Engine`] trait the batch runner drives, with
//! the events it reports (async parts uploaded, audio processed) and its errors.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::args::OutFormat;
use crate::journal::{now, FileKey, Journal, Record, State, UploadedPart};
use crate::outputs::{OutDir, OutName};
use crate::progress::Progress;
use crate::walk::InputFile;

/// One file's work order.
pub struct Job<'a> {
    /// The input.
    pub input: &'a InputFile,
    /// Where its outputs go.
    pub name: &'a OutName,
    /// The output folder.
    pub out: &'a OutDir,
    /// Formats to write (JSON always among them).
    pub formats: &'a [OutFormat],
    /// Async parts already on the server from an earlier run: poll them, do not upload again.
    pub resume: Vec<UploadedPart>,
    /// Finished before; only formats were added: write them from the saved `<base>.json`
    /// when it can be read (else transcribe).
    pub reexport: bool,
    /// Where to report.
    pub events: Events,
}

/// A finished file.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Audio duration in seconds.
    pub audio_secs: f64,
    /// Outputs written, relative to `--out`.
    pub outputs: Vec<PathBuf>,
}

/// A failed file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    /// The error, for people (names the file).
    pub message: String,
    /// A short name of the kind of error (the library's [`asr_pipeline::Error::kind_name`], or
    /// `Output` / `BadInput` for the CLI's own).
    pub kind: String,
    /// True when a rerun should try again; false for a bad input.
    pub retry: bool,
    /// True when the async parts uploaded so far are still usable (e.g. polling gave up);
    /// false when the server failed them.
    pub parts_valid: bool,
    /// Every further file would fail the same way (the library's
    /// [`asr_pipeline::Error::stops_batch`]).
    pub stops: bool,
    /// A later call may succeed: the network or the service failed after the client's
    /// retries (the library's [`asr_pipeline::Error::is_transient`]).
    pub transient: bool,
}

impl FileError {
    /// An error writing outputs: retried on the next run.
    pub fn output(e: anyhow::Error) -> FileError {
        FileError {
            message: format!("{e:#}"),
            kind: "Output".into(),
            retry: true,
            parts_valid: true,
            stops: false,
            transient: false,
        }
    }

    /// A bad input: not retried until it changes (or `--force`).
    pub fn bad_input(message: String) -> FileError {
        FileError {
            message,
            kind: "BadInput".into(),
            retry: false,
            parts_valid: false,
            stops: false,
            transient: false,
        }
    }

    /// True when every further file would fail the same way (credentials refused, quota used
    /// up, the run cancelled): the batch stops and leaves them for a later run.
    pub fn stops_batch(&self) -> bool {
        self.stops
    }

    /// From the library's error: its own policy says whether the file is worth a later run
    /// and whether the batch stops.
    pub fn from_lib(e: &asr_pipeline::Error) -> FileError {
        use asr_pipeline::ErrorKind as K;
        // Async parts already on the server stay usable unless the server failed or refused
        // them, or they were never complete.
        let parts_valid = !e.is_bad_input()
            && !matches!(
                e.kind(),
                K::Encode { .. } | K::UploadRejected { .. } | K::JobFailed { .. }
            );
        FileError {
            message: e.to_string(),
            kind: e.kind_name().into(),
            retry: !e.is_bad_input(),
            parts_valid,
            stops: e.stops_batch(),
            transient: e.is_transient(),
        }
    }
}

/// Turns one input into its outputs.
pub trait Engine: Send + Sync {
    /// Processes `job`: writes its outputs (atomically, through `job.out`) and says which.
    /// Must not write `<base>.error.json`: the runner does on error.
    fn process(&self, job: Job<'_>) -> impl Future<Output = Result<Finished, FileError>> + Send;
}

/// Where a running file reports: async uploads go to the journal at once (so a kill after an
/// upload never uploads again), audio progress to the bars.
#[derive(Clone)]
pub struct Events {
    inner: Arc<EventsInner>,
}

struct EventsInner {
    journal: Arc<Journal>,
    progress: Arc<Progress>,
    key: FileKey,
    settings: String,
    out: String,
    parts: Mutex<Vec<UploadedPart>>,
    audio: Mutex<f64>,
}

impl Events {
    /// Events of one file; `parts` are those already on the server.
    pub fn new(
        journal: Arc<Journal>,
        progress: Arc<Progress>,
        key: FileKey,
        settings: String,
        out: String,
        parts: Vec<UploadedPart>,
    ) -> Events {
        Events {
            inner: Arc::new(EventsInner {
                journal,
                progress,
                key,
                settings,
                out,
                parts: Mutex::new(parts),
                audio: Mutex::new(0.0),
            }),
        }
    }

    /// An async part is on the server: journaled (and synced) before returning.
    pub fn uploaded(&self, part: UploadedPart) -> anyhow::Result<()> {
        let parts = {
            let mut p = self
                .inner
                .parts
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            p.retain(|q| q.part != part.part);
            p.push(part);
            p.sort_by_key(|q| q.part);
            p.clone()
        };
        self.record(State::Uploaded { parts })
    }

    /// `delta` more seconds of this file's audio processed.
    pub fn audio(&self, delta: f64) {
        if let Ok(mut a) = self.inner.audio.lock() {
            *a += delta;
        }
        self.inner.progress.audio(delta);
    }

    /// Seconds reported through [`Events::audio`] so far.
    pub fn audio_reported(&self) -> f64 {
        self.inner.audio.lock().map(|a| *a).unwrap_or(0.0)
    }

    /// The async parts known to be on the server.
    pub fn parts(&self) -> Vec<UploadedPart> {
        self.inner
            .parts
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Appends a state for this file to the journal.
    pub fn record(&self, state: State) -> anyhow::Result<()> {
        let i = &self.inner;
        i.journal.append(Record {
            key: i.key.clone(),
            settings: i.settings.clone(),
            out: i.out.clone(),
            at: now(),
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asr_pipeline::{Error, ErrorKind};

    #[test]
    fn bad_inputs_are_not_retried_and_environment_errors_stop_the_batch() {
        let truncated = Error::new(ErrorKind::Truncated {
            path: None,
            decoded_frames: 10,
            sample_rate: 8000,
            what: "cut".into(),
        });
        let e = FileError::from_lib(&truncated);
        assert!(!e.retry && !e.parts_valid && !e.stops_batch());
        let deadline = Error::new(ErrorKind::PollDeadline {
            file_name: "asr_x".into(),
            waited_secs: 5,
        });
        let e = FileError::from_lib(&deadline);
        assert!(e.retry && e.parts_valid, "polling resumes on the next run");
        let failed = Error::new(ErrorKind::JobFailed {
            file_name: "asr_x".into(),
            status: "failed".into(),
        });
        let e = FileError::from_lib(&failed);
        assert!(e.retry && !e.parts_valid, "a failed job is uploaded again");
        let auth = Error::new(ErrorKind::Auth {
            endpoint: "POST /asr".into(),
            status: 401,
            body: String::new(),
        });
        assert!(FileError::from_lib(&auth).stops_batch());
        assert!(FileError::from_lib(&auth)
            .message
            .contains("credentials refused"));
    }
}
