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

/// Copies the file `from` to `to` with [`atomic_write`] (tasks' prepared files into an attempt
/// folder or a submission).
pub fn atomic_copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| Error::io(from, e))?;
    atomic_write(to, &bytes)
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

/// What a refused file was instead of a regular file of its own (also the client's refusal
/// on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotRegular {
    SymbolicLink,
    /// A regular file with a second name (read as root, it could be another user's file).
    HardLink,
    Directory,
    Fifo,
    Socket,
    Device,
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotRegular::SymbolicLink => "symbolic link",
            NotRegular::HardLink => "hard link",
            NotRegular::Directory => "directory",
            NotRegular::Fifo => "FIFO",
            NotRegular::Socket => "socket",
            NotRegular::Device => "device",
        })
    }
}

/// Why a submission file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UntrustedReadError {
    NotFound,
    /// A symbolic link, FIFO, socket, device or directory: only regular files are read.
    NotARegularFile(NotRegular),
    TooLarge {
        size: u64,
        max: u64,
    },
    Io(String),
}

impl std::fmt::Display for UntrustedReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UntrustedReadError::NotFound => write!(f, "missing"),
            UntrustedReadError::NotARegularFile(what) => {
                write!(
                    f,
                    "a {what}, not a regular file (links, FIFOs and devices are refused)"
                )
            }
            UntrustedReadError::TooLarge { size, max } => {
                write!(f, "{size} bytes is over the {max}-byte limit")
            }
            UntrustedReadError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// Runs `make` unless `done()` holds: checked, then checked again under an exclusive lock
/// (`<dir>/<lock>.lock`), so concurrent processes build each cached product once and never see
/// half of one (`make` publishes by temporary file and rename).
pub fn build_once(
    dir: &Path,
    lock: &str,
    done: impl Fn() -> bool,
    make: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if done() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _lock = lock_exclusive(&dir.join(lock))?;
    if done() {
        return Ok(());
    }
    make()
}

/// Reads a file an agent wrote, bounded and without following links: opened with
/// `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot block the open), checked to be a regular file and
/// at most `max` bytes on the open descriptor (no swap between check and read), then read
/// through a `max + 1` byte window (a file growing meanwhile cannot exhaust memory).
pub fn read_untrusted(path: &Path, max: u64) -> std::result::Result<Vec<u8>, UntrustedReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => UntrustedReadError::NotFound,
            _ if e.raw_os_error() == Some(libc::ELOOP) => {
                UntrustedReadError::NotARegularFile(NotRegular::SymbolicLink)
            }
            _ => UntrustedReadError::Io(e.to_string()),
        })?;
    read_untrusted_file(file, max)
}

/// The checks and the bounded read of [`read_untrusted`], on a file already opened without
/// following links.
pub fn read_untrusted_file(
    file: File,
    max: u64,
) -> std::result::Result<Vec<u8>, UntrustedReadError> {
    use std::io::Read;
    let meta = file
        .metadata()
        .map_err(|e| UntrustedReadError::Io(e.to_string()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        return Err(UntrustedReadError::NotARegularFile(if ft.is_dir() {
            NotRegular::Directory
        } else if ft.is_fifo() {
            NotRegular::Fifo
        } else if ft.is_socket() {
            NotRegular::Socket
        } else {
            NotRegular::Device
        }));
    }
    if meta.len() > max {
        return Err(UntrustedReadError::TooLarge {
            size: meta.len(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| UntrustedReadError::Io(e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(UntrustedReadError::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// An operator's input file (a dataset, a model) that must be exactly the one recorded: read
/// only if it is at most `max` bytes, and only if its bytes hash to `sha256` (hex). Anything
/// else is an environment error naming the file, so no run starts on other inputs.
pub fn read_recorded(path: &Path, sha256: &str, max: u64) -> Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let bad = |m: String| Error::Environment(format!("{}: {m}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if size > max {
        return Err(bad(format!("{size} bytes, over the {max}-byte limit")));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let got = hex::encode(Sha256::digest(&bytes));
    if !got.eq_ignore_ascii_case(sha256.trim()) {
        return Err(bad(format!(
            "sha256 {got}, not the recorded {}: not the file the operator's manifest names",
            sha256.trim()
        )));
    }
    Ok(bytes)
}

/// Hex SHA-256 of the given files' names and contents, in order; missing files hash as absent,
/// a folder (a tree submission) as its [`crate::tree::tree_hash`].
pub fn hash_files(dir: &Path, names: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        let path = dir.join(name);
        if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            // The scorer's own copy, already within the task's caps.
            match crate::tree::read_tree(&path, &crate::tree::TreeLimits::OWN) {
                Ok(files) => hasher.update(crate::tree::tree_hash(&files).as_bytes()),
                Err(_) => hasher.update(b"<unreadable tree>"),
            }
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
            Err(_) => hasher.update(b"<absent>"),
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder hashes as its tree: a change to any file inside changes the hash.
    #[test]
    fn a_folder_hashes_as_its_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("solution/lib")).unwrap();
        std::fs::write(dir.path().join("solution/lib/a.py"), "a").unwrap();
        let names = ["solution".to_string()];
        let first = hash_files(dir.path(), &names);
        assert_eq!(first, hash_files(dir.path(), &names));
        std::fs::write(dir.path().join("solution/lib/a.py"), "b").unwrap();
        assert_ne!(first, hash_files(dir.path(), &names));
    }

    #[test]
    fn untrusted_reads_refuse_links_fifos_devices_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"hello").unwrap();
        assert_eq!(read_untrusted(&ok, 5).unwrap(), b"hello");
        assert!(matches!(
            read_untrusted(&ok, 4),
            Err(UntrustedReadError::TooLarge { size: 5, max: 4 })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(
            read_untrusted(&link, 100),
            Err(UntrustedReadError::NotARegularFile(
                NotRegular::SymbolicLink
            ))
        );
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_untrusted(&zero, 100),
            Err(UntrustedReadError::NotARegularFile(_))
        ));
        assert!(matches!(
            read_untrusted(Path::new("/dev/zero"), 100),
            Err(UntrustedReadError::NotARegularFile(NotRegular::Device))
        ));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns at once (no writer needed): the FIFO is refused, not waited on.
        assert_eq!(
            read_untrusted(&fifo, 100),
            Err(UntrustedReadError::NotARegularFile(NotRegular::Fifo))
        );
        assert_eq!(
            read_untrusted(&dir.path().join("none"), 1),
            Err(UntrustedReadError::NotFound)
        );
        // A 3 GiB sparse file is refused from its size, without reading it.
        let sparse = dir.path().join("sparse");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(
            read_untrusted(&sparse, 1 << 20),
            Err(UntrustedReadError::TooLarge { .. })
        ));
        assert!(t.elapsed().as_millis() < 1000);
    }
}

/// The user this process acts as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that `dir` belongs to this user and that no one else can enter it: the scoring
/// service refuses to serve from a home another user could read or plant files in.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    create_private_dir_all(dir)?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!("{}: not a folder", dir.display())));
    }
    if meta.uid() != effective_uid() {
        return Err(Error::Usage(format!(
            "{}: belongs to uid {}, not to the scoring user (uid {})",
            dir.display(),
            meta.uid(),
            effective_uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Usage(format!(
            "{}: mode {:o} lets other users in; `chmod 700` it first",
            dir.display(),
            meta.mode() & 0o777
        )));
    }
    Ok(())
}
