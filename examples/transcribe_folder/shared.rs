//! `--queue`: this process as one worker of a job shared through Redis.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asr_pipeline::batch::{Batch, BatchOptions, Event, WorkQueue};
use asr_pipeline_redis::{QueueOptions, RedisQueue};

use crate::api::{self, Access};
use crate::args::Args;
use crate::progress::{LogWriter, Progress};

/// Runs the job as one of its workers (or prints its counts with `--status`); returns the
/// exit status.
pub async fn run(
    args: &Args,
    url: &str,
    access: Option<&Access>,
    opts: BatchOptions,
    bars: bool,
    log: LogWriter,
) -> anyhow::Result<u8> {
    let progress = Arc::new(Progress::new(bars && !args.status));
    let observer = progress.clone();
    let batch = Batch::open_shared(&args.inputs, &args.out, opts)
        .with_context(|| format!("preparing the batch into {}", args.out.display()))?
        .with_observer(move |e: &Event<'_>| observer.on(e));
    let out_dir = batch.out_dir().to_path_buf();
    // The job is named from the output folder and the settings that shape the results:
    // the same command on every machine joins the same job.
    let naming = match access {
        Some(_) => Some(api::pipeline(args, api::idle_client()?)?),
        None => None,
    };
    let job = batch.job_name(naming.as_ref())?;
    let mut qopts = QueueOptions::default();
    qopts.lease = Duration::from_secs_f64(args.lease);
    if args.status {
        // Looks, creates nothing.
        let Some(queue) = RedisQueue::existing(url, &job, qopts)
            .await
            .context("connecting to the job's queue")?
        else {
            println!(
                "job {job}: not started on this Redis server (no worker of this command ran yet)"
            );
            return Ok(0);
        };
        let c = queue.counts().await.context("reading the job's counts")?;
        println!(
            "job {job} on {}: {} file(s): {} queued, {} in progress, {} done, {} failed",
            queue.address(),
            c.files,
            c.queued,
            c.running,
            c.done,
            c.failed
        );
        return Ok(0);
    }
    let queue = RedisQueue::connect(url, &job, qopts)
        .await
        .context("connecting to the job's queue")?;
    tracing::info!(
        "worker {} of job {job} on {} (output {})",
        queue.consumer(),
        queue.address(),
        out_dir.display()
    );
    log.attach(progress.multi());
    let summary = match access {
        None => batch.split_only_queued(&queue, crate::ctrl_c()).await?,
        Some(access) => {
            let (client, _emulator) = api::client(access, args).await?;
            let client = client
                .limiter(queue.limiter(args.concurrency.get()))
                .build()
                .context("building the API client")?;
            let pipeline = api::pipeline(args, client)?;
            batch
                .transcribe_queued(&pipeline, &queue, crate::ctrl_c())
                .await?
        }
    };
    progress.finish();
    log.attach(None);
    if let Some(c) = progress.job() {
        let when = if summary.stopped_by.is_some() {
            " (last known)"
        } else {
            ""
        };
        eprintln!(
            "Job {job}{when}: {} file(s), {} done, {} failed, {} queued, {} in progress.",
            c.files, c.done, c.failed, c.queued, c.running
        );
    }
    Ok(crate::report(&summary, &progress, &out_dir))
}
