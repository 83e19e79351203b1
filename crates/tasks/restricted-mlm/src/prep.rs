//! Cached, deterministic preparation: the attempt's training corpus, the trained start and
//! reference, and the held-out split (computed when scoring, never written anywhere).
//!
//! ```text
//! <cache>/restricted-mlm/instance.secret                          made once (rdbench_core::task_secret)
//! <cache>/restricted-mlm/<profile>-<instance id>/train_tokens.bin
//! <cache>/restricted-mlm/<profile>-<instance id>/<solution>-<key>/model.toml, weights.safetensors, report.json
//! ```
//!
//! Each product is built once under a lock ([`rdbench_core::fsutil::build_once`]) and published
//! by rename, so concurrent processes train once and never read half a file; a solution's key
//! covers its configuration, so a retuned start or reference never reuses stale weights.

use std::path::{Path, PathBuf};

use candle_core::Device;
use rdbench_core::{fsutil, Error, Result};
use rdbench_lm::{Hmm, TokenSet, TrainConfig};
use serde::Serialize;

use crate::instance::Instance;
use crate::interp::MlmModel;
use crate::profile::Spec;
use crate::{graph, mlm, start, Reference, MODEL_FILE, WEIGHTS_FILE};

pub const TRAIN_TOKENS: &str = "train_tokens.bin";

fn lm_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("restricted-mlm preparation: {e}"))
}

fn hmm(inst: &Instance) -> Result<Hmm> {
    Hmm::new(inst.hmm.clone()).map_err(lm_err)
}

/// The instance's cache folder.
pub fn instance_dir(spec: &Spec, inst: &Instance, cache_dir: &Path) -> PathBuf {
    cache_dir
        .join(crate::instance::TASK)
        .join(format!("{}-{}", spec.name, inst.id()))
}

/// Samples (once) the attempt's training corpus; returns its path.
pub fn ensure_train_corpus(spec: &Spec, inst: &Instance, cache_dir: &Path) -> Result<PathBuf> {
    let dir = instance_dir(spec, inst, cache_dir);
    let path = dir.join(TRAIN_TOKENS);
    fsutil::build_once(
        &dir,
        "corpus",
        || path.is_file(),
        || {
            let seq = spec.limits.seq;
            let set = TokenSet::new(
                hmm(inst)?.sample(inst.train_corpus_seed, spec.train_seqs, seq),
                seq,
            )
            .map_err(lm_err)?;
            set.write(&path).map_err(lm_err)
        },
    )?;
    Ok(path)
}

/// What training a shipped solution did.
#[derive(Debug, Clone, Serialize)]
struct SolutionReport {
    solution: String,
    params: u64,
    flops_per_token: u64,
    train_seconds: f64,
    final_train_loss: f64,
}

/// Trains (once) the shipped solution `which` (the start, or the graph of `reference`) and
/// returns the folder holding its `model.toml` and `weights.safetensors`.
pub fn ensure_solution(
    spec: &Spec,
    inst: &Instance,
    cache_dir: &Path,
    which: rdbench_core::task::Solution,
    reference: Reference,
) -> Result<PathBuf> {
    use rdbench_core::task::Solution;
    let (label, text, train, init_seed, key) = match which {
        Solution::Starting => (
            "start",
            start::graph(&spec.limits, spec.start.shape),
            spec.start.train.clone(),
            spec.start.init_seed,
            spec.key(&spec.start),
        ),
        Solution::Reference => (
            "reference",
            reference(&spec.limits, &spec.reference),
            spec.reference.train.clone(),
            spec.reference.init_seed,
            spec.key(&spec.reference),
        ),
        Solution::Fastest => {
            return Err(Error::Usage(
                "restricted-mlm ships no solution beyond its reference".into(),
            ))
        }
    };
    let corpus = ensure_train_corpus(spec, inst, cache_dir)?;
    let dir = instance_dir(spec, inst, cache_dir).join(format!("{label}-{key}"));
    let done = dir.join("report.json");
    fsutil::build_once(
        &dir,
        label,
        || done.is_file(),
        || {
            let data = TokenSet::read(&corpus, spec.limits.seq).map_err(lm_err)?;
            let g = graph::parse(&text, &spec.limits).map_err(lm_err)?;
            let (params, flops_per_token) = (g.params, g.flops_per_token);
            let model =
                MlmModel::init(g, spec.limits.clone(), init_seed, &Device::Cpu).map_err(lm_err)?;
            let report = train_with_threads(spec, &model, &data, &train, label)?;
            fsutil::atomic_write(&dir.join(MODEL_FILE), text.as_bytes())?;
            rdbench_lm::save_tensors(&model.tensors(), &dir.join(WEIGHTS_FILE)).map_err(lm_err)?;
            let report = SolutionReport {
                solution: label.into(),
                params,
                flops_per_token,
                train_seconds: report.seconds,
                final_train_loss: report.final_train_loss,
            };
            fsutil::atomic_write(&done, &serde_json::to_vec_pretty(&report).map_err(lm_err)?)
        },
    )?;
    Ok(dir)
}

fn train_with_threads(
    spec: &Spec,
    model: &MlmModel,
    data: &TokenSet,
    cfg: &TrainConfig,
    label: &str,
) -> Result<rdbench_lm::TrainReport> {
    rdbench_lm::with_threads(spec.threads, || {
        mlm::train(model, data, cfg, &format!("restricted-mlm: {label}"))
    })
    .map_err(lm_err)
}

/// The held-out split, its mask flags and its exact masked floor with the number of masked
/// positions.
pub fn heldout(spec: &Spec, inst: &Instance) -> Result<(TokenSet, Vec<bool>, f64, usize)> {
    let hmm = hmm(inst)?;
    let seq = spec.limits.seq;
    let set = TokenSet::new(hmm.sample(inst.heldout_seed, spec.heldout_seqs, seq), seq)
        .map_err(lm_err)?;
    let masks = mlm::mask_pattern(inst.heldout_mask_seed, set.tokens.len());
    let (floor, n) = hmm.masked_floor(&set.tokens, &masks, seq);
    Ok((set, masks, floor, n))
}
