//! [`KernelTaskAdapter`]: the one `Task` implementation of every kernel task. It lays out
//! attempts, installs solutions, runs the GPU-free prechecks, and scores on the backend the
//! request names, through [`crate::bench::score`].

use std::path::Path;

use rdbench_core::outcome::InvalidKind;
use rdbench_core::task::{
    Execution, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution, SubmissionFile,
    SubmissionKind, Task, TaskInfo,
};
use rdbench_core::{Error, Result};

use super::{KernelFiles, KernelProfile, KernelTask};
use crate::backend::cuda::CudaBackend;
use crate::backend::emu::EmuBackend;
use crate::bench::{BenchRequest, StoppingRule};
use crate::submission::{
    CompileCheck, KernelSubmission, SubmissionError, MAX_FILE_BYTES, PLAN_FILE, SOURCE_FILE,
};

/// The architectures every kernel `.cu` must compile for (A100 and H100/H200).
pub const TARGET_ARCHS: [u32; 2] = [80, 90];
/// The architecture the CLI's precheck compiles for before any worker starts.
pub const PRECHECK_ARCH: u32 = 90;

/// The launch-plan reference handed to every kernel attempt.
pub const LAUNCH_PLAN_DOC: &str = include_str!("../../../../docs/launch-plan.md");

/// Makes a [`KernelTask`] a [`Task`].
#[derive(Debug, Clone, Default)]
pub struct KernelTaskAdapter<T> {
    pub task: T,
    /// Overrides the stopping rule (tests and quick runs).
    pub rule: Option<StoppingRule>,
}

impl<T: KernelTask> KernelTaskAdapter<T> {
    pub fn new(task: T) -> Self {
        KernelTaskAdapter { task, rule: None }
    }

    /// The profile named `name`, or a usage error listing the names.
    pub fn profile(&self, name: &str) -> Result<KernelProfile> {
        let profiles = self.task.profiles();
        let names: Vec<&str> = profiles.iter().map(|p| p.name).collect();
        let list = names.join(", ");
        profiles
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{} has no profile {name:?}; its profiles are: {list}",
                    self.task.info().name
                ))
            })
    }

    /// Every correctness size of `profile` with `execution`, the timed sizes last.
    pub fn cases(&self, profile: &KernelProfile, execution: Execution) -> Vec<super::Vars> {
        match execution {
            Execution::Measured => {
                let mut cases: Vec<_> = profile
                    .cases
                    .iter()
                    .filter(|c| !profile.timed.contains(c))
                    .cloned()
                    .collect();
                cases.extend(profile.timed.iter().cloned());
                cases
            }
            Execution::Emulated => profile.emulator_cases.clone(),
        }
    }

    /// The sizes `profile` times with `execution`: its timed sizes on a GPU; on the emulator,
    /// which cannot time, its largest emulator case gets the untimed sample runs.
    pub fn timed(&self, profile: &KernelProfile, execution: Execution) -> Vec<super::Vars> {
        match execution {
            Execution::Measured => profile.timed.clone(),
            Execution::Emulated => profile.emulator_cases.last().cloned().into_iter().collect(),
        }
    }

    /// A [`BenchRequest`] for `req` at `profile`.
    pub fn bench_request<'r>(
        &self,
        req: &'r ScoreRequest,
        profile: &KernelProfile,
        rule: StoppingRule,
    ) -> BenchRequest<'r> {
        BenchRequest {
            req,
            cases: self.cases(profile, req.execution),
            timed: self.timed(profile, req.execution),
            rule,
        }
    }

    fn specs(&self) -> Vec<crate::plan::BufferSpec> {
        crate::bench::routine::buffer_specs(&self.task.buffers())
    }

    /// Loads the submission in `dir` and resolves its plan at every size of `profile`.
    pub fn check_submission(
        &self,
        dir: &Path,
        profile: &KernelProfile,
    ) -> std::result::Result<KernelSubmission, SubmissionError> {
        let specs = self.specs();
        let sub = KernelSubmission::load(dir, &specs)?;
        let limits = self.task.plan_limits();
        for execution in [Execution::Measured, Execution::Emulated] {
            for vars in self.cases(profile, execution) {
                sub.resolve_vars(&vars, &specs, &limits)?;
            }
        }
        Ok(sub)
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

impl<T: KernelTask> Task for KernelTaskAdapter<T> {
    fn info(&self) -> TaskInfo {
        let profiles = self.task.profiles();
        let one_size = profiles.iter().all(|p| p.timed.len() == 1);
        let mut info = self.task.info().task_info(one_size);
        info.submission = SubmissionKind::Kernel;
        info.submission_files = vec![
            SubmissionFile::new(SOURCE_FILE, MAX_FILE_BYTES),
            SubmissionFile::new(PLAN_FILE, MAX_FILE_BYTES),
        ];
        info.profiles = profiles
            .into_iter()
            .map(|p| ProfileInfo {
                name: p.name.into(),
                description: p.description,
                needs_gpu: true,
            })
            .collect();
        info
    }

    fn prepare(&self, req: &PrepareRequest) -> Result<()> {
        let profile = self.profile(&req.profile.name)?;
        write_solution(&self.task.sources().solutions.start, &req.attempt_dir)?;
        for (name, text) in [
            ("INSTRUCTIONS.md", self.task.instructions(&profile)),
            ("LAUNCH_PLAN.md", LAUNCH_PLAN_DOC.to_string()),
        ] {
            let path = req.attempt_dir.join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    fn install_solution(
        &self,
        solution: Solution,
        profile: &ProfileInfo,
        _cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        self.profile(&profile.name)?;
        let s = self.task.sources().solutions;
        let files = match solution {
            Solution::Starting => s.start,
            Solution::Reference => s.reference,
            Solution::Fastest => s.fastest.ok_or_else(|| {
                Error::Usage(format!(
                    "{} ships no fastest solution",
                    self.task.info().name
                ))
            })?,
        };
        write_solution(&files, dir)
    }

    fn precheck(&self, req: &ScoreRequest) -> Result<Option<(InvalidKind, String)>> {
        let profile = self.profile(&req.profile.name)?;
        let submission = match self.check_submission(&req.submission_dir, &profile) {
            Ok(s) => s,
            Err(e) => return Ok(Some((e.invalid_kind(), e.to_string()))),
        };
        match submission.compile_check(&[PRECHECK_ARCH], Some(&req.cache_dir.join("nvrtc"))) {
            Ok(CompileCheck::Compiled { .. }) => Ok(None),
            Ok(CompileCheck::Skipped { reason }) => {
                tracing::info!("compile check skipped: {reason}");
                Ok(None)
            }
            Err(e) => Ok(Some((e.invalid_kind(), e.to_string()))),
        }
    }

    fn check_environment(&self, profile: &ProfileInfo, execution: Execution) -> Result<()> {
        self.profile(&profile.name)?;
        let name = self.task.info().name;
        match execution {
            Execution::Measured => crate::device::device_count()
                .map(|_| ())
                .map_err(|e| Error::Environment(format!("{e}; {name} is scored on an NVIDIA GPU"))),
            Execution::Emulated => EmuBackend::new()
                .map(|_| ())
                .map_err(|e| Error::Environment(e.to_string())),
        }
    }

    fn cpu_baseline(
        &self,
        profile: &ProfileInfo,
    ) -> Result<Option<rdbench_core::task::CpuBaseline>> {
        let profile = self.profile(&profile.name)?;
        let baseline = profile
            .timed
            .first()
            .and_then(|v| self.task.cpu_baseline(v));
        if baseline.is_some() && profile.timed.len() != 1 {
            return Err(Error::Internal(format!(
                "{} profile {}: a CPU baseline needs exactly one timed size, not {}",
                self.task.info().name,
                profile.name,
                profile.timed.len()
            )));
        }
        Ok(baseline)
    }

    fn score(&self, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let profile = self.profile(&req.profile.name)?;
        let br = self.bench_request(req, &profile, self.rule.unwrap_or_default());
        match req.execution {
            Execution::Measured => {
                let dev = CudaBackend::open(rdbench_core::calibration::SCORED_GPU_ORDINAL)
                    .map_err(|e| match e {
                        crate::GpuError::NoDriver(_) => Error::Environment(e.to_string()),
                        e => Error::Environment(format!("opening the GPU: {e}")),
                    })?;
                crate::bench::score(&dev, &self.task, &br)
            }
            Execution::Emulated => {
                let dev = EmuBackend::new().map_err(|e| Error::Environment(e.to_string()))?;
                crate::bench::score(&dev, &self.task, &br)
            }
        }
    }
}
