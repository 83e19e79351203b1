//! `score-job`: the scheduler's command. Scores job `N` of a fanout manifest once and writes
//! `RESULTS/N.json`: the attempt summary `finish --out` writes, with the manifest's job and the
//! exit code beside it (`aggregate RESULTS` reads the folder).
//!
//! The job is one attempt of the same-user mode, run by the attempt library's own dispatcher:
//! `start` in a scratch folder (`RESULTS/.work/N/`), `score`, `finish`. Only the submission's
//! files differ from `rdbench score`: they come from the manifest's folder, read by the same
//! untrusted, bounded reader (no links, FIFOs or devices; each file within the task's limit)
//! into the scorer's private snapshot ([`JobPeer`]).
//!
//! Once: `RESULTS/N.json.lock` (an exclusive `flock`) is held from the check for a result to
//! its rename into place, so two schedulers racing on one index score it once; a sealed result
//! already there is reported and nothing is scored. The result is written to a temporary file
//! and renamed: a run killed mid-score leaves no result, only its scratch folder (removed by
//! the next run) and an unfinished attempt in the home; the scheduler's retry scores it again.
//! Exit codes: 0 scored, 1 submission invalid (a result is written: the score is null), 2 usage
//! (a bad manifest, an index out of range, a result of another job in the way), 3 environment
//! (no GPU, no calibration: no result, so a retry elsewhere can score it).
//!
//! Security: the results folder and the manifest are the operator's; the submission folder is
//! read as untrusted, and so is a `.tar` archive (unpacked under `fanout::archive`'s rules into
//! the scratch folder first). The submission runs through the same worker and sandbox as
//! `score`; the agent that made it has no access to any of this. Like `score` without a service, this runs
//! as the operator's user (same-user mode), so it is for submissions collected after the
//! agent's run, on machines where no agent runs.

use std::path::{Path, PathBuf};

use rdbench_attempts::output::Out;
use rdbench_attempts::{Caller, LocalPeer, Peer, Rights};
use rdbench_client::client::AttemptFolder;
use rdbench_client::proto::SubmittedFile;
use rdbench_client::AttemptCommand;
use rdbench_core::attempt::{Attempt, AttemptRef};
use rdbench_core::fsutil::{atomic_write, create_private_dir_all, lock_exclusive};
use rdbench_core::summary::AttemptSummary;
use rdbench_core::task::TaskInfo;
use rdbench_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::attempt::Kit;
use super::Context;
use crate::fanout::archive;
use crate::fanout::manifest::{Job, Manifest};

/// `rdbench score-job` (the scheduler's command; see the module's overview).
#[derive(clap::Args, Debug)]
pub struct ScoreJobArgs {
    /// The fanout manifest (JSON lines; see `rdbench fanout --help`).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Which job: its index from 0 ($SLURM_ARRAY_TASK_ID, $JOB_COMPLETION_INDEX).
    #[arg(long)]
    pub index: usize,
    /// The results folder: `INDEX.json` is written there.
    #[arg(long)]
    pub results: PathBuf,
}

/// One result file: the attempt summary (flattened, so `aggregate` reads the file as one) and
/// the job it scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    #[serde(flatten)]
    pub summary: AttemptSummary,
    /// The job's index in the manifest.
    pub manifest_index: usize,
    /// The manifest's line, as validated.
    pub job: Job,
    /// 0 scored, 1 the submission was invalid.
    pub exit_code: i32,
    /// What the scorer said of the run (its `score` report).
    pub report: String,
}

/// Runs `score-job`; returns the exit code.
pub fn score_job(ctx: &Context, args: &ScoreJobArgs) -> Result<i32> {
    let manifest = Manifest::load(&args.manifest)?;
    let job = manifest.job(args.index)?.clone();
    create_private_dir_all(&args.results)?;
    let result_path = args.results.join(format!("{}.json", args.index));
    let _once = lock_exclusive(&result_path)?;
    if let Some(done) = read_result(&result_path, args.index, &job)? {
        show(ctx, &done, &result_path, true);
        return Ok(done.exit_code);
    }
    let submission = manifest.submission_dir(&job)?;
    let archived = archive::is_archive(&submission) && submission.is_file();
    if !archived && !submission.is_dir() {
        return Err(Error::Usage(format!(
            "{}: job {} (line {}): its submission {} is neither a folder nor a .tar archive",
            manifest.path.display(),
            args.index,
            args.index + 2,
            submission.display()
        )));
    }
    // A killed earlier run's scratch folder goes: its attempt never finished, so it counts
    // for nothing.
    let scratch = args.results.join(".work").join(args.index.to_string());
    remove_if_present(&scratch)?;
    create_private_dir_all(&scratch)?;
    let scored = if archived {
        archive::unpack(&submission, &scratch.join("submission"))
            .and_then(|unpacked| run_attempt(ctx, &job, &unpacked, &scratch.join("attempt")))
    } else {
        run_attempt(ctx, &job, &submission, &scratch.join("attempt"))
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let (exit_code, summary, report) = scored?;
    let result = JobResult {
        summary,
        manifest_index: args.index,
        job,
        exit_code,
        report,
    };
    let json = serde_json::to_vec_pretty(&result).map_err(|e| Error::Internal(e.to_string()))?;
    atomic_write(&result_path, &json)?;
    show(ctx, &result, &result_path, false);
    Ok(exit_code)
}

/// The sealed result already at `path` for `job`, if there is one; a file there that is not a
/// result of this job is a usage error naming it (it is never overwritten).
fn read_result(path: &Path, index: usize, job: &Job) -> Result<Option<JobResult>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = |what: String| {
        Error::Usage(format!(
            "{}: {what}; remove it to score job {index} again, or use another results folder",
            path.display()
        ))
    };
    let result: JobResult =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a score-job result ({e})")))?;
    if result.manifest_index != index || &result.job != job {
        return Err(bad(format!(
            "the result of another job ({} of {}, index {})",
            result.job.submission.display(),
            result.job.task,
            result.manifest_index
        )));
    }
    Ok(Some(result))
}

fn remove_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// `start`, `score` and `finish` of one attempt in `dir` for `job`, through the attempt
/// library's dispatcher, their text captured: the score's exit code, the summary and the
/// score's report.
fn run_attempt(
    ctx: &Context,
    job: &Job,
    submission: &Path,
    dir: &Path,
) -> Result<(i32, AttemptSummary, String)> {
    let inner = Context {
        home: ctx.home.clone(),
        json: false,
        out: Out::capture(),
        caller: Caller::Local,
    };
    let host = Kit {
        ctx: &inner,
        seed: job.seed,
    };
    let actx = inner.attempts(&host, Rights::of(Caller::Local, false));
    let mut peer = JobPeer {
        submission: submission.to_path_buf(),
        summary: None,
    };
    let mut run = |command| rdbench_attempts::dispatch(&actx, &mut peer, command);
    run(AttemptCommand::Start {
        task: job.task.clone(),
        dir: dir.to_path_buf(),
        profile: job.profile.clone(),
        time_limit: None,
        agent: job.agent.clone(),
        owner: None,
        allow_unscorable: false,
    })?;
    let attempt = AttemptRef::Dir(dir.to_path_buf());
    inner.out.take();
    let code = run(AttemptCommand::Score {
        attempt: attempt.clone(),
        allow_uncalibrated: false,
        timeout: None,
        emulate: false,
        // The attempt is this run's own: nothing can have scored it before.
        key: None,
    })?;
    let (report, _) = inner.out.take();
    run(AttemptCommand::Finish { attempt, out: None })?;
    let summary = peer
        .summary
        .ok_or_else(|| Error::Internal("finish gave no summary".into()))?;
    Ok((code, summary, report.trim_end().to_string()))
}

/// What `score-job` prints: one line, or the result as JSON (`reused`: found, not scored).
fn show(ctx: &Context, result: &JobResult, path: &Path, reused: bool) {
    if ctx.json {
        let mut value = serde_json::to_value(result).unwrap_or_default();
        value["reused"] = reused.into();
        value["result_file"] = path.display().to_string().into();
        ctx.out.json(&value);
        return;
    }
    let what = if reused {
        "already scored, not scored again"
    } else {
        "scored"
    };
    say!(
        ctx,
        "job {} ({}/{}, {}): {what}: {} -> {}",
        result.manifest_index,
        result.job.task,
        result.job.profile,
        result.job.submission.display(),
        result.report.lines().next().unwrap_or(""),
        path.display()
    );
}

/// Same-user mode's peer, but the submission comes from the manifest's folder (read by the
/// same untrusted reader) and the summary is kept for the result file.
struct JobPeer {
    submission: PathBuf,
    summary: Option<AttemptSummary>,
}

impl Peer for JobPeer {
    fn attempt_folder(&mut self, dir: &Path) -> Result<AttemptFolder> {
        LocalPeer.attempt_folder(dir)
    }

    fn starting_files(&mut self, folder: &Path, staged: &Path, files: &[String]) -> Result<()> {
        LocalPeer.starting_files(folder, staged, files)
    }

    fn submission(
        &mut self,
        info: &TaskInfo,
        _attempt_dir: &Path,
    ) -> Result<(Vec<SubmittedFile>, Vec<Vec<u8>>)> {
        LocalPeer.submission(info, &self.submission)
    }

    fn tool_turn(
        &mut self,
        attempt: &Attempt,
        tool: &mut dyn FnMut() -> Result<i32>,
    ) -> Result<i32> {
        LocalPeer.tool_turn(attempt, tool)
    }

    fn summary(&mut self, _out: Option<&Path>, summary: &AttemptSummary) -> Result<()> {
        self.summary = Some(summary.clone());
        Ok(())
    }
}
