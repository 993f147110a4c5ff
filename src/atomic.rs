//! Atomic file writes: a reader never sees half a file, a failed write leaves nothing behind.
//! Used by the stages that write files (export, split-only, batch); no stage logic here.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Writes a file atomically: `fill` writes into a temporary file next to `path`, which is then
/// synced and renamed over `path`. On any error the temporary file is removed and `path` is
/// left as it was. Errors name `path`.
pub(crate) fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::config(format!("{}: not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // Process id, counter and a random part: workers on several machines (containers often
    // share process ids) may write into one shared folder.
    tmp_name.push(format!(
        ".{}.{}.{:08x}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| -> Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(Some(path), e))?;
        let mut w = BufWriter::new(file);
        fill(&mut w).map_err(|e| e.with_path(path))?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(Some(path), e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(Some(path), e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| Error::io(Some(path), e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_a_failed_write_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, |w| Ok(w.write_all(b"one")?)).unwrap();
        write_atomic(&p, |w| Ok(w.write_all(b"two")?)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let e = write_atomic(&p, |w| {
            w.write_all(b"half")?;
            Err(Error::internal("stopped"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("stopped"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"two", "the old file stays");
        let missing = dir.path().join("no-such-dir");
        let e = write_atomic(&missing.join("b.json"), |w| Ok(w.write_all(b"x")?)).unwrap_err();
        assert!(e.to_string().contains("no-such-dir"), "{e}");
        assert!(!missing.exists());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
