//! Token data, the training loop and evaluation of mean next-token loss.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backprop::{GptEvaluator, GptTrainer};
use crate::model::Gpt;
use crate::{LmError, Result};

/// Independent token sequences of equal length, stored row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSet {
    pub tokens: Vec<u16>,
    pub seq_len: usize,
}

impl TokenSet {
    pub fn new(tokens: Vec<u16>, seq_len: usize) -> Result<Self> {
        if seq_len < 2 || !tokens.len().is_multiple_of(seq_len) {
            return Err(LmError::Config(format!(
                "{} tokens do not split into sequences of {seq_len} (need seq_len >= 2)",
                tokens.len()
            )));
        }
        Ok(TokenSet { tokens, seq_len })
    }

    pub fn n_seq(&self) -> usize {
        self.tokens.len() / self.seq_len
    }

    /// The first `n` sequences.
    pub fn head(&self, n: usize) -> TokenSet {
        let n = n.min(self.n_seq());
        TokenSet {
            tokens: self.tokens[..n * self.seq_len].to_vec(),
            seq_len: self.seq_len,
        }
    }

    /// Sequences `rows` as a `[rows.len(), seq_len]` `u32` tensor on the CPU.
    pub fn batch(&self, rows: &[usize]) -> Result<Tensor> {
        self.batch_on(rows, &Device::Cpu)
    }

    /// As [`TokenSet::batch`], on `device`.
    pub fn batch_on(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        let mut v = Vec::with_capacity(rows.len() * self.seq_len);
        for &r in rows {
            v.extend(
                self.tokens[r * self.seq_len..(r + 1) * self.seq_len]
                    .iter()
                    .map(|&x| x as u32),
            );
        }
        Ok(Tensor::from_vec(v, (rows.len(), self.seq_len), device)?)
    }

    /// Writes the tokens as little-endian `u16` (no header), atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.tokens.len() * 2);
        for &t in &self.tokens {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        atomic_write(path, &bytes)
    }

    /// Reads a file written by [`TokenSet::write`].
    pub fn read(path: &Path, seq_len: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| LmError::Io(path.display().to_string(), e))?;
        if bytes.len() % 2 != 0 {
            return Err(LmError::Config(format!(
                "{}: odd number of bytes for u16 tokens",
                path.display()
            )));
        }
        let tokens = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        TokenSet::new(tokens, seq_len)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| LmError::Io(path.display().to_string(), e))
}

pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()))
}

/// Optimizer and schedule of one training run: AdamW, linear warm-up, cosine decay to
/// `min_lr_frac * lr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub min_lr_frac: f64,
    pub weight_decay: f64,
    /// Seed of the batch order.
    pub seed: u64,
}

impl TrainConfig {
    /// The tasks' usual schedule: decay to a tenth of `lr`, no weight decay.
    pub fn cosine(
        steps: usize,
        batch_size: usize,
        lr: f64,
        warmup_steps: usize,
        seed: u64,
    ) -> Self {
        TrainConfig {
            steps,
            batch_size,
            lr,
            warmup_steps,
            min_lr_frac: 0.1,
            weight_decay: 0.0,
            seed,
        }
    }

    /// Learning rate at `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let prog = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_frac;
        min + 0.5 * (self.lr - min) * (1.0 + (std::f64::consts::PI * prog).cos())
    }
}

/// What a training run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: usize,
    /// Mean training loss over the last tenth of the steps.
    pub final_train_loss: f64,
    pub seconds: f64,
}

/// The per-step half of a training run: the optimizer state and the batch order. [`train`] is
/// this plus a progress bar; the side-by-side benchmark (`examples/lm_step_bench.rs`) times
/// exactly these calls.
pub struct Trainer {
    device: Device,
    opt: AdamW,
    rng: ChaCha8Rng,
    cfg: TrainConfig,
}

impl Trainer {
    pub fn new(vars: Vec<Var>, cfg: &TrainConfig) -> Result<Self> {
        crate::keep_freed_memory();
        let params = ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        };
        let device = vars
            .first()
            .map(|v| v.as_tensor().device().clone())
            .unwrap_or(Device::Cpu);
        Ok(Trainer {
            device,
            opt: AdamW::new(vars, params)?,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg: cfg.clone(),
        })
    }

    /// The next batch: `batch_size` sequences of `data` drawn uniformly (with replacement) in
    /// the order fixed by the seed.
    pub fn next_batch(&mut self, data: &TokenSet) -> Result<Tensor> {
        let rows = draw_rows(&mut self.rng, data, self.cfg.batch_size);
        data.batch_on(&rows, &self.device)
    }

    /// Backward pass of `loss` and one AdamW update at the learning rate of `step`.
    pub fn step(&mut self, step: usize, loss: &Tensor) -> Result<()> {
        self.opt.set_learning_rate(self.cfg.lr_at(step));
        self.opt.backward_step(loss)?;
        Ok(())
    }
}

/// The rows of the next batch: `batch_size` sequences of `data` drawn uniformly with
/// replacement. Both training paths draw through this, so they see the same batches.
pub(crate) fn draw_rows(rng: &mut ChaCha8Rng, data: &TokenSet, batch_size: usize) -> Vec<usize> {
    let n_seq = data.n_seq();
    (0..batch_size).map(|_| rng.gen_range(0..n_seq)).collect()
}

/// Trains `vars` with AdamW on random batches of `data`, minimizing `loss_fn(batch)`, where
/// `batch` is a `[batch_size, seq_len]` `u32` tensor, through candle's autograd. Shows a
/// progress bar labelled `label` when stderr is a terminal.
pub fn train<F>(
    vars: Vec<Var>,
    data: &TokenSet,
    cfg: &TrainConfig,
    label: &str,
    mut loss_fn: F,
) -> Result<TrainReport>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    let mut trainer = Trainer::new(vars, cfg)?;
    run_steps(cfg, label, |step| {
        let batch = trainer.next_batch(data)?;
        let loss = loss_fn(&batch)?;
        trainer.step(step, &loss)?;
        Ok(loss.to_scalar::<f32>()? as f64)
    })
}

/// Runs `step(i)` (which returns the step's loss) for every step of `cfg` under a progress bar,
/// and reports the mean loss of the last tenth.
fn run_steps(
    cfg: &TrainConfig,
    label: &str,
    mut step: impl FnMut(usize) -> Result<f64>,
) -> Result<TrainReport> {
    let start = Instant::now();
    let bar = indicatif::ProgressBar::new(cfg.steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}<{eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    let tail = (cfg.steps / 10).max(1);
    let (mut tail_sum, mut tail_n) = (0.0, 0usize);
    for i in 0..cfg.steps {
        let loss = step(i)?;
        if i + tail >= cfg.steps {
            tail_sum += loss;
            tail_n += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(TrainReport {
        steps: cfg.steps,
        final_train_loss: tail_sum / tail_n.max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Trains every parameter of `model` on next-token loss, through the hand-written training pass
/// ([`crate::backprop`]: the same function and gradients as [`Gpt::loss`] under candle's
/// autograd, several times less overhead), with the batch order of [`train`].
pub fn train_model(
    model: &Gpt,
    data: &TokenSet,
    cfg: &TrainConfig,
    label: &str,
) -> Result<TrainReport> {
    if !model.device().is_cpu() {
        return train(model.vars(), data, cfg, label, |b| model.loss(b));
    }
    let mut trainer = GptTrainer::new(model, cfg)?;
    let report = run_steps(cfg, label, |step| trainer.step(step, data))?;
    trainer.finish()?;
    Ok(report)
}

/// Rows of `seq_len` tokens: each starts at a document's start and goes on into the
/// documents after it, the last one cut at the row's end (so no token is padding, and every row
/// starts where a prompt starts, as at inference). Documents longer than a row are dropped; a
/// single document is padded with `pad`.
pub fn pack_documents(docs: &[Vec<u32>], seq_len: usize, pad: u32) -> Vec<u16> {
    let mut out = Vec::new();
    let fits: Vec<&Vec<u32>> = docs.iter().filter(|d| d.len() <= seq_len).collect();
    for (i, first) in fits.iter().enumerate() {
        let mut row: Vec<u32> = Vec::with_capacity(seq_len);
        row.extend_from_slice(first);
        let mut j = i + 1;
        while row.len() < seq_len {
            match fits.get(j % fits.len().max(1)) {
                Some(d) if fits.len() > 1 => row.extend_from_slice(d),
                _ => row.resize(seq_len, pad),
            }
            j += 1;
        }
        row.truncate(seq_len);
        out.extend(row.iter().map(|&t| t as u16));
    }
    out
}

/// Mean next-token loss (nats) of `model` over every predicted position of every sequence of
/// `data` (positions `1..seq_len`), evaluated `batch_size` sequences at a time. On the CPU this
/// is [`GptEvaluator`]'s forward pass (no candle tensors, no autograd graph, buffers reused
/// across batches); it agrees with [`Gpt::loss`] to float rounding.
pub fn eval_loss(model: &Gpt, data: &TokenSet, batch_size: usize) -> Result<f64> {
    if data.seq_len > model.config().ctx + 1 {
        return Err(LmError::Config(format!(
            "sequences of {} tokens need a context of {}, the model has {}",
            data.seq_len,
            data.seq_len - 1,
            model.config().ctx
        )));
    }
    crate::keep_freed_memory();
    let n = data.n_seq();
    let mut total = 0.0;
    let mut i = 0;
    // Shown only when stderr is a terminal (indicatif hides it otherwise).
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "evaluating [{bar:30}] {pos}/{len} sequences {elapsed}<{eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if batch_size == 0 {
        return Err(LmError::Config("evaluation batch size 0".into()));
    }
    // On the CPU the hand-written forward pass; elsewhere candle's (same function).
    let mut fast = if model.device().is_cpu() {
        Some(GptEvaluator::new(model)?)
    } else {
        None
    };
    while i < n {
        let rows: Vec<usize> = (i..(i + batch_size).min(n)).collect();
        let loss = match &mut fast {
            Some(eval) => eval.batch_loss(data, &rows)?,
            None => {
                let batch = data.batch_on(&rows, model.device())?;
                model.loss(&batch)?.to_scalar::<f32>()? as f64
            }
        };
        total += loss * rows.len() as f64;
        i += rows.len();
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    Ok(total / n.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_roundtrip_and_check_their_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.bin");
        let s = TokenSet::new(vec![1, 2, 3, 65535, 0, 7], 3).unwrap();
        s.write(&p).unwrap();
        assert_eq!(TokenSet::read(&p, 3).unwrap(), s);
        assert!(TokenSet::read(&p, 4).is_err());
        assert!(TokenSet::new(vec![1, 2, 3], 1).is_err());
        assert_eq!(s.head(1).tokens, vec![1, 2, 3]);
    }

    /// Preparation is deterministic across machines only if the result does not depend on the
    /// thread count (`full` trains on every core, and shipped calibrations assume one model):
    /// the same training on one and on two threads gives bit-identical weights.
    #[test]
    fn training_is_bit_identical_on_one_and_two_threads() {
        let cfg = crate::GptConfig {
            vocab: 64,
            ctx: 16,
            d_model: 32,
            n_layer: 2,
            n_head: 2,
            d_ff: 128,
            ln_eps: 1e-5,
        };
        let tokens: Vec<u16> = (0..200 * 17).map(|i| ((i * 7919) % 61) as u16).collect();
        let data = TokenSet::new(tokens, 17).unwrap();
        let tc = TrainConfig {
            steps: 4,
            batch_size: 64, // GEMMs and elementwise ops big enough to be split across threads
            lr: 1e-2,
            warmup_steps: 1,
            min_lr_frac: 0.1,
            weight_decay: 0.0,
            seed: 3,
        };
        let weights = |threads| {
            crate::with_threads(Some(threads), || {
                let m = Gpt::new(cfg.clone(), 9).unwrap();
                train_model(&m, &data, &tc, "test").unwrap();
                m.tensors()
                    .into_iter()
                    .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                    .collect::<Vec<_>>()
            })
        };
        let (one, two) = (weights(1), weights(2));
        for ((name, a), (_, b)) in one.iter().zip(&two) {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name} differs between one and two threads");
        }
    }

    #[test]
    fn schedule_warms_up_and_decays() {
        let c = TrainConfig {
            steps: 100,
            batch_size: 1,
            lr: 1.0,
            warmup_steps: 10,
            min_lr_frac: 0.1,
            weight_decay: 0.0,
            seed: 0,
        };
        assert!((c.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(9) - 1.0).abs() < 1e-12);
        assert!(c.lr_at(50) < 1.0 && c.lr_at(50) > 0.1);
        assert!((c.lr_at(99) - 0.1).abs() < 0.01);
    }
}
