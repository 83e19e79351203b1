//! # rdbench-program: the program-task kit
//!
//! A *program task* is one whose submission is a program: a folder tree (`solution/`) that the
//! scorer runs as a whole, on inputs the agent has never seen, and whose output files it checks
//! against what the task's reference program wrote for the same inputs. RE-Bench's "Optimize
//! LLM Foundry" is one (make a training script faster, same weights); a code-contest scaffold
//! is another. The kit owns everything generic, as the kernel-task kit does for kernels:
//!
//! - **the tree submission** ([`tree`], in rdbench-core: the client reads it too): a bounded walk that reads a folder without following
//!   a link, refuses FIFOs, devices and hard links, and caps files, bytes and depth before a
//!   byte is read; names are checked; the copy the scorer runs is its own;
//! - **the sandboxed run** ([`run`]): the copy in a fresh work folder of the sandbox's user,
//!   `rdbench_runner::Command::sandbox` (bwrap, seccomp, Landlock, no network), a deadline,
//!   the whole process tree timed from the parent (the PID namespace ends every descendant
//!   with the program, so nothing outlives the run and nothing writes after it), a typed exit;
//! - **secret inputs per call** ([`pool`]): K inputs per installation and profile, each made
//!   from a seed derived from the installation's secret, with the reference program's output
//!   for it, under the scorer's private cache; each scoring call draws one;
//! - **Python programs** ([`python`]): the system's interpreter with a venv's packages bound
//!   read-only, where it imports what the task needs;
//! - **comparing output tensors** ([`tensors`]): names, shapes and dtypes must match; the
//!   distance is the sum over tensors of the Frobenius norm of the difference, in f64;
//! - **the adapter** ([`ProgramAdapter`]): a [`ProgramTask`] becomes an
//!   [`rdbench_core::task::Task`].
//!
//! A task writes only what is its own ([`ProgramTask`]): its solutions, its instructions, the
//! contract of a run (entry command, input folder, output files, deadline), what the sandbox
//! must bind (an interpreter, a virtual environment), how to make one input from a seed, and
//! the check of one output against the reference's. The guide is `docs/program-tasks.md`.

pub mod adapter;
pub mod pool;
pub mod python;
pub mod run;
pub mod tensors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdbench_core::task::{InvalidKind, ShippedCalibration, Solution, TaskInfo};
use rdbench_core::Result;
pub use rdbench_runner::sandbox::Bind;

pub use adapter::ProgramAdapter;
/// The tree submission: `rdbench_core::tree`, shared with the client that reads it.
pub use rdbench_core::tree;
pub use tree::TreeLimits;

/// The folder of the attempt that is the submission, and the name the scorer gives it.
pub const SOLUTION_DIR: &str = "solution";

/// What one run of a submission is: the task's side of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The command run in the solution's folder (inside the sandbox: `/work`), e.g.
    /// `["bash", "train.sh"]`; resolved on the sandbox's `PATH`.
    pub command: Vec<String>,
    /// The folder of the solution that holds the input: whatever the submission had there is
    /// replaced by the call's secret input before the run.
    pub input_dir: String,
    /// The files the program must write (paths relative to the solution's folder), each with
    /// the most bytes it may have. They are removed before the run and read, without following
    /// a link, after every process of the run has ended.
    pub outputs: Vec<OutputFile>,
    /// Wall-clock limit of one run, over the whole process tree.
    pub deadline: Duration,
    /// How many secret inputs (with the reference's outputs) an installation keeps.
    pub pool_size: usize,
    /// The largest file the program may write, bytes.
    pub file_size: u64,
    /// Size of the sandbox's `/tmp`, bytes.
    pub tmp_size: u64,
    /// Processes the run may have at once (enforced per user where the scorer is root and gives
    /// the run its own uid).
    pub processes: u64,
}

/// One output file of a run and its size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: String,
    pub max_bytes: u64,
}

/// What the sandbox needs from the machine for a task's programs: read-only binds (an
/// interpreter's environment, for example) and variables on top of the sandbox's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxEnv {
    pub binds: Vec<Bind>,
    pub env: BTreeMap<String, String>,
    /// Bind the GPU's device nodes.
    pub gpu: bool,
}

/// Output files by their contract path.
pub type Outputs = BTreeMap<String, Vec<u8>>;

/// The task's verdict on one run's outputs.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Correct: the details go into the log entry, `headline` after the time.
    Valid {
        headline: String,
        details: serde_json::Value,
    },
    Invalid {
        kind: InvalidKind,
        reason: String,
        details: serde_json::Value,
    },
}

/// A program task: what the kit cannot know. The kit's [`ProgramAdapter`] turns it into a
/// [`rdbench_core::task::Task`] whose raw score is `ln(seconds)` of one run.
pub trait ProgramTask: Send + Sync {
    /// The task's description. The adapter sets `submission` (a program) and
    /// `submission_files` (the `solution` tree) itself.
    fn info(&self) -> TaskInfo;

    /// Caps on the submitted tree.
    fn tree_limits(&self) -> TreeLimits;

    /// Writes the files of a solution (start, reference) into `dir`, the solution's folder.
    fn write_solution(&self, which: Solution, profile: &str, dir: &Path) -> Result<()>;

    /// `INSTRUCTIONS.md` for an attempt on `profile`.
    fn instructions(&self, profile: &str) -> Result<String>;

    fn contract(&self, profile: &str) -> Result<Contract>;

    /// What the sandbox must bind for the task's programs, or `Err(Environment)` naming in one
    /// line what this machine lacks (an interpreter, a library, the GPU).
    fn sandbox_env(&self, profile: &str) -> Result<SandboxEnv>;

    /// Writes one input, made from `seed`, into `dir` (the contract's input folder). The seed
    /// is secret for scoring inputs and public for the example an attempt starts with.
    fn make_input(&self, profile: &str, seed: u64, dir: &Path) -> Result<()>;

    /// Checks a run's outputs against the reference program's on the same input, the one
    /// [`Self::make_input`] made from `seed` (for held-out checks the task derives from it).
    fn check(&self, profile: &str, seed: u64, expected: &Outputs, got: &Outputs)
        -> Result<Verdict>;

    /// The seed of the public example input an attempt starts with.
    fn example_seed(&self, profile: &str) -> u64;

    fn shipped_calibration(&self, _profile: &str) -> Option<ShippedCalibration> {
        None
    }
}

/// Writes a task's embedded files (name, text) into `dir`, making it first: a solution's
/// files as the task ships them.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| rdbench_core::Error::io(dir, e))?;
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| rdbench_core::Error::io(&p, e))?;
    }
    Ok(())
}

/// The solution folder inside an attempt (or submission) folder.
pub fn solution_dir(dir: &Path) -> PathBuf {
    dir.join(SOLUTION_DIR)
}
