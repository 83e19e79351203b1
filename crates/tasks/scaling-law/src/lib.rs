//! # rdbench-task-scaling-law
//!
//! RE-Bench's *Scaling Law Experiment* on rdbench's synthetic corpus. The agent must predict
//! the width (`n_embd`) and step count (`max_iters`) of the lowest-loss model trainable with a
//! FLOP budget, and that model's loss, while training only small models (each at most
//! budget / 50) with the task's trainer, `rdbench-scaling-law` ([`experiment`]).
//!
//! Score (as in RE-Bench): `1 - [(L(answer) - L_opt) + |loss_prediction - L(answer)|]`, where
//! `L` is the ground-truth loss surface ([`ground_truth`]) and `L_opt` its minimum at the
//! budget. Unlike the original, whose ground truth ignores the width, `L` was measured over
//! widths and budgets ([`ground_truth::Sweep`], shipped per profile under `sweeps/` with its
//! provenance; losses do not depend on the hardware that measured them).
//!
//! The score is hidden from the agent (`score` says only whether the answer was recorded), the
//! last valid entry counts, and the task's calibration is part of the task: start and reference are
//! the closed formula at the starting answer and at the reference solution's answer
//! ([`Reference`]: a Chinchilla fit to the sweep's small experiments, in its own crate).
//!
//! The `full` profile has no sweep yet (docs/scaling-law.md estimates its GPU cost), so scoring
//! it is an environment error that says so.

pub mod answer;
pub mod experiment;
pub mod ground_truth;
pub mod profile;

use std::path::Path;

use rdbench_core::artifact::{ArtifactTask, ArtifactTaskAdapter, Rejection};
use rdbench_core::task::{
    Direction, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest,
    ShippedCalibration, Solution, SubmissionKind, Task, TaskInfo, ToolReply, ToolRequest,
};
use rdbench_core::{Error, Result};
use serde::Serialize;
use serde_json::json;

use answer::Answer;
use experiment::Run;
use ground_truth::{Surface, Sweep};
use profile::Spec;

/// The experiment log the trainer appends to, in the attempt folder. It is the agent's file:
/// the scorer reports what it holds, and nothing depends on it.
pub const EXPERIMENT_LOG: &str = "experiments.jsonl";

/// Most bytes of the experiment log the scorer reads for its report.
const MAX_LOG_BYTES: u64 = 16 << 20;

/// The `train` tool and the limits of one call. The longest legal run (at the experiment cap)
/// takes well under the wall limit on the CPU trainer; the address space covers the trainer's
/// threads and buffers with room, and stops an allocation that runs away.
fn train_tool() -> rdbench_core::task::ToolSpec {
    rdbench_core::task::ToolSpec {
        needs_gpu: true,
        ..rdbench_core::task::ToolSpec::cpu("train", "n_embd=N max_iters=N [seed=N]", 600, 4 << 30)
    }
}

/// The reference solution: from the small experiments of a shipped sweep and the widths an
/// answer may use (an inclusive range), its answer; `None` when the experiments are too few to
/// fit.
///
/// It lives in its own crate, `rdbench-reference-scaling-law` (`reference_solutions/scaling-law/`),
/// which uses this crate's types; the registry hands it to [`tasks`], so this crate never
/// contains its reference.
pub type Reference = fn(&Spec, &[Run], (usize, usize)) -> Option<ReferenceAnswer>;

/// What the reference answers, and how closely its fit follows the experiments it was fitted
/// to (for the calibration's provenance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceAnswer {
    pub answer: Answer,
    /// Root-mean-square error of the fit over the experiments, nats.
    pub fit_rmse: f64,
}

/// The scaling-law task. Construct with [`ScalingLaw::new`].
#[derive(Debug, Clone)]
pub struct ScalingLaw {
    reference: Reference,
}

/// The tasks of this crate, for the CLI's registry.
pub fn tasks(reference: Reference) -> Vec<Box<dyn Task>> {
    vec![Box::new(task(reference))]
}

/// The task as the registry holds it: [`ScalingLaw`] behind the artifact-task adapter.
pub fn task(reference: Reference) -> ArtifactTaskAdapter<ScalingLaw> {
    ArtifactTaskAdapter::new(ScalingLaw::new(reference))
}

/// The shipped sweep of `profile`, if it has one.
pub fn sweep(profile: &str) -> Result<Option<Sweep>> {
    let text = match profile {
        "tiny" => include_str!("../sweeps/tiny.json"),
        _ => return Ok(None),
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::Internal(format!("sweeps/{profile}.json: {e}")))
}

/// The ground-truth surface of `spec`'s profile, or an environment error when no sweep ships.
pub fn surface(spec: &Spec) -> Result<Surface> {
    let sweep = sweep(&spec.name)?.ok_or_else(|| {
        Error::Environment(format!(
            "scaling-law profile {} has no ground-truth sweep: it has not been measured yet \
             (docs/scaling-law.md, \"The full profile\", gives its estimated GPU cost and the \
             command that measures it), so answers for it cannot be scored",
            spec.name
        ))
    })?;
    Surface::new(&sweep, spec).map_err(Error::Internal)
}

/// What the formula gives one answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    pub flops: f64,
    /// Ground-truth loss of the answer's (n_embd, max_iters).
    pub loss: f64,
    pub optimum: ground_truth::Optimum,
    pub prediction_error: f64,
    /// `1 - [(loss - optimum.loss) + prediction_error]`.
    pub score: f64,
}

/// Scores `answer` on `surface`; `Err` is why it is outside the measured range.
pub fn evaluate(
    spec: &Spec,
    surface: &Surface,
    answer: &Answer,
) -> std::result::Result<Evaluation, ground_truth::OutOfRange> {
    let loss = surface.loss(answer.n_embd, answer.max_iters)?;
    let optimum = surface.optimum();
    let prediction_error = (answer.loss_prediction - loss).abs();
    Ok(Evaluation {
        flops: spec.flops(answer.n_embd, answer.max_iters),
        loss,
        optimum,
        prediction_error,
        score: 1.0 - ((loss - optimum.loss) + prediction_error),
    })
}

/// The starting answer: a plausible guess that no experiment informed.
pub fn starting_answer(spec: &Spec) -> Answer {
    // A width from the middle of the allowed range, the steps that fill the
    // budget, and a round loss: what one writes down before running anything.
    let n_embd = 64;
    Answer {
        n_embd,
        max_iters: (spec.budget / spec.flops_per_iter(n_embd as f64)).floor() as u64,
        loss_prediction: 4.0,
    }
}

/// The answer of `reference` for `spec`: from the sweep's small experiments, over the swept
/// widths.
pub fn reference_answer(reference: Reference, spec: &Spec) -> Result<ReferenceAnswer> {
    let sweep = sweep(&spec.name)?.ok_or_else(|| {
        surface(spec)
            .err()
            .unwrap_or_else(|| Error::Internal("no sweep".into()))
    })?;
    let (Some(&narrowest), Some(&widest)) = (sweep.widths.first(), sweep.widths.last()) else {
        return Err(Error::Internal(format!(
            "sweeps/{}.json: no widths",
            spec.name
        )));
    };
    reference(spec, &sweep.experiments, (narrowest, widest)).ok_or_else(|| {
        Error::Internal(format!(
            "sweeps/{}.json: too few finite experiments to fit a scaling law",
            spec.name
        ))
    })
}

fn write_answer(dir: &Path, a: &Answer) -> Result<()> {
    let text = serde_json::to_string_pretty(&json!({
        "n_embd": a.n_embd,
        "max_iters": a.max_iters,
        "loss_prediction": (a.loss_prediction * 1e4).round() / 1e4,
    }))
    .map_err(|e| Error::Internal(e.to_string()))?;
    rdbench_core::fsutil::atomic_write(&dir.join(answer::FILE), format!("{text}\n").as_bytes())
}

/// What the scorer's experiment log of this attempt says (every `rdbench tool DIR train` run,
/// appended by [`ScalingLaw::run_tool`] in the attempt's private folder, out of the agent's
/// reach), for reports: the score never depends on it.
pub fn log_report(private_dir: &Path) -> serde_json::Value {
    let bytes = match rdbench_core::fsutil::read_untrusted(
        &private_dir.join(EXPERIMENT_LOG),
        MAX_LOG_BYTES,
    ) {
        Ok(b) => b,
        Err(rdbench_core::fsutil::UntrustedReadError::NotFound) => {
            return json!({ "runs": 0, "note": "no experiments were run through `rdbench tool`" })
        }
        Err(e) => return json!({ "unreadable": e.to_string() }),
    };
    let text = String::from_utf8_lossy(&bytes);
    let runs: Vec<experiment::Run> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    json!({
        "runs": runs.len(),
        "unparsed_lines": lines - runs.len(),
        "total_flops": runs.iter().map(|r| r.flops).sum::<f64>(),
        "largest_flops": runs.iter().map(|r| r.flops).fold(0.0, f64::max),
        "note": "runs of `rdbench tool DIR train`, logged by the scorer",
    })
}

impl ScalingLaw {
    pub fn new(reference: Reference) -> Self {
        Self { reference }
    }

    /// Scores the answer in `dir` for `spec`; the report of the experiments is read from the
    /// attempt's `private_dir`.
    pub fn score_dir(&self, spec: &Spec, dir: &Path, private_dir: &Path) -> Result<ScoreOutcome> {
        let surface = surface(spec)?;
        let a = match answer::read(dir) {
            Ok(a) => a,
            Err((kind, reason)) => return Ok(ScoreOutcome::invalid(kind, reason)),
        };
        let ev = match evaluate(spec, &surface, &a) {
            Ok(ev) => ev,
            Err(e) => {
                let kind = match e {
                    ground_truth::OutOfRange::OverBudget { .. } => InvalidKind::ResourceLimit,
                    _ => InvalidKind::RuleViolation,
                };
                return Ok(ScoreOutcome::invalid(kind, e.to_string()));
            }
        };
        Ok(ScoreOutcome::Valid {
            raw: ev.score,
            headline: format!(
                "loss {:.4} at n_embd {} x {} steps ({:.3} x budget), optimum {:.4} at n_embd {}, prediction off by {:.4}",
                ev.loss,
                a.n_embd,
                a.max_iters,
                ev.flops / spec.budget,
                ev.optimum.loss,
                ev.optimum.n_embd,
                ev.prediction_error
            ),
            details: json!({
                "answer": { "n_embd": a.n_embd, "max_iters": a.max_iters, "loss_prediction": a.loss_prediction },
                "evaluation": ev,
                "flops_over_budget": ev.flops / spec.budget,
                "experiment_log": log_report(private_dir),
            }),
        })
    }
}

impl ArtifactTask for ScalingLaw {
    type Profile = Spec;

    fn info(&self) -> TaskInfo {
        let describe = |s: &Spec| {
            format!(
                "GPT {} layers, context {}, batch {}, vocab {}; budget {:.0e} FLOPs, experiments <= {:.0e}",
                s.n_layer,
                s.block_size,
                s.batch_size,
                s.hmm.vocab,
                s.budget,
                s.experiment_cap()
            )
        };
        TaskInfo {
            name: "scaling-law".into(),
            family: "scaling-law".into(),
            title: "Scaling Law Experiment: predict the compute-optimal width, steps and loss".into(),
            summary: "Using only small training runs (each at most 1/50 of the budget) of a fixed GPT-style \
                      architecture on a synthetic corpus, predict the width and step count that give the lowest \
                      loss for the full FLOP budget, and that loss. The score, hidden until the attempt ends, is \
                      1 - [(L(answer) - L_opt) + |prediction - L(answer)|] on a measured loss surface over width \
                      and compute."
                .into(),
            raw_score: "1 - [(L(answer) - L_opt) + |loss_prediction - L(answer)|], L in nats".into(),
            direction: Direction::HigherIsBetter,
            submission: SubmissionKind::Artifact,
            submission_files: vec![rdbench_core::task::SubmissionFile::new(
                answer::FILE,
                answer::MAX_BYTES,
            )],
            profiles: vec![
                ProfileInfo {
                    name: "tiny".into(),
                    description: describe(&profile::tiny()),
                    needs_gpu: false,
                },
                ProfileInfo {
                    name: "full".into(),
                    description: format!("{} (no sweep shipped yet)", describe(&profile::full())),
                    needs_gpu: true,
                },
            ],
            score_hidden: true,
            hardware_independent: true,
            default_time_limit_minutes: 480,
            score_timeout_s: 60,
            human_minutes: Some(480.0),
            tools: vec![train_tool()],
        }
    }

    fn profile(&self, name: &str) -> Option<Spec> {
        profile::by_name(name)
    }

    fn prepare(&self, spec: &Spec, req: &PrepareRequest) -> Result<()> {
        write_answer(&req.attempt_dir, &starting_answer(spec))
    }

    fn instructions(&self, spec: &Spec) -> Result<String> {
        instructions(spec)
    }

    fn install(
        &self,
        solution: Solution,
        spec: &Spec,
        _cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        let answer = match solution {
            Solution::Starting => starting_answer(spec),
            Solution::Reference | Solution::Fastest => {
                reference_answer(self.reference, spec)?.answer
            }
        };
        write_answer(dir, &answer)
    }

    fn check_submission(&self, _spec: &Spec, req: &ScoreRequest) -> Result<Option<Rejection>> {
        Ok(answer::read(&req.submission_dir).err())
    }

    fn check_environment(&self, spec: &Spec) -> Result<()> {
        surface(spec).map(|_| ())
    }

    fn score(&self, spec: &Spec, req: &ScoreRequest) -> Result<ScoreOutcome> {
        self.score_dir(spec, &req.submission_dir, &req.private_dir)
    }

    /// `train n_embd=N max_iters=N [seed=N]`: one experiment, refused above the experiment
    /// limit before it trains, appended to the attempt's private experiment log.
    fn run_tool(&self, spec: &Spec, req: &ToolRequest) -> Result<ToolReply> {
        if req.name != "train" {
            return Err(Error::Usage(format!(
                "scaling-law has one tool, train (n_embd=N max_iters=N [seed=N]), not {:?}",
                req.name
            )));
        }
        // No sweep means no trainer either (the full profile needs a GPU build of the trainer).
        surface(spec)?;
        if let Some(k) = req
            .args
            .keys()
            .find(|k| !matches!(k.as_str(), "n_embd" | "max_iters" | "seed"))
        {
            return Err(Error::Usage(format!(
                "train takes n_embd, max_iters and seed, not {k:?}"
            )));
        }
        let number = |k: &str| -> Result<Option<u64>> {
            req.args
                .get(k)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        Error::Usage(format!("train: {k}={v:?} is not a whole number"))
                    })
                })
                .transpose()
        };
        let need = |k: &str| number(k)?.ok_or_else(|| Error::Usage(format!("train needs {k}=N")));
        let (n_embd, max_iters) = (need("n_embd")?, need("max_iters")?);
        let seed = number("seed")?.unwrap_or(0);
        let (n_embd, max_iters) = (
            usize::try_from(n_embd).map_err(|_| Error::Usage("n_embd is too large".into()))?,
            usize::try_from(max_iters)
                .map_err(|_| Error::Usage("max_iters is too large".into()))?,
        );
        let log = req.private_dir.join(EXPERIMENT_LOG);
        let run =
            experiment::experiment(spec, n_embd, max_iters, seed, &log).map_err(|e| match e {
                experiment::ExperimentError::Refused(r) => Error::Usage(r.to_string()),
                experiment::ExperimentError::Log { path, source } => Error::io(&path, source),
                e => Error::Internal(e.to_string()),
            })?;
        Ok(ToolReply {
            text: run.summary(),
            value: serde_json::to_value(&run).map_err(|e| Error::Internal(e.to_string()))?,
        })
    }

    fn shipped_calibration(&self, spec: &Spec) -> Option<ShippedCalibration> {
        let surface = surface(spec).ok()?;
        let start = evaluate(spec, &surface, &starting_answer(spec)).ok()?;
        let ra = reference_answer(self.reference, spec).ok()?;
        let reference = evaluate(spec, &surface, &ra.answer).ok()?;
        Some(ShippedCalibration {
            start: start.score,
            reference: reference.score,
            // The reference's answer is the task's secret: submitted as it is, it scores 1.
            // The provenance says how it was made, never what it is.
            provenance: format!(
                "closed formula over the shipped sweep of profile {}: start = the starting answer, \
                 reference = the Chinchilla fit to the sweep's small experiments (fit rmse {:.4}); \
                 the reference's answer is not shown",
                spec.name,
                ra.fit_rmse
            ),
        })
    }
}

/// The attempt's INSTRUCTIONS.md for `spec`.
pub fn instructions(spec: &Spec) -> Result<String> {
    let (lo, hi) = match sweep(&spec.name)? {
        Some(s) => (s.widths[0], *s.widths.last().unwrap_or(&s.widths[0])),
        None => (spec.min_n_embd, spec.max_n_embd),
    };
    let start = starting_answer(spec);
    let example = spec.example_experiment();
    rdbench_core::template::render(
        include_str!("instructions.md"),
        &[
            ("PROFILE", &spec.name),
            ("BUDGET", &format!("{:.1e}", spec.budget)),
            ("CAP", &format!("{:.1e}", spec.experiment_cap())),
            ("RATIO", &format!("{}", spec.experiment_ratio)),
            ("LAYERS", &spec.n_layer.to_string()),
            ("HEADS", &spec.n_head.to_string()),
            ("BLOCK", &spec.block_size.to_string()),
            ("BATCH", &spec.batch_size.to_string()),
            ("VOCAB", &spec.hmm.vocab.to_string()),
            ("LR", &spec.lr.to_string()),
            ("MIN_W", &lo.to_string()),
            ("MAX_W", &hi.to_string()),
            ("TRAIN_MIN_W", &spec.min_n_embd.to_string()),
            ("TRAIN_MAX_W", &spec.max_n_embd.to_string()),
            ("EXAMPLE_N", &example.0.to_string()),
            ("EXAMPLE_ITERS", &example.1.to_string()),
            ("START_N", &start.n_embd.to_string()),
            ("START_ITERS", &start.max_iters.to_string()),
            ("START_LOSS", &start.loss_prediction.to_string()),
        ],
    )
}
