//! `summary.json` at the top of the output folder, and the table of failures for a terminal.

use serde::Serialize;

/// The whole batch, as written to `summary.json`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Format version of this file.
    pub version: u32,
    /// `transcribe` or `split-only`.
    pub mode: String,
    /// True when the bundled emulator answered (placeholder transcripts).
    pub emulator: bool,
    /// The API base URL used (absent when split-only).
    pub endpoint: Option<String>,
    /// The settings that shape results (route, language, diarization).
    pub settings: String,
    /// The inputs as given.
    pub inputs: Vec<String>,
    /// Seconds since the Unix epoch at the start and end of this run.
    pub started_at: u64,
    /// See `started_at`.
    pub finished_at: u64,
    /// True when the run was interrupted (Ctrl-C): some files are still to do.
    pub interrupted: bool,
    /// The error that stopped the run early (credentials refused, quota used up), if any:
    /// the files not reached are pending.
    pub stopped_by: Option<String>,
    /// Counts.
    pub counts: Counts,
    /// Audio seconds of every finished file (this run and earlier ones).
    pub audio_seconds: f64,
    /// Audio seconds processed in this run.
    pub audio_seconds_this_run: f64,
    /// Wall-clock seconds of this run.
    pub wall_seconds: f64,
    /// Every input file, in walk order.
    pub files: Vec<FileRow>,
    /// Paths left out (not audio, loops, duplicates, special files).
    pub skipped: Vec<SkipRow>,
}

/// Counts over the batch.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Input files considered (audio, or named like audio).
    pub files: usize,
    /// Finished (in this run or an earlier one).
    pub done: usize,
    /// Finished in this run.
    pub done_this_run: usize,
    /// Finished earlier and left alone.
    pub unchanged: usize,
    /// Failed.
    pub failed: usize,
    /// Not finished because the run was interrupted.
    pub pending: usize,
    /// Paths left out (`skipped`).
    pub skipped: usize,
    /// Of those, the files whose content is not audio.
    pub not_audio: usize,
}

/// One input file's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FileRow {
    /// The input path as reached from the command line.
    pub input: String,
    /// The output base relative to `the output folder` (outputs are this plus `.json`, ...).
    pub output: String,
    /// `done`, `failed` or `pending`.
    pub status: Status,
    /// True when this run did the work (false: finished or failed in an earlier run).
    pub this_run: bool,
    /// Audio seconds, when known.
    pub audio_seconds: Option<f64>,
    /// The outputs written, relative to `the output folder`.
    pub outputs: Vec<String>,
    /// The error, for a failed file.
    pub error: Option<String>,
}

/// A file's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Every output written.
    Done,
    /// Failed: see `error` and `<output>.error.json`.
    Failed,
    /// Not finished (interrupted run).
    Pending,
}

/// A path left out.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SkipRow {
    /// The path.
    pub path: String,
    /// Why (`not_audio`, `symlink_loop`, `duplicate`, `not_a_file`, `unreadable`).
    pub reason: String,
    /// Details for people.
    pub detail: String,
}

/// Counts the rows.
pub(crate) fn count(files: &[FileRow], skipped: &[SkipRow]) -> Counts {
    let mut c = Counts {
        files: files.len(),
        skipped: skipped.len(),
        not_audio: skipped.iter().filter(|s| s.reason == "not_audio").count(),
        ..Counts::default()
    };
    for f in files {
        match f.status {
            Status::Done => {
                c.done += 1;
                if f.this_run {
                    c.done_this_run += 1;
                } else {
                    c.unchanged += 1;
                }
            }
            Status::Failed => c.failed += 1,
            Status::Pending => c.pending += 1,
        }
    }
    c
}

impl Summary {
    /// The table of failed files, for a terminal: one row per failure, each error on one
    /// line; `None` when nothing failed.
    pub fn failure_table(&self) -> Option<String> {
        failure_table(&self.files)
    }
}

/// See [`Summary::failure_table`].
fn failure_table(files: &[FileRow]) -> Option<String> {
    let failed: Vec<&FileRow> = files
        .iter()
        .filter(|f| f.status == Status::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let width = failed
        .iter()
        .map(|f| f.input.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 60);
    let mut s = format!("{} file(s) failed:\n", failed.len());
    s.push_str(&format!("  {:<width$}  ERROR\n", "FILE"));
    for f in failed {
        let err = f
            .error
            .as_deref()
            .unwrap_or("unknown error")
            .replace('\n', " ");
        s.push_str(&format!("  {:<width$}  {err}\n", f.input));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(input: &str, status: Status, this_run: bool) -> FileRow {
        FileRow {
            input: input.into(),
            output: input.into(),
            status,
            this_run,
            audio_seconds: None,
            outputs: vec![],
            error: (status == Status::Failed).then(|| format!("{input} broke\nbadly")),
        }
    }

    #[test]
    fn counts_every_kind() {
        let files = vec![
            row("a", Status::Done, true),
            row("b", Status::Done, false),
            row("c", Status::Failed, true),
            row("d", Status::Pending, false),
        ];
        let skipped = vec![
            SkipRow {
                path: "x.txt".into(),
                reason: "not_audio".into(),
                detail: String::new(),
            },
            SkipRow {
                path: "loop".into(),
                reason: "symlink_loop".into(),
                detail: String::new(),
            },
        ];
        assert_eq!(
            count(&files, &skipped),
            Counts {
                files: 4,
                done: 2,
                done_this_run: 1,
                unchanged: 1,
                failed: 1,
                pending: 1,
                skipped: 2,
                not_audio: 1,
            }
        );
    }

    #[test]
    fn the_table_lists_only_failures_one_per_line() {
        assert_eq!(failure_table(&[row("a", Status::Done, true)]), None);
        let t = failure_table(&[
            row("ok.wav", Status::Done, true),
            row("dir/bad file.wav", Status::Failed, true),
            row("é.mp3", Status::Failed, false),
        ])
        .unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("2 file(s) failed"));
        assert!(lines[2].contains("dir/bad file.wav") && lines[2].contains("broke badly"));
        assert!(lines[3].contains("é.mp3"));
        assert!(!t.contains("ok.wav"));
    }
}
