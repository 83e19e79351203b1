//! Protected scoring, end to end: `rdbench serve` as root, the agent's side as an unprivileged
//! user created for the test, talking to it through the socket. Runs where the test runs as
//! root (CI does); elsewhere it says so and checks nothing.
//!
//! The agent tries what a hostile agent tried against the same-user scorer: read the home,
//! the service's memory and environment, include or link the scorer's files, use another
//! user's attempt, run the emulator, flood the socket. Every output it sees is searched for a
//! canary planted in the scorer's home and environment.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::text;

pub(super) const AGENT_USER: &str = "rdbench-agent";
pub(super) const CANARY: &str = "CANARY-7f3e9c1d-do-not-leak";

pub(super) struct Service {
    pub(super) child: Child,
    pub(super) socket: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) struct Deployment {
    /// World-traversable root of the test (tempdirs are 0700).
    _root: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) home: PathBuf,
    pub(super) agent_dir: PathBuf,
    /// The full `rdbench`, 0750 root:root as the README's deployment has it: the agent can
    /// neither run nor read it.
    pub(super) bin: PathBuf,
    /// `rdbench-client`, 0755: what the agent has.
    pub(super) client_bin: PathBuf,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, AGENT_USER]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl Deployment {
    /// None where this test cannot make a second user (not root, no useradd).
    pub(super) fn new() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("protected-scoring test skipped: it needs root to create the agent's user");
            return None;
        }
        if id_of("-u").is_none() {
            let made = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    AGENT_USER,
                ])
                .status();
            // Another test thread may have made it in the meantime.
            if id_of("-u").is_none() {
                panic!("cannot create user {AGENT_USER}: {made:?}");
            }
        }
        let (uid, gid) = (id_of("-u")?, id_of("-g")?);
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        chmod(&root, 0o755);
        let home = root.join("home");
        std::fs::create_dir(&home).unwrap();
        chmod(&home, 0o700);
        std::fs::write(home.join("planted-secret.txt"), CANARY).unwrap();
        std::fs::create_dir(root.join("run")).unwrap();
        chmod(&root.join("run"), 0o755);
        let agent_dir = root.join("agent");
        std::fs::create_dir(&agent_dir).unwrap();
        chmod(&agent_dir, 0o700);
        std::os::unix::fs::chown(&agent_dir, Some(uid), Some(gid)).unwrap();
        // The checkout may sit under a folder the agent cannot enter (/root in CI).
        let bin = root.join("rdbench");
        std::fs::copy(super::rdbench_bin(), &bin).unwrap();
        chmod(&bin, 0o750);
        let client_bin = root.join("rdbench-client");
        std::fs::copy(client_bin_built(), &client_bin).unwrap();
        chmod(&client_bin, 0o755);
        // A child another test thread forked while the copy was open for writing holds that fd
        // until it execs, and exec of the copy fails with "Text file busy" meanwhile. Wait until
        // it runs once; after that no writer can exist (the file is closed).
        let deadline = Instant::now() + Duration::from_secs(10);
        for b in [&bin, &client_bin] {
            loop {
                match Command::new(b).arg("--version").output() {
                    Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                        assert!(Instant::now() < deadline, "{b:?} stays busy");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => {
                        other.expect("the copied binary runs");
                        break;
                    }
                }
            }
        }
        Some(Deployment {
            _root: tmp,
            root,
            home,
            agent_dir,
            bin,
            client_bin,
            uid,
            gid,
        })
    }

    pub(super) fn serve(&self, name: &str) -> Service {
        self.serve_with(name, &[])
    }

    /// As [`Self::serve`], with variables of the operator's in the service's environment.
    pub(super) fn serve_with(&self, name: &str, vars: &[(&str, &Path)]) -> Service {
        let socket = self.root.join("run").join(format!("{name}.sock"));
        let child = Command::new(&self.bin)
            .args(["--home", self.home.to_str().unwrap(), "serve", "--socket"])
            .arg(&socket)
            .envs(vars.iter().copied())
            .env("RDBENCH_SHIPPED_CALIBRATION", self.root.join("no-shipped"))
            .env("RDBENCH_TEST_CANARY", CANARY)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rdbench serve starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "rdbench serve did not listen on {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Service { child, socket }
    }

    /// A command as the agent: its own user, a clean environment, no home of its own.
    pub(super) fn agent(&self, program: &Path, args: &[&str]) -> Output {
        self.agent_try(program, args)
            .expect("the agent's command runs")
    }

    /// As [`Self::agent`], where the program may not even start.
    pub(super) fn agent_try(&self, program: &Path, args: &[&str]) -> std::io::Result<Output> {
        Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.agent_dir)
            .current_dir(&self.agent_dir)
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .output()
    }

    /// `rdbench-client --socket S ARGS` as the agent.
    pub(super) fn client(&self, service: &Service, args: &[&str]) -> Output {
        let mut all = vec!["--socket", service.socket.to_str().unwrap()];
        all.extend_from_slice(args);
        self.agent(&self.client_bin, &all)
    }

    /// `rdbench --socket S ARGS` as the operator (root, the test's own user).
    pub(super) fn operator(&self, service: &Service, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--socket")
            .arg(&service.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the operator's command runs")
    }

    /// The operator starts an attempt of `task` (tiny) for the agent in `dir`; its id. Also
    /// a profile the service cannot score (prefix-sum without a GPU or a calibration): these
    /// tests use the checks before the environment's.
    pub(super) fn start_for_agent(&self, service: &Service, task: &str, dir: &Path) -> String {
        self.start_for_agent_in(service, task, "tiny", dir)
    }

    /// As [`Self::start_for_agent`], in `profile`.
    pub(super) fn start_for_agent_in(
        &self,
        service: &Service,
        task: &str,
        profile: &str,
        dir: &Path,
    ) -> String {
        let out = self.operator(
            service,
            &[
                "--json",
                "start",
                task,
                "--profile",
                profile,
                "--allow-unscorable",
                "--owner",
                AGENT_USER,
                "--dir",
                dir.to_str().unwrap(),
            ],
        );
        assert_eq!(code(&out), Some(0), "operator's start: {}", text(&out));
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        record["id"].as_str().unwrap().to_string()
    }

    /// `score --json --allow-uncalibrated DIR` as the agent, seen; it must be a valid entry,
    /// which is returned.
    fn score_valid(
        &self,
        service: &Service,
        dir: &str,
        seen: &mut Seen,
        what: &str,
    ) -> serde_json::Value {
        let out = self.client(service, &["--json", "score", "--allow-uncalibrated", dir]);
        seen.output(what, &out);
        assert_eq!(code(&out), Some(0), "{what}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The service's binary is private (0750): the sandbox's own user runs a copy of the shim
    /// beside it (for the tasks whose programs run in the sandbox).
    pub(super) fn shim_for_sandboxes(&self) {
        let shim = super::rdbench_bin().with_file_name("rdbench-sandbox-shim");
        assert!(
            shim.is_file(),
            "{} is missing: a workspace build makes it",
            shim.display()
        );
        let copy = self.root.join("rdbench-sandbox-shim");
        std::fs::copy(&shim, &copy).unwrap();
        chmod(&copy, 0o755);
    }

    pub(super) fn write_as_agent(&self, path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }
}

/// `rdbench-client` as cargo built it beside `rdbench`. A workspace test run (`scripts/test.sh`)
/// builds it; a run of this package alone does not, and cannot from here (cargo holds its lock
/// while tests run), so a missing or stale client is a message, not a silent old binary.
fn client_bin_built() -> PathBuf {
    let path = super::rdbench_bin().with_file_name("rdbench-client");
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["client/src", "core/src"]
        .iter()
        .filter_map(|d| newest_mtime(&sources.join(d)))
        .max();
    match (built, newest) {
        (Some(b), Some(n)) if b >= n => path,
        (Some(_), None) => path,
        _ => panic!(
            "{} is missing or older than its sources: run `cargo build -p rdbench-client` \
             (a workspace test run builds it)",
            path.display()
        ),
    }
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if m.is_dir() {
                newest_mtime(&e.path())
            } else {
                m.modified().ok()
            }
        })
        .max()
}

pub(super) fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything the agent saw: outputs, and every file under its folder.
struct Seen(Vec<(String, Vec<u8>)>);

impl Seen {
    fn output(&mut self, what: &str, out: &Output) {
        self.0
            .push((format!("{what} (stdout)"), out.stdout.clone()));
        self.0
            .push((format!("{what} (stderr)"), out.stderr.clone()));
    }
    fn folder(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                self.folder(&path);
            } else if path.is_file() && !path.is_symlink() {
                self.0
                    .push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    fn assert_clean(&self, forbidden: &[&str]) {
        for (what, bytes) in &self.0 {
            let text = String::from_utf8_lossy(bytes);
            for f in forbidden {
                assert!(!text.contains(f), "{what} shows {f:?}:\n{text}");
            }
        }
    }
}

pub(super) fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn an_agent_as_another_user_cannot_cheat_the_scoring_service() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("main");
    // What the service said (searched for the canary and the home's path) and what the
    // agent's own probes of paths it named showed (searched for the canary).
    let mut seen = Seen(Vec::new());
    let mut probes = Seen(Vec::new());
    let a1 = d.agent_dir.join("a1");
    let a1s = a1.to_str().unwrap();

    // An agent may not start attempts (throwaway attempts would be score oracles, and a start
    // on a path squats it); the operator starts one for it, and the folder and files are the
    // agent's.
    let mine = d.agent_dir.join("mine");
    let out = d.client(
        &service,
        &[
            "start",
            "prefix-sum",
            "--profile",
            "tiny",
            "--dir",
            mine.to_str().unwrap(),
        ],
    );
    seen.output("agent's start", &out);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("platform's"), "{}", text(&out));
    assert!(!mine.exists(), "the refused start left its folder behind");
    let a1_id = d.start_for_agent(&service, "prefix-sum", &a1);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(a1.join("solution.cu")).unwrap();
    assert_eq!(meta.uid(), d.uid, "the starting files belong to the agent");
    assert_eq!(
        std::fs::metadata(&a1).unwrap().uid(),
        d.uid,
        "so does the folder"
    );
    // The home, the service's environment and memory are out of reach.
    let home = d.home.to_str().unwrap();
    for args in [
        vec!["/bin/ls", home],
        vec!["/bin/cat", &format!("{home}/planted-secret.txt")],
    ] {
        let out = d.agent(Path::new(args[0]), &args[1..]);
        probes.output(&args.join(" "), &out);
        assert_ne!(code(&out), Some(0), "{}", text(&out));
    }
    let pid = service.child.id();
    for file in ["environ", "mem", "cmdline"] {
        let out = d.agent(Path::new("/bin/cat"), &[&format!("/proc/{pid}/{file}")]);
        probes.output(&format!("cat /proc/pid/{file}"), &out);
        if file != "cmdline" {
            assert_ne!(code(&out), Some(0), "/proc/{pid}/{file}: {}", text(&out));
        }
    }
    // The full binary holds every reference solution: the agent can neither run it (to
    // `install-solution reference`) nor read it.
    let ran = d.agent_try(
        &d.bin,
        &["install-solution", "prefix-sum", "reference", "--dir", a1s],
    );
    assert!(
        ran.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied),
        "{ran:?}"
    );
    let out = d.agent(Path::new("/bin/cat"), &[d.bin.to_str().unwrap()]);
    assert_ne!(code(&out), Some(0), "the agent read the full binary");

    // Each cheat through the service is one invalid entry (or a refusal), never a leak.
    let solution = a1.join("solution.cu");
    let original = std::fs::read(&solution).unwrap();
    let mut expected_entries = 0;
    let cheats: Vec<(&str, Box<dyn Fn()>)> = vec![
        (
            "include the scorer's file",
            Box::new(|| {
                let mut src = format!("#include \"{home}/planted-secret.txt\"\n").into_bytes();
                src.extend_from_slice(&original);
                d.write_as_agent(&solution, &src);
            }),
        ),
        (
            "symlink to the scorer's file",
            Box::new(|| {
                let _ = std::fs::remove_file(&solution);
                std::os::unix::fs::symlink(d.home.join("planted-secret.txt"), &solution).unwrap();
                let _ = std::os::unix::fs::lchown(&solution, Some(d.uid), Some(d.gid));
            }),
        ),
        (
            "FIFO",
            Box::new(|| {
                let _ = std::fs::remove_file(&solution);
                let c = std::ffi::CString::new(solution.to_str().unwrap()).unwrap();
                // SAFETY: a valid C string; mkfifo only creates the node.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
                std::os::unix::fs::chown(&solution, Some(d.uid), Some(d.gid)).unwrap();
            }),
        ),
    ];
    for (name, plant) in &cheats {
        plant();
        let out = d.client(&service, &["score", a1s]);
        seen.output(name, &out);
        assert_eq!(code(&out), Some(1), "{name}: {}", text(&out));
        expected_entries += 1;
    }
    let _ = std::fs::remove_file(&solution);
    d.write_as_agent(&solution, &original);

    // The emulator runs the submission as host code: not served to agents.
    let out = d.client(&service, &["score", "--emulate", a1s]);
    seen.output("score --emulate", &out);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("not served to agents"),
        "{}",
        text(&out)
    );

    // Another user's attempt looks like no attempt at all.
    let theirs = d.root.join("operators-attempt");
    let out = Command::new(&d.bin)
        .args([
            "--socket",
            service.socket.to_str().unwrap(),
            "start",
            "prefix-sum",
            "--allow-unscorable",
        ])
        .args(["--profile", "tiny", "--dir", theirs.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "operator's start: {}", text(&out));
    chmod(&theirs, 0o755);
    // A served tool is opened like every other command: only the caller's own attempt.
    let out = d.client(
        &service,
        &[
            "tool",
            theirs.to_str().unwrap(),
            "train",
            "n_embd=8",
            "max_iters=1",
        ],
    );
    seen.output("tool on another's attempt", &out);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no attempt was started here"),
        "{}",
        text(&out)
    );
    let out = d.client(&service, &["tool", a1s, "train", "n_embd=8", "max_iters=1"]);
    seen.output("tool of a task without tools", &out);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("has no tool"), "{}", text(&out));
    for cmd in ["log", "score"] {
        let out = d.client(&service, &[cmd, theirs.to_str().unwrap()]);
        seen.output(&format!("{cmd} on another's attempt"), &out);
        assert_eq!(code(&out), Some(2), "{cmd}: {}", text(&out));
        assert!(
            text(&out).contains("no attempt was started here"),
            "{}",
            text(&out)
        );
    }
    // By id, another's attempt and an unknown id read alike, to the byte (no existence oracle).
    let theirs_id = std::fs::read_dir(d.home.join("attempts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("att-") && *n != a1_id)
        .unwrap();
    let unknown = format!("att-{}", "0".repeat(32));
    let by_id = |id: &str| {
        let out = d.client(&service, &["log", id]);
        assert_eq!(code(&out), Some(2), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).replace(id, "ID")
    };
    assert_eq!(by_id(&theirs_id), by_id(&unknown));
    // Finishing is the platform's, on any attempt, the agent's own included.
    for target in [theirs.to_str().unwrap(), a1s, a1_id.as_str()] {
        let out = d.client(&service, &["finish", target]);
        seen.output("agent's finish", &out);
        assert_eq!(code(&out), Some(2), "{}", text(&out));
        assert!(text(&out).contains("platform's"), "{}", text(&out));
    }

    // A hostile client: garbage, a huge announced message, a stall. The service stays up.
    for bytes in [
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        [b"RDB1".as_slice(), &u32::MAX.to_le_bytes()].concat(),
    ] {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&service.socket).unwrap();
        s.write_all(&bytes).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert!(String::from_utf8_lossy(&reply).contains("protocol error"));
    }

    // The log holds exactly the agent's entries, and reads as the agent.
    let out = d.client(&service, &["--json", "log", a1s]);
    seen.output("log", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = log["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), expected_entries, "{}", text(&out));
    for e in &entries {
        assert_eq!(e["valid"], false);
    }

    // The operator finishes by id, never by the agent's folder; then nothing is left behind
    // in the home.
    let out = d.operator(&service, &["finish", a1s]);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert!(text(&out).contains("by the id"), "{}", text(&out));
    let summary = d.agent_dir.join("summary.json");
    let out = d.operator(
        &service,
        &["finish", &a1_id, "--out", summary.to_str().unwrap()],
    );
    seen.output("finish", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(summary.exists());
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(first["entries"], expected_entries);
    assert!(first.get("log_break").is_none(), "{first}");

    // After finish, a score is recorded late and never counts; a second finish agrees.
    d.write_as_agent(
        &solution,
        &[b"#include <x>\n".as_slice(), &original].concat(),
    );
    let out = d.client(&service, &["score", a1s]);
    seen.output("score after finish", &out);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("recorded late"), "{}", text(&out));
    let out = d.client(&service, &["log", a1s]);
    seen.output("log after finish", &out);
    assert!(text(&out).contains("no: late"), "{}", text(&out));
    assert!(
        text(&out).contains("chain: intact; sealed"),
        "{}",
        text(&out)
    );
    let out = d.operator(
        &service,
        &["finish", &a1_id, "--out", summary.to_str().unwrap()],
    );
    seen.output("second finish", &out);
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(second["entries"], first["entries"]);
    assert_eq!(second["finished_at"], first["finished_at"]);
    assert_eq!(second["late_entries"], 1);
    for entry in std::fs::read_dir(d.home.join("attempts"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".staging"), "left behind: {name}");
        let snaps = entry.path().join("snapshots");
        if snaps.exists() {
            assert_eq!(
                std::fs::read_dir(&snaps).unwrap().count(),
                0,
                "snapshots left behind"
            );
        }
    }

    seen.folder(&d.agent_dir);
    seen.assert_clean(&[CANARY, home]);
    probes.assert_clean(&[CANARY]);
}

#[test]
fn concurrent_agents_and_kill_9_lose_no_acknowledged_entry_and_leave_nothing_behind() {
    let Some(d) = Deployment::new() else { return };
    let mut service = d.serve("kill");
    let a = d.agent_dir.join("k1");
    d.start_for_agent(&service, "prefix-sum", &a);
    // An invalid submission is logged without a GPU, so every call appends an entry.
    let solution = a.join("solution.cu");
    let mut src = b"#include <cstdio>\n".to_vec();
    src.extend_from_slice(&std::fs::read(&solution).unwrap());
    d.write_as_agent(&solution, &src);

    const CALLS: usize = 15;
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    let socket = service.socket.clone();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let delays: Vec<u64> = (0..8 * CALLS).map(|_| random(300)).collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (d, a, socket, acknowledged, delays) = (&d, &a, &socket, &acknowledged, &delays);
            scope.spawn(move || {
                for i in 0..CALLS {
                    let mut child = Command::new(&d.client_bin)
                        .args([
                            "--socket",
                            socket.to_str().unwrap(),
                            "score",
                            a.to_str().unwrap(),
                        ])
                        .env_clear()
                        .uid(d.uid)
                        .gid(d.gid)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    // Every third client is killed at a random point of its call.
                    let status = if (t + i) % 3 == 0 {
                        std::thread::sleep(Duration::from_millis(delays[t * CALLS + i]));
                        let _ = child.kill();
                        child.wait().unwrap()
                    } else {
                        child.wait().unwrap()
                    };
                    if status.code() == Some(1) {
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        // Meanwhile the service itself is killed once, mid-traffic, and restarted.
        std::thread::sleep(Duration::from_millis(50 + random(300)));
        let _ = service.child.kill();
        let _ = service.child.wait();
        service = d.serve("kill");
    });

    let out = d.client(&service, &["--json", "log", a.to_str().unwrap()]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = log["entries"].as_array().unwrap().clone();
    let acked = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("{} log entries, {acked} calls acknowledged", entries.len());
    assert!(acked > 0, "no call got through");
    assert!(
        entries.len() >= acked,
        "{} entries for {acked} acknowledged calls",
        entries.len()
    );
    for e in &entries {
        assert_eq!(e["kind"], "rule_violation", "{e}");
    }
    // A kill mid-append may tear the last line; it never breaks the chain.
    let out = d.client(&service, &["log", a.to_str().unwrap()]);
    assert!(text(&out).contains("chain: intact"), "{}", text(&out));
    // The restarted service swept what the killed one left.
    let private = std::fs::read_dir(d.home.join("attempts"))
        .unwrap()
        .flatten();
    for entry in private {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".staging"), "left behind: {name}");
        let snaps = entry.path().join("snapshots");
        if snaps.exists() {
            let left: Vec<_> = std::fs::read_dir(&snaps).unwrap().flatten().collect();
            assert!(left.is_empty(), "snapshots left behind: {left:?}");
        }
    }
}

/// A task that scores without a GPU, through the service end to end: the agent gets the
/// starting program, scores it (exactly 0), is told which walker a wrong program gets wrong,
/// and finishes with the best entry; the scorer's secret seed and home never reach it.
#[test]
fn a_tree_traversal_attempt_is_scored_through_the_service() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("tt");
    let dir = d.agent_dir.join("tt");
    let dirs = dir.to_str().unwrap();
    let mut seen = Seen(Vec::new());
    let id = d.start_for_agent(&service, "tree-traversal", &dir);
    use std::os::unix::fs::MetadataExt;
    for file in [
        "program.json",
        "build_program.py",
        "params.json",
        "INSTRUCTIONS.md",
    ] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.uid(), d.uid, "{file} belongs to the agent");
    }
    let out = d.client(&service, &["--json", "score", dirs]);
    seen.output("score start", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["normalized"], 0.0, "{entry}");
    // `status`, as the agent: its time left, its entries, its best score.
    let out = d.client(&service, &["--json", "status", dirs]);
    seen.output("status", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["id"], id.as_str(), "{status}");
    assert_eq!(status["entries"], 1, "{status}");
    assert_eq!(status["best"][0], 0.0, "{status}");
    assert!(status["minutes_left"].as_f64().unwrap() > 0.0, "{status}");
    let program = dir.join("program.json");
    let start = std::fs::read(&program).unwrap();
    d.write_as_agent(
        &program,
        br#"{"format": "rdbench-vliw/1", "bundles": [{"load": [["const", 0, 7]]}]}"#,
    );
    let out = d.client(&service, &["score", dirs]);
    seen.output("score wrong", &out);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("walker 0"), "{}", text(&out));
    d.write_as_agent(&program, &start);
    let out = d.operator(&service, &["--json", "finish", &id]);
    seen.output("finish", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["score"], 0.0);
    assert_eq!(summary["entries"], 2);
    seen.assert_clean(&[CANARY, d.home.to_str().unwrap()]);
}

/// Whether optimize-train's PyTorch is here (the checkout's `.venv`, or `$RDBENCH_TORCH_VENV`);
/// CI installs it (`scripts/test.sh`), so there its absence is a failure, not a skip.
fn torch_installed() -> bool {
    let venv = std::env::var_os("RDBENCH_TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let found = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("site-packages/torch").is_dir());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI installs PyTorch into .venv (scripts/test.sh); it is missing"
    );
    found
}

/// A program task through the service: the agent's `solution/` folder travels file by file
/// through `rdbench-client` with the agent's rights; a link planted in it is refused naming its
/// path, before anything runs; a program that skips the training is wrong on the secret
/// dataset; the reference program, written by the agent, is valid. The program's output and
/// the scorer's home never reach the agent.
#[test]
fn an_optimize_train_attempt_is_scored_through_the_service() {
    let Some(d) = Deployment::new() else { return };
    if !torch_installed() {
        eprintln!("skipped: no PyTorch in .venv (scripts/test.sh installs it)");
        return;
    }
    d.shim_for_sandboxes();
    let service = d.serve("ot");
    let dir = d.agent_dir.join("ot");
    let dirs = dir.to_str().unwrap();
    let mut seen = Seen(Vec::new());
    let id = d.start_for_agent(&service, "optimize-train", &dir);
    let solution = dir.join("solution");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(solution.join("train.sh")).unwrap().uid(),
        d.uid
    );

    // A link inside the tree: refused with its path, nothing run.
    let link = solution.join("data/peek");
    std::os::unix::fs::symlink(&d.home, &link).unwrap();
    let out = d.client(&service, &["score", dirs]);
    seen.output("score with a link", &out);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{dirs}/solution/data/peek: a symbolic link")),
        "{}",
        text(&out)
    );
    std::fs::remove_file(&link).unwrap();

    // No training: untrained weights are far from the reference's on the secret data.
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/optimize-train/program");
    let untrained = "import torch\nfrom model import GPT, load_config, save_safetensors\n\
        cfg = load_config('train.toml')\ntorch.manual_seed(cfg['train']['seed'])\n\
        save_safetensors(dict(GPT(cfg['model']).named_parameters()), 'trained_model/model.safetensors')\n";
    d.write_as_agent(&solution.join("skip.py"), untrained.as_bytes());
    d.write_as_agent(
        &solution.join("train.sh"),
        b"cd \"$(dirname \"$0\")\" && mkdir -p trained_model && python3 skip.py\n",
    );
    let out = d.client(&service, &["--json", "score", "--allow-uncalibrated", dirs]);
    seen.output("score untrained", &out);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["kind"], "wrong_output", "{entry}");

    // The reference program, as the agent would write it: valid (a raw score only: this
    // installation has no calibration, and calibrating would cost six runs).
    for file in ["train.sh", "train.py"] {
        let bytes = std::fs::read(programs.join("reference").join(file)).unwrap();
        d.write_as_agent(&solution.join(file), &bytes);
    }
    let entry = d.score_valid(&service, dirs, &mut seen, "score reference");
    assert!(entry["raw"].as_f64().unwrap() > 0.0, "{entry}");

    let out = d.operator(&service, &["--json", "finish", &id]);
    seen.output("finish", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["entries"], 3, "{summary}");
    seen.folder(&dir);
    seen.assert_clean(&[CANARY, d.home.to_str().unwrap()]);
}

/// codecontests-scaffold through the service: the agent's scaffold runs once per held-out
/// problem in the sandbox, with the budgeted proxy as its only address. A scaffold that hunts
/// the scorer's files for tests and prints what it finds as its program gets a valid but
/// worthless entry, and nothing of the held-out problems (their names, tests) or the scorer's
/// home reaches the agent; the reference scaffold, written by the agent, solves some.
#[test]
fn a_codecontests_scaffold_attempt_is_scored_through_the_service() {
    let Some(d) = Deployment::new() else { return };
    d.shim_for_sandboxes();
    let service = d.serve("cc");
    let dir = d.agent_dir.join("cc");
    let dirs = dir.to_str().unwrap();
    let mut seen = Seen(Vec::new());
    let id = d.start_for_agent(&service, "codecontests-scaffold", &dir);
    let solution = dir.join("solution");
    let visible = std::fs::read_to_string(dir.join("problems/visible.jsonl")).unwrap();
    assert!(visible.lines().count() > 10 && !visible.contains("held-out"));

    // The agent tries the model on a visible problem, on its attempt's budget.
    let out = d.client(
        &service,
        &[
            "tool",
            dirs,
            "complete",
            "problem=0",
            "n=2",
            "max_tokens=64",
        ],
    );
    seen.output("complete", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--- choice 1"), "{}", text(&out));
    assert!(
        text(&out).contains("this attempt has used"),
        "{}",
        text(&out)
    );

    // A scaffold that looks for tests and the scorer's files, and prints what it found.
    let hunter = r#"
import os
async def generate_solution(client, semaphore, problem):
    found = []
    for root in ["/work", "/tmp", "/run", "/opt", "/root", "/home", "/etc", "/proc/1"]:
        for dirpath, dirnames, filenames in os.walk(root):
            if dirpath.startswith(("/opt/venv", "/opt/rust")):
                dirnames[:] = []
                continue
            for name in filenames[:200]:
                try:
                    head = open(os.path.join(dirpath, name), "rb").read(4096)
                except OSError:
                    continue
                # In two pieces, so this file does not find itself.
                if b"private" + b"_tests" in head or b"generated" + b"_tests" in head:
                    found.append(os.path.join(dirpath, name))
    print(problem["name"], found, flush=True)
    return "fn main() { println!(\"" + " ".join(found) + problem["name"] + "\"); }"
"#;
    d.write_as_agent(&solution.join("solve.py"), hunter.as_bytes());
    let entry = d.score_valid(&service, dirs, &mut seen, "score the hunter");
    assert_eq!(entry["raw"], 0.0, "{entry}");

    // The reference scaffold, as the agent would write it.
    let reference = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tasks/codecontests-scaffold/scaffold/reference/solve.py");
    d.write_as_agent(
        &solution.join("solve.py"),
        &std::fs::read(reference).unwrap(),
    );
    let entry = d.score_valid(&service, dirs, &mut seen, "score the reference");
    assert!(entry["raw"].as_f64().unwrap() > 0.0, "{entry}");

    let out = d.operator(&service, &["--json", "finish", &id]);
    seen.output("finish", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    seen.folder(&dir);
    seen.assert_clean(&[CANARY, d.home.to_str().unwrap(), "held-out-0"]);
}

/// finetune-qa through the service: the agent asks the judge through the client (counted in
/// its private folder, refused past a call's limit), scores the base and an out-of-bounds
/// setting, and never sees the scorer's home or the held-out set.
#[test]
fn a_finetune_qa_attempt_is_judged_and_scored_through_the_service() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("fqa");
    let dir = d.agent_dir.join("fqa");
    let dirs = dir.to_str().unwrap();
    let mut seen = Seen(Vec::new());
    let id = d.start_for_agent(&service, "finetune-qa", &dir);
    use std::os::unix::fs::MetadataExt;
    for file in ["policy.safetensors", "generation.json", "train_prompts.txt"] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.uid(), d.uid, "{file} belongs to the agent");
    }
    let prompts = std::fs::read_to_string(dir.join("train_prompts.txt")).unwrap();
    let prompt = prompts.lines().next().unwrap();
    let pair = format!(r#"{{"prompt": "{prompt}", "first": "um <eos>", "second": "red <eos>"}}"#);
    let out = d.client(
        &service,
        &[
            "--json",
            "tool",
            dirs,
            "judge",
            &format!("pairs=[{pair},{pair}]"),
        ],
    );
    seen.output("judge", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["used"], 2, "{reply}");
    let too_many = format!("pairs=[{}]", vec![pair.as_str(); 513].join(","));
    let out = d.client(&service, &["tool", dirs, "judge", &too_many]);
    seen.output("judge, too many", &out);
    assert_ne!(code(&out), Some(0), "{}", text(&out));
    let entry = d.score_valid(&service, dirs, &mut seen, "score the base");
    assert!(entry["raw"].as_f64().unwrap() > 0.0, "{entry}");
    d.write_as_agent(
        &dir.join("generation.json"),
        br#"{"temperature": 9, "top_k": 0, "max_new_tokens": 12}"#,
    );
    let out = d.client(&service, &["score", "--allow-uncalibrated", dirs]);
    seen.output("score too hot", &out);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("temperature"), "{}", text(&out));
    let out = d.operator(&service, &["--json", "finish", &id]);
    seen.output("finish", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    seen.folder(&dir);
    seen.assert_clean(&[
        CANARY,
        d.home.to_str().unwrap(),
        "heldout",
        "sft.safetensors",
    ]);
}

/// finetune-qa's `full` profile through the service: the operator's inputs (a folder only the
/// scorer reads) and judge are named in the service's environment; the agent asks the judge
/// through the client and scores the base, and sees neither the key, the judge's address, the
/// held-out prompts nor any answer.
#[test]
fn a_finetune_qa_full_attempt_asks_the_operators_judge_through_the_service() {
    use rdbench_task_finetune_qa::full::{operator::CONFIG_VAR, testing};
    let Some(d) = Deployment::new() else { return };
    let endpoint =
        rdbench_llm_proxy::testing::FakeEndpoint::start(|body| testing::judge_reply(body, true));
    let inputs = d.root.join("operator-inputs");
    let config = testing::write_operator_inputs(&inputs, &endpoint.base_url()).unwrap();
    chmod(&inputs, 0o700);
    let service = d.serve_with("fqa-full", &[(CONFIG_VAR, config.as_path())]);
    let dir = d.agent_dir.join("fqa-full");
    let dirs = dir.to_str().unwrap();
    let mut seen = Seen(Vec::new());
    let id = d.start_for_agent_in(&service, "finetune-qa", "full", &dir);
    let out = d.agent(Path::new("/bin/cat"), &[config.to_str().unwrap()]);
    assert_ne!(code(&out), Some(0), "the agent read the operator's config");
    let pair = r#"{"prompt": "Say hi.", "first": "hello there", "second": "hi"}"#;
    let out = d.client(
        &service,
        &["--json", "tool", dirs, "judge", &format!("pairs=[{pair}]")],
    );
    seen.output("judge", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        reply["first_preferred"],
        serde_json::json!([false]),
        "{reply}"
    );
    let entry = d.score_valid(&service, dirs, &mut seen, "score the base (full)");
    assert_eq!(entry["raw"], 0.5, "{entry}");
    let out = d.operator(&service, &["--json", "finish", &id]);
    seen.output("finish", &out);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    seen.folder(&dir);
    let address = endpoint.base_url();
    seen.assert_clean(&[
        CANARY,
        d.home.to_str().unwrap(),
        "SECRET-ANSWER",
        "sk-judge-secret",
        &address,
        testing::HELDOUT[1],
    ]);
}

/// The operator's side names attempts by id and follows no link the agent plants: a folder
/// swapped for a link to another attempt, a summary path or a starting folder pointing at a
/// root-only file, links planted while `start` writes. And what a hidden-score task keeps
/// from the agent stays out of `info`, `finish` and the log; terminal controls are escaped.
#[test]
fn the_operator_follows_no_agent_link_and_hidden_scores_stay_hidden() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("links");
    let mut seen = Seen(Vec::new());
    let vault = d.root.join("vault");
    std::fs::create_dir(&vault).unwrap();
    chmod(&vault, 0o755); // traversable, but nothing in it is the agent's to write
    let precious = vault.join("precious");
    std::fs::write(&precious, "keep").unwrap();
    chmod(&precious, 0o600);
    let vault_listing = || {
        let mut v: Vec<String> = std::fs::read_dir(&vault)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let as_agent = |args: &[&str]| {
        let out = d.agent(Path::new(args[0]), &args[1..]);
        assert_eq!(code(&out), Some(0), "{args:?}: {}", text(&out));
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // 1. mv P P.old; ln -s Q P: the platform's finish of P's id finishes P, not Q.
    let (p, q) = (d.agent_dir.join("p"), d.agent_dir.join("q"));
    let p_id = d.start_for_agent(&service, "tree-traversal", &p);
    let q_id = d.start_for_agent(&service, "tree-traversal", &q);
    as_agent(&["/bin/mv", &s(&p), &format!("{}.old", s(&p))]);
    as_agent(&["/bin/ln", "-s", &s(&q), &s(&p)]);
    let out = d.operator(&service, &["--json", "finish", &p_id]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["attempt_id"], p_id.as_str());
    let out = d.client(&service, &["log", &s(&q)]);
    assert!(text(&out).contains("chain: intact"), "{}", text(&out));
    assert!(
        !text(&out).contains("sealed"),
        "Q was finished: {}",
        text(&out)
    );
    let out = d.client(&service, &["log", &p_id]);
    assert!(text(&out).contains("sealed"), "{}", text(&out));

    // 2. finish --out through a link planted at the name, or on the path: never written through.
    let planted = d.agent_dir.join("summary.json");
    as_agent(&["/bin/ln", "-s", &s(&precious), &s(&planted)]);
    let out = d.operator(&service, &["finish", &q_id, "--out", &s(&planted)]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    assert!(!planted.is_symlink() && planted.is_file());
    let linked_dir = d.agent_dir.join("linked");
    as_agent(&["/bin/ln", "-s", &s(&vault), &s(&linked_dir)]);
    let out = d.operator(
        &service,
        &["finish", &q_id, "--out", &s(&linked_dir.join("s.json"))],
    );
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    assert_eq!(vault_listing(), vec!["precious".to_string()]);

    // 2b. The operator's client scoring the agent's attempt (as root) reads no link, no hard
    // link, and no folder swapped for a link: each is one invalid entry naming the file.
    let r = d.agent_dir.join("r");
    let r_id = d.start_for_agent(&service, "tree-traversal", &r);
    let program = s(&r.join("program.json"));
    as_agent(&["/bin/rm", &program]);
    as_agent(&["/bin/ln", "-s", &s(&precious), &program]);
    let out = d.operator(&service, &["score", &r_id]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    as_agent(&["/bin/rm", &program]);
    as_agent(&[
        "/bin/cp",
        &s(&q.join("program.json")),
        &s(&r.join("own.json")),
    ]);
    as_agent(&["/bin/ln", &s(&r.join("own.json")), &program]);
    let out = d.operator(&service, &["score", &r_id]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("hard link"), "{}", text(&out));
    as_agent(&["/bin/mv", &s(&r), &format!("{}.old", s(&r))]);
    as_agent(&["/bin/ln", "-s", &s(&vault), &s(&r)]);
    std::fs::write(vault.join("program.json"), "{}").unwrap();
    let out = d.operator(&service, &["score", &r_id]);
    std::fs::remove_file(vault.join("program.json")).unwrap();
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(text(&out).contains("replaced by a link"), "{}", text(&out));

    // 3. start into a folder that is a link to a root-only place, for the agent and as root.
    for owner in [true, false] {
        let evil = d.agent_dir.join(format!("evil-{owner}"));
        as_agent(&["/bin/ln", "-s", &s(&vault), &s(&evil)]);
        let mut args = vec!["start", "tree-traversal", "--profile", "tiny"];
        let evil_s = s(&evil);
        args.extend(["--dir", &evil_s]);
        if owner {
            args.extend(["--owner", AGENT_USER]);
        }
        let out = d.operator(&service, &args);
        assert_eq!(code(&out), Some(2), "{}", text(&out));
        assert_eq!(vault_listing(), vec!["precious".to_string()]);
    }

    // 4. Links planted at the starting files' names while `start` writes them: each start
    // either fails or writes real files; nothing is written through a link.
    let racer = format!(
        r#"
import os, time
end = time.time() + 4
while time.time() < end:
    for i in range(6):
        d = "{dir}/race-%d" % i
        for name in ("program.json", "INSTRUCTIONS.md", "params.json", "build_program.py"):
            try:
                os.symlink("{precious}", os.path.join(d, name))
            except OSError:
                pass
"#,
        dir = s(&d.agent_dir),
        precious = s(&precious)
    );
    let mut race = Command::new("python3")
        .args(["-c", &racer])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .uid(d.uid)
        .gid(d.gid)
        .spawn()
        .unwrap();
    for i in 0..6 {
        let dir = d.agent_dir.join(format!("race-{i}"));
        let dir_s = s(&dir);
        // As the agent (the owner) and as root (no owner): the two ways the client writes.
        for (dir, owner) in [
            (dir_s.clone(), Some(AGENT_USER)),
            (format!("{dir_s}-root"), None),
        ] {
            let mut args = vec![
                "start",
                "tree-traversal",
                "--profile",
                "tiny",
                "--dir",
                &dir,
            ];
            args.extend(owner.into_iter().flat_map(|o| ["--owner", o]));
            let _ = d.operator(&service, &args);
        }
    }
    let _ = race.wait();
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    assert_eq!(vault_listing(), vec!["precious".to_string()]);

    // 5. A hidden-score task: `info` shows the agent neither the reference's answer nor the
    // calibration's anchors; scoring answers "recorded"; only the platform finishes.
    let out = d.operator(&service, &["info", "scaling-law"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert!(text(&out).contains("answer is not shown"), "{}", text(&out));
    assert!(
        !text(&out).contains("max_iters ") && !text(&out).contains("n_embd "),
        "{}",
        text(&out)
    );
    for args in [
        vec!["info", "scaling-law"],
        vec!["--json", "info", "scaling-law"],
    ] {
        let out = d.client(&service, &args);
        seen.output("info scaling-law", &out);
        assert_eq!(code(&out), Some(0), "{}", text(&out));
        for hidden in ["Chinchilla", "0.8451", "sweeps/", "rmse"] {
            assert!(!text(&out).contains(hidden), "{hidden}: {}", text(&out));
        }
    }
    let sl = d.agent_dir.join("sl");
    let sl_id = d.start_for_agent(&service, "scaling-law", &sl);
    let out = d.client(&service, &["score", &s(&sl)]);
    seen.output("score scaling-law", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "recorded",
        "{}",
        text(&out)
    );
    let out = d.client(&service, &["--json", "log", &sl_id]);
    seen.output("log scaling-law", &out);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = log["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1);
    for field in ["raw", "normalized", "calibration", "headline"] {
        assert!(entries[0][field].is_null(), "{field}: {}", entries[0]);
    }
    let out = d.client(&service, &["--json", "status", &sl_id]);
    seen.output("status scaling-law", &out);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["score_hidden"], true, "{status}");
    assert!(status["best"].is_null(), "{status}");
    assert_eq!(status["valid_entries"], 1, "{status}");
    let out = d.client(&service, &["finish", &sl_id]);
    seen.output("agent's finish of scaling-law", &out);
    assert_eq!(code(&out), Some(2), "{}", text(&out));
    let out = d.operator(&service, &["--json", "finish", &sl_id]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let raw = summary["raw"]
        .as_f64()
        .expect("the platform sees the hidden raw score");
    // The hidden score, in every spelling a reply could use, is in nothing the agent saw.
    let spellings = [format!("{raw}"), format!("{raw:.4}"), format!("{raw:.3}")];
    let spellings: Vec<&str> = spellings.iter().map(String::as_str).collect();
    seen.assert_clean(&spellings);

    // 6. Terminal controls in what the agent submits reach the operator escaped.
    let tt = d.agent_dir.join("tt");
    let tt_id = d.start_for_agent(&service, "tree-traversal", &tt);
    d.write_as_agent(
        &tt.join("program.json"),
        br#"{"format": "\u001b]0;owned\u0007\u001b[2J", "bundles": []}"#,
    );
    let out = d.client(&service, &["score", &s(&tt)]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    for out in [
        out,
        d.operator(&service, &["log", &tt_id]),
        d.client(&service, &["log", &s(&tt)]),
    ] {
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "{}",
            text(&out)
        );
        assert!(!out.stdout.contains(&0x07), "{}", text(&out));
        assert!(text(&out).contains("owned"), "{}", text(&out));
    }

    // 6b. Sizes before reads: a 20 GiB sparse submission is refused on its size, at once.
    let sparse = s(&tt.join("program.json"));
    as_agent(&["/bin/rm", &sparse]);
    as_agent(&["/usr/bin/truncate", "-s", "20G", &sparse]);
    let started = Instant::now();
    let out = d.client(&service, &["--json", "score", &s(&tt)]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["kind"], "too_large", "{entry}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("21474836480 bytes"),
        "{entry}"
    );

    // 7. `serve` refuses to run from a binary other users can run or read.
    let public = d.root.join("public-rdbench");
    std::fs::copy(&d.bin, &public).unwrap();
    chmod(&public, 0o755);
    let out = Command::new(&public)
        .args(["--home", d.home.to_str().unwrap(), "serve", "--socket"])
        .arg(d.root.join("run").join("public.sock"))
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    assert!(text(&out).contains("0750"), "{}", text(&out));

    seen.assert_clean(&[CANARY, d.home.to_str().unwrap()]);
}
