//! `calibrate`: score the starting and the reference solution of each task on this device,
//! each `runs` times in separate worker processes, and store the medians under the device's
//! fingerprint.

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use rdbench_core::calibration::CalibrationEntry;
use rdbench_core::task::{Execution, ProfileInfo, ScoreOutcome, Solution, Task};
use rdbench_core::{Error, Result};

use super::attempt::{run_stamp, score_solution_dir};
use super::{device_fingerprint, Context};
use crate::output::{self, num, Table};
use crate::registry;

/// Median of a non-empty list of raw scores.
fn median(xs: &[f64]) -> f64 {
    rdbench_gpu::timing::stats(xs).map_or(f64::NAN, |s| s.median_ms)
}

/// Measures one task profile; returns the entry it stored.
pub fn calibrate_task(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    runs: usize,
    bar: &ProgressBar,
) -> Result<CalibrationEntry> {
    let info = task.info();
    let fp = device_fingerprint(&info, profile)?;
    let name = &profile.name;
    let root = ctx
        .home
        .runs_dir()
        .join(format!("calibrate-{}-{name}-{}", info.name, run_stamp()));
    let mut raws: Vec<(Solution, Vec<f64>)> = Vec::new();
    let mut details = serde_json::Map::new();
    for solution in [Solution::Starting, Solution::Reference] {
        let dir = root.join(solution.as_str());
        bar.set_message(format!(
            "{} {name}: installing the {} solution",
            info.name,
            solution.as_str()
        ));
        task.install_solution(
            solution,
            profile,
            &ctx.home.cache_dir(),
            &dir.join("submission"),
        )?;
        let mut values = Vec::new();
        let mut run_details = Vec::new();
        for i in 0..runs {
            bar.set_message(format!(
                "{} {name}: {} solution, run {}/{runs}",
                info.name,
                solution.as_str(),
                i + 1
            ));
            let result = score_solution_dir(ctx, task, profile, &dir.join("submission"), &dir)?;
            match result.outcome {
                ScoreOutcome::Valid { raw, details, .. } if raw.is_finite() => {
                    values.push(raw);
                    run_details.push(serde_json::json!({ "raw": raw, "wall_s": result.wall_s, "details": details }));
                }
                ScoreOutcome::Valid { raw, .. } => {
                    return Err(Error::Internal(format!("the {} solution of {} gave a non-finite raw score {raw}", solution.as_str(), info.name)))
                }
                ScoreOutcome::Invalid { reason, .. } => {
                    return Err(Error::Internal(format!(
                        "the {} solution of {} scored invalid on this device, so no calibration was stored: {reason}",
                        solution.as_str(),
                        info.name
                    )))
                }
                ScoreOutcome::Unscored { headline, .. } => {
                    return Err(Error::Internal(format!(
                        "the {} solution of {} was not measured ({headline}), so no calibration was stored",
                        solution.as_str(),
                        info.name
                    )))
                }
            }
            bar.inc(1);
        }
        let spread = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - values.iter().cloned().fold(f64::INFINITY, f64::min);
        details.insert(
            solution.as_str().into(),
            serde_json::json!({ "median_raw": median(&values), "raw_spread": spread, "runs": run_details }),
        );
        raws.push((solution, values));
    }
    let start = median(&raws[0].1);
    let reference = median(&raws[1].1);
    if start == reference {
        return Err(Error::Internal(format!(
            "{}: starting and reference solutions scored the same ({start}); cannot normalize",
            info.name
        )));
    }
    bar.set_message(format!("{} {name}: CPU baseline", info.name));
    if let Some(base) = task.cpu_baseline(profile)? {
        let value = serde_json::to_value(&base).map_err(|e| Error::Internal(e.to_string()))?;
        details.insert(rdbench_core::calibration::CPU_BASELINE_KEY.into(), value);
    }
    let entry = CalibrationEntry {
        task: info.name.clone(),
        profile: name.clone(),
        start,
        reference,
        measured_at: Utc::now(),
        provenance: format!(
            "rdbench {} calibrate: median of {runs} separate-process runs per solution on {}",
            env!("CARGO_PKG_VERSION"),
            fp.name
        ),
        details: serde_json::Value::Object(details),
    };
    ctx.calibration_store().record(&fp, entry.clone())?;
    Ok(entry)
}

pub fn calibrate(ctx: &Context, tasks: &[String], profile: &str, runs: usize) -> Result<i32> {
    if runs == 0 {
        return Err(Error::Usage("--runs must be at least 1".into()));
    }
    let explicit = !tasks.is_empty();
    let selected: Vec<Box<dyn Task>> = if explicit {
        tasks
            .iter()
            .map(|t| registry::find(t))
            .collect::<Result<_>>()?
    } else {
        registry::all()
    };
    let mut results = Vec::new();
    let mut runnable = Vec::new();
    for task in selected {
        let info = task.info();
        let resolved = info.profile(profile)?.clone();
        match task.check_environment(&resolved, Execution::Measured) {
            Ok(()) => runnable.push((task, resolved)),
            Err(e) if explicit => return Err(e),
            Err(e) => {
                results.push(serde_json::json!({ "task": info.name, "skipped": e.to_string() }))
            }
        }
    }
    let bar = ProgressBar::new((runnable.len() * runs * 2) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} scoring runs, {elapsed} {msg}")
            .expect("valid template"),
    );
    if ctx.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    for (task, resolved) in &runnable {
        let info = task.info();
        let entry = calibrate_task(ctx, task.as_ref(), resolved, runs, &bar)?;
        results.push(serde_json::json!({ "task": info.name, "calibration": entry }));
    }
    bar.finish_and_clear();
    if ctx.json {
        output::json(&results);
        return Ok(0);
    }
    let mut table = Table::new(&["task", "profile", "start raw", "reference raw", "note"]);
    for r in &results {
        let task = r["task"].as_str().unwrap_or_default().to_string();
        if let Some(skip) = r.get("skipped") {
            table.row(vec![
                task,
                profile.into(),
                "-".into(),
                "-".into(),
                format!("skipped: {}", skip.as_str().unwrap_or_default()),
            ]);
        } else {
            let c = &r["calibration"];
            table.row(vec![
                task,
                profile.into(),
                num(c["start"].as_f64()),
                num(c["reference"].as_f64()),
                format!("stored ({runs} runs each)"),
            ]);
        }
    }
    println!("{}", table.render());
    Ok(0)
}
