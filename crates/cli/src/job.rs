//! One scoring run of one submission, end to end: cheap checks in this process, then the
//! task's `score` in a worker child process (its own CUDA context) under a time limit, with the
//! NVML (or /proc) monitor sampling beside it. And one call of a task's experiment tool
//! ([`ToolJob`]), which runs in the same worker under the limits the task declares for it
//! ([`ToolSpec`]): never inside the calling process, so a tool that hangs, crashes or
//! allocates without end costs one refused call, never the service.
//!
//! Whatever the worker does (wrong output, illegal address, segfault, hang) the caller gets a
//! [`JobResult`] to log; only environment problems (no GPU) come back as errors.
//!
//! The worker runs through `rdbench-runner`: its lifecycle (own process group and PID
//! namespace, parent-death signal, the deadline killing everything it started, `setsid`
//! descendants included) and the worker protocol (the request with a fresh random token on
//! stdin, the reply on an inherited pipe, accepted only from a worker that exited normally,
//! as one document carrying the token; the worker non-dumpable) are that crate's, described
//! there. This file says what a scoring run makes of them. The monitor follows the worker's
//! whole process tree (`Watched::TreeOf`, found again at each sample), so the NVRTC child and
//! anything else the worker starts count in its memory and GPU use.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdbench_core::outcome::InvalidKind;
use rdbench_core::task::{ScoreOutcome, ScoreRequest, Task, ToolReply, ToolRequest, ToolSpec};
use rdbench_core::ExitCode;
use rdbench_core::{Error, Result};
use rdbench_gpu::monitor::{self, MonitorConfig, MonitorSummary};
use rdbench_runner::worker::{self, Refusal};
use rdbench_runner::{Command, Exit, Limit, Limits, Output};
use serde::{Deserialize, Serialize};

/// What the worker is asked to do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerRequest {
    Score(ScoreRequest),
    Tool(ToolRequest),
}

/// What the worker replies.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerResult {
    Outcome {
        outcome: ScoreOutcome,
    },
    Tool {
        reply: ToolReply,
    },
    /// The tool refused its arguments (the caller's mistake, worded for the caller).
    Usage {
        message: String,
    },
    Environment {
        message: String,
    },
    Failed {
        message: String,
    },
}

/// Largest reply accepted (an outcome with its details is a few kilobytes).
const MAX_REPLY_BYTES: usize = 8 << 20;
/// Bytes of the worker's stderr kept for crash reports.
const STDERR_TAIL_BYTES: usize = 64 << 10;
/// Lines of that tail quoted in a crash reason.
const CRASH_LINES: usize = 5;
/// The worker's exit codes that go with a reply: 0 an outcome or a tool's result was reported,
/// 2 a tool refused its arguments, 3 anything else (environment or the kit failing).
const REPLY_CODES: [i32; 3] = [
    ExitCode::Scored as i32,
    ExitCode::Usage as i32,
    ExitCode::Environment as i32,
];

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

/// The worker command line: `rdbench __worker --task T`, run as `/proc/self/exe`, the very
/// binary this process runs: not whatever a path names by the time the worker starts (a
/// rebuilt or upgraded binary replaces the file under a running service).
fn worker_command(task: &str) -> Result<Command<'static>> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("__worker").arg("--task").arg(task);
    Ok(cmd)
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
        self.run_checked_with(|| worker_command(&self.task.info().name))
    }

    /// As [`Self::run_checked`] with the worker command `worker` makes (the tests give a
    /// misbehaving one).
    fn run_checked_with(
        &self,
        worker: impl FnOnce() -> Result<Command<'static>>,
    ) -> Result<JobResult> {
        let start = Instant::now();
        self.task
            .check_environment(&self.request.profile, self.request.execution)?;
        let _lock = match &self.device_lock {
            Some(path) => Some(rdbench_core::fsutil::lock_exclusive(path)?),
            None => None,
        };
        let (outcome, monitor) = self.supervise(worker()?)?;
        Ok(JobResult {
            outcome,
            wall_s: start.elapsed().as_secs_f64(),
            monitor,
            ran_worker: true,
        })
    }

    fn supervise(&self, mut cmd: Command<'_>) -> Result<(ScoreOutcome, Option<MonitorSummary>)> {
        let dir = self.request.private_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // A working directory of no value: nothing relative resolves to the caller's files.
        cmd.current_dir(&dir)
            .stdout(Output::Null)
            .stderr(Output::Capture {
                tail: STDERR_TAIL_BYTES,
            })
            .on_stderr_line(|line| eprintln!("  [worker] {}", printable_line(line)))
            .deadline(self.timeout);
        let request = WorkerRequest::Score(self.request.clone());
        let pending = worker::start(&mut cmd, &request, MAX_REPLY_BYTES)
            .map_err(|e| Error::Internal(format!("starting the scoring worker: {e}")))?;
        let monitor = monitor::start(
            MonitorConfig {
                interval: Duration::from_millis(100),
                gpu_indices: scored_gpu(),
                processes: Some(monitor::Watched::TreeOf {
                    root: pending.child().pid(),
                }),
            },
            &self.timeline_path,
        );
        let call = pending.finish::<WorkerResult>(&REPLY_CODES);
        let summary = match monitor {
            Ok(handle) => handle.stop().ok(),
            Err(e) => {
                tracing::warn!("monitor not started: {e}");
                None
            }
        };
        let call =
            call.map_err(|e| Error::Internal(format!("waiting for the scoring worker: {e}")))?;
        if let rdbench_runner::Containment::ProcessGroup { why } = &call.outcome.containment {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "scoring workers run in a process group only ({why}): a descendant that leaves it outlives the run"
                )
            });
        }
        if call.outcome.leaked {
            tracing::warn!(
                "the scoring worker left a descendant outside its process group holding its output"
            );
        }
        let outcome = match (call.outcome.exit, call.reply) {
            (Exit::TimedOut, _) => ScoreOutcome::invalid(InvalidKind::Timeout, format!(
                "scoring exceeded the time limit of {} s (a hang or a far too slow solution); the worker was killed",
                self.timeout.as_secs()
            )),
            (_, Ok(WorkerResult::Outcome { outcome })) => outcome,
            (_, Ok(WorkerResult::Environment { message })) => return Err(Error::Environment(message)),
            (_, Ok(WorkerResult::Failed { message })) => {
                return Err(Error::Internal(format!("the scorer failed: {message}")))
            }
            (_, Ok(WorkerResult::Tool { .. } | WorkerResult::Usage { .. })) => {
                return Err(Error::Internal(
                    "the scoring worker answered as a tool".into(),
                ))
            }
            // It exited by itself with a reply code, but no reply of its own came with it.
            (Exit::Exited(code), Err(_)) if REPLY_CODES.contains(&code) => ScoreOutcome::invalid(
                InvalidKind::Crash,
                format!(
                    "the scoring worker exited (code {code}) without one well-formed result carrying its request's token"
                ),
            ),
            (exit, Err(refusal)) => ScoreOutcome::invalid(
                InvalidKind::Crash,
                crash_reason("the scoring worker", exit, &refusal, &call.outcome.stderr.tail),
            ),
        };
        Ok((outcome, summary))
    }
}

/// A line of the worker's stderr as echoed and quoted: invalid UTF-8 replaced, at most 2000
/// characters.
fn printable_line(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end()
        .chars()
        .take(2000)
        .collect()
}

/// The NVML index of the GPU the worker scores on ([`rdbench_gpu::device::scored`]), so that a
/// multi-GPU node's other GPUs do not enter the entry's energy and busy time; `None` (all GPUs)
/// if unknown.
fn scored_gpu() -> Option<Vec<u32>> {
    let bus = rdbench_gpu::device::scored().ok()?.pci_bus_id?;
    Some(vec![
        rdbench_gpu::monitor::ClockReader::open_pci(&bus)?.index()
    ])
}

/// A crash worded for the caller: how `who` ended and its last lines of stderr.
fn crash_reason(who: &str, exit: Exit, refusal: &Refusal, stderr_tail: &[u8]) -> String {
    let how = match exit {
        Exit::Exited(code) => format!("exited with code {code}"),
        Exit::Signaled(sig) => format!("killed by signal {sig}"),
        // Not reached (the worker runs without rlimits other than core dumps, and a timeout
        // is reported as such), but worded if it is.
        other => other.to_string(),
    };
    let lines: Vec<String> = stderr_tail
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(printable_line)
        .collect();
    let last = &lines[lines.len().saturating_sub(CRASH_LINES)..];
    tracing::debug!("{who}: reply refused: {refusal}");
    if last.is_empty() {
        format!("{who} crashed ({how}) before reporting a result")
    } else {
        format!(
            "{who} crashed ({how}) before reporting a result; its last output: {}",
            last.join(" | ")
        )
    }
}

/// One call of a task's experiment tool, in a worker process under the tool's [`ToolSpec`]:
/// its address space, its wall-clock limit (the deadline kills the worker and everything it
/// started), and the device lock when it uses the GPU.
pub struct ToolJob<'a> {
    pub task: &'a dyn Task,
    pub request: ToolRequest,
    pub spec: ToolSpec,
    /// Held while a GPU tool runs (see [`Job::device_lock`]). A run holding it gets no
    /// address-space limit: a CUDA context reserves far more virtual memory than any limit
    /// that would mean something (a delegated cgroup's memory limit would bound it; none is
    /// used yet).
    pub device_lock: Option<PathBuf>,
}

impl ToolJob<'_> {
    /// Runs the call. A call the tool refuses is `Error::Usage` with its words; a call stopped
    /// at a limit is `Error::Usage` naming the limit (a smaller run fits); a crash is
    /// `Error::Internal` with the worker's last words. None of them harms the caller.
    pub fn run(&self) -> Result<ToolReply> {
        self.run_with(worker_command(&self.task.info().name)?)
    }

    fn run_with(&self, mut cmd: Command<'_>) -> Result<ToolReply> {
        let _lock = match &self.device_lock {
            Some(path) => Some(rdbench_core::fsutil::lock_exclusive(path)?),
            None => None,
        };
        let dir = &self.request.private_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let wall = Duration::from_secs(self.spec.wall_s);
        cmd.current_dir(dir)
            .stdout(Output::Null)
            .stderr(Output::Capture {
                tail: STDERR_TAIL_BYTES,
            })
            .on_stderr_line(|line| eprintln!("  [tool] {}", printable_line(line)))
            .limits(Limits {
                address_space: self.device_lock.is_none().then_some(self.spec.memory_bytes),
                ..Limits::default()
            })
            .deadline(wall);
        let request = WorkerRequest::Tool(self.request.clone());
        let call =
            worker::call::<_, WorkerResult>(&mut cmd, &request, MAX_REPLY_BYTES, &REPLY_CODES)
                .map_err(|e| Error::Internal(format!("running the tool's worker: {e}")))?;
        let name = &self.spec.name;
        match (call.outcome.exit, call.reply) {
            (Exit::TimedOut, _) => Err(Error::Usage(format!(
                "the {name} run went over the tool's time limit of {} s and was stopped; nothing was recorded",
                self.spec.wall_s
            ))),
            (Exit::LimitHit(Limit::AddressSpace), _) => Err(Error::Usage(format!(
                "the {name} run went over the tool's memory limit of {} MiB and was stopped; ask for a smaller run",
                self.spec.memory_bytes >> 20
            ))),
            (_, Ok(WorkerResult::Tool { reply })) => Ok(reply),
            (_, Ok(WorkerResult::Usage { message })) => Err(Error::Usage(message)),
            (_, Ok(WorkerResult::Environment { message })) => Err(Error::Environment(message)),
            (_, Ok(WorkerResult::Failed { message })) => {
                Err(Error::Internal(format!("the {name} tool failed: {message}")))
            }
            (_, Ok(WorkerResult::Outcome { .. })) => Err(Error::Internal(
                "the tool's worker answered with a score".into(),
            )),
            (exit, Err(refusal)) => Err(Error::Internal(crash_reason(
                &format!("the {name} tool"),
                exit,
                &refusal,
                &call.outcome.stderr.tail,
            ))),
        }
    }
}

/// The worker side (`rdbench __worker`): reads the request, runs `task.score` or the tool and
/// replies through the runner's worker protocol. Returns the exit code.
pub fn worker_main(task: &dyn Task) -> i32 {
    let served = worker::serve(|request: WorkerRequest| {
        let result = match request {
            WorkerRequest::Score(request) => match task.score(&request) {
                Ok(outcome) => WorkerResult::Outcome { outcome },
                Err(e) => failure(e),
            },
            WorkerRequest::Tool(request) => match task.run_tool(&request) {
                Ok(reply) => WorkerResult::Tool { reply },
                Err(e @ (Error::Usage(_) | Error::BadInput { .. })) => WorkerResult::Usage {
                    message: e.to_string(),
                },
                Err(e) => failure(e),
            },
        };
        // The parent reads the reply, not the code; the code keeps to the documented
        // contract: 0 a result was reported, 2 refused arguments, 3 anything else.
        let code = match &result {
            WorkerResult::Outcome { .. } | WorkerResult::Tool { .. } => ExitCode::Scored,
            WorkerResult::Usage { .. } => ExitCode::Usage,
            WorkerResult::Environment { .. } | WorkerResult::Failed { .. } => ExitCode::Environment,
        };
        (result, code as i32)
    });
    fn failure(e: Error) -> WorkerResult {
        match e {
            Error::Environment(message) => WorkerResult::Environment { message },
            e => WorkerResult::Failed {
                message: e.to_string(),
            },
        }
    }
    match served {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rdbench worker: {e}");
            ExitCode::Environment as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rdbench_core::task::{Execution, PrepareRequest, ProfileInfo, Solution, TaskInfo};

    use super::*;

    /// A task whose checks all pass, so the worker always runs.
    struct Passing;

    impl Task for Passing {
        fn info(&self) -> TaskInfo {
            crate::registry::find("prefix-sum").unwrap().info()
        }
        fn prepare(&self, _: &PrepareRequest) -> Result<()> {
            Ok(())
        }
        fn install_solution(&self, _: Solution, _: &ProfileInfo, _: &Path, _: &Path) -> Result<()> {
            Ok(())
        }
        fn precheck(&self, _: &ScoreRequest) -> Result<Option<(InvalidKind, String)>> {
            Ok(None)
        }
        fn check_environment(&self, _: &ProfileInfo, _: Execution) -> Result<()> {
            Ok(())
        }
        fn score(&self, _: &ScoreRequest) -> Result<ScoreOutcome> {
            unreachable!("scored by the shell worker")
        }
    }

    fn tiny() -> ProfileInfo {
        rdbench_core::task::profile_of(&Passing, "tiny").unwrap()
    }

    /// A job of the always-passing task with everything under `dir`.
    fn job(dir: &Path, timeout: Duration) -> Job<'static> {
        Job {
            task: &Passing,
            request: ScoreRequest {
                profile: tiny(),
                submission_dir: dir.into(),
                private_dir: dir.join("private"),
                cache_dir: dir.join("cache"),
                samples_path: dir.join("samples.json"),
                seed: 1,
                execution: Default::default(),
            },
            timeline_path: dir.join("timeline.jsonl"),
            timeout,
            device_lock: Some(dir.join("gpu")),
        }
    }

    /// Runs `/bin/sh -c script` as the worker of a job (a real child under the real
    /// supervisor: the request is on its stdin, the reply goes to descriptor 3); the job's own
    /// error, if any, is returned as is.
    fn try_run_with(script: &str, timeout: Duration) -> (Result<JobResult>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let result = job(dir.path(), timeout).run_checked_with(|| {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(script).arg("worker");
            Ok(cmd)
        });
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

    /// Whether a process with this pid exists (zombies included).
    fn exists(pid: i32) -> bool {
        // SAFETY: signal 0 only checks whether the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn a_hanging_worker_and_its_children_are_killed_at_the_time_limit() {
        let marker = tempfile::tempdir().unwrap();
        let pidfile = marker.path().join("grandchild.pid");
        // The worker starts a grandchild that leaves its session and process group and
        // writes its pid as this process sees it (/proc/self/stat, read by that shell
        // itself), then hangs.
        let script = format!(
            "(setsid sh -c 'read p r < /proc/self/stat; echo $p > {pf}.tmp; mv {pf}.tmp {pf}; exec sleep 60' > /dev/null 2>&1 &); sleep 60",
            pf = pidfile.display()
        );
        let started = Instant::now();
        let (result, _dir) = run_with(&script, Duration::from_secs(1));
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "killed at the limit, not after the sleep"
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
        assert!(
            !exists(pid),
            "the grandchild {pid} was killed with the worker"
        );
        assert!(
            result.monitor.is_some(),
            "the monitor ran beside the worker"
        );
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

    /// A shell worker that replies `result` (JSON) on descriptor 3 with the request's token,
    /// then runs `after`.
    fn replying(result: &str, after: &str) -> String {
        format!(
            r#"token=$(head -c 60 | sed -n 's/.*"token":"\([0-9a-f]*\)".*/\1/p'); printf '{{"token":"%s","reply":%s}}' "$token" '{result}' >&3; {after}"#
        )
    }

    #[test]
    fn the_reply_on_the_pipe_is_the_outcome() {
        let script = replying(
            r#"{"kind":"outcome","outcome":{"status":"valid","raw":0.25,"details":null}}"#,
            "exit 0",
        );
        let (result, dir) = run_with(&script, Duration::from_secs(30));
        match result.outcome {
            ScoreOutcome::Valid { raw, .. } => assert_eq!(raw, 0.25),
            other => panic!("{other:?}"),
        }
        // Nothing is left at a path another process could have written to.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("private"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "files left behind: {left:?}");
        let env = replying(r#"{"kind":"environment","message":"no GPU"}"#, "exit 3");
        let (result, _dir) = try_run_with(&env, Duration::from_secs(30));
        assert!(matches!(result, Err(Error::Environment(m)) if m == "no GPU"));
    }

    #[test]
    fn forged_or_unfinished_replies_are_not_accepted() {
        let valid = r#"{"kind":"outcome","outcome":{"status":"valid","raw":-9.0,"details":null}}"#;
        // The right shape without the request's token: not this worker's reply.
        let forged = format!(r#"printf '{{"token":"0000","reply":%s}}' '{valid}' >&3"#);
        let (result, _dir) = run_with(&forged, Duration::from_secs(30));
        assert_eq!(
            result.outcome.invalid_kind(),
            Some(InvalidKind::Crash),
            "{:?}",
            result.outcome
        );
        assert!(reason(&result).contains("without one well-formed result"));
        // A genuine reply from a worker that was then killed: it did not exit normally.
        let killed = replying(valid, "kill -KILL $$");
        let (result, _dir) = run_with(&killed, Duration::from_secs(30));
        assert_eq!(
            result.outcome.invalid_kind(),
            Some(InvalidKind::Crash),
            "{:?}",
            result.outcome
        );
        assert!(reason(&result).contains("signal 9"), "{}", reason(&result));
        // A reply followed by more bytes is not one document.
        let doubled = replying(valid, "printf 'x' >&3; exit 0");
        let (result, _dir) = run_with(&doubled, Duration::from_secs(30));
        assert_eq!(
            result.outcome.invalid_kind(),
            Some(InvalidKind::Crash),
            "{:?}",
            result.outcome
        );
        // A genuine reply with an exit code that goes with none.
        let odd = replying(valid, "exit 1");
        let (result, _dir) = run_with(&odd, Duration::from_secs(30));
        assert!(
            reason(&result).contains("exited with code 1"),
            "{}",
            reason(&result)
        );
    }

    /// A tool call of the always-passing task under `spec`, its worker `/bin/sh -c script`.
    fn run_tool_with(script: &str, spec: ToolSpec) -> Result<ToolReply> {
        let dir = tempfile::tempdir().unwrap();
        let job = ToolJob {
            task: &Passing,
            request: ToolRequest {
                profile: tiny(),
                name: spec.name.clone(),
                args: Default::default(),
                private_dir: dir.path().join("private"),
                cache_dir: dir.path().join("cache"),
            },
            spec,
            device_lock: None,
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script).arg("tool");
        job.run_with(cmd)
    }

    fn train_spec(wall_s: u64) -> ToolSpec {
        ToolSpec::cpu("train", "n=N", wall_s, 1 << 30)
    }

    #[test]
    fn a_tool_replies_through_its_worker_and_its_refusals_are_the_callers() {
        let ok = replying(
            r#"{"kind":"tool","reply":{"text":"loss 2.5","value":{"loss":2.5}}}"#,
            "exit 0",
        );
        let reply = run_tool_with(&ok, train_spec(30)).unwrap();
        assert_eq!(reply.text, "loss 2.5");
        assert_eq!(reply.value["loss"], 2.5);
        let refused = replying(r#"{"kind":"usage","message":"train needs n=N"}"#, "exit 2");
        match run_tool_with(&refused, train_spec(30)) {
            Err(Error::Usage(m)) => assert_eq!(m, "train needs n=N"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hanging_tool_is_stopped_at_its_wall_limit_and_a_crash_is_reported() {
        let started = Instant::now();
        match run_tool_with("sleep 60", train_spec(1)) {
            Err(Error::Usage(m)) => assert!(m.contains("time limit of 1 s"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        match run_tool_with("echo 'tool fell over' >&2; kill -ABRT $$", train_spec(30)) {
            Err(Error::Internal(m)) => {
                assert!(m.contains("the train tool crashed"), "{m}");
                assert!(m.contains("tool fell over"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tool_over_its_memory_limit_is_refused_by_name() {
        // A worker whose allocation failed under its address space, saying so the way Rust's
        // runtime does before it aborts (the runner's reading of such an ending is tested in
        // crates/runner with real allocations).
        let script = "echo 'memory allocation of 1500000000 bytes failed' >&2; kill -ABRT $$";
        match run_tool_with(script, ToolSpec::cpu("train", "", 30, 256 << 20)) {
            Err(Error::Usage(m)) => assert!(m.contains("memory limit of 256 MiB"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// The request reaches the worker whole on its stdin, with the token the reply needs.
    /// (The worker side, `rdbench __worker`, is the real binary's: tests/cli.rs scores
    /// through it end to end.)
    #[test]
    fn the_request_reaches_the_worker_whole() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path(), Duration::from_secs(60));
        let script = r#"req=$(cat); token=$(printf '%s' "$req" | sed -n 's/.*"token":"\([0-9a-f]*\)".*/\1/p'); case "$req" in *'"profile":{"name":"tiny"'*) ok=1;; *) ok=0;; esac; printf '{"token":"%s","reply":{"kind":"outcome","outcome":{"status":"valid","raw":%s,"details":null}}}' "$token" "$ok" >&3"#;
        let result = job
            .run_checked_with(|| {
                let mut cmd = Command::new("/bin/sh");
                cmd.arg("-c").arg(script);
                Ok(cmd)
            })
            .unwrap();
        match result.outcome {
            ScoreOutcome::Valid { raw, .. } => assert_eq!(raw, 1.0, "the request arrived whole"),
            other => panic!("{other:?}"),
        }
    }
}
