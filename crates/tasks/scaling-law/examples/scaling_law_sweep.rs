//! Measures a profile's ground-truth sweep and writes it with its provenance.
//!
//! `cargo run --release -p rdbench-task-scaling-law --example scaling_law_sweep -- PROFILE OUT.json`
//!
//! Runs, in this order: the small experiments the reference solution fits (each at most
//! budget / 50), every swept width at the full budget, at budget / 2 and at budget / 4, and a
//! second seed at a few points of the budget row (how much a run varies). Every finished run
//! is appended to `OUT.json.progress.jsonl`, and a rerun skips the runs found there, so an
//! interrupted sweep resumes. Losses do not depend on the machine (training is bit-identical
//! across thread counts, `rdbench_lm::train`'s test), only the wall time does.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rdbench_task_scaling_law::experiment::{self, Run};
use rdbench_task_scaling_law::ground_truth::{Provenance, Sweep, FORMAT};
use rdbench_task_scaling_law::profile::{self, Spec};

/// The grid of one profile.
struct Plan {
    budget_fractions: Vec<f64>,
    widths: Vec<usize>,
    /// Fractions of the experiment limit the small experiments use.
    experiment_fractions: Vec<f64>,
    experiment_widths: Vec<usize>,
    /// Widths of the budget row rerun with [`REPEAT_SEED`].
    repeat_widths: Vec<usize>,
}

const GRID_SEED: u64 = 1;
const REPEAT_SEED: u64 = 2;
const EXPERIMENT_SEED: u64 = 1;

fn plan(spec: &Spec) -> Plan {
    match spec.name.as_str() {
        "tiny" => Plan {
            budget_fractions: vec![0.25, 0.5, 1.0],
            widths: vec![8, 12, 16, 24, 32, 48, 64, 96],
            experiment_fractions: vec![1.0, 0.5, 0.25, 0.125],
            experiment_widths: vec![8, 12, 16, 24, 32, 48],
            repeat_widths: vec![16, 32],
        },
        _ => Plan {
            budget_fractions: vec![0.25, 0.5, 1.0],
            widths: vec![128, 192, 256, 384, 512, 768, 1024, 1536],
            experiment_fractions: vec![1.0, 0.5, 0.25, 0.125],
            experiment_widths: vec![64, 96, 128, 192, 256, 384],
            repeat_widths: vec![512],
        },
    }
}

fn steps(spec: &Spec, flops: f64, n_embd: usize) -> usize {
    ((flops / spec.flops_per_iter(n_embd as f64)).round() as usize).max(1)
}

fn key(n_embd: usize, max_iters: usize, seed: u64) -> (usize, usize, u64) {
    (n_embd, max_iters, seed)
}

fn load_progress(path: &Path) -> BTreeMap<(usize, usize, u64), Run> {
    let mut done = BTreeMap::new();
    if let Ok(f) = std::fs::File::open(path) {
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            if let Ok(r) = serde_json::from_str::<Run>(&line) {
                done.insert(key(r.n_embd, r.max_iters, r.seed), r);
            }
        }
    }
    done
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(out)) = (args.first(), args.get(1)) else {
        return Err("usage: scaling_law_sweep PROFILE OUT.json".into());
    };
    let spec = profile::by_name(name).ok_or("unknown profile")?;
    let out = PathBuf::from(out);
    let progress_path = PathBuf::from(format!("{}.progress.jsonl", out.display()));
    let plan = plan(&spec);
    let started_utc = sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let wall = Instant::now();
    let mut done = load_progress(&progress_path);
    let data = experiment::data(&spec)?;
    eprintln!("floor of the validation split: {:.4}", data.floor);
    let mut progress = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&progress_path)?;
    let mut get = |n_embd: usize, max_iters: usize, seed: u64| -> Result<Run, String> {
        if let Some(r) = done.get(&key(n_embd, max_iters, seed)) {
            return Ok(r.clone());
        }
        let r =
            experiment::run(&spec, &data, n_embd, max_iters, seed).map_err(|e| e.to_string())?;
        eprintln!(
            "n_embd {:4} iters {:6} flops {:.3e} loss {:.4} ({:.1} s)",
            r.n_embd, r.max_iters, r.flops, r.loss, r.train_seconds
        );
        writeln!(
            progress,
            "{}",
            serde_json::to_string(&r).map_err(|e| e.to_string())?
        )
        .map_err(|e| e.to_string())?;
        done.insert(key(n_embd, max_iters, seed), r.clone());
        Ok(r)
    };
    let mut experiments = Vec::new();
    for &frac in &plan.experiment_fractions {
        for &w in &plan.experiment_widths {
            let it = steps(&spec, frac * spec.experiment_cap(), w);
            // Rounding may step over the limit; the agent's trainer would refuse that run.
            let it = if spec.flops(w as u64, it as u64) > spec.experiment_cap() {
                it - 1
            } else {
                it
            };
            experiments.push(get(w, it, EXPERIMENT_SEED)?);
        }
    }
    let budgets: Vec<f64> = plan
        .budget_fractions
        .iter()
        .map(|f| f * spec.budget)
        .collect();
    let mut grid = vec![Vec::new(); budgets.len()];
    for (i, &b) in budgets.iter().enumerate().rev() {
        for &w in &plan.widths {
            grid[i].push(get(w, steps(&spec, b, w), GRID_SEED)?);
        }
    }
    let mut repeats = Vec::new();
    for &w in &plan.repeat_widths {
        repeats.push(get(w, steps(&spec, spec.budget, w), REPEAT_SEED)?);
    }
    let commit = sh("git", &["rev-parse", "HEAD"]);
    let dirty = !sh("git", &["status", "--porcelain"]).is_empty();
    let cpu = sh(
        "sh",
        &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
    );
    let sweep = Sweep {
        format: FORMAT.into(),
        profile: spec.name.clone(),
        spec: spec.clone(),
        budgets,
        widths: plan.widths.clone(),
        grid,
        repeats,
        experiments,
        provenance: Provenance {
            command: format!(
                "cargo run --release -p rdbench-task-scaling-law --example scaling_law_sweep -- {} {}",
                spec.name,
                out.display()
            ),
            commit: format!("{commit}{}", if dirty { " (with uncommitted changes)" } else { "" }),
            seeds: format!(
                "grid {GRID_SEED}, repeats {REPEAT_SEED}, experiments {EXPERIMENT_SEED} (initialization and batch order); \
                 corpus: profile.structure_seed, train/eval sample seeds in profile.rs"
            ),
            machine: format!("{} ({} cores)", cpu.trim(), sh("nproc", &[])),
            threads: std::env::var("RAYON_NUM_THREADS")
                .map(|t| format!("RAYON_NUM_THREADS={t}"))
                .unwrap_or_else(|_| format!("profile threads {:?}", spec.threads)),
            started_utc,
            wall_seconds: wall.elapsed().as_secs_f64(),
            training_version: rdbench_lm::TRAINING_VERSION,
        },
    };
    let text = serde_json::to_string_pretty(&sweep)?;
    std::fs::write(&out, format!("{text}\n"))?;
    eprintln!(
        "wrote {} ({:.0} s)",
        out.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
