//! The sandbox a child can be put into ([`crate::Command::sandbox`]): a program an agent wrote
//! (a training script, a solver) sees its own work folder, read-only copies of what it needs,
//! a small `/tmp`, and nothing else: no network, no other process, no way to change that.
//!
//! **One value** ([`Sandbox`], serde-able, so a task can declare it): the work folder (bound
//! read-write at [`WORK_DIR`], the working directory), read-only binds `(outside, inside)`
//! (the toolchain, a venv, the task's inputs), the size of the tmpfs at `/tmp`, the
//! environment (everything else cleared), the user to run as, the network (none, or one Unix
//! socket of the scorer's at [`MODEL_SOCKET`]) and whether the GPU's device nodes are bound.
//!
//! **Layers**, outermost first:
//! - the runner's own lifecycle, unchanged: process group, parent-death signal, its PID
//!   namespace and init, rlimits ([`crate::Limits`], inherited by everything inside), the
//!   deadline, capture, rusage, the typed exit;
//! - **bwrap** (bubblewrap), run as the sandbox's user (when the scorer is root: never root,
//!   refused with [`SandboxError::RootRefused`]), so it makes an unprivileged **user
//!   namespace**, and in it new **mount, PID, IPC, UTS, network and cgroup namespaces**
//!   (each asked for explicitly: a namespace bwrap cannot make fails the run instead of being
//!   skipped), further user namespaces disabled (`--disable-userns`), a new session, every
//!   capability dropped, no new privileges, and a root that is an empty tmpfs holding only the
//!   binds, remounted read-only;
//! - **seccomp** ([`seccomp`]): two filters compiled with `seccompiler`,
//!   passed to bwrap as BPF on inherited descriptors: `EPERM` for tracing, mounts, namespaces (`clone` flags
//!   included), BPF, perf, kexec, keyrings, modules, reboot, swap, accounting, file handles,
//!   userfaultfd and io_uring; `ENOSYS` for `clone3` so libc falls back to `clone`;
//! - **Landlock** (the shim, [`shim`]): bwrap execs our shim as pid 1 of the
//!   sandbox's PID namespace; it applies a ruleset (read on the binds and `/proc`, everything on `/work` and
//!   `/tmp`, device files under `/dev`, no TCP, signals and abstract sockets scoped to the
//!   sandbox) after bwrap's mounts, since a landlocked process may not change its mount
//!   topology; then it forks the program, reaps, and reports the program's exact wait status
//!   on a pipe (bwrap only passes on 128 + a signal's number, which would blur the runner's
//!   typed exit). A kernel without Landlock runs without this layer, reported as
//!   [`LandlockApplied::None`] in [`crate::Outcome::sandbox`];
//! - **limits**: a delegated cgroup v2 is detected ([`capabilities`]) but not used yet; the
//!   runner's rlimits apply ([`LimitsBy::Rlimits`]): `processes` is per user, so give each
//!   run its own uid for a count that holds. The work folder's total size is bounded only per
//!   file (`file_size`); `/tmp` by its tmpfs size.
//!
//! **bwrap or our own namespaces.** Doing the namespaces and mounts in the runner's clone
//! would save bwrap's exec and a dependency, but would repeat what bwrap already gets
//! right and has been audited for: the order of user-namespace id maps, `pivot_root` onto a
//! tmpfs, bind flags (`nosuid`, `nodev`, read-only remounts of recursive binds), a minimal
//! `/dev`, `/proc` of the new PID namespace, loopback in the new network namespace, the
//! parent-death kill. It is a 70 kB Debian package, not setuid here (it runs as the
//! sandbox's user and makes an unprivileged user namespace, the same path as an unprivileged
//! scorer). We chose bwrap, driven by the runner (so the lifecycle stays one), plus a shim of
//! ours for what bwrap does not do (Landlock, the exact status). Where bwrap, user namespaces
//! or the shim are missing, running in a sandbox is [`SandboxError::Unavailable`], never a
//! run without it.
//!
//! **Network**: none by default (a network namespace with only loopback, and Landlock
//! refusing TCP). [`Network::Socket`] binds one Unix socket of the scorer's at
//! [`MODEL_SOCKET`], and with a `tcp_port` the shim also serves it as `127.0.0.1:PORT` inside
//! (for HTTP clients that speak only TCP): it binds that port before Landlock (so the
//! program can bind none) and forwards each connection to the socket from a process of its
//! own; Landlock lets the program connect to that one port only.
//!
//! **Cost** (`cargo test -p rdbench-runner --test escape -- --nocapture --test-threads=1
//! overhead`: debug build, the 2-core development machine, no GPU, as root, a quiet machine
//! (load below 1), medians of 60 interleaved runs each, the same within 0.3 ms over three
//! runs; p90 within 2 ms of the median):
//!
//! | run                                            | median  | the sandbox's cost |
//! |------------------------------------------------|---------|--------------------|
//! | `/bin/true`, `std::process::Command`           | 0.96 ms |                    |
//! | `/bin/true`, runner (PID namespace)            | 1.67 ms |                    |
//! | `/bin/true`, runner in the sandbox             | 8.8 ms  | 7.2 ms             |
//! | `python3 -c 'print(1)'`, runner                | 13.7 ms |                    |
//! | `python3 -c 'print(1)'`, runner in the sandbox | 20.6 ms | 6.9 ms             |
//!
//! Most of it is bwrap's namespaces: bare bwrap with the same namespaces and mounts, without
//! our seccomp, shim or Landlock, cost 4.3 ms (`/bin/true`) and 4.7 ms (Python) over a plain
//! `setpriv` to the same user; the runner's side, the filters, the shim's exec and Landlock
//! make the other 2.5 ms. Well within the 50 ms goal. While other builds loaded the machine
//! the same medians were 19.7 and 48.5 ms (2.4 and 24.0 ms without the sandbox).
//!
//! The shim is the `rdbench-sandbox-shim` binary of this crate ([`Shim::locate`]), or any
//! binary that calls [`shim::main`] ([`use_shim`]).

mod capabilities;
pub mod seccomp;
pub mod shim;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use capabilities::{capabilities, Bwrap, Capabilities, Cgroup};

/// Where the work folder is inside, and the program's working directory and `HOME`.
pub const WORK_DIR: &str = "/work";
/// The tmpfs inside.
pub const TMP_DIR: &str = "/tmp";
/// Where [`Network::Socket`]'s socket is inside.
pub const MODEL_SOCKET: &str = "/run/rdbench/model.sock";
/// Where the shim is bound inside.
const SHIM_INSIDE: &str = "/run/rdbench/shim";
/// The descriptors bwrap and the shim get: the shim's status pipe and the two seccomp filters.
/// High, so they do not collide with a descriptor the caller captures.
const STATUS_FD: RawFd = 200;
const SECCOMP_FDS: [RawFd; 2] = [201, 202];

/// A sandbox, described by one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// The work folder outside: bound read-write at [`WORK_DIR`]. It must be writable by
    /// [`Self::user`] (the caller makes it so).
    pub work: PathBuf,
    /// Read-only binds, made in this order (after the work folder, so an input may sit inside
    /// it).
    #[serde(default = "Bind::system")]
    pub read_only: Vec<Bind>,
    /// Size of the tmpfs at `/tmp`, bytes.
    #[serde(default = "default_tmp_size")]
    pub tmp_size: u64,
    /// The program's whole environment (plus what [`crate::Command::env`] sets explicitly).
    #[serde(default = "default_env")]
    pub env: BTreeMap<String, String>,
    /// Who runs the program. Required when the scorer is root (and never root); an
    /// unprivileged scorer runs it as itself and may leave this empty.
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub network: Network,
    /// Bind `/dev/nvidia*` (device access allowed); without it no GPU is visible.
    #[serde(default)]
    pub gpu: bool,
}

/// A read-only bind: `outside` (the scorer's path) seen at `inside`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub outside: PathBuf,
    pub inside: PathBuf,
    /// Skipped when `outside` does not exist (otherwise the run fails).
    #[serde(default)]
    pub optional: bool,
}

impl Bind {
    pub fn new(outside: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Bind {
        Bind {
            outside: outside.into(),
            inside: inside.into(),
            optional: false,
        }
    }

    /// The same path outside and inside.
    pub fn same(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind::new(path.clone(), path)
    }

    /// What a dynamically linked program and the system's interpreters need: `/usr`, the
    /// library folders, `/bin`, `/sbin`, the loader's cache and the alternatives' links.
    pub fn system() -> Vec<Bind> {
        [
            "/usr",
            "/bin",
            "/sbin",
            "/lib",
            "/lib64",
            "/lib32",
            "/etc/ld.so.cache",
            "/etc/alternatives",
        ]
        .into_iter()
        .map(|p| Bind {
            optional: true,
            ..Bind::same(p)
        })
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// What the program may reach over the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Network {
    /// Nothing: a network namespace with only loopback.
    #[default]
    None,
    /// That, plus this Unix socket of the scorer's, at [`MODEL_SOCKET`]; with `tcp_port`,
    /// also forwarded from `127.0.0.1:tcp_port` inside.
    Socket {
        path: PathBuf,
        #[serde(default)]
        tcp_port: Option<u16>,
    },
}

fn default_tmp_size() -> u64 {
    64 << 20
}

fn default_env() -> BTreeMap<String, String> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", WORK_DIR),
        ("LANG", "C.UTF-8"),
        ("TMPDIR", TMP_DIR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// How Landlock was applied inside, as the shim reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockApplied {
    /// Every right asked for is enforced.
    Full,
    /// The kernel's older Landlock enforces a subset (reading files is always mediated).
    Partial,
    /// The kernel has no Landlock: namespaces and seccomp only.
    None,
}

impl LandlockApplied {
    fn as_str(self) -> &'static str {
        match self {
            LandlockApplied::Full => "full",
            LandlockApplied::Partial => "partial",
            LandlockApplied::None => "none",
        }
    }

    fn parse(s: &str) -> Option<LandlockApplied> {
        [
            LandlockApplied::Full,
            LandlockApplied::Partial,
            LandlockApplied::None,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// What bounds memory, processes and CPU of a sandboxed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitsBy {
    /// The runner's [`crate::Limits`], per process (processes: per user).
    Rlimits,
}

/// What a sandboxed run had, reported in [`crate::Outcome::sandbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub landlock: LandlockApplied,
    pub limits: LimitsBy,
}

/// Why a sandboxed run could not start. OS errors are kept as they came.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no sandbox can run here: {why}")]
    Unavailable { why: String },
    #[error(
        "the sandbox's shim ({}) is not found (looked at {looked})",
        Shim::NAME
    )]
    NoShim { looked: String },
    #[error("refusing to run a sandboxed program as root (uid {uid}, gid {gid})")]
    RootRefused { uid: u32, gid: u32 },
    #[error("the scorer runs as root: the sandbox needs another user to run the program as")]
    NoUser,
    #[error("an unprivileged scorer (uid {own}) cannot run the program as uid {asked}")]
    CannotSwitchUser { own: u32, asked: u32 },
    #[error("{what} {}: {source}", path.display())]
    Path {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {} must be an absolute path without '..'", path.display())]
    NotAbsolute { what: &'static str, path: PathBuf },
    #[error("a bind may not cover {}: the sandbox's root and /run/rdbench are its own", path.display())]
    Reserved { path: PathBuf },
    #[error("the sandbox asks for the GPU but /dev has no nvidia device")]
    NoGpu,
    #[error("compiling the seccomp filters: {0}")]
    Seccomp(#[source] seccompiler::Error),
    #[error("passing the seccomp filters: {0}")]
    SeccompFd(#[source] io::Error),
    #[error("the sandbox's shim failed at {stage}: {source}")]
    Shim {
        stage: String,
        #[source]
        source: io::Error,
    },
    #[error("the sandbox could not be set up (the program never started): {why}")]
    Setup { why: String },
}

/// The shim bwrap runs first: a program, and arguments before the shim's own (for a binary
/// that runs [`shim::main`] behind a hidden argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

static SHIM: OnceLock<Shim> = OnceLock::new();

/// Makes `shim` this process's shim (say, its own executable behind a hidden argument); first
/// call wins. Without it [`Shim::locate`] finds one.
pub fn use_shim(shim: Shim) {
    let _ = SHIM.set(shim);
}

impl Shim {
    /// The shim binary's name.
    pub const NAME: &'static str = "rdbench-sandbox-shim";

    /// The shim set with [`use_shim`]; else `$RDBENCH_SANDBOX_SHIM`; else the shim binary
    /// beside this executable or one folder up (where cargo puts a test's binaries).
    pub fn locate() -> Result<Shim, SandboxError> {
        if let Some(s) = SHIM.get() {
            return Ok(s.clone());
        }
        let mut looked = Vec::new();
        if let Some(p) = std::env::var_os("RDBENCH_SANDBOX_SHIM") {
            looked.push(PathBuf::from(p));
        }
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(2) {
                looked.push(dir.join(Self::NAME));
            }
        }
        match looked.iter().find(|p| p.is_file()) {
            Some(p) => Ok(Shim {
                program: p.clone(),
                args: Vec::new(),
            }),
            None => Err(SandboxError::NoShim {
                looked: looked
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// What the runner spawns for a sandboxed command: bwrap, its arguments, the user, and the
/// descriptors it must inherit.
pub(crate) struct Launch {
    pub bwrap: PathBuf,
    pub args: Vec<OsString>,
    pub credentials: Option<(u32, u32)>,
    /// (descriptor, number in the child).
    pub pass: Vec<(OwnedFd, RawFd)>,
    /// The shim's status pipe's number in the child (the runner captures it).
    pub status_fd: RawFd,
}

/// The sandbox's side of a running child, kept by the runner.
pub(crate) struct Running {
    pub status_fd: RawFd,
    pub program: String,
}

impl Sandbox {
    /// The default sandbox around `work`: the system binds, a 64 MiB `/tmp`, `PATH`, `HOME`,
    /// `LANG` and `TMPDIR`, no network, no GPU, no user (set one when the scorer is root).
    pub fn new(work: impl Into<PathBuf>) -> Sandbox {
        Sandbox {
            work: work.into(),
            read_only: Bind::system(),
            tmp_size: default_tmp_size(),
            env: default_env(),
            user: None,
            network: Network::None,
            gpu: false,
        }
    }

    /// The credentials bwrap runs with: the sandbox's user when the scorer is root (never
    /// root), none (the scorer's own) otherwise.
    fn credentials(&self) -> Result<Option<(u32, u32)>, SandboxError> {
        // SAFETY: plain geteuid.
        let own = unsafe { libc::geteuid() };
        match (own, self.user) {
            (0, None) => Err(SandboxError::NoUser),
            (0, Some(User { uid, gid })) if uid == 0 || gid == 0 => {
                Err(SandboxError::RootRefused { uid, gid })
            }
            (0, Some(u)) => Ok(Some((u.uid, u.gid))),
            (own, Some(u)) if u.uid != own => {
                Err(SandboxError::CannotSwitchUser { own, asked: u.uid })
            }
            _ => Ok(None),
        }
    }

    /// bwrap's command line and descriptors for `program args` (resolved inside, on the
    /// sandbox's `PATH`), with `env` (set or removed) on top of [`Self::env`], in `cwd` inside
    /// ([`WORK_DIR`] when `None`), keeping the descriptors `keep` (the caller's captures) open
    /// for the program.
    pub(crate) fn launch(
        &self,
        program: &OsStr,
        args: &[OsString],
        env: &[(OsString, Option<OsString>)],
        cwd: Option<&Path>,
        keep: &[RawFd],
    ) -> Result<Launch, SandboxError> {
        let caps = capabilities();
        if let Some(why) = caps.why_not {
            return Err(SandboxError::Unavailable { why });
        }
        let bwrap = caps
            .bwrap
            .map(|b| b.path)
            .ok_or(SandboxError::Unavailable {
                why: "bwrap is not installed".into(),
            })?;
        let credentials = self.credentials()?;
        let shim = Shim::locate()?;
        let shim_outside =
            std::fs::canonicalize(&shim.program).map_err(|source| SandboxError::Path {
                what: "the shim",
                path: shim.program.clone(),
                source,
            })?;
        let work = std::fs::canonicalize(&self.work).map_err(|source| SandboxError::Path {
            what: "the work folder",
            path: self.work.clone(),
            source,
        })?;
        let cwd = cwd.unwrap_or(Path::new(WORK_DIR));
        absolute("the working directory", cwd)?;

        let mut a = Args::default();
        a.flags(&[
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            "--hostname",
            "rdbench",
            "--clearenv",
        ]);
        let mut vars: BTreeMap<OsString, Option<OsString>> = self
            .env
            .iter()
            .map(|(k, v)| (OsString::from(k), Some(OsString::from(v))))
            .collect();
        vars.extend(env.iter().cloned());
        for (k, v) in vars {
            if let Some(v) = v {
                a.push(["--setenv".as_ref(), k.as_os_str(), v.as_os_str()]);
            }
        }
        a.push(["--bind".as_ref(), work.as_os_str(), WORK_DIR.as_ref()]);
        a.push([
            "--size".as_ref(),
            self.tmp_size.to_string().as_ref(),
            "--tmpfs".as_ref(),
            TMP_DIR.as_ref(),
        ]);
        a.flags(&["--proc", "/proc", "--dev", "/dev"]);
        let mut rules = vec![
            shim::Rule::Write(WORK_DIR.into()),
            shim::Rule::Write(TMP_DIR.into()),
            shim::Rule::Read("/proc".into()),
            shim::Rule::Device("/dev".into()),
        ];
        rules.extend(keep.iter().map(|&fd| shim::Rule::Keep(fd)));
        self.bind_read_only(&mut a, &mut rules)?;
        a.push([
            "--ro-bind".as_ref(),
            shim_outside.as_os_str(),
            SHIM_INSIDE.as_ref(),
        ]);
        self.bind_model_socket_and_gpu(&mut a, &mut rules)?;
        // The root tmpfs: nothing may be created in it (Landlock says so too).
        a.flags(&["--remount-ro", "/"]);
        a.push(["--chdir".as_ref(), cwd.as_os_str()]);
        let [refused, clone3] = seccomp::filters().map_err(SandboxError::Seccomp)?;
        let mut pass = Vec::new();
        for (program, fd) in [refused, clone3].iter().zip(SECCOMP_FDS) {
            pass.push((
                seccomp::memfd(program).map_err(SandboxError::SeccompFd)?,
                fd,
            ));
            a.push(["--add-seccomp-fd".as_ref(), fd.to_string().as_ref()]);
        }
        a.push(["--".as_ref(), SHIM_INSIDE.as_ref()]);
        a.args.extend(shim.args.iter().cloned());
        a.args.push(STATUS_FD.to_string().into());
        a.args.extend(rules.iter().map(shim::Rule::to_arg));
        a.args.push("--".into());
        a.args.push(program.to_owned());
        a.args.extend(args.iter().cloned());
        Ok(Launch {
            bwrap,
            args: a.args,
            credentials,
            pass,
            status_fd: STATUS_FD,
        })
    }

    /// The read-only binds the caller asked for (an optional one whose outside path is
    /// missing is left out), each readable under Landlock.
    fn bind_read_only(
        &self,
        a: &mut Args,
        rules: &mut Vec<shim::Rule>,
    ) -> Result<(), SandboxError> {
        for bind in &self.read_only {
            absolute("a bind's inside path", &bind.inside)?;
            if reserved(&bind.inside) {
                return Err(SandboxError::Reserved {
                    path: bind.inside.clone(),
                });
            }
            match std::fs::metadata(&bind.outside) {
                Ok(_) => {}
                Err(_) if bind.optional => continue,
                Err(source) => {
                    return Err(SandboxError::Path {
                        what: "a read-only bind",
                        path: bind.outside.clone(),
                        source,
                    })
                }
            }
            a.push([
                "--ro-bind".as_ref(),
                bind.outside.as_os_str(),
                bind.inside.as_os_str(),
            ]);
            rules.push(shim::Rule::Read(bind.inside.clone()));
        }
        Ok(())
    }

    /// The model's socket where the task grants one (with its TCP bridge), and the GPU's
    /// device nodes for a GPU sandbox.
    fn bind_model_socket_and_gpu(
        &self,
        a: &mut Args,
        rules: &mut Vec<shim::Rule>,
    ) -> Result<(), SandboxError> {
        if let Network::Socket { path, tcp_port } = &self.network {
            std::fs::metadata(path).map_err(|source| SandboxError::Path {
                what: "the model socket",
                path: path.clone(),
                source,
            })?;
            a.push([
                "--ro-bind".as_ref(),
                path.as_os_str(),
                MODEL_SOCKET.as_ref(),
            ]);
            if let Some(port) = tcp_port {
                rules.push(shim::Rule::Forward(*port));
            }
        }
        if self.gpu {
            let nodes = gpu_nodes(Path::new("/dev"));
            if nodes.is_empty() {
                return Err(SandboxError::NoGpu);
            }
            for node in nodes {
                a.push(["--dev-bind".as_ref(), node.as_os_str(), node.as_os_str()]);
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Args {
    args: Vec<OsString>,
}

impl Args {
    fn push<const N: usize>(&mut self, words: [&OsStr; N]) {
        self.args.extend(words.iter().map(|w| w.to_os_string()));
    }

    fn flags(&mut self, words: &[&str]) {
        self.args.extend(words.iter().map(OsString::from));
    }
}

fn absolute(what: &'static str, path: &Path) -> Result<(), SandboxError> {
    let ok = path.is_absolute() && !path.components().any(|c| c == Component::ParentDir);
    ok.then_some(()).ok_or_else(|| SandboxError::NotAbsolute {
        what,
        path: path.to_path_buf(),
    })
}

/// Whether a bind at `inside` would replace the sandbox's root or the shim's and socket's
/// folder.
fn reserved(inside: &Path) -> bool {
    inside == Path::new("/")
        || inside.starts_with(Path::new(SHIM_INSIDE).parent().unwrap_or(Path::new("/")))
}

/// The GPU's device nodes under `dev`: `nvidia*` (the control device, each GPU, UVM) and the
/// `nvidia-caps` folder.
fn gpu_nodes(dev: &Path) -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"nvidia"))
        .map(|e| e.path())
        .collect();
    nodes.sort();
    nodes
}

/// Reads the shim's report after the run: the program's exact status and what was applied,
/// or why the sandbox never ran the program.
pub(crate) fn conclude(
    running: &Running,
    report: &[u8],
    timed_out: bool,
    stderr: &[u8],
) -> Result<(Option<libc::c_int>, Option<Applied>), crate::Error> {
    let report = shim::Report::parse(report);
    if let Some((stage, errno)) = report.error {
        let source = io::Error::from_raw_os_error(errno);
        if stage == shim::STAGE_EXEC {
            return Err(crate::Error::Spawn {
                program: running.program.clone(),
                stage: "executing the program inside the sandbox",
                source,
            });
        }
        return Err(SandboxError::Shim { stage, source }.into());
    }
    if report.ready.is_none() && !timed_out {
        // bwrap says what failed on stderr, when it is captured.
        let said: Vec<String> = String::from_utf8_lossy(stderr)
            .lines()
            .filter(|l| l.starts_with("bwrap:"))
            .map(str::to_string)
            .collect();
        let why = if said.is_empty() {
            "bwrap ended before the shim reported (its stderr was not captured)".to_string()
        } else {
            said.join("; ")
        };
        return Err(SandboxError::Setup { why }.into());
    }
    Ok((report.status, report.applied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_round_trips_and_defaults_fill_in() {
        let sb: Sandbox = serde_json::from_str(r#"{"work": "/w"}"#).unwrap();
        assert_eq!(sb, Sandbox::new("/w"));
        let text = serde_json::to_string(&sb).unwrap();
        assert_eq!(serde_json::from_str::<Sandbox>(&text).unwrap(), sb);
        assert!(serde_json::from_str::<Sandbox>(r#"{"work": "/w", "netwrk": 1}"#).is_err());
    }

    #[test]
    fn paths_inside_must_be_absolute_without_parents() {
        assert!(absolute("x", Path::new("/data/in")).is_ok());
        assert!(absolute("x", Path::new("data")).is_err());
        assert!(absolute("x", Path::new("/work/../etc")).is_err());
    }

    #[test]
    fn binds_may_not_replace_the_root_or_the_shims_folder() {
        assert!(reserved(Path::new("/")));
        assert!(reserved(Path::new("/run/rdbench")));
        assert!(reserved(Path::new("/run/rdbench/shim")));
        assert!(!reserved(Path::new("/run")) && !reserved(Path::new("/usr")));
    }

    #[test]
    fn gpu_nodes_are_the_nvidia_entries() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["nvidia0", "nvidiactl", "nvidia-uvm", "null", "nvme0"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<_> = gpu_nodes(dir.path())
            .into_iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["nvidia-uvm", "nvidia0", "nvidiactl"]);
    }

    #[test]
    fn the_scorers_identity_decides_the_user() {
        let mut sb = Sandbox::new("/w");
        // SAFETY: plain geteuid.
        let own = unsafe { libc::geteuid() };
        if own == 0 {
            assert!(matches!(sb.credentials(), Err(SandboxError::NoUser)));
            sb.user = Some(User { uid: 0, gid: 5 });
            assert!(matches!(
                sb.credentials(),
                Err(SandboxError::RootRefused { .. })
            ));
            sb.user = Some(User { uid: 7, gid: 0 });
            assert!(matches!(
                sb.credentials(),
                Err(SandboxError::RootRefused { .. })
            ));
            sb.user = Some(User { uid: 7, gid: 8 });
            assert_eq!(sb.credentials().unwrap(), Some((7, 8)));
        } else {
            assert_eq!(sb.credentials().unwrap(), None);
            sb.user = Some(User {
                uid: own + 1,
                gid: 1,
            });
            assert!(matches!(
                sb.credentials(),
                Err(SandboxError::CannotSwitchUser { .. })
            ));
        }
    }
}
