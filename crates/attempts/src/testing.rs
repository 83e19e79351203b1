//! Test doubles: a task with one file (`solution.txt`), a host that scores it without a
//! worker, and a peer that stands for the service's client. Everything else is real: a home in
//! a temporary folder, real attempts, real score logs.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use rdbench_client::client::AttemptFolder;
use rdbench_client::proto::{FileState, SubmittedFile};
use rdbench_core::attempt::Attempt;
use rdbench_core::calibration::{CalibrationEntry, DeviceFingerprint};
use rdbench_core::home::Home;
use rdbench_core::outcome::InvalidKind;
use rdbench_core::summary::AttemptSummary;
use rdbench_core::task::{
    Direction, Execution, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution,
    SubmissionFile, SubmissionKind, Task, TaskInfo,
};
use rdbench_core::{Error, Result};

use crate::context::{Caller, Ctx, Host, Peer, Rights};
use crate::output::Out;
use crate::score::{RunResult, ScoringRun};

/// A profile whose preparation fails.
pub const BROKEN_PROFILE: &str = "broken";
/// A profile whose environment check fails, as a GPU profile's does on a machine without one.
pub const GPU_PROFILE: &str = "gpu";
/// What the environment check of [`GPU_PROFILE`] says.
pub const NO_GPU: &str = "no NVIDIA driver found; fake is scored on an NVIDIA GPU";
/// The fake task's scoring limit, seconds.
pub const SCORE_TIMEOUT_S: u64 = 60;
/// The one submission file and its limit.
pub const SOLUTION: &str = "solution.txt";
pub const SOLUTION_MAX_BYTES: u64 = 64;

pub fn fake_info() -> TaskInfo {
    let profile = |name: &str| ProfileInfo {
        name: name.into(),
        description: String::new(),
        needs_gpu: name == GPU_PROFILE,
    };
    TaskInfo {
        name: "fake".into(),
        family: "fake".into(),
        title: "A fake task".into(),
        summary: String::new(),
        raw_score: "ln(ms)".into(),
        direction: Direction::LowerIsBetter,
        submission: SubmissionKind::Artifact,
        submission_files: vec![SubmissionFile::new(SOLUTION, SOLUTION_MAX_BYTES)],
        profiles: vec![
            profile("tiny"),
            profile(BROKEN_PROFILE),
            profile(GPU_PROFILE),
        ],
        score_hidden: false,
        hardware_independent: true,
        default_time_limit_minutes: 60,
        score_timeout_s: SCORE_TIMEOUT_S,
        human_minutes: None,
        tools: Vec::new(),
    }
}

/// Prepares `INSTRUCTIONS.md` and `solution.txt` ("start"); prechecks that the solution is
/// there and not "bad"; never scores in-process (the host does).
struct FakeTask {
    score_hidden: bool,
}

impl Task for FakeTask {
    fn info(&self) -> TaskInfo {
        TaskInfo {
            score_hidden: self.score_hidden,
            ..fake_info()
        }
    }
    fn prepare(&self, req: &PrepareRequest) -> Result<()> {
        if req.profile.name == BROKEN_PROFILE {
            return Err(Error::Environment("cannot prepare this profile".into()));
        }
        std::fs::write(req.attempt_dir.join("INSTRUCTIONS.md"), "make it fast\n")
            .and_then(|_| std::fs::write(req.attempt_dir.join(SOLUTION), "start"))
            .map_err(|e| Error::io(&req.attempt_dir, e))
    }
    fn install_solution(&self, _: Solution, _: &ProfileInfo, _: &Path, _: &Path) -> Result<()> {
        Err(Error::Internal("not in these tests".into()))
    }
    fn precheck(&self, req: &ScoreRequest) -> Result<Option<(InvalidKind, String)>> {
        Ok(
            match std::fs::read_to_string(req.submission_dir.join(SOLUTION)) {
                Err(_) => Some((InvalidKind::MissingFile, format!("{SOLUTION} is missing"))),
                Ok(text) if text.contains("bad") => {
                    Some((InvalidKind::WrongOutput, "a bad solution".into()))
                }
                Ok(_) => None,
            },
        )
    }
    fn check_environment(&self, profile: &ProfileInfo, _: Execution) -> Result<()> {
        if profile.name == GPU_PROFILE {
            return Err(Error::Environment(NO_GPU.into()));
        }
        Ok(())
    }
    fn score(&self, _: &ScoreRequest) -> Result<ScoreOutcome> {
        Err(Error::Internal("scored by the host".into()))
    }
}

/// What the host was asked.
#[derive(Debug, Default)]
pub struct Calls {
    /// Each scoring run, with the solution's text as the worker found it in the snapshot.
    pub runs: Vec<(ScoringRun, String)>,
    pub tools: Vec<(String, String, Vec<String>)>,
}

/// The binary's part: the fake task only; the raw score is the solution's length in ms.
#[derive(Default)]
pub struct FakeHost {
    pub calls: RefCell<Calls>,
    /// Whether the fake task hides its scores from the agent.
    pub score_hidden: Cell<bool>,
    /// Whether this installation lacks the fake task's calibration.
    pub uncalibrated: Cell<bool>,
}

impl Host for FakeHost {
    /// No GPU here: the name a machine without one gets.
    fn gpu_name(&self) -> String {
        rdbench_core::calibration::gpu_name(rdbench_core::calibration::SCORED_GPU_ORDINAL, None)
    }
    fn task(&self, name: &str) -> Result<Box<dyn Task>> {
        match name {
            "fake" => Ok(Box::new(FakeTask {
                score_hidden: self.score_hidden.get(),
            })),
            _ => Err(Error::Usage(format!("unknown task {name:?}"))),
        }
    }
    fn list(&self) -> Result<i32> {
        Ok(40)
    }
    fn info(&self, task: &str) -> Result<i32> {
        self.task(task).map(|_| 41)
    }
    fn tool(&self, attempt: &Attempt, name: &str, args: &[String]) -> Result<i32> {
        self.calls
            .borrow_mut()
            .tools
            .push((attempt.record.id.clone(), name.into(), args.to_vec()));
        Ok(0)
    }
    fn calibration(
        &self,
        task: &dyn Task,
        profile: &ProfileInfo,
    ) -> Result<(DeviceFingerprint, Option<CalibrationEntry>)> {
        let calibration = CalibrationEntry {
            task: task.info().name,
            profile: profile.name.clone(),
            start: 100f64.ln(),
            reference: 10f64.ln(),
            measured_at: chrono::Utc::now(),
            provenance: "test".into(),
            details: serde_json::Value::Null,
        };
        let calibration = (!self.uncalibrated.get()).then_some(calibration);
        Ok((DeviceFingerprint::this_cpu(), calibration))
    }
    fn run_scoring(&self, _task: &dyn Task, run: ScoringRun) -> Result<RunResult> {
        let text = std::fs::read_to_string(run.request.submission_dir.join(SOLUTION))
            .map_err(|e| Error::io(&run.request.submission_dir, e))?;
        let ms = text.len() as f64;
        self.calls.borrow_mut().runs.push((run, text));
        Ok(RunResult {
            outcome: ScoreOutcome::Valid {
                raw: ms.ln(),
                headline: format!("{ms} ms"),
                details: serde_json::json!({ "median_ms": ms }),
            },
            wall_s: 0.5,
            monitor: None,
            ran_worker: true,
        })
    }
}

/// The service's client, as the dispatcher sees it: it made the folder (absolute), takes the
/// starting files as bytes, sends the submission it was given, and keeps the summary.
#[derive(Default)]
pub struct RemotePeer {
    pub folders_asked: usize,
    pub starting_files: Vec<(String, Vec<u8>)>,
    /// What `score` sends; `None`: the file is missing.
    pub solution: Option<FileState>,
    pub solution_bytes: Vec<u8>,
    pub submissions_asked: usize,
    pub tool_turns: usize,
    pub summary: Option<AttemptSummary>,
}

impl Peer for RemotePeer {
    fn attempt_folder(&mut self, dir: &Path) -> Result<AttemptFolder> {
        self.folders_asked += 1;
        crate::dispatch::require_absolute(dir)?;
        Ok(AttemptFolder {
            path: dir.into(),
            created: false,
        })
    }
    fn starting_files(&mut self, _folder: &Path, staged: &Path, files: &[String]) -> Result<()> {
        for rel in files {
            let bytes = std::fs::read(staged.join(rel)).map_err(|e| Error::io(staged, e))?;
            self.starting_files.push((rel.clone(), bytes));
        }
        Ok(())
    }
    fn submission(
        &mut self,
        _info: &TaskInfo,
        _dir: &Path,
    ) -> Result<(Vec<SubmittedFile>, Vec<Vec<u8>>)> {
        self.submissions_asked += 1;
        let state = self.solution.clone().unwrap_or(FileState::Missing);
        let blobs = match state {
            FileState::Present => vec![self.solution_bytes.clone()],
            _ => Vec::new(),
        };
        let file = SubmittedFile {
            name: SOLUTION.into(),
            state,
            executable: false,
        };
        Ok((vec![file], blobs))
    }
    fn tool_turn(
        &mut self,
        _attempt: &Attempt,
        tool: &mut dyn FnMut() -> Result<i32>,
    ) -> Result<i32> {
        self.tool_turns += 1;
        tool()
    }
    fn summary(&mut self, _out: Option<&Path>, summary: &AttemptSummary) -> Result<()> {
        self.summary = Some(summary.clone());
        Ok(())
    }
}

/// A home in a temporary folder, the fake host, captured output.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub home: Home,
    pub host: FakeHost,
    pub out: Out,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        Fixture {
            tmp,
            home,
            host: FakeHost::default(),
            out: Out::capture(),
        }
    }

    /// A context for `caller`, the emulator not allowed to agents.
    pub fn ctx(&self, caller: Caller) -> Ctx<'_> {
        Ctx {
            home: &self.home,
            json: false,
            out: &self.out,
            caller,
            rights: Rights::of(caller, false),
            host: &self.host,
        }
    }

    /// A path in the temporary folder (not made).
    pub fn folder(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}
