//! The escape corpus: small programs (shell and Python, run for real inside the sandbox) that
//! try to get out of it. Each must fail, end within its limit with the right typed exit, and
//! leave nothing running (no process of the case's uid in `/proc`) and nothing on disk outside
//! its work folder.
//!
//! Runs as root (as CI does): every case gets its own uid, unused on this machine (a per-run
//! uid, as the scorer would give), so that the "nothing left" check and the per-user process
//! limit see that case alone while cases run in parallel. Unprivileged, the cases are skipped
//! with the reason printed (the sandbox would run as the scorer's own uid, which the checks
//! cannot tell from the test's own processes).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdbench_runner::sandbox::{
    capabilities, use_shim, Bind, LandlockApplied, Network, Sandbox, SandboxError, Shim, User,
    MODEL_SOCKET, WORK_DIR,
};
use rdbench_runner::{Command, Error, Exit, Limit, Limits, Outcome, Output};

mod common;
use common::{interleaved_medians, Variant};

const CAP: Output = Output::Capture { tail: 1 << 16 };
const PYTHON: &str = "/usr/bin/python3";

/// One case: its own uid and a work folder it owns.
struct Case {
    uid: u32,
    work: tempfile::TempDir,
}

impl Case {
    /// `None` (with the reason printed) when the sandbox cannot be tested here.
    fn new() -> Option<Case> {
        // SAFETY: plain geteuid.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: the escape corpus runs as root (each case as its own uid)");
            return None;
        }
        use_shim(Shim {
            program: env!("CARGO_BIN_EXE_rdbench-sandbox-shim").into(),
            args: Vec::new(),
        });
        let caps = capabilities();
        assert!(
            caps.can_run,
            "this machine should run the sandbox: {:?}",
            caps.why_not
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let uid = 1_500_000_000
            + (std::process::id() % 100_000) * 100
            + NEXT.fetch_add(1, Ordering::Relaxed);
        let work = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(work.path(), Some(uid), Some(uid)).unwrap();
        Some(Case { uid, work })
    }

    fn sandbox(&self) -> Sandbox {
        let mut sb = Sandbox::new(self.work.path());
        sb.user = Some(User {
            uid: self.uid,
            gid: self.uid,
        });
        sb
    }

    fn run(
        &self,
        sb: Sandbox,
        program: &str,
        args: &[&str],
        limits: Limits,
        deadline: Duration,
    ) -> Outcome {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdout(CAP)
            .stderr(CAP)
            .limits(limits)
            .deadline(deadline)
            .sandbox(sb);
        let start = Instant::now();
        let o = cmd.run().unwrap();
        assert!(
            start.elapsed() < deadline + Duration::from_secs(2),
            "the run took {:?}",
            start.elapsed()
        );
        assert_eq!(o.sandbox.map(|a| a.landlock), Some(LandlockApplied::Full));
        self.assert_nothing_left();
        o
    }

    fn sh(&self, script: &str) -> Outcome {
        self.run(
            self.sandbox(),
            "sh",
            &["-c", script],
            Limits::default(),
            Duration::from_secs(20),
        )
    }

    /// Runs the Python probes of `body` (see [`PROBE`]) and returns what each said.
    fn probe(&self, sb: Sandbox, limits: Limits, body: &str) -> BTreeMap<String, String> {
        let script = format!("{}\n{body}", probe_prelude());
        let o = self.run(
            sb,
            PYTHON,
            &["-c", &script],
            limits,
            Duration::from_secs(20),
        );
        let out = String::from_utf8_lossy(&o.stdout.tail).into_owned();
        println!("{out}{}", String::from_utf8_lossy(&o.stderr.tail));
        assert_eq!(o.exit, Exit::Exited(0), "the probes ended: {o:?}");
        out.lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// No process of this case's uid exists any more (after at most a second: the kernel
    /// kills a PID namespace's processes as its init exits, asynchronously to us).
    fn assert_nothing_left(&self) {
        let start = Instant::now();
        loop {
            let left = processes_of(self.uid);
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "processes of uid {} outlived the run: {left:?}",
                self.uid
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Pids and names of the processes whose real uid is `uid`.
fn processes_of(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            .and_then(|id| id.parse::<u32>().ok());
        if real == Some(uid) {
            let name = status.lines().next().unwrap_or("").to_string();
            found.push(format!("{} {name}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// The Python side of the probes: `probe(name, f)` prints `name: LEAK ...` when `f` succeeds
/// and `name: refused ERRNAME` when it raises an `OSError`; `call(nr, *args)` is a raw
/// system call that raises on -1. System-call numbers come from this build's `libc`.
const PROBE: &str = r#"
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r
def probe(name, f):
    try:
        r = f()
        print(f"{name}: LEAK {r!r}"[:300], flush=True)
    except OSError as e:
        print(f"{name}: refused {errno.errorcode.get(e.errno, e.errno)}", flush=True)
def read(path):
    with open(path, 'rb') as f:
        return f.read(64)
"#;

fn probe_prelude() -> String {
    let nrs = [
        ("SYS_ptrace", libc::SYS_ptrace),
        ("SYS_process_vm_readv", libc::SYS_process_vm_readv),
        ("SYS_mount", libc::SYS_mount),
        ("SYS_umount2", libc::SYS_umount2),
        ("SYS_pivot_root", libc::SYS_pivot_root),
        ("SYS_unshare", libc::SYS_unshare),
        ("SYS_setns", libc::SYS_setns),
        ("SYS_clone", libc::SYS_clone),
        ("SYS_clone3", libc::SYS_clone3),
        ("SYS_bpf", libc::SYS_bpf),
        ("SYS_perf_event_open", libc::SYS_perf_event_open),
        ("SYS_keyctl", libc::SYS_keyctl),
        ("SYS_io_uring_setup", libc::SYS_io_uring_setup),
        ("SYS_userfaultfd", libc::SYS_userfaultfd),
        ("SYS_open_by_handle_at", libc::SYS_open_by_handle_at),
        ("SYS_kexec_load", libc::SYS_kexec_load),
        ("SYS_init_module", libc::SYS_init_module),
        ("SYS_fsopen", libc::SYS_fsopen),
    ];
    let mut s = PROBE.to_string();
    for (name, nr) in nrs {
        s.push_str(&format!("{name} = {nr}\n"));
    }
    s
}

/// Every probe named was refused, with this errno where one is given.
fn assert_refused(results: &BTreeMap<String, String>, expected: &[(&str, Option<&str>)]) {
    for (name, errno) in expected {
        let got = results
            .get(*name)
            .unwrap_or_else(|| panic!("probe {name} did not report: {results:?}"));
        let want = match errno {
            Some(e) => format!("refused {e}"),
            None => "refused".to_string(),
        };
        assert!(got.starts_with(&want), "{name}: {got} (wanted {want})");
    }
    assert!(
        !results.values().any(|v| v.starts_with("LEAK")),
        "a probe got through: {results:?}"
    );
}

/// A root-owned 0700 folder (the scorer's private home) holding `secret`.
fn scorer_home() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret = home.path().join("key");
    std::fs::write(&secret, "scorer-secret").unwrap();
    (home, secret)
}

#[test]
fn the_scorers_secrets_and_other_users_files_cannot_be_read() {
    let Some(case) = Case::new() else { return };
    let (_home, secret) = scorer_home();
    // Task data that is not bound is not there, however readable it is outside.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let answers = private.path().join("answers.txt");
    std::fs::write(&answers, "42").unwrap();
    std::fs::set_permissions(&answers, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Another user's file inside a folder that is bound.
    let inputs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(inputs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let theirs = inputs.path().join("theirs");
    std::fs::write(&theirs, "not yours").unwrap();
    std::os::unix::fs::chown(&theirs, Some(case.uid + 50), Some(case.uid + 50)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut sb = case.sandbox();
    sb.read_only.push(Bind::new(inputs.path(), "/inputs"));
    let me = std::process::id();
    let body = format!(
        r#"
probe("scorer_home", lambda: read({secret:?}))
probe("private_task_data", lambda: read({answers:?}))
probe("other_users_file", lambda: read("/inputs/theirs"))
for what in ("environ", "mem", "cmdline"):
    probe("scorer_proc_" + what, lambda: read("/proc/{me}/" + what))
probe("host_root_home", lambda: os.listdir("/root"))
probe("host_etc_shadow", lambda: read("/etc/shadow"))
print("env: " + ",".join(sorted(os.environ)))
print("pids: " + ",".join(sorted(p for p in os.listdir("/proc") if p.isdigit())))
"#,
        secret = secret.display().to_string(),
        answers = answers.display().to_string(),
    );
    let r = case.probe(sb, Limits::default(), &body);
    assert_refused(
        &r,
        &[
            ("scorer_home", Some("ENOENT")),
            ("private_task_data", Some("ENOENT")),
            ("other_users_file", Some("EACCES")),
            ("scorer_proc_environ", Some("ENOENT")),
            ("scorer_proc_mem", Some("ENOENT")),
            ("scorer_proc_cmdline", Some("ENOENT")),
            ("host_root_home", Some("ENOENT")),
            ("host_etc_shadow", Some("ENOENT")),
        ],
    );
    // The environment is the allowlist, nothing of the scorer's.
    // (bwrap sets PWD with the working directory.)
    assert_eq!(r["env"], "HOME,LANG,PATH,PWD,TMPDIR");
    // Only the sandbox's own processes are visible: the shim (1) and the probe.
    assert_eq!(r["pids"].split(',').count(), 2, "{}", r["pids"]);
}

#[test]
fn the_network_is_unreachable_but_the_model_socket_answers() {
    let Some(case) = Case::new() else { return };
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    // UDP is not Landlock's: the network namespace alone keeps it in.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let sockdir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = sockdir.path().join("model.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Two clients: the socket itself, then through the forwarder on 127.0.0.1:8080.
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut requests = Vec::new();
        for _ in 0..2 {
            let (mut conn, _) = unix.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            conn.write_all(b"pong").unwrap();
            requests.push(String::from_utf8(got).unwrap());
        }
        requests
    });
    let mut sb = case.sandbox();
    sb.network = Network::Socket {
        path: sock.clone(),
        tcp_port: Some(8080),
    };
    let body = format!(
        r#"
def connect(addr):
    s = socket.create_connection(addr, timeout=2)
    return s.getpeername()
probe("host_loopback_port", lambda: connect(("127.0.0.1", {port})))
probe("outside_address", lambda: connect(("1.1.1.1", 53)))
probe("outside_name", lambda: connect(("example.com", 80)))
def udp(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b"escaped", addr)
probe("udp_outside", lambda: udp(("1.1.1.1", 53)))
print("udp_host_loopback: sent " + str(udp(("127.0.0.1", {udp_port}))))
probe("outside_port_on_loopback", lambda: connect(("127.0.0.1", 8081)))
def listen():
    s = socket.socket()
    s.bind(("127.0.0.1", 9000))
    s.listen()
    return s.getsockname()
probe("bind_tcp", listen)
def ask(s, what):
    s.sendall(what)
    s.shutdown(socket.SHUT_WR)
    return s.recv(4).decode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({MODEL_SOCKET:?})
print("model: " + ask(s, b"ping"))
print("model_tcp: " + ask(socket.create_connection(("127.0.0.1", 8080), timeout=5), b"GET / HTTP/1.0"))
"#
    );
    let r = case.probe(sb, Limits::default(), &body);
    assert_refused(
        &r,
        &[
            ("host_loopback_port", None),
            ("outside_address", None),
            ("outside_name", None),
            ("outside_port_on_loopback", Some("EACCES")),
            ("udp_outside", Some("ENETUNREACH")),
            ("bind_tcp", Some("EACCES")),
        ],
    );
    assert_eq!(r["model"], "pong");
    assert_eq!(r["model_tcp"], "pong");
    assert_eq!(server.join().unwrap(), ["ping", "GET / HTTP/1.0"]);
    // Nothing reached the host's listeners: the datagram went to the sandbox's own loopback.
    assert_eq!(r["udp_host_loopback"], "sent 7");
    assert_eq!(
        tcp.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    let mut buf = [0u8; 16];
    assert_eq!(
        udp.recv_from(&mut buf).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn mounts_namespaces_tracing_and_kernel_interfaces_are_refused() {
    let Some(case) = Case::new() else { return };
    let body = r#"
probe("mount", lambda: call(SYS_mount, b"none", b"/tmp", b"tmpfs", 0, 0))
probe("umount2", lambda: call(SYS_umount2, b"/work", 2))
probe("pivot_root", lambda: call(SYS_pivot_root, b"/tmp", b"/tmp"))
probe("fsopen", lambda: call(SYS_fsopen, b"tmpfs", 0))
probe("unshare_user", lambda: call(SYS_unshare, 0x10000000))
probe("unshare_mount", lambda: call(SYS_unshare, 0x00020000))
probe("unshare_net", lambda: call(SYS_unshare, 0x40000000))
probe("setns", lambda: call(SYS_setns, os.open("/proc/self/ns/user", os.O_RDONLY), 0))
# A clone with a namespace flag: if it got through, the child would print LEAK too.
probe("clone_newuser", lambda: call(SYS_clone, 0x10000000 | 17, 0, 0, 0, 0))
probe("clone3", lambda: call(SYS_clone3, 0, 0))
probe("bpf", lambda: call(SYS_bpf, 5, 0, 0))
probe("perf_event_open", lambda: call(SYS_perf_event_open, 0, 0, -1, -1, 0))
probe("keyctl", lambda: call(SYS_keyctl, 0, 0))
probe("io_uring_setup", lambda: call(SYS_io_uring_setup, 1, 0))
probe("userfaultfd", lambda: call(SYS_userfaultfd, 0))
probe("open_by_handle_at", lambda: call(SYS_open_by_handle_at, -100, 0, 0))
probe("kexec_load", lambda: call(SYS_kexec_load, 0, 0, 0, 0))
probe("init_module", lambda: call(SYS_init_module, 0, 0, b""))
probe("ptrace_traceme", lambda: call(SYS_ptrace, 0, 0, 0, 0))
probe("ptrace_attach_init", lambda: call(SYS_ptrace, 16, 1, 0, 0))
probe("process_vm_readv", lambda: call(SYS_process_vm_readv, 1, 0, 0, 0, 0, 0))
import subprocess
r = subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True)
print("unshare_cmd: " + ("LEAK" if r.returncode == 0 else "refused " + r.stderr.decode().strip()))
# An ordinary fork and a thread still work (clone without namespace flags; clone3 falls back).
import threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
print("fork: " + ("works" if subprocess.run(["true"]).returncode == 0 else "broken"))
"#;
    let r = case.probe(case.sandbox(), Limits::default(), body);
    let eperm = Some("EPERM");
    assert_refused(
        &r,
        &[
            ("mount", eperm),
            ("umount2", eperm),
            ("pivot_root", eperm),
            ("fsopen", eperm),
            ("unshare_user", eperm),
            ("unshare_mount", eperm),
            ("unshare_net", eperm),
            ("setns", eperm),
            ("clone_newuser", eperm),
            ("clone3", Some("ENOSYS")),
            ("bpf", eperm),
            ("perf_event_open", eperm),
            ("keyctl", eperm),
            ("io_uring_setup", eperm),
            ("userfaultfd", eperm),
            ("open_by_handle_at", eperm),
            ("kexec_load", eperm),
            ("init_module", eperm),
            ("ptrace_traceme", eperm),
            ("ptrace_attach_init", eperm),
            ("process_vm_readv", eperm),
            ("unshare_cmd", None),
        ],
    );
    assert_eq!(r["fork"], "works");
}

#[test]
fn the_scorer_cannot_be_traced_or_killed() {
    let Some(case) = Case::new() else { return };
    let me = std::process::id();
    let body = format!(
        r#"
import signal
probe("ptrace_scorer", lambda: call(SYS_ptrace, 16, {me}, 0, 0))
probe("kill_scorer", lambda: os.kill({me}, signal.SIGKILL))
# The shim (pid 1) ignores signals from inside its namespace: these do nothing.
os.kill(1, signal.SIGKILL)
child = os.fork()
if child == 0:
    signal.pause()
# Every process this one may signal, but itself: the child; pid 1 is spared.
os.kill(-1, signal.SIGKILL)
print("child: killed by " + str(os.waitpid(child, 0)[1] & 0x7f), flush=True)
# Dying of a signal: only the shim's report can say so (bwrap would say exit 143).
os.kill(os.getpid(), signal.SIGTERM)
"#
    );
    let script = format!("{}\n{body}", probe_prelude());
    let o = case.run(
        case.sandbox(),
        PYTHON,
        &["-c", &script],
        Limits::default(),
        Duration::from_secs(20),
    );
    let out = String::from_utf8_lossy(&o.stdout.tail).into_owned();
    println!("{out}{}", String::from_utf8_lossy(&o.stderr.tail));
    assert!(out.contains("ptrace_scorer: refused EPERM"), "{out}");
    // The scorer's pid does not exist in the sandbox's PID namespace.
    assert!(out.contains("kill_scorer: refused ESRCH"), "{out}");
    assert!(out.contains("child: killed by 9"), "{out}");
    // The shim outlived SIGKILL from inside and reported the probe's own death exactly.
    assert_eq!(o.exit, Exit::Signaled(libc::SIGTERM), "{o:?}");
    // Still here, and so is the runner's bookkeeping.
    assert!(std::fs::metadata(format!("/proc/{me}")).is_ok());
}

#[test]
fn a_fork_bomb_ends_at_the_deadline_and_leaves_nothing() {
    let Some(case) = Case::new() else { return };
    let limits = Limits {
        processes: Some(64),
        ..Limits::default()
    };
    let start = Instant::now();
    let o = case.run(
        case.sandbox(),
        "sh",
        &["-c", "b() { b | b & }; b; sleep 100"],
        limits.clone(),
        Duration::from_secs(3),
    );
    assert_eq!(o.exit, Exit::TimedOut, "{o:?}");
    println!("fork bomb: {:?}", start.elapsed());
    // The per-user process limit holds inside: forks beyond it fail with EAGAIN.
    let body = r#"
n = 0
kids = []
try:
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            import time; time.sleep(30); os._exit(0)
        kids.append(pid)
    print("forks: LEAK 200")
except OSError as e:
    print(f"forks: refused {errno.errorcode[e.errno]} after {len(kids)}")
"#;
    let r = case.probe(case.sandbox(), limits, body);
    let forks = &r["forks"];
    assert!(forks.starts_with("refused EAGAIN"), "{forks}");
    let n: usize = forks.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n < 64, "{forks}");
}

#[test]
fn memory_exhaustion_stops_at_the_address_space_limit() {
    let Some(case) = Case::new() else { return };
    let o = case.run(
        case.sandbox(),
        PYTHON,
        &["-c", "b = bytearray(8 << 30)"],
        Limits {
            address_space: Some(1 << 30),
            ..Limits::default()
        },
        Duration::from_secs(20),
    );
    assert_eq!(o.exit, Exit::LimitHit(Limit::AddressSpace), "{o:?}");
}

#[test]
fn disks_fill_only_to_their_caps() {
    let Some(case) = Case::new() else { return };
    // The tmpfs: full at its size.
    let mut sb = case.sandbox();
    sb.tmp_size = 8 << 20;
    let body = r#"
def fill():
    with open("/tmp/fill", "wb") as f:
        for _ in range(64):
            f.write(b"x" * (1 << 20))
            f.flush()
    return "64 MiB written"
probe("fill_tmp", fill)
print("tmp_size: " + str(os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize))
"#;
    let r = case.probe(sb, Limits::default(), body);
    assert_refused(&r, &[("fill_tmp", Some("ENOSPC"))]);
    assert_eq!(r["tmp_size"], (8u64 << 20).to_string());
    // The work folder: one file stops at the file-size limit.
    let o = case.run(
        case.sandbox(),
        "sh",
        &["-c", "exec head -c 64000000 /dev/zero > /work/big"],
        Limits {
            file_size: Some(4 << 20),
            ..Limits::default()
        },
        Duration::from_secs(20),
    );
    assert_eq!(o.exit, Exit::LimitHit(Limit::FileSize), "{o:?}");
    let big = std::fs::metadata(case.work.path().join("big")).unwrap();
    assert_eq!(big.len(), 4 << 20);
}

#[test]
fn open_files_and_limits_stay_where_they_were_set() {
    let Some(case) = Case::new() else { return };
    let body = r#"
import resource
fds = []
try:
    for _ in range(1000):
        fds.append(os.open("/dev/null", os.O_RDONLY))
    print("open_files: LEAK 1000")
except OSError as e:
    print(f"open_files: refused {errno.errorcode[e.errno]} after {len(fds)}")
for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_FSIZE"):
    which = getattr(resource, name)
    soft, hard = resource.getrlimit(which)
    def up():
        resource.setrlimit(which, (hard + 1, hard + 1))
        return resource.getrlimit(which)
    try:
        print(f"raise_{name}: LEAK {up()}")
    except (ValueError, OSError) as e:
        print(f"raise_{name}: refused {e}")
"#;
    let limits = Limits {
        open_files: Some(64),
        processes: Some(64),
        address_space: Some(1 << 30),
        file_size: Some(1 << 20),
        ..Limits::default()
    };
    let r = case.probe(case.sandbox(), limits, body);
    let open = &r["open_files"];
    assert!(open.starts_with("refused EMFILE"), "{open}");
    let n: usize = open.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n < 64, "{open}");
    assert_refused(
        &r,
        &[
            ("raise_RLIMIT_NOFILE", None),
            ("raise_RLIMIT_NPROC", None),
            ("raise_RLIMIT_AS", None),
            ("raise_RLIMIT_FSIZE", None),
        ],
    );
}

#[test]
fn a_daemon_does_not_outlive_the_run() {
    let Some(case) = Case::new() else { return };
    let start = Instant::now();
    // setsid, a double fork, and a process that ignores SIGHUP and SIGTERM: all gone when the
    // program exits (Case::run checks /proc for the uid's processes).
    let o = case.sh(
        "(setsid sh -c 'trap \"\" HUP TERM; exec sleep 1000' > /dev/null 2>&1 < /dev/null &) ; \
         (sh -c 'sleep 1000 &' &) ; sleep 0.2; echo started",
    );
    assert_eq!(o.exit, Exit::Exited(0), "{o:?}");
    assert_eq!(o.stdout.tail, b"started\n");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn writes_outside_the_work_folder_fail_and_leave_nothing() {
    let Some(case) = Case::new() else { return };
    let inputs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(inputs.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(inputs.path().join("data"), "input").unwrap();
    let mut sb = case.sandbox();
    sb.read_only.push(Bind::new(inputs.path(), "/inputs"));
    let nonce = format!("rdbench-escape-{}-{}", std::process::id(), case.uid);
    let host_tmp = std::env::temp_dir().join(&nonce);
    // The sandbox's /tmp is its own tmpfs: the host's /tmp/NONCE stays absent.
    let body = format!(
        r#"
def write(path):
    with open(path, "w") as f:
        f.write("escaped")
    return path
for path in ("/{nonce}", "/etc/{nonce}", "/usr/{nonce}", "/usr/bin/{nonce}", "/inputs/{nonce}",
             "/inputs/data", "/work/../{nonce}", "/proc/{nonce}", "/dev/{nonce}",
             "/run/rdbench/{nonce}"):
    probe("write " + path, lambda: write(path))
probe("mkdir_root", lambda: os.mkdir("/{nonce}.d"))
probe("symlink_out", lambda: os.symlink("/etc", "/{nonce}.l"))
probe("chmod_input", lambda: os.chmod("/inputs/data", 0o777))
# The sandbox's own /tmp and work folder are writable.
print("tmp: " + write({host_tmp:?}))
print("work: " + write("/work/out"))
"#,
        host_tmp = host_tmp.display().to_string(),
    );
    let r = case.probe(sb, Limits::default(), &body);
    assert!(
        r.keys().filter(|k| k.starts_with("write ")).count() == 10,
        "{r:?}"
    );
    assert_refused(
        &r,
        &[
            ("mkdir_root", None),
            ("symlink_out", None),
            ("chmod_input", None),
        ],
    );
    assert_eq!(r["work"], "/work/out");
    // Nothing landed outside: not at the host's paths the sandbox named, not in the inputs.
    for p in [
        PathBuf::from("/").join(&nonce),
        PathBuf::from("/etc").join(&nonce),
        PathBuf::from("/usr").join(&nonce),
        PathBuf::from("/usr/bin").join(&nonce),
        host_tmp.clone(),
        std::env::temp_dir().join(&nonce),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    assert_eq!(
        std::fs::read_to_string(inputs.path().join("data")).unwrap(),
        "input"
    );
    assert_eq!(std::fs::read_dir(inputs.path()).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(case.work.path().join("out")).unwrap(),
        "escaped"
    );
}

#[test]
fn exits_are_typed_inside_the_sandbox() {
    let Some(case) = Case::new() else { return };
    assert_eq!(case.sh("exit 3").exit, Exit::Exited(3));
    // A signal stays a signal (bwrap alone would say exit 139).
    assert_eq!(case.sh("kill -SEGV $$").exit, Exit::Signaled(libc::SIGSEGV));
    let o = case.sh("echo out; echo err >&2; pwd; echo $HOME");
    assert_eq!(
        o.stdout.tail,
        format!("out\n{WORK_DIR}\n{WORK_DIR}\n").as_bytes()
    );
    assert_eq!(o.stderr.tail, b"err\n");
    let start = Instant::now();
    let o = case.run(
        case.sandbox(),
        "sleep",
        &["100"],
        Limits::default(),
        Duration::from_millis(700),
    );
    assert_eq!(o.exit, Exit::TimedOut);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let o = case.run(
        case.sandbox(),
        "sh",
        &["-c", "while :; do :; done"],
        Limits {
            cpu: Some(Duration::from_secs(1)),
            ..Limits::default()
        },
        Duration::from_secs(20),
    );
    assert_eq!(o.exit, Exit::LimitHit(Limit::Cpu), "{o:?}");
}

#[test]
fn what_cannot_be_sandboxed_is_a_typed_error() {
    let Some(case) = Case::new() else { return };
    let run = |sb: Sandbox, program: &str| Command::new(program).sandbox(sb).run();
    let mut sb = case.sandbox();
    sb.user = None;
    assert!(matches!(
        run(sb, "true"),
        Err(Error::Sandbox(SandboxError::NoUser))
    ));
    let mut sb = case.sandbox();
    sb.user = Some(User { uid: 0, gid: 0 });
    assert!(matches!(
        run(sb, "true"),
        Err(Error::Sandbox(SandboxError::RootRefused { .. }))
    ));
    let mut sb = case.sandbox();
    sb.read_only
        .push(Bind::new("/nonexistent/inputs", "/inputs"));
    assert!(matches!(
        run(sb, "true"),
        Err(Error::Sandbox(SandboxError::Path { .. }))
    ));
    let mut sb = case.sandbox();
    sb.read_only.push(Bind::new("/", "/"));
    assert!(matches!(
        run(sb, "true"),
        Err(Error::Sandbox(SandboxError::Reserved { .. }))
    ));
    let mut sb = case.sandbox();
    sb.read_only.push(Bind::new("/usr", "relative"));
    assert!(matches!(
        run(sb, "true"),
        Err(Error::Sandbox(SandboxError::NotAbsolute { .. }))
    ));
    // A program that is not inside (the host's pyenv shims are not bound).
    match run(case.sandbox(), "/root/.pyenv/shims/python3") {
        Err(Error::Spawn { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ENOENT)),
        other => panic!("{other:?}"),
    }
    // bwrap failing to set up is an error, not an exit code of the program: here the bind
    // sits in a folder the scorer (root) can search and the sandbox's user cannot.
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(closed.path().join("inputs")).unwrap();
    let mut sb = case.sandbox();
    sb.read_only
        .push(Bind::new(closed.path().join("inputs"), "/inputs"));
    let err = Command::new("true")
        .stderr(CAP)
        .sandbox(sb)
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Sandbox(SandboxError::Setup { why }) if why.contains("bwrap:")),
        "{err}"
    );
    case.assert_nothing_left();
}

/// Medians of interleaved runs: `/bin/true` by std, by the runner, in the sandbox; a short
/// Python program plain and in the sandbox. `--nocapture overhead` to see them.
#[test]
fn overhead_of_a_sandboxed_run() {
    let Some(case) = Case::new() else { return };
    let n = 60;
    let plain = |program: &'static str, args: &'static [&'static str]| {
        move || {
            let o = Command::new(program).args(args).run().unwrap();
            assert_eq!(o.exit, Exit::Exited(0));
        }
    };
    let sandboxed = |program: &'static str, args: &'static [&'static str]| {
        let sb = case.sandbox();
        move || {
            let o = Command::new(program)
                .args(args)
                .sandbox(sb.clone())
                .run()
                .unwrap();
            assert_eq!(o.exit, Exit::Exited(0));
        }
    };
    let py: &'static [&'static str] = &["-c", "print(1)"];
    let variants: Vec<Variant> = vec![
        (
            "/bin/true, std::process::Command",
            Box::new(|| {
                assert!(std::process::Command::new("/bin/true")
                    .status()
                    .unwrap()
                    .success())
            }),
        ),
        ("/bin/true, runner", Box::new(plain("/bin/true", &[]))),
        (
            "/bin/true, runner in the sandbox",
            Box::new(sandboxed("/bin/true", &[])),
        ),
        ("python3 -c 'print(1)', runner", Box::new(plain(PYTHON, py))),
        (
            "python3 -c 'print(1)', runner in the sandbox",
            Box::new(sandboxed(PYTHON, py)),
        ),
    ];
    let medians = interleaved_medians(&variants, n);
    // The sandbox's own cost, generous for a loaded machine (the goal is 50 ms).
    assert!(
        medians[2] < medians[1] + Duration::from_millis(250),
        "{medians:?}"
    );
    case.assert_nothing_left();
}

/// An unprivileged scorer runs the program as itself: this test binary, as the case's uid,
/// runs [`unprivileged_scorer_inner`], which sandboxes a program with no user set.
#[test]
fn an_unprivileged_scorer_sandboxes_as_itself() {
    let Some(case) = Case::new() else { return };
    let uid = case.uid.to_string();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged_scorer_inner",
            "--ignored",
            "--nocapture",
        ])
        .env("RDBENCH_ESCAPE_WORK", case.work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(
        stdout.contains(&format!("inner: Exited(0) uid={uid} escaped=no")),
        "{stdout}"
    );
    case.assert_nothing_left();
}

#[test]
#[ignore = "run by an_unprivileged_scorer_sandboxes_as_itself, as another user"]
fn unprivileged_scorer_inner() {
    let Some(work) = std::env::var_os("RDBENCH_ESCAPE_WORK") else {
        return;
    };
    use_shim(Shim {
        program: env!("CARGO_BIN_EXE_rdbench-sandbox-shim").into(),
        args: Vec::new(),
    });
    let o = Command::new("sh")
        .arg("-c")
        .arg("printf 'uid=%s escaped=' $(id -u); cat /proc/1/environ 2>/dev/null && echo yes || echo no")
        .stdout(CAP)
        .stderr(CAP)
        .deadline(Duration::from_secs(20))
        .sandbox(Sandbox::new(work))
        .run()
        .unwrap();
    println!(
        "inner: {:?} {}{}",
        o.exit,
        String::from_utf8_lossy(&o.stdout.tail),
        String::from_utf8_lossy(&o.stderr.tail)
    );
}

#[test]
fn the_program_inherits_only_its_descriptors_and_default_signals() {
    let Some(case) = Case::new() else { return };
    // A descriptor the scorer opened without close-on-exec, on a file of its own.
    let (_home, secret) = scorer_home();
    let path = std::ffi::CString::new(secret.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: open on a valid C string; closed below.
    let leaked = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(leaked > 2);
    let list_open = "import os\n\
                     def is_open(fd):\n\
                     \x20   try:\n\
                     \x20       return bool(os.fstat(fd))\n\
                     \x20   except OSError:\n\
                     \x20       return False\n\
                     print(','.join(str(fd) for fd in range(1024) if is_open(fd)))";
    let o = Command::new(PYTHON)
        .args(["-c", list_open])
        .stdout(CAP)
        .stderr(CAP)
        .capture_fd(7, 64)
        .deadline(Duration::from_secs(20))
        .sandbox(case.sandbox())
        .run()
        .unwrap();
    // SAFETY: our own descriptor.
    unsafe { libc::close(leaked) };
    // Only the standard three and the one captured descriptor.
    assert_eq!(o.stdout.tail, b"0,1,2,7\n", "{o:?}");
    // The shim's runtime ignores SIGPIPE; the program gets it back at its default.
    let o = case.sh("grep SigIgn /proc/self/status");
    let out = String::from_utf8_lossy(&o.stdout.tail).into_owned();
    let mask = out.trim().trim_start_matches("SigIgn:").trim();
    let mask = u64::from_str_radix(mask, 16).unwrap();
    assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    case.assert_nothing_left();
}
