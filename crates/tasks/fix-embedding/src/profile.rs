//! The two profiles: every size and seed of the task.

use rdbench_lm::{GptConfig, HmmConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::reference::ReferenceConfig;

/// Everything that defines one profile. Each cached product is keyed by the fields it depends on
/// ([`Spec::models_key`], [`Spec::attempt_key`], [`Spec::heldout_key`]), so a changed spec
/// never reuses a stale product and never retrains what did not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    /// The corpus HMM (its structure seed is public: the rdbench source is).
    pub hmm: HmmConfig,
    /// Architecture of the corrupted model and of the submission.
    pub model: GptConfig,
    /// Architecture of the small, correctly trained model.
    pub small: GptConfig,
    /// Seed of the private corpus the original and the small model are trained on.
    pub private_corpus_seed: u64,
    /// Sequences in that private corpus.
    pub private_corpus_seqs: usize,
    /// Seed of the training corpus given to the attempt.
    pub train_corpus_seed: u64,
    /// Sequences in the attempt's training corpus.
    pub train_corpus_seqs: usize,
    /// Held-out sequences the scorer evaluates (their seed is secret, see `heldout`).
    pub heldout_seqs: usize,
    pub model_init_seed: u64,
    pub model_train: TrainConfig,
    pub small_init_seed: u64,
    pub small_train: TrainConfig,
    /// Seed of the permutation of the embedding rows.
    pub permutation_seed: u64,
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

    /// Key of the trained models (original, small, corrupted): every field they depend on.
    /// The attempt's corpus, the reference solution and the evaluation settings are left out,
    /// so that retuning those (the cheap part) never retrains the original model (half an hour on a
    /// CPU for `full`).
    pub fn models_key(&self) -> String {
        let models = serde_json::json!({
            "hmm": self.hmm,
            "model": self.model,
            "small": self.small,
            "private_corpus_seed": self.private_corpus_seed,
            "private_corpus_seqs": self.private_corpus_seqs,
            "model_init_seed": self.model_init_seed,
            "model_train": self.model_train,
            "small_init_seed": self.small_init_seed,
            "small_train": self.small_train,
            "permutation_seed": self.permutation_seed,
        });
        format!("{}-{}", self.name, fnv_hex(&models))
    }

    /// Key of what the attempt gets on top of the models (its training corpus) and of the
    /// reference solution trained on it.
    pub fn attempt_key(&self) -> String {
        let attempt = serde_json::json!({
            "train_corpus_seed": self.train_corpus_seed,
            "train_corpus_seqs": self.train_corpus_seqs,
            "reference": self.reference,
        });
        format!("attempt-{}", fnv_hex(&attempt))
    }

    /// What defines the held-out split besides the installation's secret: the source and the
    /// sizes. Tuning models or the reference leaves the split (and existing scores) alone.
    pub fn heldout_key(&self) -> String {
        let split = serde_json::json!({
            "name": self.name,
            "hmm": self.hmm,
            "seq_len": self.seq_len(),
            "heldout_seqs": self.heldout_seqs,
        });
        fnv_hex(&split)
    }
}

/// FNV-1a over the JSON of `v`, as 16 hex digits (a cache key, not a security boundary).
fn fnv_hex(v: &serde_json::Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn tc(steps: usize, batch_size: usize, lr: f64, warmup_steps: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size,
        lr,
        warmup_steps,
        min_lr_frac: 0.1,
        weight_decay: 0.0,
        seed,
    }
}

/// `tiny`: the whole cycle (prepare, score the corrupted model, run the reference, score it) in
/// a few minutes on 2 CPU cores.
pub fn tiny() -> Spec {
    let ctx = 32;
    Spec {
        name: "tiny".into(),
        hmm: HmmConfig {
            states: 32,
            vocab: 128,
            successors: 3,
            zipf_exponent: 2.0,
            structure_seed: 0x7155_0001,
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
        private_corpus_seed: 0x7155_0002,
        private_corpus_seqs: 16_000,
        train_corpus_seed: 0x7155_0003,
        train_corpus_seqs: 4_000,
        heldout_seqs: 2_048,
        model_init_seed: 0x7155_0004,
        model_train: tc(500, 32, 1e-2, 30, 0x7155_0005),
        small_init_seed: 0x7155_0006,
        small_train: tc(200, 32, 1e-2, 20, 0x7155_0007),
        permutation_seed: 0x7155_0008,
        reference: ReferenceConfig {
            adapter: tc(150, 32, 1e-2, 15, 0x7155_0009),
            finetune: tc(300, 32, 3e-3, 30, 0x7155_000a),
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
        hmm: HmmConfig {
            states: 256,
            vocab: 2048,
            successors: 4,
            zipf_exponent: 1.8,
            structure_seed: 0xf011_0001,
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
        private_corpus_seed: 0xf011_0002,
        private_corpus_seqs: 64_000,
        train_corpus_seed: 0xf011_0003,
        train_corpus_seqs: 16_000,
        heldout_seqs: 2_048,
        model_init_seed: 0xf011_0004,
        model_train: tc(1_500, 32, 3e-3, 100, 0xf011_0005),
        small_init_seed: 0xf011_0006,
        small_train: tc(1_000, 32, 5e-3, 50, 0xf011_0007),
        permutation_seed: 0xf011_0008,
        reference: ReferenceConfig {
            adapter: tc(400, 32, 1e-2, 30, 0xf011_0009),
            finetune: tc(1_000, 32, 2e-3, 50, 0xf011_000a),
        },
        eval_batch: 64,
        threads: None,
    }
}

/// The profile called `name`, if any.
pub fn by_name(name: &str) -> Option<Spec> {
    match name {
        "tiny" => Some(tiny()),
        "full" => Some(full()),
        _ => None,
    }
}
