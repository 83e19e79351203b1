//! The hidden instance: the parameters that decide which problem an installation poses, derived
//! from the installation's [`TaskSecret`] (kept at `<cache>/restricted-mlm/instance.secret`,
//! never in an attempt folder).
//!
//! | parameter | why it is secret |
//! |---|---|
//! | the HMM's structure (the data distribution) | with a public source an agent could sample unlimited training text, or the held-out text itself |
//! | the held-out sample and its mask pattern | the scored positions and their tokens must not be reproducible |
//! | the attempt's training sample | an independent draw; secret so it says nothing about the held-out one |
//!
//! The start's and the reference's initializations and batch orders are public: a method's
//! choices, useless without the secret corpus.

use std::path::Path;

use rdbench_core::task_secret::TaskSecret;
use rdbench_core::Result;
use rdbench_lm::HmmConfig;
use serde::Serialize;

use crate::profile::Spec;

/// The task's name in the cache.
pub const TASK: &str = "restricted-mlm";

/// Domain separation of the derivation: a new version of the derivation is a new instance.
const DOMAIN: &[u8] = b"rdbench restricted-mlm instance v1";

/// Every hidden parameter of one profile's instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub hmm: HmmConfig,
    pub train_corpus_seed: u64,
    pub heldout_seed: u64,
    pub heldout_mask_seed: u64,
}

impl Instance {
    /// The instance that `secret` makes of `spec`.
    pub fn derive(spec: &Spec, secret: &TaskSecret) -> Instance {
        let seed = |parameter: &str| secret.derive(DOMAIN, &spec.name, parameter);
        Instance {
            hmm: spec.hmm.with_structure_seed(seed("hmm-structure")),
            train_corpus_seed: seed("train-corpus"),
            heldout_seed: seed("heldout"),
            heldout_mask_seed: seed("heldout-mask"),
        }
    }

    /// The instance of `spec` in the installation whose cache is `cache_dir` (making its secret
    /// on first use).
    pub fn load(spec: &Spec, cache_dir: &Path) -> Result<Instance> {
        Ok(Instance::derive(
            spec,
            &TaskSecret::load_or_create(cache_dir, TASK)?,
        ))
    }

    /// Names the instance in cache paths ([`rdbench_core::task_secret::instance_id`]).
    pub fn id(&self) -> String {
        rdbench_core::task_secret::instance_id(DOMAIN, self)
    }
}
