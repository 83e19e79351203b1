//! The profiles: every public size and schedule. The language, the facts, the corpus, the
//! models' seeds and the held-out prompts derive from the installation's secret
//! ([`crate::prep::Instance`]).

use rdbench_lm::GptConfig;
use serde::{Deserialize, Serialize};

/// Everything public that defines a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    /// The policy's architecture (the base, the SFT model and every submission).
    pub model: GptConfig,
    /// Documents in the base model's corpus.
    pub base_documents: usize,
    /// Share of the base corpus's responses that are the answer (the rest are failures).
    pub base_good: f64,
    pub base_steps: usize,
    pub base_lr: f64,
    /// Documents (answers only) the comparison SFT model is fine-tuned on.
    pub sft_documents: usize,
    pub sft_steps: usize,
    pub sft_lr: f64,
    pub batch_size: usize,
    /// Prompts (instructions only) given to the agent.
    pub train_prompts: usize,
    /// Prompts the scorer keeps.
    pub heldout_prompts: usize,
    /// Most tokens a response may have (the context holds prompt and response).
    pub max_new_tokens: usize,
    /// Judge verdicts an attempt may ask for, all calls together.
    pub judge_cap: u64,
    /// Most pairs in one call of the judge tool.
    pub judge_batch: usize,
    /// Threads of training and generation.
    pub threads: usize,
}

impl Spec {
    /// A key of every field the prepared products depend on.
    pub fn key(&self) -> String {
        rdbench_core::task_secret::instance_id(b"rdbench finetune-qa spec v1", self)
    }
}

/// The profile `tiny`: a 0.1 M-parameter policy on 2 CPU cores.
pub fn tiny() -> Spec {
    Spec {
        name: "tiny".into(),
        model: GptConfig {
            vocab: crate::world::vocabulary().len(),
            ctx: 24,
            d_model: 64,
            n_layer: 2,
            n_head: 4,
            d_ff: 256,
            ln_eps: 1e-5,
        },
        base_documents: 40_000,
        base_good: 0.2,
        base_steps: 2000,
        base_lr: 3e-3,
        sft_documents: 20_000,
        sft_steps: 600,
        sft_lr: 1e-3,
        batch_size: 32,
        train_prompts: 2048,
        heldout_prompts: 256,
        max_new_tokens: 12,
        judge_cap: 60_000,
        judge_batch: 512,
        threads: 2,
    }
}

/// The profile named `name`.
pub fn by_name(name: &str) -> Option<Spec> {
    rdbench_core::artifact::profile_named(name, &[("tiny", tiny)])
}
