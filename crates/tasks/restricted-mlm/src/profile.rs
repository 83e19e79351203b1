//! The two profiles: every public size, cap and schedule of the task. The data distribution and
//! the held-out split derive from the installation's secret ([`crate::instance`]).

use rdbench_lm::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::graph::Limits;
use crate::start::MlpShape;

pub use rdbench_lm::corpus::CorpusShape;

/// The starting solution: its MLP and how it is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartConfig {
    pub shape: MlpShape,
    pub train: TrainConfig,
    pub init_seed: u64,
}

/// The reference solution's architecture (a residual convolution network, whose graph the
/// reference's own crate builds: [`crate::Reference`]) and how it is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceConfig {
    pub width: usize,
    pub blocks: usize,
    pub kernel: usize,
    /// Constant scale of each residual branch.
    pub branch_scale: f64,
    pub train: TrainConfig,
    pub init_seed: u64,
}

/// Everything public that defines one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub hmm: CorpusShape,
    /// Sequence length, vocabulary and the graph caps.
    pub limits: Limits,
    /// Sequences of the attempt's training corpus.
    pub train_seqs: usize,
    /// Held-out sequences the scorer evaluates.
    pub heldout_seqs: usize,
    /// Sequences per forward pass when scoring.
    pub eval_batch: usize,
    pub start: StartConfig,
    pub reference: ReferenceConfig,
    /// CPU threads for training and scoring (`None`: candle's default).
    pub threads: Option<usize>,
}

impl Spec {
    /// Key of a cached product: everything it depends on, the profile's data and `part`.
    pub fn key(&self, part: &impl Serialize) -> String {
        rdbench_core::artifact::cache_key(&serde_json::json!({ "hmm": self.hmm,
            "limits": self.limits, "train_seqs": self.train_seqs, "part": part }))
    }
}

/// `tiny`: the whole cycle (train the start, score it, train the reference, score it) in a
/// few minutes on 2 CPU cores.
pub fn tiny() -> Spec {
    Spec {
        name: "tiny".into(),
        hmm: CorpusShape {
            states: 32,
            vocab: 128,
            successors: 3,
            zipf_exponent: 1.6,
        },
        limits: Limits {
            seq: 64,
            vocab: 128,
            max_nodes: 10_000,
            max_params: 4_000_000,
            max_flops_per_token: 4_000_000,
            max_value_elements: 1 << 20,
            max_total_elements: 1 << 22,
        },
        train_seqs: 8_000,
        heldout_seqs: 1_600,
        eval_batch: 64,
        start: StartConfig {
            shape: MlpShape {
                embed: 8,
                hidden: 128,
            },
            train: TrainConfig::cosine(400, 32, 3e-3, 20, 0x5ea7_0001),
            init_seed: 0x5ea7_0002,
        },
        reference: ReferenceConfig {
            width: 64,
            blocks: 4,
            kernel: 5,
            branch_scale: 0.5,
            train: TrainConfig::cosine(700, 32, 4e-3, 40, 0x5ef0_0001),
            init_seed: 0x5ef0_0002,
        },
        threads: None,
    }
}

/// `full`: RE-Bench's shape (128-token inputs, 2,000 batches of 8 held-out sequences), sized
/// for an 8-hour attempt on one H100.
pub fn full() -> Spec {
    Spec {
        name: "full".into(),
        hmm: CorpusShape {
            states: 256,
            vocab: 2048,
            successors: 4,
            zipf_exponent: 1.6,
        },
        limits: Limits {
            seq: 128,
            vocab: 2048,
            max_nodes: 10_000,
            max_params: 100_000_000,
            max_flops_per_token: 8_000_000,
            max_value_elements: 1 << 22,
            max_total_elements: 1 << 24,
        },
        train_seqs: 200_000,
        heldout_seqs: 16_000,
        eval_batch: 8,
        start: StartConfig {
            shape: MlpShape {
                embed: 16,
                hidden: 256,
            },
            train: TrainConfig::cosine(2_000, 32, 1e-3, 100, 0xf5a7_0001),
            init_seed: 0xf5a7_0002,
        },
        reference: ReferenceConfig {
            width: 256,
            blocks: 5,
            kernel: 5,
            branch_scale: 0.5,
            train: TrainConfig::cosine(4_000, 32, 1e-3, 200, 0xff00_0001),
            init_seed: 0xff00_0002,
        },
        threads: None,
    }
}

/// The profile called `name`, if any.
pub fn by_name(name: &str) -> Option<Spec> {
    rdbench_core::artifact::profile_named(name, &[("tiny", tiny), ("full", full)])
}
