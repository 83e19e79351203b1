//! The shim: the first program bwrap runs inside the sandbox, after its mounts and under its
//! seccomp filters, as pid 1 of the sandbox's PID namespace (`--as-pid-1`). It
//!
//! 1. makes itself non-dumpable (so the program, same uid, cannot open its descriptors or
//!    memory through `/proc`),
//! 2. applies the Landlock ruleset (read-only on the binds, read-write on `/work` and `/tmp`,
//!    device files under `/dev`); Landlock comes after bwrap's mounts because a landlocked
//!    process may not change its mount topology,
//! 3. with a forwarded port (`fwd:PORT`), has bound `127.0.0.1:PORT` before Landlock and
//!    forks a forwarder that copies each connection to and from [`super::MODEL_SOCKET`],
//! 4. reports `ready` on the status descriptor, forks the program and execs it (resolved on
//!    the sandbox's `PATH`), reaping every orphan of the namespace meanwhile,
//! 5. reports the program's raw wait status, and exits: pid 1 exiting makes the kernel kill
//!    whatever is left in the namespace.
//!
//! bwrap itself only passes on an exit code (a signal becomes 128 + its number); the status
//! line keeps signals, and so the runner's limit classification, exact. As pid 1 the shim
//! receives no signal from inside the namespace that it does not handle, so the program
//! cannot kill its own reporter.
//!
//! The status descriptor carries lines: `ready landlock=full|partial|none`,
//! `error STAGE ERRNO` (then exit 127), `status RAW`.

use std::ffi::{CString, OsString};
use std::io;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use landlock::{Access, AccessFs, AccessNet, NetPort, RulesetCreatedAttr, RulesetStatus};

use super::{Applied, LandlockApplied};
use crate::landlock_rules::{deny_all, path_rule, TARGET_ABI};

/// One Landlock rule the shim is asked to add, as passed on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Read and execute beneath this path (`ro:PATH`).
    Read(PathBuf),
    /// Every right beneath this path (`rw:PATH`).
    Write(PathBuf),
    /// Read, write and ioctl of device files beneath this path (`dev:PATH`).
    Device(PathBuf),
    /// Serve the model socket on `127.0.0.1:PORT` (`fwd:PORT`); the program may connect there.
    Forward(u16),
    /// Leave this descriptor open for the program (`keep:FD`: one the caller captures); every
    /// other one above stderr is closed, whatever the scorer let through.
    Keep(RawFd),
}

impl Rule {
    pub(crate) fn to_arg(&self) -> OsString {
        let (tag, path) = match self {
            Rule::Read(p) => ("ro:", p),
            Rule::Write(p) => ("rw:", p),
            Rule::Device(p) => ("dev:", p),
            Rule::Forward(port) => return format!("fwd:{port}").into(),
            Rule::Keep(fd) => return format!("keep:{fd}").into(),
        };
        let mut arg = OsString::from(tag);
        arg.push(path);
        arg
    }

    fn parse(arg: &[u8]) -> Option<Rule> {
        let path = |rest: &[u8]| PathBuf::from(OsString::from_vec(rest.to_vec()));
        if let Some(rest) = arg.strip_prefix(b"ro:") {
            Some(Rule::Read(path(rest)))
        } else if let Some(rest) = arg.strip_prefix(b"rw:") {
            Some(Rule::Write(path(rest)))
        } else if let Some(rest) = arg.strip_prefix(b"dev:") {
            Some(Rule::Device(path(rest)))
        } else if let Some(rest) = arg.strip_prefix(b"keep:") {
            std::str::from_utf8(rest).ok()?.parse().ok().map(Rule::Keep)
        } else {
            let port = std::str::from_utf8(arg.strip_prefix(b"fwd:")?).ok()?;
            port.parse().ok().map(Rule::Forward)
        }
    }
}

/// Stages a shim failure names on the status line.
const STAGE_ARGS: &str = "arguments";
const STAGE_LANDLOCK: &str = "landlock";
const STAGE_FORWARD: &str = "forward";
const STAGE_FORK: &str = "fork";
pub(crate) const STAGE_EXEC: &str = "exec";

/// Runs the shim with its command line (without the program name): `STATUS_FD RULE... --
/// PROGRAM ARG...`. Never returns.
pub fn main(args: Vec<OsString>) -> ! {
    let Some((status_fd, rules, program)) = parse_args(&args) else {
        eprintln!(
            "rdbench-sandbox-shim: usage: STATUS_FD [ro:|rw:|dev:PATH]... -- PROGRAM [ARG]..."
        );
        // The status descriptor may be unknown here: stderr is all there is.
        std::process::exit(127);
    };
    let report = |line: String| {
        let bytes = line.into_bytes();
        // SAFETY: writes from a live buffer to our own descriptor.
        unsafe { libc::write(status_fd, bytes.as_ptr().cast(), bytes.len()) };
    };
    let fail = |stage: &str, errno: i32| -> ! {
        report(format!("error {stage} {errno}\n"));
        std::process::exit(127)
    };
    let mut keep: Vec<RawFd> = rules
        .iter()
        .filter_map(|r| match r {
            Rule::Keep(fd) => Some(*fd),
            _ => None,
        })
        .collect();
    keep.push(status_fd);
    close_all_but(&keep);
    // SAFETY: plain prctl and fcntl on our own descriptor.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // The program must not inherit the status line.
        if libc::fcntl(status_fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            fail(STAGE_ARGS, errno());
        }
    }
    // Bound before Landlock, which then refuses the program any bind of its own.
    let forward = match forwarded_port(&rules) {
        Some(port) => match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(listener) => Some(listener),
            Err(e) => fail(STAGE_FORWARD, e.raw_os_error().unwrap_or(libc::EINVAL)),
        },
        None => None,
    };
    let landlock = match restrict(&rules) {
        Ok(applied) => applied,
        Err(e) => fail(STAGE_LANDLOCK, e.raw_os_error().unwrap_or(libc::EINVAL)),
    };
    report(format!("ready landlock={}\n", landlock.as_str()));
    let Ok(argv) = program
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        fail(STAGE_ARGS, libc::EINVAL)
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    if let Some(listener) = forward {
        // SAFETY: the shim is single-threaded; the child only serves connections.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: closes our own descriptor: the forwarder reports nothing.
                unsafe { libc::close(status_fd) };
                serve_model_socket(listener)
            }
            pid if pid < 0 => fail(STAGE_FORK, errno()),
            // The program must not inherit the listener (it is close-on-exec too).
            _ => drop(listener),
        }
    }
    // SAFETY: the shim is single-threaded; the child only execs (or reports and exits).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(STAGE_FORK, errno());
    }
    if pid == 0 {
        // SAFETY: signal and execvp with NUL-terminated arrays that outlive the call.
        unsafe {
            // Rust's runtime ignores SIGPIPE in the shim, and exec keeps an ignored signal:
            // the program gets the default, as the runner gives it outside a sandbox.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::execvp(ptrs[0], ptrs.as_ptr());
        }
        fail(STAGE_EXEC, errno());
    }
    let mut st: libc::c_int = 0;
    loop {
        // Orphans of the namespace come to pid 1: reap them too, until the program.
        // SAFETY: waits for our own children.
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            std::process::exit(125);
        }
    }
    report(format!("status {st}\n"));
    // Exiting ends the namespace, and with it whatever the program left behind.
    std::process::exit(if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        128 + libc::WTERMSIG(st)
    })
}

/// Closes every descriptor above stderr but `keep`.
fn close_all_but(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    let mut from: libc::c_uint = 3;
    for fd in keep.into_iter().chain([RawFd::MAX]) {
        let fd = fd as libc::c_uint;
        if fd > from {
            // SAFETY: closes descriptors of this single-threaded process that nothing uses.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0 as libc::c_uint) };
        }
        from = fd.saturating_add(1);
    }
}

fn forwarded_port(rules: &[Rule]) -> Option<u16> {
    rules.iter().find_map(|r| match r {
        Rule::Forward(port) => Some(*port),
        _ => None,
    })
}

/// The forwarder: each TCP connection to the listener is copied both ways to a new
/// connection to the model socket, one thread a direction. Runs until the namespace ends.
fn serve_model_socket(listener: TcpListener) -> ! {
    for tcp in listener.incoming().flatten() {
        let Ok(unix) = UnixStream::connect(super::MODEL_SOCKET) else {
            continue;
        };
        std::thread::spawn(move || {
            let _ = pump(tcp, unix);
        });
    }
    std::process::exit(0)
}

fn pump(tcp: TcpStream, unix: UnixStream) -> io::Result<()> {
    let (mut tcp_in, mut tcp_out) = (tcp.try_clone()?, tcp);
    let (mut unix_in, mut unix_out) = (unix.try_clone()?, unix);
    let upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut tcp_in, &mut unix_out);
        // The client is done sending: so is the forwarded request.
        let _ = unix_out.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut unix_in, &mut tcp_out);
    let _ = tcp_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn parse_args(args: &[OsString]) -> Option<(libc::c_int, Vec<Rule>, Vec<OsString>)> {
    let status_fd: libc::c_int = args.first()?.to_str()?.parse().ok()?;
    let sep = args.iter().position(|a| a == "--")?;
    let rules = args[1..sep]
        .iter()
        .map(|a| Rule::parse(a.as_bytes()))
        .collect::<Option<Vec<_>>>()?;
    let program = args[sep + 1..].to_vec();
    (status_fd >= 3 && !program.is_empty()).then_some((status_fd, rules, program))
}

/// Applies the ruleset to this process (and so to the program it forks). Paths that do not
/// exist are skipped: a bind made with `optional`.
fn restrict(rules: &[Rule]) -> std::io::Result<LandlockApplied> {
    let ruleset_err = |e: landlock::RulesetError| io::Error::other(e.to_string());
    // No rule for TCP below but the forwarded port: binding and connecting are refused (there
    // is no network anyway). Signals and abstract Unix sockets stay within the sandbox.
    let mut ruleset = deny_all().map_err(ruleset_err)?;
    let read = AccessFs::from_read(TARGET_ABI);
    let device = AccessFs::ReadFile
        | AccessFs::WriteFile
        | AccessFs::ReadDir
        | AccessFs::Truncate
        | AccessFs::IoctlDev;
    for rule in rules {
        let (path, rights): (&Path, _) = match rule {
            Rule::Read(p) => (p, read),
            Rule::Write(p) => (p, AccessFs::from_all(TARGET_ABI)),
            Rule::Device(p) => (p, device),
            Rule::Keep(_) => continue,
            Rule::Forward(port) => {
                ruleset = ruleset
                    .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                    .map_err(ruleset_err)?;
                continue;
            }
        };
        let Some(rule) = path_rule(path, rights) else {
            continue;
        };
        let rule = rule.map_err(|e| std::io::Error::other(e.to_string()))?;
        ruleset = ruleset.add_rule(rule).map_err(ruleset_err)?;
    }
    let status = ruleset.restrict_self().map_err(ruleset_err)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockApplied::Full,
        RulesetStatus::PartiallyEnforced => LandlockApplied::Partial,
        RulesetStatus::NotEnforced => LandlockApplied::None,
    })
}

/// What the shim said on the status descriptor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub ready: Option<LandlockApplied>,
    /// A stage and an errno: the shim failed, before or at the program's exec.
    pub error: Option<(String, i32)>,
    /// The program's raw wait status.
    pub status: Option<libc::c_int>,
}

impl Report {
    pub(crate) fn parse(bytes: &[u8]) -> Report {
        let mut report = Report::default();
        for line in String::from_utf8_lossy(bytes).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ready", landlock] => {
                    report.ready = LandlockApplied::parse(landlock.trim_start_matches("landlock="))
                }
                ["error", stage, errno] => {
                    report.error = errno.parse().ok().map(|e| (stage.to_string(), e))
                }
                ["status", raw] => report.status = raw.parse().ok(),
                _ => {}
            }
        }
        report
    }

    pub(crate) fn applied(&self) -> Option<Applied> {
        self.ready.map(|landlock| Applied {
            landlock,
            limits: super::LimitsBy::Rlimits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_survive_the_command_line() {
        for rule in [
            Rule::Read("/usr".into()),
            Rule::Write("/work dir".into()),
            Rule::Device("/dev".into()),
            Rule::Forward(8080),
            Rule::Keep(3),
        ] {
            assert_eq!(Rule::parse(rule.to_arg().as_bytes()), Some(rule));
        }
        assert_eq!(Rule::parse(b"xx:/usr"), None);
        assert_eq!(Rule::parse(b"fwd:70000"), None);
    }

    #[test]
    fn a_report_is_read_line_by_line() {
        let r = Report::parse(b"ready landlock=partial\nstatus 9\n");
        assert_eq!(r.ready, Some(LandlockApplied::Partial));
        assert_eq!(r.status, Some(9));
        assert_eq!(r.error, None);
        let r = Report::parse(b"ready landlock=full\nerror exec 2\n");
        assert_eq!(r.error, Some(("exec".into(), 2)));
        assert_eq!(Report::parse(b"").ready, None);
    }

    #[test]
    fn arguments_need_a_descriptor_a_separator_and_a_program() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let (fd, rules, prog) = parse_args(&a(&["12", "ro:/usr", "--", "sh", "-c"])).unwrap();
        assert_eq!((fd, rules.len(), prog.len()), (12, 1, 2));
        assert!(parse_args(&a(&["12", "ro:/usr", "--"])).is_none());
        assert!(parse_args(&a(&["2", "--", "sh"])).is_none());
        assert!(parse_args(&a(&["12", "bad", "--", "sh"])).is_none());
    }
}
