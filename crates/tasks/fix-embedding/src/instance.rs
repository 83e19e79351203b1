//! The hidden instance: every parameter that decides *which* problem an installation poses.
//!
//! A profile's [`Spec`] is public (it is in rdbench's source): sizes, schedules, the reference
//! solution's settings. What an agent must not be able to reproduce is derived here from one
//! installation secret, [`Secret`], made once from OS randomness and kept in the cache
//! (`<cache>/fix-embedding/instance.secret`, never in an attempt folder):
//!
//! | parameter | why it is secret |
//! |---|---|
//! | the HMM's structure (the data distribution) | with a public source, another installation (same binary, its own `--home`) trains an "original" on as much private text as the scorer's; submitted here it scores like the original, above the reference, with no work (see `docs/fix-embedding.md` for the measurement); and the agent could sample unlimited training text |
//! | the private corpus sample | the original and the small model are trained on it |
//! | the original's and the small model's initializations and batch orders | with the above, they fix the original bit for bit |
//! | the permutation | a public permutation seed is inverted in one line: the original, recovered exactly |
//! | the attempt's corpus sample, the held-out sample | independent draws of the same source; the held-out split must not be reproducible |
//!
//! Each seed is `HMAC-SHA256(secret, "rdbench fix-embedding instance v1" 0 profile 0 parameter)`,
//! its first 8 bytes little-endian ([`Secret::derive`]). A keyed hash, so that seeds of one
//! installation say nothing about its secret or each other, and labels, so that every parameter
//! of every profile is an independent draw. The reference solution's own seeds (its adapter's
//! initialization, its batch order) stay public: they are a method's choices, useless without the
//! secret models and corpus they are applied to.
//!
//! Because the data distribution is secret, the raw scores of the start and the reference vary
//! between installations (the crate overview gives the measured spread), so each installation
//! calibrates its own.

use std::path::{Path, PathBuf};

use rdbench_core::task_secret::TaskSecret;
use rdbench_core::Result;
use rdbench_lm::HmmConfig;
use serde::Serialize;

use crate::profile::Spec;

/// The secret's file name under `<cache>/fix-embedding/`.
pub const SECRET_FILE: &str = rdbench_core::task_secret::SECRET_FILE;

/// Domain separation of the derivation: a new version of the derivation is a new instance.
const DOMAIN: &[u8] = b"rdbench fix-embedding instance v1";

/// This task's name in the cache.
const TASK: &str = "fix-embedding";

/// An installation's secret: 256 bits of OS randomness (the kit's [`TaskSecret`], stored and
/// derived as for every artifact task). `Debug` shows a hash, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret(TaskSecret);

impl Secret {
    /// A secret with the given bytes (tests and tools; installations use [`Secret::load_or_create`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(TaskSecret::from_bytes(bytes))
    }

    /// Where the secret of the cache `cache_dir` lives.
    pub fn path(cache_dir: &Path) -> PathBuf {
        TaskSecret::path(cache_dir, TASK)
    }

    /// The installation's secret: read from the cache, or made once from OS randomness. A
    /// damaged file is an error, never silently replaced (see [`TaskSecret`]).
    pub fn load_or_create(cache_dir: &Path) -> Result<Secret> {
        TaskSecret::load_or_create(cache_dir, TASK).map(Secret)
    }

    /// The seed of `parameter` in `profile`: see the module overview.
    pub fn derive(&self, profile: &str, parameter: &str) -> u64 {
        self.0.derive(DOMAIN, profile, parameter)
    }
}

/// Every hidden parameter of one profile's instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// The corpus HMM: the profile's public shape with a secret structure seed.
    pub hmm: HmmConfig,
    /// Sample of the private corpus the original and the small model are trained on.
    pub private_corpus_seed: u64,
    /// Sample of the attempt's training corpus.
    pub train_corpus_seed: u64,
    /// Sample of the held-out split the scorer evaluates.
    pub heldout_seed: u64,
    pub model_init_seed: u64,
    /// Batch order of the original model's training.
    pub model_train_seed: u64,
    pub small_init_seed: u64,
    pub small_train_seed: u64,
    /// The permutation of the original's embedding rows.
    pub permutation_seed: u64,
}

impl Instance {
    /// The instance that `secret` makes of `spec`.
    pub fn derive(spec: &Spec, secret: &Secret) -> Instance {
        let seed = |parameter: &str| secret.derive(&spec.name, parameter);
        Instance {
            hmm: spec.hmm.with_structure_seed(seed("hmm-structure")),
            private_corpus_seed: seed("private-corpus"),
            train_corpus_seed: seed("train-corpus"),
            heldout_seed: seed("heldout"),
            model_init_seed: seed("model-init"),
            model_train_seed: seed("model-train"),
            small_init_seed: seed("small-init"),
            small_train_seed: seed("small-train"),
            permutation_seed: seed("permutation"),
        }
    }

    /// The instance of `spec` in the installation whose cache is `cache_dir` (making its secret
    /// on first use).
    pub fn load(spec: &Spec, cache_dir: &Path) -> Result<Instance> {
        Ok(Instance::derive(spec, &Secret::load_or_create(cache_dir)?))
    }

    /// Names the instance in cache paths ([`rdbench_core::task_secret::instance_id`]).
    pub fn id(&self) -> String {
        rdbench_core::task_secret::instance_id(DOMAIN, self)
    }
}
