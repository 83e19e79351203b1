//! How much does the instance (the installation's secret) move the scores, and what do the
//! cross-installation cheats get? Prepares `N` installations of a profile, each in its own cache
//! with its own secret from OS randomness, runs the reference in each, and prints:
//!
//! - per installation: the floor and the raw scores of the start, the reference, the original;
//!   the spread of start and reference over installations, and each installation's start and
//!   reference normalized with the mean calibration and with the shipped one (if any);
//! - on installation 0: the original and the reference of every other installation (cheat (b):
//!   build your own installation and submit its models), normalized with installation 0's own
//!   start and reference;
//! - on installation 0: the original of an installation that shares installation 0's HMM but
//!   nothing else (what cheat (b) would get if the data distribution were public);
//! - on installation 0: the corrupted model "uncorrupted" with the permutation seed that the
//!   tiny profile published before the instance was secret (cheat (a)), and the original under
//!   a few other random permutations (how far a random permutation is from the start).
//!
//! `cargo run --release -p rdbench-task-fix-embedding --example fix_embedding_instances -- tiny 6`

use std::path::Path;
use std::time::Instant;

use rdbench_core::Error;
use rdbench_lm::Gpt;
use rdbench_task_fix_embedding::instance::Instance;
use rdbench_task_fix_embedding::profile::Spec;
use rdbench_task_fix_embedding::{evaluate, prep};
use serde_json::json;

/// The permutation seed tiny published in its spec before the instance was secret.
const OLD_TINY_PERMUTATION_SEED: u64 = 0x7155_0008;

struct Installation {
    inst: Instance,
    original: Gpt,
    corrupted: Gpt,
    reference: Gpt,
    json: serde_json::Value,
    start: f64,
    reference_raw: f64,
}

fn install(spec: &Spec, inst: Instance, cache: &Path) -> rdbench_core::Result<Installation> {
    let t = Instant::now();
    let at = prep::prepare_instance(spec, &inst, cache)?;
    let prep_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reference =
        prep::load_prepared(&prep::reference_instance(spec, &inst, cache)?, &spec.model)?;
    let ref_s = t.elapsed().as_secs_f64();
    let original = prep::load_prepared(&at.original(), &spec.model)?;
    let corrupted = prep::load_prepared(&at.corrupted(), &spec.model)?;
    let (s, r, o) = (
        evaluate(spec, &inst, &corrupted)?,
        evaluate(spec, &inst, &reference)?,
        evaluate(spec, &inst, &original)?,
    );
    Ok(Installation {
        json: json!({
            "instance": inst.id(),
            "floor": s.floor,
            "start": s.raw,
            "reference": r.raw,
            "original": o.raw,
            "gap_closed": (s.raw - r.raw) / (s.raw - o.raw),
            "losses": { "start": s.loss, "reference": r.loss, "original": o.loss },
            "prepare_seconds": prep_s,
            "reference_seconds": ref_s,
        }),
        start: s.raw,
        reference_raw: r.raw,
        inst,
        original,
        corrupted,
        reference,
    })
}

fn stats(v: &[f64]) -> serde_json::Value {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    json!({ "mean": mean, "sd": sd, "min": min, "max": max })
}

fn main() -> rdbench_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = args.first().cloned().unwrap_or_else(|| "tiny".into());
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4).max(2);
    let task = rdbench_task_fix_embedding::task();
    let spec = task.profile(&profile)?;
    let tmp = tempfile::tempdir().map_err(|e| Error::io("/tmp", e))?;

    let mut all = vec![];
    for k in 0..n {
        let cache = tmp.path().join(format!("install-{k}"));
        all.push(install(&spec, Instance::load(&spec, &cache)?, &cache)?);
        eprintln!("installation {k}: {}", all[k].json);
    }
    let starts: Vec<f64> = all.iter().map(|i| i.start).collect();
    let refs: Vec<f64> = all.iter().map(|i| i.reference_raw).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ms, mr) = (mean(&starts), mean(&refs));
    let norm_with = |s: f64, r: f64| {
        all.iter()
            .map(|i| json!([(i.start - s) / (r - s), (i.reference_raw - s) / (r - s)]))
            .collect::<Vec<_>>()
    };
    let shipped = rdbench_core::task::Task::shipped_calibration(
        &task,
        &rdbench_core::task::profile_of(&task, &profile)?,
    );

    // Cheats, all scored on installation 0 and normalized with its own start and reference.
    let home = &all[0];
    let norm0 = |m: &Gpt| -> rdbench_core::Result<f64> {
        let raw = evaluate(&spec, &home.inst, m)?.raw;
        Ok((raw - home.start) / (home.reference_raw - home.start))
    };
    let mut foreign = vec![];
    for other in &all[1..] {
        foreign.push(json!({
            "original": norm0(&other.original)?,
            "reference": norm0(&other.reference)?,
        }));
    }
    let shared_hmm = Instance {
        hmm: home.inst.hmm.clone(),
        ..all[1].inst.clone()
    };
    let public_hmm = install(&spec, shared_hmm, &tmp.path().join("shared-hmm"))?;
    let old_seed = prep::uncorrupt(&home.corrupted, OLD_TINY_PERMUTATION_SEED)?;
    let mut random_perms = vec![];
    for seed in 1..=5u64 {
        random_perms.push(norm0(&prep::corrupt(&home.original, seed)?)?);
    }

    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "profile": profile,
            "installations": all.iter().map(|i| i.json.clone()).collect::<Vec<_>>(),
            "start_raw": stats(&starts),
            "reference_raw": stats(&refs),
            "normalized_with_mean_calibration": { "start": ms, "reference": mr, "per_installation_start_reference": norm_with(ms, mr) },
            "normalized_with_shipped_calibration": shipped.map(|c| json!({
                "start": c.start, "reference": c.reference,
                "per_installation_start_reference": norm_with(c.start, c.reference),
            })),
            "on_installation_0": {
                "other_installations_models": foreign,
                "original_of_an_installation_sharing_the_hmm": norm0(&public_hmm.original)?,
                "reference_of_an_installation_sharing_the_hmm": norm0(&public_hmm.reference)?,
                "uncorrupted_with_old_public_seed": if profile == "tiny" { json!(norm0(&old_seed)?) } else { json!(null) },
                "original_under_random_permutations": random_perms,
            },
        }))
        .unwrap_or_default()
    );
    Ok(())
}
