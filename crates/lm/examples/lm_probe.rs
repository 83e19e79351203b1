//! Measures corpus floors, training speed and losses for a model size.
//!
//! `cargo run --release -p rdbench-lm --example lm_probe -- STATES VOCAB SUCC ZIPF D LAYERS HEADS CTX BATCH STEPS LR [TRAIN_SEQ]`

use std::time::Instant;

use rdbench_lm::*;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let g = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let hmm = Hmm::new(HmmConfig {
        states: g(0, "32").parse().unwrap(),
        vocab: g(1, "128").parse().unwrap(),
        successors: g(2, "3").parse().unwrap(),
        zipf_exponent: g(3, "1.1").parse().unwrap(),
        structure_seed: 1,
    })?;
    let d: usize = g(4, "64").parse().unwrap();
    let cfg = GptConfig {
        vocab: hmm.config().vocab,
        ctx: g(7, "64").parse().unwrap(),
        d_model: d,
        n_layer: g(5, "2").parse().unwrap(),
        n_head: g(6, "4").parse().unwrap(),
        d_ff: 4 * d,
        ln_eps: 1e-5,
    };
    let tc = TrainConfig {
        steps: g(9, "300").parse().unwrap(),
        batch_size: g(8, "16").parse().unwrap(),
        lr: g(10, "3e-3").parse().unwrap(),
        warmup_steps: 30,
        min_lr_frac: 0.1,
        weight_decay: 0.0,
        seed: 3,
    };
    let n_train: usize = g(11, "4000").parse().unwrap();
    let t = Instant::now();
    let train_set = TokenSet::new(hmm.sample(10, n_train, cfg.ctx + 1), cfg.ctx + 1)?;
    let held = TokenSet::new(hmm.sample(99, 1024, cfg.ctx + 1), cfg.ctx + 1)?;
    let floor = hmm.floor(&held.tokens, held.seq_len);
    println!(
        "sample+floor {:.2}s floor {floor:.4} params {}",
        t.elapsed().as_secs_f64(),
        cfg.n_params()
    );
    let model = Gpt::new(cfg, 5)?;
    let t = Instant::now();
    let l0 = eval_loss(&model, &held, 64)?;
    println!(
        "init loss {l0:.4} eval {:.2}s ({} tokens)",
        t.elapsed().as_secs_f64(),
        held.tokens.len()
    );
    let rep = train_model(&model, &train_set, &tc, "train")?;
    let t = Instant::now();
    let l = eval_loss(&model, &held, 64)?;
    println!(
        "train {:.1}s ({:.1} ms/step) train_loss {:.4} held {l:.4} gap {:.4} ln(gap) {:.3} eval {:.2}s",
        rep.seconds,
        1000.0 * rep.seconds / tc.steps as f64,
        rep.final_train_loss,
        l - floor,
        (l - floor).ln(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
