//! Small file helpers that keep rdbench's own files whole: atomic replacement and advisory locks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use fs2::FileExt;

use crate::{Error, Result};

/// Creates `dir` and its missing parents readable by this user only (0700): rdbench's state is
/// private by default (the score log, samples, caches and calibrations live under them).
pub fn create_private_dir_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Replaces `path` with `bytes` atomically: a reader (or a crash) sees the old file or the new
/// one, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// An exclusive advisory lock on `<path>.lock`, released on drop.
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// Takes an exclusive lock that serializes read-modify-write cycles on `path` across processes.
pub fn lock_exclusive(path: &Path) -> Result<LockGuard> {
    let lock_path = path.with_extension(match path.extension() {
        Some(ext) => format!("{}.lock", ext.to_string_lossy()),
        None => "lock".to_string(),
    });
    if let Some(dir) = lock_path.parent() {
        create_private_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    file.lock_exclusive()
        .map_err(|e| Error::io(&lock_path, e))?;
    Ok(LockGuard { file })
}

/// Hex SHA-256 of the given files' names and contents, in order; missing files hash as absent.
pub fn hash_files(dir: &Path, names: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => {
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
            Err(_) => hasher.update(b"<absent>"),
        }
    }
    hex::encode(hasher.finalize())
}
