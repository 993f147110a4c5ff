//! Finding the input files: files and folders, walked recursively in a deterministic order
//! (names sorted bytewise), symbolic links followed with loops detected, special files and
//! non-audio files skipped and counted.
//!
//! Whether a file is audio is decided by its content (see [`probe`]), never by its name. The
//! name only matters for a file whose content is not recognised: one named like audio
//! (`.wav`, `.mp3`, ...) is kept and fails visibly (the user meant it as a recording: it is
//! empty, corrupt or in an unsupported format), any other is skipped as "not audio".

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

/// An input file to process.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path as reached from the command line (input root joined with the walked names).
    pub path: PathBuf,
    /// The path with every symbolic link resolved: identifies the file in the journal.
    pub canonical: PathBuf,
    /// Where it sits in the output mirror: a relative path of plain names only, its last
    /// component the input's file name.
    pub rel: PathBuf,
    /// Size in bytes when walked.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (0 when unavailable).
    pub mtime_ns: i64,
    /// What the content probe found.
    pub kind: InputKind,
}

/// What the content probe found for a kept file.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// Recognised audio; the container or codec found.
    Audio {
        /// The format's name, e.g. `WAV`.
        format: String,
        /// Audio duration in seconds, when the header tells it cheaply.
        duration_secs: Option<f64>,
    },
    /// Named like audio, but the content is empty or not recognised: reported as failed.
    BadAudio {
        /// Why the content is not usable.
        reason: String,
    },
}

/// A path left out, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The path as reached from the command line.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a path was skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// The content is not audio (and the name does not claim it is).
    NotAudio(String),
    /// A symbolic link leads back into a folder being walked.
    SymlinkLoop,
    /// The same file or folder was already reached by another path.
    Duplicate(PathBuf),
    /// Neither a regular file nor a folder (device, pipe, socket, dangling link).
    NotAFile,
    /// It could not be read.
    Unreadable(String),
}

impl SkipReason {
    /// A short machine-readable name, for the summary.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotAudio(_) => "not_audio",
            SkipReason::SymlinkLoop => "symlink_loop",
            SkipReason::Duplicate(_) => "duplicate",
            SkipReason::NotAFile => "not_a_file",
            SkipReason::Unreadable(_) => "unreadable",
        }
    }

    /// A sentence for people.
    pub fn describe(&self) -> String {
        match self {
            SkipReason::NotAudio(d) => format!("not audio ({d})"),
            SkipReason::SymlinkLoop => "symbolic link loop".into(),
            SkipReason::Duplicate(p) => format!("same file as {}", p.display()),
            SkipReason::NotAFile => "not a regular file".into(),
            SkipReason::Unreadable(e) => format!("unreadable: {e}"),
        }
    }
}

/// Everything the walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Files to process, in walk order.
    pub files: Vec<InputFile>,
    /// Paths left out.
    pub skipped: Vec<Skipped>,
}

/// The result of probing a file's first bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Audio in the named format.
    Audio {
        /// The format's name.
        format: String,
        /// Duration in seconds, when cheaply known.
        duration_secs: Option<f64>,
    },
    /// The file has no bytes.
    Empty,
    /// The content is not a recognised audio format.
    NotAudio(String),
    /// The content is audio, but its header is broken or its variant unsupported.
    BrokenAudio(String),
}

/// Extensions that announce audio: a file with one of them whose content is not recognised is
/// reported as a failed recording rather than skipped.
const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "m4a", "mp4", "aac", "amr", "awb", "3gp",
    "3ga", "wma", "webm", "aif", "aiff", "caf",
];

fn has_audio_extension(p: &Path) -> bool {
    p.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// Probes a file's content with the decode module (magic bytes and header, never the name):
/// is it audio, which format, how long.
pub fn probe(path: &Path) -> io::Result<Probe> {
    use crate::decode::Decoder;
    use crate::ErrorKind as K;
    match Decoder::open(path) {
        Ok(d) => {
            let info = d.info();
            let duration_secs = info
                .frames_hint
                .map(|f| f as f64 / f64::from(info.sample_rate.get()));
            Ok(Probe::Audio {
                format: info.format.name().to_string(),
                duration_secs,
            })
        }
        Err(e) => match e.kind() {
            K::Empty { .. } => Ok(Probe::Empty),
            K::UnrecognizedFormat { detail, .. } => Ok(Probe::NotAudio(detail.clone())),
            K::Io { source, .. } => Err(io::Error::new(source.kind(), e.to_string())),
            // Recognised as audio, but broken or unsupported: a recording that fails.
            _ => Ok(Probe::BrokenAudio(e.to_string())),
        },
    }
}

/// Walks `inputs` in order. Each folder's entries are taken in bytewise name order.
///
/// Output mirror (`InputFile::rel`): with a single folder input, paths inside it; with several
/// inputs, each under its own name (the folder's or file's last component; a repeated name gets
/// `~2`, `~3`, ...). A single file input maps to its own name.
pub fn walk(inputs: &[PathBuf]) -> io::Result<Walked> {
    let mut w = Walker {
        out: Walked::default(),
        seen_files: HashSet::new(),
        seen_dirs: HashSet::new(),
        stack: Vec::new(),
    };
    let single = inputs.len() == 1;
    let mut root_names: HashSet<String> = HashSet::new();
    for input in inputs {
        let meta = fs::metadata(input)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", input.display())))?;
        let canonical = fs::canonicalize(input)?;
        let name = root_name(input, &canonical);
        let prefix = if single && meta.is_dir() {
            PathBuf::new()
        } else {
            let mut n = name.clone();
            let mut k = 1;
            while !root_names.insert(n.to_string_lossy().to_lowercase()) {
                k += 1;
                let mut s = name.clone();
                s.push(format!("~{k}"));
                n = s;
            }
            PathBuf::from(n)
        };
        if meta.is_dir() {
            w.dir(input, &prefix, canonical)?;
        } else {
            w.file(input.clone(), prefix, &meta);
        }
    }
    Ok(w.out)
}

fn root_name(input: &Path, canonical: &Path) -> OsString {
    input
        .components()
        .next_back()
        .and_then(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .or_else(|| canonical.file_name().map(OsStr::to_os_string))
        .unwrap_or_else(|| OsString::from("input"))
}

struct Walker {
    out: Walked,
    seen_files: HashSet<PathBuf>,
    seen_dirs: HashSet<PathBuf>,
    stack: Vec<PathBuf>,
}

impl Walker {
    fn dir(&mut self, path: &Path, rel: &Path, canonical: PathBuf) -> io::Result<()> {
        if self.stack.contains(&canonical) {
            self.skip(path, SkipReason::SymlinkLoop);
            return Ok(());
        }
        if !self.seen_dirs.insert(canonical.clone()) {
            self.skip(path, SkipReason::Duplicate(canonical));
            return Ok(());
        }
        let entries = match fs::read_dir(path) {
            Ok(rd) => rd.collect::<io::Result<Vec<_>>>(),
            Err(e) => Err(e),
        };
        let mut entries = match entries {
            Ok(e) => e,
            Err(e) => {
                self.skip(path, SkipReason::Unreadable(e.to_string()));
                return Ok(());
            }
        };
        entries.sort_by_key(|e| e.file_name());
        self.stack.push(canonical);
        for e in entries {
            let name = e.file_name();
            let child = path.join(&name);
            let child_rel = rel.join(&name);
            // Follows symbolic links: a link to a folder is walked (loops detected above).
            match fs::metadata(&child) {
                Ok(m) if m.is_dir() => match fs::canonicalize(&child) {
                    Ok(c) => self.dir(&child, &child_rel, c)?,
                    Err(e) => self.skip(&child, SkipReason::Unreadable(e.to_string())),
                },
                Ok(m) if m.is_file() => self.file(child, child_rel, &m),
                Ok(_) => self.skip(&child, SkipReason::NotAFile),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.skip(&child, SkipReason::NotAFile) // dangling link
                }
                Err(e) if is_loop_error(&e) => self.skip(&child, SkipReason::SymlinkLoop),
                Err(e) => self.skip(&child, SkipReason::Unreadable(e.to_string())),
            }
        }
        self.stack.pop();
        Ok(())
    }

    fn file(&mut self, path: PathBuf, rel: PathBuf, meta: &fs::Metadata) {
        if !meta.is_file() {
            self.skip(&path, SkipReason::NotAFile);
            return;
        }
        let canonical = match fs::canonicalize(&path) {
            Ok(c) => c,
            Err(e) => return self.skip(&path, SkipReason::Unreadable(e.to_string())),
        };
        if !self.seen_files.insert(canonical.clone()) {
            return self.skip(&path, SkipReason::Duplicate(canonical));
        }
        let kind = match probe(&path) {
            Ok(Probe::Audio {
                format,
                duration_secs,
            }) => InputKind::Audio {
                format,
                duration_secs,
            },
            Ok(Probe::Empty) if has_audio_extension(&path) => InputKind::BadAudio {
                reason: "the file is empty".into(),
            },
            Ok(Probe::NotAudio(d)) if has_audio_extension(&path) => InputKind::BadAudio {
                reason: format!(
                    "named like audio but the content is not a recognised audio format ({d})"
                ),
            },
            Ok(Probe::BrokenAudio(reason)) => InputKind::BadAudio { reason },
            Ok(Probe::Empty) => return self.skip(&path, SkipReason::NotAudio("empty".into())),
            Ok(Probe::NotAudio(d)) => return self.skip(&path, SkipReason::NotAudio(d)),
            Err(e) => return self.skip(&path, SkipReason::Unreadable(e.to_string())),
        };
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| match t.duration_since(UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_nanos()).ok(),
                Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
            })
            .unwrap_or(0);
        self.out.files.push(InputFile {
            path,
            canonical,
            rel,
            size: meta.len(),
            mtime_ns,
            kind,
        });
    }

    fn skip(&mut self, path: &Path, reason: SkipReason) {
        self.out.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
        });
    }
}

fn is_loop_error(e: &io::Error) -> bool {
    // ELOOP: too many levels of symbolic links (a link pointing at itself).
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(40) || e.raw_os_error() == Some(62)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, secs: f32) {
        crate::batch::testutil::wav(path, (secs * 16_000.0) as usize);
    }

    fn rels(w: &Walked) -> Vec<String> {
        w.files
            .iter()
            .map(|f| f.rel.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn probes_by_content_not_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no-extension");
        wav(&p, 0.5);
        match probe(&p).unwrap() {
            Probe::Audio {
                format,
                duration_secs,
            } => {
                assert_eq!(format, "WAV");
                assert!((duration_secs.unwrap() - 0.5).abs() < 1e-3);
            }
            other => panic!("{other:?}"),
        }
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/formats");
        for entry in fs::read_dir(fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                assert!(matches!(probe(&path).unwrap(), Probe::NotAudio(_)));
            } else {
                // Renamed to a text extension: still audio.
                let copy = d.path().join("renamed.txt");
                fs::copy(&path, &copy).unwrap();
                assert!(
                    matches!(probe(&copy).unwrap(), Probe::Audio { .. }),
                    "{}",
                    path.display()
                );
            }
        }
        let text = d.path().join("t.wav");
        fs::write(&text, "hello, this is text\n").unwrap();
        assert!(matches!(probe(&text).unwrap(), Probe::NotAudio(_)));
        let e = d.path().join("empty");
        fs::write(&e, b"").unwrap();
        assert_eq!(probe(&e).unwrap(), Probe::Empty);
        // A WAV header promising a format that makes no sense: audio, but broken.
        let mut bad = Vec::new();
        bad.extend_from_slice(b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\0\0");
        bad.extend_from_slice(&[0u8; 12]);
        bad.extend_from_slice(b"data\0\0\0\0");
        let b = d.path().join("bad");
        fs::write(&b, &bad).unwrap();
        assert!(
            matches!(probe(&b).unwrap(), Probe::BrokenAudio(_)),
            "{:?}",
            probe(&b)
        );
    }

    #[test]
    fn walks_recursively_in_sorted_order_and_classifies() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("b/deeper")).unwrap();
        fs::create_dir_all(r.join("a dir")).unwrap();
        wav(&r.join("z.wav"), 0.1);
        wav(&r.join("b/deeper/ñandú café.wav"), 0.1);
        wav(&r.join("a dir/x y.flac-but-wav"), 0.1);
        fs::write(r.join("b/notes.txt"), "some notes").unwrap();
        fs::write(r.join("b/empty.txt"), "").unwrap();
        fs::write(r.join("b/empty.wav"), "").unwrap();
        fs::write(r.join("b/corrupt.mp3"), "garbage that is not mp3").unwrap();
        let w = walk(&[r.to_path_buf()]).unwrap();
        assert_eq!(
            rels(&w),
            vec![
                "a dir/x y.flac-but-wav",
                "b/corrupt.mp3",
                "b/deeper/ñandú café.wav",
                "b/empty.wav",
                "z.wav"
            ]
        );
        let kinds: Vec<bool> = w
            .files
            .iter()
            .map(|f| matches!(f.kind, InputKind::Audio { .. }))
            .collect();
        assert_eq!(kinds, vec![true, false, true, false, true]);
        let mut skipped: Vec<(String, &str)> = w
            .skipped
            .iter()
            .map(|s| {
                let n = s.path.file_name().unwrap().to_string_lossy().into_owned();
                (n, s.reason.code())
            })
            .collect();
        skipped.sort();
        assert_eq!(
            skipped,
            vec![
                ("empty.txt".into(), "not_audio"),
                ("notes.txt".into(), "not_audio")
            ]
        );
        assert_eq!(
            w.files[4].size,
            fs::metadata(r.join("z.wav")).unwrap().len()
        );
        assert!(w.files[4].mtime_ns > 0);
    }

    #[test]
    fn several_inputs_each_get_their_own_name() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for sub in ["one/calls", "two/calls"] {
            fs::create_dir_all(r.join(sub)).unwrap();
            wav(&r.join(sub).join("a.wav"), 0.1);
        }
        wav(&r.join("solo.wav"), 0.1);
        let w = walk(&[
            r.join("one/calls"),
            r.join("two/calls/"),
            r.join("solo.wav"),
        ])
        .unwrap();
        assert_eq!(rels(&w), vec!["calls/a.wav", "calls~2/a.wav", "solo.wav"]);
        let single = walk(&[r.join("solo.wav")]).unwrap();
        assert_eq!(rels(&single), vec!["solo.wav"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_and_duplicates_are_skipped_not_followed_forever() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        wav(&r.join("a/b/x.wav"), 0.1);
        symlink(r.join("a"), r.join("a/b/back")).unwrap(); // loop to an ancestor
        symlink(r.join("a/b/x.wav"), r.join("a/link.wav")).unwrap(); // same file twice
        symlink("self", r.join("a/self")).unwrap(); // points at itself
        symlink(r.join("missing"), r.join("a/dangling.wav")).unwrap();
        let w = walk(&[r.join("a")]).unwrap();
        assert_eq!(rels(&w), vec!["b/x.wav"]);
        let mut codes: Vec<&str> = w.skipped.iter().map(|s| s.reason.code()).collect();
        codes.sort();
        assert_eq!(
            codes,
            vec!["duplicate", "not_a_file", "symlink_loop", "symlink_loop"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn fifos_are_not_opened() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe.wav");
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !ok.is_ok_and(|s| s.success()) {
            return; // no mkfifo on this system
        }
        let w = walk(&[d.path().to_path_buf()]).unwrap();
        assert!(w.files.is_empty());
        assert_eq!(w.skipped[0].reason, SkipReason::NotAFile);
    }

    #[test]
    fn missing_input_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(walk(&[d.path().join("nope")]).is_err());
    }
}
