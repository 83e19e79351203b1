//! `rdbench-scaling-law`: the scaling-law agent's trainer.
//!
//! `flops` and `limits` answer the arithmetic without training. `train` trains one model at the
//! requested width and step count, refusing anything above the experiment limit (budget / 50)
//! before training, and appends the run to a log in the caller's folder: a tool for task authors
//! working offline. An attempt's experiments run through `rdbench tool DIR train`, whose record
//! the scorer keeps.
//! The binary links no ground truth: it holds the profile and the trainer only (a test checks
//! that the sweep's text is not in it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rdbench_task_scaling_law::experiment;
use rdbench_task_scaling_law::profile::{self, Spec};

#[derive(Parser)]
#[command(
    name = "rdbench-scaling-law",
    about = "Train small models for the scaling-law task"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model and print its validation loss (refused above budget / 50).
    Train {
        #[arg(long, default_value = "tiny")]
        profile: String,
        #[arg(long)]
        n_embd: usize,
        #[arg(long)]
        max_iters: usize,
        /// Seed of the initialization and the batch order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The experiment log each run is appended to.
        #[arg(long, default_value = "experiments.jsonl")]
        log: PathBuf,
    },
    /// Print the FLOPs of a run by the task's formula.
    Flops {
        #[arg(long, default_value = "tiny")]
        profile: String,
        #[arg(long)]
        n_embd: u64,
        #[arg(long)]
        max_iters: u64,
    },
    /// Print the profile: architecture, budget, experiment limit.
    Limits {
        #[arg(long, default_value = "tiny")]
        profile: String,
    },
}

fn spec(name: &str) -> Result<Spec, String> {
    profile::by_name(name)
        .ok_or_else(|| format!("no profile {name:?}; the profiles are tiny, full"))
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Train {
            profile,
            n_embd,
            max_iters,
            seed,
            log,
        } => {
            let run = experiment::experiment(&spec(&profile)?, n_embd, max_iters, seed, &log)
                .map_err(|e| e.to_string())?;
            println!("{}", run.summary());
            Ok(())
        }
        Command::Flops {
            profile,
            n_embd,
            max_iters,
        } => {
            let spec = spec(&profile)?;
            let f = spec.flops(n_embd, max_iters);
            println!(
                "{f:.6e} FLOPs ({:.4} x the budget, {:.4} x the experiment limit)",
                f / spec.budget,
                f / spec.experiment_cap()
            );
            Ok(())
        }
        Command::Limits { profile } => {
            let spec = spec(&profile)?;
            let out = serde_json::json!({
                "profile": spec.name,
                "budget_flops": spec.budget,
                "experiment_limit_flops": spec.experiment_cap(),
                "answer_limit_flops": spec.answer_cap(),
                "flops_formula": format!(
                    "n_layer * n_embd^2 * 12 * 6 * block_size * batch_size * max_iters, n_layer = {}, block_size = {}, batch_size = {}",
                    spec.n_layer, spec.block_size, spec.batch_size
                ),
                "n_embd_range": [spec.min_n_embd, spec.max_n_embd],
                "n_embd_multiple_of": spec.n_head,
                "spec": spec,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(())
        }
    }
}
