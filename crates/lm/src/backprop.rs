//! The hand-written training pass of [`Gpt`]: forward with stored activations, backward and
//! AdamW, on plain buffers allocated once per run.
//!
//! candle's autograd is general, and on a CPU its generality is most of a training step's
//! cost beyond the matrix products: every gradient contribution is a freshly zeroed tensor plus
//! an addition (`GradStore::or_insert` then `add`), every op allocates its output, and its
//! elementwise thread pool spins while the matrix products run on rayon's. This pass computes
//! the same function and the same gradients (a test checks both against candle's autograd of
//! [`Gpt::loss`]) with one pass per fused kernel, products written straight into their
//! destination (bias rows first, then `+=` the product), gradients accumulated in place, and
//! AdamW fused into one loop per parameter. [`crate::train_model`] uses it; custom losses still
//! go through candle ([`crate::train`]).
//!
//! Every kernel splits work in chunks that do not depend on the thread count, and no reduction
//! crosses chunks, so training is bit-identical on one thread and on several.

use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::attention::{self, Dims};
use crate::kernels::{self, gemm_into, par_rows, Dst, Mat};
use crate::model::{Gpt, GptConfig};
use crate::train::{draw_rows, TokenSet, TrainConfig};
use crate::{LmError, Result};

/// Parameters per block, in [`GptConfig::param_shapes`] order.
const PER_BLOCK: usize = 12;
// Offsets within a block.
const LN1_W: usize = 0;
const LN1_B: usize = 1;
const QKV_W: usize = 2;
const QKV_B: usize = 3;
const PROJ_W: usize = 4;
const PROJ_B: usize = 5;
const LN2_W: usize = 6;
const LN2_B: usize = 7;
const FC_W: usize = 8;
const FC_B: usize = 9;
const MPROJ_W: usize = 10;
const MPROJ_B: usize = 11;

/// Activations of one block, kept for the backward pass.
struct BlockActs {
    xhat1: Vec<f32>,
    h1: Vec<f32>,
    qkv: Vec<f32>,
    /// Attention probabilities `[B, H, T, T]`, kept for the backward pass.
    probs: Vec<f32>,
    att: Vec<f32>,
    mid: Vec<f32>,
    xhat2: Vec<f32>,
    h2: Vec<f32>,
    fpre: Vec<f32>,
    fact: Vec<f32>,
}

/// Every buffer of one forward pass (and, when training, of its backward pass), sized for `n`
/// tokens.
///
/// Training keeps every block's activations (`n_layer + 1` residual streams, `n_layer` blocks);
/// evaluation needs none of them after the next block, so it reuses one block's buffers and two
/// residual streams, and allocates no backward temporaries. [`forward`] addresses both layouts
/// modulo their length.
struct Workspace {
    n: usize,
    t: usize,
    pass: Pass,
    /// Residual stream entering each block, and leaving the last one (`n_layer + 1` of them, or
    /// two used in turn).
    x: Vec<Vec<f32>>,
    blocks: Vec<BlockActs>,
    xhat_f: Vec<f32>,
    h_f: Vec<f32>,
    /// Logits, overwritten by their gradient when training.
    logits: Vec<f32>,
    // Backward temporaries (empty when evaluating).
    dres: Vec<f32>,
    dd: Vec<f32>,
    dd2: Vec<f32>,
    dqkv: Vec<f32>,
    df: Vec<f32>,
    df2: Vec<f32>,
}

/// What a [`Workspace`] is for.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Pass {
    /// Forward with every activation kept, then backward.
    Train,
    /// Forward only, buffers reused across blocks.
    Eval,
}

impl Workspace {
    /// `old` if it has this size and purpose, else a new workspace.
    fn fitting(old: Option<Self>, cfg: &GptConfig, n: usize, t: usize, pass: Pass) -> Self {
        match old {
            Some(ws) if ws.n == n && ws.t == t && ws.pass == pass => ws,
            _ => Workspace::new(cfg, n, t, pass),
        }
    }

    fn new(cfg: &GptConfig, n: usize, t: usize, pass: Pass) -> Self {
        let (d, f) = (cfg.d_model, cfg.d_ff);
        let train = pass == Pass::Train;
        let z = |k: usize| vec![0f32; n * k];
        let zt = |k: usize| if train { z(k) } else { Vec::new() };
        let (streams, blocks) = if train {
            (cfg.n_layer + 1, cfg.n_layer)
        } else {
            (2, 1)
        };
        Workspace {
            n,
            t,
            pass,
            x: (0..streams).map(|_| z(d)).collect(),
            blocks: (0..blocks)
                .map(|_| BlockActs {
                    xhat1: zt(d),
                    h1: z(d),
                    qkv: z(3 * d),
                    probs: if train {
                        vec![0f32; n / t * cfg.n_head * t * t]
                    } else {
                        Vec::new()
                    },
                    att: z(d),
                    mid: z(d),
                    xhat2: zt(d),
                    h2: z(d),
                    fpre: z(f),
                    fact: z(f),
                })
                .collect(),
            xhat_f: zt(d),
            h_f: z(d),
            logits: z(cfg.vocab),
            dres: zt(d),
            dd: zt(d),
            dd2: zt(d),
            dqkv: zt(3 * d),
            df: zt(f),
            df2: zt(f),
        }
    }
}

/// `out = xhat * w + b` per row.
fn affine(xhat: &[f32], w: &[f32], b: &[f32], out: &mut [f32]) {
    let d = w.len();
    par_rows(
        out,
        d,
        #[inline(always)]
        |r0, o| {
            for (or, xr) in o.chunks_exact_mut(d).zip(xhat[r0 * d..].chunks_exact(d)) {
                for (((o, &x), &wv), &bv) in or.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = x * wv + bv;
                }
            }
        },
    );
}

/// `out (+)= x W^T + b` for `x` `[n, in]`, `W` `[out, in]`: the bias rows are written (or added)
/// first, then the product is accumulated onto them.
fn linear(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], accumulate: bool) {
    let o = b.len();
    let i = w.len() / o;
    let n = x.len() / i;
    par_rows(
        out,
        o,
        #[inline(always)]
        |_, rows| {
            for r in rows.chunks_exact_mut(o) {
                if accumulate {
                    r.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
                } else {
                    r.copy_from_slice(b);
                }
            }
        },
    );
    gemm_into(
        Dst::rows(out, o),
        Mat::rows(x, n, i),
        Mat::rows(w, o, i).t(),
        true,
        true,
    );
}

/// Backward of [`linear`] for the weight `p[w]` and its bias `p[w + 1]` (every layer's bias
/// follows its weight in [`GptConfig::param_shapes`]): `dW += dy^T x`, `db += colsum(dy)`,
/// `dx = dy W`.
fn linear_bwd(p: &[Vec<f32>], g: &mut [Vec<f32>], w: usize, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (weight, (dw, db)) = (&p[w], two(g, w, w + 1));
    let o = db.len();
    let i = weight.len() / o;
    let n = x.len() / i;
    gemm_into(
        Dst::rows(dw, i),
        Mat::rows(dy, n, o).t(),
        Mat::rows(x, n, i),
        true,
        true,
    );
    kernels::column_sums(dy, o, db, true);
    gemm_into(
        Dst::rows(dx, i),
        Mat::rows(dy, n, o),
        Mat::rows(weight, o, i),
        false,
        true,
    );
}

/// Backward of LayerNorm with its affine map (gain `p[w]`, shift `p[w + 1]`), from the input
/// `x`, the normalized input `xhat` and the output gradient `dh` (overwritten):
/// `dw += colsum(dh * xhat)`, `db += colsum(dh)`, `dx += ln_hat_bwd(x, dh * w)` (through `tmp`).
#[allow(clippy::too_many_arguments)]
fn layer_norm_bwd(
    p: &[Vec<f32>],
    g: &mut [Vec<f32>],
    w: usize,
    eps: f32,
    (x, xhat): (&[f32], &[f32]),
    dh: &mut [f32],
    tmp: &mut [f32],
    dx: &mut [f32],
) {
    let (w, (dw, db)) = (&p[w][..], two(g, w, w + 1));
    let d = w.len();
    kernels::column_dot(dh, xhat, d, dw);
    kernels::column_sums(dh, d, db, true);
    par_rows(
        dh,
        d,
        #[inline(always)]
        |_, rows| {
            for r in rows.chunks_exact_mut(d) {
                r.iter_mut().zip(w).for_each(|(v, &wv)| *v *= wv);
            }
        },
    );
    kernels::ln_hat_bwd(x, dh, d, eps, tmp);
    add_into(dx, tmp);
}

/// `acc += x`, elementwise.
fn add_into(acc: &mut [f32], x: &[f32]) {
    kernels::par_chunks_mut(
        acc,
        kernels::CHUNK,
        #[inline(always)]
        |start, a| {
            a.iter_mut().zip(&x[start..]).for_each(|(v, &y)| *v += y);
        },
    );
}

/// A training run of one [`Gpt`] on next-token loss: parameters, AdamW state and buffers.
pub struct GptTrainer<'m> {
    model: &'m Gpt,
    cfg: GptConfig,
    train: TrainConfig,
    rng: ChaCha8Rng,
    /// Parameter values, in [`GptConfig::param_shapes`] order; written back by [`Self::finish`].
    params: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    adam_m: Vec<Vec<f32>>,
    adam_v: Vec<Vec<f32>>,
    adam_t: i32,
    ws: Option<Workspace>,
    batch: Batch,
}

impl<'m> GptTrainer<'m> {
    pub fn new(model: &'m Gpt, train: &TrainConfig) -> Result<Self> {
        crate::keep_freed_memory();
        let cfg = model.config().clone();
        let params = param_values(model)?;
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0f32; p.len()]).collect();
        Ok(GptTrainer {
            model,
            cfg,
            train: train.clone(),
            rng: ChaCha8Rng::seed_from_u64(train.seed),
            grads: zeros.clone(),
            adam_m: zeros.clone(),
            adam_v: zeros,
            params,
            adam_t: 0,
            ws: None,
            batch: Batch::default(),
        })
    }

    /// Draws the next batch exactly as [`crate::Trainer::next_batch`] does (same seed, same rows).
    fn next_batch(&mut self, data: &TokenSet) -> Result<()> {
        let rows = draw_rows(&mut self.rng, data, self.train.batch_size);
        Batch::fill(&mut self.batch, &self.cfg, data, &rows, "training data")
    }

    /// One step on the next batch of `data`: forward, backward, AdamW at the rate of `step`.
    /// Returns the batch's mean loss before the update.
    pub fn step(&mut self, step: usize, data: &TokenSet) -> Result<f64> {
        self.next_batch(data)?;
        let t = data.seq_len - 1;
        let n = self.batch.tokens.len();
        let mut ws = Workspace::fitting(self.ws.take(), &self.cfg, n, t, Pass::Train);
        let loss = self.forward_backward(&mut ws, t);
        self.ws = Some(ws);
        self.adamw(self.train.lr_at(step));
        Ok(loss)
    }

    fn forward_backward(&mut self, ws: &mut Workspace, t: usize) -> f64 {
        let cfg = &self.cfg;
        let (d, v, nl) = (cfg.d_model, cfg.vocab, cfg.n_layer);
        let eps = cfg.ln_eps as f32;
        let n = ws.n;
        let dims = attention_dims(cfg, n, t);
        let scale = 1.0 / (dims.hd as f32).sqrt();
        let p = &self.params;
        let blk = |l: usize, k: usize| 2 + l * PER_BLOCK + k;
        let lnf_w = 2 + nl * PER_BLOCK;

        forward(cfg, p, &self.batch.tokens, ws, &mut Laps::new(None));
        let per_token = 1.0 / n as f32;
        let loss = kernels::cross_entropy_fused(&mut ws.logits, &self.batch.targets, v, per_token);

        // Backward. Every gradient starts at zero and is accumulated in place.
        for g in &mut self.grads {
            g.fill(0.0);
        }
        let g = &mut self.grads;
        {
            // Head (tied to wte): dwte += dlogits^T h_f, dh_f = dlogits wte.
            let dl = Mat::rows(&ws.logits, n, v);
            gemm_into(
                Dst::rows(&mut g[0], d),
                dl.t(),
                Mat::rows(&ws.h_f, n, d),
                true,
                true,
            );
            gemm_into(
                Dst::rows(&mut ws.dd, d),
                dl,
                Mat::rows(&p[0], v, d),
                false,
                true,
            );
            ws.dres.fill(0.0);
            let (x, xhat) = (&ws.x[nl][..], &ws.xhat_f[..]);
            layer_norm_bwd(
                p,
                g,
                lnf_w,
                eps,
                (x, xhat),
                &mut ws.dd,
                &mut ws.dd2,
                &mut ws.dres,
            );
        }
        for l in (0..nl).rev() {
            let a = &ws.blocks[l];
            // MLP: dres is the gradient of the block's output.
            linear_bwd(p, g, blk(l, MPROJ_W), &a.fact, &ws.dres, &mut ws.df);
            kernels::gelu_bwd(&a.fpre, &ws.df, &mut ws.df2);
            linear_bwd(p, g, blk(l, FC_W), &a.h2, &ws.df2, &mut ws.dd);
            let ln2 = (&a.mid[..], &a.xhat2[..]);
            layer_norm_bwd(
                p,
                g,
                blk(l, LN2_W),
                eps,
                ln2,
                &mut ws.dd,
                &mut ws.dd2,
                &mut ws.dres,
            );
            // Attention: dres is now the gradient of `mid`.
            linear_bwd(p, g, blk(l, PROJ_W), &a.att, &ws.dres, &mut ws.dd);
            attention::backward(&a.qkv, &ws.dd, dims, scale, Some(&a.probs), &mut ws.dqkv);
            linear_bwd(p, g, blk(l, QKV_W), &a.h1, &ws.dqkv, &mut ws.dd);
            let ln1 = (&ws.x[l][..], &a.xhat1[..]);
            layer_norm_bwd(
                p,
                g,
                blk(l, LN1_W),
                eps,
                ln1,
                &mut ws.dd,
                &mut ws.dd2,
                &mut ws.dres,
            );
        }
        // Embeddings, in token order (a fixed summation order).
        {
            let (gwte, gwpe) = two(g, 0, 1);
            for (r, (row, &tok)) in ws.dres.chunks_exact(d).zip(&self.batch.tokens).enumerate() {
                let e = &mut gwte[tok as usize * d..][..d];
                e.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
                let pos = &mut gwpe[(r % t) * d..][..d];
                pos.iter_mut().zip(row).for_each(|(a, &b)| *a += b);
            }
        }
        loss
    }

    /// AdamW as candle and PyTorch define it (decoupled weight decay, bias-corrected moments,
    /// betas 0.9 / 0.999, eps 1e-8), one fused loop per parameter.
    fn adamw(&mut self, lr: f64) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f32 = 1e-8;
        self.adam_t += 1;
        let decay = (1.0 - lr * self.train.weight_decay) as f32;
        let c1 = (1.0 / (1.0 - B1.powi(self.adam_t))) as f32;
        let c2 = (1.0 / (1.0 - B2.powi(self.adam_t))) as f32;
        let (b1, b2, lr) = (B1 as f32, B2 as f32, lr as f32);
        let all = self
            .params
            .iter_mut()
            .zip(&self.grads)
            .zip(&mut self.adam_m)
            .zip(&mut self.adam_v);
        kernels::wide(
            #[inline(always)]
            || {
                for (((w, g), m), v) in all {
                    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *w = *w * decay - lr * (*m * c1) / ((*v * c2).sqrt() + EPS);
                    }
                }
            },
        );
    }

    /// Writes the trained values back into the model's variables.
    pub fn finish(self) -> Result<()> {
        for ((name, shape), values) in self.cfg.param_shapes().into_iter().zip(self.params) {
            let t = Tensor::from_vec(values, shape, self.model.device())?;
            self.model.param(&name).set(&t)?;
        }
        Ok(())
    }

    /// The current gradients by parameter name (for tests).
    #[cfg(test)]
    fn gradients(&self) -> Vec<(String, Vec<f32>)> {
        self.cfg
            .param_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .zip(self.grads.iter().cloned())
            .collect()
    }
}

/// The inputs and next-token targets of a batch of sequences, as `u32`.
#[derive(Default)]
struct Batch {
    tokens: Vec<u32>,
    targets: Vec<u32>,
}

impl Batch {
    /// Fills `batch` with sequences `rows` of `data`: tokens `0..s - 1` as inputs, `1..s` as
    /// targets. Sequences longer than the context + 1 and tokens outside the vocabulary are
    /// errors (named by `what`), never a panic or an out-of-range read.
    fn fill(
        batch: &mut Batch,
        cfg: &GptConfig,
        data: &TokenSet,
        rows: &[usize],
        what: &str,
    ) -> Result<()> {
        let s = data.seq_len;
        if s > cfg.ctx + 1 {
            return Err(LmError::Config(format!(
                "sequences of {s} tokens exceed the context {} + 1",
                cfg.ctx
            )));
        }
        batch.tokens.clear();
        batch.targets.clear();
        for &r in rows {
            let seq = data
                .tokens
                .get(r * s..(r + 1) * s)
                .ok_or_else(|| LmError::Config(format!("{what}: no sequence {r}")))?;
            batch.tokens.extend(seq[..s - 1].iter().map(|&t| t as u32));
            batch.targets.extend(seq[1..].iter().map(|&t| t as u32));
        }
        // Every target is also an input except the last of each sequence, so checking both
        // covers every token.
        if let Err(e) = kernels::check_targets(&batch.tokens, cfg.vocab)
            .and_then(|_| kernels::check_targets(&batch.targets, cfg.vocab))
        {
            return Err(LmError::Config(format!("{what}: {e}")));
        }
        Ok(())
    }
}

/// Next-token loss of one [`Gpt`] without candle: the forward pass of [`GptTrainer`] on a copy
/// of the parameters, with no activation kept, buffers allocated once for a batch size and
/// reused. [`crate::eval_loss`] runs it on the CPU.
///
/// It computes [`Gpt::loss`] with the same kernels in the same order, except that each linear
/// layer writes its bias first and adds the product onto it (candle adds the bias to the
/// product), so losses agree to float rounding (a test bounds the difference); like training,
/// the result is bit-identical on one thread and on several.
pub struct GptEvaluator {
    cfg: GptConfig,
    params: Vec<Vec<f32>>,
    ws: Option<Workspace>,
    batch: Batch,
}

impl GptEvaluator {
    /// Copies the current parameters of `model` (later changes to the model are not seen).
    pub fn new(model: &Gpt) -> Result<Self> {
        crate::keep_freed_memory();
        Ok(GptEvaluator {
            cfg: model.config().clone(),
            params: param_values(model)?,
            ws: None,
            batch: Batch::default(),
        })
    }

    /// Mean next-token loss (nats) over every predicted position (`1..seq_len`) of sequences
    /// `rows` of `data`, as [`Gpt::loss`] of that batch.
    pub fn batch_loss(&mut self, data: &TokenSet, rows: &[usize]) -> Result<f64> {
        self.batch_loss_timed(data, rows, None)
    }

    /// As [`Self::batch_loss`], adding the time of each part of the pass to `breakdown` when
    /// given (a profiling aid: `lm_step_bench --breakdown`).
    pub fn batch_loss_timed(
        &mut self,
        data: &TokenSet,
        rows: &[usize],
        breakdown: Option<&mut Breakdown>,
    ) -> Result<f64> {
        Batch::fill(&mut self.batch, &self.cfg, data, rows, "evaluation data")?;
        let (n, t) = (self.batch.tokens.len(), data.seq_len - 1);
        if n == 0 {
            return Err(LmError::Config("evaluation of an empty batch".into()));
        }
        let mut ws = Workspace::fitting(self.ws.take(), &self.cfg, n, t, Pass::Eval);
        let mut laps = Laps::new(breakdown);
        forward(
            &self.cfg,
            &self.params,
            &self.batch.tokens,
            &mut ws,
            &mut laps,
        );
        let loss = kernels::mean_nll(&ws.logits, &self.batch.targets, self.cfg.vocab);
        laps.lap(Part::CrossEntropy);
        self.ws = Some(ws);
        Ok(loss)
    }
}

/// The values of every parameter of `model`, in [`GptConfig::param_shapes`] order.
fn param_values(model: &Gpt) -> Result<Vec<Vec<f32>>> {
    let mut params = Vec::new();
    for (name, _) in model.config().param_shapes() {
        let t = model.param(&name).as_tensor();
        params.push(t.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(params)
}

/// The shape of attention for `n` tokens in sequences of `t`.
fn attention_dims(cfg: &GptConfig, n: usize, t: usize) -> Dims {
    Dims {
        b: n / t,
        t,
        h: cfg.n_head,
        hd: cfg.d_model / cfg.n_head,
    }
}

/// The parts of a forward pass that [`Breakdown`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Token plus position embeddings.
    Embed,
    /// Every LayerNorm (normalization and affine map).
    LayerNorm,
    /// The QKV projection (a matrix product with its bias).
    Qkv,
    /// Causal attention: per-head products, softmax.
    Attention,
    /// Attention's output projection, added to the residual stream.
    AttnProj,
    /// The MLP's first layer.
    MlpFc,
    Gelu,
    /// The MLP's second layer, added to the residual stream.
    MlpProj,
    /// Copies of the residual stream.
    Copies,
    /// The tied head's matrix product (the logits).
    Head,
    /// The mean cross-entropy of the logits.
    CrossEntropy,
}

impl Part {
    pub const ALL: [Part; 11] = [
        Part::Embed,
        Part::LayerNorm,
        Part::Qkv,
        Part::Attention,
        Part::AttnProj,
        Part::MlpFc,
        Part::Gelu,
        Part::MlpProj,
        Part::Copies,
        Part::Head,
        Part::CrossEntropy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Embed => "embeddings",
            Part::LayerNorm => "layer norm",
            Part::Qkv => "matmul: qkv",
            Part::Attention => "attention (products, softmax)",
            Part::AttnProj => "matmul: attention proj",
            Part::MlpFc => "matmul: mlp fc",
            Part::Gelu => "gelu",
            Part::MlpProj => "matmul: mlp proj",
            Part::Copies => "residual copies",
            Part::Head => "matmul: tied head",
            Part::CrossEntropy => "cross-entropy",
        }
    }
}

/// Wall time of each [`Part`] of forward passes, summed over the passes timed.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    seconds: [f64; Part::ALL.len()],
}

impl Breakdown {
    /// Seconds spent in `part`.
    pub fn seconds(&self, part: Part) -> f64 {
        self.seconds[part as usize]
    }

    /// Seconds over every part.
    pub fn total(&self) -> f64 {
        self.seconds.iter().sum()
    }
}

/// Charges the time since the last lap to a [`Part`] of a [`Breakdown`]; does nothing (reads
/// no clock) when there is no breakdown.
struct Laps<'a> {
    into: Option<&'a mut Breakdown>,
    last: Option<std::time::Instant>,
}

impl<'a> Laps<'a> {
    fn new(into: Option<&'a mut Breakdown>) -> Self {
        let last = into.as_ref().map(|_| std::time::Instant::now());
        Laps { into, last }
    }

    fn lap(&mut self, part: Part) {
        if let (Some(b), Some(last)) = (self.into.as_deref_mut(), self.last.as_mut()) {
            let now = std::time::Instant::now();
            b.seconds[part as usize] += (now - *last).as_secs_f64();
            *last = now;
        }
    }
}

/// The forward pass of `tokens` (sequences of `ws.t`) up to the logits, in `ws.logits`. With a
/// training workspace every block's activations stay in its own buffers; with an evaluation
/// workspace block `l` uses buffers `l mod len` (one block's, two residual streams in turn).
fn forward(cfg: &GptConfig, p: &[Vec<f32>], tokens: &[u32], ws: &mut Workspace, laps: &mut Laps) {
    let (d, v, nl) = (cfg.d_model, cfg.vocab, cfg.n_layer);
    let eps = cfg.ln_eps as f32;
    let (n, t) = (ws.n, ws.t);
    let dims = attention_dims(cfg, n, t);
    let scale = 1.0 / (dims.hd as f32).sqrt();
    let blk = |l: usize, k: usize| 2 + l * PER_BLOCK + k;
    let (lnf_w, lnf_b) = (2 + nl * PER_BLOCK, 3 + nl * PER_BLOCK);
    {
        let (wte, wpe) = (&p[0], &p[1]);
        for (r, (row, &tok)) in ws.x[0].chunks_exact_mut(d).zip(tokens).enumerate() {
            let (e, pos) = (&wte[tok as usize * d..][..d], &wpe[(r % t) * d..][..d]);
            for ((o, &a), &b) in row.iter_mut().zip(e).zip(pos) {
                *o = a + b;
            }
        }
    }
    laps.lap(Part::Embed);
    // LayerNorm into `h`, through the kept normalized rows `xhat` when training (the backward
    // pass needs them), in one pass otherwise (same values).
    let keep = ws.pass == Pass::Train;
    let norm = |x: &[f32], (w, b): (&[f32], &[f32]), xhat: &mut [f32], h: &mut [f32]| {
        if keep {
            kernels::ln_hat(x, d, eps, xhat);
            affine(xhat, w, b, h);
        } else {
            kernels::layer_norm(x, w, b, eps, h);
        }
    };
    let (streams, blocks) = (ws.x.len(), ws.blocks.len());
    for l in 0..nl {
        let (i, o) = (l % streams, (l + 1) % streams);
        let (x_in, x_out) = if i < o {
            let (lo, hi) = ws.x.split_at_mut(o);
            (&lo[i], &mut hi[0])
        } else {
            let (lo, hi) = ws.x.split_at_mut(i);
            (&hi[0], &mut lo[o])
        };
        let a = &mut ws.blocks[l % blocks];
        norm(
            x_in,
            (&p[blk(l, LN1_W)], &p[blk(l, LN1_B)]),
            &mut a.xhat1,
            &mut a.h1,
        );
        laps.lap(Part::LayerNorm);
        linear(
            &a.h1,
            &p[blk(l, QKV_W)],
            &p[blk(l, QKV_B)],
            &mut a.qkv,
            false,
        );
        laps.lap(Part::Qkv);
        let probs = (!a.probs.is_empty()).then_some(&mut a.probs[..]);
        attention::forward(&a.qkv, dims, scale, &mut a.att, probs);
        laps.lap(Part::Attention);
        a.mid.copy_from_slice(x_in);
        laps.lap(Part::Copies);
        linear(
            &a.att,
            &p[blk(l, PROJ_W)],
            &p[blk(l, PROJ_B)],
            &mut a.mid,
            true,
        );
        laps.lap(Part::AttnProj);
        norm(
            &a.mid,
            (&p[blk(l, LN2_W)], &p[blk(l, LN2_B)]),
            &mut a.xhat2,
            &mut a.h2,
        );
        laps.lap(Part::LayerNorm);
        linear(
            &a.h2,
            &p[blk(l, FC_W)],
            &p[blk(l, FC_B)],
            &mut a.fpre,
            false,
        );
        laps.lap(Part::MlpFc);
        kernels::gelu(&a.fpre, &mut a.fact);
        laps.lap(Part::Gelu);
        x_out.copy_from_slice(&a.mid);
        laps.lap(Part::Copies);
        linear(
            &a.fact,
            &p[blk(l, MPROJ_W)],
            &p[blk(l, MPROJ_B)],
            x_out,
            true,
        );
        laps.lap(Part::MlpProj);
    }
    norm(
        &ws.x[nl % streams],
        (&p[lnf_w], &p[lnf_b]),
        &mut ws.xhat_f,
        &mut ws.h_f,
    );
    laps.lap(Part::LayerNorm);
    gemm_into(
        Dst::rows(&mut ws.logits, v),
        Mat::rows(&ws.h_f, n, d),
        Mat::rows(&p[0], v, d).t(),
        false,
        true,
    );
    laps.lap(Part::Head);
}

/// Two distinct elements of `v`, mutably.
fn two(v: &mut [Vec<f32>], i: usize, j: usize) -> (&mut [f32], &mut [f32]) {
    assert!(i < j);
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Trainer;

    fn cfg() -> GptConfig {
        GptConfig {
            vocab: 37,
            ctx: 40, // sequences of 39 tokens: two attention query blocks
            d_model: 16,
            n_layer: 2,
            n_head: 2,
            d_ff: 24,
            ln_eps: 1e-5,
        }
    }

    /// 40 sequences of 40 tokens, token `i` being `token(i)`.
    fn corpus(token: impl Fn(usize) -> usize) -> TokenSet {
        TokenSet::new((0..40 * 40).map(|i| token(i) as u16).collect(), 40).unwrap()
    }

    /// The hand-written pass computes candle's loss and every parameter's gradient (candle's
    /// autograd of `Gpt::loss` on the same batch), on one thread and on two.
    #[test]
    fn gradients_match_candles_autograd() {
        let tokens: Vec<u16> = (0..40 * 40)
            .map(|i| ((i * 7919 + i / 5) % 37) as u16)
            .collect();
        let data = TokenSet::new(tokens, 40).unwrap();
        let tc = TrainConfig {
            steps: 1,
            batch_size: 5,
            lr: 0.0,
            warmup_steps: 1,
            min_lr_frac: 1.0,
            weight_decay: 0.0,
            seed: 4,
        };
        for threads in [1, 2] {
            crate::with_threads(Some(threads), || {
                let model = Gpt::new(cfg(), 3).unwrap();
                let mut reference = Trainer::new(model.vars(), &tc).unwrap();
                let batch = reference.next_batch(&data).unwrap();
                let loss = model.loss(&batch).unwrap();
                let grads = loss.backward().unwrap();
                let mut fast = GptTrainer::new(&model, &tc).unwrap();
                let fast_loss = fast.step(0, &data).unwrap();
                let want = loss.to_scalar::<f32>().unwrap() as f64;
                assert!(
                    (fast_loss - want).abs() < 1e-5,
                    "loss {fast_loss} vs {want}"
                );
                for (name, g) in fast.gradients() {
                    let c = grads
                        .get(model.param(&name).as_tensor())
                        .expect("candle gradient");
                    let c = c.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let scale = c.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
                    let worst = g
                        .iter()
                        .zip(&c)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-4 * scale,
                        "{name}: gradient differs by {worst} (scale {scale})"
                    );
                }
            });
        }
    }

    /// The evaluator's loss is candle's `Gpt::loss` of the same batches (a trained model, a
    /// ragged last batch) to float rounding, and bit-identical on one thread and on two.
    #[test]
    fn evaluation_matches_candles_forward() {
        let data = corpus(|i| (i * 7919 + i / 3) % 37);
        let tc = TrainConfig {
            steps: 30,
            batch_size: 8,
            lr: 1e-2,
            warmup_steps: 3,
            min_lr_frac: 0.1,
            weight_decay: 0.0,
            seed: 2,
        };
        let model = Gpt::new(cfg(), 6).unwrap();
        crate::train_model(&model, &data, &tc, "test").unwrap();
        let batch = 7;
        let losses = |threads| {
            crate::with_threads(Some(threads), || {
                let mut eval = GptEvaluator::new(&model).unwrap();
                (0..data.n_seq())
                    .step_by(batch)
                    .map(|i| {
                        let rows: Vec<usize> = (i..(i + batch).min(data.n_seq())).collect();
                        let fast = eval.batch_loss(&data, &rows).unwrap();
                        let b = data.batch(&rows).unwrap();
                        let slow = model.loss(&b).unwrap().to_scalar::<f32>().unwrap() as f64;
                        (fast, slow)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let (one, two) = (losses(1), losses(2));
        assert_eq!(one.len(), 6);
        for ((fast, slow), (fast2, _)) in one.iter().zip(&two) {
            assert_eq!(fast.to_bits(), fast2.to_bits(), "differs across threads");
            assert!(
                (fast - slow).abs() < 1e-6 * slow,
                "{fast} vs candle's {slow}"
            );
        }
        // The model learned something, so the comparison is not of two near-uniform losses.
        assert!(one[0].1 < 0.9 * (37f64).ln(), "loss {}", one[0].1);
    }

    /// The evaluation workspace (buffers reused, fused LayerNorm) computes exactly the logits
    /// of the training forward pass.
    #[test]
    fn evaluation_forward_is_the_training_forward() {
        let cfg = cfg();
        let model = Gpt::new(cfg.clone(), 8).unwrap();
        let params = param_values(&model).unwrap();
        let (b, t) = (3, 39);
        let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 13 + 5) % 37) as u32).collect();
        let logits = |pass| {
            let mut ws = Workspace::new(&cfg, b * t, t, pass);
            forward(&cfg, &params, &tokens, &mut ws, &mut Laps::new(None));
            ws.logits.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(logits(Pass::Eval), logits(Pass::Train));
    }

    /// The kernels built for AVX2 compute bit-identical results to the baseline build: two
    /// training steps and an evaluation give the same weights and loss either way.
    #[test]
    fn wide_kernels_are_bit_identical_to_the_baseline_build() {
        let data = corpus(|i| (i * 7919 + i / 3) % 37);
        let tc = TrainConfig {
            steps: 2,
            batch_size: 6,
            lr: 1e-2,
            warmup_steps: 1,
            min_lr_frac: 0.1,
            weight_decay: 0.1,
            seed: 3,
        };
        let run = || {
            crate::with_threads(Some(1), || {
                let m = Gpt::new(cfg(), 2).unwrap();
                let mut trainer = GptTrainer::new(&m, &tc).unwrap();
                for step in 0..2 {
                    trainer.step(step, &data).unwrap();
                }
                let weights: Vec<u32> = trainer
                    .params
                    .iter()
                    .flatten()
                    .map(|x| x.to_bits())
                    .collect();
                trainer.finish().unwrap();
                let loss = GptEvaluator::new(&m)
                    .unwrap()
                    .batch_loss(&data, &[0, 5, 9])
                    .unwrap();
                (weights, loss.to_bits())
            })
        };
        let wide = run();
        assert_eq!(kernels::with_baseline(run), wide);
    }

    /// Bad evaluation input is an error, not a panic or an out-of-range read.
    #[test]
    fn evaluation_refuses_bad_batches() {
        let model = Gpt::new(cfg(), 1).unwrap();
        let mut eval = GptEvaluator::new(&model).unwrap();
        let outside = corpus(|i| if i == 77 { 37 } else { i % 37 });
        let e = eval.batch_loss(&outside, &[0, 1, 2]).unwrap_err();
        assert!(e.to_string().contains("outside the vocabulary"), "{e}");
        let long = TokenSet::new(vec![1; 2 * 42], 42).unwrap();
        assert!(eval.batch_loss(&long, &[0]).is_err());
        let data = corpus(|i| i % 37);
        assert!(eval.batch_loss(&data, &[]).is_err());
        assert!(eval.batch_loss(&data, &[40]).is_err());
        assert!(eval.batch_loss(&data, &[39]).is_ok());
    }

    /// One step of the fused AdamW moves the weights as candle's AdamW does.
    #[test]
    fn adamw_matches_candles() {
        let data = corpus(|i| (i * 31 + 7) % 37);
        let tc = TrainConfig {
            steps: 2,
            batch_size: 4,
            lr: 1e-2,
            warmup_steps: 1,
            min_lr_frac: 0.5,
            weight_decay: 0.1,
            seed: 9,
        };
        let a = Gpt::new(cfg(), 5).unwrap();
        let b = Gpt::new(cfg(), 5).unwrap();
        let mut slow = Trainer::new(a.vars(), &tc).unwrap();
        for step in 0..2 {
            let batch = slow.next_batch(&data).unwrap();
            let loss = a.loss(&batch).unwrap();
            slow.step(step, &loss).unwrap();
        }
        let mut fast = GptTrainer::new(&b, &tc).unwrap();
        for step in 0..2 {
            fast.step(step, &data).unwrap();
        }
        fast.finish().unwrap();
        for (name, t) in a.tensors() {
            let x = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let y = b
                .param(&name)
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let worst = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{name}: weights differ by {worst}");
        }
    }
}
