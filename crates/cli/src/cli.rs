//! Command-line flags (clap). Raw flags are turned into validated values in the commands,
//! before anything runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::aggregate::AggregateArgs;

#[derive(Debug, Parser)]
#[command(
    name = "rdbench",
    version,
    about = "AI R&D benchmark tasks on GPUs: start attempts, score submissions, calibrate, aggregate"
)]
#[command(
    after_help = "Exit codes: 0 scored (or done), 1 submission invalid, 2 usage or input error, 3 environment error (no GPU, no calibration)."
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where rdbench keeps score logs, calibrations and caches [default: $RDBENCH_HOME or ~/.local/share/rdbench].
    #[arg(long, global = true, env = "RDBENCH_HOME")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the tasks.
    List,
    /// Describe one task and its calibration on this machine.
    Info { task: String },
    /// Start an attempt: copy the starting solution and instructions into DIR.
    Start {
        task: String,
        /// The attempt's folder (created; must be empty if it exists).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "full")]
        profile: String,
        /// Time limit of the attempt, minutes [default: the task's].
        #[arg(long)]
        time_limit: Option<f64>,
        /// Who makes the attempt (recorded in the summary).
        #[arg(long, default_value = "unknown")]
        agent: String,
    },
    /// Score the submission in an attempt's folder and append the result to its score log.
    Score {
        dir: PathBuf,
        /// Score even without a calibration for this device (raw score only).
        #[arg(long)]
        allow_uncalibrated: bool,
        /// Override the task's scoring time limit, seconds (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
        /// Run a kernel task on the CPU emulator: correctness only, never a score. For the
        /// project's own kernels and tests: the .cu is compiled as host code.
        #[arg(long)]
        emulate: bool,
    },
    /// Show an attempt's score log.
    Log { dir: PathBuf },
    /// End an attempt: pick the final score and write the attempt summary.
    Finish {
        dir: PathBuf,
        /// Also write the summary here (e.g. shared storage for `aggregate`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure the starting and reference solutions on this device and store the calibration.
    Calibrate {
        /// Task to calibrate [default: every task this machine can run].
        #[arg(long)]
        task: Vec<String>,
        #[arg(long, default_value = "full")]
        profile: String,
        /// Separate scoring processes per solution (the median counts).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Record a GPU (or CPU) timeline for a whole attempt until Ctrl-C.
    Monitor {
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Aggregate attempt results: score@k over time budgets and METR's time horizon.
    Aggregate(AggregateArgs),
    /// Report the driver, CUDA, NVRTC, NVML, GPUs and calibrations found.
    Doctor,
    /// The built-in default job: for every task, start an attempt, score the starting
    /// solution, apply the reference solution, score it, and print a table.
    Cycle {
        /// Only these tasks [default: all].
        #[arg(long)]
        task: Vec<String>,
        #[arg(long, default_value = "tiny")]
        profile: String,
    },
    /// The conformance checks every task must pass: profiles, deterministic preparation,
    /// nothing private in the attempt folder, every .cu compiling for sm_80 and sm_90, start
    /// and reference solutions (scored where this machine can, on the CPU emulator for kernel
    /// tasks without a GPU), and the task's exploit corpus giving its expected verdicts.
    CheckTask {
        task: String,
        #[arg(long, default_value = "tiny")]
        profile: String,
        /// The exploit corpus root [default: tests/exploits of the checkout].
        #[arg(long)]
        exploits: Option<PathBuf>,
        /// Only these exploit cases (by folder name).
        #[arg(long)]
        case: Vec<String>,
    },
    /// For task authors and operators (never an agent's tool): write a shipped solution
    /// (`start`, `reference`, `fastest`) or an exploit case (`exploit:<case>`, derived cases
    /// materialized from the starting solution) into DIR.
    InstallSolution {
        task: String,
        /// `start`, `reference`, `fastest` or `exploit:<case>`.
        what: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "tiny")]
        profile: String,
    },
    /// Internal: score one submission in this process (the scorer's worker).
    #[command(name = "__worker", hide = true)]
    Worker {
        #[arg(long)]
        task: String,
    },
    /// Internal: compile one NVRTC request from stdin, reply on stdout (the limited child).
    #[command(name = "__nvrtc", hide = true)]
    Nvrtc,
}
