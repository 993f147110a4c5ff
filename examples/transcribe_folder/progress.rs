//! Progress: indicatif bars on a terminal (files done/total, audio hours done, speed in
//! x-realtime, ETA), or plain `tracing` log lines when stderr is not a terminal or with
//! `--quiet`.

use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use asr_pipeline::batch::{Event, JobCounts};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress of the batch.
pub struct Progress {
    bars: Option<Bars>,
    state: Mutex<Counters>,
    started: Instant,
}

struct Bars {
    multi: MultiProgress,
    files: ProgressBar,
    audio: ProgressBar,
}

#[derive(Default)]
struct Counters {
    /// Files to do in this run (`None` until the batch says).
    total_files: Option<u64>,
    files_done: u64,
    failed: u64,
    /// Audio seconds of finished files.
    audio_done: f64,
    /// Audio seconds reported by files still running.
    audio_running: f64,
    /// Expected audio seconds of the files to do, when known.
    audio_total: Option<f64>,
    /// The whole job's counts, in a job shared through a queue.
    job: Option<JobCounts>,
    /// When the job's counts were last logged (log mode).
    job_logged: Option<Instant>,
}

impl Progress {
    /// Progress of a batch; bars when `bars` (a terminal without `--quiet`), shown once the
    /// batch says how many files it will process.
    pub fn new(bars: bool) -> Progress {
        let bars = bars.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
            let files = multi.add(ProgressBar::new(0));
            files.set_style(
                ProgressStyle::with_template("{spinner} files {pos}/{len} {wide_bar} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let audio = multi.add(ProgressBar::new_spinner());
            audio.set_style(
                ProgressStyle::with_template("  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            files.enable_steady_tick(Duration::from_millis(250));
            Bars {
                multi,
                files,
                audio,
            }
        });
        Progress {
            bars,
            state: Mutex::new(Counters::default()),
            started: Instant::now(),
        }
    }

    /// Handles one of the batch's events.
    pub fn on(&self, e: &Event<'_>) {
        match e {
            Event::Planned {
                files,
                to_do,
                skipped,
                audio_secs,
                ..
            } => {
                tracing::info!(
                    "{files} audio file(s) found, {to_do} to do; {skipped} path(s) skipped"
                );
                self.planned(*to_do as u64, *audio_secs)
            }
            Event::FileStarted { input } => self.file_started(&input.to_string_lossy()),
            Event::Audio { seconds } => self.audio(*seconds),
            Event::FileFinished {
                input,
                ok,
                audio_secs,
                reported_secs,
            } => self.file_finished(&input.to_string_lossy(), *ok, *audio_secs, *reported_secs),
            Event::Job(c) => self.job_counts(*c),
            _ => {}
        }
    }

    /// The files to do, known: the bars appear (when there is something to do).
    fn planned(&self, total_files: u64, audio_total: Option<f64>) {
        if let Ok(mut s) = self.state.lock() {
            s.total_files = Some(total_files);
            s.audio_total = audio_total;
        }
        if let Some(b) = &self.bars {
            if total_files > 0 {
                b.files.set_length(total_files);
                b.multi
                    .set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            }
        }
    }

    /// A shared job's counts: the files bar shows the whole job.
    fn job_counts(&self, c: JobCounts) {
        let log_now = {
            let Ok(mut s) = self.state.lock() else { return };
            let changed = s.job != Some(c);
            s.job = Some(c);
            let due = s
                .job_logged
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
            if changed && due && self.bars.is_none() {
                s.job_logged = Some(Instant::now());
                true
            } else {
                false
            }
        };
        if let Some(b) = &self.bars {
            b.files.set_length(c.files);
            b.files.set_position(c.done + c.failed);
            b.files.set_message(format!(
                "(whole job: {} in progress, {} queued, {} failed)",
                c.running, c.queued, c.failed
            ));
            if c.files > 0 {
                b.multi
                    .set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            }
        } else if log_now {
            tracing::info!(
                "job: {}/{} file(s) finished ({} failed), {} in progress, {} queued",
                c.done + c.failed,
                c.files,
                c.failed,
                c.running,
                c.queued
            );
        }
    }

    /// The shared job's latest counts, if this is one of its workers.
    pub fn job(&self) -> Option<JobCounts> {
        self.state.lock().ok().and_then(|s| s.job)
    }

    /// Files the batch processes in this run, once it said.
    pub fn to_do(&self) -> Option<u64> {
        self.state.lock().ok().and_then(|s| s.total_files)
    }

    /// The multi-bar, to route log lines above the bars.
    pub fn multi(&self) -> Option<MultiProgress> {
        self.bars.as_ref().map(|b| b.multi.clone())
    }

    /// A running file reports `delta` more audio seconds processed.
    fn audio(&self, delta: f64) {
        if let Ok(mut s) = self.state.lock() {
            s.audio_running += delta;
        }
        self.redraw();
    }

    /// A file finished: `ok` or failed; `audio_secs` its duration; `running_reported` the
    /// seconds it had reported through [`Progress::audio`].
    fn file_finished(&self, name: &str, ok: bool, audio_secs: f64, running_reported: f64) {
        let (done, total, line) = {
            let Ok(mut s) = self.state.lock() else { return };
            s.files_done += 1;
            if !ok {
                s.failed += 1;
            }
            s.audio_running = (s.audio_running - running_reported).max(0.0);
            s.audio_done += audio_secs;
            (
                s.files_done,
                s.total_files.unwrap_or(0),
                self.status_line(&s),
            )
        };
        if let Some(b) = &self.bars {
            if self.job().is_none() {
                b.files.set_position(done);
            }
            b.audio.set_message(line);
        } else if ok {
            tracing::info!("[{done}/{total}] done {name} ({audio_secs:.1} s of audio); {line}");
        } else {
            tracing::warn!("[{done}/{total}] FAILED {name}; {line}");
        }
    }

    /// Shows which file started (bars only: log mode stays one line per finished file).
    fn file_started(&self, name: &str) {
        if let Some(b) = &self.bars {
            b.files.set_message(name.to_string());
        } else {
            tracing::debug!("started {name}");
        }
    }

    fn redraw(&self) {
        if let Some(b) = &self.bars {
            if let Ok(s) = self.state.lock() {
                b.audio.set_message(self.status_line(&s));
            }
        }
    }

    /// "0.52 h of audio done, 35.1x realtime, ETA 00:12:31, 1 failed".
    fn status_line(&self, s: &Counters) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let audio = s.audio_done + s.audio_running;
        let speed = audio / elapsed;
        let eta = match s.audio_total {
            Some(total) if speed > 0.0 && total > 0.0 => Some((total - audio).max(0.0) / speed),
            _ if s.files_done > 0 => Some(
                elapsed / s.files_done as f64
                    * s.total_files.unwrap_or(0).saturating_sub(s.files_done) as f64,
            ),
            _ => None,
        };
        let mut line = format!(
            "{:.2} h of audio done, {speed:.1}x realtime",
            audio / 3600.0
        );
        match eta {
            Some(e) => line.push_str(&format!(", ETA {}", hms(e))),
            None => line.push_str(", ETA --:--:--"),
        }
        if s.failed > 0 {
            line.push_str(&format!(", {} failed", s.failed));
        }
        line
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Some(b) = &self.bars {
            b.files.finish_and_clear();
            b.audio.finish_and_clear();
            let _ = b.multi.clear();
        }
    }
}

/// Seconds as `HH:MM:SS`.
pub fn hms(secs: f64) -> String {
    let t = if secs.is_finite() {
        secs.max(0.0).round() as u64
    } else {
        0
    };
    format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// A `tracing` writer for stderr that prints above the progress bars when they are shown.
#[derive(Clone)]
pub struct LogWriter {
    multi: std::sync::Arc<Mutex<Option<MultiProgress>>>,
}

impl LogWriter {
    /// A writer straight to stderr until [`LogWriter::attach`] is called.
    pub fn new() -> LogWriter {
        LogWriter {
            multi: std::sync::Arc::new(Mutex::new(None)),
        }
    }

    /// From now on, lines go above these bars.
    pub fn attach(&self, m: Option<MultiProgress>) {
        if let Ok(mut g) = self.multi.lock() {
            *g = m;
        }
    }
}

/// One log event's bytes, printed when dropped.
pub struct LineBuf {
    buf: Vec<u8>,
    multi: Option<MultiProgress>,
}

impl Write for LineBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        match &self.multi {
            Some(m) if !m.is_hidden() => {
                let _ = m.println(text.trim_end_matches('\n'));
            }
            _ => {
                let _ = io::stderr().lock().write_all(&self.buf);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineBuf;
    fn make_writer(&'a self) -> LineBuf {
        LineBuf {
            buf: Vec::new(),
            multi: self.multi.lock().ok().and_then(|g| g.clone()),
        }
    }
}
