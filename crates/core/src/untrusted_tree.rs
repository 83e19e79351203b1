//! Reading and writing inside a folder tree that someone else controls (an agent's attempt
//! folder), without ever following a link out of it.
//!
//! The operator's client runs as root or as the scoring user, and the folder it writes the
//! starting files into (or reads a submission from, or drops a summary into) belongs to the
//! agent, who may swap any component for a symbolic link at any moment, timed with inotify.
//! So nothing here resolves a path as a whole: every walk starts at `/` and opens one
//! component at a time with `O_NOFOLLOW` relative to the folder opened before it, new files
//! are created with `O_EXCL` (a planted link or file makes the create fail instead of being
//! written through), and a replaced file is written under a fresh name and renamed over the
//! old name (a rename replaces a link, it never follows one). Where the caller is root and the
//! folder belongs to a user, [`as_user`] also drops to that user first, so the kernel checks
//! every access against the agent's own rights.
//!
//! Hand-written because no maintained crate offers the whole-walk `O_NOFOLLOW` discipline
//! (`openat2`'s `RESOLVE_NO_SYMLINKS` does, from Linux 5.6; the walk works everywhere).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::fsutil::{NotRegular, UntrustedReadError};

fn cstr(name: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a file name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn open_at(dir: libc::c_int, name: &std::ffi::OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a valid C string; the returned descriptor is owned by the OwnedFd.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

/// A symbolic link met on a walk: ELOOP (final component) or ENOTDIR (a link to a folder
/// opened with `O_DIRECTORY | O_NOFOLLOW`) said plainly.
fn explain(e: io::Error, path: &Path) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: a symbolic link (or a non-folder) in the path; rdbench does not follow links here",
                path.display()
            ),
        ),
        _ => e,
    }
}

/// The plain components of an absolute path with no `.` or `..`.
fn components(path: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not an absolute path", path.display()),
        ));
    }
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => parts.push(p),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: `.` or `..` in the path", path.display()),
                ))
            }
        }
    }
    Ok(parts)
}

/// Opens the folder at the absolute `path`, refusing a symbolic link anywhere on the way.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    walk(path, false)
}

/// As [`open_dir`], creating missing folders (mode 0755 under the umask) on the way.
pub fn create_dir_all(path: &Path) -> io::Result<OwnedFd> {
    walk(path, true)
}

fn walk(path: &Path, create: bool) -> io::Result<OwnedFd> {
    let mut dir = open_at(libc::AT_FDCWD, std::ffi::OsStr::new("/"), DIR_FLAGS)?;
    for part in components(path)? {
        let next = match open_at(dir.as_raw_fd(), part, DIR_FLAGS) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                let c = cstr(part)?;
                // SAFETY: a valid C string; mkdirat creates, never follows, the last component.
                let made = check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) });
                match made {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                open_at(dir.as_raw_fd(), part, DIR_FLAGS)
            }
            other => other,
        };
        dir = next.map_err(|e| explain(e, path))?;
    }
    Ok(dir)
}

/// Removes the folder at the absolute `path` if it is empty, reached without following a link.
pub fn remove_empty_dir(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a folder path", path.display()),
        ));
    };
    let dir = open_dir(parent)?;
    let c = cstr(name)?;
    // SAFETY: a valid C string relative to an opened folder; AT_REMOVEDIR removes only an
    // empty folder and never follows a link.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) }).map(|_| ())
}

/// Whether the opened folder has no entries.
pub fn is_empty(dir: &OwnedFd) -> io::Result<bool> {
    // A fresh descriptor of the same folder: the listing reads from its own offset.
    let fd = open_at(dir.as_raw_fd(), std::ffi::OsStr::new("."), DIR_FLAGS)?;
    let raw = fd.as_raw_fd();
    // SAFETY: fdopendir takes ownership of a valid directory descriptor; closedir frees both.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(fd);
    let mut empty = true;
    loop {
        // SAFETY: a valid DIR stream; readdir's entry lives until the next call.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            break;
        }
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            empty = false;
            break;
        }
    }
    // SAFETY: the stream from fdopendir above, closed once.
    unsafe { libc::closedir(stream) };
    Ok(empty)
}

/// Opens (creating) the folders of `rel`'s parent under `dir`, one component at a time.
fn parent_of<'a>(dir: &OwnedFd, rel: &'a str) -> io::Result<(OwnedFd, &'a str)> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    if name.is_empty()
        || parts
            .iter()
            .chain([&name])
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?}: not a plain relative path"),
        ));
    }
    let mut cur = open_at(dir.as_raw_fd(), std::ffi::OsStr::new("."), DIR_FLAGS)?;
    for p in parts {
        let os = std::ffi::OsStr::new(p);
        let c = cstr(os)?;
        // SAFETY: a valid C string; mkdirat never follows the last component.
        match check(unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) }) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        cur = open_at(cur.as_raw_fd(), os, DIR_FLAGS)?;
    }
    Ok((cur, name))
}

/// Writes a new file `rel` (plain, `/`-separated) under `dir`: created exclusively, never
/// through a link, mode 0644 under the umask.
pub fn write_new(dir: &OwnedFd, rel: &str, bytes: &[u8]) -> io::Result<()> {
    let (parent, name) = parent_of(dir, rel)?;
    let c = cstr(std::ffi::OsStr::new(name))?;
    // SAFETY: a valid C string; O_EXCL | O_NOFOLLOW refuses anything already there.
    let fd = check(unsafe {
        libc::openat(
            parent.as_raw_fd(),
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    })?;
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.sync_all()
}

/// Replaces the file at the absolute `path` with `bytes`: written under a fresh name in the
/// same folder (opened without following links) and renamed over `path`, which replaces a
/// link planted there instead of writing through it.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        ));
    };
    let dir = open_dir(parent)?;
    let tmp = format!(".rdbench-{}-{:016x}.tmp", std::process::id(), rand_u64());
    write_new(&dir, &tmp, bytes)?;
    let (from, to) = (cstr(std::ffi::OsStr::new(&tmp))?, cstr(name)?);
    // SAFETY: valid C strings, both relative to the same opened folder.
    let renamed = check(unsafe {
        libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr())
    });
    if let Err(e) = renamed {
        // SAFETY: as above; the temporary file is ours.
        unsafe { libc::unlinkat(dir.as_raw_fd(), from.as_ptr(), 0) };
        return Err(e);
    }
    Ok(())
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // Only uniqueness matters here (the name is created exclusively).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    }
    u64::from_le_bytes(b)
}

/// Reads the file `name` of the opened folder as [`crate::fsutil::read_untrusted`] does: no
/// link, no FIFO or device, at most `max` bytes checked on the open descriptor before a byte
/// is read. A file with more than one name (a hard link) is refused too: an operator's client
/// reading as root must not send the scorer a root-only file the agent linked into its folder
/// where the kernel's `protected_hardlinks` is off.
pub fn read_file(dir: &OwnedFd, name: &str, max: u64) -> Result<Vec<u8>, UntrustedReadError> {
    let fd = open_at(
        dir.as_raw_fd(),
        std::ffi::OsStr::new(name),
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(UntrustedReadError::NotFound),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(UntrustedReadError::NotARegularFile(
                NotRegular::SymbolicLink,
            ))
        }
        Err(e) => return Err(UntrustedReadError::Io(e.to_string())),
    };
    let file = File::from(fd);
    use std::os::unix::fs::MetadataExt;
    match file.metadata() {
        Ok(m) if m.is_file() && m.nlink() > 1 => {
            return Err(UntrustedReadError::NotARegularFile(NotRegular::HardLink))
        }
        Ok(_) => {}
        Err(e) => return Err(UntrustedReadError::Io(e.to_string())),
    }
    crate::fsutil::read_untrusted_file(file, max)
}

/// Who to become for [`as_user`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
}

/// The uid and gid of the user named `name` (or given as a number).
pub fn lookup_user(name: &str) -> io::Result<UserIds> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a user name"))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 << 10];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwnam_r writes within `buf`.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() {
        return Ok(UserIds {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no user named {name:?} on this machine"),
    ))
}

/// How long [`as_user`]'s writer may take before it is killed: writing an attempt's files
/// takes milliseconds, so only a writer stuck on its filesystem gets near it.
pub const WRITER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `work` in a child process that has become `user` (no supplementary groups), and
/// returns what it returned. For root writing into a user's tree: the kernel then refuses
/// whatever the user could not do. The child is forked, dropped to `user`, reaped and its
/// result checked by [`rdbench_runner::fork_call`].
///
/// The caller must be single-threaded (a command-line client): the child of a fork is a copy
/// of the calling thread alone, and `work` allocates (paths, messages), so an allocator or
/// stdio lock another thread held at the fork would never be released there. That is the
/// whole of `fork_call`'s safety condition, and why this is for the operator's client only.
/// The writer is killed after [`WRITER_DEADLINE`].
pub fn as_user(
    user: UserIds,
    work: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    let ids = Some((user.uid, user.gid));
    // SAFETY: the caller is single-threaded (above); the child runs `work` and exits.
    match unsafe { rdbench_runner::fork_call(work, ids, Some(WRITER_DEADLINE)) } {
        Ok(result) => result,
        Err(e @ rdbench_runner::ForkError::Credentials { .. }) => Err(e.to_string()),
        Err(e) => Err(format!("the writer as uid {}: {e}", user.uid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: the work runs with the user's rights (a folder of root's is refused, one of
    /// the user's is written, the file is the user's); otherwise dropping is refused.
    #[test]
    fn as_user_writes_with_the_users_rights_only() {
        use std::os::unix::fs::MetadataExt;
        let nobody = UserIds {
            uid: 65534,
            gid: 65534,
        };
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let write = |dir: std::path::PathBuf| {
            move || {
                let fd = open_dir(&dir).map_err(|e| e.to_string())?;
                write_new(&fd, "f.txt", b"x").map_err(|e| e.to_string())?;
                Ok(format!("wrote as {}", unsafe { libc::geteuid() }))
            }
        };
        if crate::fsutil::effective_uid() != 0 {
            let e = as_user(nobody, write(root.clone())).unwrap_err();
            assert!(e.contains("cannot become uid 65534"), "{e}");
            return;
        }
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let e = as_user(nobody, write(root.clone())).unwrap_err();
        assert!(e.contains("Permission denied"), "root's folder: {e}");
        assert!(!root.join("f.txt").exists());
        let theirs = root.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(nobody.uid), Some(nobody.gid)).unwrap();
        assert_eq!(
            as_user(nobody, write(theirs.clone())).unwrap(),
            "wrote as 65534"
        );
        let meta = std::fs::metadata(theirs.join("f.txt")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }

    #[test]
    fn a_walk_refuses_a_link_anywhere_and_new_files_never_write_through_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let target = root.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("precious"), b"keep").unwrap();
        std::os::unix::fs::symlink(&target, root.join("link")).unwrap();
        // A link as the folder, or as a component on the way, is refused.
        assert!(open_dir(&root.join("link")).is_err());
        assert!(create_dir_all(&root.join("link/sub")).is_err());
        assert!(!target.join("sub").exists());
        // A new folder is made and opened; it is empty; files go into it.
        let dir = create_dir_all(&root.join("a/b")).unwrap();
        assert!(is_empty(&dir).unwrap());
        write_new(&dir, "x/y.txt", b"hi").unwrap();
        assert!(!is_empty(&dir).unwrap());
        assert_eq!(std::fs::read(root.join("a/b/x/y.txt")).unwrap(), b"hi");
        // A link planted at a new file's name is not written through.
        std::os::unix::fs::symlink(target.join("precious"), root.join("a/b/planted")).unwrap();
        assert!(write_new(&dir, "planted", b"overwrite").is_err());
        // Nor at a subfolder's name.
        std::os::unix::fs::symlink(&target, root.join("a/b/sub")).unwrap();
        assert!(write_new(&dir, "sub/precious", b"overwrite").is_err());
        assert_eq!(std::fs::read(target.join("precious")).unwrap(), b"keep");
        // A replaced file replaces the link itself.
        replace_file(&root.join("a/b/planted"), b"summary").unwrap();
        assert_eq!(std::fs::read(target.join("precious")).unwrap(), b"keep");
        assert_eq!(std::fs::read(root.join("a/b/planted")).unwrap(), b"summary");
        assert!(!root.join("a/b/planted").is_symlink());
        // Relative, `..` and link parents are refused for a replaced file too.
        assert!(replace_file(Path::new("rel/out.json"), b"x").is_err());
        assert!(replace_file(&root.join("a/../link/out.json"), b"x").is_err());
        assert!(replace_file(&root.join("link/out.json"), b"x").is_err());
        assert!(!target.join("out.json").exists());
        // An empty folder is removed; one with files, or a link, is not.
        let empty = root.join("empty");
        std::fs::create_dir(&empty).unwrap();
        remove_empty_dir(&empty).unwrap();
        assert!(!empty.exists());
        assert!(remove_empty_dir(&root.join("a")).is_err());
        assert!(remove_empty_dir(&root.join("link")).is_err());
        assert!(target.exists());
        // Reads refuse links and oversized files.
        std::fs::write(root.join("a/b/big"), vec![0u8; 100]).unwrap();
        assert!(matches!(
            read_file(&dir, "big", 10),
            Err(UntrustedReadError::TooLarge { .. })
        ));
        assert!(matches!(
            read_file(&dir, "planted-link", 10),
            Err(UntrustedReadError::NotFound)
        ));
        std::os::unix::fs::symlink(target.join("precious"), root.join("a/b/l2")).unwrap();
        assert!(matches!(
            read_file(&dir, "l2", 10),
            Err(UntrustedReadError::NotARegularFile(_))
        ));
        std::fs::hard_link(target.join("precious"), root.join("a/b/hard")).unwrap();
        assert!(matches!(
            read_file(&dir, "hard", 10),
            Err(UntrustedReadError::NotARegularFile(NotRegular::HardLink))
        ));
        std::fs::write(root.join("a/b/plain"), b"ok").unwrap();
        assert_eq!(read_file(&dir, "plain", 10).unwrap(), b"ok");
    }
}
