//! # rdbench-task-fix-embedding
//!
//! RE-Bench's *Fix Embedding* on rdbench's synthetic corpus. A small GPT-style model
//! ([`rdbench_lm::Gpt`]) was trained on text from a hidden Markov model; then the rows of its
//! token embedding (tied to the output head) were permuted. The attempt gets the corrupted
//! model, a smaller correctly trained model, and a training corpus, and must save a model of the
//! same architecture as `fixed_model.safetensors`.
//!
//! Raw score: `ln(L - F)`, where `L` is the submission's mean next-token loss on a held-out split
//! and `F` the exact Bayes-optimal loss of that same split (forward algorithm on the HMM).
//!
//! The public profile ([`profile`]) holds sizes and schedules only. The instance (the HMM, every
//! corpus sample, the models' seeds, the permutation, the held-out split) derives from a secret
//! made once per installation and kept in the cache ([`instance`]), so that no other
//! installation, and nobody reading rdbench's source, can reproduce the original model or the
//! held-out text. It is fixed per profile and installation so that scores are stable and
//! comparable.
//!
//! **Calibration is per installation.** The data distribution is part of the instance, so the
//! raw scores of the start and the reference move between installations. Measured on `tiny`
//! over six secrets (`fix_embedding_instances tiny 6`): start 1.396 ± 0.034 (sd; range
//! 1.343..1.443), reference -0.925 ± 0.091 (range -1.044..-0.832); one shared pair of values
//! would normalize some installation's reference to 1.06, outside `check-task`'s ± 0.05. So no
//! calibration is shipped: `rdbench calibrate --task fix-embedding` measures this installation's
//! (scores are still hardware-independent: the CPU does not change them, the secret does).

pub use rdbench_reference_fix_embedding as reference;

pub mod instance;
pub mod prep;
pub mod profile;

use std::path::Path;

use rdbench_core::artifact::{ArtifactTask, ArtifactTaskAdapter, Rejection};
use rdbench_core::task::{
    Direction, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution,
    SubmissionKind, Task, TaskInfo,
};
use rdbench_core::{fsutil, Error, Result};
use rdbench_lm::{eval_loss, load_model, Gpt};
use serde_json::json;

use instance::Instance;
use profile::Spec;

/// The file an attempt submits.
pub const SUBMISSION: &str = "fixed_model.safetensors";

/// Smallest `L - F` the raw score takes (`ln` of it); a submission cannot get there without
/// knowing the held-out data, and it keeps the score finite.
pub const MIN_GAP: f64 = 1e-6;

/// The fix-embedding task. Construct with `FixEmbedding::default()`.
#[derive(Debug, Clone, Default)]
pub struct FixEmbedding {}

fn write_text(path: &Path, text: &str) -> Result<()> {
    fsutil::atomic_write(path, text.as_bytes())
}

/// What scoring measured for one model.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub loss: f64,
    pub floor: f64,
    pub raw: f64,
    pub tokens: usize,
    pub seconds: f64,
}

/// Evaluates `model` on the held-out split of `inst` (used by the scorer with the installation's
/// instance, and by tests and tools with others).
pub fn evaluate(spec: &Spec, inst: &Instance, model: &Gpt) -> Result<Evaluation> {
    let start = std::time::Instant::now();
    let (set, floor) = prep::heldout(spec, inst)?;
    let loss = rdbench_lm::with_threads(spec.threads, || eval_loss(model, &set, spec.eval_batch))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let raw = (loss - floor).max(MIN_GAP).ln();
    Ok(Evaluation {
        loss,
        floor,
        raw,
        tokens: set.n_seq() * (set.seq_len - 1),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The invalid kind of a model file that does not load.
fn load_error_kind(e: &rdbench_lm::io::LoadError) -> InvalidKind {
    use rdbench_lm::io::LoadErrorKind as K;
    match e.kind {
        K::NotFound | K::NotAFile => InvalidKind::MissingFile,
        K::TooLarge { .. } => InvalidKind::TooLarge,
        K::NonFinite { .. } => InvalidKind::NonFinite,
        K::Io(_)
        | K::NotSafetensors(_)
        | K::MissingTensors(_)
        | K::UnexpectedTensors(_)
        | K::WrongDtype { .. }
        | K::WrongShape { .. } => InvalidKind::BadArtifact,
    }
}

/// The tasks of this crate, for the CLI's registry.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(task())]
}

/// The task as the registry holds it: [`FixEmbedding`] behind the artifact-task adapter.
pub fn task() -> ArtifactTaskAdapter<FixEmbedding> {
    ArtifactTaskAdapter::new(FixEmbedding::default())
}

impl FixEmbedding {
    /// Scores the model file at `path` on the installation's held-out split.
    pub fn score_file(&self, spec: &Spec, path: &Path, cache_dir: &Path) -> Result<ScoreOutcome> {
        let model = match load_model(path, &spec.model) {
            Ok(m) => m,
            Err(e) => {
                return Ok(ScoreOutcome::Invalid {
                    kind: load_error_kind(&e),
                    reason: e.to_string(),
                    details: json!({ "file": path.display().to_string() }),
                })
            }
        };
        let ev = evaluate(spec, &Instance::load(spec, cache_dir)?, &model)?;
        if !ev.loss.is_finite() {
            return Ok(ScoreOutcome::Invalid {
                kind: InvalidKind::NonFinite,
                reason: format!(
                    "{}: the model's held-out loss is not finite ({})",
                    path.display(),
                    ev.loss
                ),
                details: json!({ "loss": ev.loss.to_string() }),
            });
        }
        Ok(ScoreOutcome::Valid {
            raw: ev.raw,
            headline: format!(
                "held-out loss {:.4} ({:.4} above the floor)",
                ev.loss,
                ev.loss - ev.floor
            ),
            details: json!({
                "loss": ev.loss,
                "floor": ev.floor,
                "loss_minus_floor": ev.loss - ev.floor,
                "heldout_tokens": ev.tokens,
                "eval_seconds": ev.seconds,
            }),
        })
    }
}

impl ArtifactTask for FixEmbedding {
    type Profile = Spec;

    fn info(&self) -> TaskInfo {
        let t = profile::tiny();
        let f = profile::full();
        let describe = |s: &Spec| {
            format!(
                "GPT d={} x {} layers, vocab {}, context {}; small model d={} x {}; {} training tokens",
                s.model.d_model,
                s.model.n_layer,
                s.model.vocab,
                s.model.ctx,
                s.small.d_model,
                s.small.n_layer,
                s.train_corpus_seqs * s.seq_len()
            )
        };
        TaskInfo {
            name: "fix-embedding".into(),
            family: "fix-embedding".into(),
            title: "Fix Embedding: repair a language model whose embedding rows were permuted".into(),
            summary: "A GPT-style model trained on a synthetic corpus had the rows of its (tied) token embedding \
                      permuted. Using the corrupted model, a smaller correctly trained model and a training \
                      corpus, produce a model of the same architecture with the lowest held-out loss. The score \
                      is ln(loss - floor) where the floor is the exact Bayes-optimal loss of the held-out text."
                .into(),
            raw_score: "ln(mean held-out next-token loss - exact Bayes-optimal loss of the same text), nats".into(),
            direction: Direction::LowerIsBetter,
            submission: SubmissionKind::Artifact,
            submission_files: vec![rdbench_core::task::SubmissionFile::new(
                SUBMISSION,
                // The model's own f32 weights plus room for the safetensors header.
                [&t, &f]
                    .iter()
                    .map(|s| s.model.data_bytes())
                    .max()
                    .unwrap_or(0)
                    + (1 << 20),
            )],
            profiles: vec![
                ProfileInfo { name: "tiny".into(), description: describe(&t), needs_gpu: false },
                ProfileInfo { name: "full".into(), description: describe(&f), needs_gpu: false },
            ],
            score_hidden: false,
            hardware_independent: true,
            default_time_limit_minutes: 480,
            score_timeout_s: 600,
            human_minutes: Some(480.0),
            tools: Vec::new(),
        }
    }

    fn profile(&self, name: &str) -> Option<Spec> {
        profile::by_name(name)
    }

    fn prepare(&self, spec: &Spec, req: &PrepareRequest) -> Result<()> {
        let at = prep::ensure_prepared(spec, &req.cache_dir)?;
        let out = &req.attempt_dir;
        fsutil::atomic_copy(&at.corrupted(), &out.join("corrupted_model.safetensors"))?;
        fsutil::atomic_copy(&at.corrupted(), &out.join(SUBMISSION))?;
        fsutil::atomic_copy(&at.small(), &out.join("small_model.safetensors"))?;
        fsutil::atomic_copy(&at.train_tokens(), &out.join("train_tokens.bin"))?;
        let cfg = |c: &rdbench_lm::GptConfig| serde_json::to_string_pretty(c).unwrap_or_default();
        write_text(&out.join("model_config.json"), &cfg(&spec.model))?;
        write_text(&out.join("small_model_config.json"), &cfg(&spec.small))?;
        let corpus = json!({
            "file": "train_tokens.bin",
            "format": "little-endian uint16 token ids, row-major [sequences, seq_len], no header",
            "sequences": spec.train_corpus_seqs,
            "seq_len": spec.seq_len(),
            "vocab": spec.model.vocab,
        });
        write_text(
            &out.join("corpus.json"),
            &serde_json::to_string_pretty(&corpus).unwrap_or_default(),
        )?;
        Ok(())
    }

    fn instructions(&self, spec: &Spec) -> Result<String> {
        instructions(spec)
    }

    fn install(&self, solution: Solution, spec: &Spec, cache_dir: &Path, dir: &Path) -> Result<()> {
        let src = match solution {
            Solution::Starting => prep::ensure_prepared(spec, cache_dir)?.corrupted(),
            Solution::Reference | Solution::Fastest => prep::ensure_reference(spec, cache_dir)?,
        };
        fsutil::atomic_copy(&src, &dir.join(SUBMISSION))
    }

    fn check_submission(&self, spec: &Spec, req: &ScoreRequest) -> Result<Option<Rejection>> {
        Ok(
            load_model(&req.submission_dir.join(SUBMISSION), &spec.model)
                .err()
                .map(|e| (load_error_kind(&e), e.to_string())),
        )
    }

    fn score(&self, spec: &Spec, req: &ScoreRequest) -> Result<ScoreOutcome> {
        self.score_file(spec, &req.submission_dir.join(SUBMISSION), &req.cache_dir)
    }

    // No `shipped_calibration`: the raw scores of the start and the reference depend on the
    // installation's instance (the crate overview says by how much), so each installation
    // measures its own with `rdbench calibrate --task fix-embedding`.
}

/// The attempt's INSTRUCTIONS.md for `spec`.
pub fn instructions(spec: &Spec) -> Result<String> {
    let s = &spec.small;
    let own = [
        ("PROFILE", spec.name.clone()),
        ("SD", s.d_model.to_string()),
        ("SLAYERS", s.n_layer.to_string()),
        ("SEQS", spec.train_corpus_seqs.to_string()),
        ("SEQLEN", spec.seq_len().to_string()),
        (
            "TOKENS",
            (spec.train_corpus_seqs * spec.seq_len()).to_string(),
        ),
        (
            "HELDOUT",
            (spec.heldout_seqs * (spec.seq_len() - 1)).to_string(),
        ),
    ];
    let values = [own.as_slice(), &spec.model.template_values()].concat();
    rdbench_core::template::render_values(include_str!("instructions.md"), &values)
}
