//! The attempt commands in this binary. Their logic and their one dispatcher are the library
//! `rdbench-attempts`'s ([`rdbench_attempts::dispatch`]); this file supplies what needs the
//! binary ([`Kit`]: the task registry, calibrations on this device, the scoring worker of
//! `job.rs`, the catalog and the experiment tools), runs the commands in same-user mode
//! ([`run_local`]), and scores solutions outside any attempt for `calibrate`, `cycle` and
//! `check-task`.

use std::path::Path;

use chrono::Utc;
use rdbench_attempts::{LocalPeer, Rights, RunResult, ScoringRun};
use rdbench_client::AttemptCommand;
use rdbench_core::attempt::Attempt;
use rdbench_core::calibration::{CalibrationEntry, DeviceFingerprint};
use rdbench_core::task::{profile_of, Execution, ProfileInfo, Task};
use rdbench_core::{Error, Result};

use super::{device_fingerprint, find_calibration, Context};
use crate::job::{Job, JobResult, ToolJob};
use crate::registry;

pub use rdbench_attempts::run_stamp;

/// Runs an attempt command in this process (same-user mode).
pub fn run_local(ctx: &Context, command: AttemptCommand) -> Result<i32> {
    let kit = Kit::new(ctx);
    // Same-user mode has no agents: the emulator setting is moot.
    let rights = Rights::of(ctx.caller, false);
    rdbench_attempts::dispatch(&ctx.attempts(&kit, rights), &mut LocalPeer, command)
}

/// The binary's part of the attempt commands, for one command's context.
pub struct Kit<'a> {
    pub ctx: &'a Context,
    /// The seed of every scoring run, where the caller fixes it (a `score-job` manifest's
    /// `seed`); otherwise each run draws a fresh secret one.
    pub seed: Option<u64>,
}

impl<'a> Kit<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        Kit { ctx, seed: None }
    }
}

impl rdbench_attempts::Host for Kit<'_> {
    fn task(&self, name: &str) -> Result<Box<dyn Task>> {
        registry::find(name)
    }

    fn list(&self) -> Result<i32> {
        super::catalog::list(self.ctx)
    }

    fn info(&self, task: &str) -> Result<i32> {
        super::catalog::info(self.ctx, task)
    }

    fn tool(&self, attempt: &Attempt, name: &str, args: &[String]) -> Result<i32> {
        tool(self.ctx, attempt, name, args)
    }

    fn calibration(
        &self,
        task: &dyn Task,
        profile: &ProfileInfo,
    ) -> Result<(DeviceFingerprint, Option<CalibrationEntry>)> {
        let fp = device_fingerprint(&task.info(), profile)?;
        let calibration = find_calibration(self.ctx, task, profile, &fp)?;
        Ok((fp, calibration))
    }

    fn run_scoring(&self, task: &dyn Task, mut run: ScoringRun) -> Result<RunResult> {
        if let Some(seed) = self.seed {
            run.request.seed = seed;
        }
        job(task, run).run_checked().map(run_result)
    }

    fn gpu_name(&self) -> String {
        rdbench_gpu::device::scored_gpu_name()
    }
}

/// `tool`: one call of the task's experiment tool for `attempt`, refused once the attempt is
/// over (its record would no longer count for anything). The dispatcher has already opened
/// the attempt for the caller and, through the service, waited for the attempt's turn. The
/// call runs in a worker process under the limits the task declares for the tool
/// ([`ToolJob`]); a GPU tool on a GPU profile holds the device lock like a scoring run.
pub fn tool(ctx: &Context, attempt: &Attempt, name: &str, args: &[String]) -> Result<i32> {
    if attempt.is_late(Utc::now()) {
        return Err(Error::Usage(
            "this attempt is over (finished or past its time limit): no more tool runs".into(),
        ));
    }
    let task = registry::find(&attempt.record.task)?;
    let info = task.info();
    let spec = info.tool(name)?.clone();
    let profile = profile_of(task.as_ref(), &attempt.record.profile)?;
    let device_lock = if spec.needs_gpu {
        rdbench_attempts::device_lock(
            &ctx.home,
            &profile,
            Execution::Measured,
            rdbench_gpu::device::scored_gpu_name,
        )
    } else {
        None
    };
    let request = rdbench_core::task::ToolRequest {
        profile,
        name: name.into(),
        args: rdbench_core::task::ToolRequest::parse_args(args)?,
        private_dir: attempt.task_private_dir(),
        cache_dir: ctx.home.cache_dir(),
    };
    rdbench_core::fsutil::create_private_dir_all(&request.private_dir)?;
    let reply = ToolJob {
        task: task.as_ref(),
        request,
        spec,
        device_lock,
    }
    .run()?;
    if ctx.json {
        ctx.out.json(&reply.value);
    } else {
        say!(ctx, "{}", reply.text);
    }
    Ok(0)
}

/// The worker's result as the attempt library logs it.
pub fn run_result(result: JobResult) -> RunResult {
    RunResult {
        outcome: result.outcome,
        wall_s: result.wall_s,
        monitor: result
            .monitor
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok()),
        ran_worker: result.ran_worker,
    }
}

/// The scoring worker's job for `run`.
fn job(task: &dyn Task, run: ScoringRun) -> Job<'_> {
    Job {
        task,
        request: run.request,
        timeline_path: run.timeline_path,
        timeout: run.timeout,
        device_lock: run.device_lock,
    }
}

/// Scores one installed solution outside any attempt (calibration and the self-test cycle).
pub fn score_solution_dir(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    submission_dir: &Path,
    private_dir: &Path,
) -> Result<JobResult> {
    score_solution_dir_on(
        ctx,
        task,
        profile,
        submission_dir,
        private_dir,
        Execution::Measured,
        None,
    )
}

/// As [`score_solution_dir`], with `execution` and an optional time limit in seconds.
pub fn score_solution_dir_on(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    submission_dir: &Path,
    private_dir: &Path,
    execution: Execution,
    timeout: Option<u64>,
) -> Result<JobResult> {
    let (run, _) = rdbench_attempts::scoring_run(
        &ctx.home,
        &task.info(),
        profile,
        submission_dir,
        private_dir,
        timeout,
        execution,
        rdbench_gpu::device::scored_gpu_name,
    );
    job(task, run).run()
}
