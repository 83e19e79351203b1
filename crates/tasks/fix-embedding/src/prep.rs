//! Deterministic, cached preparation of an installation's instance ([`Instance`]): corpora, the
//! original and small models, the corrupted model, the reference solution; and the held-out
//! split.
//!
//! Layout under the shared cache (never inside an attempt folder):
//!
//! ```text
//! <cache>/fix-embedding/instance.secret                 256 bits of OS randomness, made once
//! <cache>/fix-embedding/<profile>-<models key>-<instance id>/
//!                                                       original/small/corrupted.safetensors,
//!                                                       prep.json
//! <cache>/fix-embedding/<profile>-<models key>-<instance id>/attempt-<attempt key>/
//!                                                       train_tokens.bin, reference.safetensors,
//!                                                       reference.json
//! ```
//!
//! The two levels are keyed separately ([`Spec::models_key`], [`Spec::attempt_key`]): the
//! models take half an hour to train for `full`, the attempt's corpus and the reference minutes.
//! Both sit under the instance's id, a hash of every secret parameter, so a new secret never
//! reuses stale files. (A `heldout.secret` left by an older rdbench, whose instances were
//! publicly seeded, is not read.)
//!
//! Each product is written by a temporary file and a rename, under an exclusive lock, so that
//! concurrent processes (two `rdbench start`, or calibrate and a cycle) train once and never see
//! a half-written file. The same secret prepares bit-identical files.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdbench_core::{fsutil, Error, Result};
use rdbench_lm::{io::load_model, save_model, Gpt, Hmm, TokenSet};
use serde::{Deserialize, Serialize};

use crate::instance::Instance;
use crate::profile::Spec;
use crate::reference::{self, ReferenceReport};

pub const TRAIN_TOKENS: &str = "train_tokens.bin";
pub const ORIGINAL: &str = "original.safetensors";
pub const SMALL: &str = "small.safetensors";
pub const CORRUPTED: &str = "corrupted.safetensors";
pub const REFERENCE: &str = "reference.safetensors";

/// What training the models did, saved as `prep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepReport {
    pub models_key: String,
    pub instance_id: String,
    pub original_train_loss: f64,
    pub original_train_seconds: f64,
    pub small_train_loss: f64,
    pub small_train_seconds: f64,
    pub total_seconds: f64,
}

fn lm_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// The folders of one profile's prepared files.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The trained models: [`ORIGINAL`], [`SMALL`], [`CORRUPTED`].
    pub models: PathBuf,
    /// The attempt's corpus [`TRAIN_TOKENS`], and [`REFERENCE`] once it is trained.
    pub attempt: PathBuf,
}

impl Prepared {
    /// Where the products of `spec`'s instance `inst` live in `cache_dir` (whether or not they
    /// exist yet).
    pub fn locate(cache_dir: &Path, spec: &Spec, inst: &Instance) -> Prepared {
        let models =
            cache_dir
                .join("fix-embedding")
                .join(format!("{}-{}", spec.models_key(), inst.id()));
        let attempt = models.join(spec.attempt_key());
        Prepared { models, attempt }
    }

    pub fn original(&self) -> PathBuf {
        self.models.join(ORIGINAL)
    }
    pub fn small(&self) -> PathBuf {
        self.models.join(SMALL)
    }
    pub fn corrupted(&self) -> PathBuf {
        self.models.join(CORRUPTED)
    }
    pub fn train_tokens(&self) -> PathBuf {
        self.attempt.join(TRAIN_TOKENS)
    }
    pub fn reference(&self) -> PathBuf {
        self.attempt.join(REFERENCE)
    }
}

/// The instance's corpus source.
pub fn hmm(inst: &Instance) -> Result<Hmm> {
    Hmm::new(inst.hmm.clone()).map_err(lm_err)
}

/// Makes (once) and returns the folders with the corpus and the three models of the
/// installation whose cache is `cache_dir`.
pub fn ensure_prepared(spec: &Spec, cache_dir: &Path) -> Result<Prepared> {
    prepare_instance(spec, &Instance::load(spec, cache_dir)?, cache_dir)
}

/// [`ensure_prepared`] for an explicit instance (tools and tests that compare instances).
pub fn prepare_instance(spec: &Spec, inst: &Instance, cache_dir: &Path) -> Result<Prepared> {
    let at = Prepared::locate(cache_dir, spec, inst);
    ensure_models(spec, inst, &at.models)?;
    ensure_train_corpus(spec, inst, &at.attempt)?;
    Ok(at)
}

/// Trains (once) the original and small models on the private corpus and corrupts the original.
fn ensure_models(spec: &Spec, inst: &Instance, dir: &Path) -> Result<()> {
    let done = dir.join("prep.json");
    fsutil::build_once(
        dir,
        "prep",
        || done.is_file(),
        || train_models(spec, inst, dir, &done),
    )
}

fn train_models(spec: &Spec, inst: &Instance, dir: &Path, done: &Path) -> Result<()> {
    let start = std::time::Instant::now();
    let seq_len = spec.seq_len();
    let private = TokenSet::new(
        hmm(inst)?.sample(inst.private_corpus_seed, spec.private_corpus_seqs, seq_len),
        seq_len,
    )
    .map_err(lm_err)?;

    let original = Gpt::new(spec.model.clone(), inst.model_init_seed).map_err(lm_err)?;
    let r_orig = rdbench_lm::with_threads(spec.threads, || {
        rdbench_lm::train_model(
            &original,
            &private,
            &spec.model_train.with_seed(inst.model_train_seed),
            "fix-embedding: original model",
        )
    })
    .map_err(lm_err)?;
    save_model(&original, &dir.join(ORIGINAL)).map_err(lm_err)?;

    let small = Gpt::new(spec.small.clone(), inst.small_init_seed).map_err(lm_err)?;
    let r_small = rdbench_lm::with_threads(spec.threads, || {
        rdbench_lm::train_model(
            &small,
            &private,
            &spec.small_train.with_seed(inst.small_train_seed),
            "fix-embedding: small model",
        )
    })
    .map_err(lm_err)?;
    save_model(&small, &dir.join(SMALL)).map_err(lm_err)?;

    let corrupted = corrupt(&original, inst.permutation_seed)?;
    save_model(&corrupted, &dir.join(CORRUPTED)).map_err(lm_err)?;

    let report = PrepReport {
        models_key: spec.models_key(),
        instance_id: inst.id(),
        original_train_loss: r_orig.final_train_loss,
        original_train_seconds: r_orig.seconds,
        small_train_loss: r_small.final_train_loss,
        small_train_seconds: r_small.seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&report).map_err(lm_err)?;
    fsutil::atomic_write(done, &json)
}

/// Samples (once) the attempt's training corpus.
fn ensure_train_corpus(spec: &Spec, inst: &Instance, dir: &Path) -> Result<()> {
    let path = dir.join(TRAIN_TOKENS);
    // Written by temporary file + rename: its presence means it is whole.
    fsutil::build_once(
        dir,
        "corpus",
        || path.is_file(),
        || {
            let seq_len = spec.seq_len();
            let train = TokenSet::new(
                hmm(inst)?.sample(inst.train_corpus_seed, spec.train_corpus_seqs, seq_len),
                seq_len,
            )
            .map_err(lm_err)?;
            train.write(&path).map_err(lm_err)
        },
    )
}

/// The uniformly random permutation of `vocab` rows that `seed` makes: row `i` of the
/// corrupted embedding is row `permutation(seed)[i]` of the original.
pub fn permutation(vocab: usize, seed: u64) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..vocab as u32).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    perm
}

/// The original model with the rows of its token embedding permuted by [`permutation`]. The
/// head is tied, so the output layer is permuted too.
pub fn corrupt(original: &Gpt, seed: u64) -> Result<Gpt> {
    let vocab = original.config().vocab;
    select_wte_rows(original, permutation(vocab, seed))
}

/// The inverse of [`corrupt`]: what an agent who knew `seed` would submit. With the instance's
/// own seed it recovers the original bit for bit; with any other seed it is one more random
/// permutation (the regression tests of the public-seed cheat use both).
pub fn uncorrupt(corrupted: &Gpt, seed: u64) -> Result<Gpt> {
    let perm = permutation(corrupted.config().vocab, seed);
    let mut inverse = vec![0u32; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p as usize] = i as u32;
    }
    select_wte_rows(corrupted, inverse)
}

/// `model` with embedding row `i` replaced by its row `rows[i]`; every other tensor unchanged.
fn select_wte_rows(model: &Gpt, rows: Vec<u32>) -> Result<Gpt> {
    let mut tensors = model.tensors();
    let n = rows.len();
    let idx = Tensor::from_vec(rows, n, &Device::Cpu).map_err(lm_err)?;
    let selected = tensors["wte"].index_select(&idx, 0).map_err(lm_err)?;
    tensors.insert("wte".into(), selected);
    Gpt::from_tensors(model.config().clone(), tensors).map_err(lm_err)
}

/// Loads one of the prepared models (they were checked when written; a damaged cache is an
/// environment error naming the file).
pub fn load_prepared(path: &Path, cfg: &rdbench_lm::GptConfig) -> Result<Gpt> {
    load_model(path, cfg).map_err(|e| {
        Error::Environment(format!(
            "damaged fix-embedding cache ({e}); delete the folder to rebuild it"
        ))
    })
}

/// Runs (once) the reference solution of the installation whose cache is `cache_dir` and
/// returns the path of its model.
pub fn ensure_reference(spec: &Spec, cache_dir: &Path) -> Result<PathBuf> {
    reference_instance(spec, &Instance::load(spec, cache_dir)?, cache_dir)
}

/// [`ensure_reference`] for an explicit instance.
pub fn reference_instance(spec: &Spec, inst: &Instance, cache_dir: &Path) -> Result<PathBuf> {
    let at = prepare_instance(spec, inst, cache_dir)?;
    let path = at.reference();
    let done = at.attempt.join("reference.json");
    fsutil::build_once(
        &at.attempt,
        "reference",
        || done.is_file() && path.is_file(),
        || {
            let corrupted = load_prepared(&at.corrupted(), &spec.model)?;
            let small = load_prepared(&at.small(), &spec.small)?;
            let train = TokenSet::read(&at.train_tokens(), spec.seq_len()).map_err(lm_err)?;
            let (fixed, report): (Gpt, ReferenceReport) =
                rdbench_lm::with_threads(spec.threads, || {
                    reference::run(&corrupted, &small, &train, &spec.reference)
                })
                .map_err(lm_err)?;
            save_model(&fixed, &path).map_err(lm_err)?;
            let json = serde_json::to_vec_pretty(&report).map_err(lm_err)?;
            fsutil::atomic_write(&done, &json)
        },
    )?;
    Ok(path)
}

/// The instance's held-out split and its exact floor. (Tools that measure how much the split
/// matters evaluate the same instance with another `heldout_seed`.)
pub fn heldout(spec: &Spec, inst: &Instance) -> Result<(TokenSet, f64)> {
    let hmm = hmm(inst)?;
    let set = TokenSet::new(
        hmm.sample(inst.heldout_seed, spec.heldout_seqs, spec.seq_len()),
        spec.seq_len(),
    )
    .map_err(lm_err)?;
    let floor = hmm.floor(&set.tokens, set.seq_len);
    Ok((set, floor))
}
