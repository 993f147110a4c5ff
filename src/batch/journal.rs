//! The journal: `journal.jsonl` at the top of the output folder, one JSON record per line, appended and
//! fsynced as each file changes state, so that a run stopped at any instant (Ctrl-C, a crash, a
//! reboot) leaves a consistent record of what is finished.
//!
//! A record names the input by its canonical path and carries its size and modification time:
//! a changed input no longer matches and is redone. It also carries the settings that shape the
//! result (route, language, diarization, split-only, what answers): other settings redo the
//! file. States, in order: `planned` (work started), `uploaded` (an async part is on the server:
//! its server file name, so a rerun polls it instead of uploading again), `done` (every output
//! written), `failed` (the error; whether a rerun should try again).
//!
//! On open the journal is read (a torn last line from a kill is ignored), reduced to the latest
//! state of each input and rewritten atomically, then appended to.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::outputs::{OutDir, JOURNAL};
use super::walk::InputFile;
use crate::{Error, Result};

/// Identifies an input and its content: a changed size, time or content hash is a new input.
///
/// A local batch keys inputs by canonical path, size and modification time. A batch shared
/// by several machines through a [`super::WorkQueue`] keys them by their output name (the
/// same on every machine), size and the SHA-256 of their content (times differ between
/// copies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileKey {
    /// The canonical path (itself when it is UTF-8, else `bytes:` and its bytes in hex), or
    /// in a shared batch the output name.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the Unix epoch (0 in a shared batch).
    pub mtime_ns: i64,
    /// SHA-256 of the content, in hex (shared batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl FileKey {
    /// The key of a walked input.
    pub(crate) fn of(f: &InputFile) -> FileKey {
        FileKey {
            path: path_text(&f.canonical),
            size: f.size,
            mtime_ns: f.mtime_ns,
            content: None,
        }
    }

    /// The key of a walked input in a shared batch: its output name, size, and content hash
    /// when it is known (`None` before the file is read: then only name and size are
    /// compared).
    pub(crate) fn shared(name: String, f: &InputFile, content: Option<String>) -> FileKey {
        FileKey {
            path: name,
            size: f.size,
            mtime_ns: 0,
            content,
        }
    }

    /// True when `self` and `other` name the same input with the same content: equal paths
    /// and sizes, and equal content hashes when both have one, else equal times.
    pub fn same_input(&self, other: &FileKey) -> bool {
        self.path == other.path
            && self.size == other.size
            && match (&self.content, &other.content) {
                (Some(a), Some(b)) => a == b,
                (None, None) => self.mtime_ns == other.mtime_ns,
                // A shared batch offers files before hashing them: the worker that takes a
                // file compares the hashes.
                _ => true,
            }
    }
}

/// A path as journal text: itself when it is UTF-8, else `bytes:` and its bytes in hex (so two
/// different names never share a key).
pub fn path_text(p: &Path) -> String {
    match p.to_str() {
        Some(s) if !s.starts_with("bytes:") => s.to_string(),
        _ => format!("bytes:{}", hex(p.as_os_str().as_encoded_bytes())),
    }
}

/// Bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

use crate::pipeline::UploadedPart;

/// A file's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Work on it started.
    Planned,
    /// Async parts uploaded so far (cumulative).
    Uploaded {
        /// Every part on the server.
        parts: Vec<UploadedPart>,
    },
    /// Every output written.
    Done {
        /// Audio duration in seconds.
        audio_secs: f64,
        /// The outputs, relative to the output folder.
        outputs: Vec<String>,
    },
    /// It failed.
    Failed {
        /// The error, for people.
        error: String,
        /// True when a rerun should try again (network, server faults); false for a bad input,
        /// which is retried only when it changes or with `force`.
        retry: bool,
        /// Async parts still valid on the server, to resume with.
        parts: Vec<UploadedPart>,
    },
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The input.
    pub key: FileKey,
    /// The settings that shape the result.
    pub settings: String,
    /// The output base, relative to the output folder.
    pub out: String,
    /// Seconds since the Unix epoch when written.
    pub at: u64,
    /// The state.
    #[serde(flatten)]
    pub state: State,
}

/// Where a batch keeps each input's state, so that a stopped run resumes where it was: the
/// local [`FileJournal`] by default; a shared work queue can stand in.
///
/// The batch appends a [`Record`] at each change of an input's state (work started, an async
/// part uploaded, done, failed) and goes on only once [`Journal::append`] returned: a record
/// that was appended must survive a crash. Errors from `append` fail the file concerned (it is
/// retried on the next run); the batch goes on with the others.
pub trait Journal: Send + Sync {
    /// The latest state recorded for the input whose [`FileKey::path`] is `path` (its size,
    /// time or settings may differ from the current ones: the batch compares), with the async
    /// parts of successive `uploaded` records gathered.
    fn latest(&self, path: &str) -> Option<Record>;
    /// [`Journal::latest`], failing when the journal cannot be read (a journal on a server
    /// that is unreachable) instead of answering that nothing is known. Default: `latest`.
    fn try_latest(&self, path: &str) -> Result<Option<Record>> {
        Ok(self.latest(path))
    }
    /// [`Journal::try_latest`] of each of `paths`, in order. The default asks one by one; a
    /// journal on a server answers many in one round trip.
    fn latest_many(&self, paths: &[&str]) -> Result<Vec<Option<Record>>> {
        paths.iter().map(|p| self.try_latest(p)).collect()
    }
    /// Records `record` durably.
    fn append(&self, record: &Record) -> Result<()>;
}

/// What the journal says to do with an input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Finished before with these settings: nothing to do.
    Finished {
        /// Audio seconds of the earlier run.
        audio_secs: f64,
    },
    /// Failed before on a bad input that has not changed: not retried without `force`.
    FailedBefore {
        /// The earlier error.
        error: String,
    },
    /// To do; `resume` holds async parts already on the server.
    Todo {
        /// Parts to poll instead of uploading again.
        resume: Vec<UploadedPart>,
    },
}

/// The default [`Journal`]: `journal.jsonl` in the output folder, one JSON [`Record`] per line,
/// each appended and synced to disk before the batch goes on.
#[derive(Debug)]
pub struct FileJournal {
    inner: Mutex<Inner>,
    ignored_lines: usize,
}

#[derive(Debug)]
struct Inner {
    file: fs::File,
    latest: HashMap<String, Record>,
}

impl FileJournal {
    /// Lines that could not be read when opening (a torn last line after a kill); they are
    /// dropped.
    pub fn ignored_lines(&self) -> usize {
        self.ignored_lines
    }

    /// Reads, compacts and opens the journal in `out`.
    pub(crate) fn open(out: &OutDir) -> Result<FileJournal> {
        let path = out.root().join(JOURNAL);
        let mut latest: HashMap<String, Record> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut ignored_lines = 0;
        match fs::File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).split(b'\n') {
                    let line = line.map_err(|e| Error::io(Some(&path), e))?;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Record>(&line) {
                        Ok(r) => {
                            if !latest.contains_key(&r.key.path) {
                                order.push(r.key.path.clone());
                            }
                            latest.insert(r.key.path.clone(), merge(latest.get(&r.key.path), r));
                        }
                        Err(_) => ignored_lines += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(Some(&path), e)),
        }
        let mut compact = Vec::new();
        for k in &order {
            if let Some(r) = latest.get(k) {
                serde_json::to_writer(&mut compact, r)
                    .map_err(|e| Error::internal(format!("encoding a journal record: {e}")))?;
                compact.push(b'\n');
            }
        }
        out.write(JOURNAL.as_ref(), &compact)?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(Some(&path), e))?;
        Ok(FileJournal {
            inner: Mutex::new(Inner { file, latest }),
            ignored_lines,
        })
    }
}

impl Journal for FileJournal {
    fn latest(&self, path: &str) -> Option<Record> {
        self.inner.lock().ok()?.latest.get(path).cloned()
    }

    fn append(&self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record)
            .map_err(|e| Error::internal(format!("encoding a journal record: {e}")))?;
        line.push(b'\n');
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::internal("the journal's lock is poisoned"))?;
        let io = |e| Error::io(Some(Path::new(JOURNAL)), e);
        inner.file.write_all(&line).map_err(io)?;
        inner.file.sync_data().map_err(io)?;
        let merged = merge(inner.latest.get(&record.key.path), record.clone());
        inner.latest.insert(record.key.path.clone(), merged);
        Ok(())
    }
}

impl Plan {
    /// What to do with an input, given its latest record, the current settings and output
    /// name. `outputs_exist` checks that a finished file's outputs are still there.
    pub(crate) fn of(
        latest: Option<&Record>,
        key: &FileKey,
        settings: &str,
        out: &str,
        outputs_exist: impl Fn(&[String]) -> bool,
    ) -> Plan {
        let todo = Plan::Todo { resume: Vec::new() };
        let Some(r) = latest else {
            return todo;
        };
        if !r.key.same_input(key) || r.settings != settings {
            return todo;
        }
        match &r.state {
            State::Done {
                audio_secs,
                outputs,
            } if r.out == out && outputs_exist(outputs) => Plan::Finished {
                audio_secs: *audio_secs,
            },
            State::Done { .. } | State::Planned => todo,
            State::Failed {
                error,
                retry: false,
                ..
            } if r.out == out => Plan::FailedBefore {
                error: error.clone(),
            },
            State::Failed { parts, .. } | State::Uploaded { parts } => Plan::Todo {
                resume: parts.clone(),
            },
        }
    }
}

/// Folds a new record onto the previous one for the same path: an `uploaded` record adds its
/// parts to those already known for the same input and settings.
fn merge(prev: Option<&Record>, mut r: Record) -> Record {
    if let (
        Some(Record {
            key,
            settings,
            state: State::Uploaded { parts: old } | State::Failed { parts: old, .. },
            ..
        }),
        State::Uploaded { parts },
    ) = (prev, &mut r.state)
    {
        if key.same_input(&r.key) && *settings == r.settings {
            // Parts are numbered per channel when channels are transcribed separately.
            for p in old {
                if !parts
                    .iter()
                    .any(|q| (q.channel, q.part) == (p.channel, p.part))
                {
                    parts.push(p.clone());
                }
            }
            parts.sort_by_key(|p| (p.channel, p.part));
        }
    }
    r
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, size: u64) -> FileKey {
        FileKey {
            path: p.into(),
            size,
            mtime_ns: 7,
            content: None,
        }
    }

    fn rec(k: &FileKey, state: State) -> Record {
        Record {
            key: k.clone(),
            settings: "s".into(),
            out: "o".into(),
            at: 1,
            state,
        }
    }

    fn part(i: usize, n: &str) -> UploadedPart {
        UploadedPart {
            part: i,
            parts_total: 2,
            file_name: n.into(),
            offset: i as u64 * 1000,
            end: (i as u64 + 1) * 1000,
            time_map: None,
            lead_in: 0,
            file_len: 2000,
            channel: None,
            channels: Vec::new(),
            file_channels: 1,
        }
    }

    fn tmp_out() -> (tempfile::TempDir, OutDir) {
        let d = tempfile::tempdir().unwrap();
        let out = OutDir::open(&d.path().join("out"), &[], &[]).unwrap();
        (d, out)
    }

    #[test]
    fn parts_of_two_channels_with_the_same_number_are_both_kept() {
        let (_d, out) = tmp_out();
        let k = key("/call", 1);
        let on = |c: u16, n: &str| UploadedPart {
            channel: Some(c),
            channels: vec![0, 1],
            file_channels: 2,
            parts_total: 1,
            ..part(0, n)
        };
        {
            let j = FileJournal::open(&out).unwrap();
            j.append(&rec(&k, State::Planned)).unwrap();
            for (c, n) in [(1, "asr_c1"), (0, "asr_c0")] {
                j.append(&rec(
                    &k,
                    State::Uploaded {
                        parts: vec![on(c, n)],
                    },
                ))
                .unwrap();
            }
        }
        let j = FileJournal::open(&out).unwrap();
        assert_eq!(
            Plan::of(j.latest(&k.path).as_ref(), &k, "s", "o", |_| true),
            Plan::Todo {
                resume: vec![on(0, "asr_c0"), on(1, "asr_c1")]
            }
        );
    }

    #[test]
    fn states_survive_reopening_and_plan_the_rerun() {
        let (_d, out) = tmp_out();
        let (a, b, c, e, f) = (
            key("/a", 1),
            key("/b", 2),
            key("/c", 3),
            key("/e", 4),
            key("/f", 5),
        );
        {
            let j = FileJournal::open(&out).unwrap();
            for k in [&a, &b, &c, &e, &f] {
                j.append(&rec(k, State::Planned)).unwrap();
            }
            j.append(&rec(
                &b,
                State::Uploaded {
                    parts: vec![part(0, "asr_b0")],
                },
            ))
            .unwrap();
            j.append(&rec(
                &b,
                State::Uploaded {
                    parts: vec![part(1, "asr_b1")],
                },
            ))
            .unwrap();
            j.append(&rec(
                &c,
                State::Done {
                    audio_secs: 2.5,
                    outputs: vec!["c.json".into()],
                },
            ))
            .unwrap();
            let failed = |retry| State::Failed {
                error: "bad".into(),
                retry,
                parts: vec![],
            };
            j.append(&rec(&e, failed(false))).unwrap();
            j.append(&rec(&f, failed(true))).unwrap();
        }
        let j = FileJournal::open(&out).unwrap();
        let plan = |k: &FileKey| Plan::of(j.latest(&k.path).as_ref(), k, "s", "o", |_| true);
        assert_eq!(plan(&a), Plan::Todo { resume: vec![] });
        assert_eq!(
            plan(&b),
            Plan::Todo {
                resume: vec![part(0, "asr_b0"), part(1, "asr_b1")]
            }
        );
        assert_eq!(plan(&c), Plan::Finished { audio_secs: 2.5 });
        assert_eq!(
            plan(&e),
            Plan::FailedBefore {
                error: "bad".into()
            }
        );
        assert_eq!(plan(&f), Plan::Todo { resume: vec![] });
        assert_eq!(plan(&key("/new", 1)), Plan::Todo { resume: vec![] });
        // A changed input, other settings, another output name or a lost output: redone.
        assert_eq!(
            Plan::of(j.latest("/c").as_ref(), &key("/c", 4), "s", "o", |_| true),
            Plan::Todo { resume: vec![] }
        );
        assert_eq!(
            Plan::of(j.latest(&c.path).as_ref(), &c, "other", "o", |_| true),
            Plan::Todo { resume: vec![] }
        );
        assert_eq!(
            Plan::of(j.latest(&c.path).as_ref(), &c, "s", "o2", |_| true),
            Plan::Todo { resume: vec![] }
        );
        assert_eq!(
            Plan::of(j.latest(&c.path).as_ref(), &c, "s", "o", |_| false),
            Plan::Todo { resume: vec![] }
        );
        // The changed input's uploads are not reused either.
        assert_eq!(
            Plan::of(j.latest("/b").as_ref(), &key("/b", 9), "s", "o", |_| true),
            Plan::Todo { resume: vec![] }
        );
        // Compacted: one line per input.
        let text = fs::read_to_string(out.root().join(JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_removed() {
        let (_d, out) = tmp_out();
        let a = key("/a", 1);
        {
            let j = FileJournal::open(&out).unwrap();
            j.append(&rec(
                &a,
                State::Done {
                    audio_secs: 1.0,
                    outputs: vec![],
                },
            ))
            .unwrap();
        }
        let path = out.root().join(JOURNAL);
        let mut text = fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"key":{"path":"/b","si"#);
        fs::write(&path, &text).unwrap();
        let j = FileJournal::open(&out).unwrap();
        assert_eq!(j.ignored_lines(), 1);
        assert_eq!(
            Plan::of(j.latest(&a.path).as_ref(), &a, "s", "o", |_| true),
            Plan::Finished { audio_secs: 1.0 }
        );
        j.append(&rec(&key("/c", 1), State::Planned)).unwrap();
        drop(j);
        let j = FileJournal::open(&out).unwrap();
        assert_eq!(j.ignored_lines(), 0);
        assert!(j.latest("/c").is_some());
    }

    #[test]
    fn a_new_plan_forgets_old_uploads() {
        let (_d, out) = tmp_out();
        let a = key("/a", 1);
        let j = FileJournal::open(&out).unwrap();
        j.append(&rec(
            &a,
            State::Uploaded {
                parts: vec![part(0, "x")],
            },
        ))
        .unwrap();
        j.append(&rec(&a, State::Planned)).unwrap();
        j.append(&rec(
            &a,
            State::Uploaded {
                parts: vec![part(1, "y")],
            },
        ))
        .unwrap();
        drop(j);
        let j = FileJournal::open(&out).unwrap();
        assert_eq!(
            Plan::of(j.latest(&a.path).as_ref(), &a, "s", "o", |_| true),
            Plan::Todo {
                resume: vec![part(1, "y")]
            }
        );
    }

    #[test]
    fn non_utf8_paths_get_distinct_keys() {
        assert_eq!(path_text(Path::new("/a/ñ b.wav")), "/a/ñ b.wav");
        assert!(path_text(Path::new("bytes:x")).starts_with("bytes:6279"));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let p = Path::new(std::ffi::OsStr::from_bytes(b"/a/\xff.wav"));
            assert_eq!(path_text(p), "bytes:2f612fff2e776176");
        }
    }
}
