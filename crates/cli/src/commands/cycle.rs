//! `cycle`, the built-in default job: for every task, start an attempt, score the starting
//! solution, apply the reference solution, score it, and print raw and normalized scores
//! (expected about 0 and 1). Tasks this machine cannot score are skipped with the reason,
//! after the checks that need no GPU: for kernel tasks, parsing and NVRTC compilation of the
//! starting and reference solutions, and both run through the real scorer on the CPU
//! emulator (correctness only, no score).

use indicatif::{ProgressBar, ProgressStyle};
use rdbench_core::attempt::Attempt;
use rdbench_core::fsutil::hash_files;
use rdbench_core::task::{
    Backend, PrepareRequest, ScoreOutcome, ScoreRequest, Solution, SubmissionKind, Task,
};
use rdbench_core::{Error, Result};

use super::attempt::{entry_for, run_stamp, score_solution_dir, score_solution_dir_on};
use super::calibrate::calibrate_task;
use super::{device_fingerprint, find_calibration, Context};
use crate::output::{self, num, one_line, Table};
use crate::registry;

#[derive(Debug, Default, serde::Serialize)]
struct Row {
    task: String,
    profile: String,
    start_raw: Option<f64>,
    start_score: Option<f64>,
    reference_raw: Option<f64>,
    reference_score: Option<f64>,
    wall_s: f64,
    status: String,
    /// The long form of the status: what was skipped and why, what was checked instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// Checks the starting and reference solutions without a GPU.
fn gpu_free_checks(
    ctx: &Context,
    task: &dyn Task,
    profile: &str,
    root: &std::path::Path,
) -> Result<String> {
    let mut notes = Vec::new();
    for solution in [Solution::Starting, Solution::Reference] {
        let dir = root.join(solution.as_str());
        task.install_solution(solution, profile, &ctx.home.cache_dir(), &dir)?;
        let req = ScoreRequest {
            profile: profile.into(),
            submission_dir: dir.clone(),
            private_dir: root.join("private"),
            cache_dir: ctx.home.cache_dir(),
            samples_path: root.join("samples.json"),
            seed: 0,
            backend: Backend::Cuda,
        };
        match task.precheck(&req)? {
            None => notes.push(format!("{} ok", solution.as_str())),
            Some((_, reason)) => {
                return Err(Error::Internal(format!(
                    "the {} solution fails its own checks: {reason}",
                    solution.as_str()
                )))
            }
        }
    }
    let compiler = match rdbench_gpu::probe::require_nvrtc() {
        Ok(()) => format!(
            "NVRTC {} compiled them for sm_{}",
            rdbench_gpu::probe::nvrtc_version().unwrap_or_default(),
            rdbench_gpu::kernel_task::PRECHECK_ARCH
        ),
        Err(_) => "NVRTC not found, compile check skipped (pip install nvidia-cuda-nvrtc)".into(),
    };
    let emulated = if task.info().submission == SubmissionKind::Kernel {
        format!("; {}", emulated_checks(ctx, task, profile, root)?)
    } else {
        String::new()
    };
    Ok(format!(
        "GPU-free checks passed ({}; {compiler}{emulated})",
        notes.join(", ")
    ))
}

/// Runs the starting and reference solutions through the real scorer on the CPU emulator.
fn emulated_checks(
    ctx: &Context,
    task: &dyn Task,
    profile: &str,
    root: &std::path::Path,
) -> Result<String> {
    if let Err(e) = task.check_environment(profile, Backend::Emulator) {
        return Ok(format!("emulator skipped: {e}"));
    }
    let mut done = Vec::new();
    for solution in [Solution::Starting, Solution::Reference] {
        let dir = root.join(solution.as_str());
        let result = score_solution_dir_on(
            ctx,
            task,
            profile,
            &dir,
            &root.join(format!("emulated-{}", solution.as_str())),
            Backend::Emulator,
            None,
        )?;
        match result.outcome {
            ScoreOutcome::Unscored { .. } => done.push(format!(
                "{} correct ({:.0} s)",
                solution.as_str(),
                result.wall_s
            )),
            ScoreOutcome::Invalid { kind, reason, .. } => {
                return Err(Error::Internal(format!(
                    "the {} solution is invalid on the CPU emulator ({kind}): {reason}",
                    solution.as_str()
                )))
            }
            ScoreOutcome::Valid { .. } => {
                return Err(Error::Internal("the emulator produced a score".into()))
            }
        }
    }
    Ok(format!(
        "on the CPU emulator, through the real scorer: {} (emulated: correctness only, not timed)",
        done.join(", ")
    ))
}

fn run_task(ctx: &Context, task: &dyn Task, profile: &str, bar: &ProgressBar) -> Result<Row> {
    let info = task.info();
    let started = std::time::Instant::now();
    let root = ctx
        .home
        .runs_dir()
        .join(format!("cycle-{}-{profile}-{}", info.name, run_stamp()));
    let mut row = Row {
        task: info.name.clone(),
        profile: profile.into(),
        ..Row::default()
    };
    if let Err(env) = task.check_environment(profile, Backend::Cuda) {
        bar.set_message(format!("{}: checks without a GPU", info.name));
        let checks = gpu_free_checks(ctx, task, profile, &root)?;
        row.status = if env.to_string().contains("no NVIDIA driver") {
            "skipped scoring: no NVIDIA GPU here".into()
        } else {
            "skipped scoring: environment".into()
        };
        row.note = Some(format!("{env}. {checks}"));
        row.wall_s = started.elapsed().as_secs_f64();
        return Ok(row);
    }
    let fp = device_fingerprint(&info, profile)?;
    if find_calibration(ctx, task, profile, &fp)?.is_none() {
        bar.set_message(format!(
            "{}: no calibration here yet, calibrating (3 runs each)",
            info.name
        ));
        calibrate_task(ctx, task, profile, 3, bar)?;
    }
    let calibration = find_calibration(ctx, task, profile, &fp)?;
    let dir = root.join("attempt");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let attempt = Attempt::create(&ctx.home, &info.name, profile, "rdbench-cycle", &dir, None)?;
    bar.set_message(format!("{}: preparing the attempt", info.name));
    task.prepare(&PrepareRequest {
        profile: profile.into(),
        attempt_dir: attempt.record.dir.clone(),
        private_dir: attempt.task_private_dir(),
        cache_dir: ctx.home.cache_dir(),
    })?;
    let log = attempt.score_log();
    for solution in [Solution::Starting, Solution::Reference] {
        if solution == Solution::Reference {
            bar.set_message(format!("{}: applying the reference solution", info.name));
            task.install_solution(
                solution,
                profile,
                &ctx.home.cache_dir(),
                &attempt.record.dir,
            )?;
        }
        bar.set_message(format!(
            "{}: scoring the {} solution",
            info.name,
            solution.as_str()
        ));
        let sha = hash_files(&attempt.record.dir, &info.submission_names());
        let result = score_solution_dir(
            ctx,
            task,
            profile,
            &attempt.record.dir,
            &attempt.private_dir,
        )?;
        let entry = entry_for(
            &info,
            profile,
            &result,
            calibration.as_ref(),
            Some(fp.id()),
            sha,
            None,
        );
        log.append(&entry)?;
        if !entry.valid {
            row.status = format!(
                "the {} solution scored invalid: {}",
                solution.as_str(),
                one_line(entry.reason.as_deref().unwrap_or(""), 200)
            );
            row.wall_s = started.elapsed().as_secs_f64();
            return Ok(row);
        }
        match solution {
            Solution::Starting => (row.start_raw, row.start_score) = (entry.raw, entry.normalized),
            Solution::Reference | Solution::Fastest => {
                (row.reference_raw, row.reference_score) = (entry.raw, entry.normalized)
            }
        }
        bar.inc(1);
    }
    row.status = match &calibration {
        Some(c) => format!("scored; calibration: {}", one_line(&c.provenance, 80)),
        None => "scored; no calibration, raw scores only".into(),
    };
    row.wall_s = started.elapsed().as_secs_f64();
    Ok(row)
}

pub fn cycle(ctx: &Context, tasks: &[String], profile: &str) -> Result<i32> {
    let selected: Vec<Box<dyn Task>> = if tasks.is_empty() {
        registry::all()
    } else {
        tasks
            .iter()
            .map(|t| registry::find(t))
            .collect::<Result<_>>()?
    };
    for t in &selected {
        t.info().profile(profile)?;
    }
    let bar = ProgressBar::new((selected.len() * 2) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {pos}/{len} scores  {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    if ctx.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for task in &selected {
        match run_task(ctx, task.as_ref(), profile, &bar) {
            Ok(row) => rows.push(row),
            Err(e) => {
                failed = true;
                rows.push(Row {
                    task: task.info().name,
                    profile: profile.into(),
                    status: "error".into(),
                    note: Some(e.to_string()),
                    ..Row::default()
                });
            }
        }
    }
    bar.finish_and_clear();
    if ctx.json {
        output::json(&rows);
    } else {
        let mut table = Table::new(&[
            "task",
            "profile",
            "start raw",
            "start score",
            "ref raw",
            "ref score",
            "wall s",
            "status",
        ]);
        for r in &rows {
            table.row(vec![
                r.task.clone(),
                r.profile.clone(),
                num(r.start_raw),
                num(r.start_score),
                num(r.reference_raw),
                num(r.reference_score),
                format!("{:.1}", r.wall_s),
                r.status.clone(),
            ]);
        }
        println!("{}", table.render());
        for r in rows.iter().filter(|r| r.note.is_some()) {
            println!("\n{}: {}", r.task, r.note.as_deref().unwrap_or_default());
        }
        println!("\nNormalized scores put the starting solution at 0 and the reference at 1 (expected: about 0 and 1).");
    }
    Ok(if failed { 3 } else { 0 })
}
