//! A work queue on Redis Streams for [`asr_pipeline::batch`]: one bulk transcription job run
//! by any number of workers, on one machine or many, started and stopped at will.
//!
//! Every worker runs the same batch (same inputs, shared output folder, same options) with
//! [`Batch::open_shared`](asr_pipeline::batch::Batch::open_shared) and
//! [`Batch::transcribe_queued`](asr_pipeline::batch::Batch::transcribe_queued), and a
//! [`RedisQueue`] connected to the same Redis server under the batch's
//! [`job_name`](asr_pipeline::batch::Batch::job_name):
//!
//! - **Work**: one stream per job with a consumer group. Each worker offers the files it finds
//!   unfinished (a file already queued or held is not queued twice), then takes files one at
//!   a time until the job is drained.
//! - **Leases**: a worker renews the lease of each file it holds every quarter of
//!   [`QueueOptions::lease`]; a file whose holder stopped renewing (killed, partitioned, its
//!   machine gone) is taken over by another worker (`XAUTOCLAIM`). A file leaves the queue
//!   only once its outcome is in the journal, after its outputs are written.
//! - **Journal**: each file's latest state, in Redis ([`WorkQueue::journal`]): a worker
//!   that takes a file over polls its async uploads instead of uploading again; a file done
//!   twice (a lease that expired while its holder was still alive) is logged done once.
//! - **One limit for all**: [`RedisQueue::limiter`] gives a [`Limiter`] whose slots are
//!   held in Redis, so that the requests in flight of all workers together stay within one
//!   number; slots of a dead worker expire.
//!
//! Errors are [`ErrorKind::Queue`]: a batch that loses its Redis server stops (nothing is
//! half-written: outputs are renamed into place whole), and the same command run later goes on
//! where the job was, as long as Redis kept its data (`appendonly yes`, and nothing evicted:
//! `maxmemory-policy noeviction`). Redis 6.2 or later (`XAUTOCLAIM`), a single server.
//!
//! ```no_run
//! use asr_pipeline::batch::{Batch, BatchOptions};
//! use asr_pipeline::botlhale::Client;
//! use asr_pipeline::pipeline::Pipeline;
//! use asr_pipeline_redis::{QueueOptions, RedisQueue};
//!
//! # async fn run() -> asr_pipeline::Result<()> {
//! // The same on every machine: inputs, a shared output folder, options.
//! let batch = Batch::open_shared(
//!     &["/archive/calls".into()],
//!     "/shared/transcripts".as_ref(),
//!     BatchOptions::default(),
//! )?;
//! let client = Client::builder().from_env()?;
//! // The job's name: from the output folder and the settings that shape the results.
//! let naming = Pipeline::builder().client(client.clone().build()?).build()?;
//! let job = batch.job_name(Some(&naming))?;
//! let queue = RedisQueue::connect("redis://queue.example:6379/", &job, QueueOptions::default()).await?;
//! // At most 8 requests in flight over all workers together.
//! let client = client.concurrency(8).limiter(queue.limiter(8)).build()?;
//! let pipeline = Pipeline::builder().client(client).concurrency(8).build()?;
//! let summary = batch.transcribe_queued(&pipeline, &queue, std::future::pending()).await?;
//! println!("{} done, {} failed", summary.counts.done, summary.counts.failed);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_pipeline::batch::{JobCounts, Journal, Lease, Record, State, WorkQueue};
use asr_pipeline::botlhale::{Limiter, Permit};
use asr_pipeline::{Error, ErrorKind, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use tokio::sync::{mpsc, watch};

mod scripts;

/// The consumer group of every job's stream.
const GROUP: &str = "workers";

/// Options of a [`RedisQueue`]; every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// How long a file stays with a worker that stopped renewing its lease before another
    /// worker takes it over. Renewed every quarter of it. Default 30 s.
    pub lease: Duration,
    /// How often a worker with nothing to take looks again while other workers hold files.
    /// Default 500 ms.
    pub poll: Duration,
    /// How long a request slot of the [`RedisQueue::limiter`] outlives a worker that died
    /// holding it. Default 15 s.
    pub slot_lifetime: Duration,
    /// Time limit of each call to Redis. Default 5 s.
    pub timeout: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            slot_lifetime: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The Redis keys of one job.
#[derive(Debug, Clone)]
struct Keys {
    q: String,
    queued: String,
    names: String,
    journal: String,
    finals: String,
    log: String,
    counts: String,
    sem: String,
}

impl Keys {
    fn of(job: &str) -> Keys {
        let k = |s: &str| format!("{{{job}}}:{s}");
        Keys {
            q: k("q"),
            queued: k("queued"),
            names: k("names"),
            journal: k("journal"),
            finals: k("final"),
            log: k("log"),
            counts: k("counts"),
            sem: k("sem"),
        }
    }
}

struct Shared {
    client: redis::Client,
    con: MultiplexedConnection,
    keys: Keys,
    job: String,
    consumer: String,
    address: String,
    opts: QueueOptions,
}

impl Shared {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        queue_error(&self.address, what, e)
    }
}

fn queue_error(address: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Queue {
        what: format!("Redis at {address}: {what}: {e}"),
    })
}

/// One worker's connection to a job's queue on a Redis server (6.2 or later, for
/// `XAUTOCLAIM`; 7.0 tested).
#[derive(Clone)]
pub struct RedisQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("address", &self.shared.address)
            .field("job", &self.shared.job)
            .field("consumer", &self.shared.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Connects to the Redis server at `url` (`redis://[:password@]host:port/[db]`) for the
    /// job `job` (see [`Batch::job_name`](asr_pipeline::batch::Batch::job_name)), creating
    /// its stream and consumer group when they do not exist. Fails with
    /// [`ErrorKind::Queue`] when the server cannot be reached.
    pub async fn connect(url: &str, job: &str, opts: QueueOptions) -> Result<RedisQueue> {
        let q = RedisQueue::open(url, job, opts).await?;
        let mut con = q.shared.con.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&q.shared.keys.q)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(q.shared.err("creating the job's stream", e)),
        }
        Ok(q)
    }

    async fn open(url: &str, job: &str, opts: QueueOptions) -> Result<RedisQueue> {
        if job.is_empty() || job.contains(['{', '}']) {
            return Err(Error::config(format!(
                "queue job name {job:?}: must be non-empty, without braces"
            )));
        }
        let client = redis::Client::open(url).map_err(|e| {
            Error::config(format!("queue address: {}", redact(url, &e.to_string())))
        })?;
        let address = client.get_connection_info().addr().to_string();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout));
        let con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| {
                queue_error(
                    &address,
                    "cannot connect (is redis-server running there?)",
                    e,
                )
            })?;
        let keys = Keys::of(job);
        let shared = Shared {
            client,
            con,
            keys,
            job: job.to_string(),
            consumer: consumer_name(),
            address,
            opts,
        };
        Ok(RedisQueue {
            shared: Arc::new(shared),
        })
    }

    /// Connects to the job `job` on the Redis server at `url` only if the job exists (for a
    /// status report: nothing is created). `Ok(None)` when no worker ever started it there.
    pub async fn existing(url: &str, job: &str, opts: QueueOptions) -> Result<Option<RedisQueue>> {
        let q = RedisQueue::open(url, job, opts).await?;
        let mut con = q.shared.con.clone();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&q.shared.keys.q)
            .query_async(&mut con)
            .await
            .map_err(|e| q.shared.err("looking for the job", e))?;
        Ok((exists == 1).then_some(q))
    }

    /// The job's name, as given.
    pub fn job(&self) -> &str {
        &self.shared.job
    }

    /// The server's address (`host:port`, never a password).
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// This worker's name in the consumer group (host, process id and a random suffix).
    pub fn consumer(&self) -> &str {
        &self.shared.consumer
    }

    /// A limit of `limit` requests in flight across every worker of the job that uses it
    /// (give it to [`ClientBuilder::limiter`](asr_pipeline::botlhale::ClientBuilder::limiter)).
    /// Starts a task on the current Tokio runtime that renews the slots this worker holds.
    pub fn limiter(&self, limit: usize) -> Arc<dyn Limiter> {
        Arc::new(RedisLimiter::new(self.shared.clone(), limit.max(1)))
    }

    /// Every final record (done, failed) of the job in the order they were reached; an
    /// input reaching the same outcome twice (two workers, one lease) appears once.
    pub async fn log(&self) -> Result<Vec<Record>> {
        let mut con = self.shared.con.clone();
        let lines: Vec<String> = redis::cmd("LRANGE")
            .arg(&self.shared.keys.log)
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(|e| self.shared.err("reading the log", e))?;
        lines
            .iter()
            .map(|l| serde_json::from_str(l).map_err(|e| self.shared.err("a log record", e)))
            .collect()
    }
}

/// `host-pid-xxxx`: unique among the workers of a job.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// Removes the credentials of a Redis URL quoted in a message.
fn redact(url: &str, text: &str) -> String {
    let mut t = text.replace(url, "<the queue URL>");
    if let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@')) {
        if scheme_end + 3 <= at {
            let userinfo = &url[scheme_end + 3..at];
            for secret in [userinfo, userinfo.rsplit(':').next().unwrap_or("")] {
                if secret.len() >= 3 {
                    t = t.replace(secret, "***");
                }
            }
        }
    }
    t
}

impl WorkQueue for RedisQueue {
    type Lease = RedisLease;

    fn journal(&self) -> Arc<dyn Journal> {
        Arc::new(RedisJournal {
            shared: self.shared.clone(),
            con: Mutex::new(None),
            read_failed: Default::default(),
        })
    }

    async fn offer(&self, names: &[String]) -> Result<()> {
        let s = &self.shared;
        let mut con = s.con.clone();
        let script = Script::new(scripts::OFFER);
        let mut added = 0u64;
        for chunk in names.chunks(500) {
            let mut inv = script.key(&s.keys.q);
            inv.key(&s.keys.queued).key(&s.keys.names);
            for n in chunk {
                inv.arg(n);
            }
            let k: u64 = inv
                .invoke_async(&mut con)
                .await
                .map_err(|e| s.err("offering files", e))?;
            added += k;
        }
        tracing::info!(
            "job {}: offered {} file(s), {added} newly queued",
            s.job,
            names.len()
        );
        Ok(())
    }

    async fn take(&self) -> Result<Option<RedisLease>> {
        let s = &self.shared;
        let mut con = s.con.clone();
        let script = Script::new(scripts::TAKE);
        let lease_ms = s.opts.lease.as_millis().max(1) as u64;
        loop {
            let r: Vec<String> = script
                .key(&s.keys.q)
                .arg(GROUP)
                .arg(&s.consumer)
                .arg(lease_ms)
                .invoke_async(&mut con)
                .await
                .map_err(|e| s.err("taking a file", e))?;
            match r.first().map(String::as_str) {
                Some(how @ ("new" | "claimed")) if r.len() == 4 => {
                    if how == "claimed" {
                        tracing::info!("{}: taken over from a worker whose lease expired", r[2]);
                    }
                    let deliveries = r[3].parse().unwrap_or(1);
                    return Ok(Some(RedisLease::start(
                        self.shared.clone(),
                        r[1].clone(),
                        r[2].clone(),
                        deliveries,
                    )));
                }
                Some("wait") if r.get(1).map(String::as_str) == Some("0") => return Ok(None),
                Some("wait") => {
                    let jitter = fastrand::u64(..=s.opts.poll.as_millis() as u64 / 2);
                    tokio::time::sleep(s.opts.poll + Duration::from_millis(jitter)).await;
                }
                _ => return Err(s.err("taking a file", format!("unexpected answer {r:?}"))),
            }
        }
    }

    async fn finish(&self, lease: RedisLease) -> Result<()> {
        let s = &self.shared;
        lease.renewal.abort();
        let mut con = s.con.clone();
        let _: i64 = Script::new(scripts::FINISH)
            .key(&s.keys.q)
            .key(&s.keys.queued)
            .arg(GROUP)
            .arg(&lease.id)
            .arg(&lease.name)
            .invoke_async(&mut con)
            .await
            .map_err(|e| s.err("finishing a file", e))?;
        Ok(())
    }

    async fn release(&self, lease: RedisLease) -> Result<()> {
        let s = &self.shared;
        lease.renewal.abort();
        let mut con = s.con.clone();
        let _: i64 = Script::new(scripts::RELEASE)
            .key(&s.keys.q)
            .arg(GROUP)
            .arg(&s.consumer)
            .arg(&lease.id)
            .arg(s.opts.lease.as_millis().max(1) as u64)
            .invoke_async(&mut con)
            .await
            .map_err(|e| s.err("handing a file back", e))?;
        Ok(())
    }

    async fn abandon(&self) -> Result<()> {
        let s = &self.shared;
        let mut con = s.con.clone();
        let n: i64 = Script::new(scripts::ABANDON)
            .key(&s.keys.q)
            .arg(GROUP)
            .arg(&s.consumer)
            .arg(s.opts.lease.as_millis().max(1) as u64)
            .invoke_async(&mut con)
            .await
            .map_err(|e| s.err("handing files back", e))?;
        if n > 0 {
            tracing::info!("handed {n} file(s) in progress back to the job");
        }
        Ok(())
    }

    async fn counts(&self) -> Result<JobCounts> {
        let s = &self.shared;
        let mut con = s.con.clone();
        let (files, len, pending, done, failed): (
            u64,
            u64,
            redis::Value,
            Option<i64>,
            Option<i64>,
        ) = redis::pipe()
            .cmd("SCARD")
            .arg(&s.keys.names)
            .cmd("XLEN")
            .arg(&s.keys.q)
            .cmd("XPENDING")
            .arg(&s.keys.q)
            .arg(GROUP)
            .cmd("HGET")
            .arg(&s.keys.counts)
            .arg("done")
            .cmd("HGET")
            .arg(&s.keys.counts)
            .arg("failed")
            .query_async(&mut con)
            .await
            .map_err(|e| s.err("reading the job's counts", e))?;
        let running = match pending {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        Ok(JobCounts::new(
            files,
            len.saturating_sub(running),
            running,
            done.unwrap_or(0).max(0) as u64,
            failed.unwrap_or(0).max(0) as u64,
        ))
    }
}

/// A file held by this worker; its lease is renewed while this value lives.
pub struct RedisLease {
    id: String,
    name: String,
    deliveries: u64,
    state: watch::Receiver<Option<std::result::Result<(), String>>>,
    renewal: tokio::task::JoinHandle<()>,
    address: String,
}

impl std::fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLease")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl RedisLease {
    fn start(shared: Arc<Shared>, id: String, name: String, deliveries: u64) -> RedisLease {
        let (tx, rx) = watch::channel(None);
        let address = shared.address.clone();
        let entry = id.clone();
        let renewal = tokio::spawn(async move {
            let every = (shared.opts.lease / 4).max(Duration::from_millis(50));
            let give_up = shared.opts.lease / 2;
            let mut con = shared.con.clone();
            let script = Script::new(scripts::RENEW);
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let r: redis::RedisResult<i64> = script
                    .key(&shared.keys.q)
                    .arg(GROUP)
                    .arg(&shared.consumer)
                    .arg(&entry)
                    .invoke_async(&mut con)
                    .await;
                match r {
                    Ok(1) => last_ok = Instant::now(),
                    Ok(_) => {
                        let _ = tx.send(Some(Ok(())));
                        return;
                    }
                    Err(e) if last_ok.elapsed() >= give_up => {
                        let _ = tx.send(Some(Err(format!("renewing a lease: {e}"))));
                        return;
                    }
                    Err(e) => tracing::warn!("renewing a lease failed, will retry: {e}"),
                }
            }
        });
        RedisLease {
            id,
            name,
            deliveries,
            state: rx,
            renewal,
            address,
        }
    }
}

impl Lease for RedisLease {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliveries(&self) -> u64 {
        self.deliveries
    }

    async fn revoked(&self) -> Result<()> {
        let mut rx = self.state.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r.map_err(|e| queue_error(&self.address, "lease", e));
            }
            if rx.changed().await.is_err() {
                // The renewal task ended without a verdict (aborted): never revoked.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The journal of a job in Redis (see [`RedisQueue::journal`]).
pub struct RedisJournal {
    shared: Arc<Shared>,
    con: Mutex<Option<redis::Connection>>,
    /// A read failed (reported once).
    read_failed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedisJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJournal")
            .field("address", &self.shared.address)
            .field("job", &self.shared.job)
            .finish_non_exhaustive()
    }
}

impl RedisJournal {
    /// Runs `f` on the blocking connection (opened on first use, dropped after an error so
    /// that the next call reconnects). The batch calls the journal from its tasks, as it
    /// does the local journal's synced writes: each call is one round trip.
    fn with<T>(
        &self,
        what: &str,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        // Blocking network I/O: on a multi-threaded runtime the other tasks of this worker
        // thread (lease renewals among them) move elsewhere meanwhile.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.with_blocking(what, f))
            }
            _ => self.with_blocking(what, f),
        }
    }

    fn with_blocking<T>(
        &self,
        what: &str,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let s = &self.shared;
        let mut guard = self
            .con
            .lock()
            .map_err(|_| s.err(what, "the connection's lock is poisoned"))?;
        // Once more on a fresh connection when the kept one failed (an idle connection that
        // a firewall or the server's `timeout` closed). Each call is safe to repeat.
        let mut last = None;
        for _ in 0..2 {
            if guard.is_none() {
                let con = match s.client.get_connection_with_timeout(s.opts.timeout) {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                con.set_read_timeout(Some(s.opts.timeout))
                    .map_err(|e| s.err(what, e))?;
                con.set_write_timeout(Some(s.opts.timeout))
                    .map_err(|e| s.err(what, e))?;
                *guard = Some(con);
            }
            let Some(con) = guard.as_mut() else { continue };
            match f(con) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    *guard = None;
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => s.err(what, e),
            None => s.err(what, "no connection"),
        })
    }
}

impl Journal for RedisJournal {
    fn latest(&self, path: &str) -> Option<Record> {
        match self.try_latest(path) {
            Ok(r) => r,
            Err(e) => {
                if !self
                    .read_failed
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::error!("{e}");
                }
                None
            }
        }
    }

    fn try_latest(&self, path: &str) -> Result<Option<Record>> {
        let key = &self.shared.keys.journal;
        let text: Option<String> = self.with("reading the journal", |c| {
            redis::cmd("HGET").arg(key).arg(path).query(c)
        })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn latest_many(&self, paths: &[&str]) -> Result<Vec<Option<Record>>> {
        let key = &self.shared.keys.journal;
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(1000) {
            let texts: Vec<Option<String>> = self.with("reading the journal", |c| {
                redis::cmd("HMGET").arg(key).arg(chunk).query(c)
            })?;
            out.extend(
                texts
                    .into_iter()
                    .map(|t| t.and_then(|t| serde_json::from_str(&t).ok())),
            );
        }
        out.resize(paths.len(), None);
        Ok(out)
    }

    fn append(&self, record: &Record) -> Result<()> {
        let s = &self.shared;
        let line = serde_json::to_string(record).map_err(|e| s.err("encoding a record", e))?;
        let key = serde_json::to_string(&record.key).map_err(|e| s.err("encoding a record", e))?;
        let identity = format!("{key}\n{}", record.settings);
        let state = match &record.state {
            State::Planned => "planned",
            State::Uploaded { .. } => "uploaded",
            State::Done { .. } => "done",
            State::Failed { .. } => "failed",
        };
        let keys = &s.keys;
        // -1: refused, the input was done before for the same identity (a second holder
        // failing at it does not undo the first one's result).
        self.with("writing the journal", |c| {
            let _: i64 = Script::new(scripts::APPEND)
                .key(&keys.journal)
                .key(&keys.finals)
                .key(&keys.log)
                .key(&keys.counts)
                .arg(&record.key.path)
                .arg(&line)
                .arg(state)
                .arg(&identity)
                .invoke(c)?;
            Ok(())
        })
    }
}

/// Request slots held in Redis, shared by every worker of a job.
struct RedisLimiter {
    shared: Arc<Shared>,
    limit: usize,
    held: Arc<Mutex<HashSet<String>>>,
    release: mpsc::UnboundedSender<String>,
    next: std::sync::atomic::AtomicU64,
}

impl RedisLimiter {
    fn new(shared: Arc<Shared>, limit: usize) -> RedisLimiter {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let held: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (s, h) = (shared.clone(), held.clone());
        tokio::spawn(async move {
            let mut con = s.con.clone();
            let lifetime = s.opts.slot_lifetime.max(Duration::from_millis(30));
            let life = lifetime.as_millis() as u64;
            let mut tick = tokio::time::interval(lifetime / 3);
            loop {
                tokio::select! {
                    id = rx.recv() => {
                        let Some(id) = id else { return };
                        if let Ok(mut h) = h.lock() {
                            h.remove(&id);
                        }
                        let r: redis::RedisResult<i64> =
                            redis::cmd("ZREM").arg(&s.keys.sem).arg(&id).query_async(&mut con).await;
                        if let Err(e) = r {
                            tracing::warn!("releasing a request slot (it expires by itself): {e}");
                        }
                    }
                    _ = tick.tick() => {
                        let ids: Vec<String> = h.lock().map(|h| h.iter().cloned().collect()).unwrap_or_default();
                        if ids.is_empty() {
                            continue;
                        }
                        let script = Script::new(scripts::EXTEND);
                        let mut inv = script.key(&s.keys.sem);
                        inv.arg(life);
                        for id in &ids {
                            inv.arg(id);
                        }
                        let r: redis::RedisResult<i64> = inv.invoke_async(&mut con).await;
                        if let Err(e) = r {
                            tracing::warn!("extending request slots: {e}");
                        }
                    }
                }
            }
        });
        RedisLimiter {
            shared,
            limit,
            held,
            release: tx,
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A slot held; dropping it hands the slot back.
struct Slot {
    id: String,
    release: mpsc::UnboundedSender<String>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.release.send(std::mem::take(&mut self.id));
    }
}

impl Limiter for RedisLimiter {
    fn acquire(&self) -> Pin<Box<dyn Future<Output = Result<Permit>> + Send + '_>> {
        Box::pin(async move {
            let s = &self.shared;
            let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let id = format!("{}:{n}", s.consumer);
            let life = s
                .opts
                .slot_lifetime
                .max(Duration::from_millis(30))
                .as_millis() as u64;
            let script = Script::new(scripts::ACQUIRE);
            let mut con = s.con.clone();
            let mut wait_ms = 2u64;
            loop {
                let got: i64 = script
                    .key(&s.keys.sem)
                    .arg(self.limit)
                    .arg(&id)
                    .arg(life)
                    .invoke_async(&mut con)
                    .await
                    .map_err(|e| s.err("taking a request slot", e))?;
                if got == 1 {
                    if let Ok(mut h) = self.held.lock() {
                        h.insert(id.clone());
                    }
                    return Ok(Permit::new(Slot {
                        id,
                        release: self.release.clone(),
                    }));
                }
                tokio::time::sleep(Duration::from_millis(wait_ms + fastrand::u64(..=wait_ms)))
                    .await;
                wait_ms = (wait_ms * 2).min(40);
            }
        })
    }
}
