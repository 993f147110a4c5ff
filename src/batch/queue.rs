//! A work queue shared by several workers of one batch (on one machine or many): the files to
//! do, leased one at a time, so that a worker that dies loses nothing.

use std::future::Future;
use std::sync::Arc;

use super::Journal;
use crate::Result;

/// The files of one batch shared among workers, each worker running the same batch (same
/// inputs, output folder and options) with [`super::Batch::transcribe_queued`].
///
/// Every worker offers the files it finds unfinished; an offer of a file already queued or
/// held is ignored. A worker [takes](WorkQueue::take) one file at a time under a lease,
/// which the queue renews while the [`Lease`] is kept: when its holder dies or is cut off,
/// the lease expires and another worker takes the file over. A file is
/// [finished](WorkQueue::finish) only after its outcome is in the job's [`Journal`], which
/// the queue provides: every worker sees every file's state, and async uploads are polled
/// rather than made again by a worker that takes a file over.
///
/// Errors mean the queue itself is unreachable or broken ([`crate::ErrorKind::Queue`]): the
/// batch stops, and the same command run later goes on where the job was.
pub trait WorkQueue: Send + Sync {
    /// A file held by this worker.
    type Lease: Lease;

    /// The job's journal, shared by all its workers.
    fn journal(&self) -> Arc<dyn Journal>;

    /// Puts the files with these output names on the queue, each unless it is already
    /// queued or held by a worker.
    fn offer(&self, names: &[String]) -> impl Future<Output = Result<()>> + Send;

    /// The next file for this worker, newly queued or taken over from a worker whose lease
    /// expired; waits while other workers hold files that may still come back. `None` when
    /// the job is drained: nothing queued and nothing held except by this worker.
    fn take(&self) -> impl Future<Output = Result<Option<Self::Lease>>> + Send;

    /// The file is finished (its outcome journaled): it leaves the queue.
    fn finish(&self, lease: Self::Lease) -> impl Future<Output = Result<()>> + Send;

    /// Hands a file back untouched (this worker cannot do it, for example because it is not
    /// among its inputs): another worker may take it at once.
    fn release(&self, lease: Self::Lease) -> impl Future<Output = Result<()>> + Send;

    /// The whole job's counts, for progress.
    fn counts(&self) -> impl Future<Output = Result<JobCounts>> + Send;

    /// Hands back every file this worker still holds (its run was cancelled), so that other
    /// workers take them at once rather than after a lease. Default: nothing (they come back
    /// when their leases expire).
    fn abandon(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// A file held by one worker; the queue renews the lease while this value lives.
pub trait Lease: Send + Sync {
    /// The file's output name, as offered.
    fn name(&self) -> &str;

    /// How many times the file was handed to a worker, this time included (more than one:
    /// earlier holders died or gave it back). Default 1.
    fn deliveries(&self) -> u64 {
        1
    }

    /// Completes when this worker no longer holds the file: `Ok` when another worker took it
    /// over (this worker's lease expired: it abandons the file), `Err` when the lease could
    /// not be renewed (the queue unreachable: the batch stops).
    fn revoked(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The state of a whole shared job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// Files ever offered.
    pub files: u64,
    /// Waiting for a worker.
    pub queued: u64,
    /// Held by a worker now.
    pub running: u64,
    /// Finished with outputs written.
    pub done: u64,
    /// Finished with an error.
    pub failed: u64,
}

impl JobCounts {
    /// Counts from their parts.
    pub fn new(files: u64, queued: u64, running: u64, done: u64, failed: u64) -> JobCounts {
        JobCounts {
            files,
            queued,
            running,
            done,
            failed,
        }
    }
}

/// The queue type of a batch that has none (never called).
pub(crate) enum NoQueue {}

impl WorkQueue for NoQueue {
    type Lease = NoQueue;
    fn journal(&self) -> Arc<dyn Journal> {
        match *self {}
    }
    async fn offer(&self, _: &[String]) -> Result<()> {
        match *self {}
    }
    async fn take(&self) -> Result<Option<NoQueue>> {
        match *self {}
    }
    async fn finish(&self, _: NoQueue) -> Result<()> {
        match *self {}
    }
    async fn release(&self, _: NoQueue) -> Result<()> {
        match *self {}
    }
    async fn counts(&self) -> Result<JobCounts> {
        match *self {}
    }
}

impl Lease for NoQueue {
    fn name(&self) -> &str {
        match *self {}
    }
    async fn revoked(&self) -> Result<()> {
        match *self {}
    }
}
