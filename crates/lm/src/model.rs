//! A small GPT-style transformer on candle.
//!
//! Architecture (GPT-2 layout, written so that a PyTorch user can rebuild it exactly):
//!
//! ```text
//! x = wte[idx] + wpe[0..T]                                  (token + learned position embeddings)
//! for each block i:                                          (pre-norm)
//!     h = LayerNorm(x; blocks.i.ln1, eps)
//!     q, k, v = split(h @ qkv.weight^T + qkv.bias, 3)        (each [B, T, d], heads of d / n_head)
//!     a = softmax(q k^T / sqrt(d / n_head) + causal_mask) v   (per head, concatenated)
//!     x = x + a @ attn.proj.weight^T + attn.proj.bias
//!     h = LayerNorm(x; blocks.i.ln2, eps)
//!     x = x + gelu_tanh(h @ mlp.fc.weight^T + mlp.fc.bias) @ mlp.proj.weight^T + mlp.proj.bias
//! logits = LayerNorm(x; ln_f, eps) @ wte^T                   (tied head: the output layer IS wte)
//! ```
//!
//! The head is **tied** to the token embedding, as in GPT-2 (and RE-Bench's fix-embedding model):
//! there is one `wte` tensor, and corrupting it corrupts both the input and the output layer.
//! Weight matrices use PyTorch's `nn.Linear` layout `[out, in]`; every tensor is `f32`.

use std::collections::BTreeMap;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor, Var, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{LmError, Result};

/// Shape of a [`Gpt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab: usize,
    /// Context length (maximum sequence length the model reads).
    pub ctx: usize,
    pub d_model: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Width of the MLP's hidden layer.
    pub d_ff: usize,
    /// LayerNorm epsilon.
    pub ln_eps: f64,
}

impl GptConfig {
    pub fn validate(&self) -> Result<()> {
        if self.vocab == 0
            || self.ctx == 0
            || self.d_model == 0
            || self.n_head == 0
            || self.d_ff == 0
        {
            return Err(LmError::Config(format!(
                "GPT config has a zero dimension: {self:?}"
            )));
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return Err(LmError::Config(format!(
                "d_model {} is not a multiple of n_head {}",
                self.d_model, self.n_head
            )));
        }
        Ok(())
    }

    /// Every parameter's name and shape, in a fixed order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (d, f) = (self.d_model, self.d_ff);
        let mut v = vec![
            ("wte".to_string(), vec![self.vocab, d]),
            ("wpe".to_string(), vec![self.ctx, d]),
        ];
        for i in 0..self.n_layer {
            let p = format!("blocks.{i}");
            v.push((format!("{p}.ln1.weight"), vec![d]));
            v.push((format!("{p}.ln1.bias"), vec![d]));
            v.push((format!("{p}.attn.qkv.weight"), vec![3 * d, d]));
            v.push((format!("{p}.attn.qkv.bias"), vec![3 * d]));
            v.push((format!("{p}.attn.proj.weight"), vec![d, d]));
            v.push((format!("{p}.attn.proj.bias"), vec![d]));
            v.push((format!("{p}.ln2.weight"), vec![d]));
            v.push((format!("{p}.ln2.bias"), vec![d]));
            v.push((format!("{p}.mlp.fc.weight"), vec![f, d]));
            v.push((format!("{p}.mlp.fc.bias"), vec![f]));
            v.push((format!("{p}.mlp.proj.weight"), vec![d, f]));
            v.push((format!("{p}.mlp.proj.bias"), vec![d]));
        }
        v.push(("ln_f.weight".to_string(), vec![d]));
        v.push(("ln_f.bias".to_string(), vec![d]));
        v
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Size in bytes of the tensor data of a saved model (all `f32`).
    pub fn data_bytes(&self) -> u64 {
        self.n_params() as u64 * 4
    }
}

/// The transformer: its configuration and one trainable [`Var`] per parameter.
#[derive(Debug, Clone)]
pub struct Gpt {
    cfg: GptConfig,
    params: BTreeMap<String, Var>,
    mask: Tensor,
}

fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    use rand::Rng;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        out.push((std * r * th.cos()) as f32);
        if out.len() < n {
            out.push((std * r * th.sin()) as f32);
        }
    }
    out
}

/// LayerNorm over the last dimension: a fused normalization (custom op with its own backward
/// pass) followed by the affine map. `candle_nn::ops::layer_norm` has no backward pass, and the
/// same thing written with elementwise tensor ops is several times slower on the CPU.
fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op1(LnHat { eps })?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

/// `(x - mean) / sqrt(var + eps)` over the last dimension.
#[derive(Clone, Copy)]
struct LnHat {
    eps: f32,
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        _ => Err(candle_core::Error::Msg(format!(
            "{op}: only f32 is supported"
        ))),
    }
}

/// Both inputs of a backward op (the forward input and the incoming gradient), which must be
/// contiguous f32 of the same length.
fn f32_pair<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
    op: &str,
) -> candle_core::Result<(&'a [f32], &'a [f32])> {
    let (x, g) = (f32_slice(s1, l1, op)?, f32_slice(s2, l2, op)?);
    if x.len() != g.len() {
        return Err(candle_core::Error::Msg(format!("{op}: shape mismatch")));
    }
    Ok((x, g))
}

fn row_stats(xr: &[f32], eps: f32) -> (f32, f32) {
    let d = xr.len() as f32;
    let mean = xr.iter().sum::<f32>() / d;
    let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp1 for LnHat {
    fn name(&self) -> &'static str {
        "ln-hat"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "ln-hat")?;
        let d = *l.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        par_chunks_mut(&mut out, rows_chunk(d), |start, o| {
            for (xr, or) in x[start..].chunks_exact(d).zip(o.chunks_exact_mut(d)) {
                let (mean, inv) = row_stats(xr, self.eps);
                for (o, v) in or.iter_mut().zip(xr) {
                    *o = (v - mean) * inv;
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &LnHatBwd { eps: self.eps })?;
        Ok(Some(dx))
    }
}

/// Gradient of [`LnHat`]: `dx = inv * (g - mean(g) - xhat * mean(g * xhat))` per row.
struct LnHatBwd {
    eps: f32,
}

impl CustomOp2 for LnHatBwd {
    fn name(&self) -> &'static str {
        "ln-hat-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = f32_pair(s1, l1, s2, l2, "ln-hat-bwd")?;
        let d = *l1.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        par_chunks_mut(&mut out, rows_chunk(d), |start, o| {
            for ((xr, gr), or) in x[start..]
                .chunks_exact(d)
                .zip(g[start..].chunks_exact(d))
                .zip(o.chunks_exact_mut(d))
            {
                let (mean, inv) = row_stats(xr, self.eps);
                let (mut mg, mut mgx) = (0f32, 0f32);
                for (v, gv) in xr.iter().zip(gr) {
                    mg += gv;
                    mgx += gv * (v - mean) * inv;
                }
                mg /= d as f32;
                mgx /= d as f32;
                for ((o, v), gv) in or.iter_mut().zip(xr).zip(gr) {
                    *o = inv * (gv - mg - (v - mean) * inv * mgx);
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Largest absolute elementwise difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
}

/// Runs `f` over `len`-element chunks of `out` (and the matching chunks of the inputs), on
/// candle's worker threads when candle is allowed more than one.
fn par_chunks_mut(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if candle_core::utils::get_num_threads() > 1 {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i * len, c));
    } else {
        out.chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i * len, c));
    }
}

/// Elements per parallel work item of the elementwise ops.
const CHUNK: usize = 1 << 14;

/// Elements per parallel work item of a row-wise op on rows of `d`: whole rows, about [`CHUNK`].
fn rows_chunk(d: usize) -> usize {
    d.max(1) * (CHUNK / d.max(1)).max(1)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// `tanh` through one `exp`: libm's `tanhf` (via `expm1f`) was most of the elementwise cost.
/// The absolute error stays below 1e-6, which is all GELU needs (`0.5 x (1 + tanh)`).
#[inline]
fn tanh_via_exp(y: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * y).exp() + 1.0)
}

/// GELU, tanh approximation (GPT-2's), with a fused backward pass. candle's own `gelu` computes
/// the same values, but its backward pass builds the derivative from about ten temporary tensors
/// (including two `powf`s), which made it the largest cost of a CPU training step after the
/// matrix products.
fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(GeluTanh)
}

#[derive(Clone, Copy)]
struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu-tanh")?;
        let mut out = vec![0f32; x.len()];
        par_chunks_mut(&mut out, CHUNK, |start, o| {
            for (o, &v) in o.iter_mut().zip(&x[start..]) {
                *o = 0.5 * v * (1.0 + tanh_via_exp(SQRT_2_OVER_PI * v * (1.0 + GELU_C * v * v)));
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad_res.contiguous()?, &GeluTanhBwd)?;
        Ok(Some(dx))
    }
}

/// Gradient of [`GeluTanh`]: `g * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3c x^2))` with
/// `t = tanh(sqrt(2/pi) (x + c x^3))`.
struct GeluTanhBwd;

impl CustomOp2 for GeluTanhBwd {
    fn name(&self) -> &'static str {
        "gelu-tanh-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = f32_pair(s1, l1, s2, l2, "gelu-tanh-bwd")?;
        let mut out = vec![0f32; x.len()];
        par_chunks_mut(&mut out, CHUNK, |start, o| {
            for ((o, &v), &gv) in o.iter_mut().zip(&x[start..]).zip(&g[start..]) {
                let t = tanh_via_exp(SQRT_2_OVER_PI * v * (1.0 + GELU_C * v * v));
                let dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v);
                *o = gv * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * dt);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

impl Gpt {
    /// A freshly initialized model (GPT-2 initialization: N(0, 0.02) weights, residual
    /// projections scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorm gains), deterministic
    /// in `seed`.
    pub fn new(cfg: GptConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        let resid_std = 0.02 / (2.0 * cfg.n_layer.max(1) as f64).sqrt();
        for (name, shape) in cfg.param_shapes() {
            let n: usize = shape.iter().product();
            let data = if name.ends_with(".bias") {
                vec![0f32; n]
            } else if name.contains("ln") {
                vec![1f32; n]
            } else if name.ends_with("attn.proj.weight") || name.ends_with("mlp.proj.weight") {
                normal(&mut rng, n, resid_std)
            } else {
                normal(&mut rng, n, 0.02)
            };
            tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Self::from_tensors(cfg, tensors)
    }

    /// Builds a model from named tensors, which must match [`GptConfig::param_shapes`] exactly
    /// (use [`crate::io::load_model`] for files, which explains mismatches).
    pub fn from_tensors(cfg: GptConfig, mut tensors: BTreeMap<String, Tensor>) -> Result<Self> {
        cfg.validate()?;
        let mut params = BTreeMap::new();
        for (name, shape) in cfg.param_shapes() {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| LmError::Config(format!("missing tensor {name}")))?;
            if t.dims() != shape.as_slice() || t.dtype() != DType::F32 {
                return Err(LmError::Config(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.dims()
                )));
            }
            params.insert(name, Var::from_tensor(&t)?);
        }
        if let Some(name) = tensors.keys().next() {
            return Err(LmError::Config(format!("unexpected tensor {name}")));
        }
        let t = cfg.ctx;
        let mask: Vec<f32> = (0..t * t)
            .map(|i| {
                if i % t > i / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu)?;
        Ok(Gpt { cfg, params, mask })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// The parameter called `name` (panics on an unknown name: names come from the config).
    pub fn param(&self, name: &str) -> &Var {
        &self.params[name]
    }

    /// Every parameter, by name.
    pub fn params(&self) -> &BTreeMap<String, Var> {
        &self.params
    }

    /// Every trainable variable.
    pub fn vars(&self) -> Vec<Var> {
        self.params.values().cloned().collect()
    }

    /// Current values of every parameter (detached copies).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect()
    }

    /// Replaces the value of one parameter (same shape and dtype).
    pub fn set(&self, name: &str, value: &Tensor) -> Result<()> {
        let var = self
            .params
            .get(name)
            .ok_or_else(|| LmError::Config(format!("no parameter {name}")))?;
        var.set(value)?;
        Ok(())
    }

    /// Logits `[B * T, vocab]` for token ids `idx` `[B, T]` (`u32`), using the model's own `wte`.
    pub fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        self.forward_with_wte(idx, self.params["wte"].as_tensor())
    }

    /// Logits `[B * T, vocab]` with `wte` in place of the model's token embedding (used to train
    /// an embedding produced by another module, e.g. an adapter).
    pub fn forward_with_wte(&self, idx: &Tensor, wte: &Tensor) -> Result<Tensor> {
        let (b, t) = idx.dims2()?;
        if t > self.cfg.ctx {
            return Err(LmError::Config(format!(
                "sequence of {t} tokens exceeds context {}",
                self.cfg.ctx
            )));
        }
        let (d, nh) = (self.cfg.d_model, self.cfg.n_head);
        let hd = d / nh;
        let eps = self.cfg.ln_eps as f32;
        let p = |n: &str| self.params[n].as_tensor();
        let lin = |x: &Tensor, w: &str, bias: &str| -> candle_core::Result<Tensor> {
            // x is [N, in]: one GEMM for the whole batch.
            x.matmul(&p(w).t()?)?.broadcast_add(p(bias))
        };
        // The residual stream is kept as [B * T, d].
        let tok = wte
            .index_select(&idx.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let pos = p("wpe").narrow(0, 0, t)?;
        let mut x = tok.broadcast_add(&pos)?.reshape((b * t, d))?;
        let mask = self.mask.narrow(0, 0, t)?.narrow(1, 0, t)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for i in 0..self.cfg.n_layer {
            let pre = format!("blocks.{i}");
            let h = layer_norm(
                &x,
                p(&format!("{pre}.ln1.weight")),
                p(&format!("{pre}.ln1.bias")),
                eps,
            )?;
            let qkv = lin(
                &h,
                &format!("{pre}.attn.qkv.weight"),
                &format!("{pre}.attn.qkv.bias"),
            )?;
            let qkv = qkv.reshape((b, t, 3, nh, hd))?;
            let q = qkv
                .narrow(2, 0, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let k = qkv
                .narrow(2, 1, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let v = qkv
                .narrow(2, 2, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b * t, d))?;
            let y = lin(
                &y,
                &format!("{pre}.attn.proj.weight"),
                &format!("{pre}.attn.proj.bias"),
            )?;
            x = (x + y)?;
            let h = layer_norm(
                &x,
                p(&format!("{pre}.ln2.weight")),
                p(&format!("{pre}.ln2.bias")),
                eps,
            )?;
            let h = lin(
                &h,
                &format!("{pre}.mlp.fc.weight"),
                &format!("{pre}.mlp.fc.bias"),
            )?;
            let h = gelu_tanh(&h)?;
            let h = lin(
                &h,
                &format!("{pre}.mlp.proj.weight"),
                &format!("{pre}.mlp.proj.bias"),
            )?;
            x = (x + h)?;
        }
        let x = layer_norm(&x, p("ln_f.weight"), p("ln_f.bias"), eps)?;
        Ok(x.matmul(&wte.t()?)?)
    }

    /// Mean next-token cross-entropy (nats) of `idx[:, :-1] -> idx[:, 1:]` for `idx` `[B, T + 1]`.
    pub fn loss(&self, idx: &Tensor) -> Result<Tensor> {
        self.loss_with_wte(idx, self.params["wte"].as_tensor())
    }

    /// As [`Gpt::loss`], with `wte` in place of the model's token embedding.
    pub fn loss_with_wte(&self, idx: &Tensor, wte: &Tensor) -> Result<Tensor> {
        let t1 = idx.dim(D::Minus1)?;
        let input = idx.narrow(1, 0, t1 - 1)?;
        let target = idx.narrow(1, 1, t1 - 1)?.flatten_all()?;
        let logits = self.forward_with_wte(&input, wte)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &target)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{eval_loss, train_model, Hmm, HmmConfig, TokenSet, TrainConfig};

    fn tiny_cfg() -> GptConfig {
        GptConfig {
            vocab: 16,
            ctx: 8,
            d_model: 16,
            n_layer: 1,
            n_head: 2,
            d_ff: 32,
            ln_eps: 1e-5,
        }
    }

    /// The fused LayerNorm and its backward pass agree with the same function written with
    /// elementwise tensor ops.
    #[test]
    fn layer_norm_matches_reference_and_its_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(
            &Tensor::from_vec(
                normal(&mut ChaCha8Rng::seed_from_u64(1), 5 * 7, 1.3),
                (5, 7),
                &dev,
            )
            .unwrap(),
        )
        .unwrap();
        let w = Var::from_tensor(
            &Tensor::from_vec(normal(&mut ChaCha8Rng::seed_from_u64(2), 7, 1.0), 7, &dev).unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(
            &Tensor::from_vec(normal(&mut ChaCha8Rng::seed_from_u64(3), 7, 1.0), 7, &dev).unwrap(),
        )
        .unwrap();
        let r = Tensor::from_vec(
            normal(&mut ChaCha8Rng::seed_from_u64(4), 5 * 7, 1.0),
            (5, 7),
            &dev,
        )
        .unwrap();
        let slow = |x: &Tensor| -> Tensor {
            let mean = x.mean_keepdim(D::Minus1).unwrap();
            let xc = x.broadcast_sub(&mean).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let xn = xc
                .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap();
            xn.broadcast_mul(w.as_tensor())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap()
        };
        let fast = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        let reference = slow(x.as_tensor());
        let diff = max_abs_diff(&fast, &reference).unwrap();
        assert!(diff < 1e-5, "forward differs by {diff}");
        let g1 = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (reference * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &b] {
            let a = g1.get(v.as_tensor()).expect("gradient");
            let c = g2.get(v.as_tensor()).expect("gradient");
            let d = max_abs_diff(a, c).unwrap();
            assert!(d < 1e-4, "gradient differs by {d}");
        }
    }

    /// The fused GELU and its backward pass agree with candle's `gelu` (same tanh approximation)
    /// and candle's autograd of it, on values spanning both tails, on one thread and on several.
    #[test]
    fn gelu_matches_candle_and_its_gradient() {
        let dev = Device::Cpu;
        let n = 7 * ((3 * CHUNK + 17) / 7); // several parallel chunks and a ragged tail
        let mut v = normal(&mut ChaCha8Rng::seed_from_u64(5), n, 3.0);
        v[0] = -12.0;
        v[1] = 12.0;
        v[2] = 0.0;
        let x = Var::from_tensor(&Tensor::from_vec(v, (n / 7, 7), &dev).unwrap()).unwrap();
        let r = Tensor::from_vec(
            normal(&mut ChaCha8Rng::seed_from_u64(6), n, 1.0),
            (n / 7, 7),
            &dev,
        )
        .unwrap();
        for threads in [Some(1), Some(2)] {
            crate::with_threads(threads, || {
                let fast = gelu_tanh(x.as_tensor()).unwrap();
                let reference = x.as_tensor().gelu().unwrap();
                let d = max_abs_diff(&fast, &reference).unwrap();
                assert!(d < 1e-5, "forward differs by {d} ({threads:?} threads)");
                let g1 = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (reference * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let d = max_abs_diff(
                    g1.get(x.as_tensor()).unwrap(),
                    g2.get(x.as_tensor()).unwrap(),
                )
                .unwrap();
                assert!(d < 1e-4, "gradient differs by {d} ({threads:?} threads)");
            });
        }
    }

    #[test]
    fn forward_shapes_and_causality() {
        let m = Gpt::new(tiny_cfg(), 1).unwrap();
        let a = Tensor::from_vec(vec![1u32, 2, 3, 4, 5, 6], (1, 6), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![1u32, 2, 3, 9, 9, 9], (1, 6), &Device::Cpu).unwrap();
        let la = m.forward(&a).unwrap();
        let lb = m.forward(&b).unwrap();
        assert_eq!(la.dims(), &[6, 16]);
        // The first three positions cannot see the tokens that differ.
        let d = max_abs_diff(&la.narrow(0, 0, 3).unwrap(), &lb.narrow(0, 0, 3).unwrap()).unwrap();
        assert!(d < 1e-6, "{d}");
        let d = max_abs_diff(&la.narrow(0, 3, 1).unwrap(), &lb.narrow(0, 3, 1).unwrap()).unwrap();
        assert!(d > 1e-6);
        let too_long = Tensor::zeros((1, 9), DType::U32, &Device::Cpu).unwrap();
        assert!(m.forward(&too_long).is_err());
    }

    #[test]
    fn init_is_deterministic() {
        let a = Gpt::new(tiny_cfg(), 3).unwrap().tensors();
        let b = Gpt::new(tiny_cfg(), 3).unwrap().tensors();
        for (k, v) in &a {
            assert_eq!(
                v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert!(GptConfig {
            n_head: 3,
            ..tiny_cfg()
        }
        .validate()
        .is_err());
    }

    /// Training on HMM text brings held-out loss well below the uniform loss, towards the floor.
    #[test]
    fn training_learns_the_corpus() {
        let hmm = Hmm::new(HmmConfig {
            states: 4,
            vocab: 16,
            successors: 2,
            zipf_exponent: 2.0,
            structure_seed: 2,
        })
        .unwrap();
        let cfg = tiny_cfg();
        let train = TokenSet::new(hmm.sample(1, 512, 9), 9).unwrap();
        let held = TokenSet::new(hmm.sample(2, 256, 9), 9).unwrap();
        let floor = hmm.floor(&held.tokens, 9);
        let m = Gpt::new(cfg, 4).unwrap();
        let before = eval_loss(&m, &held, 64).unwrap();
        let tc = TrainConfig {
            steps: 150,
            batch_size: 32,
            lr: 1e-2,
            warmup_steps: 10,
            min_lr_frac: 0.1,
            weight_decay: 0.0,
            seed: 5,
        };
        train_model(&m, &train, &tc, "test").unwrap();
        let after = eval_loss(&m, &held, 64).unwrap();
        assert!((before - (16f64).ln()).abs() < 0.1, "initial loss {before}");
        assert!(after > floor - 0.02, "loss {after} below floor {floor}");
        assert!(
            after - floor < 0.5 * (before - floor),
            "before {before} after {after} floor {floor}"
        );
    }
}
