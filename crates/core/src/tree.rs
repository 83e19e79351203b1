//! A submission that is a folder tree: read without following a link, bounded before a byte
//! is read, written out again as the scorer's own copy.
//!
//! [`read_tree`] opens every folder from `/` one component at a time with `O_NOFOLLOW`
//! ([`crate::untrusted_tree`]), so a link anywhere, swapped in at any moment, is refused
//! rather than followed; each file is read through the same no-link open, and a FIFO, socket,
//! device or hard link is refused. The caps (files, total bytes, depth, name length) are checked
//! on each file's size from its open descriptor before its bytes are read, so a tree over them
//! costs no more than the cap. Names must be UTF-8 without control characters or `/`.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::{NotRegular, UntrustedReadError};
use crate::untrusted_tree;
use serde::{Deserialize, Serialize};

/// Caps on a submitted tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeLimits {
    pub max_files: usize,
    /// All files' bytes together.
    pub max_bytes: u64,
    /// Folders below the root.
    pub max_depth: usize,
}

impl TreeLimits {
    /// Caps for a tree of the project's or the scorer's own (a snapshot already within a task's
    /// caps, an exploit case): generous, but finite so a mistake cannot exhaust memory.
    pub const OWN: TreeLimits = TreeLimits {
        max_files: 1 << 20,
        max_bytes: 1 << 40,
        max_depth: 64,
    };
}

/// Longest file or folder name, bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// One file of a tree: its `/`-separated path under the root, bytes, and whether anyone may
/// execute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// Why a tree was refused. Paths are relative to the tree's root.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0}: not found")]
    Missing(PathBuf),
    #[error("{path}: a {what}, not a file or folder (links, FIFOs, sockets, devices and hard links are refused)")]
    NotPlain { path: String, what: NotRegular },
    #[error("{path}: the name is not allowed (UTF-8 without control characters, at most {MAX_NAME_BYTES} bytes)")]
    BadName { path: String },
    #[error("more than {max} files")]
    TooManyFiles { max: usize },
    #[error("more than {max} bytes in all (at {path})")]
    TooLarge { path: String, max: u64 },
    #[error("{path}: deeper than {max} folders")]
    TooDeep { path: String, max: usize },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl TreeError {
    /// The kind of invalid entry a submitted tree refused for this reason is: the same as the
    /// service's snapshot gives the client's refusal of it (a test in rdbench-attempts holds
    /// the two together).
    pub fn invalid_kind(&self) -> crate::outcome::InvalidKind {
        use crate::outcome::InvalidKind as K;
        match self {
            TreeError::Missing(_) => K::MissingFile,
            TreeError::TooManyFiles { .. }
            | TreeError::TooLarge { .. }
            | TreeError::TooDeep { .. } => K::TooLarge,
            TreeError::NotPlain { .. } | TreeError::BadName { .. } => K::RuleViolation,
            TreeError::Io { .. } => K::BadArtifact,
        }
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_NAME_BYTES
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// Reads the tree at the absolute path `root` within `limits`, files sorted by path.
pub fn read_tree(root: &Path, limits: &TreeLimits) -> Result<Vec<TreeFile>, TreeError> {
    let mut files = Vec::new();
    let mut total = 0u64;
    walk(root, "", 0, limits, &mut files, &mut total)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(
    root: &Path,
    rel: &str,
    depth: usize,
    limits: &TreeLimits,
    files: &mut Vec<TreeFile>,
    total: &mut u64,
) -> Result<(), TreeError> {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let shown = |p: &str| {
        if p.is_empty() {
            ".".to_string()
        } else {
            p.to_string()
        }
    };
    let dir = untrusted_tree::open_dir(&here).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound if rel.is_empty() => TreeError::Missing(root.to_path_buf()),
        io::ErrorKind::InvalidInput => TreeError::NotPlain {
            path: shown(rel),
            what: NotRegular::SymbolicLink,
        },
        _ => TreeError::Io {
            path: shown(rel),
            source: e,
        },
    })?;
    // The listing reads the folder just opened (not the path again), through /proc.
    use std::os::fd::AsRawFd;
    let listing =
        std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())).map_err(|source| {
            TreeError::Io {
                path: shown(rel),
                source,
            }
        })?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| TreeError::Io {
            path: shown(rel),
            source,
        })?;
        let os = entry.file_name();
        let child = |n: &str| {
            if rel.is_empty() {
                n.to_string()
            } else {
                format!("{rel}/{n}")
            }
        };
        let Some(name) = os.to_str().filter(|n| name_ok(n)) else {
            return Err(TreeError::BadName {
                path: child(&os.to_string_lossy()),
            });
        };
        let ft = entry.file_type().map_err(|source| TreeError::Io {
            path: child(name),
            source,
        })?;
        names.push((child(name), name.to_string(), ft));
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, name, ft) in names {
        if ft.is_dir() {
            if depth + 1 > limits.max_depth {
                return Err(TreeError::TooDeep {
                    path,
                    max: limits.max_depth,
                });
            }
            walk(root, &path, depth + 1, limits, files, total)?;
            continue;
        }
        if files.len() >= limits.max_files {
            return Err(TreeError::TooManyFiles {
                max: limits.max_files,
            });
        }
        let left = limits.max_bytes.saturating_sub(*total);
        let bytes = untrusted_tree::read_file(&dir, &name, left).map_err(|e| match e {
            UntrustedReadError::TooLarge { .. } => TreeError::TooLarge {
                path: path.clone(),
                max: limits.max_bytes,
            },
            UntrustedReadError::NotARegularFile(what) => TreeError::NotPlain {
                path: path.clone(),
                what,
            },
            UntrustedReadError::NotFound => TreeError::Io {
                path: path.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
            UntrustedReadError::Io(e) => TreeError::Io {
                path: path.clone(),
                source: io::Error::other(e),
            },
        })?;
        *total += bytes.len() as u64;
        // The mode of the name now; a swap since the read changes only this bit.
        let executable = std::fs::symlink_metadata(root.join(&path))
            .map(|m| m.mode() & 0o111 != 0)
            .unwrap_or(false);
        files.push(TreeFile {
            path,
            bytes,
            executable,
        });
    }
    Ok(())
}

/// Checks files that arrived from elsewhere (a client's message) as [`read_tree`] checks what it
/// reads: plain relative paths of allowed names, no folder deeper than the cap, no path twice,
/// and the count and the bytes within the caps.
pub fn check_files(files: &[TreeFile], limits: &TreeLimits) -> Result<(), TreeError> {
    if files.len() > limits.max_files {
        return Err(TreeError::TooManyFiles {
            max: limits.max_files,
        });
    }
    let mut total = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        let parts: Vec<&str> = f.path.split('/').collect();
        if parts.iter().any(|p| !name_ok(p)) || !seen.insert(f.path.as_str()) {
            return Err(TreeError::BadName {
                path: f.path.clone(),
            });
        }
        if parts.len() - 1 > limits.max_depth {
            return Err(TreeError::TooDeep {
                path: f.path.clone(),
                max: limits.max_depth,
            });
        }
        total = total.saturating_add(f.bytes.len() as u64);
        if total > limits.max_bytes {
            return Err(TreeError::TooLarge {
                path: f.path.clone(),
                max: limits.max_bytes,
            });
        }
    }
    Ok(())
}

/// Writes `files` under `dest` (created), folders 0755, files 0644 or 0755 when executable.
/// Paths are checked again: a `..`, an empty or a bad name is refused.
pub fn write_tree(dest: &Path, files: &[TreeFile]) -> io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for f in files {
        let parts: Vec<&str> = f.path.split('/').collect();
        if parts.iter().any(|p| !name_ok(p)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{:?}: not a plain relative path", f.path),
            ));
        }
        let path = dest.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.bytes)?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Hex SHA-256 over the files' paths, modes and contents, in path order: the tree's identity
/// in the score log.
pub fn tree_hash(files: &[TreeFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0, f.executable as u8]);
        h.update((f.bytes.len() as u64).to_le_bytes());
        h.update(&f.bytes);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TreeLimits = TreeLimits {
        max_files: 4,
        max_bytes: 100,
        max_depth: 2,
    };

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("run.sh"), "echo hi\n").unwrap();
        std::fs::set_permissions(
            d.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(d.path().join("a/b/x.txt"), "x").unwrap();
        d
    }

    #[test]
    fn a_plain_tree_reads_and_writes_back_the_same() {
        let d = tree();
        let files = read_tree(d.path(), &LIMITS).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/x.txt", "run.sh"]);
        assert!(files[1].executable && !files[0].executable);
        let out = tempfile::tempdir().unwrap();
        write_tree(out.path(), &files).unwrap();
        let again = read_tree(out.path(), &LIMITS).unwrap();
        assert_eq!(tree_hash(&files), tree_hash(&again));
    }

    #[test]
    fn links_fifos_and_hard_links_are_refused() {
        let d = tree();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("a/link")).unwrap();
        let e = read_tree(d.path(), &LIMITS).unwrap_err();
        assert!(
            matches!(&e, TreeError::NotPlain { path, .. } if path == "a/link"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("a/dirlink")).unwrap();
        let e = read_tree(d.path(), &LIMITS).unwrap_err();
        assert!(
            matches!(&e, TreeError::NotPlain { path, .. } if path == "a/dirlink"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("a/dirlink")).unwrap();
        let fifo = std::ffi::CString::new(d.path().join("f").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_tree(d.path(), &LIMITS).unwrap_err(),
            TreeError::NotPlain { .. }
        ));
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::fs::hard_link(d.path().join("run.sh"), d.path().join("hard")).unwrap();
        assert!(matches!(
            read_tree(d.path(), &LIMITS).unwrap_err(),
            TreeError::NotPlain { .. }
        ));
        // A root that is itself a link is refused too.
        std::fs::remove_file(d.path().join("hard")).unwrap();
        let link_root = d.path().join("root-link");
        std::os::unix::fs::symlink(d.path().join("a"), &link_root).unwrap();
        assert!(read_tree(&link_root, &LIMITS).is_err());
    }

    #[test]
    fn caps_are_enforced_before_reading() {
        let d = tree();
        std::fs::write(d.path().join("big"), vec![0u8; 200]).unwrap();
        assert!(matches!(
            read_tree(d.path(), &LIMITS).unwrap_err(),
            TreeError::TooLarge { .. }
        ));
        std::fs::remove_file(d.path().join("big")).unwrap();
        for i in 0..3 {
            std::fs::write(d.path().join(format!("f{i}")), "").unwrap();
        }
        assert!(matches!(
            read_tree(d.path(), &LIMITS).unwrap_err(),
            TreeError::TooManyFiles { max: 4 }
        ));
        let deep = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(deep.path().join("1/2/3")).unwrap();
        assert!(matches!(
            read_tree(deep.path(), &LIMITS).unwrap_err(),
            TreeError::TooDeep { .. }
        ));
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join("a\nb"), "").unwrap();
        assert!(matches!(
            read_tree(bad.path(), &LIMITS).unwrap_err(),
            TreeError::BadName { .. }
        ));
        assert!(matches!(
            read_tree(&bad.path().join("none"), &LIMITS).unwrap_err(),
            TreeError::Missing(_)
        ));
    }

    #[test]
    fn received_files_are_checked_as_a_read_tree_is() {
        let f = |p: &str, n: usize| TreeFile {
            path: p.into(),
            bytes: vec![0; n],
            executable: false,
        };
        assert!(check_files(&[f("run.sh", 10), f("a/b/x", 10)], &LIMITS).is_ok());
        for bad in ["../x", "a//b", "/etc/passwd", "a/./b", "x\n"] {
            assert!(
                matches!(
                    check_files(&[f(bad, 1)], &LIMITS),
                    Err(TreeError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_files(&[f("x", 1), f("x", 1)], &LIMITS),
            Err(TreeError::BadName { .. })
        ));
        assert!(matches!(
            check_files(&[f("a/b/c/x", 1)], &LIMITS),
            Err(TreeError::TooDeep { .. })
        ));
        assert!(matches!(
            check_files(&[f("x", 60), f("y", 60)], &LIMITS),
            Err(TreeError::TooLarge { .. })
        ));
        let many: Vec<TreeFile> = (0..5).map(|i| f(&format!("f{i}"), 0)).collect();
        assert!(matches!(
            check_files(&many, &LIMITS),
            Err(TreeError::TooManyFiles { max: 4 })
        ));
    }

    #[test]
    fn writing_refuses_paths_that_leave_the_folder() {
        let out = tempfile::tempdir().unwrap();
        for p in ["../x", "a/../../x", "", "a//b"] {
            let f = TreeFile {
                path: p.into(),
                bytes: vec![],
                executable: false,
            };
            assert!(write_tree(out.path(), &[f]).is_err(), "{p:?}");
        }
    }
}
