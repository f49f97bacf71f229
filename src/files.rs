//! Atomic file writes: every file the program writes (sessions, plots, data, tokenizers,
//! model folders, metadata) goes through a temporary file in the same folder and a rename, so
//! a reader sees the old file or the new one, never a part, and a failure leaves an existing
//! file untouched.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The file writer of [`write_atomic_with`]; tests inject one that fails part-way.
pub type WriteFn<'a> = dyn FnMut(&mut std::fs::File, &[u8]) -> std::io::Result<()> + 'a;

/// Writes `bytes` to `path` atomically. An existing file is replaced only with `overwrite`.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    write_atomic_with(path, bytes, overwrite, &mut std::fs::File::write_all)
}

/// [`write_atomic`] through `write`.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
    write: &mut WriteFn,
) -> Result<()> {
    replace_with(path, overwrite, |tmp| {
        let mut f = std::fs::File::create(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        write(&mut f, bytes)?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))
    })
}

/// Lets `produce` write the file at a temporary path (same folder, same extension: encoders
/// that pick the format from it still work), then renames it to `path`. The folder must exist.
/// On any failure the temporary file is removed.
pub fn replace_with(
    path: &Path,
    overwrite: bool,
    produce: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if !overwrite && path.exists() {
        bail!("{} already exists (not overwritten)", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".tmp{}-{}",
        std::process::id(),
        name.to_string_lossy()
    ));
    let result = produce(&tmp)
        .with_context(|| format!("cannot write {}", path.display()))
        .and_then(|()| {
            if !overwrite && path.exists() {
                bail!("{} already exists (not overwritten)", path.display());
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move {} into place", tmp.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_when_asked_and_cleans_up_after_a_failure() {
        let dir = std::env::temp_dir().join(format!("coconut-lens-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("a.json");
        assert!(
            write_atomic(&path, b"one", false).is_err(),
            "the folder must exist"
        );
        std::fs::create_dir_all(&dir).unwrap();
        write_atomic(&path, b"one", false).unwrap();
        assert!(write_atomic(&path, b"two", false).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let failed = replace_with(&path, true, |tmp| {
            std::fs::write(tmp, b"half")?;
            bail!("disk full")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
