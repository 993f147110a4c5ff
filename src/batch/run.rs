//! The batch: decide per file from the journal, run the files `jobs` at a time, record every
//! state change, and collect the summary rows. One file's failure never stops the batch.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, FuturesUnordered, StreamExt};
use serde::Serialize;

use super::engine::{Engine, Events, FileError, Finished, Job};
use super::journal::{now, FileKey, Journal, Plan, Record, State};
use super::outputs::{OutDir, OutName};
use super::queue::{Lease, WorkQueue};
use super::summary::{FileRow, Status};
use super::walk::{InputFile, InputKind};
use super::{Event, Mode, Observer};
use crate::export::Format;
use crate::pipeline::UploadedPart;
use crate::Result;

/// Suffix of a failed file's error report.
pub const ERROR_SUFFIX: &str = ".error.json";
/// Suffix of the split-only output folder.
pub const SEGMENTS_SUFFIX: &str = ".segments";

/// The batch's fixed parts.
pub struct Runner<'a> {
    /// Inputs in walk order.
    pub files: &'a [InputFile],
    /// Their output names, same order.
    pub names: &'a [OutName],
    /// The output folder.
    pub out: &'a OutDir,
    /// The journal.
    pub journal: Arc<dyn Journal>,
    /// The settings fingerprint (see the journal).
    pub settings: String,
    /// What is produced.
    pub mode: Mode,
    /// Formats to write in `Transcribe` mode (JSON among them).
    pub formats: Vec<Format>,
    /// Ignore the journal.
    pub force: bool,
    /// Where progress goes.
    pub observer: Arc<dyn Observer>,
    /// Shared by several workers through a work queue: inputs are keyed by output name and
    /// content hash instead of canonical path and time.
    pub shared: bool,
}

/// What to do with one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing: its row is final.
    Keep(FileRow),
    /// Process it, polling these async parts instead of uploading again.
    Run {
        /// Parts already on the server.
        resume: Vec<UploadedPart>,
        /// Finished before, but formats were added: write them from the saved transcript
        /// JSON instead of transcribing again (the engine falls back to transcribing).
        reexport: bool,
    },
}

impl Runner<'_> {
    /// The outputs a finished input must have.
    pub fn expected(&self, name: &OutName) -> Vec<PathBuf> {
        match self.mode {
            Mode::Transcribe => self
                .formats
                .iter()
                .map(|f| name.rel(&format!(".{}", f.extension())))
                .collect(),
            Mode::SplitOnly => vec![name.rel(SEGMENTS_SUFFIX)],
        }
    }

    /// Every output an input may have, in either mode (removed when it fails).
    fn all_outputs(name: &OutName) -> Vec<PathBuf> {
        Format::ALL
            .iter()
            .map(|f| name.rel(&format!(".{}", f.extension())))
            .chain([name.rel(SEGMENTS_SUFFIX)])
            .collect()
    }

    /// Decides every input from the journal (no work done).
    pub fn decide(&self) -> Result<Vec<Decision>> {
        let keys: Vec<FileKey> = self
            .files
            .iter()
            .zip(self.names)
            .map(|(f, n)| self.key(f, n, None))
            .collect();
        let paths: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        let latest = self.journal.latest_many(&paths)?;
        Ok(self
            .files
            .iter()
            .zip(self.names)
            .zip(keys.iter().zip(latest))
            .map(|((f, n), (key, latest))| self.decide_one(f, n, key, latest))
            .collect())
    }

    /// The journal key of an input (`content`: its hash, in a shared batch, once known).
    fn key(&self, f: &InputFile, n: &OutName, content: Option<String>) -> FileKey {
        if self.shared {
            FileKey::shared(n.display(), f, content)
        } else {
            FileKey::of(f)
        }
    }

    fn decide_one(
        &self,
        f: &InputFile,
        n: &OutName,
        key: &FileKey,
        latest: Option<Record>,
    ) -> Decision {
        if self.force {
            return Decision::Run {
                resume: Vec::new(),
                reexport: false,
            };
        }
        let expected: Vec<String> = self
            .expected(n)
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let missing_formats = std::cell::Cell::new(false);
        let plan = Plan::of(latest.as_ref(), key, &self.settings, &n.display(), |outs| {
            missing_formats.set(!expected.iter().all(|e| outs.contains(e)));
            outs.iter().all(|o| self.out.exists(o.as_ref()))
        });
        match plan {
            Plan::Finished { .. } if missing_formats.get() => Decision::Run {
                resume: Vec::new(),
                reexport: self.mode == Mode::Transcribe,
            },
            Plan::Finished { audio_secs } => Decision::Keep(FileRow {
                input: f.path.to_string_lossy().into_owned(),
                output: n.display(),
                status: Status::Done,
                this_run: false,
                audio_seconds: Some(audio_secs),
                outputs: expected,
                error: None,
            }),
            Plan::FailedBefore { error } => Decision::Keep(FileRow {
                input: f.path.to_string_lossy().into_owned(),
                output: n.display(),
                status: Status::Failed,
                this_run: false,
                audio_seconds: None,
                outputs: vec![n.rel(ERROR_SUFFIX).to_string_lossy().into_owned()],
                error: Some(error),
            }),
            Plan::Todo { resume } => Decision::Run {
                resume,
                reexport: false,
            },
        }
    }

    /// Runs the `Run` decisions, `jobs` files at a time, until done or until `cancel`
    /// completes. Returns a row per input (pending ones for an interrupted run) and whether
    /// it was interrupted.
    pub async fn run<E: Engine>(
        &self,
        decisions: Vec<Decision>,
        engine: &E,
        jobs: usize,
        cancel: impl Future<Output = ()>,
    ) -> Outcome {
        let mut rows: Vec<FileRow> = Vec::with_capacity(self.files.len());
        let mut todo = Vec::new();
        for (i, d) in decisions.into_iter().enumerate() {
            let (f, n) = (&self.files[i], &self.names[i]);
            match d {
                Decision::Keep(row) => rows.push(row),
                Decision::Run { resume, reexport } => {
                    rows.push(FileRow {
                        input: f.path.to_string_lossy().into_owned(),
                        output: n.display(),
                        status: Status::Pending,
                        this_run: false,
                        audio_seconds: None,
                        outputs: vec![],
                        error: None,
                    });
                    todo.push((i, resume, reexport));
                }
            }
        }
        let work = stream::iter(todo)
            .map(|(i, resume, reexport)| async move {
                let key = self.key(&self.files[i], &self.names[i], None);
                (i, self.one(i, key, resume, reexport, engine).await)
            })
            .buffer_unordered(jobs.max(1));
        tokio::pin!(work);
        tokio::pin!(cancel);
        let mut interrupted = false;
        let mut stopped = None;
        let mut unreachable = 0;
        loop {
            tokio::select! {
                biased;
                () = &mut cancel => { interrupted = true; break; }
                next = work.next() => match next {
                    Some((i, (row, end))) => {
                        rows[i] = row;
                        unreachable = match end {
                            End::Ok | End::Failed => 0,
                            End::Unreachable => unreachable + 1,
                            End::Stop | End::QueueLost => UNREACHABLE_STOP,
                        };
                        if unreachable >= UNREACHABLE_STOP {
                            stopped = rows[i].error.clone();
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        Outcome {
            rows,
            interrupted,
            stopped,
        }
    }

    async fn one<E: Engine>(
        &self,
        i: usize,
        key: FileKey,
        resume: Vec<UploadedPart>,
        reexport: bool,
        engine: &E,
    ) -> (FileRow, End) {
        let (f, n) = (&self.files[i], &self.names[i]);
        let display = f.path.to_string_lossy().into_owned();
        let events = self.events(i, key, resume.clone());
        self.observer.event(&Event::FileStarted { input: &f.path });
        let started = if resume.is_empty() {
            events.record(State::Planned)
        } else {
            events.record(State::Uploaded {
                parts: resume.clone(),
            })
        };
        let result = match (&f.kind, started) {
            (_, Err(e)) => Err(FileError::from_lib(&e)),
            (InputKind::BadAudio { reason }, _) => {
                Err(FileError::bad_input(format!("{display}: {reason}")))
            }
            (InputKind::Audio { .. }, Ok(())) => {
                let job = Job {
                    input: f,
                    name: n,
                    out: self.out,
                    formats: &self.formats,
                    resume,
                    reexport,
                    events: events.clone(),
                };
                engine.process(job).await
            }
        };
        let result = result.and_then(|fin| self.finish(n, &events, fin));
        self.conclude(i, &events, result)
    }

    /// Where input `i`'s work reports (`resume`: its async parts already on the server).
    fn events(&self, i: usize, key: FileKey, resume: Vec<UploadedPart>) -> Events {
        Events::new(
            self.journal.clone(),
            self.observer.clone(),
            key,
            self.settings.clone(),
            self.names[i].display(),
            resume,
        )
    }

    /// The row of a file whose work ended with `result`; a failure is reported and journaled.
    fn conclude(
        &self,
        i: usize,
        events: &Events,
        result: Result<Finished, FileError>,
    ) -> (FileRow, End) {
        let (f, n) = (&self.files[i], &self.names[i]);
        let display = f.path.to_string_lossy().into_owned();
        let finished = |ok: bool, audio_secs: f64| {
            self.observer.event(&Event::FileFinished {
                input: &f.path,
                ok,
                audio_secs,
                reported_secs: events.audio_reported(),
            })
        };
        let row = |status, this_run, audio_seconds, outputs, error| FileRow {
            input: display.clone(),
            output: n.display(),
            status,
            this_run,
            audio_seconds,
            outputs,
            error,
        };
        match result {
            Ok(fin) => {
                finished(true, fin.audio_secs);
                let outputs = rel_strings(&fin.outputs);
                (
                    row(Status::Done, true, Some(fin.audio_secs), outputs, None),
                    End::Ok,
                )
            }
            // The shared queue is gone, not this file: nothing is reported against it; the
            // job's next run does it.
            Err(e) if e.queue_lost => {
                finished(false, 0.0);
                (
                    row(Status::Pending, false, None, vec![], Some(e.message)),
                    End::QueueLost,
                )
            }
            // In a shared batch, another worker (this one's lease had expired) finished the
            // file meanwhile: its result stands.
            Err(e) if self.shared && events.done_elsewhere() => {
                tracing::info!(
                    "{}: finished by another worker meanwhile (this attempt: {})",
                    f.path.display(),
                    e.message
                );
                finished(true, 0.0);
                (row(Status::Done, false, None, vec![], None), End::Ok)
            }
            Err(e) => {
                let (outputs, journaled) = self.fail(f, n, events, &e);
                finished(false, 0.0);
                if let Err(j) = journaled {
                    if matches!(j.kind(), crate::ErrorKind::Queue { .. }) {
                        return (
                            row(Status::Pending, false, None, vec![], Some(j.to_string())),
                            End::QueueLost,
                        );
                    }
                }
                let end = if e.stops {
                    End::Stop
                } else if e.transient {
                    End::Unreachable
                } else {
                    End::Failed
                };
                (
                    row(Status::Failed, true, None, outputs, Some(e.message)),
                    end,
                )
            }
        }
    }

    /// Runs the batch as one worker of a job shared through `queue`: offers the files this
    /// worker finds unfinished, then takes files (`jobs` at a time) until the job is drained
    /// or `cancel` completes. Rows are per local input, from the shared journal at the end.
    pub async fn run_queued<E: Engine, Q: WorkQueue>(
        &self,
        queue: &Q,
        engine: &E,
        jobs: usize,
        cancel: impl Future<Output = ()>,
    ) -> Outcome {
        tokio::pin!(cancel);
        let jobs = jobs.max(1);
        let index: HashMap<String, usize> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.display(), i))
            .collect();
        let mut mine: HashMap<usize, FileRow> = HashMap::new();
        let mut interrupted = false;
        let mut stopped = None;
        // The queue failed: the journal cannot be read either.
        let mut queue_lost = false;
        // Offered on a cheap check (name, size, settings, outputs present); the worker that
        // takes a file reads its content hash and decides again.
        let initial = match self.decide() {
            Ok(d) => d,
            Err(e) => {
                stopped = Some(e.to_string());
                queue_lost = true;
                Vec::new()
            }
        };
        let offers: Vec<String> = initial
            .iter()
            .zip(self.names)
            .filter(|(d, _)| matches!(d, Decision::Run { .. }))
            .map(|(_, n)| n.display())
            .collect();
        if !queue_lost {
            tokio::select! {
                biased;
                () = &mut cancel => interrupted = true,
                offered = queue.offer(&offers) => if let Err(e) = offered {
                    stopped = Some(e.to_string());
                    queue_lost = true;
                },
            }
        }
        type Taking<'q, L> = Pin<Box<dyn Future<Output = Result<Option<L>>> + Send + 'q>>;
        let mut taking: Option<Taking<'_, Q::Lease>> = None;
        if stopped.is_none() && !interrupted {
            taking = Some(Box::pin(queue.take()));
        }
        let mut drained = stopped.is_some() || interrupted;
        let mut work = FuturesUnordered::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut unreachable = 0;
        while !(interrupted || drained && work.is_empty()) {
            tokio::select! {
                biased;
                () = &mut cancel => { interrupted = true; break; }
                taken = async { taking.as_mut().expect("guarded").await }, if taking.is_some() => {
                    taking = None;
                    match taken {
                        Ok(Some(lease)) => work.push(self.leased(lease, &index, queue, engine)),
                        Ok(None) => drained = true,
                        Err(e) => { stopped = Some(e.to_string()); queue_lost = true; break; }
                    }
                }
                Some(leased) = work.next(), if !work.is_empty() => match leased {
                    Leased::Row(i, row, end) => {
                        unreachable = match end {
                            End::Ok | End::Failed => 0,
                            End::Unreachable => unreachable + 1,
                            End::Stop => UNREACHABLE_STOP,
                            End::QueueLost => {
                                queue_lost = true;
                                UNREACHABLE_STOP
                            }
                        };
                        let error = row.error.clone();
                        mine.insert(i, row);
                        if unreachable >= UNREACHABLE_STOP {
                            stopped = error;
                            break;
                        }
                    }
                    Leased::Abandoned => {}
                    Leased::Queue(e) => { stopped = Some(e); queue_lost = true; break; }
                },
                _ = ticker.tick() => {
                    // Progress only: never held up long by a slow queue.
                    if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), queue.counts()).await {
                        self.observer.event(&Event::Job(c));
                    }
                }
            }
            if !drained && taking.is_none() && work.len() < jobs {
                taking = Some(Box::pin(queue.take()));
            }
        }
        if interrupted && !queue_lost {
            // The files in progress are abandoned: their leases stop with them, and the queue
            // hands them to other workers now rather than after a lease.
            drop(work);
            taking = None;
            let handed = tokio::time::timeout(Duration::from_secs(5), queue.abandon()).await;
            if !matches!(handed, Ok(Ok(()))) {
                tracing::warn!(
                    "could not hand back the files in progress: they come back after a lease"
                );
            }
        }
        drop(taking);
        if !queue_lost && !interrupted {
            if let Ok(c) = queue.counts().await {
                self.observer.event(&Event::Job(c));
            }
        }
        // Every input's row: this worker's own, else what the shared journal says now (when
        // the queue is gone or the run was interrupted: what it said at the start).
        let fresh = if queue_lost || interrupted {
            None
        } else {
            self.decide().ok()
        };
        let decisions = match fresh {
            Some(d) => d,
            None if initial.len() == self.files.len() => initial,
            None => vec![
                Decision::Run {
                    resume: Vec::new(),
                    reexport: false
                };
                self.files.len()
            ],
        };
        let rows = decisions
            .into_iter()
            .enumerate()
            .map(|(i, d)| match (mine.remove(&i), d) {
                (Some(row), _) => row,
                (None, Decision::Keep(row)) => row,
                (None, Decision::Run { .. }) => FileRow {
                    input: self.files[i].path.to_string_lossy().into_owned(),
                    output: self.names[i].display(),
                    status: Status::Pending,
                    this_run: false,
                    audio_seconds: None,
                    outputs: vec![],
                    error: None,
                },
            })
            .collect();
        Outcome {
            rows,
            interrupted,
            stopped,
        }
    }

    /// One file taken from the queue: hashed, decided again from the journal, processed
    /// while the lease holds, then finished on the queue.
    async fn leased<E: Engine, Q: WorkQueue>(
        &self,
        lease: Q::Lease,
        index: &HashMap<String, usize>,
        queue: &Q,
        engine: &E,
    ) -> Leased {
        let name = lease.name().to_string();
        let deliveries = lease.deliveries();
        let Some(&i) = index.get(&name) else {
            // Offered by a worker that sees other inputs (a tree that grew, a copy not yet in
            // sync): handed back for a worker that has it, unless no worker managed it.
            if deliveries <= MAX_DELIVERIES {
                tracing::warn!(
                    "{name}: not among this worker's inputs (every worker of a job needs the same input tree); handed back"
                );
                return match queue.release(lease).await {
                    Ok(()) => Leased::Abandoned,
                    Err(e) => Leased::Queue(e.to_string()),
                };
            }
            let record = Record {
                key: FileKey {
                    path: name.clone(),
                    size: 0,
                    mtime_ns: 0,
                    content: None,
                },
                settings: self.settings.clone(),
                out: name.clone(),
                at: now(),
                state: State::Failed {
                    error: format!(
                        "{name}: handed to {deliveries} workers, none of which had it among its inputs"
                    ),
                    retry: true,
                    parts: Vec::new(),
                },
            };
            if let Err(e) = self.journal.append(&record) {
                return Leased::Queue(e.to_string());
            }
            return match queue.finish(lease).await {
                Ok(()) => Leased::Abandoned,
                Err(e) => Leased::Queue(e.to_string()),
            };
        };
        let (f, n) = (&self.files[i], &self.names[i]);
        let content = hash_file(&f.path).await;
        let key = self.key(f, n, content);
        let latest = match self.journal.try_latest(&key.path) {
            Ok(l) => l,
            Err(e) => return Leased::Queue(e.to_string()),
        };
        let decided = self.decide_one(f, n, &key, latest);
        let (row, end) = match decided {
            // Finished by another worker meanwhile.
            Decision::Keep(row) => (row, End::Ok),
            // Every earlier holder died on it (a file that crashes or exhausts its worker):
            // failed for this run instead of taking every worker down in turn.
            Decision::Run { resume, .. } if deliveries > MAX_DELIVERIES => {
                let events = self.events(i, key, resume);
                let e = FileError::gave_up(format!(
                    "{}: handed to {deliveries} workers, each of which stopped (died or was cut off) before finishing it; left for a later run",
                    f.path.display()
                ));
                self.conclude(i, &events, Err(e))
            }
            Decision::Run { resume, reexport } => {
                let work = self.one(i, key, resume, reexport, engine);
                tokio::select! {
                    r = work => r,
                    revoked = lease.revoked() => return match revoked {
                        Ok(()) => {
                            tracing::info!("{}: taken over by another worker", f.path.display());
                            Leased::Abandoned
                        }
                        Err(e) => Leased::Queue(e.to_string()),
                    },
                }
            }
        };
        if end == End::QueueLost {
            // Its outcome is not journaled: it stays on the queue.
            return Leased::Queue(row.error.unwrap_or_default());
        }
        match queue.finish(lease).await {
            Ok(()) => Leased::Row(i, row, end),
            Err(e) => Leased::Queue(e.to_string()),
        }
    }

    /// A file's outputs are written: drop a stale error report, then journal it done.
    fn finish(&self, n: &OutName, events: &Events, fin: Finished) -> Result<Finished, FileError> {
        self.out.remove(&n.rel(ERROR_SUFFIX))?;
        events.record(State::Done {
            audio_secs: fin.audio_secs,
            outputs: rel_strings(&fin.outputs),
        })?;
        Ok(fin)
    }

    /// A file failed: remove any transcript of it (never leave one that is not this run's
    /// whole result), write `<base>.error.json`, journal it failed. Returns the report written
    /// and whether the failure was journaled.
    fn fail(
        &self,
        f: &InputFile,
        n: &OutName,
        events: &Events,
        e: &FileError,
    ) -> (Vec<String>, Result<()>) {
        for p in Self::all_outputs(n) {
            if let Err(err) = self.out.remove(&p) {
                tracing::warn!("could not remove the stale output {}: {err}", p.display());
            }
        }
        let report = ErrorReport {
            input: f.path.to_string_lossy().into_owned(),
            error: e.message.clone(),
            kind: e.kind.clone(),
            retry_on_rerun: e.retry,
        };
        let rel = n.rel(ERROR_SUFFIX);
        let mut written = Vec::new();
        match serde_json::to_vec_pretty(&report) {
            Ok(bytes) => match self.out.write(&rel, &bytes) {
                Ok(()) => written.push(rel.to_string_lossy().into_owned()),
                Err(err) => tracing::error!("could not write {}: {err}", rel.display()),
            },
            Err(err) => tracing::error!("could not encode the error report: {err}"),
        }
        let parts = if e.parts_valid {
            events.parts()
        } else {
            Vec::new()
        };
        let journaled = events.record(State::Failed {
            error: e.message.clone(),
            retry: e.retry,
            parts,
        });
        if let Err(err) = &journaled {
            tracing::error!(
                "could not journal the failure of {}: {err}",
                f.path.display()
            );
        }
        (written, journaled)
    }
}

/// Files failing in a row with transient errors (network failures, 5xx, after the client's
/// retries) before the batch stops: the API is unreachable or down, and every further file
/// would only wait for its retries.
const UNREACHABLE_STOP: usize = 3;

/// Times a file of a shared batch is handed to a worker before it is failed for the run (its
/// earlier holders all died on it, or none had it).
const MAX_DELIVERIES: u64 = 5;

/// How one file ended, for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Finished.
    Ok,
    /// Failed on its own account.
    Failed,
    /// Failed on the network or with the service down (transient, after retries).
    Unreachable,
    /// Failed in a way every further file would (credentials, quota, cancelled).
    Stop,
    /// The shared work queue failed (not the file's fault): the batch stops.
    QueueLost,
}

/// How a file taken from a work queue ended.
enum Leased {
    /// Finished (outcome journaled, lease finished): its input's index and row.
    Row(usize, FileRow, End),
    /// Taken over by another worker, or not this worker's input.
    Abandoned,
    /// The queue failed: the batch stops (the error).
    Queue(String),
}

/// The SHA-256 of a file's content in hex, read off the async threads; `None` when it cannot
/// be read (the engine then reports why).
async fn hash_file(path: &Path) -> Option<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let mut f = std::fs::File::open(&path).ok()?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => h.update(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(super::journal::hex(&h.finalize()))
    })
    .await
    .ok()
    .flatten()
}

/// How a batch run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A row per input, in walk order (pending for files not finished).
    pub rows: Vec<FileRow>,
    /// Ctrl-C stopped it.
    pub interrupted: bool,
    /// An error that every further file would hit too (credentials refused, quota used up,
    /// the API unreachable for several files in a row) stopped it: the error.
    pub stopped: Option<String>,
}

/// The content of `<base>.error.json`.
#[derive(Debug, Serialize)]
struct ErrorReport {
    input: String,
    error: String,
    kind: String,
    retry_on_rerun: bool,
}

fn rel_strings(p: &[PathBuf]) -> Vec<String> {
    p.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::journal::FileJournal;
    use crate::batch::outputs::plan;
    use crate::batch::walk::walk;
    use std::collections::HashMap;
    use std::fs;
    use std::sync::Mutex;

    fn part(size: u64) -> UploadedPart {
        UploadedPart {
            part: 0,
            parts_total: 1,
            file_name: format!("asr_{size}"),
            offset: 0,
            end: size,
            time_map: None,
            lead_in: 0,
            file_len: size,
            channel: None,
            channels: Vec::new(),
            file_channels: 1,
        }
    }

    /// Writes `<base>.json` with the input's size; fails on names containing "bad"; on names
    /// containing "async" reports an upload, and records the resume parts it was given.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        resumed: Mutex<HashMap<String, Vec<UploadedPart>>>,
        hang_on: Option<&'static str>,
        /// Every file fails with refused credentials.
        auth_refused: bool,
        /// Every file fails with a network error.
        unreachable: bool,
    }

    impl Engine for Fake {
        async fn process(&self, job: Job<'_>) -> Result<Finished, FileError> {
            let name = job.input.rel.to_string_lossy().into_owned();
            self.calls.lock().unwrap().push(name.clone());
            self.resumed
                .lock()
                .unwrap()
                .insert(name.clone(), job.resume.clone());
            if name.contains("async") && job.resume.is_empty() {
                job.events.uploaded(part(job.input.size))?;
            }
            if self.auth_refused {
                return Err(FileError::from_lib(&crate::Error::new(
                    crate::ErrorKind::Auth {
                        endpoint: "POST /asr".into(),
                        status: 401,
                        body: String::new(),
                    },
                )));
            }
            if self.unreachable {
                return Err(FileError::from_lib(&crate::Error::new(
                    crate::ErrorKind::Transport {
                        endpoint: "POST /asr".into(),
                        attempts: 5,
                        message: "network failure".into(),
                    },
                )));
            }
            if self.hang_on.is_some_and(|h| name.contains(h)) {
                std::future::pending::<()>().await;
            }
            if name.contains("bad") {
                return Err(FileError::from_lib(&crate::Error::new(
                    crate::ErrorKind::Api {
                        endpoint: format!("POST /asr ({name})"),
                        status: 400,
                        body: "broke".into(),
                        attempts: 5,
                    },
                )));
            }
            let mut outputs = Vec::new();
            for f in job.formats {
                let rel = job.name.rel(&format!(".{}", f.extension()));
                job.out
                    .write(&rel, format!("{}", job.input.size).as_bytes())?;
                outputs.push(rel);
            }
            job.events.audio(1.0);
            Ok(Finished {
                audio_secs: 1.0,
                outputs,
            })
        }
    }

    use crate::batch::testutil::wav;

    struct Setup {
        _dir: tempfile::TempDir,
        input: PathBuf,
        out_path: PathBuf,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        fs::create_dir_all(input.join("sub")).unwrap();
        wav(&input.join("a.wav"), 100);
        wav(&input.join("a.mp3"), 200); // WAV content, mp3 name: still a.wav/a.mp3 collision
        wav(&input.join("sub/bad one.wav"), 300);
        wav(&input.join("sub/async é.wav"), 400);
        fs::write(input.join("sub/corrupt.wav"), b"RIFX not really").unwrap();
        fs::write(input.join("notes.txt"), b"text").unwrap();
        let out_path = dir.path().join("out");
        Setup {
            _dir: dir,
            input,
            out_path,
        }
    }

    async fn run_batch(
        s: &Setup,
        fake: &Fake,
        force: bool,
        cancel: impl Future<Output = ()>,
    ) -> (Vec<FileRow>, bool, Vec<Decision>) {
        let formats = vec![Format::Json, Format::Text];
        run_batch_with(s, fake, force, formats, cancel).await
    }

    async fn run_batch_with(
        s: &Setup,
        fake: &Fake,
        force: bool,
        formats: Vec<Format>,
        cancel: impl Future<Output = ()>,
    ) -> (Vec<FileRow>, bool, Vec<Decision>) {
        let walked = walk(std::slice::from_ref(&s.input)).unwrap();
        let names = plan(&walked.files);
        let out = OutDir::open(&s.out_path, std::slice::from_ref(&s.input), &[]).unwrap();
        let journal = Arc::new(FileJournal::open(&out).unwrap());
        let batch = Runner {
            files: &walked.files,
            names: &names,
            out: &out,
            journal,
            settings: "test".into(),
            mode: Mode::Transcribe,
            formats,
            force,
            observer: Arc::new(|_: &Event<'_>| {}),
            shared: false,
        };
        let decisions = batch.decide().unwrap();
        let o = batch.run(decisions.clone(), fake, 2, cancel).await;
        (o.rows, o.interrupted, decisions)
    }

    fn statuses(rows: &[FileRow]) -> Vec<(String, Status)> {
        rows.iter().map(|r| (r.output.clone(), r.status)).collect()
    }

    #[tokio::test]
    async fn failures_do_not_stop_the_batch_and_reruns_do_no_work() {
        let s = setup();
        let fake = Fake::default();
        let (rows, interrupted, _) = run_batch(&s, &fake, false, std::future::pending()).await;
        assert!(!interrupted);
        assert_eq!(
            statuses(&rows),
            vec![
                ("a.mp3".into(), Status::Done),
                ("a.wav".into(), Status::Done),
                ("sub/async é".into(), Status::Done),
                ("sub/bad one".into(), Status::Failed),
                ("sub/corrupt".into(), Status::Failed),
            ]
        );
        let o = &s.out_path;
        let size = |p: &str| fs::metadata(s.input.join(p)).unwrap().len().to_string();
        assert_eq!(
            fs::read_to_string(o.join("a.wav.json")).unwrap(),
            size("a.wav")
        );
        assert_eq!(
            fs::read_to_string(o.join("a.mp3.txt")).unwrap(),
            size("a.mp3")
        );
        assert!(!o.join("sub/bad one.json").exists());
        let err: serde_json::Value =
            serde_json::from_slice(&fs::read(o.join("sub/bad one.error.json")).unwrap()).unwrap();
        assert_eq!(err["kind"], "Api");
        assert!(err["error"].as_str().unwrap().contains("broke"));
        let err: serde_json::Value =
            serde_json::from_slice(&fs::read(o.join("sub/corrupt.error.json")).unwrap()).unwrap();
        assert_eq!(err["retry_on_rerun"], false);
        // The corrupt file never reached the engine.
        assert_eq!(fake.calls.lock().unwrap().len(), 4);

        // Rerun: finished files and the bad input are left alone; the retryable failure is
        // tried again.
        let fake2 = Fake::default();
        let (rows2, _, decisions) = run_batch(&s, &fake2, false, std::future::pending()).await;
        assert_eq!(statuses(&rows2), statuses(&rows));
        assert_eq!(
            *fake2.calls.lock().unwrap(),
            vec!["sub/bad one.wav".to_string()]
        );
        assert!(matches!(
            decisions[0],
            Decision::Keep(FileRow {
                this_run: false,
                ..
            })
        ));
        // Another format asked for: finished files are re-exported, not redone from scratch.
        let fake_fmt = Fake::default();
        let (_, _, decisions) = run_batch_with(
            &s,
            &fake_fmt,
            false,
            vec![Format::Json, Format::Text, Format::Srt],
            std::future::pending(),
        )
        .await;
        assert!(decisions
            .iter()
            .take(3)
            .all(|d| matches!(d, Decision::Run { reexport: true, .. })));
        assert!(o.join("a.wav.srt").exists());
        // A lost output is redone; a changed input too.
        fs::remove_file(o.join("a.wav.txt")).unwrap();
        wav(&s.input.join("a.mp3"), 250);
        let fake3 = Fake::default();
        run_batch(&s, &fake3, false, std::future::pending()).await;
        let mut calls = fake3.calls.lock().unwrap().clone();
        calls.sort();
        assert_eq!(calls, vec!["a.mp3", "a.wav", "sub/bad one.wav"]);
        // --force redoes everything that is audio.
        let fake4 = Fake::default();
        run_batch(&s, &fake4, true, std::future::pending()).await;
        assert_eq!(fake4.calls.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn refused_credentials_stop_the_batch() {
        stops_after(
            Fake {
                auth_refused: true,
                ..Fake::default()
            },
            1,
            "credentials refused",
        )
        .await;
    }

    #[tokio::test]
    async fn an_unreachable_api_stops_the_batch_after_three_files() {
        stops_after(
            Fake {
                unreachable: true,
                ..Fake::default()
            },
            3,
            "network failure",
        )
        .await;
    }

    async fn stops_after(fake: Fake, tried: usize, error: &str) {
        let s = setup();
        let walked = walk(std::slice::from_ref(&s.input)).unwrap();
        let names = plan(&walked.files);
        let out = OutDir::open(&s.out_path, std::slice::from_ref(&s.input), &[]).unwrap();
        let batch = Runner {
            files: &walked.files,
            names: &names,
            out: &out,
            journal: Arc::new(FileJournal::open(&out).unwrap()),
            settings: "test".into(),
            mode: Mode::Transcribe,
            formats: vec![Format::Json],
            force: false,
            observer: Arc::new(|_: &Event<'_>| {}),
            shared: false,
        };
        let o = batch
            .run(batch.decide().unwrap(), &fake, 1, std::future::pending())
            .await;
        assert!(o.stopped.is_some_and(|e| e.contains(error)));
        assert!(!o.interrupted);
        assert_eq!(fake.calls.lock().unwrap().len(), tried, "then stop");
        assert!(o.rows[..tried].iter().all(|r| r.status == Status::Failed));
        assert!(o.rows[tried..].iter().all(|r| r.status == Status::Pending));
    }

    #[tokio::test]
    async fn an_interrupted_upload_is_resumed_not_redone() {
        let s = setup();
        let fake = Fake {
            hang_on: Some("async"),
            ..Fake::default()
        };
        // Cancel once the async file's upload is journaled.
        let journal_path = s.out_path.join(crate::batch::outputs::JOURNAL);
        let cancel = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let j = fs::read_to_string(&journal_path).unwrap_or_default();
                if j.contains("\"uploaded\"") && j.matches("\"done\"").count() >= 2 {
                    break;
                }
            }
        };
        let (rows, interrupted, _) = run_batch(&s, &fake, false, cancel).await;
        assert!(interrupted);
        assert_eq!(rows[2].status, Status::Pending);
        assert!(!s.out_path.join("sub/async é.json").exists());

        let fake2 = Fake::default();
        let (rows2, interrupted, _) = run_batch(&s, &fake2, false, std::future::pending()).await;
        assert!(!interrupted);
        assert_eq!(rows2[2].status, Status::Done);
        let resumed = fake2.resumed.lock().unwrap();
        assert_eq!(
            resumed["sub/async é.wav"],
            vec![part(
                fs::metadata(s.input.join("sub/async é.wav")).unwrap().len()
            )]
        );
        assert!(
            !resumed.contains_key("a.wav"),
            "finished before the interruption"
        );
    }

    /// A work queue in memory: names taken in offer order; leases of `revoke` are taken over
    /// at once; `take` fails once `fail_after` files were taken.
    struct MemQueue {
        journal: Arc<FileJournal>,
        queued: Mutex<std::collections::VecDeque<String>>,
        offered: Mutex<Vec<String>>,
        finished: Mutex<Vec<String>>,
        released: Mutex<Vec<String>>,
        revoke: Option<&'static str>,
        /// Names handed out as if for the 6th time.
        worn: Option<&'static str>,
        fail_after: Option<usize>,
        taken: Mutex<usize>,
    }

    struct MemLease {
        name: String,
        revoked: bool,
        deliveries: u64,
    }

    impl Lease for MemLease {
        fn name(&self) -> &str {
            &self.name
        }
        fn deliveries(&self) -> u64 {
            self.deliveries
        }
        async fn revoked(&self) -> Result<()> {
            if !self.revoked {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }

    impl WorkQueue for MemQueue {
        type Lease = MemLease;
        fn journal(&self) -> Arc<dyn Journal> {
            self.journal.clone()
        }
        async fn offer(&self, names: &[String]) -> Result<()> {
            self.offered.lock().unwrap().extend(names.iter().cloned());
            self.queued.lock().unwrap().extend(names.iter().cloned());
            Ok(())
        }
        async fn take(&self) -> Result<Option<MemLease>> {
            let mut taken = self.taken.lock().unwrap();
            if self.fail_after.is_some_and(|n| *taken >= n) {
                return Err(crate::Error::new(crate::ErrorKind::Queue {
                    what: "Redis at 127.0.0.1:1: connection refused".into(),
                }));
            }
            *taken += 1;
            Ok(self
                .queued
                .lock()
                .unwrap()
                .pop_front()
                .map(|name| MemLease {
                    revoked: self.revoke.is_some_and(|r| name.contains(r)),
                    deliveries: if self.worn.is_some_and(|w| name.contains(w)) {
                        MAX_DELIVERIES + 1
                    } else {
                        1
                    },
                    name,
                }))
        }
        async fn finish(&self, lease: MemLease) -> Result<()> {
            self.finished.lock().unwrap().push(lease.name);
            Ok(())
        }
        async fn release(&self, lease: MemLease) -> Result<()> {
            self.released.lock().unwrap().push(lease.name);
            Ok(())
        }
        async fn counts(&self) -> Result<super::super::JobCounts> {
            Ok(super::super::JobCounts::default())
        }
    }

    /// How a [`MemQueue`] behaves, and how many files the worker runs at once.
    struct QueueSetup {
        /// Names queued before the worker offers its own.
        first: Vec<String>,
        revoke: Option<&'static str>,
        worn: Option<&'static str>,
        fail_after: Option<usize>,
        jobs: usize,
    }

    impl Default for QueueSetup {
        fn default() -> Self {
            QueueSetup {
                first: Vec::new(),
                revoke: None,
                worn: None,
                fail_after: None,
                jobs: 2,
            }
        }
    }

    async fn run_queued_with(s: &Setup, fake: &Fake, setup: QueueSetup) -> (Outcome, MemQueue) {
        let walked = walk(std::slice::from_ref(&s.input)).unwrap();
        let names = plan(&walked.files);
        let out = OutDir::open(&s.out_path, std::slice::from_ref(&s.input), &[]).unwrap();
        let queue = MemQueue {
            journal: Arc::new(FileJournal::open(&out).unwrap()),
            queued: Mutex::new(setup.first.into()),
            offered: Mutex::default(),
            finished: Mutex::default(),
            released: Mutex::default(),
            revoke: setup.revoke,
            worn: setup.worn,
            fail_after: setup.fail_after,
            taken: Mutex::new(0),
        };
        let runner = Runner {
            files: &walked.files,
            names: &names,
            out: &out,
            journal: queue.journal(),
            settings: "test".into(),
            mode: Mode::Transcribe,
            formats: vec![Format::Json],
            force: false,
            observer: Arc::new(|_: &Event<'_>| {}),
            shared: true,
        };
        let o = runner
            .run_queued(&queue, fake, setup.jobs, std::future::pending())
            .await;
        (o, queue)
    }

    #[tokio::test]
    async fn a_file_taken_over_by_another_worker_is_abandoned_not_finished() {
        let s = setup();
        let fake = Fake {
            hang_on: Some("a.wav"),
            ..Fake::default()
        };
        let (o, q) = run_queued_with(
            &s,
            &fake,
            QueueSetup {
                revoke: Some("a.wav"),
                ..QueueSetup::default()
            },
        )
        .await;
        assert!(o.stopped.is_none() && !o.interrupted);
        assert_eq!(
            q.offered.lock().unwrap().len(),
            5,
            "every unfinished file offered"
        );
        let finished = q.finished.lock().unwrap().clone();
        assert_eq!(finished.len(), 4, "{finished:?}");
        assert!(
            !finished.contains(&"a.wav".to_string()),
            "left to its new holder"
        );
        assert_eq!(
            statuses(&o.rows),
            vec![
                ("a.mp3".into(), Status::Done),
                ("a.wav".into(), Status::Pending),
                ("sub/async é".into(), Status::Done),
                ("sub/bad one".into(), Status::Failed),
                ("sub/corrupt".into(), Status::Failed),
            ]
        );
        assert!(!s.out_path.join("a.wav.json").exists());
        // Keyed by output name and content hash, not by path and time.
        let r = q.journal.latest("a.mp3").expect("journaled");
        assert_eq!(r.key.mtime_ns, 0);
        assert_eq!(r.key.content.as_ref().map(String::len), Some(64));

        // Offered again by a later worker: finished files are not offered.
        let (_, q2) = run_queued_with(&s, &Fake::default(), QueueSetup::default()).await;
        assert_eq!(
            *q2.offered.lock().unwrap(),
            vec!["a.wav".to_string(), "sub/bad one".to_string()],
            "the abandoned file and the retryable failure"
        );
    }

    #[tokio::test]
    async fn a_file_every_holder_died_on_is_failed_for_the_run_and_foreign_names_handed_back() {
        let s = setup();
        let fake = Fake::default();
        let setup = QueueSetup {
            first: vec!["not here".to_string()],
            worn: Some("a.mp3"),
            jobs: 1,
            ..QueueSetup::default()
        };
        let (o, queue) = run_queued_with(&s, &fake, setup).await;
        assert_eq!(
            *queue.released.lock().unwrap(),
            vec!["not here".to_string()]
        );
        assert!(
            !fake.calls.lock().unwrap().iter().any(|c| c == "a.mp3"),
            "not tried again"
        );
        let row = &o.rows[0];
        assert_eq!((row.output.as_str(), row.status), ("a.mp3", Status::Failed));
        assert!(
            row.error
                .as_deref()
                .is_some_and(|e| e.contains("handed to 6 workers")),
            "{row:?}"
        );
        assert!(matches!(
            queue.journal.latest("a.mp3").map(|r| r.state),
            Some(State::Failed { retry: true, .. })
        ));
        assert_eq!(queue.finished.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_lost_queue_stops_the_worker_and_blames_no_file() {
        let s = setup();
        let fake = Fake::default();
        let (o, q) = run_queued_with(
            &s,
            &fake,
            QueueSetup {
                fail_after: Some(2),
                ..QueueSetup::default()
            },
        )
        .await;
        assert!(
            o.stopped
                .as_deref()
                .is_some_and(|e| e.contains("127.0.0.1:1")),
            "{:?}",
            o.stopped
        );
        // Two files were taken; a third take failed: the worker stops at once (a file still
        // in progress is abandoned to its lease).
        let finished = q.finished.lock().unwrap().len();
        assert!(finished <= 2);
        let pending = o
            .rows
            .iter()
            .filter(|r| r.status == Status::Pending)
            .count();
        assert_eq!(pending, 5 - finished, "the rest stays for the next run");
        for r in o.rows.iter().filter(|r| r.status == Status::Pending) {
            let report = s.out_path.join(format!("{}.error.json", r.output));
            assert!(!report.exists(), "no error report against {}", r.output);
        }
    }
}
