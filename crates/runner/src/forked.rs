//! A closure in a child process without an exec: [`fork_call`] forks, optionally drops to
//! another user, runs the closure there and hands its result back, reaped like every other
//! child of rdbench. For work that must run with another user's rights (root writing into an
//! agent's folder, so that the kernel checks every access against the agent's own) or in a
//! process of its own (one thread, to enter a user namespace).
//!
//! The lifecycle, the same as [`crate::Command`]'s where it applies: the child gets
//! `PR_SET_PDEATHSIG` = SIGKILL (it dies with the parent), drops its credentials with the raw
//! system calls (no supplementary groups, then gid, then uid, checked), runs the closure (a
//! panic is caught and reported), writes the result as one JSON document on a close-on-exec
//! pipe and `_exit`s (no exit handlers, no destructors of the parent's state). The parent
//! reads the pipe until end of file or the deadline (then SIGKILL), reaps the child, and
//! accepts the result only from an exit with code 0 (a child killed half-way may have written
//! half a result).
//!
//! **Safety, the one rule**: the child of a fork is a copy of the calling thread only. A lock
//! another thread held at the fork (the allocator's, stdio's, a logger's) stays held forever
//! in the child, and the closure, the encoding of its result and a caught panic all allocate.
//! So the caller must be **single-threaded** (a command-line client), or the closure must
//! only make system calls and its result encode without allocating (a plain number; the
//! encoder writes straight to the pipe without a buffer). This is why [`fork_call`] is
//! `unsafe`; where a program can be exec'd instead, [`crate::Command`] has no such rule.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{spawn, Status};

/// Largest result accepted from the child, bytes of JSON.
pub const MAX_RESULT_BYTES: usize = 16 << 20;

/// What the child sends back.
#[derive(Serialize, Deserialize)]
enum Report<T> {
    Done(T),
    /// Dropping to the credentials failed at this step, with this OS error.
    Credentials {
        step: String,
        errno: i32,
    },
    Panicked,
}

/// Why a [`fork_call`] gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot become uid {uid} (gid {gid}): {step}: {source}")]
    Credentials {
        uid: u32,
        gid: u32,
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("the forked work panicked")]
    Panicked,
    #[error("the forked work was killed at its deadline of {0:?}")]
    TimedOut(Duration),
    #[error("the forked work ended without a result ({0:?})")]
    Died(Status),
    #[error("the forked work's result was longer than {MAX_RESULT_BYTES} bytes")]
    TooLong,
    #[error("the forked work's result is not one well-formed document: {0}")]
    Malformed(String),
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> ForkError {
    move |source| ForkError::Os { what, source }
}

/// Runs `work` in a forked child, as `credentials` (uid, gid; the parent must be root to
/// change them) when given, killed at `deadline` when given, and returns its result.
///
/// # Safety
/// The calling process must be single-threaded, or `work` must only make system calls and
/// `T` encode without allocating (see the module's overview): the child is a copy of this
/// thread alone, and any lock another thread held at the fork is never released there.
pub unsafe fn fork_call<T: Serialize + DeserializeOwned>(
    work: impl FnOnce() -> T,
    credentials: Option<(u32, u32)>,
    deadline: Option<Duration>,
) -> Result<T, ForkError> {
    let (read_end, write_end) = spawn::pipe().map_err(os("creating the result pipe"))?;
    let parent = libc::getpid();
    let started = Instant::now();
    let pid = libc::fork();
    if pid < 0 {
        return Err(os("forking")(io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(read_end);
        child(work, credentials, parent, write_end)
    }
    drop(write_end);
    let read = read_until(&read_end, deadline.map(|d| started + d));
    if read.is_err() {
        // The deadline passed, or the result is not wanted: the child is unreaped, so its
        // pid is still its own.
        libc::kill(pid, libc::SIGKILL);
    }
    let status = reap(pid).map_err(os("reaping the forked child"))?;
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(None) => return Err(ForkError::TimedOut(deadline.unwrap_or_default())),
        Err(Some(e)) => return Err(e),
    };
    if status != Status::Code(0) {
        return Err(ForkError::Died(status));
    }
    match serde_json::from_slice::<Report<T>>(&bytes) {
        Ok(Report::Done(value)) => Ok(value),
        Ok(Report::Panicked) => Err(ForkError::Panicked),
        Ok(Report::Credentials { step, errno }) => {
            let (uid, gid) = credentials.unwrap_or_default();
            Err(ForkError::Credentials {
                uid,
                gid,
                step,
                source: io::Error::from_raw_os_error(errno),
            })
        }
        Err(e) => Err(ForkError::Malformed(e.to_string())),
    }
}

/// The child's side; never returns.
unsafe fn child<T: Serialize>(
    work: impl FnOnce() -> T,
    credentials: Option<(u32, u32)>,
    parent: libc::pid_t,
    out: OwnedFd,
) -> ! {
    let report = match become_user(credentials, parent) {
        Err((step, errno)) => Report::Credentials {
            step: step.to_string(),
            errno,
        },
        Ok(()) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(value) => Report::Done(value),
            Err(_) => Report::Panicked,
        },
    };
    let mut pipe = RawWriter(out.as_raw_fd());
    let code = match serde_json::to_writer(&mut pipe, &report) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    libc::_exit(code)
}

/// Dies with the parent, then drops to `credentials`; on failure the step and errno.
unsafe fn become_user(
    credentials: Option<(u32, u32)>,
    parent: libc::pid_t,
) -> Result<(), (&'static str, i32)> {
    let errno = || *libc::__errno_location();
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) != 0
    {
        return Err(("setting its parent-death signal", errno()));
    }
    // The parent may have died between the fork and the prctl.
    if libc::getppid() != parent {
        libc::_exit(137);
    }
    let Some((uid, gid)) = credentials else {
        return Ok(());
    };
    // The raw system calls: glibc's wrappers signal every other thread, which the child of a
    // fork in a multi-threaded parent does not have.
    if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0 {
        return Err(("dropping supplementary groups", errno()));
    }
    if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
        return Err(("setting its group id", errno()));
    }
    if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
        return Err(("setting its user id", errno()));
    }
    if libc::geteuid() != uid {
        return Err(("checking its user id", libc::EPERM));
    }
    Ok(())
}

/// Writes straight to a descriptor, without a buffer (nothing to allocate in the child).
struct RawWriter(RawFd);

impl Write for RawWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: writes from a live buffer to a descriptor the child owns.
            let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `fd` to its end, at most [`MAX_RESULT_BYTES`]; `Err(None)` when `until` passed first.
fn read_until(fd: &OwnedFd, until: Option<Instant>) -> Result<Vec<u8>, Option<ForkError>> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let timeout_ms = until.map_or(-1, |u| {
            u.saturating_duration_since(Instant::now())
                .as_millis()
                .min(60_000) as libc::c_int
        });
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Some(os("waiting for the forked child")(e)));
        }
        if n == 0 {
            if until.is_some_and(|u| Instant::now() >= u) {
                return Err(None);
            }
            continue;
        }
        // SAFETY: reads into a live buffer; poll said the pipe is readable or closed.
        let k = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if k == 0 {
            return Ok(bytes);
        }
        if k < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Some(os("reading the forked child's result")(e)));
        }
        if bytes.len() + k as usize > MAX_RESULT_BYTES {
            return Err(Some(ForkError::TooLong));
        }
        bytes.extend_from_slice(&buf[..k as usize]);
    }
}

/// Waits for `pid` and returns how it ended.
fn reap(pid: libc::pid_t) -> io::Result<Status> {
    let mut st = 0;
    loop {
        // SAFETY: waits for our own child.
        if unsafe { libc::waitpid(pid, &mut st, 0) } == pid {
            return Ok(Status::from_raw(st));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: plain geteuid.
        unsafe { libc::geteuid() == 0 }
    }

    /// One test, so that no other test of this binary runs on another thread while it forks
    /// (the safety rule above: only libtest's main thread, waiting, is left beside it).
    #[test]
    fn forked_work_returns_its_result_and_every_other_ending_is_an_error() {
        let me = std::process::id();
        // SAFETY (every call below): this binary's only test; the closures run alone.
        let (pid, text) = unsafe {
            fork_call(
                || {
                    std::env::set_var("RDBENCH_FORKED_ONLY", "1");
                    (
                        std::process::id(),
                        format!("made in {}", std::process::id()),
                    )
                },
                None,
                None,
            )
        }
        .unwrap();
        assert_ne!(pid, me, "the work ran in another process");
        assert_eq!(text, format!("made in {pid}"));
        assert!(
            std::env::var_os("RDBENCH_FORKED_ONLY").is_none(),
            "its side effects stayed there"
        );

        // The work's own error is a result like any other.
        let r: Result<String, String> =
            unsafe { fork_call(|| Err("refused".to_string()), None, None) }.unwrap();
        assert_eq!(r, Err("refused".to_string()));

        let panicked = unsafe { fork_call(|| -> u32 { panic!("inside the child") }, None, None) };
        assert!(matches!(panicked, Err(ForkError::Panicked)), "{panicked:?}");

        let killed = unsafe {
            fork_call(
                || {
                    libc::raise(libc::SIGTERM);
                    1u32
                },
                None,
                None,
            )
        };
        assert!(
            matches!(killed, Err(ForkError::Died(Status::Signal(libc::SIGTERM)))),
            "{killed:?}"
        );

        let exited = unsafe { fork_call(|| -> u32 { libc::_exit(7) }, None, None) };
        assert!(
            matches!(exited, Err(ForkError::Died(Status::Code(7)))),
            "{exited:?}"
        );

        let started = Instant::now();
        let slow = unsafe {
            fork_call(
                || std::thread::sleep(Duration::from_secs(30)),
                None,
                Some(Duration::from_millis(300)),
            )
        };
        let took = started.elapsed();
        assert!(matches!(slow, Err(ForkError::TimedOut(_))), "{slow:?}");
        assert!(
            took < Duration::from_secs(5),
            "killed at the deadline: {took:?}"
        );

        let long = unsafe { fork_call(|| "x".repeat(MAX_RESULT_BYTES + 1), None, None) };
        assert!(matches!(long, Err(ForkError::TooLong)), "{long:?}");

        // Another user's rights: as root the child becomes nobody, without groups; otherwise
        // the kernel refuses and the step says which.
        let ids = unsafe {
            fork_call(
                || {
                    let groups = libc::getgroups(0, std::ptr::null_mut());
                    (libc::geteuid(), libc::getegid(), groups)
                },
                Some((65534, 65534)),
                None,
            )
        };
        if is_root() {
            assert_eq!(ids.unwrap(), (65534, 65534, 0));
        } else {
            match ids {
                Err(ForkError::Credentials { uid, source, .. }) => {
                    assert_eq!(uid, 65534);
                    assert_eq!(source.raw_os_error(), Some(libc::EPERM));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
