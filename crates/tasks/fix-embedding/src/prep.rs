//! Deterministic, cached preparation: corpora, the original and small models, the corrupted
//! model, the reference solution; and the secret held-out split.
//!
//! Layout under the shared cache (never inside an attempt folder):
//!
//! ```text
//! <cache>/fix-embedding/heldout.secret                  64 bits of OS randomness, made once
//! <cache>/fix-embedding/<profile>-<models key>/         original/small/corrupted.safetensors,
//!                                                       prep.json
//! <cache>/fix-embedding/<profile>-<models key>/attempt-<attempt key>/
//!                                                       train_tokens.bin, corpus.json,
//!                                                       reference.safetensors, reference.json
//! ```
//!
//! The two levels are keyed separately ([`Spec::models_key`], [`Spec::attempt_key`]): the
//! models take hours to train for `full`, the attempt's corpus and the reference minutes.
//!
//! Each product is written by a temporary file and a rename, under an exclusive lock, so that
//! concurrent processes (two `rdbench start`, or calibrate and a cycle) train once and never see
//! a half-written file.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::{seq::SliceRandom, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdbench_core::{fsutil, Error, Result};
use rdbench_lm::{io::load_model, save_model, Gpt, Hmm, TokenSet};
use serde::{Deserialize, Serialize};

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
    /// Where the products of `spec` live in `cache_dir` (whether or not they exist yet).
    pub fn locate(cache_dir: &Path, spec: &Spec) -> Prepared {
        let models = cache_dir.join("fix-embedding").join(spec.models_key());
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

pub fn hmm(spec: &Spec) -> Result<Hmm> {
    Hmm::new(spec.hmm.clone()).map_err(lm_err)
}

/// Makes (once) and returns the folder with the corpus and the three models.
pub fn ensure_prepared(spec: &Spec, cache_dir: &Path) -> Result<Prepared> {
    let at = Prepared::locate(cache_dir, spec);
    ensure_models(spec, &at.models)?;
    ensure_train_corpus(spec, &at.attempt)?;
    Ok(at)
}

/// Trains (once) the original and small models on the private corpus and corrupts the original.
fn ensure_models(spec: &Spec, dir: &Path) -> Result<()> {
    let done = dir.join("prep.json");
    build_once(
        dir,
        "prep",
        || done.is_file(),
        || train_models(spec, dir, &done),
    )
}

fn train_models(spec: &Spec, dir: &Path, done: &Path) -> Result<()> {
    let start = std::time::Instant::now();
    let seq_len = spec.seq_len();
    let private = TokenSet::new(
        hmm(spec)?.sample(spec.private_corpus_seed, spec.private_corpus_seqs, seq_len),
        seq_len,
    )
    .map_err(lm_err)?;

    let original = Gpt::new(spec.model.clone(), spec.model_init_seed).map_err(lm_err)?;
    let r_orig = rdbench_lm::with_threads(spec.threads, || {
        rdbench_lm::train_model(
            &original,
            &private,
            &spec.model_train,
            "fix-embedding: original model",
        )
    })
    .map_err(lm_err)?;
    save_model(&original, &dir.join(ORIGINAL)).map_err(lm_err)?;

    let small = Gpt::new(spec.small.clone(), spec.small_init_seed).map_err(lm_err)?;
    let r_small = rdbench_lm::with_threads(spec.threads, || {
        rdbench_lm::train_model(
            &small,
            &private,
            &spec.small_train,
            "fix-embedding: small model",
        )
    })
    .map_err(lm_err)?;
    save_model(&small, &dir.join(SMALL)).map_err(lm_err)?;

    let corrupted = corrupt(&original, spec.permutation_seed)?;
    save_model(&corrupted, &dir.join(CORRUPTED)).map_err(lm_err)?;

    let report = PrepReport {
        models_key: spec.models_key(),
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
fn ensure_train_corpus(spec: &Spec, dir: &Path) -> Result<()> {
    let path = dir.join(TRAIN_TOKENS);
    // Written by temporary file + rename: its presence means it is whole.
    build_once(
        dir,
        "corpus",
        || path.is_file(),
        || {
            let seq_len = spec.seq_len();
            let train = TokenSet::new(
                hmm(spec)?.sample(spec.train_corpus_seed, spec.train_corpus_seqs, seq_len),
                seq_len,
            )
            .map_err(lm_err)?;
            train.write(&path).map_err(lm_err)
        },
    )
}

/// Runs `make` unless `done()` holds: checked, then checked again under an exclusive lock
/// (`<dir>/<lock>.lock`), so concurrent processes build each product once and never see half of
/// one.
fn build_once(
    dir: &Path,
    lock: &str,
    done: impl Fn() -> bool,
    make: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if done() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _lock = fsutil::lock_exclusive(&dir.join(lock))?;
    if done() {
        return Ok(());
    }
    make()
}

/// The original model with the rows of its token embedding permuted (a uniformly random
/// permutation, deterministic in `seed`). The head is tied, so the output layer is permuted too.
pub fn corrupt(original: &Gpt, seed: u64) -> Result<Gpt> {
    let mut tensors = original.tensors();
    let wte = &tensors["wte"];
    let vocab = wte.dim(0).map_err(lm_err)?;
    let mut perm: Vec<u32> = (0..vocab as u32).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let idx = Tensor::from_vec(perm, vocab, &Device::Cpu).map_err(lm_err)?;
    let permuted = wte.index_select(&idx, 0).map_err(lm_err)?;
    tensors.insert("wte".into(), permuted);
    Gpt::from_tensors(original.config().clone(), tensors).map_err(lm_err)
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

/// Runs (once) the reference solution and returns the path of its model.
pub fn ensure_reference(spec: &Spec, cache_dir: &Path) -> Result<PathBuf> {
    let at = ensure_prepared(spec, cache_dir)?;
    let path = at.reference();
    let done = at.attempt.join("reference.json");
    build_once(
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

/// The installation's secret, made once from OS randomness and kept in the cache. Held-out
/// data derives from it and the profile; it never enters an attempt folder.
pub fn heldout_secret(cache_dir: &Path) -> Result<u64> {
    let path = cache_dir.join("fix-embedding").join("heldout.secret");
    // A damaged secret is an error, not a reason to make a new one: that would silently change
    // the held-out split under existing score logs.
    let read = |p: &Path| -> Result<Option<u64>> {
        match std::fs::read_to_string(p) {
            Ok(s) => u64::from_str_radix(s.trim(), 16).map(Some).map_err(|_| {
                Error::Environment(format!(
                    "{}: damaged held-out secret (expected 16 hex digits); restore it, or delete it to start a \
                     new held-out split (scores made before are then not comparable)",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(p, e)),
        }
    };
    if let Some(v) = read(&path)? {
        return Ok(v);
    }
    let _lock = fsutil::lock_exclusive(&path)?;
    if let Some(v) = read(&path)? {
        return Ok(v);
    }
    let v = rand::rngs::OsRng.next_u64();
    fsutil::atomic_write(&path, format!("{v:016x}\n").as_bytes())?;
    Ok(v)
}

/// Seed of the profile's held-out split in this installation.
pub fn heldout_seed(secret: u64, spec: &Spec) -> u64 {
    let mut h = secret ^ 0x9e37_79b9_7f4a_7c15;
    for b in spec.heldout_key().bytes() {
        h = rdbench_core::rng::splitmix64(h ^ b as u64);
    }
    h
}

/// The held-out split for `seed` and its exact floor.
pub fn heldout(spec: &Spec, seed: u64) -> Result<(TokenSet, f64)> {
    let hmm = hmm(spec)?;
    let set = TokenSet::new(
        hmm.sample(seed, spec.heldout_seqs, spec.seq_len()),
        spec.seq_len(),
    )
    .map_err(lm_err)?;
    let floor = hmm.floor(&set.tokens, set.seq_len);
    Ok((set, floor))
}
