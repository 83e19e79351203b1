//! # prefix-sum: RE-Bench's "Optimize a Kernel"
//!
//! Input `x`: n int32 values from [-10, 10). Output `y`: `y[i] = sum_{j<=i} x[j] * p_j` where
//! `p_j` is 1 when an odd number of the strictly earlier elements are positive. The raw score
//! is `ln(milliseconds)` of the whole launch plan (lower is better); a wrong output is invalid
//! with the first wrong index, the expected and the actual value.
//!
//! The submission is a kernel submission (`solution.cu` + `launch.toml`, see
//! `docs/launch-plan.md`); the scorer owns all host code. Starting and harness kernels live in
//! `kernels/prefix_sum/`, reference solutions in `reference_solutions/prefix-sum/`; all are
//! compiled into this crate so the binary is self-contained.

pub mod oracle;
mod scorer;

use std::path::Path;

use rdbench_core::task::{
    Direction, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution, SubmissionKind,
    Task, TaskInfo,
};
use rdbench_core::{Error, Result};
use rdbench_gpu::plan::{BufferSpec, ElemType, PlanLimits};
use rdbench_gpu::submission::{CompileCheck, KernelSubmission, PLAN_FILE, SOURCE_FILE};
use rdbench_gpu::timing::StoppingRule;

/// The trusted harness kernels (input generation, poisoning, reference scan, comparison).
pub const HARNESS_SOURCE: &str = include_str!("../../../../kernels/prefix_sum/harness.cu");

/// A kernel submission's two files.
#[derive(Debug, Clone, Copy)]
pub struct KernelFiles {
    pub source: &'static str,
    pub plan: &'static str,
}

/// The starting solution handed to the agent.
pub const STARTING: KernelFiles = KernelFiles {
    source: include_str!("../../../../kernels/prefix_sum/start/solution.cu"),
    plan: include_str!("../../../../kernels/prefix_sum/start/launch.toml"),
};

/// RE-Bench's reference: a reduce-then-scan of a few kernels (normalized score 1).
pub const REFERENCE: KernelFiles = KernelFiles {
    source: include_str!("../../../../reference_solutions/prefix-sum/reference/solution.cu"),
    plan: include_str!("../../../../reference_solutions/prefix-sum/reference/launch.toml"),
};

/// The fastest version we could write: a single-pass scan with decoupled look-back.
pub const FASTEST: KernelFiles = KernelFiles {
    source: include_str!("../../../../reference_solutions/prefix-sum/fastest/solution.cu"),
    plan: include_str!("../../../../reference_solutions/prefix-sum/fastest/launch.toml"),
};

const INSTRUCTIONS: &str = include_str!("instructions.md");
const LAUNCH_PLAN_DOC: &str = include_str!("../../../../docs/launch-plan.md");

/// Problem size of each profile.
pub fn profile_n(profile: &str) -> Result<i64> {
    match profile {
        "tiny" => Ok(4_000_037),
        "full" => Ok(100_000_000),
        other => Err(Error::Usage(format!(
            "prefix-sum has no profile {other:?}; its profiles are: tiny, full"
        ))),
    }
}

/// Sizes checked for correctness before timing: 1, sizes that are not a multiple of any
/// power-of-two block size, and the profile's size.
pub fn correctness_sizes(n: i64) -> Vec<i64> {
    let mut sizes: Vec<i64> = [1, 2, 31, 1_000, 4_097, 65_537, 1_000_003]
        .into_iter()
        .filter(|&s| s < n)
        .collect();
    sizes.push(n);
    sizes
}

/// The task's buffers as launch plans name them.
pub fn buffers() -> Vec<BufferSpec> {
    vec![
        BufferSpec::new("input", ElemType::I32, false),
        BufferSpec::new("output", ElemType::I32, true),
    ]
}

/// Limits on a submission's plan.
pub fn plan_limits() -> PlanLimits {
    PlanLimits {
        max_total_scratch_bytes: 2 << 30,
        ..PlanLimits::default()
    }
}

/// Writes a kernel submission into `dir`.
pub fn write_solution(files: &KernelFiles, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, text) in [(SOURCE_FILE, files.source), (PLAN_FILE, files.plan)] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// The task.
#[derive(Debug, Default, Clone)]
pub struct PrefixSum {
    /// Overrides the stopping rule (tests and quick runs).
    pub rule: Option<StoppingRule>,
}

impl Task for PrefixSum {
    fn info(&self) -> TaskInfo {
        TaskInfo {
            name: "prefix-sum".into(),
            family: "optimize-a-kernel".into(),
            title: "Optimize a Kernel: conditional prefix sum".into(),
            summary: "Write the fastest correct CUDA kernels for a prefix sum that adds an element only when an \
                      odd number of the earlier elements are positive. The scorer times the whole launch plan \
                      with CUDA events (L2 flushed, fresh inputs, every output validated)."
                .into(),
            raw_score: "ln(median milliseconds of the whole launch plan)".into(),
            direction: Direction::LowerIsBetter,
            submission: SubmissionKind::Kernel,
            submission_files: vec![SOURCE_FILE.into(), PLAN_FILE.into()],
            profiles: vec![
                ProfileInfo { name: "tiny".into(), description: "n = 4,000,037 (quick runs)".into(), needs_gpu: true },
                ProfileInfo { name: "full".into(), description: "n = 100,000,000 (RE-Bench)".into(), needs_gpu: true },
            ],
            score_hidden: false,
            hardware_independent: false,
            default_time_limit_minutes: 480,
            score_timeout_s: 180,
            human_minutes: Some(480.0),
        }
    }

    fn prepare(&self, req: &PrepareRequest) -> Result<()> {
        let n = profile_n(&req.profile)?;
        write_solution(&STARTING, &req.attempt_dir)?;
        let instructions = INSTRUCTIONS
            .replace("{{N}}", &format_thousands(n))
            .replace("{{PROFILE}}", &req.profile);
        for (name, text) in [
            ("INSTRUCTIONS.md", instructions.as_str()),
            ("LAUNCH_PLAN.md", LAUNCH_PLAN_DOC),
        ] {
            let path = req.attempt_dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    fn install_solution(
        &self,
        solution: Solution,
        profile: &str,
        _cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        profile_n(profile)?;
        write_solution(
            if solution == Solution::Starting {
                &STARTING
            } else {
                &REFERENCE
            },
            dir,
        )
    }

    fn precheck(&self, req: &ScoreRequest) -> Result<Option<String>> {
        let n = profile_n(&req.profile)?;
        let buffers = buffers();
        let submission = match KernelSubmission::load(&req.submission_dir, &buffers) {
            Ok(s) => s,
            Err(e) => return Ok(Some(e.to_string())),
        };
        if let Err(e) = submission.check_sizes(&correctness_sizes(n), &buffers, &plan_limits()) {
            return Ok(Some(e.to_string()));
        }
        match submission.compile_check(&[90], Some(&req.cache_dir.join("nvrtc"))) {
            Ok(CompileCheck::Compiled { .. }) => Ok(None),
            Ok(CompileCheck::Skipped { reason }) => {
                tracing::info!("compile check skipped: {reason}");
                Ok(None)
            }
            Err(e) => Ok(Some(e.to_string())),
        }
    }

    fn check_environment(&self, profile: &str) -> Result<()> {
        profile_n(profile)?;
        rdbench_gpu::device::device_count()
            .map(|_| ())
            .map_err(|e| Error::Environment(format!("{e}; prefix-sum is scored on an NVIDIA GPU")))
    }

    fn score(&self, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let n = profile_n(&req.profile)?;
        scorer::score(req, n, &self.rule.unwrap_or_default())
    }
}

fn format_thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correctness_sizes_cover_one_odd_sizes_and_the_profile() {
        let sizes = correctness_sizes(100_000_000);
        assert_eq!(sizes.first(), Some(&1));
        assert_eq!(sizes.last(), Some(&100_000_000));
        assert!(sizes.iter().any(|s| s % 2 == 1 && *s > 1000));
        assert_eq!(correctness_sizes(1), vec![1]);
    }

    #[test]
    fn thousands_separator() {
        assert_eq!(format_thousands(100_000_000), "100,000,000");
        assert_eq!(format_thousands(999), "999");
    }

    #[test]
    fn every_shipped_solution_passes_the_gpu_free_checks() {
        for files in [STARTING, REFERENCE, FASTEST] {
            let dir = tempfile::tempdir().unwrap();
            write_solution(&files, dir.path()).unwrap();
            let sub = KernelSubmission::load(dir.path(), &buffers()).unwrap();
            for profile in ["tiny", "full"] {
                sub.check_sizes(
                    &correctness_sizes(profile_n(profile).unwrap()),
                    &buffers(),
                    &plan_limits(),
                )
                .unwrap();
            }
        }
    }
}
