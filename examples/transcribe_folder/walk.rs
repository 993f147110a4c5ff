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
use std::io::{self, Read};
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

/// Probes a file's content: is it audio, and which format.
pub fn probe(path: &Path) -> io::Result<Probe> {
    let mut f = fs::File::open(path)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &head[..n];
    if head.is_empty() {
        return Ok(Probe::Empty);
    }
    Ok(match sniff(head) {
        Some(format) => Probe::Audio {
            format: format.to_string(),
            duration_secs: wav_duration(head),
        },
        None => Probe::NotAudio(describe_head(head)),
    })
}

/// Recognises a container or codec by its magic bytes.
fn sniff(h: &[u8]) -> Option<&'static str> {
    let at = |o: usize, m: &[u8]| h.get(o..o + m.len()) == Some(m);
    if (at(0, b"RIFF") || at(0, b"RF64")) && at(8, b"WAVE") {
        Some("WAV")
    } else if at(0, b"fLaC") {
        Some("FLAC")
    } else if at(0, b"OggS") {
        Some("Ogg")
    } else if at(0, b"ID3") {
        Some("MP3")
    } else if at(4, b"ftyp") {
        Some("MP4")
    } else if at(0, b"#!AMR-WB\n") {
        Some("AMR-WB")
    } else if at(0, b"#!AMR\n") {
        Some("AMR-NB")
    } else if h.len() >= 2 && h[0] == 0xFF && (h[1] & 0xE0) == 0xE0 && (h[1] & 0x06) != 0 {
        // MPEG audio frame sync with a valid layer (MP3, MP2) or ADTS AAC (layer bits 00).
        Some("MPEG audio")
    } else if h.len() >= 2 && h[0] == 0xFF && (h[1] & 0xF6) == 0xF0 {
        Some("AAC (ADTS)")
    } else {
        None
    }
}

/// The duration of a plain PCM WAV whose `fmt ` and `data` chunks sit in the first bytes.
fn wav_duration(h: &[u8]) -> Option<f64> {
    if h.get(0..4)? != b"RIFF" || h.get(12..16)? != b"fmt " {
        return None;
    }
    let u32le =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(h.get(o..o + 4)?.try_into().ok()?)) };
    let fmt_len = u32le(16)? as usize;
    let byte_rate = u32le(28)?;
    let data = 20usize.checked_add(fmt_len)?;
    if h.get(data..data + 4)? != b"data" || byte_rate == 0 {
        return None;
    }
    let len = u32le(data + 4)?;
    if len == u32::MAX || len == 0 {
        return None; // streaming placeholder or empty
    }
    Some(f64::from(len) / f64::from(byte_rate))
}

fn describe_head(h: &[u8]) -> String {
    let printable = h
        .iter()
        .take(16)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if printable {
        "text".into()
    } else {
        let hex: Vec<String> = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("starts with {}", hex.join(" "))
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
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..(secs * 16_000.0) as usize {
            w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }

    fn rels(w: &Walked) -> Vec<String> {
        w.files
            .iter()
            .map(|f| f.rel.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sniffs_formats_by_content_not_name() {
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
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"fLaC\0\0\0\x22", Some("FLAC")),
            (b"OggS\0\x02", Some("Ogg")),
            (b"ID3\x04\0\0", Some("MP3")),
            (b"\0\0\0\x20ftypM4A ", Some("MP4")),
            (b"#!AMR\n\x3c", Some("AMR-NB")),
            (b"#!AMR-WB\n\x3c", Some("AMR-WB")),
            (&[0xFF, 0xFB, 0x90, 0x64], Some("MPEG audio")),
            (b"hello, this is text\n", None),
            (b"RIFF\0\0\0\0AVI LIST", None),
            (&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0], None),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            let p = d.path().join(format!("c{i}.wav"));
            fs::write(&p, bytes).unwrap();
            let got = match probe(&p).unwrap() {
                Probe::Audio { format, .. } => Some(format),
                Probe::NotAudio(_) => None,
                Probe::Empty => panic!("not empty"),
            };
            assert_eq!(got.as_deref(), *want, "case {i}");
        }
        let e = d.path().join("empty");
        fs::write(&e, b"").unwrap();
        assert_eq!(probe(&e).unwrap(), Probe::Empty);
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
