//! Command-line flags (clap). Raw flags are turned into validated values in the commands,
//! before anything runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use rdbench_client::command::{DEFAULT_PROFILE, PROFILE_HELP};
use rdbench_client::AttemptCommand;

use crate::aggregate::AggregateArgs;
use crate::commands::score_job::ScoreJobArgs;
use crate::fanout::FanoutArgs;

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
    /// Send the attempt commands (`start`, `score`, `tool`, `status`, `log`, `finish`, `list`,
    /// `info`) to the scoring service on this socket instead of running them as this user (protected mode).
    #[arg(long, global = true, env = "RDBENCH_SOCKET")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// `start`, `score`, `tool`, `status`, `log`, `finish`, `list`, `info`: the same in
    /// `rdbench-client`.
    #[command(flatten)]
    Attempt(AttemptCommand),
    /// Run the protected scoring service: as the scoring user, serve agents' `start`, `score`,
    /// `log`, `finish`, `list` and `info` on a Unix socket (see README, "Protected scoring").
    Serve {
        /// The socket to listen on (made world-connectable; restrict it with the folder's mode).
        #[arg(long, default_value = "/run/rdbench/score.sock")]
        socket: PathBuf,
        /// Also serve `score --emulate` to agents. The emulator compiles solution.cu as host
        /// code and runs it as the scoring user: never on a machine holding real secrets.
        #[arg(long)]
        allow_emulator_for_agents: bool,
        /// Serve even though this binary is readable or executable by other users. It holds
        /// every reference solution (`install-solution`): only for a machine with no agent.
        #[arg(long)]
        allow_public_binary: bool,
    },
    /// Serve a GGUF chat model through an OpenAI-compatible HTTP API on a TCP address or a
    /// Unix socket (docs/serve-llm.md).
    ServeLlm(crate::commands::serve_llm::ServeLlmArgs),
    /// Measure the starting and reference solutions on this device and store the calibration.
    Calibrate {
        /// Task to calibrate [default: every task this machine can run].
        #[arg(long)]
        task: Vec<String>,
        #[arg(long, default_value = DEFAULT_PROFILE, help = PROFILE_HELP)]
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
    /// Write a task out for another platform (a METR Task Standard family).
    #[command(subcommand)]
    Export(crate::commands::export::ExportCommand),
    /// The scheduler's command: score job INDEX of a fanout manifest once and write
    /// RESULTS/INDEX.json (a sealed result already there is reported, not scored again).
    ScoreJob(ScoreJobArgs),
    /// Write a Slurm array script or a Kubernetes Indexed Job that runs `score-job` for every
    /// job of a manifest.
    Fanout(FanoutArgs),
    /// Run the budgeted model proxy in the foreground: one model, a token budget, rate
    /// limits and a call log in front of an OpenAI-compatible endpoint (docs/llm-proxy.md).
    LlmProxy(crate::commands::llm_proxy::LlmProxyArgs),
    /// The built-in default job: for every task, start an attempt, score the starting
    /// solution, apply the reference solution, score it, and print a line as it finishes.
    Cycle {
        /// Only these tasks [default: all].
        #[arg(long)]
        task: Vec<String>,
        #[arg(long, default_value = DEFAULT_PROFILE, help = PROFILE_HELP)]
        profile: String,
        /// Each task's details under its line: what ran and was skipped, in full.
        #[arg(long, short)]
        verbose: bool,
    },
    /// The conformance checks every task must pass: profiles, deterministic preparation,
    /// nothing private in the attempt folder, every .cu compiling for sm_80 and sm_90, start
    /// and reference solutions (scored where this machine can, on the CPU emulator for kernel
    /// tasks without a GPU), and the task's exploit corpus giving its expected verdicts.
    CheckTask {
        task: String,
        #[arg(long, default_value = DEFAULT_PROFILE, help = PROFILE_HELP)]
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
        /// The task's profile (its size; `info TASK` lists them). Every command defaults to
        /// tiny; where DIR is an attempt's folder, the attempt's profile (naming another is
        /// refused: that attempt could not score what it installs).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Internal: score one submission in this process (the scorer's worker).
    #[command(name = "__worker", hide = true)]
    Worker {
        #[arg(long)]
        task: String,
    },
    /// Internal: compile one NVRTC request from stdin, reply on the worker protocol's
    /// descriptor 3 (the limited child).
    #[command(name = "__nvrtc", hide = true)]
    Nvrtc,
}
