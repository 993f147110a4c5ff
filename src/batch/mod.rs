//! Folders of recordings in, a tree of transcripts out: resumable, one failure never stopping
//! the rest.
//!
//! A [`Batch`] walks its inputs (files and folders, recursively, in a fixed order; symbolic
//! links followed with loops detected; audio recognised by its content, never by its name),
//! mirrors them under an output folder (`dir/a.wav` → `out/dir/a.json`, colliding names kept
//! apart as `a.wav.json` / `a.mp3.json`), and runs each file through a [`Pipeline`] (or, with
//! [`Batch::split_only`], through the segmenter alone), a few files at a time. Every output
//! is written atomically; nothing is written inside the input tree.
//!
//! Each change of a file's state is recorded in a [`Journal`] before the batch goes on: the
//! default [`FileJournal`] is `journal.jsonl` in the output folder. Run the same batch again
//! after a crash, a kill or Ctrl-C and it skips finished files, polls async uploads instead of
//! uploading again, and retries failures that may pass on a later run (not bad inputs, unless
//! they changed or [`BatchOptions::force`] is set). A file that fails gets
//! `<name>.error.json`; the batch goes on, unless every further file would fail the same way
//! ([`crate::Error::stops_batch`], or three files in a row with the API unreachable). The
//! result is a [`Summary`], also written as `summary.json`.
//!
//! ```no_run
//! use asr_pipeline::batch::{Batch, BatchOptions};
//! use asr_pipeline::botlhale::Client;
//! use asr_pipeline::pipeline::Pipeline;
//!
//! # async fn run() -> asr_pipeline::Result<()> {
//! let pipeline = Pipeline::builder().client(Client::builder().from_env()?.build()?).build()?;
//! let batch = Batch::open(&["recordings/".into()], "transcripts/".as_ref(), BatchOptions::default())?;
//! let summary = batch.transcribe(&pipeline, std::future::pending()).await?;
//! println!("{} done, {} failed", summary.counts.done, summary.counts.failed);
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::export::Format;
use crate::pipeline::Pipeline;
use crate::{Error, Result};

mod engine;
mod journal;
mod outputs;
mod queue;
mod run;
mod split;
mod summary;
#[cfg(test)]
mod testutil;
mod walk;

pub use journal::{FileJournal, FileKey, Journal, Record, State};
pub use queue::{JobCounts, Lease, WorkQueue};
pub use summary::{Counts, FileRow, SkipRow, Status, Summary};

use engine::PipelineEngine;
use journal::now;
use outputs::{OutDir, OutName, LOCK};
use run::{Decision, Outcome, Runner};
use walk::{InputKind, Walked};

/// The file naming the shared job that writes into an output folder.
const JOB_FILE: &str = ".asr-pipeline-job";

/// The `queue` argument of a batch run by one process alone.
const NO_QUEUE: Option<&queue::NoQueue> = None;

/// The name of the summary file at the top of the output folder.
pub const SUMMARY_FILE: &str = outputs::SUMMARY;
/// The name of [`FileJournal`]'s file at the top of the output folder.
pub const JOURNAL_FILE: &str = outputs::JOURNAL;

/// Options of a [`Batch`]; every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Files in progress at once (each also sends its own requests concurrently, see
    /// [`crate::pipeline::PipelineBuilder::concurrency`]). Default 2; at least 1.
    pub jobs: usize,
    /// Formats written for each input. JSON is always written (a later run re-exports other
    /// formats from it). Default: JSON only.
    pub formats: Vec<Format>,
    /// Ignore the journal and redo every file. Default false.
    pub force: bool,
    /// What answers the requests, as recorded in the journal: finished files are redone when
    /// it changes. Default: the pipeline's base URL. (The bulk CLI says `emulator` when it
    /// starts the bundled emulator, whose results are placeholders.)
    pub service: Option<String>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            jobs: 2,
            formats: vec![Format::Json],
            force: false,
            service: None,
        }
    }
}

/// What a batch produces per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Transcripts in the chosen formats.
    Transcribe,
    /// Segment audio files and a manifest (`<base>.segments/`).
    SplitOnly,
}

/// What a batch reports while it runs, to an [`Observer`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Work is about to start: `to_do` of `files` inputs will be processed (the others are
    /// finished, or failed earlier on a bad input); their audio lasts `audio_secs` when every
    /// header tells it.
    Planned {
        /// Inputs found.
        files: usize,
        /// Inputs to process now.
        to_do: usize,
        /// Paths left out (not audio, loops, duplicates, special files).
        skipped: usize,
        /// Their total duration, when known.
        audio_secs: Option<f64>,
    },
    /// A file started.
    FileStarted {
        /// The input.
        input: &'a Path,
    },
    /// More audio of a running file was processed.
    Audio {
        /// Seconds processed since the last report.
        seconds: f64,
    },
    /// A file ended.
    FileFinished {
        /// The input.
        input: &'a Path,
        /// True when its outputs are written.
        ok: bool,
        /// Its audio duration (0 when it failed).
        audio_secs: f64,
        /// The seconds reported for it through [`Event::Audio`].
        reported_secs: f64,
    },
    /// The whole job's state, about once a second, in a batch shared through a
    /// [`WorkQueue`].
    Job(JobCounts),
}

/// Receives a batch's [`Event`]s (progress bars, logs, metrics). Called from the batch's
/// tasks: keep it quick.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Send + Sync> Observer for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// A set of inputs and an output folder, ready to run; see the [module docs](self).
pub struct Batch {
    inputs: Vec<PathBuf>,
    walked: Walked,
    names: Vec<OutName>,
    out: OutDir,
    /// The state (`None` in a shared batch: the queue's).
    journal: Option<Arc<dyn Journal>>,
    observer: Arc<dyn Observer>,
    opts: BatchOptions,
    started_at: u64,
    clock: Instant,
    /// Held (locked) while the batch lives: one run per output folder (none when shared).
    _lock: Option<File>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("inputs", &self.inputs)
            .field("out", &self.out.root())
            .field("files", &self.walked.files.len())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Walks `inputs` (files and folders), creates `out` if needed (refused when it overlaps
    /// an input folder), takes its lock (one batch per output folder at a time: an
    /// [`crate::ErrorKind::InvalidConfig`] error otherwise) and opens its [`FileJournal`].
    pub fn open(inputs: &[PathBuf], out: &Path, opts: BatchOptions) -> Result<Batch> {
        Batch::prepare(inputs, out, opts, false)
    }

    /// Like [`Batch::open`], for one worker of a batch shared with others through a
    /// [`WorkQueue`]: run it with [`Batch::transcribe_queued`] or
    /// [`Batch::split_only_queued`]. The output folder is not locked (the workers share it)
    /// and the state is kept in the queue's journal. Inputs are keyed by their output name
    /// and content hash, so that workers that reach the input tree by other paths agree.
    pub fn open_shared(inputs: &[PathBuf], out: &Path, opts: BatchOptions) -> Result<Batch> {
        Batch::prepare(inputs, out, opts, true)
    }

    fn prepare(inputs: &[PathBuf], out: &Path, opts: BatchOptions, shared: bool) -> Result<Batch> {
        if opts.jobs == 0 {
            return Err(Error::config("batch jobs must be at least 1"));
        }
        let started_at = now();
        let clock = Instant::now();
        let walked = walk::walk(inputs).map_err(|e| Error::io(None, e))?;
        let canonical: Vec<PathBuf> = walked.files.iter().map(|f| f.canonical.clone()).collect();
        let out_dir = OutDir::open(out, inputs, &canonical)?;
        let (journal, lock): (Option<Arc<dyn Journal>>, _) = match shared {
            true => (None, None),
            false => {
                let lock_path = out_dir.root().join(LOCK);
                let lock = File::create(&lock_path).map_err(|e| Error::io(Some(&lock_path), e))?;
                if lock.try_lock().is_err() {
                    return Err(Error::config(format!(
                        "another batch is writing to {}; wait for it or choose another output folder",
                        out.display()
                    )));
                }
                let journal = FileJournal::open(&out_dir)?;
                if journal.ignored_lines() > 0 {
                    tracing::info!(
                        "journal: ignored {} unreadable line(s) left by an interrupted write",
                        journal.ignored_lines()
                    );
                }
                (Some(Arc::new(journal) as Arc<dyn Journal>), Some(lock))
            }
        };
        let names = outputs::plan(&walked.files);
        Ok(Batch {
            inputs: inputs.to_vec(),
            walked,
            names,
            out: out_dir,
            journal,
            observer: Arc::new(|_: &Event<'_>| {}),
            opts,
            started_at,
            clock,
            _lock: lock,
        })
    }

    /// Keeps state in `journal` instead of the output folder's [`FileJournal`].
    pub fn with_journal(mut self, journal: impl Journal + 'static) -> Batch {
        self.journal = Some(Arc::new(journal));
        self
    }

    /// Reports progress to `observer`.
    pub fn with_observer(mut self, observer: impl Observer + 'static) -> Batch {
        self.observer = Arc::new(observer);
        self
    }

    /// The output folder (canonical).
    pub fn out_dir(&self) -> &Path {
        self.out.root()
    }

    /// Transcribes every input that is not finished with `pipeline`, until done or until
    /// `cancel` completes (then the files in progress are abandoned and left for the next
    /// run), and writes `summary.json`. Per-file failures are in the summary, not errors:
    /// an `Err` means the summary could not be written.
    pub async fn transcribe(
        self,
        pipeline: &Pipeline,
        cancel: impl Future<Output = ()>,
    ) -> Result<Summary> {
        let engine = PipelineEngine { pipeline };
        self.run(Some(pipeline), &engine, NO_QUEUE, cancel).await
    }

    /// Like [`Batch::transcribe`], as one worker of a job shared through `queue` (opened with
    /// [`Batch::open_shared`]): offers the files it finds unfinished, then transcribes files
    /// taken from the queue, `jobs` at a time, until the whole job is drained (every file of
    /// every worker finished) or `cancel` completes. A file whose holder dies is taken over
    /// when its lease expires; its async uploads are polled, not made again. The summary
    /// covers this worker's inputs with the job's states. An `Err` means the summary could
    /// not be written; a queue that fails stops the run with [`Summary::stopped_by`] set.
    pub async fn transcribe_queued<Q: WorkQueue>(
        self,
        pipeline: &Pipeline,
        queue: &Q,
        cancel: impl Future<Output = ()>,
    ) -> Result<Summary> {
        let engine = PipelineEngine { pipeline };
        self.run(Some(pipeline), &engine, Some(queue), cancel).await
    }

    /// The name of this batch's job in a [`WorkQueue`]: derived from the output folder and
    /// the settings that shape the results (`pipeline`; `None` for split-only), so that
    /// workers of the same job agree on it and two different jobs never share one. Fails
    /// when the output folder already belongs to another shared job (its first worker
    /// wrote `.asr-pipeline-job` there): workers with other options or other credentials
    /// would otherwise overwrite each other's results.
    pub fn job_name(&self, pipeline: Option<&Pipeline>) -> Result<String> {
        let settings = self.settings(pipeline);
        let name = self.job_of(&settings);
        self.check_job(&name, &settings, false)?;
        Ok(name)
    }

    fn job_of(&self, settings: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(journal::path_text(self.out.root()).as_bytes());
        h.update(b"\n");
        h.update(settings.as_bytes());
        format!("asrp-{}", journal::hex(&h.finalize()[..8]))
    }

    /// Checks the output folder's job file against this job; with `claim`, writes it when
    /// there is none (exactly one worker does).
    fn check_job(&self, name: &str, settings: &str, claim: bool) -> Result<()> {
        let path = self.out.root().join(JOB_FILE);
        let mine = serde_json::json!({ "job": name, "settings": settings });
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && claim => {
                // Written whole under a temporary name, then linked into place: a link
                // never replaces a file, so the first worker's stays.
                let tmp = self
                    .out
                    .root()
                    .join(format!(".{JOB_FILE}.{:016x}.tmp", fastrand::u64(..)));
                let body = serde_json::to_vec_pretty(&mine)
                    .map_err(|e| Error::internal(format!("encoding the job file: {e}")))?;
                crate::atomic::write_atomic(&tmp, |w| {
                    w.write_all(&body).map_err(|e| Error::io(Some(&tmp), e))
                })?;
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read_to_string(&path).map_err(|e| Error::io(Some(&path), e))?
                    }
                    Err(e) => return Err(Error::io(Some(&path), e)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(Some(&path), e)),
        };
        let theirs: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if theirs["job"] == mine["job"] {
            return Ok(());
        }
        Err(Error::config(format!(
            "{} belongs to the shared job {} ({}), this command makes job {name} ({settings}): every worker of a job runs the same command, with the same options and the same credentials (or none); choose another output folder for another job",
            self.out.root().display(),
            theirs["job"].as_str().unwrap_or("?"),
            theirs["settings"].as_str().unwrap_or("?"),
        )))
    }

    /// The settings fingerprint the journal keeps (`None`: split-only).
    fn settings(&self, pipeline: Option<&Pipeline>) -> String {
        match pipeline {
            Some(pipeline) => {
                let service = self
                    .opts
                    .service
                    .clone()
                    .unwrap_or_else(|| pipeline.base_url().to_string());
                format!("transcribe api={service} {}", pipeline.settings_text())
            }
            None => split::SETTINGS.to_string(),
        }
    }

    /// Splits every input that is not finished into `<name>.segments/` (16 kHz mono WAV
    /// segments of at most 30 s and `manifest.json` with their times on the original
    /// timeline; see [`crate::pipeline::split_only`]) without calling any API, until done or
    /// until `cancel` completes, and writes `summary.json`.
    pub async fn split_only(self, cancel: impl Future<Output = ()>) -> Result<Summary> {
        self.run(None, &split::SplitEngine, NO_QUEUE, cancel).await
    }

    /// Like [`Batch::split_only`], as one worker of a job shared through `queue` (see
    /// [`Batch::transcribe_queued`]).
    pub async fn split_only_queued<Q: WorkQueue>(
        self,
        queue: &Q,
        cancel: impl Future<Output = ()>,
    ) -> Result<Summary> {
        self.run(None, &split::SplitEngine, Some(queue), cancel)
            .await
    }

    /// Runs the batch: transcribing with `pipeline`, or split-only without one.
    async fn run<E: engine::Engine, Q: WorkQueue>(
        self,
        pipeline: Option<&Pipeline>,
        engine: &E,
        queue: Option<&Q>,
        cancel: impl Future<Output = ()>,
    ) -> Result<Summary> {
        let mode = match pipeline {
            Some(_) => Mode::Transcribe,
            None => Mode::SplitOnly,
        };
        let settings = self.settings(pipeline);
        let endpoint = pipeline.map(|p| p.base_url().to_string());
        let formats = if mode == Mode::Transcribe {
            // JSON first, each format once.
            let mut f = vec![Format::Json];
            for &x in &self.opts.formats {
                if !f.contains(&x) {
                    f.push(x);
                }
            }
            f
        } else {
            Vec::new()
        };
        let journal = match (queue, &self.journal) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "a batch run with a work queue is opened with Batch::open_shared (its inputs are keyed by output name and content, the same on every worker)",
                ))
            }
            (Some(q), None) => {
                self.check_job(&self.job_of(&settings), &settings, true)?;
                q.journal()
            }
            (None, Some(j)) => j.clone(),
            (None, None) => {
                return Err(Error::config(
                    "a batch opened with Batch::open_shared runs with a work queue (transcribe_queued, split_only_queued)",
                ))
            }
        };
        let runner = Runner {
            files: &self.walked.files,
            names: &self.names,
            out: &self.out,
            journal,
            settings: settings.clone(),
            mode,
            formats,
            force: self.opts.force,
            observer: self.observer.clone(),
            shared: self._lock.is_none(),
        };
        let decisions = runner.decide()?;
        let to_do: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Decision::Run { .. }))
            .map(|(i, _)| i)
            .collect();
        let audio_secs: Option<f64> = to_do
            .iter()
            .map(|&i| match &self.walked.files[i].kind {
                InputKind::Audio { duration_secs, .. } => *duration_secs,
                InputKind::BadAudio { .. } => Some(0.0),
            })
            .sum();
        self.observer.event(&Event::Planned {
            files: self.walked.files.len(),
            to_do: to_do.len(),
            skipped: self.walked.skipped.len(),
            audio_secs,
        });
        let outcome = if let Some(queue) = queue {
            // Other workers may have work left even when this one has none of its own.
            runner
                .run_queued(queue, engine, self.opts.jobs, cancel)
                .await
        } else if to_do.is_empty() {
            Outcome {
                rows: decisions
                    .into_iter()
                    .filter_map(|d| match d {
                        Decision::Keep(row) => Some(row),
                        Decision::Run { .. } => None,
                    })
                    .collect(),
                ..Outcome::default()
            }
        } else {
            runner.run(decisions, engine, self.opts.jobs, cancel).await
        };
        let skipped: Vec<SkipRow> = self
            .walked
            .skipped
            .iter()
            .map(|s| SkipRow {
                path: s.path.to_string_lossy().into_owned(),
                reason: s.reason.code().into(),
                detail: s.reason.describe(),
            })
            .collect();
        let rows = outcome.rows;
        let sum = |done_only: bool, this_run: bool| {
            rows.iter()
                .filter(|r| !done_only || r.status == Status::Done)
                .filter(|r| !this_run || r.this_run)
                .filter_map(|r| r.audio_seconds)
                .sum::<f64>()
                + 0.0 // an empty f64 sum is -0.0
        };
        let summary = Summary {
            version: 1,
            mode: match mode {
                Mode::Transcribe => "transcribe".into(),
                Mode::SplitOnly => "split-only".into(),
            },
            emulator: self.opts.service.as_deref() == Some("emulator"),
            endpoint,
            settings,
            inputs: self
                .inputs
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            started_at: self.started_at,
            finished_at: now(),
            interrupted: outcome.interrupted,
            stopped_by: outcome.stopped,
            counts: summary::count(&rows, &skipped),
            audio_seconds: sum(true, false),
            audio_seconds_this_run: sum(false, true),
            wall_seconds: self.clock.elapsed().as_secs_f64(),
            files: rows,
            skipped,
        };
        let json = serde_json::to_vec_pretty(&summary)
            .map_err(|e| Error::internal(format!("encoding the summary: {e}")))?;
        self.out.write(SUMMARY_FILE.as_ref(), &json)?;
        Ok(summary)
    }
}
