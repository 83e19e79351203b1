//! The [`Task`] trait and what a task tells the kit about itself.
//!
//! A task crate implements [`Task`]; the CLI owns everything around it: attempts, the worker
//! process, the score log, calibration and normalization. A task never writes the score log
//! and never decides exit codes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::outcome::{InvalidKind, ScoreOutcome};
use crate::Result;

/// Which way the raw score improves. Normalization does not need it (`ref` sits on the good
/// side of `start`), but reports and sanity checks do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    LowerIsBetter,
    HigherIsBetter,
}

/// How the scorer sees a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionKind {
    /// `solution.cu` + `launch.toml`, compiled by NVRTC; the scorer owns the host side.
    Kernel,
    /// Files the attempt produces, evaluated by the scorer on held-out data.
    Artifact,
    /// A command the scorer runs as a sandboxed child process.
    Program,
}

/// One named size of a task (`tiny` for CI and laptops, `full` sized like RE-Bench).
///
/// A command looks its profile up once, when it starts ([`TaskInfo::profile`]: a name the task
/// lacks is refused there, listing the valid ones), and hands this record on: every [`Task`]
/// method and request takes it, never a bare name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    pub name: String,
    pub description: String,
    /// Whether this profile can only be scored on an NVIDIA GPU.
    pub needs_gpu: bool,
}

/// Static description of a task, shown by `rdbench list` and `rdbench info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Short machine name, e.g. `prefix-sum`.
    pub name: String,
    /// Family for aggregation (tasks of one family share weight in the time horizon).
    pub family: String,
    pub title: String,
    /// One paragraph for `rdbench info`.
    pub summary: String,
    /// What the raw score is, e.g. `ln(milliseconds of the whole launch plan)`.
    pub raw_score: String,
    pub direction: Direction,
    pub submission: SubmissionKind,
    /// Files in the attempt folder that the scorer reads (and hashes into the log entry), each
    /// with the most bytes it may have: enforced on the open file before a byte is read, by the
    /// client, the service and the local scorer alike.
    pub submission_files: Vec<SubmissionFile>,
    pub profiles: Vec<ProfileInfo>,
    /// Whether the agent is shown its score. Hidden tasks count the last entry, not the best.
    pub score_hidden: bool,
    /// Whether start/reference raw scores are the same on every machine (loss-based tasks), so
    /// that shipped calibration values apply everywhere.
    pub hardware_independent: bool,
    /// RE-Bench default time limit for one attempt, in minutes.
    pub default_time_limit_minutes: u32,
    /// Wall-clock limit for one scoring run; the parent kills the worker's process group after it.
    pub score_timeout_s: u64,
    /// Estimated human time for the task (for METR's time horizon), if known.
    pub human_minutes: Option<f64>,
    /// The experiment tools an attempt may run through the scorer ([`Task::run_tool`]), each
    /// with the limits its worker process runs under.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
}

/// One experiment tool of a task and what one call of it may use. Each call runs in a worker
/// process of its own (like a scoring run), so these are enforced from outside: a call over
/// them is stopped and refused, and the service goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    /// Its arguments, as the instructions show them (`n_embd=N max_iters=N [seed=N]`).
    pub usage: String,
    /// Wall-clock limit of one call, seconds.
    pub wall_s: u64,
    /// Address space of the worker, bytes (virtual memory: mapped libraries and thread stacks
    /// count).
    pub memory_bytes: u64,
    /// Whether a call on a GPU profile uses the GPU, and so holds the device lock that keeps
    /// scoring runs' timings undisturbed.
    pub needs_gpu: bool,
}

impl ToolSpec {
    /// A CPU tool.
    pub fn cpu(name: &str, usage: &str, wall_s: u64, memory_bytes: u64) -> Self {
        ToolSpec {
            name: name.into(),
            usage: usage.into(),
            wall_s,
            memory_bytes,
            needs_gpu: false,
        }
    }
}

/// One file of a submission and its size limit, or a folder tree (a program task's
/// `solution/`) and its caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionFile {
    pub name: String,
    /// A file's limit; a tree's bytes in all.
    pub max_bytes: u64,
    /// Set when the submission is the folder `name`, read as a tree within these caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<crate::tree::TreeLimits>,
}

impl SubmissionFile {
    pub fn new(name: impl Into<String>, max_bytes: u64) -> Self {
        SubmissionFile {
            name: name.into(),
            max_bytes,
            tree: None,
        }
    }

    /// The folder `name`, a tree within `limits`.
    pub fn tree(name: impl Into<String>, limits: crate::tree::TreeLimits) -> Self {
        SubmissionFile {
            name: name.into(),
            max_bytes: limits.max_bytes,
            tree: Some(limits),
        }
    }

    /// How many files (message blobs) it may be sent as.
    pub fn max_files(&self) -> usize {
        self.tree.map_or(1, |t| t.max_files)
    }
}

impl TaskInfo {
    /// The submission files' names, in order.
    pub fn submission_names(&self) -> Vec<String> {
        self.submission_files
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    /// Looks up a tool by name, with an error listing the task's tools.
    pub fn tool(&self, name: &str) -> Result<&ToolSpec> {
        self.tools.iter().find(|t| t.name == name).ok_or_else(|| {
            crate::Error::Usage(if self.tools.is_empty() {
                format!("task {} has no tools (asked for {name:?})", self.name)
            } else {
                let names: Vec<String> = self
                    .tools
                    .iter()
                    .map(|t| format!("{} {}", t.name, t.usage))
                    .collect();
                format!(
                    "task {} has no tool {name:?}; its tools: {}",
                    self.name,
                    names.join("; ")
                )
            })
        })
    }

    /// Looks up a profile by name, with an error listing the valid names.
    pub fn profile(&self, name: &str) -> Result<&ProfileInfo> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
                crate::Error::Usage(format!(
                    "task {} has no profile {name:?}; its profiles are: {}",
                    self.name,
                    names.join(", ")
                ))
            })
    }
}

/// `task`'s profile `name`, or the usage error that lists its profiles: what a command does
/// once, when it starts, before it calls the task.
pub fn profile_of(task: &dyn Task, name: &str) -> Result<ProfileInfo> {
    task.info().profile(name).cloned()
}

/// Which of a task's two anchor solutions to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solution {
    /// Scores 0 after calibration: what the agent starts from.
    Starting,
    /// Scores 1 after calibration: RE-Bench's reference solution.
    Reference,
    /// The fastest version the task's authors could write, where one ships (reported by
    /// the GPU check beside the two anchors; never calibrated).
    Fastest,
}

impl Solution {
    pub fn as_str(self) -> &'static str {
        match self {
            Solution::Starting => "starting",
            Solution::Reference => "reference",
            Solution::Fastest => "fastest",
        }
    }

    /// The solution named `name` (`start` or `starting`, `reference`, `fastest`).
    pub fn from_name(name: &str) -> Option<Solution> {
        match name {
            "start" | "starting" => Some(Solution::Starting),
            "reference" => Some(Solution::Reference),
            "fastest" => Some(Solution::Fastest),
            _ => None,
        }
    }
}

/// Everything a task needs to lay out a new attempt.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    pub profile: ProfileInfo,
    /// The attempt's public folder: starting solution and instructions go here.
    pub attempt_dir: PathBuf,
    /// Private per-attempt folder outside `attempt_dir`.
    pub private_dir: PathBuf,
    /// Shared cache for deterministic, expensive preparation (e.g. trained models).
    pub cache_dir: PathBuf,
}

/// Everything a task needs to score one submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreRequest {
    pub profile: ProfileInfo,
    /// Folder holding the submission files.
    pub submission_dir: PathBuf,
    /// Private per-attempt (or per-calibration) folder the agent cannot read.
    pub private_dir: PathBuf,
    /// Shared cache for deterministic, expensive preparation.
    pub cache_dir: PathBuf,
    /// Where to save raw samples (timings, per-trial results) for offline re-analysis.
    pub samples_path: PathBuf,
    /// Fresh secret seed for this scoring run; never shown to the agent.
    pub seed: u64,
    /// Measured (the default), or emulated on the CPU, which checks correctness only.
    #[serde(default)]
    pub execution: Execution,
}

impl ScoreRequest {
    /// Writes a scoring run's raw samples (per-trial results, timings) to `samples_path` for
    /// offline re-analysis. A task calls it best effort: samples that cannot be written lose
    /// only themselves, never the score.
    pub fn save_samples(&self, samples: &serde_json::Value) -> Result<()> {
        if let Some(dir) = self.samples_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        }
        let bytes = serde_json::to_vec_pretty(samples)
            .map_err(|e| crate::Error::Internal(e.to_string()))?;
        crate::fsutil::atomic_write(&self.samples_path, &bytes)
    }
}

/// How a scoring run executes the submission. Core names no device: a task kind maps these to
/// its own (the kernel kit: a CUDA GPU, or the CPU emulator of `kernels/tools/cuda_emu.h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// On the hardware the task measures: timed and scored. The default.
    #[default]
    Measured,
    /// On a CPU emulation of that hardware, for tasks that have one: correctness only, never a
    /// score ([`ScoreOutcome::Unscored`]). The emulation compiles the submission as host code, so
    /// it is for the project's own solutions and exploit corpus (CI, task authors), never for an
    /// untrusted submission. Tasks whose scoring needs no special hardware score as usual.
    Emulated,
}

/// Calibration values that hold on every machine (for [`TaskInfo::hardware_independent`] tasks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShippedCalibration {
    pub start: f64,
    pub reference: f64,
    /// Where the numbers came from: command, date, machine.
    pub provenance: String,
}

/// One timing of a task's CPU baseline: the program a GPU task replaces (METR's GAC tasks
/// state their goal as a speed-up over such a program). `calibrate` measures it once per
/// device and profile; every later score then reports its speed-up over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuBaseline {
    /// Wall time of one run at the profile's timed size, milliseconds.
    pub ms: f64,
    /// What was timed (threads, algorithm), for reports.
    pub description: String,
    /// The speed-up the task counts as a success, if it has one (e.g. 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_speedup: Option<f64>,
}

/// A benchmark task. Implementations live in `crates/tasks/<name>/`.
///
/// `score` runs inside a worker child process (its own CUDA context), so it may crash or hang
/// without harming the caller; the other methods run in the CLI process and must be cheap and safe.
pub trait Task: Send + Sync {
    fn info(&self) -> TaskInfo;

    /// Writes the starting solution and the instructions into `req.attempt_dir`, and anything
    /// private (held-out data) under `req.private_dir` or `req.cache_dir`.
    fn prepare(&self, req: &PrepareRequest) -> Result<()>;

    /// Installs the starting or reference solution as a submission in `dir` (used by
    /// `calibrate` and the self-test cycle). May do real work, e.g. train a model.
    fn install_solution(
        &self,
        solution: Solution,
        profile: &ProfileInfo,
        cache_dir: &Path,
        dir: &Path,
    ) -> Result<()>;

    /// Cheap checks that need no GPU (parse files, compile with NVRTC when available), run in
    /// the CLI process before any worker starts. `Some((kind, reason))` marks the submission
    /// invalid.
    fn precheck(&self, req: &ScoreRequest) -> Result<Option<(InvalidKind, String)>>;

    /// Whether this machine can score the profile with `execution`; `Err(Environment)`
    /// explains what is missing. Tasks with no emulation score as usual when asked for one.
    fn check_environment(&self, profile: &ProfileInfo, execution: Execution) -> Result<()>;

    /// Scores the submission. Runs in the worker process.
    fn score(&self, req: &ScoreRequest) -> Result<ScoreOutcome>;

    /// Calibration values valid on every machine, if the task has them.
    fn shipped_calibration(&self, _profile: &ProfileInfo) -> Option<ShippedCalibration> {
        None
    }

    /// Runs and times the task's CPU baseline at `profile`'s timed size, if it has one.
    /// Called by `calibrate` in the CLI process; it may take a minute.
    fn cpu_baseline(&self, _profile: &ProfileInfo) -> Result<Option<CpuBaseline>> {
        Ok(None)
    }

    /// Runs one of the task's experiment tools for an attempt (`rdbench tool DIR NAME K=V...`,
    /// served like `score`): work the agent may ask for but whose record must be the scorer's,
    /// such as scaling-law's training runs, logged in `req.private_dir` where the agent cannot
    /// edit them. Tasks without tools refuse every name.
    fn run_tool(&self, req: &ToolRequest) -> Result<ToolReply> {
        Err(crate::Error::Usage(format!(
            "this task has no tool {:?}",
            req.name
        )))
    }
}

/// One call of a task's experiment tool ([`Task::run_tool`]), as the tool's worker receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolRequest {
    pub profile: ProfileInfo,
    pub name: String,
    /// `KEY=VALUE` arguments, parsed; a key given twice is refused before the task sees it.
    pub args: std::collections::BTreeMap<String, String>,
    /// The attempt's private folder (the same one scoring gets), for the tool's own log.
    pub private_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl ToolRequest {
    /// Parses `KEY=VALUE` words into [`ToolRequest::args`].
    pub fn parse_args(words: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
        let mut args = std::collections::BTreeMap::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(crate::Error::Usage(format!(
                    "tool argument {w:?} is not KEY=VALUE"
                )));
            };
            if k.is_empty() || args.insert(k.to_string(), v.to_string()).is_some() {
                return Err(crate::Error::Usage(format!(
                    "tool argument {k:?} is empty or given twice"
                )));
            }
        }
        Ok(args)
    }
}

/// What a tool call printed, and the same as one JSON value for `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolReply {
    pub text: String,
    pub value: serde_json::Value,
}
