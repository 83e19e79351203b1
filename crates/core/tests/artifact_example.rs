//! The worked example of docs/artifact-tasks.md, compiled and checked: a whole artifact task
//! (the submission is `answer.json`, a guess of a secret number's square root), registered the
//! way a task crate registers, passing the conformance kit and scoring its two solutions.

use std::path::Path;

use rdbench_core::artifact::{ArtifactTask, ArtifactTaskAdapter, Rejection};
use rdbench_core::task::{
    profile_of, Direction, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest,
    Solution, SubmissionFile, SubmissionKind, Task, TaskInfo,
};
use rdbench_core::{Error, Result};

/// A profile's settings: the number whose square root is asked for.
pub struct Size {
    target: f64,
}

pub struct SquareRoot;

/// What the crate's `tasks()` returns: the registry's one line calls it.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(ArtifactTaskAdapter::new(SquareRoot))]
}

fn read_answer(dir: &Path) -> std::result::Result<f64, Rejection> {
    let path = dir.join("answer.json");
    let bytes = rdbench_core::fsutil::read_untrusted(&path, 4096)
        .map_err(|e| (InvalidKind::MissingFile, format!("{}: {e}", path.display())))?;
    serde_json::from_slice::<f64>(&bytes)
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| {
            let why = format!("{}: not one finite number", path.display());
            (InvalidKind::BadArtifact, why)
        })
}

fn write_answer(dir: &Path, x: f64) -> Result<()> {
    rdbench_core::fsutil::atomic_write(&dir.join("answer.json"), x.to_string().as_bytes())
}

impl ArtifactTask for SquareRoot {
    type Profile = Size;

    fn info(&self) -> TaskInfo {
        let profile = |name: &str, description: &str| ProfileInfo {
            name: name.into(),
            description: description.into(),
            needs_gpu: false,
        };
        TaskInfo {
            name: "square-root".into(),
            family: "square-root".into(),
            title: "Square root: guess it".into(),
            summary: "Write the square root of the profile's number into answer.json.".into(),
            raw_score: "ln(1 + |answer^2 - target|)".into(),
            direction: Direction::LowerIsBetter,
            submission: SubmissionKind::Artifact,
            submission_files: vec![SubmissionFile::new("answer.json", 4096)],
            profiles: vec![profile("tiny", "sqrt(2)"), profile("full", "sqrt(1e6)")],
            score_hidden: false,
            hardware_independent: true,
            default_time_limit_minutes: 10,
            score_timeout_s: 10,
            human_minutes: Some(1.0),
            tools: Vec::new(),
        }
    }

    fn profile(&self, name: &str) -> Option<Size> {
        match name {
            "tiny" => Some(Size { target: 2.0 }),
            "full" => Some(Size { target: 1e6 }),
            _ => None,
        }
    }

    fn prepare(&self, size: &Size, req: &PrepareRequest) -> Result<()> {
        write_answer(&req.attempt_dir, size.target)
    }

    fn instructions(&self, size: &Size) -> Result<String> {
        Ok(format!(
            "Write the square root of {} into answer.json.\n",
            size.target
        ))
    }

    fn install(&self, solution: Solution, size: &Size, _cache: &Path, dir: &Path) -> Result<()> {
        match solution {
            Solution::Starting => write_answer(dir, size.target),
            _ => write_answer(dir, size.target.sqrt()),
        }
    }

    fn check_submission(&self, _size: &Size, req: &ScoreRequest) -> Result<Option<Rejection>> {
        Ok(read_answer(&req.submission_dir).err())
    }

    fn score(&self, size: &Size, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let x = match read_answer(&req.submission_dir) {
            Ok(x) => x,
            Err((kind, reason)) => return Ok(ScoreOutcome::invalid(kind, reason)),
        };
        let error = (x * x - size.target).abs();
        Ok(ScoreOutcome::Valid {
            raw: error.ln_1p(),
            headline: format!("{x} squared is {error:.3e} off"),
            details: serde_json::json!({ "answer": x, "error": error }),
        })
    }
}

#[test]
fn the_worked_example_passes_the_kit_and_scores_its_solutions() {
    let cache = tempfile::tempdir().unwrap();
    for task in tasks() {
        rdbench_core::conformance::assert_conformant(task.as_ref(), "tiny", cache.path());
    }
    let task = &tasks()[0];
    let tiny = profile_of(task.as_ref(), "tiny").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = |solution| {
        let at = dir.path().join(Solution::as_str(solution));
        task.install_solution(solution, &tiny, cache.path(), &at)
            .unwrap();
        let req = ScoreRequest {
            profile: tiny.clone(),
            submission_dir: at,
            private_dir: dir.path().join("private"),
            cache_dir: cache.path().into(),
            samples_path: dir.path().join("samples.json"),
            seed: 7,
            execution: Default::default(),
        };
        match task.score(&req).unwrap() {
            ScoreOutcome::Valid { raw, .. } => raw,
            other => panic!("{other:?}"),
        }
    };
    assert!(raw(Solution::Reference) < 1e-12 && raw(Solution::Starting) > 0.5);
    // The adapter's own parts: the profile refusal and the fastest that does not ship.
    let refused = profile_of(task.as_ref(), "huge");
    assert!(matches!(refused, Err(Error::Usage(m)) if m.contains("its profiles are: tiny, full")));
    let fastest = task.install_solution(Solution::Fastest, &tiny, cache.path(), dir.path());
    assert!(fastest.is_err());
}
