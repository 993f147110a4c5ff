//! Where outputs go, and how they are written.
//!
//! # Names
//! Each input `dir/name.ext` gets a *base* `dir/B` under the output folder; its outputs are `B.json`,
//! `B.srt`, `B.vtt`, `B.rttm`, `B.txt`, `B.error.json` (a failure) or `B.segments/`
//! (split-only). `B` is the stem (the name without its extension) unless one of those names
//! would clash, compared case-insensitively, with another input's names, a folder of the mirror,
//! or `summary.json` / `journal.jsonl` at the top: then `B` is the full name (`a.wav.json`,
//! `a.mp3.json`), and if even that clashes, the full name plus `~2`, `~3`, ... in walk order.
//! Only colliding inputs change; the mapping depends only on the set of inputs, so a rerun on
//! the same inputs maps every file to the same place.
//!
//! # Safety
//! Every output path is the output folder joined with plain names taken from the input tree (never a name
//! sent by the server); components are checked to be plain names, folders are created one by one
//! and an existing symbolic link or file in their place is refused, so nothing can escape
//! the output folder. Files are written with the crate's atomic writer (a temporary name in the
//! same folder, synced, then renamed over the target): a reader never sees half a file.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use super::walk::InputFile;
use crate::{Error, Result};

/// Names reserved at the top of the output folder.
pub const SUMMARY: &str = "summary.json";
/// The journal's file name at the top of the output folder.
pub const JOURNAL: &str = "journal.jsonl";
/// The lock that keeps two runs from sharing an output folder.
pub const LOCK: &str = ".transcribe_folder.lock";

/// Suffixes of the names one input may produce.
const SUFFIXES: &[&str] = &[
    ".json",
    ".error.json",
    ".srt",
    ".vtt",
    ".rttm",
    ".txt",
    ".segments",
];

/// Where one input's outputs go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutName {
    /// The folder under the output folder (plain names only).
    pub dir: PathBuf,
    /// The base name: outputs are `base` + suffix.
    pub base: OsString,
}

impl OutName {
    /// The relative path of the output with `suffix` (e.g. `.json`).
    pub fn rel(&self, suffix: &str) -> PathBuf {
        self.dir.join(self.file(suffix))
    }

    /// The file name of the output with `suffix`.
    pub fn file(&self, suffix: &str) -> OsString {
        let mut n = self.base.clone();
        n.push(suffix);
        n
    }

    /// `dir/base` as text, for the journal and summary.
    pub fn display(&self) -> String {
        self.dir.join(&self.base).to_string_lossy().into_owned()
    }
}

fn key(s: &OsStr) -> String {
    s.to_string_lossy().to_lowercase()
}

/// Maps every input to its output name (see the module docs), in input order.
pub fn plan(files: &[InputFile]) -> Vec<OutName> {
    // Claims that never move: mirror folders and the reserved top-level names.
    let mut fixed: HashSet<(PathBuf, String)> = HashSet::new();
    for n in [SUMMARY, JOURNAL, LOCK] {
        fixed.insert((PathBuf::new(), n.to_string()));
    }
    for f in files {
        let mut dir = PathBuf::new();
        if let Some(parent) = f.rel.parent() {
            for c in parent.components() {
                fixed.insert((dir.clone(), key(c.as_os_str())));
                dir.push(c);
            }
        }
    }
    let dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| f.rel.parent().map(Path::to_path_buf).unwrap_or_default())
        .collect();
    let names: Vec<OsString> = files
        .iter()
        .map(|f| {
            f.rel
                .file_name()
                .map(OsStr::to_os_string)
                .unwrap_or_default()
        })
        .collect();
    let stems: Vec<OsString> = files
        .iter()
        .map(|f| {
            f.rel
                .file_stem()
                .map(OsStr::to_os_string)
                .unwrap_or_default()
        })
        .collect();
    let claims = |dir: &Path, base: &OsStr| -> Vec<(PathBuf, String)> {
        let b = key(base);
        SUFFIXES
            .iter()
            .map(|s| (dir.to_path_buf(), format!("{b}{s}")))
            .collect()
    };

    // Stems first, symmetrically: every input whose stem names clash with anything uses its
    // full name.
    let mut owners: HashMap<(PathBuf, String), usize> = HashMap::new();
    for (i, stem) in stems.iter().enumerate() {
        for c in claims(&dirs[i], stem) {
            *owners.entry(c).or_default() += 1;
        }
    }
    let clashes = |i: usize| {
        claims(&dirs[i], &stems[i])
            .into_iter()
            .any(|c| owners.get(&c).copied().unwrap_or(0) > 1 || fixed.contains(&c))
    };
    let by_stem: Vec<bool> = (0..files.len()).map(|i| !clashes(i)).collect();

    let mut taken = fixed;
    let mut out: Vec<Option<OutName>> = vec![None; files.len()];
    for i in (0..files.len()).filter(|&i| by_stem[i]) {
        taken.extend(claims(&dirs[i], &stems[i]));
        out[i] = Some(OutName {
            dir: dirs[i].clone(),
            base: stems[i].clone(),
        });
    }
    // Then the full names, in walk order, with a counter as the last resort.
    for i in (0..files.len()).filter(|&i| !by_stem[i]) {
        let mut base = names[i].clone();
        let mut k = 1u32;
        while claims(&dirs[i], &base).iter().any(|c| taken.contains(c)) {
            k += 1;
            base = names[i].clone();
            base.push(format!("~{k}"));
        }
        taken.extend(claims(&dirs[i], &base));
        out[i] = Some(OutName {
            dir: dirs[i].clone(),
            base,
        });
    }
    // Every index was filled by one of the two loops above.
    out.into_iter().flatten().collect()
}

/// The output folder, with the guards that keep writes inside it.
#[derive(Debug)]
pub struct OutDir {
    root: PathBuf,
    /// Input files that happen to live under the output folder (given one by one): never overwritten.
    inputs_inside: HashSet<PathBuf>,
}

impl OutDir {
    /// Creates (if needed) and opens the output folder, refusing one that overlaps an input folder.
    ///
    /// `inputs` are the command-line inputs; `files` the canonical paths of every input file.
    pub fn open(out: &Path, inputs: &[PathBuf], files: &[PathBuf]) -> Result<OutDir> {
        let planned = canonical_to_be(out)?;
        for input in inputs {
            let c = fs::canonicalize(input).map_err(|e| Error::io(Some(input), e))?;
            if c.is_dir() {
                if planned.starts_with(&c) {
                    return Err(Error::output(
                        out,
                        format!(
                            "the output folder is inside the input folder {}: outputs are never written inside the input tree; choose another output folder",
                            input.display()
                        ),
                    ));
                }
                if c.starts_with(&planned) {
                    return Err(Error::output(
                        out,
                        format!(
                            "the input folder {} is inside the output folder: outputs are never written inside the input tree; choose another output folder",
                            input.display()
                        ),
                    ));
                }
            }
        }
        fs::create_dir_all(&planned).map_err(|e| Error::io(Some(out), e))?;
        let root = fs::canonicalize(&planned).map_err(|e| Error::io(Some(out), e))?;
        let inputs_inside = files
            .iter()
            .filter(|f| f.starts_with(&root))
            .cloned()
            .collect();
        Ok(OutDir {
            root,
            inputs_inside,
        })
    }

    /// The output folder (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `rel_dir` under the root one plain component at a time, refusing symbolic
    /// links and non-folders in the way, and returns its full path.
    pub fn ensure_dir(&self, rel_dir: &Path) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for c in rel_dir.components() {
            let Component::Normal(name) = c else {
                return Err(Error::output(rel_dir, "not a plain relative path"));
            };
            p.push(name);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::output(
                        &p,
                        "refusing to write through a symbolic link",
                    ))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(Error::output(&p, "exists and is not a folder")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                    Err(e) => return Err(Error::io(Some(&p), e)),
                },
                Err(e) => return Err(Error::io(Some(&p), e)),
            }
        }
        Ok(p)
    }

    /// The full path of `rel` (checked: plain names only).
    pub fn path(&self, rel: &Path) -> Result<PathBuf> {
        check_plain(rel)?;
        Ok(self.root.join(rel))
    }

    /// Writes `bytes` to `rel` atomically (see [`OutDir::write_with`]).
    pub fn write(&self, rel: &Path, bytes: &[u8]) -> Result<()> {
        self.write_with(rel, |w| Ok(w.write_all(bytes)?))
    }

    /// Writes `rel` atomically with the crate's atomic writer (temporary file,
    /// fsync, rename), after the checks that keep it inside the output folder.
    pub fn write_with(
        &self,
        rel: &Path,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        check_plain(rel)?;
        let name = rel
            .file_name()
            .ok_or_else(|| Error::output(rel, "no file name"))?;
        let dir = self.ensure_dir(rel.parent().unwrap_or(Path::new("")))?;
        let target = dir.join(name);
        if self.inputs_inside.contains(&target) {
            return Err(Error::output(
                &target,
                "refusing to overwrite an input file",
            ));
        }
        crate::atomic::write_atomic(&target, fill).map_err(|e| e.with_path(&target))
    }

    /// Removes `rel` if it exists (a file, or a folder written by this program).
    pub fn remove(&self, rel: &Path) -> Result<()> {
        let p = self.path(rel)?;
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p).map_err(|e| Error::io(Some(&p), e))?,
            Ok(_) => fs::remove_file(&p).map_err(|e| Error::io(Some(&p), e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(Some(&p), e)),
        }
        Ok(())
    }

    /// A fresh, empty staging folder beside `final_rel` (`.name.tmp`), to fill and then
    /// [`OutDir::commit_dir`].
    pub fn stage_dir(&self, final_rel: &Path) -> Result<PathBuf> {
        check_plain(final_rel)?;
        let name = final_rel
            .file_name()
            .ok_or_else(|| Error::output(final_rel, "no file name"))?;
        let dir = self.ensure_dir(final_rel.parent().unwrap_or(Path::new("")))?;
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(".tmp");
        let staging = dir.join(tmp);
        match fs::symlink_metadata(&staging) {
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(&staging).map_err(|e| Error::io(Some(&staging), e))?
            }
            Ok(_) => fs::remove_file(&staging).map_err(|e| Error::io(Some(&staging), e))?,
            Err(_) => {}
        }
        fs::create_dir(&staging).map_err(|e| Error::io(Some(&staging), e))?;
        Ok(staging)
    }

    /// Moves a filled staging folder to `final_rel`, replacing an older one.
    pub fn commit_dir(&self, staging: &Path, final_rel: &Path) -> Result<()> {
        let target = self.path(final_rel)?;
        if target.parent() != staging.parent() {
            return Err(Error::internal(format!(
                "staging folder {} is not beside {}",
                staging.display(),
                target.display()
            )));
        }
        self.remove(final_rel)?;
        fs::rename(staging, &target).map_err(|e| Error::io(Some(&target), e))
    }

    /// True when `rel` exists.
    pub fn exists(&self, rel: &Path) -> bool {
        self.path(rel)
            .map(|p| fs::symlink_metadata(p).is_ok())
            .unwrap_or(false)
    }
}

fn check_plain(rel: &Path) -> Result<()> {
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::output(rel, "not a plain relative path"));
    }
    Ok(())
}

/// The canonical path `p` will have once created: its existing part resolved (symbolic
/// links, `..`), the rest normalised lexically.
fn canonical_to_be(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(None, e))?
            .join(p)
    };
    let mut out = PathBuf::new();
    let mut existing = true;
    for c in abs.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => {
                out.push(n);
                if existing {
                    match fs::canonicalize(&out) {
                        Ok(c) => out = c,
                        Err(_) => existing = false,
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::walk::InputKind;

    fn input(rel: &str) -> InputFile {
        InputFile {
            path: PathBuf::from("/in").join(rel),
            canonical: PathBuf::from("/in").join(rel),
            rel: PathBuf::from(rel),
            size: 1,
            mtime_ns: 1,
            kind: InputKind::BadAudio {
                reason: String::new(),
            },
        }
    }

    fn names(rels: &[&str]) -> Vec<String> {
        let files: Vec<InputFile> = rels.iter().map(|r| input(r)).collect();
        plan(&files).iter().map(OutName::display).collect()
    }

    #[test]
    fn stems_unless_they_collide() {
        assert_eq!(
            names(&["a.wav", "b.mp3", "sub/a.flac", "sub/c d é.ogg"]),
            vec!["a", "b", "sub/a", "sub/c d é"]
        );
        assert_eq!(
            names(&["a.mp3", "a.wav", "b.wav"]),
            vec!["a.mp3", "a.wav", "b"]
        );
    }

    #[test]
    fn case_insensitive_and_cross_suffix_collisions() {
        assert_eq!(names(&["A.wav", "a.mp3"]), vec!["A.wav", "a.mp3"]);
        // `x.error` would write x.error.json, the error file of `x`.
        assert_eq!(
            names(&["x.error.wav", "x.wav"]),
            vec!["x.error.wav", "x.wav"]
        );
        // A folder of the mirror, and the reserved names at the top.
        assert_eq!(
            names(&[
                "sub.wav",
                "sub.segments/x.wav",
                "summary.wav",
                "journal.wav"
            ]),
            vec!["sub.wav", "sub.segments/x", "summary.wav", "journal"]
        );
        assert_eq!(names(&["a.wav", "a.json/b.wav"]), vec!["a.wav", "a.json/b"]);
        // Only at the top: summary.json deeper is harmless.
        assert_eq!(names(&["d/summary.wav"]), vec!["d/summary"]);
    }

    #[test]
    fn full_names_that_still_collide_get_a_counter() {
        // Case-sensitive file systems may hold both A.WAV and a.wav.
        assert_eq!(
            names(&["A.WAV", "a.wav", "a.mp3"]),
            vec!["A.WAV", "a.wav~2", "a.mp3"]
        );
    }

    #[test]
    fn every_output_name_is_unique() {
        let rels = [
            "a.wav",
            "a.mp3",
            "A.wav",
            "a.wav.wav",
            "a",
            "a.error.wav",
            "a.tar.gz",
            "a.tar",
            "x/a.wav",
            "x/a",
            "x.wav",
            "y.txt.wav",
            "y.wav",
        ];
        let files: Vec<InputFile> = rels.iter().map(|r| input(r)).collect();
        let plan = plan(&files);
        let mut all = HashSet::new();
        for n in &plan {
            for s in SUFFIXES {
                let p = n.rel(s).to_string_lossy().to_lowercase();
                assert!(all.insert(p.clone()), "{p} twice in {plan:?}");
            }
        }
        // Deterministic.
        assert_eq!(plan, super::plan(&files));
    }

    #[test]
    fn refuses_out_inside_an_input_folder_and_the_reverse() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in");
        fs::create_dir_all(input.join("sub")).unwrap();
        let e =
            OutDir::open(&input.join("sub/out"), std::slice::from_ref(&input), &[]).unwrap_err();
        assert!(e.to_string().contains("inside the input folder"), "{e}");
        assert!(!input.join("sub/out").exists(), "nothing created");
        let e = OutDir::open(
            &input.join("sub/../x/../out"),
            std::slice::from_ref(&input),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("inside the input folder"), "{e}");
        assert!(!input.join("x").exists(), "nothing created");
        let e = OutDir::open(d.path(), std::slice::from_ref(&input), &[]).unwrap_err();
        assert!(e.to_string().contains("inside the output folder"), "{e}");
        let o = OutDir::open(
            &input.join("../y/../out"),
            std::slice::from_ref(&input),
            &[],
        )
        .unwrap();
        assert_eq!(o.root(), fs::canonicalize(d.path().join("out")).unwrap());
        assert!(!d.path().join("y").exists());
    }

    #[test]
    fn writes_are_atomic_and_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let out = OutDir::open(&d.path().join("out"), &[], &[]).unwrap();
        out.write(Path::new("a b/ü/x.json"), b"{}").unwrap();
        assert_eq!(fs::read(out.root().join("a b/ü/x.json")).unwrap(), b"{}");
        out.write(Path::new("a b/ü/x.json"), b"[1]").unwrap();
        assert_eq!(fs::read(out.root().join("a b/ü/x.json")).unwrap(), b"[1]");
        let leftovers: Vec<_> = fs::read_dir(out.root().join("a b/ü")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
        for bad in ["../x.json", "/etc/x.json", "a/../../x.json", "./x.json", ""] {
            assert!(out.write(Path::new(bad), b"x").is_err(), "{bad}");
        }
        assert!(!d.path().join("x.json").exists());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_out_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let out = OutDir::open(&d.path().join("out"), &[], &[]).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.root().join("sub")).unwrap();
        assert!(out.write(Path::new("sub/x.json"), b"x").is_err());
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn input_files_under_out_are_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("x.json");
        fs::write(&victim, b"audio").unwrap();
        let victim = fs::canonicalize(victim).unwrap();
        let out = OutDir::open(
            d.path(),
            std::slice::from_ref(&victim),
            std::slice::from_ref(&victim),
        )
        .unwrap();
        assert!(out.write(Path::new("x.json"), b"{}").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"audio");
    }
}
