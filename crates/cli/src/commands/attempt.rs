//! `start`, `score`, `log` and `finish`: the life of one attempt.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdbench_core::attempt::Attempt;
use rdbench_core::calibration::CalibrationEntry;
use rdbench_core::fsutil::{atomic_write, hash_files};
use rdbench_core::outcome::InvalidKind;
use rdbench_core::score_log::{select_final, ScoreEntry, Selection};
use rdbench_core::summary::{AttemptSummary, SUMMARY_SCHEMA};
use rdbench_core::task::{Backend, PrepareRequest, ScoreOutcome, ScoreRequest, Task, TaskInfo};
use rdbench_core::{Error, Result};

use super::{device_fingerprint, find_calibration, Context};
use crate::job::{Job, JobResult};
use crate::output::{self, num, one_line, Table};
use crate::registry;

pub fn start(
    ctx: &Context,
    task_name: &str,
    dir: &Path,
    profile: &str,
    time_limit: Option<f64>,
    agent: &str,
) -> Result<i32> {
    let task = registry::find(task_name)?;
    let info = task.info();
    info.profile(profile)?;
    if let Some(t) = time_limit {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::Usage(format!(
                "--time-limit must be a positive number of minutes, not {t}"
            )));
        }
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        if entries.next().is_some() {
            return Err(Error::Usage(format!(
                "{}: not empty; an attempt starts in a new or empty folder",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let limit = time_limit.unwrap_or(info.default_time_limit_minutes as f64);
    let attempt = Attempt::create(&ctx.home, &info.name, profile, agent, dir, Some(limit))?;
    let prepared = task.prepare(&PrepareRequest {
        profile: profile.into(),
        attempt_dir: attempt.record.dir.clone(),
        private_dir: attempt.task_private_dir(),
        cache_dir: ctx.home.cache_dir(),
    });
    if let Err(e) = prepared {
        // Leave no half-started attempt behind.
        let _ = std::fs::remove_dir_all(&attempt.private_dir);
        return Err(e);
    }
    if ctx.json {
        output::json(&attempt.record);
    } else {
        println!(
            "started {} ({profile}) in {} — read INSTRUCTIONS.md there; score with `rdbench score {}`",
            info.name,
            attempt.record.dir.display(),
            dir.display()
        );
    }
    Ok(0)
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
            (true, Some(*raw), None, details.clone())
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

pub fn score(
    ctx: &Context,
    dir: &Path,
    allow_uncalibrated: bool,
    timeout: Option<u64>,
    backend: Backend,
) -> Result<i32> {
    if backend == Backend::Emulator {
        eprintln!("rdbench: {EMULATOR_WARNING}");
    }
    let attempt = Attempt::open(&ctx.home, dir)?;
    let task = registry::find(&attempt.record.task)?;
    let info = task.info();
    let profile = attempt.record.profile.clone();
    let log = attempt.score_log();
    let started = Instant::now();
    // Score a snapshot, not the live folder: each submission file is read once, untrusted,
    // into the private area, so the file scored is the file hashed and a swap during scoring
    // changes nothing.
    let snapshot_dir = attempt.private_dir.join("snapshots").join(run_stamp());
    if let Err((kind, reason)) =
        snapshot(&attempt.record.dir, &info.submission_files, &snapshot_dir)
    {
        // Hash only what was read: the live folder may hold a FIFO that would block a read.
        let sha = hash_files(&snapshot_dir, &info.submission_files);
        let _ = std::fs::remove_dir_all(&snapshot_dir);
        let rejected = JobResult::rejected(kind, reason, started);
        let entry = entry_for(&info, &profile, &rejected, None, None, sha, None);
        log.append(&entry)?;
        report(ctx, &info, &entry, &attempt);
        return Ok(1);
    }
    let scored = score_snapshot(
        ctx,
        task.as_ref(),
        &attempt,
        &snapshot_dir,
        (allow_uncalibrated, timeout, backend, started),
    );
    let _ = std::fs::remove_dir_all(&snapshot_dir);
    scored
}

/// Reads each of `names` from `dir` (untrusted: no links, FIFOs or devices; bounded) into
/// `dest`. A missing file is left missing for the task to report; any other refusal is an
/// invalid submission naming the file.
fn snapshot(
    dir: &Path,
    names: &[String],
    dest: &Path,
) -> std::result::Result<(), (InvalidKind, String)> {
    use rdbench_core::fsutil::{create_private_dir_all, read_untrusted, UntrustedReadError as E};
    /// No submission file of any task comes near this; the task's own limit is tighter.
    const MAX_SNAPSHOT_FILE: u64 = 1 << 30;
    let internal = |e: Error| (InvalidKind::MissingFile, e.to_string());
    create_private_dir_all(dest).map_err(internal)?;
    for name in names {
        let path = dir.join(name);
        match read_untrusted(&path, MAX_SNAPSHOT_FILE) {
            Ok(bytes) => atomic_write(&dest.join(name), &bytes).map_err(internal)?,
            Err(E::NotFound) => {}
            Err(e @ E::TooLarge { .. }) => {
                return Err((InvalidKind::TooLarge, format!("{}: {e}", path.display())))
            }
            Err(e @ E::NotARegularFile(_)) => {
                return Err((
                    InvalidKind::RuleViolation,
                    format!("{}: {e}", path.display()),
                ))
            }
            Err(e @ E::Io(_)) => {
                return Err((InvalidKind::MissingFile, format!("{}: {e}", path.display())))
            }
        }
    }
    Ok(())
}

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
    let log = attempt.score_log();
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
    let sha = hash_files(snapshot_dir, &info.submission_files);
    // 1. Checks that need no GPU: a bad submission is logged invalid right away.
    if let Some((kind, reason)) = task.precheck(&job.request)? {
        let mut rejected = JobResult::rejected(kind, reason, started);
        unsnapshot(&mut rejected, snapshot_dir, &attempt.record.dir);
        let entry = entry_for(&info, &profile, &rejected, None, None, sha, None);
        log.append(&entry)?;
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
    log.append(&entry)?;
    report(ctx, &info, &entry, attempt);
    Ok(if entry.valid { 0 } else { 1 })
}

fn report(ctx: &Context, info: &TaskInfo, entry: &ScoreEntry, attempt: &Attempt) {
    if ctx.json {
        if info.score_hidden {
            output::json(
                &serde_json::json!({ "valid": entry.valid, "reason": entry.reason, "hidden": true }),
            );
        } else {
            output::json(entry);
        }
        return;
    }
    let elapsed = attempt.elapsed_minutes();
    let over = attempt
        .record
        .time_limit_minutes
        .is_some_and(|l| elapsed > l);
    if !entry.valid {
        println!(
            "INVALID: {}",
            entry.reason.as_deref().unwrap_or("unknown reason")
        );
    } else if info.score_hidden {
        println!("scored (this task hides its score until the attempt ends)");
    } else if entry.unscored {
        println!(
            "CORRECT, NOT SCORED: {}",
            entry.headline.as_deref().unwrap_or("no measurement")
        );
    } else {
        print!("score {} (raw {}", num(entry.normalized), num(entry.raw));
        if let Some(h) = entry.headline.as_deref().filter(|h| !h.is_empty()) {
            print!(": {h}");
        }
        println!(")");
        if entry.normalized.is_none() {
            println!("  not normalized: no calibration for this device");
        }
    }
    if over {
        println!("  note: the attempt's time limit has passed ({elapsed:.0} min elapsed)");
    }
}

pub fn log(ctx: &Context, dir: &Path) -> Result<i32> {
    let attempt = Attempt::open(&ctx.home, dir)?;
    let (entries, warnings) = attempt.score_log().read()?;
    for w in &warnings {
        eprintln!(
            "warning: {}: line {}: {}",
            attempt.score_log().path().display(),
            w.line,
            w.message
        );
    }
    if ctx.json {
        output::json(&entries);
        return Ok(0);
    }
    let mut table = Table::new(&[
        "#",
        "time (UTC)",
        "valid",
        "raw",
        "score",
        "wall s",
        "result",
    ]);
    for (i, e) in entries.iter().enumerate() {
        table.row(vec![
            (i + 1).to_string(),
            e.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            if e.valid { "yes".into() } else { "no".into() },
            num(e.raw),
            num(e.normalized),
            format!("{:.1}", e.wall_s),
            match (&e.reason, &e.kind, &e.headline) {
                (Some(r), Some(k), _) => one_line(&format!("{k}: {r}"), 90),
                (Some(r), None, _) => one_line(r, 90),
                (None, _, Some(h)) => one_line(h, 90),
                _ => String::new(),
            },
        ]);
    }
    println!("{}", table.render());
    Ok(0)
}

pub fn finish(ctx: &Context, dir: &Path, out: Option<&Path>) -> Result<i32> {
    let mut attempt = Attempt::open(&ctx.home, dir)?;
    let task = registry::find(&attempt.record.task)?;
    let info = task.info();
    let (entries, _) = attempt.score_log().read()?;
    let selection = if info.score_hidden {
        Selection::Last
    } else {
        Selection::Best
    };
    let chosen = select_final(&entries, selection);
    let finished_at = Utc::now();
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
        entries: entries.len(),
        valid_entries: entries.iter().filter(|e| e.valid).count(),
        started_at: attempt.record.started_at,
        finished_at,
        device: chosen.and_then(|e| e.device.clone()),
        human_minutes: info.human_minutes,
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?;
    atomic_write(&attempt.summary_path(), &json)?;
    if let Some(out) = out {
        atomic_write(out, &json)?;
    }
    attempt.record.finished_at = Some(finished_at);
    attempt.save()?;
    if ctx.json {
        output::json(&summary);
    } else {
        println!(
            "finished {} ({}): final score {} (raw {}), {} of {} entries valid, {} entry counts; summary at {}",
            info.name,
            summary.profile,
            num(summary.score),
            num(summary.raw),
            summary.valid_entries,
            summary.entries,
            if selection == Selection::Best { "best" } else { "last" },
            out.unwrap_or(&attempt.summary_path()).display()
        );
    }
    Ok(0)
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
