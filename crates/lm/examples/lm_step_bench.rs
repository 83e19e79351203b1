//! Times an rdbench-lm training step and an evaluation forward pass, for the side-by-side
//! benchmark against PyTorch (`scripts/bench-lm-step.sh`, which also runs
//! `crates/lm/bench/torch_step.py` with the same flags and prints both in one table).
//!
//! A training step is what [`rdbench_lm::train_model`] does per step ([`GptTrainer::step`]):
//! draw the batch, forward, backward, AdamW. The evaluation forward pass is
//! [`rdbench_lm::eval_loss`]'s per batch on the CPU ([`GptEvaluator::batch_loss`]: batch,
//! forward, mean loss). Prints one JSON line per measured quantity with every sample.
//!
//! Flags (defaults: fix-embedding's `full` model): `--vocab 2048 --ctx 128 --d-model 192
//! --layers 4 --heads 4 --batch 32 --threads 2 --steps 12 --warmup 3`; `--only train_step` or
//! `--only eval_forward` times one of the two (for a profiler); `--candle` also times candle's
//! forward pass of the same batches (`Gpt::loss`, what evaluation ran before); `--breakdown`
//! prints to stderr what the evaluation pass's time is made of (extra passes, timed by part).
use std::time::Instant;

use rdbench_lm::*;

fn flag(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a whole number")),
        None => default,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let d = flag(&args, "--d-model", 192);
    let cfg = GptConfig {
        vocab: flag(&args, "--vocab", 2048),
        ctx: flag(&args, "--ctx", 128),
        d_model: d,
        n_layer: flag(&args, "--layers", 4),
        n_head: flag(&args, "--heads", 4),
        d_ff: 4 * d,
        ln_eps: 1e-5,
    };
    let (batch, threads) = (flag(&args, "--batch", 32), flag(&args, "--threads", 2));
    let (steps, warmup) = (flag(&args, "--steps", 12), flag(&args, "--warmup", 3));
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let candle = args.iter().any(|a| a == "--candle");
    let breakdown = args.iter().any(|a| a == "--breakdown");
    let runs = |what: &str| only.as_deref().is_none_or(|o| o == what);
    let n_seq = 256;
    let tokens: Vec<u16> = (0..n_seq * (cfg.ctx + 1))
        .map(|i| ((i as u64 * 2_654_435_761) % cfg.vocab as u64) as u16)
        .collect();
    let data = TokenSet::new(tokens, cfg.ctx + 1)?;
    let tc = TrainConfig {
        steps: warmup + steps,
        batch_size: batch,
        lr: 1e-3,
        warmup_steps: 1,
        min_lr_frac: 0.1,
        weight_decay: 0.01,
        seed: 1,
    };
    with_threads(Some(threads), || -> Result<()> {
        let model = Gpt::new(cfg.clone(), 1)?;
        let mut step_ms = Vec::new();
        let mut trainer = GptTrainer::new(&model, &tc)?;
        for step in 0..if runs("train_step") {
            warmup + steps
        } else {
            0
        } {
            let t = Instant::now();
            trainer.step(step, &data)?;
            if step >= warmup {
                step_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        trainer.finish()?;
        // What `eval_loss` does per batch on the CPU; `--candle` also times the candle forward
        // pass (`Gpt::loss` on tensors, the evaluation path before `GptEvaluator`).
        let mut evaluator = GptEvaluator::new(&model)?;
        let mut fwd_ms = Vec::new();
        let mut candle_ms = Vec::new();
        for i in 0..if runs("eval_forward") {
            warmup + steps
        } else {
            0
        } {
            let rows: Vec<usize> = (0..batch).map(|r| (r + i * batch) % n_seq).collect();
            let t = Instant::now();
            evaluator.batch_loss(&data, &rows)?;
            if i >= warmup {
                fwd_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            if candle {
                let t = Instant::now();
                let b = data.batch(&rows)?;
                model.loss(&b)?.to_scalar::<f32>()?;
                if i >= warmup {
                    candle_ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        if breakdown && runs("eval_forward") {
            // Separate passes, so the clock reads do not touch the timed ones.
            let mut parts = Breakdown::default();
            for i in 0..steps {
                let rows: Vec<usize> = (0..batch).map(|r| (r + i * batch) % n_seq).collect();
                evaluator.batch_loss_timed(&data, &rows, Some(&mut parts))?;
            }
            let per_pass = |s: f64| s * 1e3 / steps.max(1) as f64;
            eprintln!("evaluation forward pass, {threads} threads, mean of {steps} passes:");
            for part in Part::ALL {
                let ms = per_pass(parts.seconds(part));
                let share = 100.0 * parts.seconds(part) / parts.total();
                eprintln!("  {:32} {ms:7.1} ms {share:5.1} %", part.name());
            }
            eprintln!("  {:32} {:7.1} ms", "total", per_pass(parts.total()));
        }
        let measures = [
            ("rdbench-lm", "train_step", &step_ms),
            ("rdbench-lm", "eval_forward", &fwd_ms),
            ("rdbench-lm candle forward", "eval_forward", &candle_ms),
        ];
        for (name, what, samples) in measures {
            if samples.is_empty() {
                continue;
            }
            let rounded: Vec<f64> = samples.iter().map(|s| (s * 1e3).round() / 1e3).collect();
            println!(
                "{{\"impl\": \"{name}\", \"measure\": \"{what}\", \"threads\": {threads}, \
                 \"median_ms\": {}, \"samples_ms\": {rounded:?}}}",
                median(samples)
            );
        }
        Ok(())
    })
}
