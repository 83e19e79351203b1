//! `start`, `score`, `log` and `finish`: the life of one attempt.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdbench_client::client::read_submission;
use rdbench_client::proto::{FileState, Refusal, SubmittedFile};
use rdbench_client::AttemptCommand;
use rdbench_core::attempt::{Attempt, AttemptRef, StagedAttempt};
use rdbench_core::calibration::CalibrationEntry;
use rdbench_core::fsutil::{atomic_write, hash_files};
use rdbench_core::outcome::InvalidKind;
use rdbench_core::score_log::{ScoreEntry, Selection};
use rdbench_core::summary::{AttemptSummary, SUMMARY_SCHEMA};
use rdbench_core::task::{
    Backend, PrepareRequest, ScoreOutcome, ScoreRequest, SubmissionFile, Task, TaskInfo,
};
use rdbench_core::{Error, Result};

use super::{device_fingerprint, find_calibration, Context};
use crate::job::{Job, JobResult};
use crate::output::{num, one_line, Table};
use crate::registry;

/// Runs an attempt command in this process (same-user mode).
pub fn run_local(ctx: &Context, command: &AttemptCommand) -> Result<i32> {
    let open = |what: &Path| Attempt::open_ref(&ctx.home, &AttemptRef::parse(what));
    match command {
        AttemptCommand::List => super::catalog::list(ctx),
        AttemptCommand::Info { task } => super::catalog::info(ctx, task),
        AttemptCommand::Start {
            task,
            dir,
            profile,
            time_limit,
            agent,
            owner,
        } => {
            if owner.is_some() {
                return Err(Error::Usage(
                    "--owner is for starting an agent's attempt through the scoring service \
                     (`rdbench --socket S start ... --owner USER`); same-user mode protects nothing"
                        .into(),
                ));
            }
            // A typo in the task or profile is refused before a folder is made.
            registry::find(task)?.info().profile(profile)?;
            let folder = rdbench_client::client::make_attempt_folder(dir, None)
                .map_err(|e| Error::Usage(e.message))?;
            let canonical = folder.path.clone();
            let staged = stage_attempt(
                ctx,
                task,
                &canonical,
                profile,
                *time_limit,
                agent,
                ctx.caller.uid(),
            )
            .inspect_err(|_| {
                if folder.created {
                    let _ = rdbench_core::untrusted_tree::remove_empty_dir(&canonical);
                }
            })?;
            let folder = rdbench_core::untrusted_tree::open_dir(&canonical)
                .map_err(|e| Error::io(&canonical, e))?;
            for rel in &staged.files {
                let from = staged.public_dir.join(rel);
                let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
                rdbench_core::untrusted_tree::write_new(&folder, rel, &bytes)
                    .map_err(|e| Error::io(canonical.join(rel), e))?;
            }
            let attempt = staged.publish()?;
            report_started(ctx, &attempt, dir);
            Ok(0)
        }
        AttemptCommand::Score {
            attempt,
            allow_uncalibrated,
            timeout,
            emulate,
        } => {
            let attempt = open(attempt)?;
            let backend = if *emulate {
                Backend::Emulator
            } else {
                Backend::Cuda
            };
            score(
                ctx,
                &attempt,
                Submission::Folder(&attempt.record.dir.clone()),
                (*allow_uncalibrated, *timeout, backend),
            )
        }
        AttemptCommand::Log { attempt } => log(ctx, &open(attempt)?),
        AttemptCommand::Status { attempt } => status(ctx, &open(attempt)?),
        AttemptCommand::Tool {
            attempt,
            name,
            args,
        } => tool(ctx, &open(attempt)?, name, args),
        AttemptCommand::Finish { attempt, out } => {
            let summary = finish(ctx, open(attempt)?)?;
            if let Some(out) = out {
                let json = serde_json::to_vec_pretty(&summary)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                rdbench_client::client::write_summary(out, &json)
                    .map_err(|e| Error::Usage(e.message))?;
            }
            Ok(0)
        }
    }
}

/// `tool`: one call of the task's experiment tool for `attempt`, refused once the attempt is
/// over (its record would no longer count for anything).
pub fn tool(ctx: &Context, attempt: &Attempt, name: &str, args: &[String]) -> Result<i32> {
    if attempt.is_late(Utc::now()) {
        return Err(Error::Usage(
            "this attempt is over (finished or past its time limit): no more tool runs".into(),
        ));
    }
    let task = registry::find(&attempt.record.task)?;
    let req = rdbench_core::task::ToolRequest {
        profile: attempt.record.profile.clone(),
        name: name.into(),
        args: rdbench_core::task::ToolRequest::parse_args(args)?,
        private_dir: attempt.task_private_dir(),
        cache_dir: ctx.home.cache_dir(),
    };
    rdbench_core::fsutil::create_private_dir_all(&req.private_dir)?;
    let reply = task.run_tool(&req)?;
    if ctx.json {
        ctx.out.json(&reply.value);
    } else {
        say!(ctx, "{}", reply.text);
    }
    Ok(0)
}

/// A prepared, not yet visible attempt: its starting files in `public_dir` (inside the
/// staging folder, private), for the caller to put into the agent's folder.
pub struct Staged {
    staged: StagedAttempt,
    pub public_dir: PathBuf,
    /// The starting files, relative to `public_dir`.
    pub files: Vec<String>,
}

impl Staged {
    /// Makes the attempt visible; the staged copy of the starting files goes.
    pub fn publish(self) -> Result<Attempt> {
        let _ = std::fs::remove_dir_all(&self.public_dir);
        self.staged.publish()
    }
}

/// `start`, up to the point where the starting files exist: the task prepares into the
/// home's staging folder, never into the agent's folder, so the scorer writes nothing where
/// the agent could have planted a link, and a killed `start` leaves no attempt.
pub fn stage_attempt(
    ctx: &Context,
    task_name: &str,
    canonical_dir: &Path,
    profile: &str,
    time_limit: Option<f64>,
    agent: &str,
    owner_uid: u32,
) -> Result<Staged> {
    let task = registry::find(task_name)?;
    let info = task.info();
    info.profile(profile)?;
    check_agent_name(agent)?;
    if let Some(t) = time_limit {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::Usage(format!(
                "--time-limit must be a positive number of minutes, not {t}"
            )));
        }
    }
    let limit = time_limit.unwrap_or(info.default_time_limit_minutes as f64);
    let staged = Attempt::stage(
        &ctx.home,
        &info.name,
        profile,
        agent,
        canonical_dir,
        Some(limit),
        Some(owner_uid),
    )?;
    let public_dir = staged.attempt.private_dir.join("public");
    let prepared = rdbench_core::fsutil::create_private_dir_all(&public_dir).and_then(|_| {
        task.prepare(&PrepareRequest {
            profile: profile.into(),
            attempt_dir: public_dir.clone(),
            private_dir: staged.attempt.task_private_dir(),
            cache_dir: ctx.home.cache_dir(),
        })
    });
    let files = prepared.and_then(|_| list_files(&public_dir));
    match files {
        Ok(files) => Ok(Staged {
            staged,
            public_dir,
            files,
        }),
        Err(e) => {
            staged.abandon();
            Err(e)
        }
    }
}

/// Longest `--agent` name: it is stored in the record and every summary.
const MAX_AGENT_NAME: usize = 128;

/// `--agent` is a label for reports: short and printable.
fn check_agent_name(agent: &str) -> Result<()> {
    if agent.is_empty()
        || agent.chars().count() > MAX_AGENT_NAME
        || agent.chars().any(char::is_control)
    {
        return Err(Error::Usage(format!(
            "--agent must be 1 to {MAX_AGENT_NAME} printable characters"
        )));
    }
    Ok(())
}

/// The regular files under `root`, relative and `/`-separated, sorted.
fn list_files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                let rel = entry.path();
                let rel = rel.strip_prefix(root).unwrap_or(&rel);
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn report_started(ctx: &Context, attempt: &Attempt, given_dir: &Path) {
    if ctx.json {
        ctx.out.json(&attempt.record);
    } else {
        say!(
            ctx,
            "started {} ({}) as {} in {} — read INSTRUCTIONS.md there; score with `rdbench score {}`",
            attempt.record.task,
            attempt.record.profile,
            attempt.record.id,
            attempt.record.dir.display(),
            given_dir.display()
        );
    }
}

/// Builds the log entry of one scoring run.
pub fn entry_for(
    info: &TaskInfo,
    profile: &str,
    result: &JobResult,
    calibration: Option<&CalibrationEntry>,
    device: Option<String>,
    submission_sha256: String,
    // (samples file, timeline file), relative to the attempt's private folder.
    files: Option<(String, String)>,
) -> ScoreEntry {
    let (samples_file, timeline_file) = files.unzip();
    let mut kind = None;
    let mut headline = None;
    let mut unscored = false;
    let (valid, raw, reason, details) = match &result.outcome {
        ScoreOutcome::Valid {
            raw,
            headline: h,
            details,
        } if raw.is_finite() => {
            headline = Some(h.clone());
            let mut details = details.clone();
            // Speed-ups from the calibration: over the start at each timed size, and over
            // the CPU baseline for a task that has one.
            if let Some(c) = calibration {
                c.annotate_shapes(&mut details);
            }
            let median_ms = details.get("median_ms").and_then(|v| v.as_f64());
            if let (Some(c), Some(ms), Some(obj)) =
                (calibration, median_ms, details.as_object_mut())
            {
                if let Some(serde_json::Value::Object(speedup)) = c.cpu_speedup(ms) {
                    obj.extend(speedup);
                }
            }
            (true, Some(*raw), None, details)
        }
        ScoreOutcome::Valid { raw, details, .. } => {
            kind = Some(InvalidKind::NonFinite);
            (
                false,
                None,
                Some(format!(
                    "the scorer produced a non-finite raw score ({raw})"
                )),
                details.clone(),
            )
        }
        ScoreOutcome::Invalid {
            kind: k,
            reason,
            details,
        } => {
            kind = Some(*k);
            (false, None, Some(reason.clone()), details.clone())
        }
        ScoreOutcome::Unscored {
            headline: h,
            details,
        } => {
            headline = Some(h.clone());
            unscored = true;
            (true, None, None, details.clone())
        }
    };
    ScoreEntry {
        timestamp: Utc::now(),
        task: info.name.clone(),
        profile: profile.into(),
        valid,
        raw,
        normalized: raw.and_then(|r| calibration.map(|c| c.normalize(r))),
        reason,
        kind,
        headline,
        unscored,
        submission_sha256,
        device,
        calibration: calibration.map(|c| [c.start, c.reference]),
        wall_s: result.wall_s,
        details,
        monitor: result
            .monitor
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok()),
        samples_file: if result.ran_worker {
            samples_file
        } else {
            None
        },
        timeline_file: if result.ran_worker {
            timeline_file
        } else {
            None
        },
        late: false,
    }
}

/// The lock that serializes GPU scoring runs on this machine (`None` for CPU profiles and
/// emulated runs).
fn device_lock(
    ctx: &Context,
    info: &TaskInfo,
    profile: &str,
    backend: Backend,
) -> Option<std::path::PathBuf> {
    let needs_gpu = info.profile(profile).map(|p| p.needs_gpu).unwrap_or(false);
    (needs_gpu && backend == Backend::Cuda).then(|| ctx.home.root().join("locks").join("gpu-0"))
}

/// One scoring run of the submission in `submission_dir`, with its files laid out under
/// `private_dir` as in an attempt (`task/`, `samples/`, `timelines/`). Returns the job and the
/// samples and timeline paths relative to `private_dir`, for the log entry.
fn new_job<'a>(
    ctx: &Context,
    task: &'a dyn Task,
    profile: &str,
    submission_dir: &Path,
    private_dir: &Path,
    timeout: Option<u64>,
    backend: Backend,
) -> (Job<'a>, (String, String)) {
    let info = task.info();
    let stamp = run_stamp();
    let files = (
        format!("samples/{stamp}.json"),
        format!("timelines/score-{stamp}.jsonl"),
    );
    let job = Job {
        task,
        request: ScoreRequest {
            profile: profile.into(),
            submission_dir: submission_dir.into(),
            private_dir: private_dir.join("task"),
            cache_dir: ctx.home.cache_dir(),
            samples_path: private_dir.join(&files.0),
            seed: rand::random(),
            backend,
        },
        timeline_path: private_dir.join(&files.1),
        timeout: Duration::from_secs(timeout.unwrap_or(info.score_timeout_s)),
        device_lock: device_lock(ctx, &info, profile, backend),
    };
    (job, files)
}

/// A fresh name for one scoring run's files.
pub fn run_stamp() -> String {
    format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u32>()
    )
}

/// What the emulator flag says on every use, so nobody mistakes it for a score.
pub const EMULATOR_WARNING: &str = "emulated run: the CPU emulator checks correctness only and never gives a score; \
     it compiles solution.cu as host code, so use it for the project's own kernels and tests, never for an untrusted submission";

/// Where a submission's files come from.
pub enum Submission<'a> {
    /// The attempt's folder, read here (same-user mode).
    Folder(&'a Path),
    /// What the scoring service's client read with the agent's rights and sent.
    Received(Vec<SubmittedFile>, Vec<Vec<u8>>),
}

pub fn score(
    ctx: &Context,
    attempt: &Attempt,
    submission: Submission<'_>,
    (allow_uncalibrated, timeout, backend): (bool, Option<u64>, Backend),
) -> Result<i32> {
    if backend == Backend::Emulator {
        warn!(ctx, "rdbench: {EMULATOR_WARNING}");
    }
    let task = registry::find(&attempt.record.task)?;
    let info = task.info();
    let profile = attempt.record.profile.clone();
    let started = Instant::now();
    // Score a snapshot, not the live folder: each submission file is read once, untrusted,
    // into the private area, so the file scored is the file hashed and a swap during scoring
    // changes nothing. The pid in its name lets a later sweep remove it if this process dies.
    let snapshot_dir = attempt.private_dir.join("snapshots").join(format!(
        "{}-{}",
        std::process::id(),
        run_stamp()
    ));
    if attempt.score_log().entry_count()? >= MAX_ENTRIES_PER_ATTEMPT {
        return Err(Error::Usage(format!(
            "this attempt has logged {MAX_ENTRIES_PER_ATTEMPT} scoring runs, its limit; no more are recorded"
        )));
    }
    if let Err((kind, reason)) = snapshot(
        submission,
        &info.submission_files,
        &attempt.record.dir,
        &snapshot_dir,
    ) {
        // Hash only what was read: the live folder may hold a FIFO that would block a read.
        let sha = hash_files(&snapshot_dir, &info.submission_names());
        let _ = std::fs::remove_dir_all(&snapshot_dir);
        let rejected = JobResult::rejected(kind, reason, started);
        let entry = entry_for(&info, &profile, &rejected, None, None, sha, None);
        let entry = record(attempt, entry)?;
        report(ctx, &info, &entry, attempt);
        return Ok(1);
    }
    let scored = score_snapshot(
        ctx,
        task.as_ref(),
        attempt,
        &snapshot_dir,
        (allow_uncalibrated, timeout, backend, started),
    );
    let _ = std::fs::remove_dir_all(&snapshot_dir);
    scored
}

/// Writes the submission's files (read from the folder untrusted: no links, FIFOs or devices;
/// bounded by each file's limit; or received from the client) into `dest`. A missing file is
/// left missing for the task to report; any other refusal is an invalid submission naming the
/// file, classified and worded here, never by the client.
fn snapshot(
    submission: Submission<'_>,
    task_files: &[SubmissionFile],
    attempt_dir: &Path,
    dest: &Path,
) -> std::result::Result<(), (InvalidKind, String)> {
    // Reasons name the file as the agent knows it: in its attempt's folder.
    let shown = |name: &str| attempt_dir.join(name).display().to_string();
    use rdbench_core::fsutil::create_private_dir_all;
    let internal = |e: Error| (InvalidKind::MissingFile, e.to_string());
    create_private_dir_all(dest).map_err(internal)?;
    let (files, blobs) = match submission {
        Submission::Folder(dir) => read_submission(dir, task_files),
        Submission::Received(files, blobs) => (files, blobs),
    };
    let mut blobs = blobs.into_iter();
    for file in files {
        // Only the task's own file names count: the client chose none of them.
        let task_file = task_files.iter().find(|f| f.name == file.name);
        match file.state {
            // Blobs come in the order of the files present, whatever the name.
            FileState::Present => {
                let bytes = blobs.next().ok_or_else(|| {
                    (
                        InvalidKind::MissingFile,
                        format!("{}: announced but not sent", one_line(&file.name, 64)),
                    )
                })?;
                if let Some(f) = task_file {
                    if bytes.len() as u64 > f.max_bytes {
                        return Err(Refusal::TooLarge {
                            size: bytes.len() as u64,
                        }
                        .entry(&shown(&f.name), f.max_bytes));
                    }
                    atomic_write(&dest.join(&f.name), &bytes).map_err(internal)?;
                }
            }
            FileState::Missing => {}
            FileState::Refused { cause } => {
                if let Some(f) = task_file {
                    return Err(cause.entry(&shown(&f.name), f.max_bytes));
                }
            }
        }
    }
    Ok(())
}

/// Scoring runs one attempt may log: each keeps an entry, its samples and a timeline, so an
/// agent scoring in a loop cannot fill the scorer's disk.
pub const MAX_ENTRIES_PER_ATTEMPT: usize = 10_000;

/// Messages name the snapshot's files; the agent knows them by their folder's path.
fn unsnapshot(result: &mut JobResult, snapshot_dir: &Path, attempt_dir: &Path) {
    let (from, to) = (
        snapshot_dir.display().to_string(),
        attempt_dir.display().to_string(),
    );
    let fix = |s: &mut String| *s = s.replace(&from, &to);
    let fix_value = |v: &mut serde_json::Value| {
        let text = v.to_string();
        if text.contains(&from) {
            if let Ok(fixed) = serde_json::from_str(&text.replace(&from, &to)) {
                *v = fixed;
            }
        }
    };
    match &mut result.outcome {
        ScoreOutcome::Invalid {
            reason, details, ..
        } => {
            fix(reason);
            fix_value(details);
        }
        ScoreOutcome::Valid {
            headline, details, ..
        }
        | ScoreOutcome::Unscored { headline, details } => {
            fix(headline);
            fix_value(details);
        }
    }
}

/// The rest of `score`, on the snapshot in `snapshot_dir`.
fn score_snapshot(
    ctx: &Context,
    task: &dyn Task,
    attempt: &Attempt,
    snapshot_dir: &Path,
    (allow_uncalibrated, timeout, backend, started): (bool, Option<u64>, Backend, Instant),
) -> Result<i32> {
    let info = task.info();
    let profile = attempt.record.profile.clone();
    // The attempt's private folder has the layout new_job expects (task_private_dir is `task/`).
    let (job, files) = new_job(
        ctx,
        task,
        &profile,
        snapshot_dir,
        &attempt.private_dir,
        timeout,
        backend,
    );
    let sha = hash_files(snapshot_dir, &info.submission_names());
    // 1. Checks that need no GPU: a bad submission is logged invalid right away.
    if let Some((kind, reason)) = task.precheck(&job.request)? {
        let mut rejected = JobResult::rejected(kind, reason, started);
        unsnapshot(&mut rejected, snapshot_dir, &attempt.record.dir);
        let entry = entry_for(&info, &profile, &rejected, None, None, sha, None);
        let entry = record(attempt, entry)?;
        report(ctx, &info, &entry, attempt);
        return Ok(1);
    }
    // 2. The environment and the calibration, before spending GPU time. An emulated run
    // has neither a device nor a score to normalize.
    task.check_environment(&profile, backend)?;
    let (fp, calibration) = if backend == Backend::Emulator {
        (None, None)
    } else {
        let fp = device_fingerprint(&info, &profile)?;
        let calibration = find_calibration(ctx, task, &profile, &fp)?;
        (Some(fp), calibration)
    };
    if let (Some(fp), None, false) = (&fp, &calibration, allow_uncalibrated) {
        return Err(Error::Environment(format!(
            "no calibration of {}/{profile} for this device ({}); run `rdbench calibrate --task {} --profile {profile}` \
             first, or score with --allow-uncalibrated for a raw score only",
            info.name,
            fp.id(),
            info.name
        )));
    }
    // 3. The worker.
    let mut result = job.run_checked()?;
    unsnapshot(&mut result, snapshot_dir, &attempt.record.dir);
    let entry = entry_for(
        &info,
        &profile,
        &result,
        calibration.as_ref(),
        fp.map(|f| f.id()),
        sha,
        Some(files),
    );
    let entry = record(attempt, entry)?;
    report(ctx, &info, &entry, attempt);
    Ok(if entry.valid { 0 } else { 1 })
}

/// Appends `entry` to the attempt's log, late if the time limit has passed or the attempt was
/// finished (the log itself also marks late whatever follows its seal).
fn record(attempt: &Attempt, mut entry: ScoreEntry) -> Result<ScoreEntry> {
    entry.late = attempt.is_late(Utc::now());
    let appended = attempt.score_log().append(&entry)?;
    entry.late = appended.late;
    Ok(entry)
}

fn report(ctx: &Context, info: &TaskInfo, entry: &ScoreEntry, attempt: &Attempt) {
    if ctx.json {
        if info.score_hidden {
            ctx.out.json(
                &serde_json::json!({ "valid": entry.valid, "reason": entry.reason, "hidden": true }),
            );
        } else {
            ctx.out.json(entry);
        }
        return;
    }
    let elapsed = attempt.elapsed_minutes();
    let over = attempt
        .record
        .time_limit_minutes
        .is_some_and(|l| elapsed > l);
    if !entry.valid {
        say!(
            ctx,
            "INVALID: {}",
            entry.reason.as_deref().unwrap_or("unknown reason")
        );
    } else if info.score_hidden {
        // The contract: a hidden score answers "recorded" and nothing else.
        say!(ctx, "recorded");
    } else if entry.unscored {
        say!(
            ctx,
            "CORRECT, NOT SCORED: {}",
            entry.headline.as_deref().unwrap_or("no measurement")
        );
    } else {
        let headline = match entry.headline.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => format!(": {h}"),
            None => String::new(),
        };
        say!(
            ctx,
            "score {} (raw {}{headline})",
            num(entry.normalized),
            num(entry.raw)
        );
        if entry.normalized.is_none() {
            say!(ctx, "  not normalized: no calibration for this device");
        }
    }
    if entry.late {
        say!(
            ctx,
            "  note: recorded late ({}): this entry never counts",
            if attempt.record.finished_at.is_some() || !over {
                "the attempt was finished".to_string()
            } else {
                format!("the time limit has passed, {elapsed:.0} min elapsed")
            }
        );
    }
}

/// What `status` reports: what an agent's scaffold shows it between actions.
#[derive(Debug, serde::Serialize)]
struct Status {
    id: String,
    task: String,
    profile: String,
    started_at: chrono::DateTime<Utc>,
    time_limit_minutes: Option<f64>,
    minutes_used: f64,
    /// `None` without a time limit; never below 0.
    minutes_left: Option<f64>,
    finished: bool,
    entries: usize,
    valid_entries: usize,
    late_entries: usize,
    score_hidden: bool,
    /// The best counted entry's normalized and raw scores (`None` for a hidden-score task).
    best: Option<(Option<f64>, Option<f64>)>,
}

/// `status`: time used and left, entries so far, and the best score where the task shows
/// scores. Reads the log as `log` does; nothing is written.
pub fn status(ctx: &Context, attempt: &Attempt) -> Result<i32> {
    let task = registry::find(&attempt.record.task)?;
    let info = task.info();
    let read = attempt.score_log().read_verified()?;
    let counted: Vec<&ScoreEntry> = read.counted().map(|e| &e.entry).collect();
    let used = attempt.elapsed_minutes();
    let status = Status {
        id: attempt.record.id.clone(),
        task: info.name.clone(),
        profile: attempt.record.profile.clone(),
        started_at: attempt.record.started_at,
        time_limit_minutes: attempt.record.time_limit_minutes,
        minutes_used: used,
        minutes_left: attempt
            .record
            .time_limit_minutes
            .map(|l| (l - used).max(0.0)),
        finished: attempt.record.finished_at.is_some(),
        entries: counted.len(),
        valid_entries: counted.iter().filter(|e| e.valid).count(),
        late_entries: read.entries.iter().filter(|e| !e.counts()).count(),
        score_hidden: info.score_hidden,
        best: (!info.score_hidden).then(|| {
            read.select_final(Selection::Best)
                .filter(|e| e.entry.valid)
                .map(|e| (e.entry.normalized, e.entry.raw))
                .unwrap_or((None, None))
        }),
    };
    if ctx.json {
        ctx.out.json(&status);
        return Ok(0);
    }
    say!(
        ctx,
        "{} {} ({}), started {}",
        status.id,
        status.task,
        status.profile,
        status.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    say!(
        ctx,
        "time:    {}",
        match (
            status.finished,
            status.time_limit_minutes,
            status.minutes_left
        ) {
            (true, _, _) => "finished".to_string(),
            (false, Some(limit), Some(left)) => format!(
                "{:.1} of {limit:.0} min used, {left:.1} min left",
                status.minutes_used
            ),
            _ => format!("{:.1} min used, no time limit", status.minutes_used),
        }
    );
    say!(
        ctx,
        "entries: {} counted ({} valid), {} late or after a break",
        status.entries,
        status.valid_entries,
        status.late_entries
    );
    match status.best {
        None => say!(
            ctx,
            "score:   hidden until the attempt ends; the last valid entry counts"
        ),
        Some((None, None)) => say!(ctx, "best:    no valid scored entry yet"),
        Some((normalized, raw)) => {
            say!(ctx, "best:    {} (raw {})", num(normalized), num(raw))
        }
    }
    Ok(0)
}

pub fn log(ctx: &Context, attempt: &Attempt) -> Result<i32> {
    let mut read = attempt.score_log().read_verified()?;
    // Whoever can list an attempt's log is the agent: a hidden score stays hidden here too
    // (validity and reasons remain); `finish` reports it.
    if registry::find(&attempt.record.task).is_ok_and(|t| t.info().score_hidden) {
        for e in &mut read.entries {
            let entry = &mut e.entry;
            (entry.raw, entry.normalized, entry.headline) = (None, None, None);
            (entry.details, entry.calibration) = (serde_json::Value::Null, None);
        }
    }
    for w in &read.warnings {
        warn!(ctx, "warning: score log line {}: {}", w.line, w.message);
    }
    if let Some(b) = &read.broken {
        warn!(
            ctx,
            "warning: the score log was altered or damaged: {b}; entries from there on never count"
        );
    }
    if ctx.json {
        let entries: Vec<&ScoreEntry> = read.entries.iter().map(|e| &e.entry).collect();
        let warnings: Vec<String> = read
            .warnings
            .iter()
            .map(|w| format!("line {}: {}", w.line, w.message))
            .collect();
        ctx.out.json(&serde_json::json!({
            "attempt": attempt.record.id,
            "entries": entries,
            "chain": {
                "intact": read.broken.is_none(),
                "broken_at": read.broken.as_ref().map(|b| b.to_string()),
                "sealed_at": read.seal.as_ref().map(|s| s.seal.finished_at),
            },
            "warnings": warnings,
        }));
        return Ok(0);
    }
    let mut table = Table::new(&[
        "#",
        "time (UTC)",
        "valid",
        "raw",
        "score",
        "wall s",
        "counts",
        "result",
    ]);
    // Entries are numbered 1, 2, 3, ... as listed (the log's own record numbers also count
    // the seal, which is not an entry).
    for (n, e) in read.entries.iter().enumerate() {
        let logged = &e.entry;
        table.row(vec![
            (n + 1).to_string(),
            logged.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            if logged.valid {
                "yes".into()
            } else {
                "no".into()
            },
            num(logged.raw),
            num(logged.normalized),
            format!("{:.1}", logged.wall_s),
            if !e.trusted {
                "no: after a break".into()
            } else if logged.late || e.after_seal {
                "no: late".into()
            } else if !logged.valid {
                "no: invalid".into()
            } else if logged.unscored {
                "no: not scored".into()
            } else {
                "yes".into()
            },
            match (&logged.reason, &logged.kind, &logged.headline) {
                (Some(r), Some(k), _) => one_line(&format!("{k}: {r}"), 90),
                (Some(r), None, _) => one_line(r, 90),
                (None, _, Some(h)) => one_line(h, 90),
                _ => String::new(),
            },
        ]);
    }
    say!(ctx, "{}", table.render());
    match (&read.broken, &read.seal) {
        (Some(b), _) => say!(ctx, "chain: BROKEN at {b}"),
        (None, Some(seal)) => say!(
            ctx,
            "chain: intact; sealed by finish at {}",
            seal.seal.finished_at.format("%Y-%m-%d %H:%M:%S")
        ),
        (None, None) => say!(ctx, "chain: intact"),
    }
    Ok(0)
}

/// Ends the attempt; returns the summary (for `--out`).
pub fn finish(ctx: &Context, mut attempt: Attempt) -> Result<AttemptSummary> {
    let task = registry::find(&attempt.record.task)?;
    let info = task.info();
    let selection = if info.score_hidden {
        Selection::Last
    } else {
        Selection::Best
    };
    // Seal first, under the log's lock: a scorer racing this call lands after the seal, late.
    let read = attempt.score_log().seal(Utc::now(), selection)?;
    let finished_at = read
        .seal
        .as_ref()
        .map(|s| s.seal.finished_at)
        .unwrap_or_else(Utc::now);
    if let Some(b) = &read.broken {
        warn!(
            ctx,
            "warning: the score log was altered or damaged: {b}; only the entries before it count"
        );
    }
    let chosen = read.select_final(selection).map(|e| &e.entry);
    let counted: Vec<&ScoreEntry> = read.counted().map(|e| &e.entry).collect();
    let summary = AttemptSummary {
        schema: SUMMARY_SCHEMA.into(),
        attempt_id: attempt.record.id.clone(),
        agent: attempt.record.agent.clone(),
        task: info.name.clone(),
        task_family: info.family.clone(),
        profile: attempt.record.profile.clone(),
        time_limit_minutes: attempt.record.time_limit_minutes,
        score: chosen.filter(|e| e.valid).and_then(|e| e.normalized),
        raw: chosen.filter(|e| e.valid).and_then(|e| e.raw),
        selection,
        score_hidden: info.score_hidden,
        entries: counted.len(),
        valid_entries: counted.iter().filter(|e| e.valid).count(),
        late_entries: read
            .entries
            .iter()
            .filter(|e| e.trusted && (e.entry.late || e.after_seal))
            .count(),
        log_break: read.broken.as_ref().map(|b| b.to_string()),
        started_at: attempt.record.started_at,
        finished_at,
        device: chosen.and_then(|e| e.device.clone()),
        human_minutes: info.human_minutes,
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?;
    atomic_write(&attempt.summary_path(), &json)?;
    if attempt.record.finished_at.is_none() {
        attempt.record.finished_at = Some(finished_at);
        attempt.save()?;
    }
    if ctx.json {
        ctx.out.json(&summary);
    } else {
        // The summary's own path is private: the platform asks for a copy with --out.
        if summary.raw.is_none() {
            say!(
                ctx,
                "finished {} ({}): no final score: none of its {} counted entries is a valid scored one",
                info.name,
                summary.profile,
                summary.entries
            );
            return Ok(summary);
        }
        say!(
            ctx,
            "finished {} ({}): final score {} (raw {}), {} of {} entries valid, {} entry counts",
            info.name,
            summary.profile,
            num(summary.score),
            num(summary.raw),
            summary.valid_entries,
            summary.entries,
            if selection == Selection::Best {
                "best"
            } else {
                "last"
            },
        );
    }
    Ok(summary)
}

/// Scores one installed solution outside any attempt (calibration and the self-test cycle).
pub fn score_solution_dir(
    ctx: &Context,
    task: &dyn Task,
    profile: &str,
    submission_dir: &Path,
    private_dir: &Path,
) -> Result<JobResult> {
    score_solution_dir_on(
        ctx,
        task,
        profile,
        submission_dir,
        private_dir,
        Backend::Cuda,
        None,
    )
}

/// As [`score_solution_dir`], on `backend`, with an optional time limit in seconds.
pub fn score_solution_dir_on(
    ctx: &Context,
    task: &dyn Task,
    profile: &str,
    submission_dir: &Path,
    private_dir: &Path,
    backend: Backend,
    timeout: Option<u64>,
) -> Result<JobResult> {
    new_job(
        ctx,
        task,
        profile,
        submission_dir,
        private_dir,
        timeout,
        backend,
    )
    .0
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid kernel score next to a calibration with a CPU baseline reports its speed-up
    /// and the task's target flag; without a baseline its details are the task's own.
    #[test]
    fn a_score_reports_its_speedup_over_the_calibrated_cpu_baseline() {
        let info = registry::find("cuda-backtest").unwrap().info();
        let result = JobResult {
            outcome: ScoreOutcome::Valid {
                raw: 10f64.ln(),
                headline: "10 ms".into(),
                details: serde_json::json!({ "median_ms": 10.0 }),
            },
            wall_s: 1.0,
            monitor: None,
            ran_worker: true,
        };
        let mut cal = CalibrationEntry {
            task: info.name.clone(),
            profile: "tiny".into(),
            start: 100f64.ln(),
            reference: 5f64.ln(),
            measured_at: Utc::now(),
            provenance: String::new(),
            details: serde_json::json!({}),
        };
        let entry = entry_for(
            &info,
            "tiny",
            &result,
            Some(&cal),
            None,
            String::new(),
            None,
        );
        assert!(entry.details.get("speedup_vs_cpu").is_none());
        cal.details[rdbench_core::calibration::CPU_BASELINE_KEY] =
            serde_json::json!({ "ms": 250.0, "description": "one thread", "target_speedup": 30.0 });
        let entry = entry_for(
            &info,
            "tiny",
            &result,
            Some(&cal),
            None,
            String::new(),
            None,
        );
        assert_eq!(entry.details["speedup_vs_cpu"], 25.0);
        assert_eq!(entry.details["meets_target_speedup"], false);
        assert_eq!(
            entry.details["median_ms"], 10.0,
            "the task's details are kept"
        );
    }
}
