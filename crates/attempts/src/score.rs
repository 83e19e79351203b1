//! `score`: one scoring run of an attempt's submission, logged.
//!
//! The submission is scored as a snapshot, not the live folder: each file is read once,
//! untrusted (by the [`crate::Peer`]: here, or by the client with the agent's rights), into the
//! attempt's private area, so the file scored is the file hashed and a swap during scoring
//! changes nothing. Cheap checks run here; the scoring worker is the binary's
//! ([`crate::Host::run_scoring`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdbench_client::proto::{FileState, Refusal, SubmittedFile};
use rdbench_core::attempt::Attempt;
use rdbench_core::calibration::{CalibrationEntry, DeviceFingerprint};
use rdbench_core::fsutil::{atomic_write, hash_files};
use rdbench_core::home::Home;
use rdbench_core::outcome::InvalidKind;
use rdbench_core::score_log::{Recorded, ScoreEntry, ScoreKey};
use rdbench_core::task::{
    profile_of, Execution, ProfileInfo, ScoreOutcome, ScoreRequest, SubmissionFile, SubmissionKind,
    Task, TaskInfo,
};
use rdbench_core::tree::TreeFile;
use rdbench_core::{Error, Result};

use crate::context::{refused, Ctx, Peer};
use crate::output::{num, one_line};

/// What one scoring run produced (the binary's worker result, as the log needs it).
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: ScoreOutcome,
    pub wall_s: f64,
    /// The monitor's summary of the run, as logged.
    pub monitor: Option<serde_json::Value>,
    /// Whether the worker ran (false when the precheck already rejected the submission).
    pub ran_worker: bool,
}

impl RunResult {
    /// A submission rejected before any worker ran.
    pub fn rejected(kind: InvalidKind, reason: String, start: Instant) -> Self {
        RunResult {
            outcome: ScoreOutcome::invalid(kind, reason),
            wall_s: start.elapsed().as_secs_f64(),
            monitor: None,
            ran_worker: false,
        }
    }
}

/// Everything one scoring run needs but the task: what the binary's worker is given.
#[derive(Debug, Clone)]
pub struct ScoringRun {
    pub request: ScoreRequest,
    /// Where the monitor writes its timeline.
    pub timeline_path: PathBuf,
    pub timeout: Duration,
    /// Held while the worker runs, so that scoring runs sharing a GPU never overlap.
    pub device_lock: Option<PathBuf>,
}

/// What `score` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ScoreOptions {
    /// Score even without a calibration for this device (raw score only).
    pub allow_uncalibrated: bool,
    /// The scoring time limit, seconds [default: the task's].
    pub timeout: Option<u64>,
    /// On the CPU emulator: correctness only.
    pub emulate: bool,
    /// The call's idempotency key: an entry already logged with it is reported again instead
    /// of a second run.
    pub key: Option<ScoreKey>,
}

/// What the emulator flag says on every use, so nobody mistakes it for a score.
pub const EMULATOR_WARNING: &str = "emulated run: the CPU emulator checks correctness only and never gives a score; \
     it compiles solution.cu as host code, so use it for the project's own kernels and tests, never for an untrusted submission";

/// `score`: the caller's rights (the emulator, the time limit), the key already logged, the
/// entry limit, the snapshot of the submission the peer supplies, the run, the entry and its
/// report. Exit code 0 for a valid entry, 1 for an invalid one.
pub fn score(
    ctx: &Ctx,
    peer: &mut dyn Peer,
    attempt: &Attempt,
    options: ScoreOptions,
) -> Result<i32> {
    let task = ctx.host.task(&attempt.record.task)?;
    let info = task.info();
    if options.emulate {
        refused(ctx.rights.emulator)?;
        // Another kind of task would score as usual and log a raw score the emulator never
        // gives.
        if info.submission != SubmissionKind::Kernel {
            return Err(Error::Usage(format!(
                "score --emulate is for kernel tasks (solution.cu); {} is scored as usual, \
                 without it",
                info.name
            )));
        }
        warn!(ctx, "rdbench: {EMULATOR_WARNING}");
    }
    let execution = if options.emulate {
        Execution::Emulated
    } else {
        Execution::Measured
    };
    let timeout = match options.timeout {
        Some(t) if ctx.rights.timeout_at_most_the_tasks => Some(t.min(info.score_timeout_s)),
        t => t,
    };
    // A retried call: the entry its key logged, reported as it was, nothing scored. (Two calls
    // racing with one key both run; the log keeps the first entry, and both report it.)
    if let Some(key) = &options.key {
        if let Some(logged) = attempt.score_log().find_keyed(key)? {
            report(ctx, &info, &logged, attempt);
            return Ok(exit_code(&logged));
        }
    }
    // The attempt's profile, looked up once: every step below takes the record.
    let profile = profile_of(task.as_ref(), &attempt.record.profile)?;
    let started = Instant::now();
    // The pid in the snapshot's name lets a later sweep remove it if this process dies.
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
    let submitted = peer.submission(&info, &attempt.record.dir)?;
    if let Err((kind, reason)) = snapshot(
        submitted,
        &info.submission_files,
        &attempt.record.dir,
        &snapshot_dir,
    ) {
        // Hash only what was read: the live folder may hold a FIFO that would block a read.
        let sha = hash_files(&snapshot_dir, &info.submission_names());
        let _ = std::fs::remove_dir_all(&snapshot_dir);
        let rejected = RunResult::rejected(kind, reason, started);
        let entry = entry_for(&info, &profile.name, &rejected, None, None, sha, None);
        return record_and_report(ctx, &info, attempt, entry, options.key);
    }
    let scored = score_snapshot(
        ctx,
        task.as_ref(),
        (attempt, &profile),
        &snapshot_dir,
        (options.allow_uncalibrated, timeout, execution, started),
        options.key,
    );
    let _ = std::fs::remove_dir_all(&snapshot_dir);
    scored
}

/// Reads the submission in `dir` as the client reads an agent's (the task's files only, each
/// bounded, never through a link) and writes the scorer's snapshot of it into `dest`, or says
/// why it is an invalid entry: what `score` does before a worker runs, for a caller scoring a
/// folder of its own (check-task's exploit corpus), so that it meets an agent's refusals.
pub fn snapshot_folder(
    info: &TaskInfo,
    dir: &Path,
    dest: &Path,
) -> std::result::Result<(), (InvalidKind, String)> {
    let files = rdbench_client::client::read_submission(dir, &info.submission_files);
    snapshot(files, &info.submission_files, dir, dest)
}

/// Writes the submission's files (read untrusted: no links, FIFOs or devices; bounded by each
/// file's limit) into `dest`. A missing file and every refusal are an invalid submission
/// naming the file by its path in the attempt's folder, classified and worded here (never by
/// the client, nor differently by each task).
fn snapshot(
    (files, blobs): (Vec<SubmittedFile>, Vec<Vec<u8>>),
    task_files: &[SubmissionFile],
    attempt_dir: &Path,
    dest: &Path,
) -> std::result::Result<(), (InvalidKind, String)> {
    // Reasons name the file as the agent knows it: in its attempt's folder.
    let shown = |name: &str| attempt_dir.join(name).display().to_string();
    use rdbench_core::fsutil::create_private_dir_all;
    let internal = |e: Error| (InvalidKind::MissingFile, e.to_string());
    create_private_dir_all(dest).map_err(internal)?;
    // Blobs come in the order of the files present, whatever the name.
    let mut blobs = blobs.into_iter();
    let mut next_blob = |name: &str| {
        blobs.next().ok_or_else(|| {
            (
                InvalidKind::MissingFile,
                format!("{}: announced but not sent", one_line(name, 64)),
            )
        })
    };
    let mut written = Vec::new();
    // A tree's files, by the tree's index in `task_files`.
    let mut trees: Vec<Vec<TreeFile>> = vec![Vec::new(); task_files.len()];
    for file in files {
        // Only the task's own file names count: the client chose none of them.
        let task_file = task_files
            .iter()
            .find(|f| f.name == file.name && f.tree.is_none());
        if let Some((i, tree)) = tree_of(task_files, &file.name) {
            match file.state {
                FileState::Present => {
                    let bytes = next_blob(&file.name)?;
                    let path = file.name[tree.name.len()..].trim_start_matches('/');
                    trees[i].push(TreeFile {
                        path: path.to_string(),
                        bytes,
                        executable: file.executable,
                    });
                }
                FileState::Missing => {}
                FileState::Refused { cause } => {
                    return Err(cause.entry(&shown(&one_line(&file.name, 300)), tree));
                }
            }
            continue;
        }
        match file.state {
            FileState::Present => {
                let bytes = next_blob(&file.name)?;
                if let Some(f) = task_file {
                    if bytes.len() as u64 > f.max_bytes {
                        return Err(Refusal::TooLarge {
                            size: bytes.len() as u64,
                        }
                        .entry(&shown(&f.name), f));
                    }
                    atomic_write(&dest.join(&f.name), &bytes).map_err(internal)?;
                    written.push(f.name.as_str());
                }
            }
            FileState::Missing => {}
            FileState::Refused { cause } => {
                if let Some(f) = task_file {
                    return Err(cause.entry(&shown(&f.name), f));
                }
            }
        }
    }
    for (tree, files) in task_files.iter().zip(&trees) {
        let Some(limits) = tree.tree.filter(|_| !files.is_empty()) else {
            continue;
        };
        // The client's list is checked as a read of the folder would have been.
        if let Err(e) = rdbench_core::tree::check_files(files, &limits) {
            let (path, cause) = Refusal::of_tree(&e);
            let name = match path {
                Some(p) => format!("{}/{p}", tree.name),
                None => tree.name.clone(),
            };
            return Err(cause.entry(&shown(&one_line(&name, 300)), tree));
        }
        let to = dest.join(&tree.name);
        rdbench_core::tree::write_tree(&to, files)
            .map_err(|e| (InvalidKind::MissingFile, format!("{}: {e}", to.display())))?;
        written.push(tree.name.as_str());
    }
    // Missing, or never announced by the client: the same words either way.
    if let Some(f) = task_files
        .iter()
        .find(|f| !written.contains(&f.name.as_str()))
    {
        let whole = match task_files {
            [_] => String::new(),
            _ => format!(
                " (the submission is {})",
                task_files
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        };
        return Err((
            InvalidKind::MissingFile,
            format!("{}: missing{whole}", shown(&f.name)),
        ));
    }
    Ok(())
}

/// The tree (index and file) a submitted name `tree/...` belongs to.
fn tree_of<'a>(
    task_files: &'a [SubmissionFile],
    name: &str,
) -> Option<(usize, &'a SubmissionFile)> {
    task_files.iter().enumerate().find(|(_, f)| {
        f.tree.is_some()
            && (name == f.name
                || name
                    .strip_prefix(f.name.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// Scoring runs one attempt may log: each keeps an entry, its samples and a timeline, so an
/// agent scoring in a loop cannot fill the scorer's disk.
pub const MAX_ENTRIES_PER_ATTEMPT: usize = 10_000;

/// Messages name the snapshot's files; the agent knows them by their folder's path.
fn unsnapshot(result: &mut RunResult, snapshot_dir: &Path, attempt_dir: &Path) {
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
    ctx: &Ctx,
    task: &dyn Task,
    (attempt, profile): (&Attempt, &ProfileInfo),
    snapshot_dir: &Path,
    (allow_uncalibrated, timeout, execution, started): (bool, Option<u64>, Execution, Instant),
    key: Option<ScoreKey>,
) -> Result<i32> {
    let info = task.info();
    // The attempt's private folder has the layout scoring_run expects (task_private_dir is `task/`).
    let (run, files) = scoring_run(
        ctx.home,
        &info,
        profile,
        snapshot_dir,
        &attempt.private_dir,
        timeout,
        execution,
        || ctx.host.gpu_name(),
    );
    let sha = hash_files(snapshot_dir, &info.submission_names());
    // 1. Checks that need no GPU: a bad submission is logged invalid right away.
    if let Some((kind, reason)) = task.precheck(&run.request)? {
        let mut rejected = RunResult::rejected(kind, reason, started);
        unsnapshot(&mut rejected, snapshot_dir, &attempt.record.dir);
        let entry = entry_for(&info, &profile.name, &rejected, None, None, sha, None);
        return record_and_report(ctx, &info, attempt, entry, key);
    }
    // 2. The environment and the calibration, before spending GPU time.
    let Readiness { fp, calibration } = readiness(ctx, task, profile, execution)?;
    if let (Some(fp), None, false) = (&fp, &calibration, allow_uncalibrated) {
        return Err(Error::Environment(format!(
            "{}; run {} first, or score with --allow-uncalibrated for a raw score only",
            no_calibration(&info.name, &profile.name, fp),
            calibrate_command(&info.name, &profile.name),
        )));
    }
    // 3. The worker.
    let mut result = ctx.host.run_scoring(task, run)?;
    unsnapshot(&mut result, snapshot_dir, &attempt.record.dir);
    let entry = entry_for(
        &info,
        &profile.name,
        &result,
        calibration.as_ref(),
        fp.map(|f| f.id()),
        sha,
        Some(files),
    );
    record_and_report(ctx, &info, attempt, entry, key)
}

/// What scoring a profile needs on this installation, looked up before a run is spent.
pub(crate) struct Readiness {
    /// The device the scores are measured on (none for the emulator, which never scores).
    pub fp: Option<DeviceFingerprint>,
    /// The calibration that normalizes them there, if this installation has one.
    pub calibration: Option<CalibrationEntry>,
}

/// The task's own environment check for `profile` with `execution` (a GPU, a ground-truth
/// sweep: `Err(Environment)` says what is missing), then the device and its calibration. An
/// emulated run has neither a device nor a score to normalize. `score` and `start` (which
/// refuses what cannot be scored) ask the same question here.
pub(crate) fn readiness(
    ctx: &Ctx,
    task: &dyn Task,
    profile: &ProfileInfo,
    execution: Execution,
) -> Result<Readiness> {
    task.check_environment(profile, execution)?;
    if execution == Execution::Emulated {
        return Ok(Readiness {
            fp: None,
            calibration: None,
        });
    }
    let (fp, calibration) = ctx.host.calibration(task, profile)?;
    Ok(Readiness {
        fp: Some(fp),
        calibration,
    })
}

/// Why a score of `task`/`profile` cannot be normalized on the device `fp`.
pub(crate) fn no_calibration(task: &str, profile: &str, fp: &DeviceFingerprint) -> String {
    format!(
        "no calibration of {task}/{profile} for this device ({})",
        fp.id()
    )
}

/// The operator's command that makes `task`/`profile` normalizable here.
pub(crate) fn calibrate_command(task: &str, profile: &str) -> String {
    format!("`rdbench calibrate --task {task} --profile {profile}`")
}

/// Appends `entry` to the attempt's log with the call's `key`, late if the time limit has
/// passed or the attempt was finished (the log itself also marks late whatever follows its
/// seal), and reports it; or, where a racing call with the same key logged first, reports that
/// call's entry. The exit code is the reported entry's.
fn record_and_report(
    ctx: &Ctx,
    info: &TaskInfo,
    attempt: &Attempt,
    mut entry: ScoreEntry,
    key: Option<ScoreKey>,
) -> Result<i32> {
    entry.late = attempt.is_late(Utc::now());
    entry.key = key;
    let entry = match attempt.score_log().append_once(&entry)? {
        Recorded::Appended(appended) => ScoreEntry {
            late: appended.late,
            ..entry
        },
        Recorded::AlreadyLogged(logged) => logged,
    };
    report(ctx, info, &entry, attempt);
    Ok(exit_code(&entry))
}

/// `score`'s exit code for a logged entry: 0 valid, 1 invalid.
fn exit_code(entry: &ScoreEntry) -> i32 {
    if entry.valid {
        0
    } else {
        1
    }
}

fn report(ctx: &Ctx, info: &TaskInfo, entry: &ScoreEntry, attempt: &Attempt) {
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

/// Builds the log entry of one scoring run.
pub fn entry_for(
    info: &TaskInfo,
    profile: &str,
    result: &RunResult,
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
            let median_ms = rdbench_core::outcome::Timing::of(&details).median_ms;
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
        monitor: result.monitor.clone(),
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
        key: None,
    }
}

/// The lock that serializes GPU scoring runs (and GPU tool calls) on this machine, named after
/// the GPU they use: `locks/<gpu>`, `gpu` giving the name ([`crate::Host::gpu_name`], asked only
/// for a GPU run). `None` for CPU profiles and emulated runs.
pub fn device_lock(
    home: &Home,
    profile: &ProfileInfo,
    execution: Execution,
    gpu: impl FnOnce() -> String,
) -> Option<PathBuf> {
    (profile.needs_gpu && execution == Execution::Measured)
        .then(|| home.root().join("locks").join(gpu()))
}

/// One scoring run of the submission in `submission_dir`, with its files laid out under
/// `private_dir` as in an attempt (`task/`, `samples/`, `timelines/`). Returns the run and the
/// samples and timeline paths relative to `private_dir`, for the log entry. `gpu` names the
/// GPU for the device lock ([`device_lock`]).
#[allow(clippy::too_many_arguments)] // each named at its call
pub fn scoring_run(
    home: &Home,
    info: &TaskInfo,
    profile: &ProfileInfo,
    submission_dir: &Path,
    private_dir: &Path,
    timeout: Option<u64>,
    execution: Execution,
    gpu: impl FnOnce() -> String,
) -> (ScoringRun, (String, String)) {
    let stamp = run_stamp();
    let files = (
        format!("samples/{stamp}.json"),
        format!("timelines/score-{stamp}.jsonl"),
    );
    let run = ScoringRun {
        request: ScoreRequest {
            profile: profile.clone(),
            submission_dir: submission_dir.into(),
            private_dir: private_dir.join("task"),
            cache_dir: home.cache_dir(),
            samples_path: private_dir.join(&files.0),
            seed: rand::random(),
            execution,
        },
        timeline_path: private_dir.join(&files.1),
        timeout: Duration::from_secs(timeout.unwrap_or(info.score_timeout_s)),
        device_lock: device_lock(home, profile, execution, gpu),
    };
    (run, files)
}

/// A fresh name for one scoring run's files.
pub fn run_stamp() -> String {
    format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_info;

    fn calibration(info: &TaskInfo) -> CalibrationEntry {
        CalibrationEntry {
            task: info.name.clone(),
            profile: "tiny".into(),
            start: 100f64.ln(),
            reference: 5f64.ln(),
            measured_at: Utc::now(),
            provenance: String::new(),
            details: serde_json::json!({}),
        }
    }

    /// A valid kernel score next to a calibration with a CPU baseline reports its speed-up
    /// and the task's target flag; without a baseline its details are the task's own.
    #[test]
    fn a_score_reports_its_speedup_over_the_calibrated_cpu_baseline() {
        let info = fake_info();
        let result = RunResult {
            outcome: ScoreOutcome::Valid {
                raw: 10f64.ln(),
                headline: "10 ms".into(),
                details: serde_json::json!({ "median_ms": 10.0 }),
            },
            wall_s: 1.0,
            monitor: None,
            ran_worker: true,
        };
        let entry_against = |cal: &CalibrationEntry| {
            entry_for(&info, "tiny", &result, Some(cal), None, String::new(), None)
        };
        let mut cal = calibration(&info);
        let entry = entry_against(&cal);
        assert!(entry.details.get("speedup_vs_cpu").is_none());
        cal.details[rdbench_core::calibration::CPU_BASELINE_KEY] =
            serde_json::json!({ "ms": 250.0, "description": "one thread", "target_speedup": 30.0 });
        let entry = entry_against(&cal);
        assert_eq!(entry.details["speedup_vs_cpu"], 25.0);
        assert_eq!(entry.details["meets_target_speedup"], false);
        assert_eq!(
            entry.details["median_ms"], 10.0,
            "the task's details are kept"
        );
    }

    fn sent(name: &str, state: FileState) -> SubmittedFile {
        SubmittedFile {
            name: name.into(),
            state,
            executable: false,
        }
    }

    /// The snapshot keeps only the task's own files, each within its limit, and words every
    /// refusal itself, naming the file in the attempt's folder.
    #[test]
    fn the_snapshot_takes_only_the_tasks_files_within_their_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let files = fake_info().submission_files;
        let attempt_dir = Path::new("/home/agent/att");
        let dest = tmp.path().join("snap");
        let ok = (
            vec![
                sent("elsewhere.txt", FileState::Present),
                sent("solution.txt", FileState::Present),
            ],
            vec![b"ignored".to_vec(), b"kept".to_vec()],
        );
        snapshot(ok, &files, attempt_dir, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("solution.txt")).unwrap(), b"kept");
        assert!(!dest.join("elsewhere.txt").exists());

        let big = vec![0u8; 65];
        let too_large = (vec![sent("solution.txt", FileState::Present)], vec![big]);
        let (kind, reason) =
            snapshot(too_large, &files, attempt_dir, &tmp.path().join("b")).unwrap_err();
        assert_eq!(kind, InvalidKind::TooLarge);
        assert_eq!(
            reason,
            "/home/agent/att/solution.txt: 65 bytes is over its 64-byte limit"
        );

        let unsent = (vec![sent("solution.txt", FileState::Present)], Vec::new());
        let (kind, reason) =
            snapshot(unsent, &files, attempt_dir, &tmp.path().join("c")).unwrap_err();
        assert_eq!(kind, InvalidKind::MissingFile);
        assert!(reason.contains("announced but not sent"), "{reason}");

        // Missing, or not announced at all: the file's path and the one word, as a refusal
        // names it.
        let missing = (vec![sent("solution.txt", FileState::Missing)], Vec::new());
        let unannounced = (Vec::new(), Vec::new());
        for (n, sent) in [missing, unannounced].into_iter().enumerate() {
            let (kind, reason) =
                snapshot(sent, &files, attempt_dir, &tmp.path().join(format!("d{n}"))).unwrap_err();
            assert_eq!(kind, InvalidKind::MissingFile);
            assert_eq!(reason, "/home/agent/att/solution.txt: missing");
        }
        let two = [
            SubmissionFile::new("a.toml", 8),
            SubmissionFile::new("b.bin", 8),
        ];
        let only_a = (
            vec![sent("a.toml", FileState::Present)],
            vec![b"x".to_vec()],
        );
        let (_, reason) = snapshot(only_a, &two, attempt_dir, &tmp.path().join("e")).unwrap_err();
        assert_eq!(
            reason,
            "/home/agent/att/b.bin: missing (the submission is a.toml and b.bin)"
        );
    }

    /// A tree arrives as one entry per file: written back as the scorer's own copy (modes
    /// kept), checked against its caps as a read of the folder would be, and refused with the
    /// path the agent knows.
    #[test]
    fn a_tree_submission_is_checked_and_written_back() {
        use rdbench_core::tree::TreeLimits;
        let tmp = tempfile::tempdir().unwrap();
        let limits = TreeLimits {
            max_files: 3,
            max_bytes: 10,
            max_depth: 1,
        };
        let tree = [SubmissionFile::tree("solution", limits)];
        let attempt_dir = Path::new("/home/agent/att");
        let run = |files: Vec<SubmittedFile>, blobs: Vec<&[u8]>, at: &str| {
            let blobs = blobs.into_iter().map(<[u8]>::to_vec).collect();
            snapshot((files, blobs), &tree, attempt_dir, &tmp.path().join(at))
        };
        let mut script = sent("solution/run.sh", FileState::Present);
        script.executable = true;
        run(
            vec![script.clone(), sent("solution/a/x", FileState::Present)],
            vec![b"echo", b"x"],
            "ok",
        )
        .unwrap();
        let ok = tmp.path().join("ok/solution");
        assert_eq!(std::fs::read(ok.join("a/x")).unwrap(), b"x");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ok.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);

        type Case<'a> = (Vec<SubmittedFile>, Vec<&'a [u8]>, InvalidKind, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![sent("solution/../x", FileState::Present)],
                vec![b"x"],
                InvalidKind::RuleViolation,
                "/home/agent/att/solution/../x: a name",
            ),
            (
                vec![sent("solution/a/b/x", FileState::Present)],
                vec![b"x"],
                InvalidKind::TooLarge,
                "deeper than 1 folders",
            ),
            (
                vec![script.clone(), sent("solution/y", FileState::Present)],
                vec![b"echo", b"0123456789"],
                InvalidKind::TooLarge,
                "/home/agent/att/solution/y: the folder's files together are over its 10-byte",
            ),
            (
                vec![sent(
                    "solution/link",
                    FileState::Refused {
                        cause: Refusal::NotPlain {
                            what: rdbench_core::fsutil::NotRegular::SymbolicLink,
                        },
                    },
                )],
                vec![],
                InvalidKind::RuleViolation,
                "/home/agent/att/solution/link: a symbolic link",
            ),
            (
                vec![sent("solution", FileState::Missing)],
                vec![],
                InvalidKind::MissingFile,
                "/home/agent/att/solution: missing",
            ),
        ];
        for (n, (files, blobs, kind, reason)) in cases.into_iter().enumerate() {
            let (k, r) = run(files, blobs, &format!("bad{n}")).unwrap_err();
            assert_eq!(k, kind, "{r}");
            assert!(r.contains(reason), "{r}");
        }
    }

    /// A tree refused by the scorer's own read and the same tree refused by the client are the
    /// same kind of entry.
    #[test]
    fn a_refused_tree_is_the_same_kind_from_the_client_or_the_scorers_read() {
        use rdbench_core::fsutil::NotRegular;
        use rdbench_core::tree::{TreeError, TreeLimits};
        let tree = SubmissionFile::tree("solution", TreeLimits::OWN);
        let path = || "x".to_string();
        let errors = [
            TreeError::NotPlain {
                path: path(),
                what: NotRegular::SymbolicLink,
            },
            TreeError::NotPlain {
                path: path(),
                what: NotRegular::HardLink,
            },
            TreeError::BadName { path: path() },
            TreeError::TooManyFiles { max: 1 },
            TreeError::TooLarge {
                path: path(),
                max: 1,
            },
            TreeError::TooDeep {
                path: path(),
                max: 1,
            },
        ];
        for e in errors {
            let (_, refusal) = Refusal::of_tree(&e);
            assert_eq!(
                refusal.entry("solution/x", &tree).0,
                e.invalid_kind(),
                "{e}"
            );
        }
    }

    /// Reasons and details name the agent's folder, never the private snapshot.
    #[test]
    fn messages_name_the_attempts_folder_not_the_snapshot() {
        let mut result = RunResult::rejected(
            InvalidKind::Compile,
            "/private/snap-1/solution.cu:3: error".into(),
            Instant::now(),
        );
        if let ScoreOutcome::Invalid { details, .. } = &mut result.outcome {
            *details = serde_json::json!({ "log": "in /private/snap-1/solution.cu" });
        }
        unsnapshot(
            &mut result,
            Path::new("/private/snap-1"),
            Path::new("/home/a/att"),
        );
        let ScoreOutcome::Invalid {
            reason, details, ..
        } = &result.outcome
        else {
            panic!("{:?}", result.outcome);
        };
        assert_eq!(reason, "/home/a/att/solution.cu:3: error");
        assert_eq!(details["log"], "in /home/a/att/solution.cu");
    }

    /// A GPU profile's run holds the device lock, named after the GPU by its PCI bus id where
    /// one is known and by its ordinal otherwise; the emulator and CPU profiles hold none and
    /// never ask for the GPU's name.
    #[test]
    fn only_gpu_runs_hold_the_device_lock() {
        use rdbench_core::calibration::{gpu_name, SCORED_GPU_ORDINAL};
        let home = Home::new("/h");
        let mut info = fake_info();
        info.profiles[0].needs_gpu = true;
        let run = |info: &TaskInfo, execution, bus: Option<&str>| {
            let (run, _) = scoring_run(
                &home,
                info,
                &info.profiles[0],
                Path::new("/s"),
                Path::new("/p"),
                None,
                execution,
                || gpu_name(SCORED_GPU_ORDINAL, bus),
            );
            run
        };
        let lock = |info: &TaskInfo, execution, bus| run(info, execution, bus).device_lock;
        assert_eq!(
            lock(&info, Execution::Measured, None),
            Some(PathBuf::from("/h/locks/gpu-0"))
        );
        assert_eq!(
            lock(&info, Execution::Measured, Some("00000000:18:00.0")),
            Some(PathBuf::from("/h/locks/gpu-0000:18:00.0"))
        );
        let unasked = || -> String { panic!("a run without the GPU asked for its name") };
        assert_eq!(
            device_lock(&home, &info.profiles[0], Execution::Emulated, unasked),
            None
        );
        assert_eq!(
            run(&info, Execution::Measured, None).timeout,
            Duration::from_secs(60)
        );
        info.profiles[0].needs_gpu = false;
        assert_eq!(
            device_lock(&home, &info.profiles[0], Execution::Measured, unasked),
            None
        );
    }
}
