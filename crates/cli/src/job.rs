//! One scoring run of one submission, end to end: cheap checks in this process, then the
//! task's `score` in a worker child process (its own CUDA context, its own process group)
//! under a time limit, with the NVML (or /proc) monitor sampling beside it.
//!
//! Whatever the worker does (wrong output, illegal address, segfault, hang) the caller gets a
//! [`JobResult`] to log; only environment problems (no GPU) come back as errors.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdbench_core::outcome::InvalidKind;
use rdbench_core::task::{ScoreOutcome, ScoreRequest, Task};
use rdbench_core::ExitCode;
use rdbench_core::{Error, Result};
use rdbench_gpu::monitor::{self, MonitorConfig, MonitorSummary};
use serde::{Deserialize, Serialize};
use std::io::Write;

use tokio::io::{AsyncBufReadExt, BufReader};

/// What the worker writes to its result file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerResult {
    Outcome { outcome: ScoreOutcome },
    Environment { message: String },
    Failed { message: String },
}

/// Everything one scoring run needs.
pub struct Job<'a> {
    pub task: &'a dyn Task,
    pub request: ScoreRequest,
    /// Where the monitor writes its timeline.
    pub timeline_path: PathBuf,
    pub timeout: Duration,
    /// Held while the worker runs, so that scoring runs sharing a GPU never overlap and
    /// disturb each other's timings (concurrent `score` calls queue here).
    pub device_lock: Option<PathBuf>,
}

/// The worker command line (`rdbench __worker ...`); tests substitute a misbehaving one.
fn worker_command(task: &str, request: &Path, result: &Path) -> Result<tokio::process::Command> {
    #[cfg(test)]
    if let Some(script) = tests::FAKE_WORKER.with(|w| w.borrow().clone()) {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(script).arg("worker").arg(result);
        return Ok(cmd);
    }
    let exe =
        std::env::current_exe().map_err(|e| Error::Internal(format!("locating rdbench: {e}")))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("__worker")
        .arg("--task")
        .arg(task)
        .arg("--request")
        .arg(request)
        .arg("--result")
        .arg(result);
    Ok(cmd)
}

/// Makes the worker die when this process dies, however it dies (a SIGKILL from an evaluation
/// platform's timeout included): in its own process group it would otherwise go on scoring,
/// holding the device and writing into an attempt nobody supervises.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: runs in the forked child before exec and calls only async-signal-safe
        // syscalls (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                // The signal follows the thread that forked; `supervise` forks from the thread
                // that blocks on it, which outlives the worker.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(137);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// What one scoring run produced.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub outcome: ScoreOutcome,
    pub wall_s: f64,
    pub monitor: Option<MonitorSummary>,
    /// Whether the worker ran (false when the precheck already rejected the submission).
    pub ran_worker: bool,
}

impl JobResult {
    /// A submission rejected before any worker ran.
    pub fn rejected(kind: InvalidKind, reason: String, start: Instant) -> Self {
        JobResult {
            outcome: ScoreOutcome::invalid(kind, reason),
            wall_s: start.elapsed().as_secs_f64(),
            monitor: None,
            ran_worker: false,
        }
    }
}

/// Lines of the worker's stderr kept for crash reports.
const STDERR_TAIL: usize = 40;

impl Job<'_> {
    /// Runs the precheck, the environment check and the worker.
    pub fn run(&self) -> Result<JobResult> {
        let start = Instant::now();
        if let Some((kind, reason)) = self.task.precheck(&self.request)? {
            return Ok(JobResult::rejected(kind, reason, start));
        }
        self.run_checked()
    }

    /// The environment check and the worker (after a passed precheck).
    pub fn run_checked(&self) -> Result<JobResult> {
        let start = Instant::now();
        self.task
            .check_environment(&self.request.profile, self.request.backend)?;
        let _lock = match &self.device_lock {
            Some(path) => Some(rdbench_core::fsutil::lock_exclusive(path)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("tokio runtime: {e}")))?;
        let (outcome, monitor) = runtime.block_on(self.supervise())?;
        Ok(JobResult {
            outcome,
            wall_s: start.elapsed().as_secs_f64(),
            monitor,
            ran_worker: true,
        })
    }

    async fn supervise(&self) -> Result<(ScoreOutcome, Option<MonitorSummary>)> {
        let dir = self.request.private_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let request_path = dir.join(format!("request-{}.json", std::process::id()));
        let result_path = dir.join(format!("result-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&result_path);
        let request =
            serde_json::to_vec(&self.request).map_err(|e| Error::Internal(e.to_string()))?;
        rdbench_core::fsutil::atomic_write(&request_path, &request)?;

        let mut cmd = worker_command(&self.task.info().name, &request_path, &result_path)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Own process group, so a timeout kills everything the worker started.
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("starting the scoring worker: {e}")))?;
        let pid = child.id();
        let monitor = monitor::start(
            MonitorConfig {
                interval: Duration::from_millis(100),
                gpu_indices: scored_gpu(),
                pids: pid.map(|p| vec![p]),
            },
            &self.timeline_path,
        );
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail = tokio::spawn(async move {
            // Drain until EOF whatever the bytes are: a reader that stopped early would leave
            // the worker writing into a closed pipe and crashing on EPIPE.
            let mut reader = BufReader::new(stderr);
            let mut tail: Vec<String> = Vec::new();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end()
                            .chars()
                            .take(2000)
                            .collect::<String>();
                        let _ = writeln!(std::io::stderr(), "  [worker] {line}");
                        tail.push(line);
                        if tail.len() > STDERR_TAIL {
                            tail.remove(0);
                        }
                    }
                }
            }
            tail
        });
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let timed_out = waited.is_err();
        if timed_out {
            if let Some(pid) = pid {
                // SAFETY: plain syscall on the worker's process group id (= its pid).
                unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
            }
            let _ = child.kill().await;
        }
        let status = match waited {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                return Err(Error::Internal(format!(
                    "waiting for the scoring worker: {e}"
                )))
            }
            Err(_) => None,
        };
        let tail = tokio::time::timeout(Duration::from_secs(5), tail)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let summary = match monitor {
            Ok(handle) => handle.stop().ok(),
            Err(e) => {
                tracing::warn!("monitor not started: {e}");
                None
            }
        };
        let _ = std::fs::remove_file(&request_path);
        let result = std::fs::read(&result_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<WorkerResult>(&b).ok());
        let _ = std::fs::remove_file(&result_path);
        let outcome = match (timed_out, result, status) {
            // A worker that reported and then hung in teardown still reported.
            (true, Some(WorkerResult::Outcome { outcome }), _) => outcome,
            (true, _, _) => ScoreOutcome::invalid(InvalidKind::Timeout, format!(
                "scoring exceeded the time limit of {} s (a hang or a far too slow solution); the worker was killed",
                self.timeout.as_secs()
            )),
            (false, Some(WorkerResult::Outcome { outcome }), _) => outcome,
            (false, Some(WorkerResult::Environment { message }), _) => return Err(Error::Environment(message)),
            (false, Some(WorkerResult::Failed { message }), _) => {
                return Err(Error::Internal(format!("the scorer failed: {message}")))
            }
            (false, None, status) => {
                ScoreOutcome::invalid(InvalidKind::Crash, crash_reason(status, &tail))
            }
        };
        Ok((outcome, summary))
    }
}

/// The NVML index of the GPU the worker scores on (CUDA device 0), so that a multi-GPU node's
/// other GPUs do not enter the entry's energy and busy time; `None` (all GPUs) if unknown.
fn scored_gpu() -> Option<Vec<u32>> {
    let bus = rdbench_gpu::device::describe(0).ok()?.pci_bus_id?;
    Some(vec![
        rdbench_gpu::monitor::ClockReader::open_pci(&bus)?.index()
    ])
}

fn crash_reason(status: Option<std::process::ExitStatus>, tail: &[String]) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Some(s) if s.signal().is_some() => {
            format!("killed by signal {}", s.signal().unwrap_or_default())
        }
        Some(s) => format!("exited with code {}", s.code().unwrap_or(-1)),
        None => "vanished".into(),
    };
    let last: Vec<&str> = tail
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    if last.is_empty() {
        format!("the scoring worker crashed ({how}) before reporting a result")
    } else {
        format!(
            "the scoring worker crashed ({how}) before reporting a result; its last output: {}",
            last.join(" | ")
        )
    }
}

/// The worker side: runs `task.score` and writes the result file. Returns the exit code.
pub fn worker_main(task: &dyn Task, request_path: &Path, result_path: &Path) -> i32 {
    let result = match std::fs::read(request_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<ScoreRequest>(&b).map_err(|e| e.to_string()))
    {
        Err(e) => WorkerResult::Failed {
            message: format!("{}: {e}", request_path.display()),
        },
        Ok(req) => match task.score(&req) {
            Ok(outcome) => WorkerResult::Outcome { outcome },
            Err(Error::Environment(message)) => WorkerResult::Environment { message },
            Err(e) => WorkerResult::Failed {
                message: e.to_string(),
            },
        },
    };
    // The parent reads the result, not the exit code; the code only keeps to the documented
    // contract: 0 an outcome was reported, 3 anything else (environment or the kit failing).
    let code = match &result {
        WorkerResult::Outcome { .. } => ExitCode::Scored,
        WorkerResult::Environment { .. } | WorkerResult::Failed { .. } => ExitCode::Environment,
    };
    match serde_json::to_vec(&result) {
        Ok(bytes) => {
            if let Err(e) = rdbench_core::fsutil::atomic_write(result_path, &bytes) {
                eprintln!("rdbench worker: {e}");
                return ExitCode::Environment as i32;
            }
        }
        Err(e) => {
            eprintln!("rdbench worker: {e}");
            return ExitCode::Environment as i32;
        }
    }
    code as i32
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use rdbench_core::task::{PrepareRequest, Solution, TaskInfo};

    use super::*;

    thread_local! {
        /// A shell script run as the worker (`$1` is the result file), instead of `rdbench __worker`.
        pub static FAKE_WORKER: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// A task whose checks all pass, so the (fake) worker always runs.
    struct Passing;

    impl Task for Passing {
        fn info(&self) -> TaskInfo {
            crate::registry::find("prefix-sum").unwrap().info()
        }
        fn prepare(&self, _: &PrepareRequest) -> Result<()> {
            Ok(())
        }
        fn install_solution(&self, _: Solution, _: &str, _: &Path, _: &Path) -> Result<()> {
            Ok(())
        }
        fn precheck(&self, _: &ScoreRequest) -> Result<Option<(InvalidKind, String)>> {
            Ok(None)
        }
        fn check_environment(&self, _: &str, _: rdbench_core::task::Backend) -> Result<()> {
            Ok(())
        }
        fn score(&self, _: &ScoreRequest) -> Result<ScoreOutcome> {
            unreachable!("scored by the fake worker")
        }
    }

    /// A job of the always-passing task with everything under `dir`.
    fn job(dir: &Path, timeout: Duration) -> Job<'static> {
        Job {
            task: &Passing,
            request: ScoreRequest {
                profile: "tiny".into(),
                submission_dir: dir.into(),
                private_dir: dir.join("private"),
                cache_dir: dir.join("cache"),
                samples_path: dir.join("samples.json"),
                seed: 1,
                backend: Default::default(),
            },
            timeline_path: dir.join("timeline.jsonl"),
            timeout,
            device_lock: Some(dir.join("gpu")),
        }
    }

    /// Runs `script` as the worker of a job; the job's own error, if any, is returned as is.
    fn try_run_with(script: &str, timeout: Duration) -> (Result<JobResult>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        FAKE_WORKER.with(|w| *w.borrow_mut() = Some(script.to_string()));
        let result = job(dir.path(), timeout).run();
        FAKE_WORKER.with(|w| *w.borrow_mut() = None);
        (result, dir)
    }

    fn run_with(script: &str, timeout: Duration) -> (JobResult, tempfile::TempDir) {
        let (result, dir) = try_run_with(script, timeout);
        (result.unwrap(), dir)
    }

    fn reason(r: &JobResult) -> String {
        match &r.outcome {
            ScoreOutcome::Invalid { reason, .. } => reason.clone(),
            other => panic!("expected an invalid outcome, got {other:?}"),
        }
    }

    #[test]
    fn a_hanging_worker_and_its_children_are_killed_at_the_time_limit() {
        let marker = tempfile::tempdir().unwrap();
        let pidfile = marker.path().join("grandchild.pid");
        // The worker starts a grandchild in its process group, then hangs.
        let script = format!("sleep 60 & echo $! > {}; sleep 60", pidfile.display());
        let started = Instant::now();
        let (result, _dir) = run_with(&script, Duration::from_secs(1));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed promptly"
        );
        assert!(
            reason(&result).contains("time limit"),
            "{}",
            reason(&result)
        );
        assert_eq!(result.outcome.invalid_kind(), Some(InvalidKind::Timeout));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid);
        assert!(
            !alive,
            "the grandchild {pid} was killed with the process group"
        );
        assert!(
            result.monitor.is_some(),
            "the monitor ran beside the worker"
        );
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }

    #[test]
    fn a_crashing_worker_is_an_invalid_entry_with_its_last_words() {
        let (result, _dir) = run_with(
            "echo 'about to fail' >&2; kill -SEGV $$",
            Duration::from_secs(30),
        );
        let r = reason(&result);
        assert!(
            r.contains("signal 11") && r.contains("about to fail"),
            "{r}"
        );
        assert_eq!(result.outcome.invalid_kind(), Some(InvalidKind::Crash));
    }

    #[test]
    fn a_worker_result_file_is_the_outcome() {
        let script = r#"printf '%s' '{"kind":"outcome","outcome":{"status":"valid","raw":0.25,"details":null}}' > "$1""#;
        let (result, _dir) = run_with(script, Duration::from_secs(30));
        match result.outcome {
            ScoreOutcome::Valid { raw, .. } => assert_eq!(raw, 0.25),
            other => panic!("{other:?}"),
        }
        let env = r#"printf '%s' '{"kind":"environment","message":"no GPU"}' > "$1""#;
        let (result, _dir) = try_run_with(env, Duration::from_secs(30));
        assert!(matches!(result, Err(Error::Environment(m)) if m == "no GPU"));
    }
}
