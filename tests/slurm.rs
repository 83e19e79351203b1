//! `fanout slurm` on a real Slurm: a one-node cluster (this host) started by the test, with
//! its own munge key, state and spool folders in a temporary folder and ports nobody uses,
//! runs the array script of four tree-traversal submissions (CPU only: no GPU gres), and
//! `aggregate` reads the results. Needs root and Debian's `slurm-wlm` and `munge` (CI installs
//! them: scripts/test.sh); elsewhere it says "skipped" in one line, except under `CI=true`.
//!
//! The daemons run in the foreground as children, each in its own process group, killed at
//! the end (also when the test fails); the test then checks that no process of this cluster
//! is left (every one carries its `SLURM_CONF` in its environment).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fanout::Jobs;
use super::{text, Env};

/// How long the array may take, from submission to the last result.
const ARRAY_DEADLINE: Duration = Duration::from_secs(240);

/// What the test needs, or why it cannot run here.
fn missing() -> Option<String> {
    // SAFETY: geteuid only reads this process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (slurmd runs the jobs as root here)".into());
    }
    let absent: Vec<&str> = ["slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo"]
        .into_iter()
        .filter(|p| which(p).is_none())
        .collect();
    (!absent.is_empty()).then(|| format!("{} not installed (slurm-wlm, munge)", absent.join(", ")))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A free TCP port on this host (bound, then released for the daemon).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-node cluster; its daemons die with it.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        // `hostname -s`: the node's name as slurmd finds it.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim().split('.').next().unwrap().to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // Its own munge key: a system munged (if any) is left alone.
        let key = dir.join("munge/munge.key");
        let mut bytes = [0u8; 1024];
        getrandom(&mut bytes);
        std::fs::write(&key, bytes).unwrap();
        set_mode(&key, 0o400);
        set_mode(&dir.join("munge"), 0o700);
        let socket = dir.join("munge/munge.socket");
        let conf = dir.join("slurm.conf");
        let d = |p: &str| dir.join(p).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=rdbenchtest\n\
                 SlurmctldHost={host}(127.0.0.1)\n\
                 SlurmctldPort={ctld}\n\
                 SlurmdPort={slurmd}\n\
                 SlurmUser=root\n\
                 SlurmdUser=root\n\
                 AuthType=auth/munge\n\
                 CredType=cred/munge\n\
                 AuthInfo=socket={socket}\n\
                 StateSaveLocation={state}\n\
                 SlurmdSpoolDir={spool}\n\
                 SlurmctldPidFile={log}/slurmctld.pid\n\
                 SlurmdPidFile={log}/slurmd.pid\n\
                 SlurmctldLogFile={log}/slurmctld.log\n\
                 SlurmdLogFile={log}/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\n\
                 SelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_CPU\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\n\
                 MpiDefault=none\n\
                 ReturnToService=2\n\
                 MailProg=/bin/true\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                ctld = free_port(),
                slurmd = free_port(),
                socket = socket.display(),
                state = d("state"),
                spool = d("spool"),
                log = d("log"),
            ),
        )
        .unwrap();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            conf,
            daemons: Vec::new(),
        };
        let munge_args = [
            "--foreground".to_string(),
            "--force".into(),
            format!("--key-file={}", key.display()),
            format!("--socket={}", socket.display()),
            format!("--pid-file={}", d("munge/munged.pid")),
            format!("--log-file={}", d("munge/munged.log")),
            format!("--seed-file={}", d("munge/munged.seed")),
        ];
        cluster.spawn("munged", &munge_args);
        wait_for(Duration::from_secs(20), "munged's socket", || {
            socket.exists()
        });
        cluster.spawn("slurmctld", &["-D".into(), "-c".into(), "-i".into()]);
        cluster.spawn("slurmd", &["-D".into(), "-N".into(), host.clone()]);
        wait_for(Duration::from_secs(60), "the node to be idle", || {
            let out = cluster.tool("sinfo").args(["-h", "-o", "%T"]).output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        cluster
    }

    /// A daemon in its own process group, logging into `log/`.
    fn spawn(&mut self, name: &'static str, args: &[String]) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join("log").join(format!("{name}.out"))).unwrap();
        let child = self
            .tool(name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        self.daemons.push((name, child));
        if let Some((_, child)) = self.daemons.last_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited at once: {status}\n{}", self.logs());
            }
        }
    }

    /// A Slurm (or munge) program for this cluster.
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(which(name).unwrap_or_else(|| name.into()));
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// The daemons' logs, for a failure's message.
    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.join("log")).unwrap().flatten() {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(15).collect();
            all.push_str(&format!("== {}\n", entry.path().display()));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// Processes of this cluster (its `SLURM_CONF` in their environment), but this test's.
    fn processes(&self) -> Vec<u32> {
        let needle = format!("SLURM_CONF={}", self.conf.display());
        let me = std::process::id();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if pid != me && env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                found.push(pid);
            }
        }
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Reverse order: slurmd, slurmctld, then munged, which they authenticate with.
        for (_, child) in self.daemons.iter_mut().rev() {
            let group = -(child.id() as i32);
            // SAFETY: signals this daemon's own process group, made for it at spawn.
            unsafe { libc::kill(group, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; whatever is left of the group.
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn getrandom(bytes: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(bytes)
        .unwrap();
}

fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_slurm_array_scores_a_manifest_and_aggregate_reports_it() {
    if let Some(why) = missing() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs the Slurm test (scripts/test.sh installs slurm-wlm and munge): {why}"
        );
        eprintln!("skipped: the Slurm test: {why}");
        return;
    }
    let env = Env::new();
    let jobs = Jobs::new(&env);
    let script = env.work.path().join("array.sh");
    let out = jobs.fanout(
        &env,
        "slurm",
        &[
            "--max-running",
            "2",
            "--time",
            "5",
            "--out",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let body = std::fs::read_to_string(&script).unwrap();
    assert!(body.contains("#SBATCH --array=0-3%2\n"), "{body}");
    assert!(
        !body.contains("gres"),
        "a CPU-only manifest asks for no GPU: {body}"
    );

    let slurm = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let cluster = Cluster::start(slurm.path());
    eprintln!(
        "slurm: cluster up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let submitted = Instant::now();
    // The job inherits this environment (sbatch's --export=ALL): the test's home.
    let out = env
        .program(&which("sbatch").unwrap())
        .env("SLURM_CONF", &cluster.conf)
        .args(["--parsable", script.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        cluster.logs()
    );
    let array = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let done = || {
        let queued = cluster.tool("squeue").args(["-h", "-j", &array]).output();
        queued.is_ok_and(|o| o.status.success() && o.stdout.is_empty())
    };
    let deadline = submitted + ARRAY_DEADLINE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "array {array} not done in {ARRAY_DEADLINE:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "slurm: array of 4 done in {:.1} s",
        submitted.elapsed().as_secs_f64()
    );
    for i in 0..4 {
        assert!(
            jobs.results.join(format!("{i}.json")).exists(),
            "no result {i}; job logs:\n{}\n{}",
            job_logs(&jobs.results),
            cluster.logs()
        );
    }
    jobs.check_results_and_aggregate(&env);

    // Idempotent: scoring index 1 again reports the sealed result and scores nothing.
    let before = std::fs::read(jobs.results.join("1.json")).unwrap();
    let out = jobs.score_job(&env, 1);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("already scored, not scored again"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(jobs.results.join("1.json")).unwrap(), before);
    assert_eq!(jobs.result(1)["entries"], 1, "the log shows one entry");

    let processes = cluster.processes();
    assert!(
        processes.len() >= 3,
        "the daemons were found: {processes:?}"
    );
    drop(cluster);
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = Cluster {
        dir: slurm.path().to_path_buf(),
        conf: slurm.path().join("slurm.conf"),
        daemons: Vec::new(),
    };
    while !probe.processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        probe.processes(),
        Vec::<u32>::new(),
        "nothing of the cluster is left"
    );
}

/// Each array element's own log (`slurm-<array>_<index>.out` in the results folder).
fn job_logs(results: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(results).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("slurm-") {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            all.push_str(&format!("== {name}\n{body}\n"));
        }
    }
    all
}
