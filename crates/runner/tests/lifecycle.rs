//! The lifecycle with real child processes (`/bin/sh` scripts and the `runner-fixture`
//! binary): exits, signals, the deadline, descendants that try to outlive the run, limits,
//! output caps, stdin, rusage, the parent's death.

use std::path::Path;
use std::time::{Duration, Instant};

use rdbench_runner::{Command, Contain, Containment, Exit, Limit, Limits, Output, Status};

mod common;
use common::{interleaved_medians, Variant};

const CAP: Output = Output::Capture { tail: 1 << 16 };

fn sh(script: &str) -> Command<'static> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).stdout(CAP).stderr(CAP);
    cmd
}

fn is_root() -> bool {
    // SAFETY: plain geteuid.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a process with this pid (in our namespace) exists, zombies included.
fn exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Whether a process with this pid exists and is not a zombie.
fn alive(pid: i32) -> bool {
    exists(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never written", path.display());
}

/// A daemon that leaves the session and the process group (double fork + `setsid`), writes
/// its pid as this process sees it (`/proc/self/stat` read by the shell itself: /proc is the
/// host's, so the pid is ours even inside a PID namespace) to `pidfile`, then sleeps forever.
/// With `hold_stdout` it keeps the run's stdout open.
fn daemon(pidfile: &Path, hold_stdout: bool) -> String {
    let out = if hold_stdout { "" } else { "> /dev/null 2>&1" };
    format!(
        r#"(setsid sh -c 'read p r < /proc/self/stat; echo $p > {pf}.tmp; mv {pf}.tmp {pf}; exec sleep 1000' {out} < /dev/null &)
while [ ! -s {pf} ]; do sleep 0.02; done"#,
        pf = pidfile.display()
    )
}

#[test]
fn an_exit_code_and_both_outputs_come_back() {
    let o = sh("echo out; echo err >&2; exit 7").run().unwrap();
    assert_eq!(o.exit, Exit::Exited(7));
    assert_eq!(o.status, Status::Code(7));
    assert_eq!(o.stdout.tail, b"out\n");
    assert_eq!(o.stderr.tail, b"err\n");
    assert!(o.stdout.complete() && !o.leaked);
    assert!(
        matches!(o.containment, Containment::PidNamespace { .. }),
        "this machine allows a PID namespace: {:?}",
        o.containment
    );
}

/// The program is not the namespace's pid 1 (which ignores signals from inside the
/// namespace): a shell that signals itself dies of it, as it would outside.
#[test]
fn a_descriptor_left_inheritable_in_the_parent_does_not_reach_the_program() {
    // A descriptor without close-on-exec, as a library or a test harness may leave one, on a
    // file whose name the program would see.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("left-open-by-the-parent");
    let file = std::fs::File::create(&marker).unwrap();
    // SAFETY: F_DUPFD makes an inheritable copy of our own descriptor, numbered 50 or above.
    let leaked = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_DUPFD, 50) };
    assert!(leaked >= 50);
    let mut cmd = sh("ls -l /proc/self/fd/");
    cmd.capture_fd(3, 1 << 10);
    let o = cmd.run();
    // SAFETY: closing the copy made above.
    unsafe { libc::close(leaked) };
    let listing = o.unwrap().stdout.text().to_string();
    assert!(
        !listing.contains("left-open-by-the-parent"),
        "the parent's descriptor reached the program: {listing}"
    );
    assert!(
        listing.contains(" 3 -> "),
        "the captured descriptor is inherited: {listing}"
    );
}

#[test]
fn a_program_that_kills_itself_is_signaled_in_either_containment() {
    for contain in [Contain::PidNamespace, Contain::ProcessGroup] {
        let o = sh("echo bye >&2; kill -SEGV $$; sleep 5")
            .contain(contain)
            .run()
            .unwrap();
        assert_eq!(o.exit, Exit::Signaled(libc::SIGSEGV), "{contain:?}");
        assert_eq!(o.stderr.tail, b"bye\n");
    }
}

#[test]
fn a_hang_ends_at_the_deadline_with_timed_out() {
    for contain in [Contain::PidNamespace, Contain::ProcessGroup] {
        let o = sh("echo started; sleep 1000")
            .contain(contain)
            .deadline(Duration::from_millis(300))
            .run()
            .unwrap();
        assert_eq!(o.exit, Exit::TimedOut, "{contain:?}");
        assert_eq!(o.status, Status::Signal(libc::SIGKILL));
        assert_eq!(o.stdout.tail, b"started\n");
        // Far below the sleep: the deadline ended it, not the program.
        assert!(o.wall < Duration::from_secs(500), "{:?}", o.wall);
    }
}

#[test]
fn a_setsid_double_forked_grandchild_is_gone_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // Both ways a run ends: the program exits, or the deadline kills it.
    for (i, then) in ["exit 0", "sleep 1000"].into_iter().enumerate() {
        let pidfile = dir.path().join(format!("daemon{i}"));
        let script = format!("{}\n{then}", daemon(&pidfile, false));
        let o = sh(&script)
            .contain(Contain::PidNamespace)
            .deadline(Duration::from_secs(20))
            .run()
            .unwrap();
        let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
        if then == "exit 0" {
            assert_eq!(o.exit, Exit::Exited(0));
        } else {
            assert_eq!(o.exit, Exit::TimedOut);
        }
        assert!(!exists(pid), "the daemon {pid} outlived the run ({then})");
    }
}

/// Without a namespace the process group is all the runner has: a daemon that left it is
/// not killed, but one that still holds the run's output is reported.
#[test]
fn the_process_group_fallback_reports_a_setsid_descendant_holding_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon");
    let o = sh(&daemon(&pidfile, true))
        .contain(Contain::ProcessGroup)
        .run()
        .unwrap();
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    let survived = exists(pid);
    // SAFETY: the test's own daemon, by the pid it wrote.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(o.exit, Exit::Exited(0));
    assert!(matches!(o.containment, Containment::ProcessGroup { .. }));
    assert!(
        o.leaked,
        "a descendant holding stdout after the reap is a leak"
    );
    assert!(
        survived,
        "the fallback cannot reach a process outside its group"
    );
    // Its group, on the other hand, is killed: a plain background child is gone.
    let o = sh("sleep 1000 & echo $!")
        .contain(Contain::ProcessGroup)
        .run()
        .unwrap();
    let pid: i32 = o.stdout.text().trim().parse().unwrap();
    assert!(!o.leaked);
    // SIGKILL was sent to the group before the reap; it takes effect when the child is next
    // scheduled (and the killed child may then wait as a zombie for init to reap it).
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(pid), "the background child {pid} outlived its group");
}

#[test]
fn a_fork_bomb_under_the_process_limit_ends_without_harming_the_parent() {
    let mut bomb = sh("id -u; bomb() { bomb | bomb & }; bomb; sleep 1000");
    bomb.limits(Limits {
        processes: Some(64),
        ..Limits::default()
    })
    .deadline(Duration::from_secs(3));
    if is_root() {
        // RLIMIT_NPROC is never enforced for root: the bomb runs as nobody.
        bomb.credentials(65534, 65534);
    }
    let child = bomb.spawn().unwrap();
    let group = child.process_group() as i32;
    let o = child.wait().unwrap();
    let uid: u32 = o
        .stdout
        .text()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "the bomb must not run as root");
    assert_eq!(o.exit, Exit::TimedOut);
    // Nothing of it is left: its process group is empty.
    // SAFETY: signal 0 to a group only checks for members.
    assert_ne!(
        unsafe { libc::kill(-group, 0) },
        0,
        "members of the bomb's group remain"
    );
    // And this process still runs children.
    assert_eq!(sh("exit 0").run().unwrap().exit, Exit::Exited(0));
}

#[test]
fn output_over_the_cap_keeps_its_exact_tail() {
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    // Both streams at once, each far over a pipe's buffer: read concurrently or deadlock.
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg("seq 1 200000; seq 1 200000 >&2")
        .stdout(Output::Capture { tail: 1000 })
        .stderr(Output::Capture { tail: 777 })
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::Exited(0));
    for (got, cap) in [(&o.stdout, 1000), (&o.stderr, 777)] {
        assert_eq!(got.total, expected.len() as u64);
        assert_eq!(got.tail, expected.as_bytes()[expected.len() - cap..]);
        assert_eq!(got.dropped(), (expected.len() - cap) as u64);
    }
}

#[test]
fn stdin_is_fed_while_output_is_read() {
    let input: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let o = Command::new("cat")
        .stdin_bytes(input.clone())
        .stdout(Output::Capture { tail: 2 << 20 })
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::Exited(0));
    assert_eq!(o.stdout.tail, input);
}

#[test]
fn a_cpu_bound_child_hits_the_cpu_limit() {
    let limits = Limits {
        cpu: Some(Duration::from_secs(1)),
        ..Limits::default()
    };
    // SIGXCPU at the soft limit.
    let o = sh("while :; do :; done")
        .limits(limits.clone())
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::LimitHit(Limit::Cpu));
    assert_eq!(o.status, Status::Signal(libc::SIGXCPU));
    // The rusage clock and the limit's are sampled differently: near the limit, not at it.
    assert!(o.usage.cpu() >= Duration::from_millis(500), "{:?}", o.usage);
    // SIGKILL at the hard limit for a program that ignores SIGXCPU.
    let o = sh("trap '' XCPU; while :; do :; done")
        .limits(limits)
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::LimitHit(Limit::Cpu));
    assert_eq!(o.status, Status::Signal(libc::SIGKILL));
}

#[test]
fn a_child_writing_over_the_file_size_limit_hits_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec head -c 1000000 /dev/zero > "$1""#)
        .arg("sh")
        .arg(&file)
        .limits(Limits {
            file_size: Some(4096),
            ..Limits::default()
        })
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::LimitHit(Limit::FileSize));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 4096);
    // Without the limit the same signal is just a signal.
    let o = sh("kill -XFSZ $$").run().unwrap();
    assert_eq!(o.exit, Exit::Signaled(libc::SIGXFSZ));
}

#[test]
fn an_allocation_failure_under_the_address_space_limit_is_named() {
    if Command::new("python3").arg("-c").arg("pass").run().is_err() {
        eprintln!("no python3: skipped");
        return;
    }
    let o = Command::new("python3")
        .arg("-c")
        .arg("b = bytearray(8 << 30)")
        .stderr(CAP)
        .limits(Limits {
            address_space: Some(1 << 30),
            ..Limits::default()
        })
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(
        o.exit,
        Exit::LimitHit(Limit::AddressSpace),
        "{}",
        o.stderr.text()
    );
    // The same exit without the limit set is an exit.
    let o = sh("echo MemoryError >&2; exit 1").run().unwrap();
    assert_eq!(o.exit, Exit::Exited(1));
}

#[test]
fn rusage_reports_peak_memory_and_cpu() {
    let o = sh(r#"x=$(head -c 50000000 /dev/zero | tr '\0' a); echo ${#x}"#)
        .deadline(Duration::from_secs(60))
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::Exited(0));
    assert_eq!(o.stdout.tail, b"50000000\n");
    assert!(o.usage.peak_rss >= 45_000_000, "{:?}", o.usage);
    assert!(o.usage.cpu() > Duration::ZERO, "{:?}", o.usage);
}

#[test]
fn a_program_that_cannot_start_is_an_error_naming_why() {
    let err = Command::new("no-such-program-rdbench").run().unwrap_err();
    assert!(
        matches!(err, rdbench_runner::Error::NotFound { .. }),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = Command::new(dir.path().join("missing")).run().unwrap_err();
    match err {
        rdbench_runner::Error::Spawn { source, .. } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT))
        }
        other => panic!("{other}"),
    }
    let err = sh("true")
        .current_dir(dir.path().join("missing"))
        .run()
        .unwrap_err();
    assert!(
        matches!(err, rdbench_runner::Error::Spawn { stage, .. } if stage.contains("working directory")),
        "{err}"
    );
}

/// The unprivileged path: a supervisor that is not root gets a user namespace with its PID
/// namespace, and a daemon its child leaves is still gone after the run.
#[test]
fn an_unprivileged_supervisor_contains_a_daemon_in_a_user_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner-fixture"));
    cmd.arg("supervise")
        .arg("20000")
        .arg(daemon(&pidfile, false));
    cmd.stdout(CAP)
        .stderr(CAP)
        .deadline(Duration::from_secs(60));
    // The supervisor itself in a plain process group, so only its own namespace counts.
    cmd.contain(Contain::ProcessGroup);
    if is_root() {
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        cmd.credentials(65534, 65534);
    }
    let o = cmd.run().unwrap();
    let out = o.stdout.text();
    assert_eq!(o.exit, Exit::Exited(0), "{out}{}", o.stderr.text());
    assert!(out.contains("exit=Exited(0)"), "{out}");
    assert!(
        out.contains("PidNamespace { user_namespace: true }"),
        "{out}"
    );
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    assert!(
        !exists(pid),
        "the daemon {pid} outlived the unprivileged run"
    );
}

/// However the parent dies (SIGKILL included), the namespace's init gets its parent-death
/// signal and the kernel ends everything in the namespace.
#[test]
fn every_descendant_dies_with_a_killed_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon");
    let script = format!("{}\nsleep 1000", daemon(&pidfile, false));
    let mut supervisor = std::process::Command::new(env!("CARGO_BIN_EXE_runner-fixture"))
        .arg("supervise")
        .arg("600000")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid: i32 = wait_for_file(&pidfile).trim().parse().unwrap();
    assert!(exists(pid), "the daemon runs while its supervisor does");
    supervisor.kill().unwrap();
    supervisor.wait().unwrap();
    let start = Instant::now();
    while exists(pid) && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !exists(pid),
        "the daemon {pid} outlived its killed supervisor"
    );
}

/// The figures the crate's overview quotes: one spawn of `/bin/true` through the runner
/// against `std::process::Command`, interleaved (so that a busy machine slows all alike), the
/// median of each. Prints only (`--nocapture`); no assertion on speed.
#[test]
fn overhead_of_a_spawn_against_std() {
    let n = 300;
    let std_spawn = || {
        let s = std::process::Command::new("/bin/true").status().unwrap();
        assert!(s.success());
    };
    let runner = |contain: Contain, capture: bool| {
        move || {
            let mut cmd = Command::new("/bin/true");
            cmd.contain(contain);
            if capture {
                cmd.stdout(CAP)
                    .stderr(CAP)
                    .deadline(Duration::from_secs(60));
            }
            let o = cmd.run().unwrap();
            assert_eq!(o.exit, Exit::Exited(0));
        }
    };
    let variants: Vec<Variant> = vec![
        ("/bin/true, std::process::Command", Box::new(std_spawn)),
        (
            "/bin/true, runner, process group",
            Box::new(runner(Contain::ProcessGroup, false)),
        ),
        (
            "/bin/true, runner, PID namespace",
            Box::new(runner(Contain::PidNamespace, false)),
        ),
        (
            "/bin/true, runner, PID namespace, stdout+stderr captured, deadline",
            Box::new(runner(Contain::PidNamespace, true)),
        ),
    ];
    interleaved_medians(&variants, n);
}
