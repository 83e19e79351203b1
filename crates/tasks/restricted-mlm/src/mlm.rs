//! Masked-language-modelling data, loss, evaluation and the shipped trainer.
//!
//! A masked sequence has each position replaced by the mask id (`vocab`) with probability
//! [`MASK_RATE`], independently, from a seeded generator; the model sees the masked sequence
//! and is scored by its cross-entropy on the original tokens at the masked positions only. The
//! loss is computed outside the forward pass (RE-Bench allows that: the restriction is on the
//! model), and so is training, which may use anything.

use candle_core::{DType, Device, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdbench_lm::{TokenSet, TrainConfig, TrainReport};

use crate::interp::{ForwardError, MlmModel};

/// Fraction of positions masked (RE-Bench's 15 %).
pub const MASK_RATE: f64 = 0.15;

/// The mask flags of `n_tokens` positions drawn from `seed`.
pub fn mask_pattern(seed: u64, n_tokens: usize) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n_tokens).map(|_| rng.gen_bool(MASK_RATE)).collect()
}

/// Rows `rows` of `set` with masked positions set to `mask_id`, as `[rows, seq]` ids, the
/// original tokens as targets, and the mask as `f32` weights, on `device`.
pub fn masked_batch(
    set: &TokenSet,
    masks: &[bool],
    rows: &[usize],
    mask_id: u32,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let s = set.seq_len;
    let (mut ids, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    for &r in rows {
        let span = r * s..(r + 1) * s;
        for (&tok, &masked) in set.tokens[span.clone()].iter().zip(&masks[span]) {
            let tok = tok as u32;
            targets.push(tok);
            ids.push(if masked { mask_id } else { tok });
            weights.push(if masked { 1f32 } else { 0.0 });
        }
    }
    let shape = (rows.len(), s);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(targets, shape, device)?,
        Tensor::from_vec(weights, shape, device)?,
    ))
}

/// Summed cross-entropy (nats) of `logits` `[b, s, v]` at the positions `weights` marks.
pub fn masked_nll_sum(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let picked = logp
        .gather(&targets.unsqueeze(2)?.contiguous()?, 2)?
        .squeeze(2)?;
    (picked * weights)?.sum_all()?.neg()
}

/// Mean masked-token loss of `model` on `set` with mask flags `masks` (row-major like the
/// tokens), `batch_size` sequences at a time; with the number of masked positions. A node of
/// the graph that fails is [`ForwardError::Node`] (the submission's fault).
pub fn eval_masked_loss(
    model: &MlmModel,
    set: &TokenSet,
    masks: &[bool],
    batch_size: usize,
) -> Result<(f64, usize), ForwardError> {
    let mask_id = model.limits().vocab as u32;
    let n = set.n_seq();
    let (mut total, mut count) = (0.0f64, 0usize);
    let mut i = 0;
    while i < n {
        let rows: Vec<usize> = (i..(i + batch_size).min(n)).collect();
        let (ids, targets, weights) = masked_batch(set, masks, &rows, mask_id, model.device())?;
        let logits = model.forward_checked(&ids)?;
        total += masked_nll_sum(&logits, &targets, &weights)?.to_scalar::<f32>()? as f64;
        count += rows
            .iter()
            .map(|r| {
                masks[r * set.seq_len..(r + 1) * set.seq_len]
                    .iter()
                    .filter(|m| **m)
                    .count()
            })
            .sum::<usize>();
        i += rows.len();
    }
    Ok((total / count.max(1) as f64, count))
}

/// Trains every trainable weight of `model` with AdamW on masked-token loss, with fresh masks
/// for every batch drawn from `cfg.seed`.
pub fn train(
    model: &MlmModel,
    data: &TokenSet,
    cfg: &TrainConfig,
    label: &str,
) -> rdbench_lm::Result<TrainReport> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6d61_736b);
    let mask_id = model.limits().vocab as u32;
    let s = data.seq_len;
    rdbench_lm::train(model.trainable_vars(), data, cfg, label, |batch| {
        let rows = batch.dim(0)?;
        let tokens: Vec<u32> = batch.flatten_all()?.to_vec1()?;
        let mut ids = Vec::with_capacity(tokens.len());
        let mut weights = Vec::with_capacity(tokens.len());
        for &t in &tokens {
            let m = rng.gen_bool(MASK_RATE);
            ids.push(if m { mask_id } else { t });
            weights.push(if m { 1f32 } else { 0.0 });
        }
        let count = weights.iter().filter(|w| **w > 0.0).count().max(1);
        let dev = model.device();
        let ids = Tensor::from_vec(ids, (rows, s), dev)?;
        let targets = Tensor::from_vec(tokens, (rows, s), dev)?;
        let weights = Tensor::from_vec(weights, (rows, s), dev)?;
        let logits = model.forward(&ids)?;
        Ok((masked_nll_sum(&logits, &targets, &weights)? / count as f64)?)
    })
}
