//! `rdbench-vliw`: the tree-traversal task's local simulator, for the agent and task authors.
//!
//! `run` simulates a `program.json` on inputs from a seed the user picks, checks every answer
//! against the oracle and prints the cycles; `params` prints a profile's parameters;
//! `baseline` prints the scalar starting program. It holds no secret and no optimized
//! program: scores come only from the scorer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rdbench_vliw::machine::{run_bounded, Bounds};
use rdbench_vliw::problem::{output_values, Input, Params};
use rdbench_vliw::program::{Program, MAX_PROGRAM_BYTES};

#[derive(Parser)]
#[command(
    name = "rdbench-vliw",
    about = "Simulate programs of the tree-traversal task's machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program on inputs from a seed, check the answers, print cycles.
    Run {
        program: PathBuf,
        /// The problem's parameters: a profile (tiny, full, original).
        #[arg(long, default_value = "full", conflicts_with = "params")]
        profile: String,
        /// The problem's parameters from a file (the attempt's params.json).
        #[arg(long)]
        params: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 8)]
        inputs: u64,
        /// Stop a run after this many cycles.
        #[arg(long, default_value_t = 10_000_000)]
        max_cycles: u64,
        /// Stop a run after this many executed bundles, free ones included (default: 16 per
        /// cycle of --max-cycles plus 1,000,000).
        #[arg(long)]
        max_bundles: Option<u64>,
    },
    /// Print a profile's parameters as JSON.
    Params {
        #[arg(long, default_value = "full")]
        profile: String,
    },
    /// Print the scalar baseline program for a profile.
    Baseline {
        #[arg(long, default_value = "full")]
        profile: String,
    },
}

fn main() -> ExitCode {
    match real_main(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rdbench-vliw: {e}");
            ExitCode::from(2)
        }
    }
}

fn preset(name: &str) -> Result<Params, String> {
    Params::preset(name)
        .ok_or_else(|| format!("no profile {name:?}; the profiles are tiny, full, original"))
}

fn real_main(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Params { profile } => {
            let p = preset(&profile)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&p).map_err(|e| e.to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Baseline { profile } => {
            print!(
                "{}",
                rdbench_vliw::baseline::baseline(&preset(&profile)?)?.to_json()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            program,
            profile,
            params,
            seed,
            inputs,
            max_cycles,
            max_bundles,
        } => {
            let mut bounds = Bounds::for_cycles(max_cycles);
            if let Some(b) = max_bundles {
                bounds.bundles = b;
            }
            let params = match params {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let p: Params = serde_json::from_str(&text)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    p.validate()
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    p
                }
                None => preset(&profile)?,
            };
            let bytes = rdbench_core::fsutil::read_untrusted(&program, MAX_PROGRAM_BYTES)
                .map_err(|e| format!("{}: {e}", program.display()))?;
            let prog = Program::parse(&bytes).map_err(|e| format!("{}: {e}", program.display()))?;
            let mut worst = 0;
            let mut failed = false;
            for k in 0..inputs {
                let input = Input::generate(&params, seed.wrapping_add(k));
                let mut mem = input.memory_image(&params);
                let started = std::time::Instant::now();
                match run_bounded(&prog, &mut mem, bounds) {
                    Err(fault) => {
                        println!("input {k}: {fault}");
                        failed = true;
                    }
                    Ok(stats) => {
                        let us = started.elapsed().as_secs_f64() * 1e6;
                        let (want, _) = input.solve(&params);
                        let got = output_values(&params, &mem);
                        let wrong: Vec<usize> =
                            (0..want.len()).filter(|&i| want[i] != got[i]).collect();
                        worst = worst.max(stats.cycles);
                        match wrong.first() {
                            None => println!(
                                "input {k}: {} cycles, correct ({us:.0} us simulated)",
                                stats.cycles
                            ),
                            Some(&i) => {
                                failed = true;
                                println!(
                                    "input {k}: {} cycles, WRONG: {} of {} values; walker {i}: expected {}, got {}",
                                    stats.cycles,
                                    wrong.len(),
                                    want.len(),
                                    want[i],
                                    got[i]
                                );
                            }
                        }
                    }
                }
            }
            if failed {
                println!("not correct on every input");
                Ok(ExitCode::from(1))
            } else {
                println!("correct on {inputs} inputs; most cycles: {worst}");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
