//! One scoring run of one submission, end to end: cheap checks in this process, then the
//! task's `score` in a worker child process (its own CUDA context, its own process group)
//! under a time limit, with the NVML (or /proc) monitor sampling beside it.
//!
//! Whatever the worker does (wrong output, illegal address, segfault, hang) the caller gets a
//! [`JobResult`] to log; only environment problems (no GPU) come back as errors.
//!
//! The protocol leaves nothing at a predictable path: the request (with a fresh random token)
//! goes to the worker's stdin, the result comes back on an inherited pipe (descriptor 3) and is
//! accepted only from a worker that exited normally, as one JSON document carrying the token.
//! The worker makes itself non-dumpable first thing, so other processes of the same user can
//! neither read its memory (the token, the seed) nor write into its descriptors through /proc.

use std::path::PathBuf;
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

/// What the worker writes to its result pipe.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerResult {
    Outcome { outcome: ScoreOutcome },
    Environment { message: String },
    Failed { message: String },
}

/// What the parent sends on the worker's stdin.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// Echoed in the reply: a result without it was not written by this worker.
    pub token: String,
    pub request: ScoreRequest,
}

/// What the worker writes on descriptor [`RESULT_FD`].
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReply {
    pub token: String,
    pub result: WorkerResult,
}

/// The descriptor the worker writes its reply to.
pub const RESULT_FD: i32 = 3;
/// Largest reply accepted (an outcome with its details is a few kilobytes).
const MAX_REPLY_BYTES: u64 = 8 << 20;

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
fn worker_command(task: &str) -> Result<tokio::process::Command> {
    #[cfg(test)]
    if let Some(script) = tests::FAKE_WORKER.with(|w| w.borrow().clone()) {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(script).arg("worker");
        return Ok(cmd);
    }
    let exe =
        std::env::current_exe().map_err(|e| Error::Internal(format!("locating rdbench: {e}")))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("__worker").arg("--task").arg(task);
    Ok(cmd)
}

/// A pipe for the worker's reply: (read end, write end); both close on exec, and the child
/// gets its own copy of the write end as [`RESULT_FD`] (see [`pass_result_fd`]).
fn result_pipe() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Internal(format!(
            "creating the result pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Gives the child the write end of the result pipe as descriptor [`RESULT_FD`].
fn pass_result_fd(cmd: &mut tokio::process::Command, write_end: i32) {
    // SAFETY: runs in the forked child before exec and calls only dup2 or fcntl, which are
    // async-signal-safe; dup2 clears close-on-exec on the new descriptor.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear the flag instead.
            let rc = if write_end == RESULT_FD {
                libc::fcntl(RESULT_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(write_end, RESULT_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
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
        use std::os::fd::AsRawFd;
        let dir = self.request.private_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let token = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let mut request = serde_json::to_vec(&WorkerRequest {
            token: token.clone(),
            request: self.request.clone(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        request.push(b'\n');
        let (read_end, write_end) = result_pipe()?;

        let mut cmd = worker_command(&self.task.info().name)?;
        pass_result_fd(&mut cmd, write_end.as_raw_fd());
        // A working directory of no value: nothing relative resolves to the caller's files.
        cmd.current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Own process group, so a timeout kills everything the worker started.
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("starting the scoring worker: {e}")))?;
        // Only the child holds the write end now, so its exit ends the reply.
        drop(write_end);
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // A worker that dies before reading is reported by its exit status.
            let _ = stdin.write_all(&request).await;
        });
        let reply = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut bytes = Vec::new();
            let mut file = std::fs::File::from(read_end).take(MAX_REPLY_BYTES + 1);
            let _ = file.read_to_end(&mut bytes);
            bytes
        });
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
        feed.abort();
        let reply = tokio::time::timeout(Duration::from_secs(5), reply)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        // Accepted only from a worker that exited by itself, whole, and with our token.
        let exited_normally = status.is_some_and(|s| {
            matches!(s.code(), Some(c) if c == ExitCode::Scored as i32 || c == ExitCode::Environment as i32)
        });
        let result = (exited_normally && reply.len() as u64 <= MAX_REPLY_BYTES)
            .then(|| serde_json::from_slice::<WorkerReply>(&reply).ok())
            .flatten()
            .filter(|r| r.token == token)
            .map(|r| r.result);
        let outcome = match (timed_out, result, status) {
            (true, _, _) => ScoreOutcome::invalid(InvalidKind::Timeout, format!(
                "scoring exceeded the time limit of {} s (a hang or a far too slow solution); the worker was killed",
                self.timeout.as_secs()
            )),
            (false, Some(WorkerResult::Outcome { outcome }), _) => outcome,
            (false, Some(WorkerResult::Environment { message }), _) => return Err(Error::Environment(message)),
            (false, Some(WorkerResult::Failed { message }), _) => {
                return Err(Error::Internal(format!("the scorer failed: {message}")))
            }
            (false, None, status) if exited_normally => ScoreOutcome::invalid(
                InvalidKind::Crash,
                format!(
                    "the scoring worker exited (code {}) without one well-formed result carrying its request's token",
                    status.and_then(|s| s.code()).unwrap_or(-1)
                ),
            ),
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

/// The worker side: reads the request from stdin, runs `task.score` and writes the reply to
/// [`RESULT_FD`]. Returns the exit code.
pub fn worker_main(task: &dyn Task) -> i32 {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    // First: no other process of this user may read this one's memory or open its
    // descriptors through /proc (exec reset the flag).
    // SAFETY: plain prctl call.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut input);
    let (token, result) = match read
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice::<WorkerRequest>(&input).map_err(|e| e.to_string()))
    {
        Err(e) => (
            String::new(),
            WorkerResult::Failed {
                message: format!("the worker's request: {e}"),
            },
        ),
        Ok(WorkerRequest { token, request }) => (
            token,
            match task.score(&request) {
                Ok(outcome) => WorkerResult::Outcome { outcome },
                Err(Error::Environment(message)) => WorkerResult::Environment { message },
                Err(e) => WorkerResult::Failed {
                    message: e.to_string(),
                },
            },
        ),
    };
    // The parent reads the result, not the exit code; the code only keeps to the documented
    // contract: 0 an outcome was reported, 3 anything else (environment or the kit failing).
    let code = match &result {
        WorkerResult::Outcome { .. } => ExitCode::Scored,
        WorkerResult::Environment { .. } | WorkerResult::Failed { .. } => ExitCode::Environment,
    };
    match serde_json::to_vec(&WorkerReply { token, result }) {
        Ok(bytes) => {
            // SAFETY: the parent passed the pipe's write end as RESULT_FD; nothing else in
            // this process uses that descriptor.
            let mut pipe = unsafe { std::fs::File::from_raw_fd(RESULT_FD) };
            if let Err(e) = pipe.write_all(&bytes) {
                eprintln!("rdbench worker: writing the result: {e}");
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
    use std::path::Path;

    use rdbench_core::task::{PrepareRequest, Solution, TaskInfo};

    use super::*;

    thread_local! {
        /// A shell script run as the worker instead of `rdbench __worker`: the request is on
        /// its stdin, the reply goes to descriptor 3.
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

    /// A fake worker that replies `result` (JSON) on descriptor 3 with the request's token,
    /// then runs `after`.
    fn replying(result: &str, after: &str) -> String {
        format!(
            r#"token=$(head -c 60 | sed -n 's/.*"token":"\([0-9a-f]*\)".*/\1/p'); printf '{{"token":"%s","result":%s}}' "$token" '{result}' >&3; {after}"#
        )
    }

    #[test]
    fn the_reply_on_the_pipe_is_the_outcome() {
        let script = replying(
            r#"{"kind":"outcome","outcome":{"status":"valid","raw":0.25,"details":null}}"#,
            "exit 0",
        );
        let (result, _dir) = run_with(&script, Duration::from_secs(30));
        match result.outcome {
            ScoreOutcome::Valid { raw, .. } => assert_eq!(raw, 0.25),
            other => panic!("{other:?}"),
        }
        let env = replying(r#"{"kind":"environment","message":"no GPU"}"#, "exit 3");
        let (result, _dir) = try_run_with(&env, Duration::from_secs(30));
        assert!(matches!(result, Err(Error::Environment(m)) if m == "no GPU"));
        // Nothing is left at a path another process could have written to.
        let dir = tempfile::tempdir().unwrap();
        FAKE_WORKER.with(|w| *w.borrow_mut() = Some(script.clone()));
        let _ = job(dir.path(), Duration::from_secs(30)).run();
        FAKE_WORKER.with(|w| *w.borrow_mut() = None);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("private"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }

    #[test]
    fn forged_or_unfinished_replies_are_not_accepted() {
        let valid = r#"{"kind":"outcome","outcome":{"status":"valid","raw":-9.0,"details":null}}"#;
        // The right shape without the request's token: not this worker's reply.
        let forged = format!(r#"printf '{{"token":"0000","result":%s}}' '{valid}' >&3"#);
        let (result, _dir) = run_with(&forged, Duration::from_secs(30));
        assert_eq!(
            result.outcome.invalid_kind(),
            Some(InvalidKind::Crash),
            "{:?}",
            result.outcome
        );
        // A genuine reply from a worker that was then killed: it did not exit normally.
        let killed = replying(valid, "kill -KILL $$");
        let (result, _dir) = run_with(&killed, Duration::from_secs(30));
        assert_eq!(
            result.outcome.invalid_kind(),
            Some(InvalidKind::Crash),
            "{:?}",
            result.outcome
        );
        // A reply followed by more bytes is not one document.
        let doubled = replying(valid, "printf 'x' >&3; exit 0");
        let (result, _dir) = run_with(&doubled, Duration::from_secs(30));
        assert_eq!(
            result.outcome.invalid_kind(),
            Some(InvalidKind::Crash),
            "{:?}",
            result.outcome
        );
    }
}
