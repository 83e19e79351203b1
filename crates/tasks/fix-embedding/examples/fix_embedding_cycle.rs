//! Runs the whole cycle of one profile and prints what it measured:
//! prepare (train the original and small models, corrupt) → score the corrupted model → run the
//! reference solution → score it; plus the original (uncorrupted) model, and every score on a
//! second held-out split of the same instance to show the split is large enough.
//!
//! `cargo run --release -p rdbench-task-fix-embedding --example fix_embedding_cycle -- tiny [CACHE_DIR]`
//!
//! With no CACHE_DIR a fresh temporary cache is used (so preparation really runs).

use std::time::Instant;

use rdbench_core::task::{profile_of, PrepareRequest, ScoreOutcome, ScoreRequest, Solution, Task};
use rdbench_task_fix_embedding::{evaluate, instance::Instance, prep, SUBMISSION};

fn main() -> rdbench_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = args.first().cloned().unwrap_or_else(|| "tiny".into());
    let tmp = tempfile::tempdir().map_err(|e| rdbench_core::Error::io("/tmp", e))?;
    let cache = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("cache"));
    let task = rdbench_task_fix_embedding::task();
    let spec = task.profile(&profile)?;
    let profile = profile_of(&task, &profile)?;
    let attempt = tmp.path().join("attempt");
    let private = tmp.path().join("private");
    let whole = Instant::now();

    let t = Instant::now();
    task.prepare(&PrepareRequest {
        profile: profile.clone(),
        attempt_dir: attempt.clone(),
        private_dir: private.clone(),
        cache_dir: cache.clone(),
    })?;
    let prep_s = t.elapsed().as_secs_f64();

    let score = |dir: &std::path::Path| -> rdbench_core::Result<(f64, serde_json::Value, f64)> {
        let t = Instant::now();
        let req = ScoreRequest {
            profile: profile.clone(),
            submission_dir: dir.to_path_buf(),
            private_dir: private.clone(),
            cache_dir: cache.clone(),
            samples_path: private.join("samples.json"),
            seed: 0,
            execution: Default::default(),
        };
        match task.score(&req)? {
            ScoreOutcome::Valid { raw, details, .. } => {
                Ok((raw, details, t.elapsed().as_secs_f64()))
            }
            other => Err(rdbench_core::Error::Internal(format!(
                "not a score: {other:?}"
            ))),
        }
    };

    let start_dir = tmp.path().join("start");
    task.install_solution(Solution::Starting, &profile, &cache, &start_dir)?;
    let (start, start_d, start_s) = score(&start_dir)?;

    let t = Instant::now();
    let ref_dir = tmp.path().join("reference");
    task.install_solution(Solution::Reference, &profile, &cache, &ref_dir)?;
    let ref_train_s = t.elapsed().as_secs_f64();
    let (reference, ref_d, ref_s) = score(&ref_dir)?;
    let cycle_s = whole.elapsed().as_secs_f64();

    let inst = Instance::load(&spec, &cache)?;
    let at = prep::Prepared::locate(&cache, &spec, &inst);
    let orig_dir = tmp.path().join("original");
    std::fs::create_dir_all(&orig_dir).map_err(|e| rdbench_core::Error::io(&orig_dir, e))?;
    std::fs::copy(at.original(), orig_dir.join(SUBMISSION))
        .map_err(|e| rdbench_core::Error::io(&orig_dir, e))?;
    let (original, orig_d, _) = score(&orig_dir)?;

    // The same three models on another held-out split of the same instance.
    let other_split = Instance {
        heldout_seed: 0x005e_ed0f_0742,
        ..inst.clone()
    };
    let mut other = vec![];
    for path in [at.corrupted(), at.original(), at.reference()] {
        let m = prep::load_prepared(&path, &spec.model)?;
        other.push(evaluate(&spec, &other_split, &m)?.raw);
    }
    let small = prep::load_prepared(&at.small(), &spec.small)?;
    let small_ev = evaluate(&spec, &inst, &small)?;

    let closed = (start - reference) / (start - original);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "profile": profile.name,
            "threads": spec.threads.map(|n| n.to_string()).unwrap_or_else(|| format!("default ({})", candle_core::utils::get_num_threads())),
            "prepare_seconds": prep_s,
            "score_start_seconds": start_s,
            "reference_seconds": ref_train_s,
            "score_reference_seconds": ref_s,
            "cycle_seconds": cycle_s,
            "start": { "raw": start, "details": start_d },
            "reference": { "raw": reference, "details": ref_d },
            "original": { "raw": original, "details": orig_d },
            "small_model": { "loss": small_ev.loss, "raw": small_ev.raw },
            "gap_closed_by_reference": closed,
            "other_heldout_seed_raw": { "start": other[0], "original": other[1], "reference": other[2] },
            "normalized_on_other_seed": {
                "start": (other[0] - start) / (reference - start),
                "reference": (other[2] - start) / (reference - start),
            },
        }))
        .unwrap_or_default()
    );
    Ok(())
}
