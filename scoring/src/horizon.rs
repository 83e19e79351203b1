//! METR's time horizon: per agent, a weighted logistic regression of success on
//! `x = log2(human minutes)`, and the task length at which the fitted success probability is q.
//!
//! - **Weights**: a run of agent a on task t of family f weighs
//!   `1 / n(a, t) * 1 / sqrt(F(a, f))`, where n(a, t) counts a's runs on t and F(a, f) the tasks
//!   of f that a has runs on; normalized to sum to 1 per agent ([`run_weights`]).
//! - **Fit**: minimize `C * sum(w * BCE(y, sigmoid(a + b x))) + b^2 / 2` with `C = 1 / 0.1`
//!   (L2 on the slope only, intercept free), by Newton's method with a backtracking line search,
//!   to convergence ([`fit_logistic`]). Runs of one task share x, so the fit works on one point
//!   per task holding the total weight and the weighted success; the objective is the same sum.
//! - **Success**: the binarized score (METR's `score_binarized` when present, else
//!   `score > threshold`, 0.9 by default), or with [`Outcome::Soft`] the score in [0, 1] as a soft
//!   label (the same objective METR gets by splitting a fractional run into weighted 0 and 1).
//! - **Horizon** at probability q: `2^((ln(q / (1 - q)) - a) / b)`. An agent that fails every run
//!   has horizon 0; one that succeeds at every run has an unbounded horizon.
//! - **Intervals**: a hierarchical bootstrap with one resample shared by every agent: task
//!   families with replacement; the tasks of each drawn family copy with replacement; then, in
//!   every (task, agent) group, with the copies of a task drawn more than once pooled, runs with
//!   replacement. Weights are not renormalized. A sample in which an agent's drawn outcomes are
//!   all equal gives NaN for that agent and is skipped. Percentiles 2.5 and 97.5 by default.
//!   Each sample has its own random stream derived from the seed and its index, so results are
//!   the same for any thread count and any order of the input runs.

use std::collections::BTreeMap;

use rand::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Location, Result, ScoringError};
use crate::input::Run;
use crate::stats::{quantile_sorted, sample_rng};

/// How a run's outcome (the regression's label) is derived from its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// 1 if `score > threshold`, else 0. With `use_provided`, a recorded binarized score (METR's
    /// `score_binarized`) takes precedence.
    Binary { threshold: f64, use_provided: bool },
    /// The score itself, which must lie in [0, 1].
    Soft,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome::Binary {
            threshold: 0.9,
            use_provided: true,
        }
    }
}

/// Settings of the time-horizon computation.
#[derive(Debug, Clone)]
pub struct HorizonConfig {
    /// L2 strength on the slope (METR: 0.1, i.e. C = 10).
    pub regularization: f64,
    pub outcome: Outcome,
    /// Success probabilities at which to report horizons (0.5 and 0.8 by default).
    pub success_probabilities: Vec<f64>,
    /// Bootstrap samples (0 = no intervals).
    pub bootstrap_samples: usize,
    pub seed: u64,
    /// Two-sided interval level, e.g. 0.95.
    pub ci_level: f64,
}

impl Default for HorizonConfig {
    fn default() -> Self {
        HorizonConfig {
            regularization: 0.1,
            outcome: Outcome::default(),
            success_probabilities: vec![0.5, 0.8],
            bootstrap_samples: 1000,
            seed: 42,
            ci_level: 0.95,
        }
    }
}

/// One point of the regression: a task's x, the total weight of its runs, and the weighted
/// sum of their outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub weight: f64,
    pub weighted_success: f64,
}

/// A fitted logistic curve `P(success) = sigmoid(intercept + slope * x)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LogisticFit {
    pub intercept: f64,
    pub slope: f64,
    pub iterations: usize,
    pub converged: bool,
}

impl LogisticFit {
    /// Success probability at `x = log2(minutes)`.
    pub fn probability(&self, x: f64) -> f64 {
        1.0 / (1.0 + (-(self.intercept + self.slope * x)).exp())
    }

    /// Horizon in minutes at success probability `q`: `2^((logit(q) - intercept) / slope)`.
    pub fn horizon(&self, q: f64) -> f64 {
        ((q / (1.0 - q)).ln() - self.intercept) / self.slope
    }
}

/// Objective, gradient and Hessian of the penalized weighted BCE at (a, b).
fn evaluate(points: &[Point], c: f64, a: f64, b: f64) -> (f64, [f64; 2], [f64; 3]) {
    let (mut f, mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        let eta = a + b * p.x;
        let e = (-eta.abs()).exp();
        // softplus(eta) = log(1 + e^eta), stable for either sign.
        let softplus = eta.max(0.0) + e.ln_1p();
        let prob = if eta >= 0.0 {
            1.0 / (1.0 + e)
        } else {
            e / (1.0 + e)
        };
        f += p.weight * softplus - p.weighted_success * eta;
        let r = p.weight * prob - p.weighted_success;
        g0 += r;
        g1 += r * p.x;
        let h = p.weight * prob * (1.0 - prob);
        h00 += h;
        h01 += h * p.x;
        h11 += h * p.x * p.x;
    }
    (
        c * f + 0.5 * b * b,
        [c * g0, c * g1 + b],
        [c * h00, c * h01, c * h11 + 1.0],
    )
}

/// Minimizes `C * sum(weight * BCE) + slope^2 / 2` over (intercept, slope) from a starting
/// guess, by Newton's method with backtracking. The objective is strictly convex in the slope
/// and, when outcomes are not all equal, in the intercept, so this converges to the unique
/// minimum (to about 1e-12 relative in the parameters).
pub fn fit_logistic_from(points: &[Point], c: f64, start: (f64, f64)) -> LogisticFit {
    let (mut a, mut b) = start;
    let (mut f, mut g, mut h) = evaluate(points, c, a, b);
    let mut converged = false;
    let mut iterations = 0;
    while iterations < 200 {
        iterations += 1;
        let det = h[0] * h[2] - h[1] * h[1];
        if det.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !det.is_finite() {
            break;
        }
        let da = (h[2] * g[0] - h[1] * g[1]) / det;
        let db = (h[0] * g[1] - h[1] * g[0]) / det;
        // Newton decrement: the predicted decrease of the objective.
        let decrement = g[0] * da + g[1] * db;
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let (na, nb) = (a - t * da, b - t * db);
            let (nf, ng, nh) = evaluate(points, c, na, nb);
            if nf <= f - 1e-4 * t * decrement || (nf - f).abs() <= 1e-15 * f.abs().max(1.0) {
                a = na;
                b = nb;
                f = nf;
                g = ng;
                h = nh;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        let step = (t * da).abs().max((t * db).abs());
        if !accepted || step <= 1e-13 * (1.0 + a.abs().max(b.abs())) || decrement < 1e-26 {
            converged = accepted || decrement < 1e-20;
            break;
        }
    }
    LogisticFit {
        intercept: a,
        slope: b,
        iterations,
        converged,
    }
}

/// [`fit_logistic_from`] starting from the intercept of the weighted mean outcome and slope 0.
pub fn fit_logistic(points: &[Point], c: f64) -> LogisticFit {
    let w: f64 = points.iter().map(|p| p.weight).sum();
    let s: f64 = points.iter().map(|p| p.weighted_success).sum();
    let mean = (s / w).clamp(1e-6, 1.0 - 1e-6);
    fit_logistic_from(points, c, ((mean / (1.0 - mean)).ln(), 0.0))
}

/// Each run's weight: `1 / n(agent, task) / sqrt(tasks of the family the agent has runs on)`,
/// normalized to sum to 1 per agent. Returned in the order of `runs`.
pub fn run_weights(runs: &[Run]) -> Vec<f64> {
    let refs: Vec<&Run> = runs.iter().collect();
    run_weights_of(&refs)
}

fn run_weights_of(runs: &[&Run]) -> Vec<f64> {
    let mut per_task: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut family_tasks: BTreeMap<(&str, &str), std::collections::BTreeSet<&str>> =
        BTreeMap::new();
    for r in runs {
        *per_task.entry((&r.agent, &r.task)).or_default() += 1;
        family_tasks
            .entry((&r.agent, &r.family))
            .or_default()
            .insert(&r.task);
    }
    // Per agent: sum of raw weights = sum over its families of sqrt(F).
    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    for ((agent, _), tasks) in &family_tasks {
        *totals.entry(agent).or_default() += (tasks.len() as f64).sqrt();
    }
    runs.iter()
        .map(|r| {
            let n = per_task[&(r.agent.as_str(), r.task.as_str())] as f64;
            let fam = family_tasks[&(r.agent.as_str(), r.family.as_str())].len() as f64;
            1.0 / n / fam.sqrt() / totals[r.agent.as_str()]
        })
        .collect()
}

/// Whether an agent's outcomes allowed a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitStatus {
    Fitted,
    /// Every outcome 0: horizons are 0.
    AllFailure,
    /// Every outcome 1: horizons are unbounded.
    AllSuccess,
}

/// The horizon at one success probability, with its bootstrap interval.
#[derive(Debug, Clone, Serialize)]
pub struct HorizonAt {
    /// Success probability, e.g. 0.5 for p50.
    pub probability: f64,
    /// Minutes; `None` means unbounded (an agent that never failed).
    pub minutes: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Bootstrap samples that gave a value (the others had constant outcomes).
    pub valid_samples: usize,
}

/// Weighted success rate of the runs in one bin of human minutes.
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    pub minutes_low: f64,
    pub minutes_high: f64,
    pub success_rate: f64,
    pub runs: usize,
}

/// One task's weighted success rate for one agent (for plots).
#[derive(Debug, Clone, Serialize)]
pub struct TaskRate {
    pub task: String,
    pub human_minutes: f64,
    pub success_rate: f64,
    pub runs: usize,
}

/// The time horizon of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentHorizon {
    pub agent: String,
    pub runs: usize,
    pub tasks: usize,
    pub families: usize,
    pub status: FitStatus,
    /// `None` unless `status` is `Fitted`.
    pub fit: Option<LogisticFit>,
    /// Weighted mean outcome.
    pub average_success: f64,
    /// Weighted mean BCE of the fit (weights scaled to mean 1, as METR reports it).
    pub bce_loss: Option<f64>,
    pub horizons: Vec<HorizonAt>,
    pub bins: Vec<Bin>,
    pub task_rates: Vec<TaskRate>,
}

/// Time horizons of every agent with human-minute data.
#[derive(Debug, Clone, Serialize)]
pub struct HorizonReport {
    pub regularization: f64,
    pub outcome: Outcome,
    pub bootstrap_samples: usize,
    pub seed: u64,
    pub ci_level: f64,
    pub runs_used: usize,
    /// Runs left out because they have no human minutes.
    pub runs_without_human_minutes: usize,
    pub agents: Vec<AgentHorizon>,
    /// Bootstrap horizons: `samples[i][agent][q]` (NaN where the sample was skipped); kept for
    /// CSV export, not serialized.
    #[serde(skip)]
    pub samples: Vec<Vec<Vec<f64>>>,
}

/// The runs of one agent on one task.
struct Group {
    task: usize,
    /// Weight of each run (equal within a group).
    weight: f64,
    /// Outcomes, sorted ascending (so resampling does not depend on input order).
    outcomes: Vec<f64>,
}

/// Runs arranged for fitting and resampling; tasks and families are indexed in name order.
struct Prepared {
    agents: Vec<String>,
    /// log2 human minutes per task.
    task_x: Vec<f64>,
    /// Tasks of each family.
    family_tasks: Vec<Vec<usize>>,
    /// Groups per agent, in task order.
    groups: Vec<Vec<Group>>,
}

fn outcome_of(r: &Run, outcome: Outcome) -> Result<f64> {
    match outcome {
        Outcome::Binary {
            threshold,
            use_provided,
        } => Ok(match r.score_binarized {
            Some(b) if use_provided => b,
            _ => (r.score > threshold) as u8 as f64,
        }),
        Outcome::Soft => {
            if (0.0..=1.0).contains(&r.score) {
                Ok(r.score)
            } else {
                Err(ScoringError::BadField {
                    at: r.at.clone(),
                    field: "score",
                    message: format!(
                        "soft labels need a score in [0, 1], got {} (binarize with a threshold instead)",
                        r.score
                    ),
                })
            }
        }
    }
}

fn prepare(runs: &[&Run], outcome: Outcome) -> Result<(Prepared, Vec<f64>)> {
    // Tasks must have one family and one human time.
    let mut task_info: BTreeMap<&str, (&str, f64, &Location)> = BTreeMap::new();
    for r in runs {
        let minutes = r
            .human_minutes
            .expect("filtered to runs with human minutes");
        match task_info.get(r.task.as_str()) {
            None => {
                task_info.insert(&r.task, (&r.family, minutes, &r.at));
            }
            Some((family, m, first)) => {
                if *family != r.family {
                    return Err(ScoringError::BadField {
                        at: r.at.clone(),
                        field: "task_family",
                        message: format!(
                            "task `{}` is in family `{}` here but `{family}` at {first}",
                            r.task, r.family
                        ),
                    });
                }
                if (m - minutes).abs() > 1e-9 * m.abs().max(1.0) {
                    return Err(ScoringError::BadField {
                        at: r.at.clone(),
                        field: "human_minutes",
                        message: format!(
                            "task `{}` has {minutes} human minutes here but {m} at {first}",
                            r.task
                        ),
                    });
                }
            }
        }
    }
    let task_names: Vec<&str> = task_info.keys().copied().collect();
    let task_index: BTreeMap<&str, usize> = task_names
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i))
        .collect();
    let task_x: Vec<f64> = task_names.iter().map(|t| task_info[t].1.log2()).collect();
    let mut families: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, t) in task_names.iter().enumerate() {
        families.entry(task_info[t].0).or_default().push(i);
    }
    let weights = run_weights_of(runs);
    let mut by_agent: BTreeMap<&str, BTreeMap<usize, (f64, Vec<f64>)>> = BTreeMap::new();
    for (r, w) in runs.iter().zip(&weights) {
        let y = outcome_of(r, outcome)?;
        let g = by_agent
            .entry(&r.agent)
            .or_default()
            .entry(task_index[r.task.as_str()])
            .or_insert((*w, Vec::new()));
        g.1.push(y);
    }
    let agents = by_agent.keys().map(|a| a.to_string()).collect();
    let groups = by_agent
        .into_values()
        .map(|tasks| {
            tasks
                .into_iter()
                .map(|(task, (weight, mut outcomes))| {
                    outcomes.sort_by(f64::total_cmp);
                    Group {
                        task,
                        weight,
                        outcomes,
                    }
                })
                .collect()
        })
        .collect();
    Ok((
        Prepared {
            agents,
            task_x,
            family_tasks: families.into_values().collect(),
            groups,
        },
        weights,
    ))
}

/// Point-estimate fit of one agent's groups.
fn point_fit(groups: &[Group], task_x: &[f64], c: f64) -> (FitStatus, Option<LogisticFit>) {
    let all = |v: f64| groups.iter().all(|g| g.outcomes.iter().all(|&y| y == v));
    if all(0.0) {
        return (FitStatus::AllFailure, None);
    }
    if all(1.0) {
        return (FitStatus::AllSuccess, None);
    }
    let points: Vec<Point> = groups
        .iter()
        .map(|g| Point {
            x: task_x[g.task],
            weight: g.weight * g.outcomes.len() as f64,
            weighted_success: g.weight * g.outcomes.iter().sum::<f64>(),
        })
        .collect();
    (FitStatus::Fitted, Some(fit_logistic(&points, c)))
}

/// Horizon in minutes for a status and fit; `None` = unbounded.
fn horizon_minutes(status: FitStatus, fit: Option<&LogisticFit>, q: f64) -> Option<f64> {
    match (status, fit) {
        (FitStatus::AllFailure, _) => Some(0.0),
        (FitStatus::AllSuccess, _) => None,
        (FitStatus::Fitted, Some(f)) => {
            let m = f.horizon(q).exp2();
            m.is_finite().then_some(m)
        }
        (FitStatus::Fitted, None) => unreachable!("fitted status carries a fit"),
    }
}

/// Computes every agent's time horizon and, with `bootstrap_samples > 0`, its intervals.
pub fn time_horizons(runs: &[Run], cfg: &HorizonConfig) -> Result<HorizonReport> {
    cfg.validate()?;
    let c = 1.0 / cfg.regularization;
    let used: Vec<&Run> = runs.iter().filter(|r| r.human_minutes.is_some()).collect();
    let without = runs.len() - used.len();
    // An agent with a single run cannot be fitted or bootstrapped meaningfully.
    let mut counts: BTreeMap<&str, (usize, &Location)> = BTreeMap::new();
    for r in &used {
        counts.entry(&r.agent).or_insert((0, &r.at)).0 += 1;
    }
    if let Some((agent, (n, at))) = counts.iter().find(|(_, (n, _))| *n < 2) {
        return Err(ScoringError::TooFewRuns {
            at: (*at).clone(),
            agent: agent.to_string(),
            runs: *n,
        });
    }
    let (prep, weights) = prepare(&used, cfg.outcome)?;
    let qs = &cfg.success_probabilities;

    let fits: Vec<(FitStatus, Option<LogisticFit>)> = prep
        .groups
        .par_iter()
        .map(|g| point_fit(g, &prep.task_x, c))
        .collect();

    let samples: Vec<Vec<Vec<f64>>> = (0..cfg.bootstrap_samples)
        .into_par_iter()
        .map(|b| bootstrap_sample(&prep, &fits, qs, c, cfg.seed, b as u64))
        .collect();

    let lo_q = (1.0 - cfg.ci_level) / 2.0;
    let hi_q = 1.0 - lo_q;
    let mut agents = Vec::with_capacity(prep.agents.len());
    for (ai, agent) in prep.agents.iter().enumerate() {
        let groups = &prep.groups[ai];
        let (status, fit) = fits[ai];
        let horizons = qs
            .iter()
            .enumerate()
            .map(|(qi, &q)| {
                let mut vals: Vec<f64> = samples
                    .iter()
                    .map(|s| s[ai][qi])
                    .filter(|v| !v.is_nan())
                    .collect();
                vals.sort_by(f64::total_cmp);
                let (lo, hi) = if vals.is_empty() {
                    (None, None)
                } else {
                    let l = quantile_sorted(&vals, lo_q);
                    let h = quantile_sorted(&vals, hi_q);
                    (l.is_finite().then_some(l), h.is_finite().then_some(h))
                };
                HorizonAt {
                    probability: q,
                    minutes: horizon_minutes(status, fit.as_ref(), q),
                    ci_low: lo,
                    ci_high: hi,
                    valid_samples: vals.len(),
                }
            })
            .collect();
        let total_w: f64 = groups
            .iter()
            .map(|g| g.weight * g.outcomes.len() as f64)
            .sum();
        let total_s: f64 = groups
            .iter()
            .map(|g| g.weight * g.outcomes.iter().sum::<f64>())
            .sum();
        let bce_loss = fit.map(|f| weighted_bce(&f, groups, &prep.task_x, total_w));
        let families = family_count(groups, &prep.family_tasks);
        agents.push(AgentHorizon {
            agent: agent.clone(),
            runs: groups.iter().map(|g| g.outcomes.len()).sum(),
            tasks: groups.len(),
            families,
            status,
            fit,
            average_success: total_s / total_w,
            bce_loss,
            horizons,
            bins: bins(groups, &prep.task_x),
            task_rates: Vec::new(),
        });
    }
    // Per-task rates, named.
    let mut task_names: Vec<&str> = used.iter().map(|r| r.task.as_str()).collect();
    task_names.sort_unstable();
    task_names.dedup();
    for (ai, a) in agents.iter_mut().enumerate() {
        a.task_rates = prep.groups[ai]
            .iter()
            .map(|g| TaskRate {
                task: task_names[g.task].to_string(),
                human_minutes: prep.task_x[g.task].exp2(),
                success_rate: g.outcomes.iter().sum::<f64>() / g.outcomes.len() as f64,
                runs: g.outcomes.len(),
            })
            .collect();
    }
    debug_assert_eq!(weights.len(), used.len());
    Ok(HorizonReport {
        regularization: cfg.regularization,
        outcome: cfg.outcome,
        bootstrap_samples: cfg.bootstrap_samples,
        seed: cfg.seed,
        ci_level: cfg.ci_level,
        runs_used: used.len(),
        runs_without_human_minutes: without,
        agents,
        samples,
    })
}

impl HorizonConfig {
    /// Refuses settings no fit can use, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if !(self.regularization > 0.0 && self.regularization.is_finite()) {
            return Err(ScoringError::Config(format!(
                "regularization must be positive, got {}",
                self.regularization
            )));
        }
        crate::budget::check_ci_level(self.ci_level)?;
        for &q in &self.success_probabilities {
            if !(q > 0.0 && q < 1.0) {
                return Err(ScoringError::Config(format!(
                    "success probabilities must be in (0, 1), got {q}"
                )));
            }
        }
        if let Outcome::Binary { threshold, .. } = self.outcome {
            if !threshold.is_finite() {
                return Err(ScoringError::Config(format!("bad threshold {threshold}")));
            }
        }
        Ok(())
    }
}

/// The mean weighted binary cross-entropy of `fit` over an agent's runs.
fn weighted_bce(fit: &LogisticFit, groups: &[Group], task_x: &[f64], total_w: f64) -> f64 {
    let n: usize = groups.iter().map(|g| g.outcomes.len()).sum();
    let mean_w = total_w / n as f64;
    let mut loss = 0.0;
    for g in groups {
        let p = fit.probability(task_x[g.task]).clamp(1e-15, 1.0 - 1e-15);
        for &y in &g.outcomes {
            loss -= g.weight / mean_w * (y * p.ln() + (1.0 - y) * (1.0 - p).ln());
        }
    }
    loss / n as f64
}

/// How many task families an agent's runs cover.
fn family_count(groups: &[Group], family_tasks: &[Vec<usize>]) -> usize {
    let mut families = std::collections::BTreeSet::new();
    for g in groups {
        let family = family_tasks
            .iter()
            .position(|tasks| tasks.contains(&g.task))
            .expect("every task has a family");
        families.insert(family);
    }
    families.len()
}

/// Weighted success rates in bins of human minutes at powers of 4.
fn bins(groups: &[Group], task_x: &[f64]) -> Vec<Bin> {
    let mut acc: BTreeMap<i64, (f64, f64, usize)> = BTreeMap::new();
    for g in groups {
        let bin = (task_x[g.task] / 2.0).floor() as i64;
        let e = acc.entry(bin).or_default();
        e.0 += g.weight * g.outcomes.len() as f64;
        e.1 += g.weight * g.outcomes.iter().sum::<f64>();
        e.2 += g.outcomes.len();
    }
    acc.into_iter()
        .map(|(bin, (w, s, n))| Bin {
            minutes_low: 4f64.powi(bin as i32),
            minutes_high: 4f64.powi(bin as i32 + 1),
            success_rate: s / w,
            runs: n,
        })
        .collect()
}

/// One hierarchical bootstrap sample: horizons[agent][q], NaN where skipped.
fn bootstrap_sample(
    prep: &Prepared,
    fits: &[(FitStatus, Option<LogisticFit>)],
    qs: &[f64],
    c: f64,
    seed: u64,
    b: u64,
) -> Vec<Vec<f64>> {
    let mut rng = sample_rng(seed, 0x0068_6f72_697a_6f6e, b);
    let mut mult = vec![0u32; prep.task_x.len()];
    let nf = prep.family_tasks.len();
    for _ in 0..nf {
        let tasks = &prep.family_tasks[rng.gen_range(0..nf)];
        for _ in 0..tasks.len() {
            mult[tasks[rng.gen_range(0..tasks.len())]] += 1;
        }
    }
    let mut points = Vec::new();
    prep.groups
        .iter()
        .zip(fits)
        .map(|(groups, (_, point))| {
            points.clear();
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for g in groups {
                let m = mult[g.task] as usize;
                if m == 0 {
                    continue;
                }
                let n = g.outcomes.len();
                let draws = m * n;
                let mut sum = 0.0;
                for _ in 0..draws {
                    let y = g.outcomes[rng.gen_range(0..n)];
                    sum += y;
                    lo = lo.min(y);
                    hi = hi.max(y);
                }
                points.push(Point {
                    x: prep.task_x[g.task],
                    weight: g.weight * draws as f64,
                    weighted_success: g.weight * sum,
                });
            }
            if points.is_empty() || lo == hi {
                return vec![f64::NAN; qs.len()];
            }
            let fit = match point {
                Some(p) => fit_logistic_from(&points, c, (p.intercept, p.slope)),
                None => fit_logistic(&points, c),
            };
            qs.iter().map(|&q| fit.horizon(q).exp2()).collect()
        })
        .collect()
}
