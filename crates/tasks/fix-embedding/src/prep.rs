//! Deterministic, cached preparation: corpora, the original and small models, the corrupted
//! model, the reference solution; and the secret held-out split.
//!
//! Layout under the shared cache (never inside an attempt folder):
//!
//! ```text
//! <cache>/fix-embedding/heldout.secret           128 bits of OS randomness, made once
//! <cache>/fix-embedding/<profile>-<spec hash>/   train_tokens.bin, original/small/corrupted
//!                                                .safetensors, prep.json, reference.safetensors,
//!                                                reference.json
//! ```
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

/// What preparation did, saved as `prep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepReport {
    pub spec_key: String,
    pub original_train_loss: f64,
    pub original_train_seconds: f64,
    pub small_train_loss: f64,
    pub small_train_seconds: f64,
    pub total_seconds: f64,
}

fn lm_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// The folder of one profile's prepared files.
pub fn profile_dir(cache_dir: &Path, spec: &Spec) -> PathBuf {
    cache_dir.join("fix-embedding").join(spec.cache_key())
}

pub fn hmm(spec: &Spec) -> Result<Hmm> {
    Hmm::new(spec.hmm.clone()).map_err(lm_err)
}

/// Makes (once) and returns the folder with the corpus and the three models.
pub fn ensure_prepared(spec: &Spec, cache_dir: &Path) -> Result<PathBuf> {
    let dir = profile_dir(cache_dir, spec);
    let done = dir.join("prep.json");
    if done.is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let _lock = fsutil::lock_exclusive(&dir.join("prep"))?;
    if done.is_file() {
        return Ok(dir);
    }
    let start = std::time::Instant::now();
    let hmm = hmm(spec)?;
    let seq_len = spec.seq_len();
    let train = TokenSet::new(
        hmm.sample(spec.train_corpus_seed, spec.train_corpus_seqs, seq_len),
        seq_len,
    )
    .map_err(lm_err)?;
    train.write(&dir.join(TRAIN_TOKENS)).map_err(lm_err)?;
    let private = TokenSet::new(
        hmm.sample(spec.private_corpus_seed, spec.private_corpus_seqs, seq_len),
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
        spec_key: spec.cache_key(),
        original_train_loss: r_orig.final_train_loss,
        original_train_seconds: r_orig.seconds,
        small_train_loss: r_small.final_train_loss,
        small_train_seconds: r_small.seconds,
        total_seconds: start.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&report).map_err(lm_err)?;
    fsutil::atomic_write(&done, &json)?;
    Ok(dir)
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
    let dir = ensure_prepared(spec, cache_dir)?;
    let path = dir.join(REFERENCE);
    let done = dir.join("reference.json");
    if done.is_file() && path.is_file() {
        return Ok(path);
    }
    let _lock = fsutil::lock_exclusive(&dir.join("reference"))?;
    if done.is_file() && path.is_file() {
        return Ok(path);
    }
    let corrupted = load_prepared(&dir.join(CORRUPTED), &spec.model)?;
    let small = load_prepared(&dir.join(SMALL), &spec.small)?;
    let train = TokenSet::read(&dir.join(TRAIN_TOKENS), spec.seq_len()).map_err(lm_err)?;
    let (fixed, report): (Gpt, ReferenceReport) = rdbench_lm::with_threads(spec.threads, || {
        reference::run(&corrupted, &small, &train, &spec.reference)
    })
    .map_err(lm_err)?;
    save_model(&fixed, &path).map_err(lm_err)?;
    let json = serde_json::to_vec_pretty(&report).map_err(lm_err)?;
    fsutil::atomic_write(&done, &json)?;
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
    for b in spec.cache_key().bytes() {
        h = splitmix(h ^ b as u64);
    }
    h
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
