//! Reference solution of `scaling-law` (RE-Bench's method, in rdbench's words).
//!
//! 1. Run small experiments only (each at most budget / 50): a few compute levels x a range of
//!    widths. The shipped sweep records such a set (`experiments`), measured with the agent's
//!    own trainer code.
//! 2. Fit the Chinchilla form `L(N, D) = E + A / N^alpha + B / D^beta` to them, with `N` the
//!    non-embedding parameters (`12 * n_layer * n_embd^2`) and `D` the training tokens. For
//!    each `(alpha, beta)` on a grid the model is linear in `(E, A, B)`, solved by least
//!    squares; the pair with the smallest squared error (and `A, B >= 0`) wins.
//! 3. Extrapolate: among the widths an answer may use, take the one whose fitted loss is lowest
//!    when trained on the whole budget, with as many steps as the budget allows, and predict
//!    that fitted loss.
//!
//! It is the crate `rdbench-reference-scaling-law` in `reference_solutions/` (never copied into
//! an attempt). It uses the task crate's types, so the task crate cannot depend on it: the
//! registry hands [`REFERENCE`] to `rdbench_task_scaling_law::tasks`.

use serde::Serialize;

use rdbench_task_scaling_law::answer::Answer;
use rdbench_task_scaling_law::experiment::Run;
use rdbench_task_scaling_law::profile::Spec;
use rdbench_task_scaling_law::{Reference, ReferenceAnswer};

/// The reference, as the task takes it.
pub const REFERENCE: Reference = reference;

/// The reference's answer: the law fitted to `runs` (see [`fit`]), extrapolated to the budget
/// over `widths` (see [`answer`]); `None` when too few runs are finite.
pub fn reference(spec: &Spec, runs: &[Run], widths: (usize, usize)) -> Option<ReferenceAnswer> {
    let fit = fit(spec, runs)?;
    Some(ReferenceAnswer {
        answer: answer(spec, &fit, widths),
        fit_rmse: fit.rmse,
    })
}

/// A fitted Chinchilla law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub e: f64,
    pub a: f64,
    pub alpha: f64,
    pub b: f64,
    pub beta: f64,
    /// Root-mean-square error of the fit over the experiments, nats.
    pub rmse: f64,
}

impl Fit {
    pub fn loss(&self, params: f64, tokens: f64) -> f64 {
        self.e + self.a / params.powf(self.alpha) + self.b / tokens.powf(self.beta)
    }
}

fn params(spec: &Spec, n_embd: f64) -> f64 {
    12.0 * spec.n_layer as f64 * n_embd * n_embd
}

fn tokens(spec: &Spec, max_iters: f64) -> f64 {
    max_iters * (spec.block_size * spec.batch_size) as f64
}

/// Fits the law to the finite runs of `runs` (diverged runs are dropped).
pub fn fit(spec: &Spec, runs: &[Run]) -> Option<Fit> {
    let pts: Vec<(f64, f64, f64)> = runs
        .iter()
        .filter(|r| r.loss.is_finite())
        .map(|r| {
            (
                params(spec, r.n_embd as f64),
                tokens(spec, r.max_iters as f64),
                r.loss,
            )
        })
        .collect();
    if pts.len() < 4 {
        return None;
    }
    let mut best: Option<Fit> = None;
    for ia in 1..=60 {
        for ib in 1..=60 {
            let (alpha, beta) = (ia as f64 * 0.025, ib as f64 * 0.025);
            let rows: Vec<[f64; 3]> = pts
                .iter()
                .map(|&(n, d, _)| [1.0, n.powf(-alpha), d.powf(-beta)])
                .collect();
            let ys: Vec<f64> = pts.iter().map(|p| p.2).collect();
            let Some([e, a, b]) = least_squares(&rows, &ys) else {
                continue;
            };
            if a < 0.0 || b < 0.0 {
                continue;
            }
            let sse: f64 = rows
                .iter()
                .zip(&ys)
                .map(|(r, y)| (e + a * r[1] + b * r[2] - y).powi(2))
                .sum();
            let rmse = (sse / pts.len() as f64).sqrt();
            if best.is_none_or(|f| rmse < f.rmse) {
                best = Some(Fit {
                    e,
                    a,
                    alpha,
                    b,
                    beta,
                    rmse,
                });
            }
        }
    }
    best
}

/// Solves the 3-column least-squares problem by its normal equations (Cramer's rule).
fn least_squares(rows: &[[f64; 3]], ys: &[f64]) -> Option<[f64; 3]> {
    let mut m = [[0.0; 3]; 3];
    let mut v = [0.0; 3];
    for (r, &y) in rows.iter().zip(ys) {
        for i in 0..3 {
            v[i] += r[i] * y;
            for j in 0..3 {
                m[i][j] += r[i] * r[j];
            }
        }
    }
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut mk = m;
        for i in 0..3 {
            mk[i][k] = v[i];
        }
        *o = det(&mk) / d;
    }
    out.iter().all(|x| x.is_finite()).then_some(out)
}

/// The answer the fit extrapolates to: the width in `widths` (inclusive range) with the lowest
/// fitted loss at the full budget, the most steps the budget allows, and that fitted loss.
pub fn answer(spec: &Spec, fit: &Fit, widths: (usize, usize)) -> Answer {
    let mut best = None;
    for w in widths.0..=widths.1 {
        let iters = (spec.budget / spec.flops_per_iter(w as f64))
            .floor()
            .max(1.0);
        let l = fit.loss(params(spec, w as f64), tokens(spec, iters));
        if best.is_none_or(|(_, _, bl)| l < bl) {
            best = Some((w, iters as u64, l));
        }
    }
    let (n_embd, max_iters, loss_prediction) = best.expect("a non-empty width range");
    Answer {
        n_embd: n_embd as u64,
        max_iters,
        loss_prediction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_law_it_was_given() {
        let spec = rdbench_task_scaling_law::profile::tiny();
        let truth = Fit {
            e: 2.0,
            a: 30.0,
            alpha: 0.5,
            b: 400.0,
            beta: 0.45,
            rmse: 0.0,
        };
        let mut runs = Vec::new();
        for w in [16usize, 24, 32, 48, 64] {
            for iters in [50usize, 100, 200, 400] {
                runs.push(Run {
                    n_embd: w,
                    max_iters: iters,
                    seed: 0,
                    flops: spec.flops(w as u64, iters as u64),
                    loss: truth.loss(params(&spec, w as f64), tokens(&spec, iters as f64)),
                    floor: 0.0,
                    train_seconds: 0.0,
                });
            }
        }
        let f = fit(&spec, &runs).unwrap();
        assert!(f.rmse < 1e-6, "{f:?}");
        assert!(
            (f.alpha - 0.5).abs() < 1e-9 && (f.beta - 0.45).abs() < 1e-9,
            "{f:?}"
        );
    }
}
