//! The two profiles: every public size and schedule of the task. Nothing here picks the
//! instance: the data distribution, the samples, the models' seeds and the permutation derive
//! from the installation's secret ([`crate::instance`]).

use rdbench_core::artifact::cache_key;
use rdbench_lm::{GptConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::reference::ReferenceConfig;

pub use rdbench_lm::corpus::CorpusShape;

/// Optimizer and schedule of a private training run (the original or the small model); its seed
/// (the batch order) is part of the hidden instance, so this type has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub min_lr_frac: f64,
    pub weight_decay: f64,
}

impl Schedule {
    /// The training configuration of this schedule with the batch order `seed`.
    pub fn with_seed(&self, seed: u64) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            min_lr_frac: self.min_lr_frac,
            weight_decay: self.weight_decay,
            seed,
        }
    }
}

/// Everything public that defines one profile. Each cached product is keyed by the fields it
/// depends on ([`Spec::models_key`], [`Spec::attempt_key`]) and by the instance
/// ([`crate::instance::Instance::id`]), so a changed spec or secret never reuses a stale product
/// and never retrains what did not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The profile's name; also labels its secret parameters.
    pub name: String,
    /// The corpus HMM's shape.
    pub hmm: CorpusShape,
    /// Architecture of the corrupted model and of the submission.
    pub model: GptConfig,
    /// Architecture of the small, correctly trained model.
    pub small: GptConfig,
    /// Sequences in the private corpus the original and the small model are trained on.
    pub private_corpus_seqs: usize,
    /// Sequences in the attempt's training corpus.
    pub train_corpus_seqs: usize,
    /// Held-out sequences the scorer evaluates.
    pub heldout_seqs: usize,
    pub model_train: Schedule,
    pub small_train: Schedule,
    pub reference: ReferenceConfig,
    /// Sequences per forward pass when evaluating.
    pub eval_batch: usize,
    /// CPU threads for training and evaluation (`None`: one per physical core).
    pub threads: Option<usize>,
}

impl Spec {
    /// Sequence length of every split: the model's context plus the one token it predicts.
    pub fn seq_len(&self) -> usize {
        self.model.ctx + 1
    }

    /// Key of the trained models (original, small, corrupted): every public field they depend
    /// on. The attempt's corpus, the reference solution and the evaluation settings are left
    /// out, so that retuning those (the cheap part) never retrains the original model (half an
    /// hour on a CPU for `full`).
    pub fn models_key(&self) -> String {
        let models = serde_json::json!({
            "hmm": self.hmm,
            "model": self.model,
            "small": self.small,
            "private_corpus_seqs": self.private_corpus_seqs,
            "model_train": self.model_train,
            "small_train": self.small_train,
            "training": rdbench_lm::TRAINING_VERSION,
        });
        format!("{}-{}", self.name, cache_key(&models))
    }

    /// Key of what the attempt gets on top of the models (its training corpus) and of the
    /// reference solution trained on it.
    pub fn attempt_key(&self) -> String {
        let attempt = serde_json::json!({
            "train_corpus_seqs": self.train_corpus_seqs,
            "reference": self.reference,
            "training": rdbench_lm::TRAINING_VERSION,
        });
        format!("attempt-{}", cache_key(&attempt))
    }
}

/// rdbench-lm's usual schedule ([`TrainConfig::cosine`]), its batch order left to `with_seed`.
fn schedule(steps: usize, batch_size: usize, lr: f64, warmup_steps: usize) -> Schedule {
    let c = TrainConfig::cosine(steps, batch_size, lr, warmup_steps, 0);
    Schedule {
        steps: c.steps,
        batch_size: c.batch_size,
        lr: c.lr,
        warmup_steps: c.warmup_steps,
        min_lr_frac: c.min_lr_frac,
        weight_decay: c.weight_decay,
    }
}

/// `tiny`: the whole cycle (prepare, score the corrupted model, run the reference, score it) in
/// a few minutes on 2 CPU cores.
pub fn tiny() -> Spec {
    let ctx = 32;
    Spec {
        name: "tiny".into(),
        hmm: CorpusShape {
            states: 32,
            vocab: 128,
            successors: 3,
            zipf_exponent: 2.0,
        },
        model: GptConfig {
            vocab: 128,
            ctx,
            d_model: 64,
            n_layer: 2,
            n_head: 4,
            d_ff: 256,
            ln_eps: 1e-5,
        },
        small: GptConfig {
            vocab: 128,
            ctx,
            d_model: 32,
            n_layer: 1,
            n_head: 2,
            d_ff: 128,
            ln_eps: 1e-5,
        },
        private_corpus_seqs: 16_000,
        train_corpus_seqs: 4_000,
        heldout_seqs: 2_048,
        model_train: schedule(500, 32, 1e-2, 30),
        small_train: schedule(200, 32, 1e-2, 20),
        reference: ReferenceConfig {
            adapter: TrainConfig::cosine(150, 32, 1e-2, 15, 0x7155_0009),
            finetune: TrainConfig::cosine(450, 32, 3e-3, 30, 0x7155_000a),
        },
        eval_batch: 128,
        threads: Some(1),
    }
}

/// `full`: sized for an 8-hour attempt on one H100 (a data-limited problem: the original model
/// saw six times more text than the attempt gets, and the score is the log of the distance to an
/// exact floor), scored on a CPU in about a minute, prepared and calibrated on a 2-core CPU in
/// under an hour (`docs/fix-embedding.md` has the measured times).
pub fn full() -> Spec {
    let ctx = 128;
    Spec {
        name: "full".into(),
        hmm: CorpusShape {
            states: 256,
            vocab: 2048,
            successors: 4,
            zipf_exponent: 1.8,
        },
        model: GptConfig {
            vocab: 2048,
            ctx,
            d_model: 192,
            n_layer: 4,
            n_head: 6,
            d_ff: 768,
            ln_eps: 1e-5,
        },
        small: GptConfig {
            vocab: 2048,
            ctx,
            d_model: 96,
            n_layer: 2,
            n_head: 3,
            d_ff: 384,
            ln_eps: 1e-5,
        },
        private_corpus_seqs: 64_000,
        train_corpus_seqs: 16_000,
        heldout_seqs: 2_048,
        model_train: schedule(1_500, 32, 3e-3, 100),
        small_train: schedule(1_000, 32, 5e-3, 50),
        reference: ReferenceConfig {
            adapter: TrainConfig::cosine(400, 32, 1e-2, 30, 0xf011_0009),
            finetune: TrainConfig::cosine(1_000, 32, 2e-3, 50, 0xf011_000a),
        },
        eval_batch: 64,
        threads: None,
    }
}

/// The profile called `name`, if any.
pub fn by_name(name: &str) -> Option<Spec> {
    rdbench_core::artifact::profile_named(name, &[("tiny", tiny), ("full", full)])
}
