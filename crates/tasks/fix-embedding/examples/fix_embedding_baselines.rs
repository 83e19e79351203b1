//! Is the task trivial? Scores the two strategies an agent would try first, with the compute of
//! the task's own training runs, against the installation's held-out split:
//!
//! - `scratch`: ignore the corrupted model, train the same architecture from a fresh
//!   initialization on the attempt's `train_tokens.bin`, with the original model's schedule
//!   (same steps, batch and learning rate; only the data differs);
//! - `finetune`: keep training the corrupted model as it is (scrambled embedding included) on
//!   `train_tokens.bin`, for as many steps as the reference solution takes in total, at the
//!   reference's fine-tuning learning rate;
//! - `original`: the uncorrupted model as trained (no training here), the ceiling the gap is
//!   measured against.
//!
//! Each is reported as raw `ln(L - F)` and normalized with the calibration measured by
//! `fix_embedding_cycle` on the same cache (pass its start and reference raw scores), so a value
//! well below 1 means the reference's approach beats the obvious one.
//!
//! `cargo run --release -p rdbench-task-fix-embedding --example fix_embedding_baselines -- \
//!     PROFILE CACHE_DIR START_RAW REFERENCE_RAW [scratch] [finetune] [original]`
//!
//! CACHE_DIR must hold a finished preparation of PROFILE (run `fix_embedding_cycle` or
//! `rdbench calibrate` first); its instance (its secret) is the one scored against.

use std::time::Instant;

use rdbench_core::Error;
use rdbench_lm::{train_model, Gpt, TokenSet, TrainConfig};
use rdbench_task_fix_embedding::{evaluate, instance::Instance, prep};

fn main() -> rdbench_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fix_embedding_baselines PROFILE CACHE_DIR START_RAW REFERENCE_RAW [scratch] [finetune] [original]";
    let (Some(profile), Some(cache), Some(start), Some(reference)) = (
        args.first(),
        args.get(1).map(std::path::PathBuf::from),
        args.get(2).and_then(|s| s.parse::<f64>().ok()),
        args.get(3).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        return Err(Error::Usage(usage.into()));
    };
    let mut which: Vec<&str> = args[4..].iter().map(String::as_str).collect();
    if which.is_empty() {
        which = vec!["original", "scratch", "finetune"];
    }
    let spec = rdbench_task_fix_embedding::task().profile(profile)?;
    let inst = Instance::load(&spec, &cache)?;
    let at = prep::Prepared::locate(&cache, &spec, &inst);
    if !at.models.join("prep.json").is_file() || !at.train_tokens().is_file() {
        return Err(Error::Usage(format!(
            "{}: no finished preparation of profile {profile} here",
            at.models.display()
        )));
    }
    let lm = |e: rdbench_lm::LmError| Error::Internal(e.to_string());
    let train = TokenSet::read(&at.train_tokens(), spec.seq_len()).map_err(lm)?;
    let normalized = |raw: f64| (raw - start) / (reference - start);

    let mut rows = serde_json::Map::new();
    for name in which {
        let t = Instant::now();
        // The model to score and how to train it first (`None`: score it as it is).
        let (model, schedule): (Gpt, Option<TrainConfig>) = match name {
            "original" => (prep::load_prepared(&at.original(), &spec.model)?, None),
            "scratch" => (
                Gpt::new(spec.model.clone(), inst.model_init_seed ^ 0x5c7a).map_err(lm)?,
                Some(spec.model_train.with_seed(inst.model_train_seed ^ 0x5c7a)),
            ),
            "finetune" => (
                prep::load_prepared(&at.corrupted(), &spec.model)?,
                Some(TrainConfig {
                    steps: spec.reference.adapter.steps + spec.reference.finetune.steps,
                    ..spec.reference.finetune.clone()
                }),
            ),
            other => return Err(Error::Usage(format!("unknown baseline {other:?}; {usage}"))),
        };
        let final_train_loss = match &schedule {
            Some(tc) => Some(
                rdbench_lm::with_threads(spec.threads, || {
                    train_model(&model, &train, tc, &format!("baseline: {name}"))
                })
                .map_err(lm)?
                .final_train_loss,
            ),
            None => None,
        };
        let ev = evaluate(&spec, &inst, &model)?;
        rows.insert(
            name.into(),
            serde_json::json!({
                "steps": schedule.as_ref().map_or(0, |tc| tc.steps),
                "lr": schedule.as_ref().map(|tc| tc.lr),
                "final_train_loss": final_train_loss,
                "heldout_loss": ev.loss,
                "floor": ev.floor,
                "raw": ev.raw,
                "normalized": normalized(ev.raw),
                "seconds": t.elapsed().as_secs_f64(),
            }),
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "profile": profile,
            "calibration": { "start": start, "reference": reference },
            "baselines": rows,
        }))
        .unwrap_or_default()
    );
    Ok(())
}
