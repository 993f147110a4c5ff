//! What turns one input into its outputs: the [`Engine`] the runner drives (the pipeline, or
//! split-only), the events it reports (async parts uploaded, audio processed) and its errors.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::journal::{now, FileKey, Journal, Record, State};
use super::outputs::{OutDir, OutName};
use super::walk::InputFile;
use super::{Event, Observer};
use crate::export::Format;
use crate::pipeline::{Job as PJob, Pipeline, Progress, UploadedPart};
use crate::transcript::Transcript;
use crate::{Error, ErrorKind, Result};

/// One file's work order.
pub struct Job<'a> {
    /// The input.
    pub input: &'a InputFile,
    /// Where its outputs go.
    pub name: &'a OutName,
    /// The output folder.
    pub out: &'a OutDir,
    /// Formats to write (JSON always among them).
    pub formats: &'a [Format],
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
    /// Outputs written, relative to the output folder.
    pub outputs: Vec<PathBuf>,
}

/// A failed file, as the batch sees it: the library's error and what it means for the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    /// The error, for people (names the file).
    pub message: String,
    /// [`Error::kind_name`], or `BadInput` for a file named like audio whose content is not.
    pub kind: String,
    /// True when a rerun should try again; false for a bad input.
    pub retry: bool,
    /// True when the async parts uploaded so far are still usable (e.g. polling gave up);
    /// false when the server failed them.
    pub parts_valid: bool,
    /// Every further file would fail the same way ([`Error::stops_batch`]).
    pub stops: bool,
    /// A later call may succeed ([`Error::is_transient`]).
    pub transient: bool,
    /// The shared work queue failed ([`ErrorKind::Queue`]), not the file.
    pub queue_lost: bool,
}

impl FileError {
    /// A bad input found by the walk: not retried until it changes (or `force`).
    pub fn bad_input(message: String) -> FileError {
        FileError {
            message,
            kind: "BadInput".into(),
            retry: false,
            parts_valid: false,
            stops: false,
            transient: false,
            queue_lost: false,
        }
    }

    /// A file of a shared batch that every worker it was handed to stopped on: tried again
    /// on a later run.
    pub fn gave_up(message: String) -> FileError {
        FileError {
            message,
            kind: "Abandoned".into(),
            retry: true,
            parts_valid: true,
            stops: false,
            transient: false,
            queue_lost: false,
        }
    }

    /// From the library's error: its own policy says whether the file is worth a later run
    /// and whether the batch stops.
    pub fn from_lib(e: &Error) -> FileError {
        use ErrorKind as K;
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
            queue_lost: matches!(e.kind(), K::Queue { .. }),
        }
    }
}

impl From<Error> for FileError {
    fn from(e: Error) -> FileError {
        FileError::from_lib(&e)
    }
}

/// Turns one input into its outputs.
pub trait Engine: Send + Sync {
    /// Processes `job`: writes its outputs (atomically, through `job.out`) and says which.
    /// Must not write `<base>.error.json`: the runner does on error.
    fn process(&self, job: Job<'_>) -> impl Future<Output = Result<Finished, FileError>> + Send;
}

/// Where a running file reports: async uploads go to the journal at once (so a kill after an
/// upload never uploads again), audio progress to the observer.
#[derive(Clone)]
pub struct Events {
    inner: Arc<EventsInner>,
}

struct EventsInner {
    journal: Arc<dyn Journal>,
    observer: Arc<dyn Observer>,
    key: FileKey,
    settings: String,
    out: String,
    parts: Mutex<Vec<UploadedPart>>,
    audio: Mutex<f64>,
    /// When this attempt started (s since the epoch).
    started_at: u64,
}

impl Events {
    /// Events of one file; `parts` are those already on the server.
    pub fn new(
        journal: Arc<dyn Journal>,
        observer: Arc<dyn Observer>,
        key: FileKey,
        settings: String,
        out: String,
        parts: Vec<UploadedPart>,
    ) -> Events {
        Events {
            inner: Arc::new(EventsInner {
                journal,
                observer,
                key,
                settings,
                out,
                parts: Mutex::new(parts),
                audio: Mutex::new(0.0),
                started_at: now(),
            }),
        }
    }

    /// An async part is on the server: journaled (and synced) before returning.
    pub fn uploaded(&self, part: UploadedPart) -> Result<()> {
        let parts = {
            let mut p = self
                .inner
                .parts
                .lock()
                .map_err(|_| Error::internal("the parts lock is poisoned"))?;
            // Parts are numbered per channel when channels are transcribed separately.
            p.retain(|q| (q.channel, q.part) != (part.channel, part.part));
            p.push(part);
            p.sort_by_key(|q| (q.channel, q.part));
            p.clone()
        };
        self.record(State::Uploaded { parts })
    }

    /// `delta` more seconds of this file's audio processed.
    pub fn audio(&self, delta: f64) {
        if let Ok(mut a) = self.inner.audio.lock() {
            *a += delta;
        }
        self.inner.observer.event(&Event::Audio { seconds: delta });
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

    /// True when the journal says another worker finished this very input with these
    /// settings since this attempt started (a shared batch whose lease on it had expired).
    pub fn done_elsewhere(&self) -> bool {
        let i = &self.inner;
        matches!(
            i.journal.try_latest(&i.key.path),
            Ok(Some(r)) if matches!(r.state, State::Done { .. })
                && r.key.same_input(&i.key)
                && r.settings == i.settings
                && r.at >= i.started_at
        )
    }

    /// Appends a state for this file to the journal.
    pub fn record(&self, state: State) -> Result<()> {
        let i = &self.inner;
        i.journal.append(&Record {
            key: i.key.clone(),
            settings: i.settings.clone(),
            out: i.out.clone(),
            at: now(),
            state,
        })
    }
}

/// Sends each file through a [`Pipeline`] and writes the transcript's formats.
pub struct PipelineEngine<'a> {
    /// The pipeline.
    pub pipeline: &'a Pipeline,
}

impl Engine for PipelineEngine<'_> {
    async fn process(&self, job: Job<'_>) -> Result<Finished, FileError> {
        if job.reexport {
            match saved_transcript(&job) {
                Ok(t) => return write_transcript(&job, &t),
                Err(e) => tracing::info!("{}: transcribing again ({e})", job.input.path.display()),
            }
        }
        let events = job.events.clone();
        let decoded = Mutex::new(0.0f64);
        let cb = move |p: &Progress| match p {
            Progress::Uploaded(part) => {
                // Journaled (and synced) before the pipeline goes on to poll: a kill from
                // here on resumes polling instead of uploading again.
                if let Err(e) = events.uploaded(part.clone()) {
                    tracing::error!("could not journal an upload: {e}");
                }
            }
            Progress::Decoded { seconds, pass: 1 } => {
                if let Ok(mut d) = decoded.lock() {
                    if *seconds > *d {
                        events.audio(*seconds - *d);
                        *d = *seconds;
                    }
                }
            }
            _ => {}
        };
        let pjob = PJob::path(job.input.path.clone())
            .progress(cb)
            .resume(job.resume.clone());
        let transcript = self
            .pipeline
            .transcribe(pjob)
            .await
            .map_err(|e| FileError::from_lib(&e.with_path(&job.input.path)))?;
        write_transcript(&job, &transcript)
    }
}

/// The transcript JSON written by an earlier run.
fn saved_transcript(job: &Job<'_>) -> Result<Transcript> {
    let path = job.out.path(&job.name.rel(".json"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(Some(&path), e))?;
    Transcript::from_json(&text).map_err(|e| e.with_path(&path))
}

/// Writes every requested format of `t` (each atomically; JSON first).
fn write_transcript(job: &Job<'_>, t: &Transcript) -> Result<Finished, FileError> {
    let mut outputs = Vec::new();
    for format in job.formats {
        let rel = job.name.rel(&format!(".{}", format.extension()));
        job.out.write_with(&rel, |w| format.write(t, w))?;
        outputs.push(rel);
    }
    Ok(Finished {
        audio_secs: crate::time::to_secs(t.metadata.duration),
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_not_retried_and_environment_errors_stop_the_batch() {
        let truncated = Error::new(ErrorKind::Truncated {
            path: None,
            decoded_frames: 10,
            sample_rate: 8000,
            what: "cut".into(),
        });
        let e = FileError::from_lib(&truncated);
        assert!(!e.retry && !e.parts_valid && !e.stops);
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
        assert!(FileError::from_lib(&auth).stops);
        assert!(FileError::from_lib(&auth)
            .message
            .contains("credentials refused"));
        let out = Error::output(std::path::Path::new("o/a.json"), "a symbolic link");
        let e = FileError::from_lib(&out);
        assert!(
            e.retry && !e.stops && !e.transient,
            "an output problem fails one file"
        );
    }
}
