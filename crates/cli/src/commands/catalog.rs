//! `list` and `info`.

use rdbench_core::task::ProfileInfo;
use rdbench_core::Result;

use super::{device_fingerprint, find_calibration, Caller, Context};
use crate::output::Table;
use crate::registry;

/// Widest line `list` prints: the table fits a terminal beside an editor; `info` has the
/// rest (raw score, profiles in full, calibrations).
pub const LIST_WIDTH: usize = 100;

pub fn list(ctx: &Context) -> Result<i32> {
    let infos: Vec<_> = registry::all().iter().map(|t| t.info()).collect();
    if ctx.json {
        ctx.out.json(&infos);
        return Ok(0);
    }
    let mut table = Table::new(&["task", "profiles: where they run", "title"]);
    for i in &infos {
        table.row(vec![
            i.name.clone(),
            profile_devices(&i.profiles),
            i.title.clone(),
        ]);
    }
    say!(ctx, "{}", table.render_within(LIST_WIDTH));
    say!(
        ctx,
        "(`rdbench info TASK`: the raw score, each profile's size and its calibration here)"
    );
    Ok(0)
}

/// Each profile and the device it is scored on, runs of profiles on the same device
/// together: `tiny, full: GPU`, `tiny: CPU; full: GPU`.
fn profile_devices(profiles: &[ProfileInfo]) -> String {
    let mut groups: Vec<(bool, Vec<&str>)> = Vec::new();
    for p in profiles {
        match groups.last_mut() {
            Some((gpu, names)) if *gpu == p.needs_gpu => names.push(&p.name),
            _ => groups.push((p.needs_gpu, vec![&p.name])),
        }
    }
    groups
        .iter()
        .map(|(gpu, names)| format!("{}: {}", names.join(", "), if *gpu { "GPU" } else { "CPU" }))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn info(ctx: &Context, name: &str) -> Result<i32> {
    let task = registry::find(name)?;
    let info = task.info();
    let mut calibrations = Vec::new();
    // An agent is told whether a calibration exists and, where scores are shown, its two
    // anchors; never where it came from (provenance names the scorer's files and, for a
    // hidden-score task, could carry the answer) and never a hidden task's anchors.
    let for_agent = matches!(ctx.caller, Caller::Agent { .. });
    for p in &info.profiles {
        let found = match device_fingerprint(&info, p) {
            Ok(fp) => find_calibration(ctx, task.as_ref(), p, &fp)?.map(|c| (fp.id(), c)),
            Err(_) => None,
        };
        let found = found.map(|(dev, mut c)| {
            if for_agent {
                c.provenance = "not shown to agents".into();
                c.details = serde_json::Value::Null;
                if info.score_hidden {
                    (c.start, c.reference) = (f64::NAN, f64::NAN);
                }
            }
            (dev, c)
        });
        calibrations.push((p.name.clone(), found));
    }
    if ctx.json {
        let cal: Vec<_> = calibrations
            .iter()
            .map(|(p, c)| serde_json::json!({ "profile": p, "device": c.as_ref().map(|x| &x.0), "calibration": c.as_ref().map(|x| &x.1) }))
            .collect();
        ctx.out
            .json(&serde_json::json!({ "task": info, "calibrations": cal }));
        return Ok(0);
    }
    say!(ctx, "{} — {}\n\n{}\n", info.name, info.title, info.summary);
    say!(
        ctx,
        "raw score:    {} ({:?})",
        info.raw_score,
        info.direction
    );
    say!(
        ctx,
        "submission:   {:?}: {}",
        info.submission,
        info.submission_files
            .iter()
            .map(|f| format!("{} (at most {} bytes)", f.name, f.max_bytes))
            .collect::<Vec<_>>()
            .join(", ")
    );
    say!(
        ctx,
        "time limit:   {} min per attempt (default); scoring limit {} s",
        info.default_time_limit_minutes,
        info.score_timeout_s
    );
    say!(
        ctx,
        "score shown:  {}",
        if info.score_hidden {
            "no (the last entry counts)"
        } else {
            "yes (the best entry counts)"
        }
    );
    for p in &info.profiles {
        say!(
            ctx,
            "profile {:<5}  {}{}",
            p.name,
            p.description,
            if p.needs_gpu { " [NVIDIA GPU]" } else { "" }
        );
    }
    for (profile, c) in &calibrations {
        match c {
            Some((dev, c)) if c.start.is_nan() => say!(ctx, "calibration {profile}: present on {dev} (a hidden-score task's anchors are not shown)"),
            Some((dev, c)) => say!(ctx, "calibration {profile}: start {:.4}, reference {:.4} on {dev} ({})", c.start, c.reference, c.provenance),
            None => say!(ctx, "calibration {profile}: none for this machine (run `rdbench calibrate --task {} --profile {profile}`)", info.name),
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_on_one_device_are_grouped() {
        let p = |name: &str, needs_gpu| ProfileInfo {
            name: name.into(),
            description: String::new(),
            needs_gpu,
        };
        assert_eq!(
            profile_devices(&[p("tiny", true), p("full", true)]),
            "tiny, full: GPU"
        );
        assert_eq!(
            profile_devices(&[p("tiny", false), p("full", true)]),
            "tiny: CPU; full: GPU"
        );
    }
}
