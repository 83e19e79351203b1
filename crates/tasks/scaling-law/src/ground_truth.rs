//! The ground truth: a measured sweep, and the loss surface interpolated from it.
//!
//! RE-Bench's original interpolates loss over the step count alone, so any width at the right
//! step count scores the maximum. Here the loss of an answer depends on both: the sweep trained
//! every swept width at every swept compute budget (the full budget and a few fractions of it),
//! and [`Surface::loss`] interpolates bilinearly in (ln FLOPs, ln n_embd).
//!
//! Rules, in [`Surface::loss`]:
//! - the width must lie within the swept widths, and the FLOPs between the lowest swept budget
//!   and 1.1 x the budget; anything else is outside what was measured and is invalid;
//! - FLOPs between the budget and 1.1 x the budget count as the budget: the 10 % is a tolerance
//!   for rounding the step count, not extra compute;
//! - the optimum [`Surface::optimum`] is the lowest loss on the budget row. The surface is
//!   piecewise linear in ln n_embd along that row, so the minimum lies on a swept width.

use serde::{Deserialize, Serialize};

use crate::experiment::Run;
use crate::profile::Spec;

/// A shipped sweep: the grid of runs and how it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub format: String,
    pub profile: String,
    /// The profile the sweep was run with; a changed profile makes the sweep stale.
    pub spec: Spec,
    /// Compute budgets of the rows, ascending; the last is the profile's budget.
    pub budgets: Vec<f64>,
    /// Widths of the columns, ascending.
    pub widths: Vec<usize>,
    /// `grid[i][j]`: the run at `budgets[i]` and `widths[j]`.
    pub grid: Vec<Vec<Run>>,
    /// Repeats of some grid points with other seeds: how much a run varies.
    #[serde(default)]
    pub repeats: Vec<Run>,
    /// Small experiments (at most budget / 50), as an agent could run them: the input of the
    /// reference solution.
    #[serde(default)]
    pub experiments: Vec<Run>,
    pub provenance: Provenance,
}

/// How a sweep was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub command: String,
    pub commit: String,
    pub seeds: String,
    pub machine: String,
    pub threads: String,
    pub started_utc: String,
    pub wall_seconds: f64,
    /// [`rdbench_lm::TRAINING_VERSION`] of the trainer that measured it (0: before the field
    /// existed). A test requires the shipped sweep's to be the current one: the agent's
    /// experiments must train exactly as the ground truth did.
    #[serde(default)]
    pub training_version: u32,
}

pub const FORMAT: &str = "rdbench-scaling-law-sweep/1";

/// Why an answer is outside the measured surface.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutOfRange {
    #[error("n_embd {n_embd} is outside the swept widths {min}..={max}")]
    Width { n_embd: u64, min: usize, max: usize },
    #[error(
        "n_embd {n_embd} x max_iters {max_iters} is {flops:.4e} FLOPs, above 1.1 x the budget \
         ({cap:.4e})"
    )]
    OverBudget {
        n_embd: u64,
        max_iters: u64,
        flops: f64,
        cap: f64,
    },
    #[error(
        "n_embd {n_embd} x max_iters {max_iters} is {flops:.4e} FLOPs, below the lowest swept \
         budget ({lowest:.4e} = budget / {ratio:.0}); a compute-optimal answer uses about the \
         whole budget of {budget:.4e}"
    )]
    UnderBudget {
        n_embd: u64,
        max_iters: u64,
        flops: f64,
        lowest: f64,
        ratio: f64,
        budget: f64,
    },
}

/// The interpolated loss surface of one sweep.
#[derive(Debug, Clone)]
pub struct Surface {
    spec: Spec,
    ln_budgets: Vec<f64>,
    ln_widths: Vec<f64>,
    widths: Vec<usize>,
    /// `loss[i][j]` at `budgets[i]`, `widths[j]`.
    loss: Vec<Vec<f64>>,
}

/// Where the optimum lies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Optimum {
    pub n_embd: usize,
    pub loss: f64,
}

impl Surface {
    /// Builds the surface, checking the sweep's shape and that it was run with `spec`.
    pub fn new(sweep: &Sweep, spec: &Spec) -> Result<Surface, String> {
        if sweep.format != FORMAT {
            return Err(format!(
                "sweep format {:?}, expected {FORMAT:?}",
                sweep.format
            ));
        }
        if &sweep.spec != spec {
            return Err(format!(
                "the sweep of profile {} was run with another profile definition; rerun it",
                spec.name
            ));
        }
        let ascending = |v: &[f64]| v.windows(2).all(|w| w[0] < w[1]);
        let ln_budgets: Vec<f64> = sweep.budgets.iter().map(|b| b.ln()).collect();
        let ln_widths: Vec<f64> = sweep.widths.iter().map(|&w| (w as f64).ln()).collect();
        if ln_budgets.len() < 2 || ln_widths.len() < 2 {
            return Err("a sweep needs at least two budgets and two widths".into());
        }
        if !ascending(&ln_budgets) || !ascending(&ln_widths) {
            return Err("the sweep's budgets and widths must be ascending".into());
        }
        if sweep.budgets.last() != Some(&spec.budget) {
            return Err("the sweep's last budget must be the profile's budget".into());
        }
        if sweep.grid.len() != sweep.budgets.len()
            || sweep.grid.iter().any(|r| r.len() != sweep.widths.len())
        {
            return Err("the sweep's grid does not match its budgets and widths".into());
        }
        let mut loss = Vec::new();
        for (row, &budget) in sweep.grid.iter().zip(&sweep.budgets) {
            let mut l = Vec::new();
            for (run, &w) in row.iter().zip(&sweep.widths) {
                // Rounding the step count to an integer moves a point off its budget by half
                // a step at most (2 % for the widest tiny runs); more means the grid is mislabelled.
                let off = (run.flops - budget).abs();
                let step = spec.flops_per_iter(w as f64);
                if run.n_embd != w || off > 0.5 * step + 1.0 || !run.loss.is_finite() {
                    return Err(format!(
                        "sweep point n_embd {} at {:.3e} FLOPs does not belong at width {w}, budget {budget:.3e}",
                        run.n_embd, run.flops
                    ));
                }
                l.push(run.loss);
            }
            loss.push(l);
        }
        Ok(Surface {
            spec: spec.clone(),
            ln_budgets,
            ln_widths,
            widths: sweep.widths.clone(),
            loss,
        })
    }

    /// The ground-truth loss of training width `n_embd` for `max_iters` steps.
    pub fn loss(&self, n_embd: u64, max_iters: u64) -> Result<f64, OutOfRange> {
        let (min, max) = (self.widths[0], *self.widths.last().unwrap_or(&0));
        if n_embd < min as u64 || n_embd > max as u64 {
            return Err(OutOfRange::Width { n_embd, min, max });
        }
        let flops = self.spec.flops(n_embd, max_iters);
        let cap = self.spec.answer_cap();
        if flops > cap {
            return Err(OutOfRange::OverBudget {
                n_embd,
                max_iters,
                flops,
                cap,
            });
        }
        let lowest = self.ln_budgets[0].exp();
        // The lowest row is a nominal budget that its runs match to a step, so compare with a
        // relative tolerance.
        if flops < lowest * (1.0 - 1e-9) {
            return Err(OutOfRange::UnderBudget {
                n_embd,
                max_iters,
                flops,
                lowest,
                ratio: self.spec.budget / lowest,
                budget: self.spec.budget,
            });
        }
        let x = flops.min(self.spec.budget).max(lowest).ln();
        Ok(self.at(x, (n_embd as f64).ln()))
    }

    /// Bilinear interpolation at `x = ln FLOPs`, `y = ln n_embd`, both within the grid.
    fn at(&self, x: f64, y: f64) -> f64 {
        let (i, tx) = bracket(&self.ln_budgets, x);
        let (j, ty) = bracket(&self.ln_widths, y);
        let l = &self.loss;
        let low = l[i][j] + ty * (l[i][j + 1] - l[i][j]);
        let high = l[i + 1][j] + ty * (l[i + 1][j + 1] - l[i + 1][j]);
        low + tx * (high - low)
    }

    /// The lowest loss at the full budget and the width that reaches it.
    pub fn optimum(&self) -> Optimum {
        let row = self.loss.last().expect("at least two rows");
        let (j, &loss) = row
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least two widths");
        Optimum {
            n_embd: self.widths[j],
            loss,
        }
    }

    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Loss at the full budget, width by width (the iso-FLOP curve).
    pub fn budget_row(&self) -> &[f64] {
        self.loss.last().expect("at least two rows")
    }
}

/// The segment of ascending `v` holding `x` (clamped to the ends) and `x`'s position in it.
fn bracket(v: &[f64], x: f64) -> (usize, f64) {
    let n = v.len();
    let mut k = 0;
    while k + 2 < n && x > v[k + 1] {
        k += 1;
    }
    let t = ((x - v[k]) / (v[k + 1] - v[k])).clamp(0.0, 1.0);
    (k, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracket_finds_segments_and_clamps() {
        let v = [0.0, 1.0, 3.0];
        assert_eq!(bracket(&v, 0.5), (0, 0.5));
        assert_eq!(bracket(&v, 2.0), (1, 0.5));
        assert_eq!(bracket(&v, 3.0), (1, 1.0));
        assert_eq!(bracket(&v, -1.0), (0, 0.0));
        assert_eq!(bracket(&v, 1.0), (0, 1.0));
    }
}
