//! Synthetic data sets shaped like METR's published runs, for tests and benchmarks.
//!
//! [`metr_like`] draws task families of uneven size, tasks with human times spread log-uniformly
//! from about half a minute to a day, agents whose 50% horizons range from under a minute to a
//! few hours, per-task and per-family difficulty offsets, and 1 to 8 runs per agent and task
//! (some agents skip some tasks). A few one-task RE-Bench-style families (`ai_rd_*`) get
//! continuous scores and 30-minute or 2-hour time limits; the rest are binary with a 10-hour
//! limit, as in METR's data.

use std::path::PathBuf;

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::Location;
use crate::input::{Format, Run, METR_HIDDEN_SCORE_FAMILIES};

/// Size of a synthetic data set.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub agents: usize,
    pub tasks: usize,
    /// Families of RE-Bench-style tasks (one task each, continuous scores), included in `tasks`.
    pub rebench_tasks: usize,
    /// Mean runs per agent and task.
    pub mean_runs: f64,
    /// Probability that an agent has runs on a given task.
    pub coverage: f64,
    pub seed: u64,
}

impl Default for SynthConfig {
    /// About 7,000 runs, 170 tasks and 10 agents: the size of METR's 2025 data.
    fn default() -> Self {
        SynthConfig {
            agents: 10,
            tasks: 170,
            rebench_tasks: 7,
            mean_runs: 4.5,
            coverage: 0.9,
            seed: 7,
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A METR-like synthetic data set.
pub fn metr_like(cfg: &SynthConfig) -> Vec<Run> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    struct Task {
        name: String,
        family: String,
        x: f64,
        offset: f64,
        rebench: bool,
    }
    let mut tasks = Vec::with_capacity(cfg.tasks);
    let rebench_names = [
        "ai_rd_fix_embedding",
        "ai_rd_nanogpt_chat_rl",
        "ai_rd_optimize_llm_foundry",
        "ai_rd_restricted_mlm",
        "ai_rd_rust_codecontests_inference",
        "ai_rd_small_scaling_law",
        "ai_rd_triton_cumsum",
    ];
    for i in 0..cfg.rebench_tasks.min(cfg.tasks) {
        let family = rebench_names
            .get(i)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("ai_rd_synthetic_{i}"));
        tasks.push(Task {
            name: format!("{family}/main"),
            family,
            x: (480.0f64).log2() + 0.3 * normal(&mut rng),
            offset: 0.5 * normal(&mut rng),
            rebench: true,
        });
    }
    let mut family_index = 0;
    while tasks.len() < cfg.tasks {
        // Family sizes 1..=8, skewed small, like METR's.
        let size = (1 + (rng.gen::<f64>().powi(2) * 8.0) as usize).min(cfg.tasks - tasks.len());
        let family = format!("family_{family_index:03}");
        family_index += 1;
        let centre: f64 = rng.gen_range(-1.0..10.5);
        let family_offset = 0.7 * normal(&mut rng);
        for j in 0..size {
            tasks.push(Task {
                name: format!("{family}/task_{j}"),
                family: family.clone(),
                x: (centre + 0.8 * normal(&mut rng)).clamp(-1.5, 11.0),
                offset: family_offset + 0.8 * normal(&mut rng),
                rebench: false,
            });
        }
    }
    let mut runs = Vec::new();
    let path = PathBuf::from("synthetic");
    for a in 0..cfg.agents {
        let agent = format!("agent-{a:02}");
        // 50% horizons from about 0.5 minutes to about 4 hours, log2 spaced.
        let p50_x = -1.0 + 9.0 * a as f64 / (cfg.agents.max(2) - 1) as f64 + 0.3 * normal(&mut rng);
        let slope = -0.55 + 0.12 * normal(&mut rng);
        let skill = (a as f64 / cfg.agents.max(1) as f64) - 0.2;
        for t in &tasks {
            if rng.gen::<f64>() > cfg.coverage {
                continue;
            }
            let n = 1 + (rng.gen::<f64>() * (2.0 * cfg.mean_runs - 1.0)) as usize;
            for r in 0..n {
                let id = runs.len();
                let (score, limit_minutes) = if t.rebench {
                    let limit = if r % 5 == 4 { 120.0 } else { 30.0 };
                    let bonus = if limit > 30.0 { 0.15 } else { 0.0 };
                    let s =
                        (skill + bonus + t.offset * 0.3 + 0.25 * normal(&mut rng)).clamp(0.0, 1.4);
                    (s, limit)
                } else {
                    let p = sigmoid(slope * (t.x - p50_x) - t.offset);
                    ((rng.gen::<f64>() < p) as u8 as f64, 600.0)
                };
                runs.push(Run {
                    run_id: format!("synthetic-{id}"),
                    agent: agent.clone(),
                    task: t.name.clone(),
                    family: t.family.clone(),
                    time_limit_minutes: Some(limit_minutes),
                    score,
                    score_binarized: Some((score > 0.9) as u8 as f64),
                    human_minutes: Some(t.x.exp2()),
                    score_hidden: METR_HIDDEN_SCORE_FAMILIES.contains(&t.family.as_str()),
                    format: Format::Metr,
                    at: Location {
                        path: path.clone(),
                        line: id + 1,
                    },
                });
            }
        }
    }
    runs
}

/// Writes runs in METR's JSON-lines format (the fields [`crate::input`] reads).
pub fn to_metr_jsonl(runs: &[Run]) -> String {
    let mut out = String::new();
    for r in runs {
        let v = serde_json::json!({
            "run_id": r.run_id,
            "task_id": r.task,
            "task_family": r.family,
            "alias": r.agent,
            "score": r.score,
            "score_binarized": r.score_binarized,
            "human_minutes": r.human_minutes,
            "time_limit": r.time_limit_minutes.map(|m| m * 60.0).unwrap_or(0.0),
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}
