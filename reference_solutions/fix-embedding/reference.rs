//! Reference solution of `fix-embedding` (RE-Bench's approach).
//!
//! 1. Take the small, correctly trained model's token embedding `E_s` (`[vocab, d_small]`).
//! 2. Train an affine adapter `A, b` (`[d_small, d]`, `[d]`) so that `E_s A + b` works as the
//!    corrupted model's token embedding (input and tied output head), with every other weight of
//!    the corrupted model frozen, on the attempt's training corpus.
//! 3. Fold the adapter in: `wte := E_s A + b`, a plain `[vocab, d]` tensor of the original
//!    architecture.
//! 4. Train the whole model further on the same corpus, with a smaller learning rate.
//!
//! It uses only what an attempt has: the corrupted model, the small model and the training corpus.
//! It is the crate `rdbench-reference-fix-embedding` in `reference_solutions/` (never copied
//! into an attempt); the task crate depends on it and re-exports it as its `reference` module.

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use rdbench_lm::{train, Gpt, Result, TokenSet, TrainConfig};

/// The reference solution's two training phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceConfig {
    /// Phase 2: only the adapter trains.
    pub adapter: TrainConfig,
    /// Phase 4: the whole model trains.
    pub finetune: TrainConfig,
}

/// What the reference solution did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceReport {
    pub adapter_train_loss: f64,
    pub finetune_train_loss: f64,
    pub seconds: f64,
}

/// Runs the reference solution; returns the fixed model (same architecture as `corrupted`).
pub fn run(
    corrupted: &Gpt,
    small: &Gpt,
    data: &TokenSet,
    cfg: &ReferenceConfig,
) -> Result<(Gpt, ReferenceReport)> {
    let start = std::time::Instant::now();
    // Fresh variables: never train the caller's model in place.
    let model = Gpt::from_tensors(corrupted.config().clone(), corrupted.tensors())?;
    let e_small = small.param("wte").as_tensor().detach();
    let (ds, d) = (small.config().d_model, model.config().d_model);

    // Adapter initialized so that the adapted rows have about the scale of the original ones.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.adapter.seed ^ 0xada9);
    let big_rms = rms(model.param("wte").as_tensor())?;
    let small_rms = rms(&e_small)?.max(1e-8);
    let std = big_rms / (small_rms * (ds as f64).sqrt());
    let init: Vec<f32> = gaussian(&mut rng, ds * d, std);
    let a = Var::from_tensor(&Tensor::from_vec(init, (ds, d), &Device::Cpu)?)?;
    let b = Var::from_tensor(&Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu)?)?;
    let adapted = |a: &Var, b: &Var| -> Result<Tensor> {
        Ok(e_small
            .matmul(a.as_tensor())?
            .broadcast_add(b.as_tensor())?)
    };
    let r1 = train(
        vec![a.clone(), b.clone()],
        data,
        &cfg.adapter,
        "reference: adapter",
        |batch| model.loss_with_wte(batch, &adapted(&a, &b)?),
    )?;

    // Fold the adapter into a plain embedding.
    model.set("wte", &adapted(&a, &b)?.detach())?;

    let r2 = rdbench_lm::train_model(&model, data, &cfg.finetune, "reference: fine-tune")?;
    Ok((
        model,
        ReferenceReport {
            adapter_train_loss: r1.final_train_loss,
            finetune_train_loss: r2.final_train_loss,
            seconds: start.elapsed().as_secs_f64(),
        },
    ))
}

fn rms(t: &Tensor) -> Result<f64> {
    Ok(t.sqr()?.mean_all()?.to_scalar::<f32>()?.sqrt() as f64)
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    use rand::Rng;
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen();
            (std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}
