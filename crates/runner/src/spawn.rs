//! The fork side of the lifecycle: everything the child does between `clone` and `execve`.
//!
//! The parent is multi-threaded (a service, a tokio runtime, a monitor thread), so the child
//! is a copy of one thread whose other threads are gone and whose allocator or glibc locks
//! may be held by them. Between the clone and the exec the child therefore only makes system
//! calls on values prepared before the clone: no allocation, no formatting, no glibc function
//! that looks at other threads (`setuid`/`setgroups` in glibc broadcast to every thread and
//! would hang here, so the raw system calls are used). It reports a failure as 8 bytes (a
//! stage and an errno) on a close-on-exec pipe, which the parent reads until end of file: no
//! bytes means the exec happened.
//!
//! With a PID namespace the clone makes a small init (pid 1 of the namespace, never an exec)
//! that forks the program (pid 2) and waits for it. Pid 1 is the one process the kernel
//! shields from signals sent inside its namespace, so it is ours, not the program's: the
//! program keeps ordinary signal behaviour (SIGXCPU, SIGXFSZ, `kill -SEGV $$` kill it) and the
//! init passes its raw wait status to the parent on a second pipe, then exits, which makes the
//! kernel kill everything left in the namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What failed in the child, for the parent's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    ProcessGroup = 1,
    DeathSignal,
    Sync,
    Descriptors,
    WorkingDirectory,
    Rlimit,
    Groups,
    Gid,
    Uid,
    PreExec,
    Fork,
    Exec,
}

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            ProcessGroup,
            DeathSignal,
            Sync,
            Descriptors,
            WorkingDirectory,
            Rlimit,
            Groups,
            Gid,
            Uid,
            PreExec,
            Fork,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Stage::ProcessGroup => "setting its process group",
            Stage::DeathSignal => "setting its parent-death signal",
            Stage::Sync => "waiting for its parent",
            Stage::Descriptors => "setting up its descriptors",
            Stage::WorkingDirectory => "changing to its working directory",
            Stage::Rlimit => "setting its resource limits",
            Stage::Groups => "dropping supplementary groups",
            Stage::Gid => "setting its group id",
            Stage::Uid => "setting its user id",
            Stage::PreExec => "its caller's step before exec",
            Stage::Fork => "forking the program from the namespace's init",
            Stage::Exec => "executing the program",
        }
    }
}

/// A step the caller runs in the child right before exec (see `Command::pre_exec`).
pub(crate) type PreExec = dyn Fn() -> io::Result<()> + Send + Sync;

/// Everything the child needs, prepared before the clone.
pub(crate) struct Plan<'p> {
    pub prog: CString,
    /// Kept alive for the pointers in `argv_ptrs`.
    pub _argv: Vec<CString>,
    pub argv_ptrs: Vec<*const libc::c_char>,
    pub _envp: Vec<CString>,
    pub envp_ptrs: Vec<*const libc::c_char>,
    pub cwd: Option<CString>,
    /// (source, target) descriptors; every source is above every target, so no dup2 can
    /// overwrite a source still to be used.
    pub dups: Vec<(RawFd, RawFd)>,
    /// The descriptors the program inherits, ascending: 0, 1, 2 and every target of `dups`.
    /// Every other is made close-on-exec before exec.
    pub inherited: Vec<RawFd>,
    /// (resource, soft, hard).
    pub rlimits: Vec<(libc::c_int, libc::rlim_t, libc::rlim_t)>,
    pub credentials: Option<(libc::uid_t, libc::gid_t)>,
    pub parent: libc::pid_t,
    pub pre_exec: Option<&'p PreExec>,
}

/// A pipe, both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec copy of `fd` numbered at least `min`.
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain fcntl on a descriptor the caller owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// How the child was cloned.
pub(crate) enum Clone {
    /// The program itself, in its own process group.
    Direct,
    /// An init in a new PID namespace (and user namespace when `user`), which forks the
    /// program; `sync` is read before anything else (the parent writes the id maps first and
    /// its death reads as end of file), `status` receives the program's raw wait status.
    Namespace {
        flags: libc::c_int,
        sync: RawFd,
        status: RawFd,
    },
}

/// Clones the child. Returns its pid in the parent; never returns in the child.
///
/// # Safety
/// `plan` and the descriptors must stay valid until the parent has read `err` to its end; the
/// caller must close its copy of `err`'s write end (`err_w`) right after.
pub(crate) unsafe fn clone_child(
    plan: &Plan,
    how: &Clone,
    err_w: RawFd,
) -> io::Result<libc::pid_t> {
    let flags = match how {
        Clone::Direct => 0,
        Clone::Namespace { flags, .. } => *flags,
    };
    // The raw system call, not glibc's fork: no atfork handlers (a GPU driver's among them)
    // run in a child that only execs. With no stack given it behaves as fork.
    let pid = libc::syscall(
        libc::SYS_clone,
        (flags | libc::SIGCHLD) as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid as libc::pid_t);
    }
    match how {
        Clone::Direct => {
            if libc::setpgid(0, 0) != 0 {
                fail(err_w, Stage::ProcessGroup);
            }
            die_with(plan.parent, err_w);
            exec(plan, err_w)
        }
        Clone::Namespace { sync, status, .. } => init(plan, *sync, *status, err_w),
    }
}

/// Sets the parent-death signal and exits if the parent already died (`parent` 0: in a new
/// PID namespace, where the parent is outside and reads as 0, the sync pipe checks instead).
unsafe fn die_with(parent: libc::pid_t, err_w: RawFd) {
    // The signal follows the parent *thread* that cloned: the runner clones from the thread
    // that then waits for the child, which outlives it.
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) != 0
    {
        fail(err_w, Stage::DeathSignal);
    }
    if parent != 0 && libc::getppid() != parent {
        libc::_exit(137);
    }
}

/// Pid 1 of the new namespace.
unsafe fn init(plan: &Plan, sync: RawFd, status: RawFd, err_w: RawFd) -> ! {
    if libc::setpgid(0, 0) != 0 {
        fail(err_w, Stage::ProcessGroup);
    }
    die_with(0, err_w);
    // One byte once the parent has written the id maps; end of file if it died.
    let mut byte = 0u8;
    loop {
        let n = libc::read(sync, (&mut byte as *mut u8).cast(), 1);
        if n == 1 {
            break;
        }
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if n == 0 {
            libc::_exit(126);
        }
        fail(err_w, Stage::Sync);
    }
    let pid = libc::syscall(
        libc::SYS_clone,
        libc::SIGCHLD as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    if pid < 0 {
        fail(err_w, Stage::Fork);
    }
    if pid == 0 {
        // The program, pid 2: dies with the init if anything kills it.
        die_with(0, err_w);
        exec(plan, err_w);
    }
    // The init keeps only the status pipe: the program's output pipes and the error pipe
    // must close when the program (and whatever it left) closes them, not when the init ends.
    close_all_but(status);
    let mut st: libc::c_int = 0;
    loop {
        // Orphans of the namespace are reparented here: reap them too, until the program.
        let r = libc::waitpid(-1, &mut st, 0);
        if r as libc::c_long == pid {
            let bytes = st.to_ne_bytes();
            libc::write(status, bytes.as_ptr().cast(), bytes.len());
            // Exiting ends the namespace: the kernel kills everything still in it.
            libc::_exit(0);
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(125);
        }
    }
}

unsafe fn close_all_but(keep: RawFd) {
    let close_range = |lo: libc::c_uint, hi: libc::c_uint| {
        libc::syscall(libc::SYS_close_range, lo, hi, 0 as libc::c_uint)
    };
    let ok = (keep == 0 || close_range(0, keep as libc::c_uint - 1) == 0)
        && close_range(keep as libc::c_uint + 1, libc::c_uint::MAX) == 0;
    if !ok {
        // Kernels before 5.9: one by one, as far as any descriptor of ours can be numbered.
        for fd in 0..4096 {
            if fd != keep {
                libc::close(fd);
            }
        }
    }
}

/// Marks descriptors `lo..=hi` close-on-exec (not closed: the exec-error pipe and a pre-exec
/// step's descriptors are still needed until exec).
unsafe fn cloexec_range(lo: RawFd, hi: RawFd) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let done = libc::syscall(
        libc::SYS_close_range,
        lo as libc::c_uint,
        hi as libc::c_uint,
        CLOSE_RANGE_CLOEXEC,
    ) == 0;
    if !done {
        // Kernels before 5.11: one by one, as far as any descriptor of ours can be numbered.
        for fd in lo..=hi.min(4095) {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// The program's side: signals, descriptors, folder, limits, credentials, the caller's step,
/// exec.
unsafe fn exec(plan: &Plan, err_w: RawFd) -> ! {
    // Ignored signals stay ignored across exec (Rust ignores SIGPIPE), and the mask is
    // inherited: give the program the defaults.
    // The standard signals: glibc's own real-time ones (32, 33) are its business.
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    for &(src, dst) in &plan.dups {
        // dup2 clears close-on-exec on the new descriptor.
        if libc::dup2(src, dst) < 0 {
            fail(err_w, Stage::Descriptors);
        }
    }
    // A descriptor something in this process left inheritable (a library's, a test
    // harness's) must not reach the program: only the ones it is given do.
    let mut from: RawFd = 0;
    for &fd in &plan.inherited {
        if fd > from {
            cloexec_range(from, fd - 1);
        }
        from = fd + 1;
    }
    cloexec_range(from, RawFd::MAX);
    if let Some(cwd) = &plan.cwd {
        if libc::chdir(cwd.as_ptr()) != 0 {
            fail(err_w, Stage::WorkingDirectory);
        }
    }
    for &(resource, soft, hard) in &plan.rlimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        if libc::setrlimit(resource as _, &lim) != 0 {
            fail(err_w, Stage::Rlimit);
        }
    }
    if let Some((uid, gid)) = plan.credentials {
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0 {
            fail(err_w, Stage::Groups);
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            fail(err_w, Stage::Gid);
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            fail(err_w, Stage::Uid);
        }
    }
    if let Some(step) = plan.pre_exec {
        if let Err(e) = step() {
            *libc::__errno_location() = e.raw_os_error().unwrap_or(libc::EINVAL);
            fail(err_w, Stage::PreExec);
        }
    }
    libc::execve(
        plan.prog.as_ptr(),
        plan.argv_ptrs.as_ptr(),
        plan.envp_ptrs.as_ptr(),
    );
    fail(err_w, Stage::Exec)
}

/// Reports `stage` and errno on the error pipe and exits.
unsafe fn fail(err_w: RawFd, stage: Stage) -> ! {
    let errno = *libc::__errno_location();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(err_w, msg.as_ptr().cast(), msg.len());
    libc::_exit(127)
}

/// Reads the error pipe to its end: `None` when the exec happened.
pub(crate) fn read_failure(err_r: &OwnedFd) -> io::Result<Option<(Stage, io::Error)>> {
    let mut msg = [0u8; 8];
    let mut got = 0;
    while got < msg.len() {
        // SAFETY: reads into the unfilled part of `msg`.
        let n = unsafe {
            libc::read(
                err_r.as_raw_fd(),
                msg[got..].as_mut_ptr().cast(),
                msg.len() - got,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    if got < msg.len() {
        return Ok(None);
    }
    let stage = u32::from_ne_bytes(msg[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(msg[4..].try_into().expect("4 bytes"));
    Ok(Some((
        Stage::from_u32(stage).unwrap_or(Stage::Exec),
        io::Error::from_raw_os_error(errno),
    )))
}
