//! `cycle`, the built-in default job: for every task, start an attempt, score the starting
//! solution, apply the reference solution, score it, and print raw and normalized scores
//! (expected about 0 and 1). Tasks this machine cannot score are skipped with the reason,
//! after the checks that need no GPU: for kernel tasks, parsing and NVRTC compilation of the
//! starting and reference solutions, and both run through the real scorer on the CPU
//! emulator (correctness only, no score).
//!
//! The text is one line per task, printed as the task finishes (a pipe gets it then too),
//! within [`WIDTH`] columns: the scores, the wall time, and what ran and what was skipped and
//! why in a few words; the raw scores' units follow the table. `--verbose` prints each task's
//! details under its line; `--json` prints every row with its details at the end.

use indicatif::{ProgressBar, ProgressStyle};
use rdbench_core::attempt::Attempt;
use rdbench_core::fsutil::hash_files;
use rdbench_core::task::{
    profile_of, Execution, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution,
    SubmissionKind, Task,
};
use rdbench_core::{Error, Result};

use super::attempt::{run_result, run_stamp, score_solution_dir, score_solution_dir_on};
use super::calibrate::calibrate_task;
use super::glance::{dedup_counted, fit, wrap, WIDTH};
use super::{device_fingerprint, find_calibration, Context};
use crate::output;
use crate::registry;

/// One task's cycle: what `--json` prints, and what its line and details are made of.
#[derive(Debug, Default, serde::Serialize)]
struct Row {
    task: String,
    profile: String,
    start_raw: Option<f64>,
    start_score: Option<f64>,
    reference_raw: Option<f64>,
    reference_score: Option<f64>,
    /// What the raw score measures, in the task's own words (its unit included).
    raw_unit: String,
    wall_s: f64,
    /// The result in a few words, as the line shows it.
    status: String,
    /// What ran besides scoring, each with its long form.
    ran: Vec<Step>,
    /// What was skipped: what, why in a few words, and the long form.
    skipped: Vec<Skip>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration: Option<String>,
    /// Why a solution scored invalid, in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct Step {
    what: String,
    detail: String,
}

#[derive(Debug, serde::Serialize)]
struct Skip {
    what: String,
    why: String,
    detail: String,
}

impl Row {
    fn new(task: &dyn Task, profile: &str) -> Self {
        let info = task.info();
        Row {
            task: info.name,
            profile: profile.into(),
            raw_unit: info.raw_score,
            ..Row::default()
        }
    }

    /// "ran A, B; skipped C (why)", from `ran` and `skipped`.
    fn ran_and_skipped(&self) -> String {
        let mut parts = Vec::new();
        if !self.ran.is_empty() {
            let names: Vec<&str> = self.ran.iter().map(|s| s.what.as_str()).collect();
            parts.push(format!("ran {}", names.join(", ")));
        }
        if !self.skipped.is_empty() {
            let names: Vec<String> = self
                .skipped
                .iter()
                .map(|s| format!("{} ({})", s.what, s.why))
                .collect();
            parts.push(format!("skipped {}", names.join(", ")));
        }
        parts.join("; ")
    }

    /// The details `--verbose` prints under the line.
    fn details(&self) -> Vec<(String, String)> {
        let mut out = vec![("raw".to_string(), self.raw_unit.clone())];
        for step in &self.ran {
            out.push((step.what.clone(), step.detail.clone()));
        }
        for skip in &self.skipped {
            out.push((format!("skipped {}", skip.what), skip.detail.clone()));
        }
        for (label, text) in [
            ("calibration", &self.calibration),
            ("invalid", &self.invalid),
            ("error", &self.error),
        ] {
            if let Some(text) = text {
                out.push((label.to_string(), text.clone()));
            }
        }
        out
    }
}

/// A reason in a few words: the kind of thing missing, else the reason's first clause.
fn few_words(reason: &str) -> String {
    if reason.contains("host C++ compiler") {
        "no C++ compiler".into()
    } else if reason.contains("no NVIDIA driver") {
        "no GPU".into()
    } else if reason.contains("NVRTC not found") {
        "not found".into()
    } else {
        fit(reason.split(": ").next().unwrap_or(reason), 28)
    }
}

/// Checks the starting and reference solutions without a GPU, into `row.ran` and
/// `row.skipped`.
fn gpu_free_checks(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    root: &std::path::Path,
    row: &mut Row,
) -> Result<()> {
    for solution in [Solution::Starting, Solution::Reference] {
        let dir = root.join(solution.as_str());
        task.install_solution(solution, profile, &ctx.home.cache_dir(), &dir)?;
        let req = ScoreRequest {
            profile: profile.clone(),
            submission_dir: dir.clone(),
            private_dir: root.join("private"),
            cache_dir: ctx.home.cache_dir(),
            samples_path: root.join("samples.json"),
            seed: 0,
            execution: Execution::Measured,
        };
        if let Some((_, reason)) = task.precheck(&req)? {
            return Err(Error::Internal(format!(
                "the {} solution fails its own checks: {reason}",
                solution.as_str()
            )));
        }
    }
    let kernel = task.info().submission == SubmissionKind::Kernel;
    row.ran.push(Step {
        what: "checks".into(),
        detail: if kernel {
            "the starting and reference solutions pass the source rules and launch-plan checks"
        } else {
            "the starting and reference solutions pass the submission checks"
        }
        .into(),
    });
    if !kernel {
        return Ok(());
    }
    let arch = rdbench_gpu::kernel_task::PRECHECK_ARCH;
    match rdbench_gpu::probe::require_nvrtc() {
        Ok(()) => row.ran.push(Step {
            what: format!("NVRTC sm_{arch}"),
            detail: format!(
                "NVRTC {} compiled both for sm_{arch}",
                rdbench_gpu::probe::nvrtc_version().unwrap_or_default()
            ),
        }),
        Err(e) => row.skipped.push(Skip {
            what: "NVRTC".into(),
            why: few_words(&e.to_string()),
            detail: format!("compile check: {e} (README: install NVRTC into .venv)"),
        }),
    }
    emulated_checks(ctx, task, profile, root, row)
}

/// Runs the starting and reference solutions through the real scorer on the CPU emulator.
fn emulated_checks(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    root: &std::path::Path,
    row: &mut Row,
) -> Result<()> {
    if let Err(e) = task.check_environment(profile, Execution::Emulated) {
        row.skipped.push(Skip {
            what: "emulator".into(),
            why: few_words(&e.to_string()),
            detail: e.to_string(),
        });
        return Ok(());
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
            Execution::Emulated,
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
    row.ran.push(Step {
        what: "emulator".into(),
        detail: format!(
            "through the real scorer on the CPU emulator: {} (correctness only, not timed)",
            done.join(", ")
        ),
    });
    Ok(())
}

fn run_task(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    bar: &ProgressBar,
) -> Result<Row> {
    let info = task.info();
    let started = std::time::Instant::now();
    let root = ctx.home.runs_dir().join(format!(
        "cycle-{}-{}-{}",
        info.name,
        profile.name,
        run_stamp()
    ));
    let mut row = Row::new(task, &profile.name);
    if let Err(env) = task.check_environment(profile, Execution::Measured) {
        bar.set_message(format!("{}: checks without a GPU", info.name));
        gpu_free_checks(ctx, task, profile, &root, &mut row)?;
        let scoring = if info.submission == SubmissionKind::Kernel {
            "timing"
        } else {
            "scoring"
        };
        row.skipped.push(Skip {
            what: scoring.into(),
            why: few_words(&env.to_string()),
            detail: env.to_string(),
        });
        row.status = row.ran_and_skipped();
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
        row.ran.push(Step {
            what: "calibration".into(),
            detail: "none was found for this device: calibrated here, 3 runs of each solution"
                .into(),
        });
    }
    let calibration = find_calibration(ctx, task, profile, &fp)?;
    let dir = root.join("attempt");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let attempt = Attempt::create(
        &ctx.home,
        &info.name,
        &profile.name,
        "rdbench-cycle",
        &dir,
        None,
    )?;
    bar.set_message(format!("{}: preparing the attempt", info.name));
    task.prepare(&PrepareRequest {
        profile: profile.clone(),
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
        let entry = rdbench_attempts::entry_for(
            &info,
            &profile.name,
            &run_result(result.clone()),
            calibration.as_ref(),
            Some(fp.id()),
            sha,
            None,
        );
        log.append(&entry)?;
        if !entry.valid {
            let kind = entry.kind.map(|k| k.to_string()).unwrap_or_default();
            row.status = format!("the {} solution scored invalid ({kind})", solution.as_str());
            row.invalid = Some(entry.reason.unwrap_or_default());
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
    row.ran.push(Step {
        what: "scoring".into(),
        detail: format!("both solutions scored in {}", attempt.record.dir.display()),
    });
    match &calibration {
        Some(c) => row.calibration = Some(c.provenance.clone()),
        None => row.skipped.push(Skip {
            what: "normalizing".into(),
            why: "no calibration".into(),
            detail: "no calibration for this device: raw scores only (`rdbench calibrate`)".into(),
        }),
    }
    let calibrated_now = row.ran.iter().any(|s| s.what == "calibration");
    row.status = match (calibrated_now, calibration.is_some()) {
        (_, false) => "scored, raw only: no calibration here".into(),
        (true, true) => "scored, after calibrating here (3 runs each)".into(),
        (false, true) => "scored".into(),
    };
    row.wall_s = started.elapsed().as_secs_f64();
    Ok(row)
}

/// The text form: fixed columns (known before the first task ends, so each line can be
/// printed as its task finishes) and the result in the columns left of [`WIDTH`].
struct Lines {
    name_width: usize,
}

impl Lines {
    const RAW_WIDTH: usize = 17;

    fn columns(&self, task: &str, start: &str, reference: &str, raw: &str, wall: &str) -> String {
        format!(
            "{task:<nw$}  {start:>5}  {reference:>5}  {raw:<rw$}  {wall:>6}  ",
            nw = self.name_width,
            rw = Self::RAW_WIDTH
        )
    }

    fn header(&self) -> String {
        self.columns("task", "start", "ref", "raw start → ref", "wall") + "result"
    }

    fn line(&self, row: &Row) -> String {
        let score = |s: Option<f64>| match s {
            Some(v) if v.is_finite() => format!("{:.2}", v + 0.0),
            Some(_) => "NaN".into(),
            None => "-".into(),
        };
        let raw = match (row.start_raw, row.reference_raw) {
            (Some(s), Some(r)) => format!("{s:.3} → {r:.3}"),
            (Some(s), None) => format!("{s:.3} → -"),
            _ => "-".into(),
        };
        let columns = self.columns(
            &row.task,
            &score(row.start_score),
            &score(row.reference_score),
            &raw,
            &format!("{:.1}s", row.wall_s),
        );
        let room = WIDTH.saturating_sub(columns.chars().count()).max(20);
        columns + &fit(&row.status, room)
    }

    /// The units of the raw scores shown, one line per distinct unit.
    fn units(rows: &[Row]) -> Vec<String> {
        let shown = rows.iter().filter(|r| r.start_raw.is_some());
        let units = dedup_counted(shown.clone().map(|r| r.raw_unit.as_str()));
        let mut lines = Vec::new();
        for (unit, _) in units {
            let tasks: Vec<&str> = shown
                .clone()
                .filter(|r| r.raw_unit == unit)
                .map(|r| r.task.as_str())
                .collect();
            lines.extend(wrap(
                &format!("  {}: ", tasks.join(", ")),
                "      ",
                unit,
                WIDTH,
            ));
        }
        lines
    }
}

pub fn cycle(ctx: &Context, tasks: &[String], profile: &str, verbose: bool) -> Result<i32> {
    let selected: Vec<Box<dyn Task>> = if tasks.is_empty() {
        registry::all()
    } else {
        tasks
            .iter()
            .map(|t| registry::find(t))
            .collect::<Result<_>>()?
    };
    // Each task's profile, looked up once, before anything runs.
    let resolved: Vec<ProfileInfo> = selected
        .iter()
        .map(|t| profile_of(t.as_ref(), profile))
        .collect::<Result<_>>()?;
    let bar = ProgressBar::new((selected.len() * 2) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {pos}/{len} scores  {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    if ctx.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let lines = Lines {
        name_width: selected
            .iter()
            .map(|t| t.info().name.chars().count())
            .max()
            .unwrap_or(0)
            .max(4),
    };
    // Printed through the bar, so its spinner never garbles a line.
    let say = |text: &str| {
        if !ctx.json {
            bar.suspend(|| println!("{text}"));
        }
    };
    say(&format!(
        "rdbench cycle: {} task{}, profile {profile}; a line each as it finishes",
        selected.len(),
        if selected.len() == 1 { "" } else { "s" }
    ));
    say(&lines.header());
    let mut rows = Vec::new();
    let mut failed = false;
    for (task, resolved) in selected.iter().zip(&resolved) {
        let row = match run_task(ctx, task.as_ref(), resolved, &bar) {
            Ok(row) => row,
            Err(e) => {
                failed = true;
                let mut row = Row::new(task.as_ref(), profile);
                row.status = format!("error: {e}");
                row.error = Some(e.to_string());
                row
            }
        };
        say(&lines.line(&row));
        if verbose {
            for (label, text) in row.details() {
                for line in wrap(&format!("    {label}: "), "        ", &text, WIDTH) {
                    say(&line);
                }
            }
        }
        rows.push(row);
    }
    bar.finish_and_clear();
    if ctx.json {
        output::json(&rows);
        return Ok(if failed { 3 } else { 0 });
    }
    say("start, ref: normalized scores (starting solution 0, reference 1; expected about 0 and 1)");
    let units = Lines::units(&rows);
    if !verbose && !units.is_empty() {
        say("raw, in each task's unit:");
        for line in units {
            say(&line);
        }
    }
    if !verbose {
        say("details: --verbose or --json");
    }
    Ok(if failed { 3 } else { 0 })
}
