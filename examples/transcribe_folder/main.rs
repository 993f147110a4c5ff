//! Bulk transcription of folders, resumable: see `--help` and the README's "Bulk
//! transcription" section.
//!
//! ```sh
//! cargo run --release --example transcribe_folder -- --out out testdata/
//! ```
//!
//! Exit status: 0 when every file is done, 1 when any file failed or the run stopped early
//! (see `summary.json` and the table printed at the end), 2 for a usage or setup error (an
//! unreachable `--queue` among them), 130 when interrupted (Ctrl-C; run the same command
//! again to resume).

mod api;
mod args;
mod progress;
mod shared;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asr_pipeline::batch::{Batch, BatchOptions, Event, Summary, SUMMARY_FILE};
use clap::Parser;

use crate::args::Args;
use crate::progress::{LogWriter, Progress};

/// Exit status when some file failed.
const EXIT_FAILED: u8 = 1;
/// Exit status for a usage or setup error.
const EXIT_SETUP: u8 = 2;
/// Exit status after Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let args = Args::parse();
    let bars = !args.quiet && std::io::stderr().is_terminal();
    let log = LogWriter::new();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,transcribe_folder=info"));
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(bars)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let code = match rt.block_on(real_main(args, bars, log)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_SETUP
        }
    };
    // Work abandoned by Ctrl-C (a decode in a blocking thread) must not hold the exit.
    rt.shutdown_timeout(Duration::from_millis(500));
    ExitCode::from(code)
}

async fn real_main(args: Args, bars: bool, log: LogWriter) -> anyhow::Result<u8> {
    args.validate()?;
    // Credentials are checked before anything touches the disk.
    let access = if args.split_only {
        None
    } else {
        Some(api::Access::from_env(args.endpoint.as_deref())?)
    };
    let mut opts = BatchOptions::default();
    opts.jobs = args.jobs.get();
    opts.formats = args.formats();
    opts.force = args.force;
    opts.service = access.as_ref().map(api::Access::identity);
    if let Some(url) = &args.queue {
        return shared::run(&args, url, access.as_ref(), opts, bars, log).await;
    }
    let progress = Arc::new(Progress::new(bars));
    let observer = progress.clone();
    let batch = Batch::open(&args.inputs, &args.out, opts)
        .with_context(|| format!("preparing the batch into {}", args.out.display()))?
        .with_observer(move |e: &Event<'_>| observer.on(e));
    let out_dir = batch.out_dir().to_path_buf();
    log.attach(progress.multi());
    let summary = match &access {
        None => batch.split_only(ctrl_c()).await?,
        Some(access) => {
            let (client, _emulator) = api::client(access, &args).await?;
            let client = client.build().context("building the API client")?;
            let pipeline = api::pipeline(&args, client)?;
            batch.transcribe(&pipeline, ctrl_c()).await?
        }
    };
    progress.finish();
    log.attach(None);
    Ok(report(&summary, &progress, &out_dir))
}

/// Completes on Ctrl-C: the files in progress are abandoned, the journal stays consistent.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Prints the run's report; returns the exit status.
fn report(summary: &Summary, progress: &Progress, out_dir: &std::path::Path) -> u8 {
    let counts = &summary.counts;
    let where_ = out_dir.display();
    if progress.to_do() == Some(0) && progress.job().is_none() {
        eprintln!(
            "Nothing to do: all {} file(s) under {where_} are up to date ({} done, {} failed earlier on bad input; --force redoes everything).",
            counts.files, counts.done, counts.failed
        );
    } else {
        let unchanged = if progress.job().is_some() {
            "done by other workers or earlier"
        } else {
            "unchanged"
        };
        eprintln!(
            "{} done this run ({:.2} h of audio in {}), {} {unchanged}, {} failed, {} pending; {} skipped ({} not audio). Summary: {where_}/{SUMMARY_FILE}",
            counts.done_this_run,
            summary.audio_seconds_this_run / 3600.0,
            progress::hms(summary.wall_seconds),
            counts.unchanged,
            counts.failed,
            counts.pending,
            counts.skipped,
            counts.not_audio,
        );
    }
    if let Some(table) = summary.failure_table() {
        eprint!("{table}");
    }
    if let Some(e) = &summary.stopped_by {
        eprintln!(
            "Stopped early: every further file would fail the same way ({e}). Fix it and run the same command again: finished files are kept."
        );
    }
    if summary.interrupted {
        eprintln!(
            "Interrupted: {} file(s) not finished. The journal is consistent: run the same command again to resume.",
            counts.pending
        );
        return EXIT_INTERRUPTED;
    }
    if counts.failed > 0 || summary.stopped_by.is_some() {
        EXIT_FAILED
    } else {
        0
    }
}
