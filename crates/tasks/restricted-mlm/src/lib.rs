//! # rdbench-task-restricted-mlm
//!
//! RE-Bench's *Restricted Architecture MLM*, with the restriction enforced by construction.
//! The original lets the agent write any PyTorch forward pass and forbids division,
//! exponentials, softmax, normalization layers, comparisons and every nonlinearity but ReLU by
//! rule, checked partly by wrapped functions and partly by hand. Here the submission is a model
//! description in a small op-graph language ([`graph`], `model.toml`) plus
//! `weights.safetensors`, and the scorer's interpreter ([`interp`]) is the only forward pass
//! there is: the language has exactly the allowed operations, so there is nothing to check at
//! run time, and a graph is validated completely (types, shapes, caps) before a weight is read.
//!
//! Data: sequences of an HMM corpus ([`rdbench_lm::corpus`]) with 15 % of positions replaced by
//! a mask id. Raw score: `ln(L - F)`, `L` the mean cross-entropy of the masked tokens of a
//! held-out split, `F` the exact Bayes-optimal loss of those same positions given the unmasked
//! ones (forward-backward with the masked positions as missing observations): RE-Bench's
//! `ln(loss - 1.5)` with a floor that is known instead of guessed.
//!
//! The data distribution, the held-out split and its mask derive from a secret of the
//! installation ([`instance`]), so raw scores of the start and the reference move a little
//! between installations; as for fix-embedding, each installation calibrates its own.
//!
//! Training is unrestricted; [`mlm::train`] trains any valid graph on candle (the start and the
//! reference are trained with it), and the example `restricted_mlm_train` runs it on files. The
//! reference's graph comes from its own crate ([`Reference`]).

pub mod build;
pub mod graph;
pub mod instance;
pub mod interp;
pub mod mlm;
pub mod prep;
pub mod profile;
pub mod start;

use std::path::Path;

use candle_core::Device;
use rdbench_core::artifact::{ArtifactTask, ArtifactTaskAdapter};
use rdbench_core::fsutil::{read_untrusted, UntrustedReadError};
use rdbench_core::task::{
    Direction, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution,
    SubmissionKind, Task, TaskInfo,
};
use rdbench_core::{fsutil, Error, Result};
use serde_json::json;

use graph::Limits;
use instance::Instance;
use interp::MlmModel;
use profile::{ReferenceConfig, Spec};

/// The graph file of a submission.
pub const MODEL_FILE: &str = "model.toml";
/// The most bytes `weights.safetensors` may have: the largest profile's parameter cap in f32,
/// plus room for the safetensors header (checked before a byte of it is read).
pub fn max_weights_bytes() -> u64 {
    [profile::tiny(), profile::full()]
        .iter()
        .map(|s| s.limits.max_params * 4)
        .max()
        .unwrap_or(0)
        + (16 << 20)
}

/// The weights file of a submission.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Largest `model.toml` read (10,000 nodes of a few lines each fit easily).
pub const MAX_MODEL_BYTES: u64 = 2 << 20;
/// Smallest `L - F` the raw score takes, keeping it finite.
pub const MIN_GAP: f64 = 1e-6;

/// The reference solution: its graph (`model.toml`) for a profile's limits and the profile's
/// reference settings; [`prep`] trains it like the start.
///
/// It lives in its own crate, `rdbench-reference-restricted-mlm`
/// (`reference_solutions/restricted-mlm/`), which builds the graph with this crate's
/// [`build::GraphText`]; the registry hands it to [`tasks`], so this crate never contains its
/// reference.
pub type Reference = fn(&Limits, &ReferenceConfig) -> String;

/// The restricted-mlm task. Construct with [`RestrictedMlm::new`].
#[derive(Debug, Clone)]
pub struct RestrictedMlm {
    reference: Reference,
}

impl RestrictedMlm {
    pub fn new(reference: Reference) -> Self {
        Self { reference }
    }
}

/// The tasks of this crate, for the CLI's registry.
pub fn tasks(reference: Reference) -> Vec<Box<dyn Task>> {
    vec![Box::new(task(reference))]
}

/// The task as the registry holds it: [`RestrictedMlm`] behind the artifact-task adapter.
pub fn task(reference: Reference) -> ArtifactTaskAdapter<RestrictedMlm> {
    ArtifactTaskAdapter::new(RestrictedMlm::new(reference))
}

pub use rdbench_core::artifact::Rejection;

/// Reads and checks a submission folder: the graph (parsed and validated against the profile),
/// then its weights. Any failure is one [`Rejection`] naming the file and, for graphs, the node.
pub fn load_submission(
    spec: &Spec,
    dir: &Path,
) -> Result<std::result::Result<MlmModel, Rejection>> {
    let model_path = dir.join(MODEL_FILE);
    let text = match read_untrusted(&model_path, MAX_MODEL_BYTES) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                return Ok(Err((
                    InvalidKind::NotText,
                    format!("{}: not UTF-8 text", model_path.display()),
                )))
            }
        },
        Err(e) => {
            let kind = match e {
                UntrustedReadError::TooLarge { .. } => InvalidKind::TooLarge,
                UntrustedReadError::Io(_) => InvalidKind::BadArtifact,
                _ => InvalidKind::MissingFile,
            };
            return Ok(Err((kind, format!("{}: {e}", model_path.display()))));
        }
    };
    let graph = match graph::parse(&text, &spec.limits) {
        Ok(g) => g,
        Err(e) => {
            let kind = if e.over_limit {
                InvalidKind::ResourceLimit
            } else {
                InvalidKind::BadArtifact
            };
            return Ok(Err((kind, format!("{}: {e}", model_path.display()))));
        }
    };
    let weights_path = dir.join(WEIGHTS_FILE);
    match MlmModel::load(graph, spec.limits.clone(), &weights_path, &Device::Cpu) {
        Ok(m) => Ok(Ok(m)),
        Err(e) => {
            use rdbench_lm::LoadErrorKind as K;
            let kind = match e.kind {
                K::NotFound | K::NotAFile => InvalidKind::MissingFile,
                K::TooLarge { .. } => InvalidKind::TooLarge,
                K::NonFinite { .. } => InvalidKind::NonFinite,
                _ => InvalidKind::BadArtifact,
            };
            Ok(Err((kind, format!("{e} (the weights of {MODEL_FILE})"))))
        }
    }
}

/// What scoring measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub loss: f64,
    pub floor: f64,
    pub raw: f64,
    pub masked_positions: usize,
    pub seconds: f64,
}

/// Evaluates `model` on the held-out split of `inst`. A node of the graph that cannot be
/// evaluated as checked (a shape the checker did not predict, an allocation over the bound) is
/// the submission's defect: a [`Rejection`] of kind `bad_artifact`, never an internal error.
pub fn evaluate(
    spec: &Spec,
    inst: &Instance,
    model: &MlmModel,
) -> Result<std::result::Result<Evaluation, Rejection>> {
    let t = std::time::Instant::now();
    let (set, masks, floor, n) = prep::heldout(spec, inst)?;
    let evaluated = rdbench_lm::with_threads(spec.threads, || {
        mlm::eval_masked_loss(model, &set, &masks, spec.eval_batch)
    });
    let (loss, counted) = match evaluated {
        Ok(x) => x,
        Err(interp::ForwardError::Node(e)) => {
            return Ok(Err((
                InvalidKind::BadArtifact,
                format!("{MODEL_FILE}: {e}"),
            )))
        }
        Err(interp::ForwardError::Device(e)) => {
            return Err(Error::Internal(format!("restricted-mlm evaluation: {e}")))
        }
    };
    debug_assert_eq!(n, counted);
    Ok(Ok(Evaluation {
        loss,
        floor,
        raw: (loss - floor).max(MIN_GAP).ln(),
        masked_positions: n,
        seconds: t.elapsed().as_secs_f64(),
    }))
}

fn copy_solution(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for name in [MODEL_FILE, WEIGHTS_FILE] {
        let src = from.join(name);
        let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
        fsutil::atomic_write(&to.join(name), &bytes)?;
    }
    Ok(())
}

impl ArtifactTask for RestrictedMlm {
    type Profile = Spec;

    fn info(&self) -> TaskInfo {
        let describe = |s: &Spec| {
            format!(
                "{}-token sequences, vocab {}, {} held-out sequences; caps: {} weights, {} flops/token",
                s.limits.seq,
                s.limits.vocab,
                s.heldout_seqs,
                rdbench_core::template::thousands(s.limits.max_params as i64),
                rdbench_core::template::thousands(s.limits.max_flops_per_token as i64)
            )
        };
        TaskInfo {
            name: "restricted-mlm".into(),
            family: "restricted-mlm".into(),
            title: "Restricted Architecture MLM: masked language modelling without division, exp or softmax".into(),
            summary: "Build and train a masked language model whose forward pass uses only embedding, linear \
                      maps, products, sums, ReLU and indexing (no division, exponentials, normalization or \
                      comparisons), written as an op graph that the scorer interprets. The score is \
                      ln(loss - floor) on held-out masked tokens, where the floor is the exact Bayes-optimal \
                      loss of those positions."
                .into(),
            raw_score: "ln(mean held-out masked-token loss - exact Bayes-optimal loss of the same positions), nats".into(),
            direction: Direction::LowerIsBetter,
            submission: SubmissionKind::Artifact,
            submission_files: vec![
                rdbench_core::task::SubmissionFile::new(MODEL_FILE, MAX_MODEL_BYTES),
                rdbench_core::task::SubmissionFile::new(WEIGHTS_FILE, max_weights_bytes()),
            ],
            profiles: vec![
                ProfileInfo { name: "tiny".into(), description: describe(&profile::tiny()), needs_gpu: false },
                ProfileInfo { name: "full".into(), description: describe(&profile::full()), needs_gpu: false },
            ],
            score_hidden: false,
            hardware_independent: true,
            default_time_limit_minutes: 480,
            score_timeout_s: 1800,
            human_minutes: Some(480.0),
            tools: Vec::new(),
        }
    }

    fn profile(&self, name: &str) -> Option<Spec> {
        profile::by_name(name)
    }

    fn prepare(&self, spec: &Spec, req: &PrepareRequest) -> Result<()> {
        let inst = Instance::load(spec, &req.cache_dir)?;
        let start = prep::ensure_solution(
            spec,
            &inst,
            &req.cache_dir,
            Solution::Starting,
            self.reference,
        )?;
        copy_solution(&start, &req.attempt_dir)?;
        let corpus = prep::ensure_train_corpus(spec, &inst, &req.cache_dir)?;
        let bytes = std::fs::read(&corpus).map_err(|e| Error::io(&corpus, e))?;
        fsutil::atomic_write(&req.attempt_dir.join(prep::TRAIN_TOKENS), &bytes)?;
        let info = json!({
            "file": prep::TRAIN_TOKENS,
            "format": "little-endian uint16 token ids, row-major [sequences, seq_len], no header; no masks (mask them yourself)",
            "sequences": spec.train_seqs,
            "seq_len": spec.limits.seq,
            "vocab": spec.limits.vocab,
            "mask_id": spec.limits.vocab,
            "mask_rate": mlm::MASK_RATE,
        });
        fsutil::atomic_write(
            &req.attempt_dir.join("corpus.json"),
            serde_json::to_string_pretty(&info)
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    fn instructions(&self, spec: &Spec) -> Result<String> {
        instructions(spec)
    }

    fn install(&self, solution: Solution, spec: &Spec, cache_dir: &Path, dir: &Path) -> Result<()> {
        let inst = Instance::load(spec, cache_dir)?;
        let from = prep::ensure_solution(spec, &inst, cache_dir, solution, self.reference)?;
        copy_solution(&from, dir)
    }

    fn check_submission(&self, spec: &Spec, req: &ScoreRequest) -> Result<Option<Rejection>> {
        Ok(load_submission(spec, &req.submission_dir)?.err())
    }

    fn score(&self, spec: &Spec, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let model = match load_submission(spec, &req.submission_dir)? {
            Ok(m) => m,
            Err((kind, reason)) => {
                return Ok(ScoreOutcome::Invalid {
                    kind,
                    reason,
                    details: json!({ "folder": req.submission_dir.display().to_string() }),
                })
            }
        };
        let inst = Instance::load(spec, &req.cache_dir)?;
        let ev = match evaluate(spec, &inst, &model)? {
            Ok(ev) => ev,
            Err((kind, reason)) => {
                return Ok(ScoreOutcome::Invalid {
                    kind,
                    reason,
                    details: json!({ "stage": "evaluation" }),
                })
            }
        };
        if !ev.loss.is_finite() {
            return Ok(ScoreOutcome::Invalid {
                kind: InvalidKind::NonFinite,
                reason: format!(
                    "the model's held-out masked loss is not finite ({})",
                    ev.loss
                ),
                details: json!({ "loss": ev.loss.to_string() }),
            });
        }
        let details = json!({
            "loss": ev.loss,
            "floor": ev.floor,
            "loss_minus_floor": ev.loss - ev.floor,
            "masked_positions": ev.masked_positions,
            "params": model.graph().params,
            "flops_per_token": model.graph().flops_per_token,
            "eval_seconds": ev.seconds,
        });
        Ok(ScoreOutcome::Valid {
            raw: ev.raw,
            headline: format!(
                "held-out masked loss {:.4} ({:.4} above the floor)",
                ev.loss,
                ev.loss - ev.floor
            ),
            details,
        })
    }

    // No `shipped_calibration`: the start's and the reference's raw scores depend on the
    // installation's instance, so each installation measures its own.
}

/// The attempt's INSTRUCTIONS.md for `spec`.
pub fn instructions(spec: &Spec) -> Result<String> {
    let l = &spec.limits;
    let n = |x: u64| rdbench_core::template::thousands(x as i64);
    rdbench_core::template::render(
        include_str!("instructions.md"),
        &[
            ("PROFILE", &spec.name),
            ("SEQ", &l.seq.to_string()),
            ("VOCAB", &l.vocab.to_string()),
            ("VOCAB1", &(l.vocab + 1).to_string()),
            ("SEQS", &n(spec.train_seqs as u64)),
            ("HELDOUT", &n(spec.heldout_seqs as u64)),
            ("MAXNODES", &n(l.max_nodes as u64)),
            ("MAXPARAMS", &n(l.max_params)),
            ("MAXFLOPS", &n(l.max_flops_per_token)),
            ("MAXVALUE", &n(l.max_value_elements)),
            ("MAXTOTAL", &n(l.max_total_elements)),
        ],
    )
}
