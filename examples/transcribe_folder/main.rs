//! Bulk transcription of folders, resumable: see `--help` and the README's "Bulk
//! transcription" section.
//!
//! ```sh
//! cargo run --release --example transcribe_folder -- --out out testdata/
//! ```
//!
//! Exit status: 0 when every file is done, 1 when any file failed (see `summary.json` and the
//! table printed at the end), 2 for a usage or setup error, 130 when interrupted (Ctrl-C; run
//! the same command again to resume).

mod api;
mod args;
mod engine;
mod journal;
mod outputs;
mod progress;
mod run;
mod split;
mod summary;
#[cfg(test)]
mod testutil;
mod walk;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::args::Args;
use crate::journal::{now, Journal};
use crate::outputs::{OutDir, LOCK, SUMMARY};
use crate::progress::{LogWriter, Progress};
use crate::run::{Batch, Decision, Mode, Outcome};
use crate::summary::{count, failure_table, SkipRow, Summary};
use crate::walk::InputKind;

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

/// Runs the batch with `engine` until done or Ctrl-C, log lines above the bars meanwhile.
async fn run_batch<E: engine::Engine>(
    batch: &Batch<'_>,
    decisions: Vec<Decision>,
    engine: &E,
    progress: &Arc<Progress>,
    args: &Args,
    log: &LogWriter,
) -> Outcome {
    let cancel = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    log.attach(progress.multi());
    batch
        .run(decisions, engine, progress.clone(), args.jobs.get(), cancel)
        .await
}

async fn real_main(args: Args, bars: bool, log: LogWriter) -> anyhow::Result<u8> {
    let started_at = now();
    let clock = Instant::now();
    args.validate()?;
    // Credentials are checked before anything touches the disk.
    let api = if args.split_only {
        None
    } else {
        Some(api::Access::from_env(args.endpoint.as_deref())?)
    };
    let walked = walk::walk(&args.inputs).context("reading the inputs")?;
    let canonical: Vec<_> = walked.files.iter().map(|f| f.canonical.clone()).collect();
    let out = OutDir::open(&args.out, &args.inputs, &canonical)?;
    let lock = std::fs::File::create(out.root().join(LOCK))
        .with_context(|| format!("creating the lock in {}", out.root().display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another transcribe_folder run is writing to {}; wait for it or choose another --out",
            args.out.display()
        );
    }
    let journal = Arc::new(Journal::open(&out)?);
    if journal.ignored_lines > 0 {
        tracing::info!(
            "journal: ignored {} unreadable line(s) left by an interrupted write",
            journal.ignored_lines
        );
    }
    let names = outputs::plan(&walked.files);
    let skipped: Vec<SkipRow> = walked
        .skipped
        .iter()
        .map(|s| SkipRow {
            path: s.path.to_string_lossy().into_owned(),
            reason: s.reason.code().into(),
            detail: s.reason.describe(),
        })
        .collect();
    for s in &skipped {
        tracing::debug!("skipped {}: {}", s.path, s.detail);
    }

    let mode = if args.split_only {
        Mode::SplitOnly
    } else {
        Mode::Transcribe
    };
    let settings = match &api {
        None => split::SETTINGS.to_string(),
        Some(a) => format!(
            "transcribe api={} route={} language={} diarization={}",
            a.identity(),
            args.route.name(),
            args.language.as_deref().unwrap_or("-"),
            args.diarization
        ),
    };
    let batch = Batch {
        files: &walked.files,
        names: &names,
        out: &out,
        journal,
        settings: settings.clone(),
        mode,
        formats: args.formats(),
        force: args.force,
    };
    let decisions = batch.decide();
    let to_run: Vec<usize> = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(d, Decision::Run { .. }))
        .map(|(i, _)| i)
        .collect();
    let not_audio = skipped.iter().filter(|s| s.reason == "not_audio").count();
    tracing::info!(
        "{} audio file(s) found, {} to do; {} path(s) skipped ({} not audio)",
        walked.files.len(),
        to_run.len(),
        skipped.len(),
        not_audio
    );

    let mut endpoint = None;
    let mut emulator = false;
    let outcome = if to_run.is_empty() {
        let rows = decisions
            .into_iter()
            .filter_map(|d| match d {
                Decision::Keep(row) => Some(row),
                Decision::Run { .. } => None,
            })
            .collect();
        Outcome {
            rows,
            interrupted: false,
            stopped: None,
        }
    } else {
        let audio_total: Option<f64> = to_run
            .iter()
            .map(|&i| match &walked.files[i].kind {
                InputKind::Audio { duration_secs, .. } => *duration_secs,
                InputKind::BadAudio { .. } => Some(0.0),
            })
            .sum();
        let progress = Arc::new(Progress::new(bars, to_run.len() as u64, audio_total));
        let result = match &api {
            None => {
                run_batch(
                    &batch,
                    decisions,
                    &split::SplitEngine,
                    &progress,
                    &args,
                    &log,
                )
                .await
            }
            Some(access) => {
                let engine = api::ApiEngine::start(access, &args).await?;
                endpoint = Some(engine.base_url().to_string());
                emulator = engine.is_emulator();
                run_batch(&batch, decisions, &engine, &progress, &args, &log).await
            }
        };
        progress.finish();
        log.attach(None);
        result
    };

    let Outcome {
        rows,
        interrupted,
        stopped,
    } = outcome;
    let counts = count(&rows, &skipped);
    let summary = Summary {
        version: 1,
        mode: match mode {
            Mode::Transcribe => "transcribe".into(),
            Mode::SplitOnly => "split-only".into(),
        },
        emulator,
        endpoint,
        settings,
        inputs: args
            .inputs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        started_at,
        finished_at: now(),
        interrupted,
        stopped_by: stopped.clone(),
        audio_seconds: rows
            .iter()
            .filter(|r| r.status == summary::Status::Done)
            .filter_map(|r| r.audio_seconds)
            .sum::<f64>()
            + 0.0, // an empty f64 sum is -0.0
        audio_seconds_this_run: rows
            .iter()
            .filter(|r| r.this_run)
            .filter_map(|r| r.audio_seconds)
            .sum::<f64>()
            + 0.0, // an empty f64 sum is -0.0
        wall_seconds: clock.elapsed().as_secs_f64(),
        counts: counts.clone(),
        files: rows,
        skipped,
    };
    out.write(SUMMARY.as_ref(), &serde_json::to_vec_pretty(&summary)?)?;

    // The report.
    let where_ = out.root().display();
    if to_run.is_empty() {
        eprintln!(
            "Nothing to do: all {} file(s) under {where_} are up to date ({} done, {} failed earlier on bad input; --force redoes everything).",
            counts.files, counts.done, counts.failed
        );
    } else {
        eprintln!(
            "{} done this run ({:.2} h of audio in {}), {} unchanged, {} failed, {} pending; {} skipped ({} not audio). Summary: {where_}/{SUMMARY}",
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
    if let Some(table) = failure_table(&summary.files) {
        eprint!("{table}");
    }
    if let Some(e) = &stopped {
        eprintln!(
            "Stopped early: every further file would fail the same way ({e}). Fix it and run the same command again: finished files are kept."
        );
    }
    if interrupted {
        eprintln!(
            "Interrupted: {} file(s) not finished. The journal is consistent: run the same command again to resume.",
            counts.pending
        );
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(if counts.failed > 0 { EXIT_FAILED } else { 0 })
}
