//! The artifact-task kind: tasks whose submission is files the scorer evaluates (a model, an
//! answer, a program given as data), scored on the CPU or the GPU by the task's own code in the
//! worker.
//!
//! A task implements the narrow [`ArtifactTask`] and registers `ArtifactTaskAdapter::new(task)`;
//! the adapter implements [`Task`] for it and owns what every such task did alike: the profile
//! looked up once by name and refused in one wording that lists the task's profiles, the
//! attempt's `INSTRUCTIONS.md`, the folder a solution is installed into, the refusal of a
//! fastest solution that does not ship, and saving a valid score's details as its raw samples.
//! (The kernel kit, `rdbench_gpu::kernel_task`, is the same idea for kernel tasks.)

use std::path::Path;

use crate::task::{
    Execution, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest,
    ShippedCalibration, Solution, Task, TaskInfo, ToolReply, ToolRequest,
};
use crate::{Error, Result};

/// Why a submission is invalid: its kind and a reason naming the file.
pub type Rejection = (InvalidKind, String);

/// The profile `name` of a task whose profiles are made by functions, one per name.
pub fn profile_named<P>(name: &str, profiles: &[(&str, fn() -> P)]) -> Option<P> {
    profiles
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, make)| make())
}

/// A cache key for a product derived from `inputs` (everything it depends on): FNV-1a over their
/// JSON, as 16 hex digits. It names a folder so a changed input never reuses a stale product;
/// it is not a security boundary.
pub fn cache_key(inputs: &serde_json::Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in inputs.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What an artifact task supplies; everything else is [`ArtifactTaskAdapter`]'s.
pub trait ArtifactTask: Send + Sync {
    /// A profile's settings (sizes, schedules, limits), looked up once per call by
    /// [`ArtifactTask::profile`] and handed to every method.
    type Profile;

    /// The task's description, its profiles included.
    fn info(&self) -> TaskInfo;

    /// The settings of the profile `name`, if the task has it.
    fn profile(&self, name: &str) -> Option<Self::Profile>;

    /// Writes the attempt's starting files into `req.attempt_dir` and anything private under
    /// `req.private_dir` or `req.cache_dir` (the adapter writes `INSTRUCTIONS.md`).
    fn prepare(&self, profile: &Self::Profile, req: &PrepareRequest) -> Result<()>;

    /// The attempt's `INSTRUCTIONS.md`.
    fn instructions(&self, profile: &Self::Profile) -> Result<String>;

    /// Writes `solution` as a submission into `dir` (which exists). [`Solution::Fastest`]
    /// reaches it only where [`ArtifactTask::ships_fastest`] says so.
    fn install(
        &self,
        solution: Solution,
        profile: &Self::Profile,
        cache_dir: &Path,
        dir: &Path,
    ) -> Result<()>;

    /// Whether a solution beyond the reference ships.
    fn ships_fastest(&self) -> bool {
        false
    }

    /// The cheap checks of a submission, run before any worker starts (parse, validate): why it
    /// is invalid, if it is.
    fn check_submission(
        &self,
        profile: &Self::Profile,
        req: &ScoreRequest,
    ) -> Result<Option<Rejection>>;

    /// Whether this machine can score the profile; `Err(Environment)` says what is missing.
    fn check_environment(&self, _profile: &Self::Profile) -> Result<()> {
        Ok(())
    }

    /// Scores the submission, in the worker. A valid outcome's details are saved as the run's
    /// raw samples by the adapter.
    fn score(&self, profile: &Self::Profile, req: &ScoreRequest) -> Result<ScoreOutcome>;

    /// Calibration values that hold on every machine, if the profile has them.
    fn shipped_calibration(&self, _profile: &Self::Profile) -> Option<ShippedCalibration> {
        None
    }

    /// One of the task's experiment tools ([`Task::run_tool`]).
    fn run_tool(&self, _profile: &Self::Profile, req: &ToolRequest) -> Result<ToolReply> {
        Err(Error::Usage(format!(
            "{} has no tool {:?}",
            self.info().name,
            req.name
        )))
    }
}

/// [`Task`] for an [`ArtifactTask`].
#[derive(Debug, Clone, Default)]
pub struct ArtifactTaskAdapter<T>(T);

impl<T: ArtifactTask> ArtifactTaskAdapter<T> {
    pub fn new(task: T) -> Self {
        ArtifactTaskAdapter(task)
    }

    /// The task itself, for what is its own beyond [`Task`].
    pub fn task(&self) -> &T {
        &self.0
    }

    /// The profile `name`'s settings, or the usage error that lists the task's profiles.
    pub fn profile(&self, name: &str) -> Result<T::Profile> {
        if let Some(profile) = self.0.profile(name) {
            return Ok(profile);
        }
        let info = self.0.info();
        Err(info.profile(name).err().unwrap_or_else(|| {
            Error::Internal(format!(
                "{}: profile {name:?} is listed but has no settings",
                info.name
            ))
        }))
    }
}

impl<T: ArtifactTask> Task for ArtifactTaskAdapter<T> {
    fn info(&self) -> TaskInfo {
        self.0.info()
    }

    fn prepare(&self, req: &PrepareRequest) -> Result<()> {
        let profile = self.profile(&req.profile.name)?;
        self.0.prepare(&profile, req)?;
        crate::fsutil::atomic_write(
            &req.attempt_dir.join("INSTRUCTIONS.md"),
            self.0.instructions(&profile)?.as_bytes(),
        )
    }

    fn install_solution(
        &self,
        solution: Solution,
        profile: &ProfileInfo,
        cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        let profile = self.profile(&profile.name)?;
        if solution == Solution::Fastest && !self.0.ships_fastest() {
            return Err(Error::Usage(format!(
                "{} ships no solution beyond its reference",
                self.0.info().name
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.0.install(solution, &profile, cache_dir, dir)
    }

    fn precheck(&self, req: &ScoreRequest) -> Result<Option<Rejection>> {
        self.0
            .check_submission(&self.profile(&req.profile.name)?, req)
    }

    fn check_environment(&self, profile: &ProfileInfo, _: Execution) -> Result<()> {
        self.0.check_environment(&self.profile(&profile.name)?)
    }

    fn score(&self, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let outcome = self.0.score(&self.profile(&req.profile.name)?, req)?;
        if let ScoreOutcome::Valid { details, .. } = &outcome {
            // Best effort: samples that cannot be written lose only themselves.
            let _ = req.save_samples(details);
        }
        Ok(outcome)
    }

    fn shipped_calibration(&self, profile: &ProfileInfo) -> Option<ShippedCalibration> {
        self.0.shipped_calibration(&self.0.profile(&profile.name)?)
    }

    fn run_tool(&self, req: &ToolRequest) -> Result<ToolReply> {
        self.0.run_tool(&self.profile(&req.profile.name)?, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is FNV-1a of the compact JSON (cached products on disk are named by it, so it
    /// must not drift).
    #[test]
    fn cache_key_is_fnv1a_of_the_json() {
        assert_eq!(
            cache_key(&serde_json::json!({ "a": 1 })),
            "9c3e82dd6fcae8b1"
        );
    }
}
