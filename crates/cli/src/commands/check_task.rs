//! `check-task`: the conformance checks every registered task must pass, on this machine.
//! Checks 1-3 are the conformance kit's (`rdbench_core::conformance`), which each task crate's
//! own tests run too; the rest need this binary's scorer.
//!
//! 1. `profiles`: the profile exists and the task describes itself consistently.
//! 2. `prepare-deterministic`: two preparations of an attempt give the same files, byte for byte.
//! 3. `attempt-folder-clean`: the attempt folder holds no link, no reference-solution file and
//!    no private path (the home, the cache).
//! 4. `cu-compiles` (kernel tasks): the starting and reference `solution.cu` compile with NVRTC
//!    for every target architecture (sm_80, sm_90).
//! 5. `start-and-reference`: both solutions are scored where this machine can (normalized
//!    about 0 and 1 when calibrated); kernel tasks without a GPU run on the CPU emulator, where
//!    both must be correct (no score there).
//! 6. `exploit:<case>`: every case of `tests/exploits/<task>/` gives its expected verdict
//!    (kind and reason), on the GPU or, for kernel tasks without one, on the emulator.
//!
//! Exit 0 when every check passed or was skipped for a stated reason, 1 when one failed.

use std::path::Path;

use rdbench_client::command::DEFAULT_PROFILE;
use rdbench_core::attempt::Attempt;
use rdbench_core::conformance::{self, fail, pass, skip, Status, Verdict};
use rdbench_core::outcome::InvalidKind;
use rdbench_core::task::{
    profile_of, Execution, ProfileInfo, ScoreOutcome, Solution, SubmissionKind, Task,
};
use rdbench_core::{Error, Result};

use super::attempt::{run_stamp, score_solution_dir_on};
use super::{checkout_dir, device_fingerprint, find_calibration, Context};
use crate::exploits::{self, Stage};
use crate::output::{self, one_line, Table};
use crate::registry;

fn check_cu(task: &dyn Task, root: &Path) -> Verdict {
    if task.info().submission != SubmissionKind::Kernel {
        return skip("not a kernel task");
    }
    if let Err(e) = rdbench_gpu::probe::require_nvrtc() {
        let detail = format!("{e} (pip install nvidia-cuda-nvrtc)");
        return if std::env::var_os("CI").is_some() {
            fail(detail)
        } else {
            skip(detail)
        };
    }
    let mut done = 0;
    for which in [Solution::Starting.as_str(), Solution::Reference.as_str()] {
        let path = root.join(which).join("solution.cu");
        for arch in rdbench_gpu::kernel_task::TARGET_ARCHS {
            let opts = rdbench_gpu::nvrtc::CompileOptions::cubin(arch);
            if let Err(e) = rdbench_gpu::nvrtc::compile_file(&path, &opts) {
                return fail(format!(
                    "{which} for sm_{arch}: {}",
                    one_line(&e.to_string(), 300)
                ));
            }
            done += 1;
        }
    }
    let archs: Vec<String> = rdbench_gpu::kernel_task::TARGET_ARCHS
        .iter()
        .map(|a| format!("sm_{a}"))
        .collect();
    pass(format!(
        "{done} compiles: start and reference for {}",
        archs.join(", ")
    ))
}

/// How this machine checks `task`: measured, else emulated (kernel tasks), or why it cannot.
fn execution_for(task: &dyn Task, profile: &ProfileInfo) -> std::result::Result<Execution, String> {
    match task.check_environment(profile, Execution::Measured) {
        Ok(()) => Ok(Execution::Measured),
        Err(cuda) if task.info().submission == SubmissionKind::Kernel => {
            match task.check_environment(profile, Execution::Emulated) {
                Ok(()) => Ok(Execution::Emulated),
                Err(emu) => Err(format!("{cuda}; {emu}")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

fn check_start_reference(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    root: &Path,
    execution: std::result::Result<Execution, String>,
) -> Verdict {
    let execution = match execution {
        Ok(b) => b,
        Err(why) => return skip(why),
    };
    let mut raws = Vec::new();
    for solution in [Solution::Starting, Solution::Reference] {
        let which = solution.as_str();
        let result = score_solution_dir_on(
            ctx,
            task,
            profile,
            &root.join(which),
            &root.join(format!("scored-{which}")),
            execution,
            None,
        )?;
        match result.outcome {
            ScoreOutcome::Valid { raw, .. } => raws.push(raw),
            ScoreOutcome::Unscored { .. } => {}
            ScoreOutcome::Invalid { kind, reason, .. } => {
                return fail(format!(
                    "the {} solution is invalid ({kind}): {}",
                    solution.as_str(),
                    one_line(&reason, 300)
                ))
            }
        }
    }
    if execution == Execution::Emulated {
        return pass(
            "both correct on the CPU emulator (correctness only: no GPU here to score them)",
        );
    }
    let info = task.info();
    let fp = device_fingerprint(&info, profile)?;
    let Some(cal) = find_calibration(ctx, task, profile, &fp)? else {
        let better = match info.direction {
            rdbench_core::task::Direction::LowerIsBetter => raws[1] < raws[0],
            rdbench_core::task::Direction::HigherIsBetter => raws[1] > raws[0],
        };
        return if better {
            pass(format!(
                "raw start {:.4}, reference {:.4} (no calibration here: only the order is checked)",
                raws[0], raws[1]
            ))
        } else {
            fail(format!(
                "the reference (raw {:.4}) is not better than the start ({:.4})",
                raws[1], raws[0]
            ))
        };
    };
    let (s, r) = (cal.normalize(raws[0]), cal.normalize(raws[1]));
    let tolerance = tolerance(&cal);
    if s.abs() <= tolerance && (r - 1.0).abs() <= tolerance {
        pass(format!("start {s:.3}, reference {r:.3} (± {tolerance:.2})"))
    } else {
        fail(format!(
            "start {s:.3} (want 0 ± {tolerance:.2}), reference {r:.3} (want 1 ± {tolerance:.2})"
        ))
    }
}

/// How far from 0 and 1 one more run of each solution may land: 0.05, or twice the
/// calibration's own run-to-run spread (largest minus smallest of its runs) in normalized units
/// where that is wider: a task scored on a couple of dozen sampled problems moves by a few
/// problems from run to run, a timed kernel by a percent, and three calibration runs see only
/// part of that.
fn tolerance(cal: &rdbench_core::calibration::CalibrationEntry) -> f64 {
    let range = (cal.reference - cal.start).abs();
    let spread = ["starting", "reference"]
        .iter()
        .filter_map(|s| cal.details[s]["raw_spread"].as_f64())
        .fold(0.0, f64::max);
    if range > 0.0 {
        (2.0 * spread / range).max(0.05)
    } else {
        0.05
    }
}

fn check_case(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    root: &Path,
    case: &exploits::Case,
    execution: &std::result::Result<Execution, String>,
) -> Verdict {
    let dir = root.join("exploits").join(&case.name);
    case.materialize(&dir, |which, d| {
        task.install_solution(which, profile, &ctx.home.cache_dir(), d)
    })?;
    // As an agent's submission: read as the client reads it, into the scorer's snapshot.
    let snapshot = root.join("exploit-snapshots").join(&case.name);
    if let Err((kind, reason)) = rdbench_attempts::snapshot_folder(&task.info(), &dir, &snapshot) {
        let outcome = ScoreOutcome::invalid(kind, reason);
        return verdict(case, &outcome, case.expect.kind, "");
    }
    let dir = snapshot;
    // Cases caught before any worker need no device; run-stage cases need one.
    let execution = match (case.expect.stage, execution) {
        (Stage::Run, Err(why)) => return skip(format!("cannot run here: {why}")),
        (_, Ok(b)) => *b,
        (_, Err(_)) => Execution::Measured,
    };
    if case.expect.stage == Stage::Run && execution == Execution::Emulated && case.needs_gpu() {
        return skip("only a GPU can catch it");
    }
    if case.expect.stage == Stage::Compile {
        if let Err(e) = rdbench_gpu::probe::require_nvrtc() {
            return skip(format!("a compile-stage case needs NVRTC: {e}"));
        }
    }
    let want = match execution {
        Execution::Emulated => case.expect.emulator_kind.or(case.expect.kind),
        Execution::Measured => case.expect.kind,
    };
    let result = score_solution_dir_on(
        ctx,
        task,
        profile,
        &dir,
        &root.join("exploit-runs").join(&case.name),
        execution,
        case.expect.timeout_s,
    );
    let result = match result {
        Ok(r) => r,
        Err(e @ Error::Environment(_)) if case.expect.stage == Stage::Run => {
            return skip(format!("environment: {e}"))
        }
        Err(e) => return Err(e),
    };
    let on = if execution == Execution::Emulated && case.expect.stage == Stage::Run {
        " (emulator)"
    } else {
        ""
    };
    verdict(case, &result.outcome, want, on)
}

/// Whether `outcome` is the verdict `case` expects: an invalid entry of kind `want` (`on`
/// names the emulator), or, with no kind wanted, a valid one of raw score at most the case's
/// `raw_at_most`.
fn verdict(
    case: &exploits::Case,
    outcome: &ScoreOutcome,
    want: Option<InvalidKind>,
    on: &str,
) -> Verdict {
    match (outcome, want) {
        (ScoreOutcome::Invalid { kind, reason, .. }, Some(want)) => {
            if *kind != want {
                return fail(format!(
                    "{kind}{on}, want {want}: {}",
                    one_line(reason, 200)
                ));
            }
            if let Some(part) = &case.expect.reason_contains {
                if !reason.to_lowercase().contains(&part.to_lowercase()) {
                    return fail(format!("reason lacks {part:?}: {}", one_line(reason, 200)));
                }
            }
            pass(format!("{kind}{on}: {}", one_line(reason, 120)))
        }
        (ScoreOutcome::Valid { raw, headline, .. }, None) => {
            let bound = case.expect.raw_at_most.unwrap_or(f64::NEG_INFINITY);
            if *raw <= bound {
                pass(format!("worthless{on}: {headline}"))
            } else if !case.expect.deterministic {
                skip(format!(
                    "not caught this time{on} (raw {raw} above {bound}); the case is marked nondeterministic"
                ))
            } else {
                fail(format!("raw {raw} above {bound}{on}: {headline}"))
            }
        }
        (ScoreOutcome::Invalid { kind, reason, .. }, None) => fail(format!(
            "{kind}{on}, want a valid entry of raw at most {}: {}",
            case.expect.raw_at_most.unwrap_or_default(),
            one_line(reason, 200)
        )),
        _ if !case.expect.deterministic => skip(format!(
            "not caught this time{on}; the case is marked nondeterministic"
        )),
        (ScoreOutcome::Valid { headline, .. } | ScoreOutcome::Unscored { headline, .. }, _) => {
            fail(format!("not caught{on}: {headline}"))
        }
    }
}

pub fn check_task(
    ctx: &Context,
    task_name: &str,
    profile: &str,
    exploits_root: Option<&Path>,
    only: &[String],
) -> Result<i32> {
    let task = registry::find(task_name)?;
    let task = task.as_ref();
    let resolved = profile_of(task, profile)?;
    let root = ctx
        .home
        .runs_dir()
        .join(format!("check-{task_name}-{profile}-{}", run_stamp()));
    let cache_dir = ctx.home.cache_dir();
    let site = conformance::Site {
        cache_dir: &cache_dir,
        root: &root,
        private_paths: vec![
            ctx.home.root().display().to_string(),
            cache_dir.display().to_string(),
        ],
    };
    let mut checks = conformance::static_checks(task, profile, &site);
    checks.push("cu-compiles", check_cu(task, &root));
    let execution = execution_for(task, &resolved);
    checks.push(
        "start-and-reference",
        check_start_reference(ctx, task, &resolved, &root, execution.clone()),
    );
    let corpus_root = exploits_root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| checkout_dir("tests/exploits"));
    let cases = exploits::load(&corpus_root, task_name)?;
    if cases.is_empty() {
        checks.push(
            "exploits",
            fail(format!(
                "no exploit corpus at {}",
                corpus_root.join(task_name).display()
            )),
        );
    }
    for case in cases
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
    {
        checks.push(
            format!("exploit:{}", case.name),
            check_case(ctx, task, &resolved, &root, case, &execution),
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let failed = checks.0.iter().filter(|c| c.status == Status::Fail).count();
    if ctx.json {
        output::json(&serde_json::json!({
            "task": task_name,
            "profile": profile,
            "passed": failed == 0,
            "checks": checks.0,
        }));
    } else {
        let mut table = Table::new(&["check", "result", "detail"]);
        for c in &checks.0 {
            table.row(vec![
                c.check.clone(),
                match c.status {
                    Status::Pass => "PASS".into(),
                    Status::Fail => "FAIL".into(),
                    Status::Skip => "skip".into(),
                },
                one_line(&c.detail, 110),
            ]);
        }
        println!("{}", table.render());
        println!(
            "{task_name} ({profile}): {} checks, {failed} failed",
            checks.0.len()
        );
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// `install-solution`: a shipped solution or an exploit case into `dir`.
pub fn install(
    ctx: &Context,
    task_name: &str,
    what: &str,
    dir: &Path,
    profile: Option<&str>,
) -> Result<i32> {
    let task = registry::find(task_name)?;
    let profile = &profile_of(
        task.as_ref(),
        &install_profile(ctx, task_name, dir, profile)?,
    )?;
    let cache = ctx.home.cache_dir();
    if let Some(case_name) = what.strip_prefix("exploit:") {
        let cases = exploits::load(&checkout_dir("tests/exploits"), task_name)?;
        let case = cases.iter().find(|c| c.name == case_name).ok_or_else(|| {
            let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            Error::Usage(format!(
                "{task_name} has no exploit case {case_name:?}; its cases are: {}",
                names.join(", ")
            ))
        })?;
        case.materialize(dir, |which, d| {
            task.install_solution(which, profile, &cache, d)
        })?;
    } else {
        let solution = Solution::from_name(what).ok_or_else(|| {
            Error::Usage(format!(
                "{what:?}: install start, reference, fastest or exploit:<case>"
            ))
        })?;
        task.install_solution(solution, profile, &cache, dir)?;
    }
    if !ctx.json {
        println!("installed {task_name} {what} in {}", dir.display());
    }
    Ok(0)
}

/// The profile `install-solution` installs for: where `dir` is an attempt's folder, the
/// attempt's (the one rule: a command given an attempt uses its profile; naming another
/// profile, or another task, is refused, since that attempt could not score what it
/// installs); else the one named, else [`DEFAULT_PROFILE`].
fn install_profile(
    ctx: &Context,
    task_name: &str,
    dir: &Path,
    named: Option<&str>,
) -> Result<String> {
    let attempt = match Attempt::open(&ctx.home, dir) {
        Ok(attempt) => attempt,
        // Not an attempt's folder (or no folder yet): a plain installation.
        Err(Error::Usage(_)) => return Ok(named.unwrap_or(DEFAULT_PROFILE).to_string()),
        Err(e) => return Err(e),
    };
    let record = &attempt.record;
    if record.task != task_name || named.is_some_and(|p| p != record.profile) {
        return Err(Error::Usage(format!(
            "{} is the folder of attempt {} ({}, profile {}): install-solution there installs \
             for {} {}, or into another folder",
            dir.display(),
            record.id,
            record.task,
            record.profile,
            record.task,
            record.profile
        )));
    }
    Ok(record.profile.clone())
}
