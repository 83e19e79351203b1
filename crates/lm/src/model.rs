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

use candle_core::{DType, Device, Tensor, Var, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::attention::causal_attention;
use crate::ops::{bias_add, cross_entropy, gelu_tanh, layer_norm};
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

    /// The values of the placeholders with which task instructions describe the architecture
    /// (`{{VOCAB}}`, `{{CTX}}`, `{{D}}`, `{{LAYERS}}`, `{{HEADS}}`, `{{FF}}`).
    pub fn template_values(&self) -> [(&'static str, String); 6] {
        [
            ("VOCAB", self.vocab.to_string()),
            ("CTX", self.ctx.to_string()),
            ("D", self.d_model.to_string()),
            ("LAYERS", self.n_layer.to_string()),
            ("HEADS", self.n_head.to_string()),
            ("FF", self.d_ff.to_string()),
        ]
    }
}

/// The transformer: its configuration and one trainable [`Var`] per parameter.
#[derive(Debug, Clone)]
pub struct Gpt {
    cfg: GptConfig,
    params: BTreeMap<String, Var>,
}

pub(crate) fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
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

/// A CPU tensor of `shape` holding [`normal`] values of standard deviation `std` from `seed`.
#[cfg(test)]
pub(crate) fn normal_tensor(seed: u64, std: f64, shape: impl Into<candle_core::Shape>) -> Tensor {
    let shape = shape.into();
    let values = normal(
        &mut ChaCha8Rng::seed_from_u64(seed),
        shape.elem_count(),
        std,
    );
    Tensor::from_vec(values, shape, &Device::Cpu).expect("as many values as the shape holds")
}

/// [`normal_tensor`] as a variable, for tests that take gradients with respect to it.
#[cfg(test)]
pub(crate) fn normal_var(seed: u64, std: f64, shape: impl Into<candle_core::Shape>) -> Var {
    Var::from_tensor(&normal_tensor(seed, std, shape)).expect("a CPU tensor")
}

impl Gpt {
    /// A freshly initialized model (GPT-2 initialization: N(0, 0.02) weights, residual
    /// projections scaled by 1/sqrt(2 n_layer), zero biases, unit LayerNorm gains), deterministic
    /// in `seed`, on the CPU.
    pub fn new(cfg: GptConfig, seed: u64) -> Result<Self> {
        Self::new_on(cfg, seed, &Device::Cpu)
    }

    /// As [`Gpt::new`], with the parameters on `device` (the same values on every device). The
    /// fused ops have CPU kernels only, so on another device the forward pass is a typed candle
    /// error until a device build supplies them; [`crate::train_model`] then falls back to
    /// candle's autograd ([`crate::train`]).
    pub fn new_on(cfg: GptConfig, seed: u64, device: &Device) -> Result<Self> {
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
            tensors.insert(name, Tensor::from_vec(data, shape, device)?);
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
        Ok(Gpt { cfg, params })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        self.params["wte"].as_tensor().device()
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
            bias_add(&x.matmul(&p(w).t()?)?, p(bias))
        };
        // The residual stream is kept as [B * T, d].
        let tok = wte
            .index_select(&idx.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let pos = p("wpe").narrow(0, 0, t)?;
        let mut x = tok.broadcast_add(&pos)?.reshape((b * t, d))?;
        let scale = 1.0 / (hd as f32).sqrt();
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
            let y =
                causal_attention(&qkv.reshape((b, t, 3 * d))?, nh, scale)?.reshape((b * t, d))?;
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
        Ok(cross_entropy(&logits, &target)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_abs_diff;
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
