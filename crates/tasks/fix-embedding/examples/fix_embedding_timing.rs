//! Measures a profile's scoring time and its preparation's training speed without running the
//! whole preparation (which takes half an hour for `full` on 2 cores):
//!
//! - scoring: load a model file with every check, make the held-out split, compute its exact
//!   floor, evaluate (a freshly initialized model costs exactly what a trained one does);
//! - preparation: time `STEPS` training steps of the original and of the small model, and
//!   extrapolate to the profile's step counts (plus corpus sampling, measured in full).
//!
//! `cargo run --release -p rdbench-task-fix-embedding --example fix_embedding_timing -- full [STEPS]`

use std::time::Instant;

use rdbench_lm::{io::load_model, save_model, train_model, Gpt, TokenSet, TrainConfig};
use rdbench_task_fix_embedding::instance::{Instance, Secret};
use rdbench_task_fix_embedding::{evaluate, prep, profile};

fn main() -> rdbench_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().cloned().unwrap_or_else(|| "full".into());
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let spec = profile::by_name(&name).expect("profile");
    let err = |e: rdbench_lm::LmError| rdbench_core::Error::Internal(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| rdbench_core::Error::io("/tmp", e))?;
    // Any instance costs the same; this one is made from a fixed secret.
    let inst = Instance::derive(&spec, &Secret::from_bytes([7; 32]));

    // Scoring.
    let model = Gpt::new(spec.model.clone(), 1).map_err(err)?;
    let path = dir.path().join("fixed_model.safetensors");
    save_model(&model, &path).map_err(err)?;
    let t = Instant::now();
    let loaded =
        load_model(&path, &spec.model).map_err(|e| rdbench_core::Error::Internal(e.to_string()))?;
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (_, floor) = prep::heldout(&spec, &inst)?;
    let heldout_s = t.elapsed().as_secs_f64();
    let ev = evaluate(&spec, &inst, &loaded)?;
    let score_s = load_s + ev.seconds;

    // Preparation.
    let t = Instant::now();
    let hmm = prep::hmm(&inst)?;
    let private = TokenSet::new(
        hmm.sample(
            inst.private_corpus_seed,
            spec.private_corpus_seqs,
            spec.seq_len(),
        ),
        spec.seq_len(),
    )
    .map_err(err)?;
    let _train = hmm.sample(
        inst.train_corpus_seed,
        spec.train_corpus_seqs,
        spec.seq_len(),
    );
    let sample_s = t.elapsed().as_secs_f64();
    let time_steps =
        |cfg: &rdbench_lm::GptConfig, sched: &profile::Schedule| -> rdbench_core::Result<f64> {
            let m = Gpt::new(cfg.clone(), 2).map_err(err)?;
            let tc = TrainConfig {
                steps,
                ..sched.with_seed(3)
            };
            let r = train_model(&m, &private, &tc, "timing").map_err(err)?;
            Ok(r.seconds / steps as f64)
        };
    let big_step = time_steps(&spec.model, &spec.model_train)?;
    let small_step = time_steps(&spec.small, &spec.small_train)?;
    let ref_steps = spec.reference.adapter.steps + spec.reference.finetune.steps;
    let prep_est = sample_s
        + big_step * spec.model_train.steps as f64
        + small_step * spec.small_train.steps as f64;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "profile": name,
            "threads": spec.threads.map(|n| n.to_string()).unwrap_or_else(|| format!("default ({})", candle_core::utils::get_num_threads())),
            "model_params": spec.model.n_params(),
            "small_params": spec.small.n_params(),
            "score": {
                "load_and_check_seconds": load_s,
                "heldout_and_floor_seconds": heldout_s,
                "total_seconds": score_s,
                "heldout_tokens": ev.tokens,
                "floor": floor,
                "untrained_loss": ev.loss,
            },
            "prepare": {
                "corpus_sampling_seconds": sample_s,
                "measured_steps": steps,
                "original_seconds_per_step": big_step,
                "small_seconds_per_step": small_step,
                "estimated_total_seconds": prep_est,
                "reference_estimated_seconds": big_step * ref_steps as f64,
            },
        }))
        .unwrap_or_default()
    );
    Ok(())
}
