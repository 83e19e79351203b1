//! One training run at a chosen width and step count: the only way the task trains a model.
//!
//! The agent's trainer (`rdbench-scaling-law train`) and the sweep tool that measured the
//! ground truth both call [`run`], so an experiment and a ground-truth point differ only in
//! their FLOPs. [`check_experiment`] is the agent's limit (budget / 50); the sweep calls
//! [`run`] directly.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rdbench_lm::{eval_loss, train_model, Gpt, Hmm, TokenSet};
use serde::{Deserialize, Serialize};

use crate::profile::{Spec, EVAL_SAMPLE_SEED, TRAIN_SAMPLE_SEED};

/// What one run did: its request, its FLOPs (by [`Spec::flops`]) and its validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub n_embd: usize,
    pub max_iters: usize,
    pub seed: u64,
    pub flops: f64,
    /// Mean next-token loss on the validation split, nats.
    pub loss: f64,
    /// The HMM's exact Bayes-optimal loss on the same split (no model can beat it).
    pub floor: f64,
    pub train_seconds: f64,
}

/// Why a run was refused before training.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("n_embd {n_embd} is outside {min}..={max} or not a multiple of n_head = {n_head}")]
    Width {
        n_embd: usize,
        min: usize,
        max: usize,
        n_head: usize,
    },
    #[error("max_iters must be at least 1")]
    NoSteps,
    #[error(
        "n_embd {n_embd} x max_iters {max_iters} is {flops:.4e} FLOPs, above the experiment limit \
         of {cap:.4e} (budget {budget:.4e} / {ratio}); at this width at most {most} steps are allowed"
    )]
    OverBudget {
        n_embd: usize,
        max_iters: usize,
        flops: f64,
        cap: f64,
        budget: f64,
        ratio: f64,
        most: u64,
    },
}

/// Checks a requested experiment against the profile's limits.
pub fn check_experiment(spec: &Spec, n_embd: usize, max_iters: usize) -> Result<f64, Refused> {
    check_width(spec, n_embd)?;
    if max_iters == 0 {
        return Err(Refused::NoSteps);
    }
    let flops = spec.flops(n_embd as u64, max_iters as u64);
    let cap = spec.experiment_cap();
    if flops > cap {
        return Err(Refused::OverBudget {
            n_embd,
            max_iters,
            flops,
            cap,
            budget: spec.budget,
            ratio: spec.experiment_ratio,
            most: (cap / spec.flops_per_iter(n_embd as f64)).floor() as u64,
        });
    }
    Ok(flops)
}

/// Checks that `n_embd` is a width the trainer builds.
pub fn check_width(spec: &Spec, n_embd: usize) -> Result<(), Refused> {
    if n_embd < spec.min_n_embd || n_embd > spec.max_n_embd || !n_embd.is_multiple_of(spec.n_head) {
        return Err(Refused::Width {
            n_embd,
            min: spec.min_n_embd,
            max: spec.max_n_embd,
            n_head: spec.n_head,
        });
    }
    Ok(())
}

/// The profile's training and validation splits and the validation floor.
pub struct Data {
    pub train: TokenSet,
    pub eval: TokenSet,
    pub floor: f64,
}

/// Samples the profile's splits (deterministic from the profile's public seeds).
pub fn data(spec: &Spec) -> rdbench_lm::Result<Data> {
    let hmm = Hmm::new(spec.hmm_config())?;
    let seq_len = spec.block_size + 1;
    let train = TokenSet::new(
        hmm.sample(TRAIN_SAMPLE_SEED, spec.train_seqs, seq_len),
        seq_len,
    )?;
    let eval = TokenSet::new(
        hmm.sample(EVAL_SAMPLE_SEED, spec.eval_seqs, seq_len),
        seq_len,
    )?;
    let floor = hmm.floor(&eval.tokens, seq_len);
    Ok(Data { train, eval, floor })
}

/// Trains a fresh model of width `n_embd` for `max_iters` steps (initialization and batch
/// order from `seed`) and evaluates it on the validation split. Checks no budget.
pub fn run(
    spec: &Spec,
    data: &Data,
    n_embd: usize,
    max_iters: usize,
    seed: u64,
) -> rdbench_lm::Result<Run> {
    rdbench_lm::with_threads(spec.threads, || {
        let model = Gpt::new(spec.model(n_embd), seed)?;
        let start = Instant::now();
        let label = format!("n_embd {n_embd}");
        train_model(&model, &data.train, &spec.schedule(max_iters, seed), &label)?;
        let train_seconds = start.elapsed().as_secs_f64();
        let loss = eval_loss(&model, &data.eval, 128)?;
        Ok(Run {
            n_embd,
            max_iters,
            seed,
            flops: spec.flops(n_embd as u64, max_iters as u64),
            loss,
            floor: data.floor,
            train_seconds,
        })
    })
}

/// Why [`experiment`] did not log a run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// Refused before training (the caller's mistake).
    #[error("{0}")]
    Refused(#[from] Refused),
    #[error("training: {0}")]
    Training(#[from] rdbench_lm::LmError),
    #[error("{}: {source}", path.display())]
    Log {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// One experiment as the agent's trainer and the served `train` tool run it: refused above the
/// experiment limit before anything trains, then trained, evaluated and appended to `log`.
pub fn experiment(
    spec: &Spec,
    n_embd: usize,
    max_iters: usize,
    seed: u64,
    log: &Path,
) -> Result<Run, ExperimentError> {
    check_experiment(spec, n_embd, max_iters)?;
    let run = run(spec, &data(spec)?, n_embd, max_iters, seed)?;
    append_log(log, &spec.name, &run).map_err(|source| ExperimentError::Log {
        path: log.into(),
        source,
    })?;
    Ok(run)
}

impl Run {
    /// The one line both trainers print: every field of the run's JSON (`--json`), `loss` as
    /// `validation_loss` and `floor` explained, so the text and the JSON tell the same.
    pub fn summary(&self) -> String {
        format!(
            "n_embd {} max_iters {} seed {} flops {:.4e} validation_loss {:.4} \
             (floor {:.4}: the data's Bayes-optimal loss, below any model's) ({:.1} s)",
            self.n_embd,
            self.max_iters,
            self.seed,
            self.flops,
            self.loss,
            self.floor,
            self.train_seconds
        )
    }
}

/// Appends `run` as one JSON line to the experiment log at `path`.
pub fn append_log(path: &Path, profile: &str, run: &Run) -> std::io::Result<()> {
    let mut line = serde_json::to_value(run).map_err(std::io::Error::other)?;
    line["profile"] = serde_json::Value::from(profile);
    line["unix_time"] = serde_json::Value::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write per line, so concurrent runs never interleave inside a line.
    f.write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tiny;

    /// Every number of the JSON a tool call returns is in its text.
    #[test]
    fn the_summary_says_what_the_json_says() {
        let run = Run {
            n_embd: 16,
            max_iters: 26,
            seed: 3,
            flops: 1.5e9,
            loss: 4.25,
            floor: 3.618,
            train_seconds: 0.9,
        };
        let text = run.summary();
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(
            json.as_object().unwrap().len(),
            7,
            "a new field: add it to the text"
        );
        for said in [
            "n_embd 16",
            "max_iters 26",
            "seed 3",
            "flops 1.5000e9",
            "validation_loss 4.2500",
            "floor 3.6180",
            "(0.9 s)",
        ] {
            assert!(text.contains(said), "{said:?} in {text}");
        }
    }

    #[test]
    fn experiments_above_budget_over_50_are_refused() {
        let s = tiny();
        let most = (s.experiment_cap() / s.flops_per_iter(32.0)).floor() as usize;
        assert!(check_experiment(&s, 32, most).is_ok());
        let err = check_experiment(&s, 32, most + 1).unwrap_err();
        assert!(matches!(err, Refused::OverBudget { .. }), "{err}");
        assert!(err.to_string().contains("experiment limit"), "{err}");
        assert!(matches!(
            check_experiment(&s, 7, 1),
            Err(Refused::Width { .. })
        ));
        assert!(matches!(
            check_experiment(&s, 33, 1),
            Err(Refused::Width { .. })
        ));
        assert_eq!(check_experiment(&s, 32, 0), Err(Refused::NoSteps));
    }
}
