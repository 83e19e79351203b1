//! RE-Bench aggregation: normalized score at equal total time budgets.
//!
//! For a total budget `B` and each per-attempt time limit `L` an agent has attempts at, the
//! allocation "k attempts of L" uses `k = floor(B / L)` (skipped when `k < 1`). Its score is the
//! mean over tasks of score@k ([`crate::score_at_k`]) of that agent's attempts at that task and
//! limit. The best allocation is the one with the highest mean. The 95% interval comes from a
//! bootstrap over attempts within each task: every sample redraws each task's n attempts with
//! replacement and recomputes the mean over tasks (seeded, independent of the thread count).

use std::collections::BTreeMap;

use rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Result, ScoringError};
use crate::input::Run;
use crate::score_at_k::{method_for, score_at_k_sorted, Method};
use crate::stats::{quantile, sample_rng, tag_of};

/// Settings of the budget aggregation.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Total time budgets, minutes.
    pub budgets_minutes: Vec<f64>,
    /// Bootstrap samples for the intervals (0 = no intervals).
    pub bootstrap_samples: usize,
    pub seed: u64,
    /// Two-sided interval level, e.g. 0.95.
    pub ci_level: f64,
    /// Only runs whose task family starts with one of these prefixes; `None` = every run with a
    /// time limit.
    pub family_prefixes: Option<Vec<String>>,
    /// Further tasks or families whose score is hidden from the agent (mean, not best).
    pub hidden_score: Vec<String>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            budgets_minutes: vec![30.0, 120.0, 480.0, 1920.0],
            bootstrap_samples: 5000,
            seed: 42,
            ci_level: 0.95,
            family_prefixes: None,
            hidden_score: Vec::new(),
        }
    }
}

/// One way to spend a budget: `k` attempts of `time_limit_minutes` each.
#[derive(Debug, Clone, Serialize)]
pub struct Allocation {
    pub time_limit_minutes: f64,
    pub k: usize,
    /// Mean over tasks of score@k.
    pub score: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n_tasks: usize,
    /// Attempts behind the estimate, over all tasks.
    pub n_attempts: usize,
    /// Tasks by method: distinct draws (k <= n), with replacement (k > n), mean (hidden score).
    pub tasks_without_replacement: usize,
    pub tasks_with_replacement: usize,
    pub tasks_mean: usize,
}

/// One budget for one agent: every allocation and the best.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetResult {
    pub budget_minutes: f64,
    /// Index into `allocations` of the highest score; `None` when no allocation fits.
    pub best: Option<usize>,
    pub allocations: Vec<Allocation>,
}

impl BudgetResult {
    /// The best allocation, if any.
    pub fn best_allocation(&self) -> Option<&Allocation> {
        self.best.map(|i| &self.allocations[i])
    }
}

/// All budgets of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentBudgets {
    pub agent: String,
    pub budgets: Vec<BudgetResult>,
}

/// The budget table for every agent with time-limited attempts.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetReport {
    pub budgets_minutes: Vec<f64>,
    pub bootstrap_samples: usize,
    pub seed: u64,
    pub ci_level: f64,
    pub family_prefixes: Option<Vec<String>>,
    pub runs_used: usize,
    pub agents: Vec<AgentBudgets>,
}

/// Attempts of one agent at one task and time limit.
struct TaskScores {
    sorted: Vec<f64>,
    hidden: bool,
}

/// task -> (scores, hidden) for one agent and time limit.
type TaskMap<'a> = BTreeMap<&'a str, (Vec<f64>, bool)>;

fn limit_key(minutes: f64) -> i64 {
    (minutes * 1e6).round() as i64
}

/// Computes the budget table.
pub fn budget_scores(runs: &[Run], cfg: &BudgetConfig) -> Result<BudgetReport> {
    cfg.validate()?;
    // agent -> limit -> task -> (scores, hidden)
    let mut grouped: BTreeMap<&str, BTreeMap<i64, (f64, TaskMap)>> = BTreeMap::new();
    let mut used = 0;
    for r in runs {
        let Some(limit) = r.time_limit_minutes else {
            continue;
        };
        if let Some(prefixes) = &cfg.family_prefixes {
            if !prefixes.iter().any(|p| r.family.starts_with(p.as_str())) {
                continue;
            }
        }
        used += 1;
        let hidden = r.score_hidden
            || cfg
                .hidden_score
                .iter()
                .any(|h| h == &r.task || h == &r.family);
        let entry = grouped
            .entry(&r.agent)
            .or_default()
            .entry(limit_key(limit))
            .or_insert_with(|| (limit, BTreeMap::new()))
            .1
            .entry(&r.task)
            .or_insert_with(|| (Vec::new(), false));
        entry.0.push(r.score);
        entry.1 |= hidden;
    }
    let ci_lo_q = (1.0 - cfg.ci_level) / 2.0;
    let ci_hi_q = 1.0 - ci_lo_q;

    let mut agents = Vec::new();
    for (agent, limits) in &grouped {
        // Every (limit) cell of this agent, with the allocations it supports.
        let cells: Vec<(f64, Vec<TaskScores>)> = limits
            .values()
            .map(|(limit, tasks)| {
                let tasks = tasks
                    .values()
                    .map(|(scores, hidden)| {
                        let mut sorted = scores.clone();
                        sorted.sort_by(f64::total_cmp);
                        TaskScores {
                            sorted,
                            hidden: *hidden,
                        }
                    })
                    .collect();
                (*limit, tasks)
            })
            .collect();
        // Per cell: (budget index, allocation) for every budget the limit fits in.
        let per_cell: Vec<Vec<(usize, Allocation)>> = cells
            .par_iter()
            .map(|(limit, tasks)| {
                let ks: Vec<(usize, usize)> = cfg
                    .budgets_minutes
                    .iter()
                    .enumerate()
                    .filter_map(|(bi, b)| {
                        let k = (b / limit + 1e-9).floor();
                        (k >= 1.0).then_some((bi, k as usize))
                    })
                    .collect();
                let points: Vec<f64> = ks.iter().map(|&(_, k)| mean_score(tasks, k)).collect();
                let tag = tag_of(agent) ^ (limit_key(*limit) as u64).rotate_left(17);
                let samples: Vec<Vec<f64>> = (0..cfg.bootstrap_samples)
                    .into_par_iter()
                    .map(|b| bootstrap_sample(tasks, &ks, cfg.seed, tag, b as u64))
                    .collect();
                ks.iter()
                    .enumerate()
                    .map(|(j, &(bi, k))| {
                        let column: Vec<f64> = samples.iter().map(|s| s[j]).collect();
                        let counts = method_counts(tasks, k);
                        let allocation = Allocation {
                            time_limit_minutes: *limit,
                            k,
                            score: points[j],
                            ci_low: quantile(&column, ci_lo_q),
                            ci_high: quantile(&column, ci_hi_q),
                            n_tasks: tasks.len(),
                            n_attempts: tasks.iter().map(|t| t.sorted.len()).sum(),
                            tasks_without_replacement: counts[0],
                            tasks_with_replacement: counts[1],
                            tasks_mean: counts[2],
                        };
                        (bi, allocation)
                    })
                    .collect()
            })
            .collect();
        let budgets = cfg
            .budgets_minutes
            .iter()
            .enumerate()
            .map(|(bi, &b)| {
                let allocations: Vec<Allocation> = per_cell
                    .iter()
                    .flatten()
                    .filter(|(i, _)| *i == bi)
                    .map(|(_, a)| a.clone())
                    .collect();
                let best = allocations
                    .iter()
                    .enumerate()
                    .max_by(|x, y| x.1.score.total_cmp(&y.1.score))
                    .map(|(i, _)| i);
                BudgetResult {
                    budget_minutes: b,
                    best,
                    allocations,
                }
            })
            .collect();
        agents.push(AgentBudgets {
            agent: agent.to_string(),
            budgets,
        });
    }
    Ok(BudgetReport {
        budgets_minutes: cfg.budgets_minutes.clone(),
        bootstrap_samples: cfg.bootstrap_samples,
        seed: cfg.seed,
        ci_level: cfg.ci_level,
        family_prefixes: cfg.family_prefixes.clone(),
        runs_used: used,
        agents,
    })
}

impl BudgetConfig {
    /// Refuses settings no report can use, naming the setting.
    pub fn validate(&self) -> Result<()> {
        for &b in &self.budgets_minutes {
            if !(b > 0.0 && b.is_finite()) {
                return Err(ScoringError::Config(format!(
                    "budgets must be positive minutes, got {b}"
                )));
            }
        }
        check_ci_level(self.ci_level)
    }
}

/// A confidence interval's level must be strictly between 0 and 1.
pub(crate) fn check_ci_level(level: f64) -> Result<()> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(ScoringError::Config(format!(
            "the interval level must be in (0, 1), got {level}"
        )))
    }
}

/// How many of the tasks use each sampling method at `k` attempts: without replacement, with
/// replacement, the mean.
fn method_counts(tasks: &[TaskScores], k: usize) -> [usize; 3] {
    let mut counts = [0usize; 3];
    for t in tasks {
        counts[match method_for(t.sorted.len(), k, t.hidden) {
            Method::WithoutReplacement => 0,
            Method::WithReplacement => 1,
            Method::Mean => 2,
        }] += 1;
    }
    counts
}

fn mean_score(tasks: &[TaskScores], k: usize) -> f64 {
    let sum: f64 = tasks
        .iter()
        .map(|t| score_at_k_sorted(&t.sorted, k, method_for(t.sorted.len(), k, t.hidden)))
        .sum();
    sum / tasks.len() as f64
}

/// One bootstrap sample: each task's attempts redrawn with replacement; the mean over tasks of
/// score@k for every k in `ks`.
fn bootstrap_sample(
    tasks: &[TaskScores],
    ks: &[(usize, usize)],
    seed: u64,
    tag: u64,
    b: u64,
) -> Vec<f64> {
    let mut rng = sample_rng(seed, tag, b);
    let mut sums = vec![0.0; ks.len()];
    let mut buf = Vec::new();
    let mut counts = Vec::new();
    for t in tasks {
        let n = t.sorted.len();
        // Draw n indices into the sorted scores and expand the counts in index order: the
        // resample comes out sorted without sorting.
        counts.clear();
        counts.resize(n, 0u32);
        for _ in 0..n {
            counts[rng.gen_range(0..n)] += 1;
        }
        buf.clear();
        for (x, &c) in t.sorted.iter().zip(&counts) {
            buf.extend(std::iter::repeat_n(*x, c as usize));
        }
        for (s, &(_, k)) in sums.iter_mut().zip(ks) {
            *s += score_at_k_sorted(&buf, k, method_for(n, k, t.hidden));
        }
    }
    sums.iter().map(|s| s / tasks.len() as f64).collect()
}
