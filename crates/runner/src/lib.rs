//! The one child-process lifecycle of rdbench: every child rdbench runs (the scoring worker,
//! the NVRTC child, the emulator's host compiler, the probes of `python3` and `$CXX`) is
//! spawned, limited, timed, captured, killed and reaped here, the same way. In the manner of
//! cargo-nextest's process supervision, on one page:
//!
//! 1. **Spawn** ([`Command::spawn`]). Everything the child needs (argv, environment, folder,
//!    descriptors, limits) is prepared before a raw `clone`; between it and `execve` the child
//!    only makes system calls (the parent is multi-threaded: see `spawn.rs`). It gets its own
//!    **process group** and **`PR_SET_PDEATHSIG` = SIGKILL**, so it dies with the parent
//!    (a SIGKILL of the parent included; the signal follows the cloning *thread*, which is the
//!    one that waits). An exec failure comes back as [`Error::Spawn`] with its stage and OS
//!    error, through a close-on-exec pipe.
//! 2. **Containment** ([`Contain`], reported as [`Containment`]). Where the kernel allows it the
//!    clone makes a new **PID namespace** (as root `CLONE_NEWPID`; unprivileged
//!    `CLONE_NEWUSER | CLONE_NEWPID`, with the parent's own uid and gid mapped, so ids and file
//!    owners read as outside). Its pid 1 is a small init of ours that forks the program (pid
//!    2, so the program keeps ordinary signal behaviour), reaps orphans and hands the
//!    program's wait status to the parent on a pipe. When the init exits (the program ended)
//!    or is killed (the deadline, or the parent's death through the init's own parent-death
//!    signal), **the kernel kills every process left in the namespace**: one that called
//!    `setsid`, double-forked or left the process group included. Where no namespace can be
//!    made (user namespaces disabled, a seccomp profile refusing `clone` flags), the
//!    **fallback** is the process group: it is killed when the program exits and at the
//!    deadline, but a descendant that called `setsid` or `setpgid` escapes it; such a
//!    descendant is detected when it still holds an output pipe after the reap (the
//!    nextest "leaky" test) and reported as [`Outcome::leaked`]; one that closed its
//!    descriptors is invisible. A delegated cgroup v2 would close that gap and also give a
//!    tree-wide memory and process count; it is not used yet (the development machine mounts cgroup v1
//!    controllers with no v2 subtree delegated; the sandbox of issue 21 part 2 is where it
//!    belongs).
//! 3. **Limits** ([`Limits`], one value): `setrlimit` in the program before exec, soft = hard
//!    (so it cannot raise them): address space, CPU seconds (hard limit [`CPU_GRACE`] above the
//!    soft one), file size, open files, processes (per user; never enforced for root: use
//!    [`Command::credentials`]), and no core dumps unless asked. rlimits are per process; the
//!    deadline is the tree-wide bound.
//! 4. **Deadline** ([`Command::deadline`]), over the whole run from the spawn: at expiry the
//!    child and its group get SIGKILL (with a namespace: everything in it) and the exit is
//!    [`Exit::TimedOut`].
//! 5. **Output**: stdin bytes fed, stdout, stderr and extra descriptors ([`Command::capture_fd`],
//!    the worker protocol's reply pipe) read **concurrently** in one `poll` loop on the calling
//!    thread (no threads, no runtime), the child's exit watched through a pidfd. Each stream
//!    keeps a **lossless tail** ([`Captured`]): its last N bytes exactly and the count of all
//!    bytes, so a flood costs no more than the cap and never blocks the child.
//! 6. **Reap** with `wait4`: the raw status and rusage ([`Usage`]: peak RSS of the largest
//!    process, user and system CPU time; with a namespace they cover every process the init
//!    reaped). Without a namespace the group is killed while the exited leader is still a
//!    zombie (its group id cannot be reused then), then it is reaped. The run ends when every
//!    captured pipe is closed, or [`LEAK_GRACE`] after the reap (then `leaked`).
//! 7. **Typed exit** ([`Exit`]): `Exited(code)`, `Signaled(sig)`, `TimedOut`, or
//!    `LimitHit(which)`, where the ending shows the limit: CPU (SIGXCPU; or SIGKILL with the
//!    CPU time used), file size (SIGXFSZ), address space (an allocation failure reported on
//!    stderr the way common runtimes do). What cannot be told from outside (a program that
//!    handles `ENOMEM`, `EFBIG`, `EMFILE` or `EAGAIN` itself, the OOM killer's SIGKILL) is
//!    said precisely at [`Limit`]. A child dropped without [`Child::wait`] is killed and
//!    reaped.
//!
//! [`worker`] is the worker protocol on top: request and token on stdin, reply on an
//! inherited descriptor, accepted only from a normal exit with the token, non-dumpable worker.
//! [`fork_call`] is the one child without an exec (a closure run as another user), forked
//! and reaped here too; it is `unsafe` for the reason given in `forked.rs`.
//! [`Command::sandbox`] puts the program into a [`sandbox`] (bwrap's namespaces, seccomp,
//! Landlock, one work folder) under this same lifecycle.
//!
//! **Cost** (`cargo test -p rdbench-runner --test lifecycle -- --nocapture overhead`: debug
//! build, the 2-core development machine, medians of 300 interleaved spawns of `/bin/true`,
//! p90 within 0.4 ms of each):
//!
//! | spawn of `/bin/true`                                   | as root | unprivileged |
//! |--------------------------------------------------------|---------|--------------|
//! | `std::process::Command`                                | 1.11 ms | 0.87 ms      |
//! | runner, process group only                             | 1.52 ms | 1.24 ms      |
//! | runner, PID namespace (+ user namespace unprivileged)  | 1.86 ms | 1.60 ms      |
//! | same, stdout and stderr captured, a deadline           | 1.87 ms | 1.63 ms      |
//!
//! About 0.4 ms of the difference is the clone itself (std uses `posix_spawn`, which shares
//! the parent's memory instead of copying its page tables; the runner's child must run code
//! of its own before exec), about 0.35 ms the namespace (and its init's extra fork); the poll
//! loop and captures cost nothing measurable. Under other builds the medians rose to 2-4.6 ms
//! for all alike. A scoring worker's own start (a CUDA context) is hundreds of times this.
//!
//! Linux only: namespaces, pidfds, `prctl` and `/proc` are Linux's.

mod capture;
mod forked;
pub mod landlock_rules;
pub mod sandbox;
mod spawn;
pub mod worker;

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use capture::Captured;
use capture::Tail;
pub use forked::{fork_call, ForkError};

/// What a child may use, set with `setrlimit` in the child before exec (soft and hard limit
/// alike, so the program cannot raise them again). `None` leaves the parent's limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Address space, bytes (`RLIMIT_AS`): virtual memory, so mapped libraries and thread
    /// stacks count, not only the heap. Allocations beyond it fail (`ENOMEM`).
    pub address_space: Option<u64>,
    /// CPU time of each process (`RLIMIT_CPU`, whole seconds, rounded up): SIGXCPU at the
    /// limit, SIGKILL [`CPU_GRACE`] later if that is caught or ignored. Per process, not per
    /// tree: the deadline is what bounds a tree.
    pub cpu: Option<Duration>,
    /// Largest file the program may write, bytes (`RLIMIT_FSIZE`): SIGXFSZ beyond it.
    pub file_size: Option<u64>,
    /// Open descriptors (`RLIMIT_NOFILE`): `open` fails with `EMFILE` beyond it.
    pub open_files: Option<u64>,
    /// Processes of the child's user (`RLIMIT_NPROC`): `fork` fails with `EAGAIN` beyond it.
    /// Counted per user (within the child's user namespace when it has one), and never
    /// enforced for root: run the child as another user (see [`Command::credentials`]) for a
    /// limit that holds.
    pub processes: Option<u64>,
    /// Core dumps allowed (`RLIMIT_CORE` 0 otherwise): a dump would copy the child's memory,
    /// a worker's secrets included, to a file.
    pub core_dumps: bool,
}

/// Seconds between the soft CPU limit (SIGXCPU) and the hard one (SIGKILL).
pub const CPU_GRACE: Duration = Duration::from_secs(2);

impl Limits {
    fn rlimits(&self) -> Vec<(libc::c_int, libc::rlim_t, libc::rlim_t)> {
        let mut out = Vec::new();
        let mut same = |resource, value: u64| {
            out.push((
                resource as libc::c_int,
                value as libc::rlim_t,
                value as libc::rlim_t,
            ))
        };
        if let Some(v) = self.address_space {
            same(libc::RLIMIT_AS, v);
        }
        if let Some(v) = self.file_size {
            same(libc::RLIMIT_FSIZE, v);
        }
        if let Some(v) = self.open_files {
            same(libc::RLIMIT_NOFILE, v);
        }
        if let Some(v) = self.processes {
            same(libc::RLIMIT_NPROC, v);
        }
        if !self.core_dumps {
            same(libc::RLIMIT_CORE, 0);
        }
        if let Some(cpu) = self.cpu {
            let soft = cpu_seconds(cpu);
            out.push((
                libc::RLIMIT_CPU as libc::c_int,
                soft as libc::rlim_t,
                (soft + CPU_GRACE.as_secs()) as libc::rlim_t,
            ));
        }
        out
    }
}

fn cpu_seconds(cpu: Duration) -> u64 {
    (cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0)).max(1)
}

/// The limit a [`Exit::LimitHit`] names. What can be told apart from the outside:
/// - CPU: SIGXCPU (the soft limit), or SIGKILL the runner did not send with at least the
///   limit's CPU time used (the hard limit, after a program caught SIGXCPU). The CPU time is
///   the run's rusage, which with a namespace sums every process: a tree SIGKILLed by
///   something else (the OOM killer) after using that much CPU in all reads as this limit.
/// - File size: SIGXFSZ. A program that ignores it sees `EFBIG` from `write`, and its exit
///   says whatever it chooses: not detectable.
/// - Address space: a failed allocation is an `ENOMEM` or NULL the program handles itself;
///   only when it then fails and says so on stderr the way common runtimes do
///   ([`allocation_failed`]) is it told apart. A program that dies silently (or is killed by
///   the kernel's OOM killer: SIGKILL) reads as an ordinary exit or signal.
/// - Open files and processes: `EMFILE` and `EAGAIN` are handled inside the program; not
///   detectable from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The program died of SIGXCPU, or of SIGKILL having used at least its CPU limit.
    Cpu,
    /// The program died of SIGXFSZ.
    FileSize,
    /// An allocation failed under the address-space limit and the program said so on stderr
    /// the way common runtimes do (see [`allocation_failed`]) before exiting or aborting.
    AddressSpace,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Cpu => "CPU time",
            Limit::FileSize => "file size",
            Limit::AddressSpace => "address space",
        })
    }
}

/// How a run ended, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The program exited by itself with this code.
    Exited(i32),
    /// The program was killed by this signal (not one the runner sent, not a limit's).
    Signaled(i32),
    /// The deadline passed; the runner killed the program and everything it started.
    TimedOut,
    /// The program ended at one of its [`Limits`].
    LimitHit(Limit),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Exited(code) => write!(f, "exited with code {code}"),
            Exit::Signaled(sig) => write!(f, "killed by signal {sig}"),
            Exit::TimedOut => f.write_str("killed at its deadline"),
            Exit::LimitHit(limit) => write!(f, "stopped at its {limit} limit"),
        }
    }
}

/// How the program actually ended, before classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Code(i32),
    Signal(i32),
}

impl Status {
    fn from_raw(st: libc::c_int) -> Status {
        if libc::WIFSIGNALED(st) {
            Status::Signal(libc::WTERMSIG(st))
        } else {
            Status::Code(libc::WEXITSTATUS(st))
        }
    }
}

/// What was used, from `wait4`'s rusage of the reaped child: with a PID namespace that is the
/// namespace's init, whose figures include every process of the namespace it reaped (the
/// program, its children, orphans); without one, the program and the children it reaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Peak resident set size of the largest single process, bytes (not a sum over processes).
    pub peak_rss: u64,
    pub user: Duration,
    pub system: Duration,
}

impl Usage {
    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    fn from_rusage(ru: &libc::rusage) -> Usage {
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Usage {
            peak_rss: (ru.ru_maxrss.max(0) as u64) * 1024,
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        }
    }
}

/// How descendants are kept together, asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contain {
    /// A PID namespace where the kernel allows one, the process group otherwise.
    #[default]
    Best,
    /// A PID namespace or an error.
    PidNamespace,
    /// The process group only (what a PID namespace would change is not wanted).
    ProcessGroup,
}

/// How descendants were kept together, for this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// A new PID namespace (inside a new user namespace when `user_namespace`, which an
    /// unprivileged parent needs): nothing the program starts outlives the run.
    PidNamespace { user_namespace: bool },
    /// The program's process group, and why no namespace: a descendant that calls `setsid` or
    /// `setpgid` leaves it and is not killed; one that keeps an output pipe open is reported
    /// as [`Outcome::leaked`].
    ProcessGroup { why: String },
}

/// Where a child's stdout or stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `/dev/null`.
    Null,
    /// The parent's own.
    Inherit,
    /// A pipe read while the child runs, its last `tail` bytes kept.
    Capture { tail: usize },
}

/// Everything a finished run reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit: Exit,
    /// How the program itself ended (on a timeout: the runner's SIGKILL).
    pub status: Status,
    pub usage: Usage,
    /// From the spawn to the reap.
    pub wall: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Each [`Command::capture_fd`] descriptor, in the order asked.
    pub fds: Vec<(RawFd, Captured)>,
    pub containment: Containment,
    /// A descendant still held an output pipe open after the program was reaped and its
    /// group killed: it left the process group (only possible without a PID namespace) and
    /// may still be running.
    pub leaked: bool,
    /// What the sandbox applied, for a [`Command::sandbox`] run.
    pub sandbox: Option<sandbox::Applied>,
}

/// Why a child could not be run. The OS error is kept as it came.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("starting {program}: {stage}: {source}")]
    Spawn {
        program: String,
        stage: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{program} not found on the PATH")]
    NotFound { program: String },
    #[error("a PID namespace is not available: {source}")]
    NoNamespace {
        #[source]
        source: io::Error,
    },
    #[error("an argument, variable or path holds a NUL byte")]
    Nul,
    #[error("a descriptor to capture must be 3 or above and given once, not {0}")]
    BadDescriptor(RawFd),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Os { what, source }
}

type LineHook<'a> = Box<dyn FnMut(&[u8]) + 'a>;

/// A child to run: a program, its arguments and environment, where its output goes, its
/// limits and deadline. Built, then [`Command::run`] (or [`Command::spawn`] and
/// [`Child::wait`]).
pub struct Command<'a> {
    program: OsString,
    args: Vec<OsString>,
    env_clear: bool,
    env: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    stdout: Output,
    stderr: Output,
    fds: Vec<(RawFd, usize)>,
    limits: Limits,
    deadline: Option<Duration>,
    contain: Contain,
    credentials: Option<(u32, u32)>,
    on_stderr_line: Option<LineHook<'a>>,
    pre_exec: Option<Box<spawn::PreExec>>,
    sandbox: Option<sandbox::Sandbox>,
    /// Descriptors the child inherits as they are: (ours, its number there).
    pass: Vec<(OwnedFd, RawFd)>,
}

/// Longest line handed to [`Command::on_stderr_line`]; longer lines come in pieces.
pub const MAX_LINE: usize = 4096;

/// How long, after the program is reaped (and without a namespace, its group killed), its
/// pipes may stay open before the run is reported as leaking a descendant.
pub const LEAK_GRACE: Duration = Duration::from_millis(200);

impl<'a> Command<'a> {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: Vec::new(),
            cwd: None,
            stdin: None,
            stdout: Output::Null,
            stderr: Output::Null,
            fds: Vec::new(),
            limits: Limits::default(),
            deadline: None,
            contain: Contain::Best,
            credentials: None,
            on_stderr_line: None,
            pre_exec: None,
            sandbox: None,
            pass: Vec::new(),
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Sets a variable (the environment is otherwise the parent's, unless [`Self::env_clear`]).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts from an empty environment: only what [`Self::env`] sets.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes written to the child's stdin (then closed); without them stdin is `/dev/null`.
    pub fn stdin_bytes(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.stdin = Some(bytes);
        self
    }

    pub fn stdout(&mut self, out: Output) -> &mut Self {
        self.stdout = out;
        self
    }

    pub fn stderr(&mut self, out: Output) -> &mut Self {
        self.stderr = out;
        self
    }

    /// Gives the child descriptor `fd` (3 or above) as the write end of a pipe read like
    /// stdout, its last `tail` bytes kept: a channel the child's program cannot mix up with
    /// its output.
    pub fn capture_fd(&mut self, fd: RawFd, tail: usize) -> &mut Self {
        self.fds.push((fd, tail));
        self
    }

    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// Wall-clock time from the spawn after which the child and its descendants are killed.
    pub fn deadline(&mut self, deadline: Duration) -> &mut Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn contain(&mut self, contain: Contain) -> &mut Self {
        self.contain = contain;
        self
    }

    /// Runs the program as `uid` and `gid` with no supplementary groups (the parent must be
    /// root for this to succeed).
    pub fn credentials(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.credentials = Some((uid, gid));
        self
    }

    /// Called with each line of stderr (without its newline) as it arrives, when stderr is
    /// captured: a live view beside the kept tail.
    pub fn on_stderr_line(&mut self, hook: impl FnMut(&[u8]) + 'a) -> &mut Self {
        self.on_stderr_line = Some(Box::new(hook));
        self
    }

    /// A step run in the program right before `execve`, after its descriptors, folder,
    /// limits and credentials are set (a Landlock ruleset made beforehand, say). An error
    /// fails the spawn with [`Error::Spawn`] and the error's OS code.
    ///
    /// # Safety
    /// `step` runs in a copy of one thread of a possibly multi-threaded parent, where a lock
    /// another thread held at the clone (the allocator's among them) is never released: it
    /// may only make system calls on values prepared before the spawn (no allocation, no
    /// formatting, no glibc call that takes a lock), and return an error made by
    /// `io::Error::last_os_error` or `from_raw_os_error`.
    pub unsafe fn pre_exec(
        &mut self,
        step: impl Fn() -> io::Result<()> + Send + Sync + 'static,
    ) -> &mut Self {
        self.pre_exec = Some(Box::new(step));
        self
    }

    /// Runs the program in `sandbox` (see [`sandbox`]): the program is resolved on the
    /// sandbox's `PATH`, its environment is the sandbox's plus what [`Self::env`] sets, its
    /// folder ([`Self::current_dir`]) a path inside; limits, deadline, output and the typed
    /// exit are as without it. The sandbox decides the user ([`Self::credentials`] is not used).
    pub fn sandbox(&mut self, sandbox: sandbox::Sandbox) -> &mut Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Spawns and waits: the whole lifecycle.
    pub fn run(&mut self) -> Result<Outcome, Error> {
        self.spawn()?.wait()
    }

    /// Starts the child. Its output is read only by [`Child::wait`]: call it next.
    pub fn spawn(&mut self) -> Result<Child<'a>, Error> {
        match self.sandbox.clone() {
            Some(sandbox) => self.spawn_sandboxed(&sandbox),
            None => self.spawn_direct(),
        }
    }

    /// The same lifecycle around bwrap, which sets the sandbox up and runs the program
    /// through the shim; the shim's status pipe is captured like any descriptor.
    fn spawn_sandboxed(&mut self, sandbox: &sandbox::Sandbox) -> Result<Child<'a>, Error> {
        let captured: Vec<RawFd> = self.fds.iter().map(|&(fd, _)| fd).collect();
        let launch = sandbox.launch(
            &self.program,
            &self.args,
            &self.env,
            self.cwd.as_deref(),
            &captured,
        )?;
        let mut outer = Command::new(&launch.bwrap);
        outer.args(&launch.args).env_clear();
        outer.stdin = self.stdin.take();
        outer.stdout = self.stdout;
        outer.stderr = self.stderr;
        outer.fds = self.fds.clone();
        outer.fds.push((launch.status_fd, 4096));
        outer.limits = self.limits.clone();
        outer.deadline = self.deadline;
        outer.contain = self.contain;
        outer.credentials = launch.credentials;
        outer.on_stderr_line = self.on_stderr_line.take();
        outer.pre_exec = self.pre_exec.take();
        outer.pass = launch.pass;
        let mut child = outer.spawn_direct()?;
        child.sandbox = Some(sandbox::Running {
            status_fd: launch.status_fd,
            program: self.program.to_string_lossy().into_owned(),
        });
        Ok(child)
    }

    fn spawn_direct(&mut self) -> Result<Child<'a>, Error> {
        let started = Instant::now();
        let program_name = self.program.to_string_lossy().into_owned();
        let (prog_c, argv, envp, cwd) = self.exec_strings()?;
        let (child_ends, streams, stdin) = self.child_descriptors()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let plan = spawn::Plan {
            prog: prog_c,
            argv_ptrs: ptrs(&argv),
            _argv: argv,
            envp_ptrs: ptrs(&envp),
            _envp: envp,
            cwd,
            dups: child_ends
                .iter()
                .map(|(fd, t)| (fd.as_raw_fd(), *t))
                .collect(),
            inherited: {
                let mut fds: Vec<RawFd> =
                    (0..3).chain(child_ends.iter().map(|(_, t)| *t)).collect();
                fds.sort_unstable();
                fds.dedup();
                fds
            },
            rlimits: self.limits.rlimits(),
            credentials: self.credentials,
            // SAFETY: plain getpid.
            parent: unsafe { libc::getpid() },
            pre_exec: self.pre_exec.as_deref(),
        };
        let (err_r, err_w) = spawn::pipe().map_err(os("creating the exec-error pipe"))?;
        let (pid, containment, status_r) = self.clone_contained(&plan, &err_w)?;
        drop(err_w);
        drop(child_ends);
        // Also from this side, so that a kill of the group right away cannot miss.
        // SAFETY: plain setpgid on our unreaped child; it fails harmlessly after its exec.
        unsafe { libc::setpgid(pid, pid) };
        exec_outcome(pid, &err_r, program_name)?;
        drop(plan);
        // SAFETY: pidfd_open on our unreaped child; an old kernel answers ENOSYS.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a fresh descriptor when non-negative.
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
        let target = match containment {
            Containment::PidNamespace { .. } => first_child(pid).unwrap_or(pid as u32),
            Containment::ProcessGroup { .. } => pid as u32,
        };
        Ok(Child {
            pid,
            target,
            pidfd,
            status_r,
            containment,
            streams,
            stdin,
            started,
            deadline: self.deadline.map(|d| started + d),
            limits: self.limits.clone(),
            on_stderr_line: self.on_stderr_line.take(),
            reaped: false,
            sandbox: None,
        })
    }

    /// The program's path, its argv and environment, and its working directory, as the
    /// C strings the child's exec takes (built before the clone: the child allocates nothing).
    #[allow(clippy::type_complexity)]
    fn exec_strings(
        &self,
    ) -> Result<(CString, Vec<CString>, Vec<CString>, Option<CString>), Error> {
        let prog = resolve(&self.program, self.path_var().as_deref())?;
        let cstr = |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| Error::Nul);
        let prog_c = cstr(prog.as_os_str())?;
        let mut argv = vec![cstr(&self.program)?];
        for a in &self.args {
            argv.push(cstr(a)?);
        }
        let envp: Vec<CString> = self
            .environment()
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| Error::Nul)
            })
            .collect::<Result<_, _>>()?;
        let cwd = self.cwd.as_ref().map(|d| cstr(d.as_os_str())).transpose()?;
        Ok((prog_c, argv, envp, cwd))
    }

    /// The child's descriptors, each with the number it gets in the child (stdin, stdout and
    /// stderr, the captured descriptors and the passed ones), numbered above every target so
    /// that no dup2 in the child overwrites one still needed; and the parent's ends: the
    /// captured streams and the stdin writer.
    #[allow(clippy::type_complexity)]
    fn child_descriptors(
        &mut self,
    ) -> Result<(Vec<(OwnedFd, RawFd)>, Vec<Stream>, Option<Stdin>), Error> {
        let mut targets: Vec<RawFd> = vec![0, 1, 2];
        let asked = self.fds.iter().map(|&(fd, _)| fd);
        for fd in asked.chain(self.pass.iter().map(|&(_, fd)| fd)) {
            if fd < 3 || targets.contains(&fd) {
                return Err(Error::BadDescriptor(fd));
            }
            targets.push(fd);
        }
        let above = targets.iter().copied().max().unwrap_or(2) + 1;
        let mut child_ends: Vec<(OwnedFd, RawFd)> = Vec::new();
        let mut streams: Vec<Stream> = Vec::new();
        let stdin = match self.stdin.take() {
            Some(bytes) => {
                let (r, w) = spawn::pipe().map_err(os("creating the stdin pipe"))?;
                child_ends.push((r, 0));
                set_nonblocking(&w).map_err(os("setting the stdin pipe non-blocking"))?;
                Some(Stdin {
                    fd: w,
                    bytes,
                    written: 0,
                })
            }
            None => {
                child_ends.push((dev_null(libc::O_RDONLY)?, 0));
                None
            }
        };
        for (out, target, which) in [
            (self.stdout, 1, Which::Stdout),
            (self.stderr, 2, Which::Stderr),
        ] {
            match out {
                Output::Null => child_ends.push((dev_null(libc::O_WRONLY)?, target)),
                Output::Inherit => {}
                Output::Capture { tail } => {
                    let (r, w) = spawn::pipe().map_err(os("creating an output pipe"))?;
                    child_ends.push((w, target));
                    streams.push(Stream::new(r, which, tail));
                }
            }
        }
        for &(fd, tail) in &self.fds {
            let (r, w) = spawn::pipe().map_err(os("creating a descriptor's pipe"))?;
            child_ends.push((w, fd));
            streams.push(Stream::new(r, Which::Fd(fd), tail));
        }
        child_ends.append(&mut self.pass);
        // Every source above every target: no dup2 in the child overwrites one still needed.
        let child_ends: Vec<(OwnedFd, RawFd)> = child_ends
            .into_iter()
            .map(|(fd, target)| Ok((spawn::dup_above(fd.as_raw_fd(), above)?, target)))
            .collect::<io::Result<_>>()
            .map_err(os("numbering the child's descriptors"))?;
        Ok((child_ends, streams, stdin))
    }

    /// Clones the child into a new PID namespace (in a user namespace when not root), or, where
    /// that is not possible and not required, as a plain child in its own process group.
    fn clone_contained(
        &self,
        plan: &spawn::Plan,
        err_w: &OwnedFd,
    ) -> Result<(libc::pid_t, Containment, Option<OwnedFd>), Error> {
        // SAFETY: plain geteuid.
        let root = unsafe { libc::geteuid() } == 0;
        let mut ns = None;
        let mut fallback_why = String::from("not asked for");
        if self.contain != Contain::ProcessGroup {
            let (sync_r, sync_w) = spawn::pipe().map_err(os("creating the sync pipe"))?;
            let (status_r, status_w) = spawn::pipe().map_err(os("creating the status pipe"))?;
            // Read after the reap: never wait on it.
            set_nonblocking(&status_r).map_err(os("setting the status pipe non-blocking"))?;
            // Root needs no user namespace for a PID namespace, and keeps its real
            // credentials (and the right to switch them) without one.
            let flags = libc::CLONE_NEWPID | if root { 0 } else { libc::CLONE_NEWUSER };
            let how = spawn::Clone::Namespace {
                flags,
                sync: sync_r.as_raw_fd(),
                status: status_w.as_raw_fd(),
            };
            // SAFETY: `plan` and every descriptor it names live until after the error pipe
            // is read below.
            match unsafe { spawn::clone_child(plan, &how, err_w.as_raw_fd()) } {
                Ok(pid) => {
                    drop(sync_r);
                    drop(status_w);
                    ns = Some((pid, !root, sync_w, status_r));
                }
                Err(e) if self.contain == Contain::PidNamespace => {
                    return Err(Error::NoNamespace { source: e });
                }
                Err(e) => fallback_why = format!("no PID namespace: {e}"),
            }
        }
        let (pid, containment, status_r) = match ns {
            Some((pid, user, sync_w, status_r)) => {
                let ready = if user { write_id_maps(pid) } else { Ok(()) }.and_then(|()| {
                    // SAFETY: writes one byte from a live buffer.
                    match unsafe { libc::write(sync_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) } {
                        1 => Ok(()),
                        _ => Err(io::Error::last_os_error()),
                    }
                });
                drop(sync_w);
                if let Err(e) = ready {
                    kill_and_reap(pid);
                    return Err(Error::Os {
                        what: "writing the child's user-namespace id maps",
                        source: e,
                    });
                }
                (
                    pid,
                    Containment::PidNamespace {
                        user_namespace: user,
                    },
                    Some(status_r),
                )
            }
            None => {
                // SAFETY: as above.
                let pid =
                    unsafe { spawn::clone_child(plan, &spawn::Clone::Direct, err_w.as_raw_fd()) }
                        .map_err(os("cloning the child"))?;
                (pid, Containment::ProcessGroup { why: fallback_why }, None)
            }
        };
        Ok((pid, containment, status_r))
    }

    fn path_var(&self) -> Option<OsString> {
        match self.env.iter().rev().find(|(k, _)| k == "PATH") {
            Some((_, v)) => v.clone(),
            None if self.env_clear => None,
            None => std::env::var_os("PATH"),
        }
    }

    fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut vars: Vec<(OsString, OsString)> = if self.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (k, v) in &self.env {
            vars.retain(|(key, _)| key != k);
            if let Some(v) = v {
                vars.push((k.clone(), v.clone()));
            }
        }
        vars
    }
}

/// The program's path: as given when it names a folder, else the first executable file of
/// that name on `path`.
fn resolve(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let not_found = || Error::NotFound {
        program: program.to_string_lossy().into_owned(),
    };
    for dir in std::env::split_paths(path.ok_or_else(not_found)?) {
        let candidate = dir.join(program);
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: access on a valid C string.
        if candidate.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

fn dev_null(flags: libc::c_int) -> Result<OwnedFd, Error> {
    // SAFETY: open on a static C string.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Os {
            what: "opening /dev/null",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Maps the parent's own uid and gid into the child's new user namespace, so that the
/// program sees its files as its own (an unmapped id reads as 65534).
fn write_id_maps(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: plain geteuid/getegid.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    // An unprivileged writer may map its gid only once setgroups is denied.
    std::fs::write(proc.join("setgroups"), "deny")?;
    std::fs::write(proc.join("uid_map"), format!("{uid} {uid} 1\n"))?;
    std::fs::write(proc.join("gid_map"), format!("{gid} {gid} 1\n"))
}

/// The first child of `pid` (the program, forked by the namespace's init), by its pid here.
fn first_child(pid: libc::pid_t) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn reap(pid: libc::pid_t) {
    let mut st = 0;
    // SAFETY: waits for our own child.
    while unsafe { libc::waitpid(pid, &mut st, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// Whether the child reached its exec: the stage and error it reported through the error
/// pipe if not (the child is then reaped).
fn exec_outcome(pid: libc::pid_t, err_r: &OwnedFd, program: String) -> Result<(), Error> {
    match spawn::read_failure(&err_r) {
        Ok(None) => {}
        Ok(Some((stage, source))) => {
            reap(pid);
            return Err(Error::Spawn {
                program,
                stage: stage.describe(),
                source,
            });
        }
        Err(e) => {
            kill_and_reap(pid);
            return Err(Error::Os {
                what: "reading the exec-error pipe",
                source: e,
            });
        }
    }
    Ok(())
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signals our own unreaped child (its pid cannot have been reused) and its group.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::kill(-pid, libc::SIGKILL);
    }
    reap(pid);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Stdout,
    Stderr,
    Fd(RawFd),
}

struct Stream {
    fd: Option<OwnedFd>,
    which: Which,
    tail: Tail,
    /// The stderr line being assembled for the line hook.
    line: Vec<u8>,
}

impl Stream {
    fn new(fd: OwnedFd, which: Which, cap: usize) -> Self {
        Stream {
            fd: Some(fd),
            which,
            tail: Tail::new(cap),
            line: Vec::new(),
        }
    }
}

struct Stdin {
    fd: OwnedFd,
    bytes: Vec<u8>,
    written: usize,
}

/// A running child. [`Child::wait`] feeds its stdin, reads its output and enforces its
/// deadline; a child dropped without it is killed (with its namespace or group) and reaped.
pub struct Child<'a> {
    /// Our direct child: the namespace's init, or the program itself.
    pid: libc::pid_t,
    target: u32,
    pidfd: Option<OwnedFd>,
    status_r: Option<OwnedFd>,
    containment: Containment,
    streams: Vec<Stream>,
    stdin: Option<Stdin>,
    started: Instant,
    deadline: Option<Instant>,
    limits: Limits,
    on_stderr_line: Option<LineHook<'a>>,
    reaped: bool,
    sandbox: Option<sandbox::Running>,
}

impl Child<'_> {
    /// The program's pid in this process's PID namespace (with a PID namespace, the program
    /// forked by the init; the init's own pid if it could not be read).
    pub fn pid(&self) -> u32 {
        self.target
    }

    /// The process group the program started in (the init's, with a namespace).
    pub fn process_group(&self) -> u32 {
        self.pid as u32
    }

    pub fn containment(&self) -> &Containment {
        &self.containment
    }

    /// Runs the child to its end: feeds stdin, reads every captured stream, kills the child
    /// and its descendants at the deadline, reaps it with its rusage, and classifies the exit.
    pub fn wait(mut self) -> Result<Outcome, Error> {
        let mut timed_out = false;
        let mut reaped: Option<(libc::c_int, libc::rusage)> = None;
        let mut grace_end: Option<Instant> = None;
        let mut leaked = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            if reaped.is_none() && !timed_out && self.deadline.is_some_and(|d| now >= d) {
                timed_out = true;
                self.kill();
            }
            if reaped.is_none() {
                if let Some(done) = self.try_reap()? {
                    reaped = Some(done);
                    self.stdin = None;
                    grace_end = Some(Instant::now() + LEAK_GRACE);
                }
            }
            let open = self.streams.iter().any(|s| s.fd.is_some());
            if reaped.is_some() && !open {
                break;
            }
            if grace_end.is_some_and(|g| Instant::now() >= g) {
                leaked = true;
                break;
            }
            // Sleep in poll until something happens or the next instant that matters.
            let mut until = [
                self.deadline.filter(|_| reaped.is_none() && !timed_out),
                grace_end,
            ]
            .into_iter()
            .flatten()
            .min();
            if reaped.is_none() && (self.pidfd.is_none() || timed_out) {
                // Without a pidfd (or while a killed child dies) look again soon.
                let soon = Instant::now() + Duration::from_millis(10);
                until = Some(until.map_or(soon, |u| u.min(soon)));
            }
            let timeout_ms = until.map_or(-1, |u| {
                u.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as libc::c_int
            });
            let mut pfds: Vec<libc::pollfd> = Vec::new();
            let mut slots: Vec<Slot> = Vec::new();
            if reaped.is_none() {
                if let Some(p) = &self.pidfd {
                    pfds.push(pollfd(p.as_raw_fd(), libc::POLLIN));
                    slots.push(Slot::Pid);
                }
            }
            if let Some(s) = &self.stdin {
                pfds.push(pollfd(s.fd.as_raw_fd(), libc::POLLOUT));
                slots.push(Slot::Stdin);
            }
            for (i, s) in self.streams.iter().enumerate() {
                if let Some(fd) = &s.fd {
                    pfds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
                    slots.push(Slot::Stream(i));
                }
            }
            // SAFETY: `pfds` is a live array of pollfd.
            let n =
                unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Os {
                    what: "waiting for the child",
                    source: e,
                });
            }
            for (p, slot) in pfds.iter().zip(slots) {
                if p.revents == 0 {
                    continue;
                }
                match slot {
                    // Reaped at the top of the loop.
                    Slot::Pid => {}
                    Slot::Stdin => self.feed(),
                    Slot::Stream(i) => self.drain(i, &mut buf),
                }
            }
        }
        let (raw, ru) = reaped.expect("the loop ends after the reap");
        let usage = Usage::from_rusage(&ru);
        let mut stderr = Captured::default();
        let mut stdout = Captured::default();
        let mut fds = Vec::new();
        for s in std::mem::take(&mut self.streams) {
            let got = s.tail.finish();
            match s.which {
                Which::Stdout => stdout = got,
                Which::Stderr => stderr = got,
                Which::Fd(fd) => fds.push((fd, got)),
            }
        }
        // In a sandbox the shim reports the program's exact status (bwrap only passes on an
        // exit code); else, with a namespace, the init passed it on; without either (the init
        // itself was killed: our deadline) the init's status stands.
        let (shim_status, applied) = match &self.sandbox {
            Some(running) => {
                let at = fds.iter().position(|(fd, _)| *fd == running.status_fd);
                let report = at.map(|i| fds.remove(i).1).unwrap_or_default();
                sandbox::conclude(running, &report.tail, timed_out, &stderr.tail)?
            }
            None => (None, None),
        };
        let status = Status::from_raw(shim_status.or_else(|| self.program_status()).unwrap_or(raw));
        let exit = classify(status, timed_out, &self.limits, &usage, &stderr);
        Ok(Outcome {
            exit,
            status,
            usage,
            wall: self.started.elapsed(),
            stdout,
            stderr,
            fds,
            containment: self.containment.clone(),
            leaked,
            sandbox: applied,
        })
    }

    /// SIGKILL to the child and its process group. With a namespace, the init's death takes
    /// every process in the namespace with it.
    fn kill(&self) {
        if !self.reaped {
            // SAFETY: our child is not reaped yet, so neither its pid nor its group id (which
            // it leads) can have been reused.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
    }

    /// Reaps the child if it has exited. Without a namespace its group is killed first, while
    /// the unreaped leader still holds the group id: descendants left in it go with it.
    fn try_reap(&mut self) -> Result<Option<(libc::c_int, libc::rusage)>, Error> {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only looks; the child stays a zombie.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(Error::Os {
                what: "waiting for the child",
                source: e,
            });
        }
        // SAFETY: si_pid is set by waitid when a child was found, zero otherwise.
        if unsafe { info.si_pid() } == 0 {
            return Ok(None);
        }
        // SAFETY: the leader is a zombie, so the group id is still ours.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let mut st = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: reaps our own child, writing into live locals.
            let r = unsafe { libc::wait4(self.pid, &mut st, 0, &mut ru) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Os {
                    what: "reaping the child",
                    source: e,
                });
            }
        }
        self.reaped = true;
        Ok(Some((st, ru)))
    }

    fn program_status(&self) -> Option<libc::c_int> {
        let fd = self.status_r.as_ref()?;
        let mut bytes = [0u8; 4];
        // SAFETY: reads into a live buffer; the init wrote before exiting, and it was reaped.
        let n = unsafe { libc::read(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), 4) };
        (n == 4).then(|| libc::c_int::from_ne_bytes(bytes))
    }

    fn feed(&mut self) {
        let Some(s) = &mut self.stdin else { return };
        let rest = &s.bytes[s.written..];
        // SAFETY: writes from a live buffer to a non-blocking pipe.
        let n = unsafe { libc::write(s.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            s.written += n as usize;
        }
        let err = (n < 0).then(io::Error::last_os_error);
        let again = err.as_ref().is_some_and(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            )
        });
        // Done, or the child closed its stdin (EPIPE): the child's business, not an error.
        if s.written == s.bytes.len() || (err.is_some() && !again) {
            self.stdin = None;
        }
    }

    fn drain(&mut self, i: usize, buf: &mut [u8]) {
        let s = &mut self.streams[i];
        let Some(fd) = &s.fd else { return };
        // SAFETY: reads into a live buffer; poll said the pipe is readable or closed.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) {
                return;
            }
        }
        if n <= 0 {
            s.fd = None;
            if s.which == Which::Stderr && !s.line.is_empty() {
                if let Some(hook) = &mut self.on_stderr_line {
                    hook(&s.line);
                }
                s.line.clear();
            }
            return;
        }
        let chunk = &buf[..n as usize];
        s.tail.push(chunk);
        if s.which == Which::Stderr {
            if let Some(hook) = &mut self.on_stderr_line {
                for &b in chunk {
                    if b == b'\n' {
                        hook(&s.line);
                        s.line.clear();
                    } else {
                        s.line.push(b);
                        if s.line.len() >= MAX_LINE {
                            hook(&s.line);
                            s.line.clear();
                        }
                    }
                }
            }
        }
    }
}

enum Slot {
    Pid,
    Stdin,
    Stream(usize),
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Drop for Child<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            reap(self.pid);
        }
    }
}

/// Names the limit a run ended at, where the ending shows it (see [`Limit`]).
fn classify(
    status: Status,
    timed_out: bool,
    limits: &Limits,
    usage: &Usage,
    stderr: &Captured,
) -> Exit {
    if timed_out {
        return Exit::TimedOut;
    }
    let cpu_used = limits
        .cpu
        .is_some_and(|c| usage.cpu() >= Duration::from_secs(cpu_seconds(c)));
    match status {
        Status::Signal(libc::SIGXCPU) if limits.cpu.is_some() => Exit::LimitHit(Limit::Cpu),
        Status::Signal(libc::SIGKILL) if cpu_used => Exit::LimitHit(Limit::Cpu),
        Status::Signal(libc::SIGXFSZ) if limits.file_size.is_some() => {
            Exit::LimitHit(Limit::FileSize)
        }
        Status::Signal(libc::SIGABRT) | Status::Code(1..)
            if limits.address_space.is_some() && allocation_failed(&stderr.tail) =>
        {
            Exit::LimitHit(Limit::AddressSpace)
        }
        Status::Code(c) => Exit::Exited(c),
        Status::Signal(s) => Exit::Signaled(s),
    }
}

/// Whether stderr ends with what common runtimes print when an allocation fails: Rust's
/// `memory allocation of N bytes failed`, C++'s `std::bad_alloc`, Python's `MemoryError`,
/// `Cannot allocate memory` (strerror of ENOMEM), GCC's and others' `out of memory`.
pub fn allocation_failed(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    [
        "memory allocation of ",
        "std::bad_alloc",
        "MemoryError",
        "Cannot allocate memory",
        "out of memory",
    ]
    .iter()
    .any(|m| text.contains(m))
}
