//! The two profiles and the FLOP formula.
//!
//! Everything here is public: the agent's trainer, the sweep tool and the scorer all read the
//! same [`Spec`], and [`Spec::flops`] is the one FLOP count they all use, so an experiment the
//! trainer accepts and an answer the scorer accepts are measured by the same rule.

use rdbench_lm::corpus::CorpusShape;
use rdbench_lm::{GptConfig, HmmConfig, TrainConfig};
use serde::{Deserialize, Serialize};

/// Everything that defines one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    /// The corpus HMM. Its structure seed is public: the ground truth is a shipped sweep, so
    /// nothing is gained by hiding the data distribution, and anyone can regenerate the sweep.
    pub hmm: CorpusShape,
    pub structure_seed: u64,
    /// Fixed architecture; only the width (`n_embd`) varies.
    pub n_layer: usize,
    pub n_head: usize,
    /// Context length (`block_size` in nanoGPT's terms).
    pub block_size: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate, warm-up and the floor of the cosine decay (same for every width).
    pub lr: f64,
    pub warmup_frac: f64,
    pub min_lr_frac: f64,
    /// Sequences of the training split (sampled once, batches drawn from it).
    pub train_seqs: usize,
    /// Sequences of the validation split every run is evaluated on.
    pub eval_seqs: usize,
    /// The FLOP budget of the answer; answers above `1.1 * budget` are invalid.
    pub budget: f64,
    /// One experiment may use at most `budget / experiment_ratio`.
    pub experiment_ratio: f64,
    /// Range of `n_embd` an experiment may use (and, for answers, the sweep's range).
    pub min_n_embd: usize,
    pub max_n_embd: usize,
    /// CPU threads for training (`None`: candle's default).
    pub threads: Option<usize>,
}

/// Seeds of the sample splits (public, fixed per profile).
pub const TRAIN_SAMPLE_SEED: u64 = 0x5ca1_0001;
pub const EVAL_SAMPLE_SEED: u64 = 0x5ca1_0002;

impl Spec {
    /// Training FLOPs of a run, by the formula of RE-Bench's task: `6 * N * D` with `N = 12 *
    /// n_layer * n_embd^2` (the non-embedding parameters) and `D = block * batch * max_iters`
    /// tokens. Embeddings and attention scores are left out, as in the original.
    pub fn flops(&self, n_embd: u64, max_iters: u64) -> f64 {
        let n = n_embd as f64;
        self.n_layer as f64
            * n
            * n
            * 12.0
            * 6.0
            * self.block_size as f64
            * self.batch_size as f64
            * max_iters as f64
    }

    /// FLOPs of one training step at width `n_embd`.
    pub fn flops_per_iter(&self, n_embd: f64) -> f64 {
        self.n_layer as f64
            * n_embd
            * n_embd
            * 72.0
            * self.block_size as f64
            * self.batch_size as f64
    }

    /// The most FLOPs one experiment may use.
    pub fn experiment_cap(&self) -> f64 {
        self.budget / self.experiment_ratio
    }

    /// An experiment the instructions show as an example (`n_embd`, `max_iters`): twice the
    /// smallest width, for half the experiment cap, so that it runs as shown on this profile.
    pub fn example_experiment(&self) -> (usize, usize) {
        let n_embd = (2 * self.min_n_embd).min(self.max_n_embd);
        let iters = (self.experiment_cap() / 2.0 / self.flops_per_iter(n_embd as f64)).floor();
        (n_embd, (iters as usize).max(1))
    }

    /// The most FLOPs a valid answer may use (10 % over the budget, as in RE-Bench).
    pub fn answer_cap(&self) -> f64 {
        1.1 * self.budget
    }

    /// The model trained at width `n_embd`.
    pub fn model(&self, n_embd: usize) -> GptConfig {
        GptConfig {
            vocab: self.hmm.vocab,
            ctx: self.block_size,
            d_model: n_embd,
            n_layer: self.n_layer,
            n_head: self.n_head,
            d_ff: 4 * n_embd,
            ln_eps: 1e-5,
        }
    }

    /// The schedule of a run of `max_iters` steps with batch order `seed`.
    pub fn schedule(&self, max_iters: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            steps: max_iters,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup_steps: ((max_iters as f64 * self.warmup_frac).ceil() as usize).max(1),
            min_lr_frac: self.min_lr_frac,
            weight_decay: 0.0,
            seed,
        }
    }

    pub fn hmm_config(&self) -> HmmConfig {
        self.hmm.with_structure_seed(self.structure_seed)
    }
}

/// `tiny`: two CPU cores. A full-budget run takes about a minute on one thread, an experiment
/// (budget / 50) about a second.
pub fn tiny() -> Spec {
    Spec {
        name: "tiny".into(),
        hmm: CorpusShape {
            states: 64,
            vocab: 128,
            successors: 4,
            zipf_exponent: 1.5,
        },
        structure_seed: 0x5ca1_e000,
        n_layer: 2,
        n_head: 2,
        block_size: 64,
        batch_size: 16,
        lr: 1e-2,
        warmup_frac: 0.05,
        min_lr_frac: 0.1,
        train_seqs: 200_000,
        eval_seqs: 512,
        budget: 1e11,
        experiment_ratio: 50.0,
        min_n_embd: 8,
        max_n_embd: 256,
        threads: Some(1),
    }
}

/// `full`: sized for one H100 (a 5e16 budget, experiments up to 1e15). Its sweep has not been
/// run (docs/scaling-law.md gives the estimated GPU cost), so scoring it is an environment error.
pub fn full() -> Spec {
    Spec {
        name: "full".into(),
        hmm: CorpusShape {
            states: 1024,
            vocab: 4096,
            successors: 8,
            zipf_exponent: 1.2,
        },
        structure_seed: 0x5ca1_f000,
        n_layer: 4,
        n_head: 8,
        block_size: 512,
        batch_size: 64,
        lr: 1e-3,
        warmup_frac: 0.05,
        min_lr_frac: 0.1,
        train_seqs: 2_000_000,
        eval_seqs: 4096,
        budget: 5e16,
        experiment_ratio: 50.0,
        min_n_embd: 64,
        max_n_embd: 2048,
        threads: None,
    }
}

/// The profile called `name`, if any.
pub fn by_name(name: &str) -> Option<Spec> {
    rdbench_core::artifact::profile_named(name, &[("tiny", tiny), ("full", full)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instructions_example_is_a_legal_experiment_on_every_profile() {
        for spec in [tiny(), full()] {
            let (n_embd, max_iters) = spec.example_experiment();
            crate::experiment::check_experiment(&spec, n_embd, max_iters)
                .unwrap_or_else(|e| panic!("{}: {n_embd} x {max_iters}: {e}", spec.name));
            assert!(max_iters >= 10, "{}: {max_iters} steps", spec.name);
        }
    }

    #[test]
    fn flops_follow_the_original_formula() {
        let s = tiny();
        let by_hand = 2.0 * 32.0 * 32.0 * 12.0 * 6.0 * 64.0 * 16.0 * 100.0;
        assert_eq!(s.flops(32, 100), by_hand);
        assert_eq!(s.flops_per_iter(32.0) * 100.0, by_hand);
    }
}
