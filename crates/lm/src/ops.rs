//! Fused CPU operations with their own backward passes.
//!
//! candle builds these functions from many elementwise tensor ops (each a separate pass over
//! memory, and several more in the backward pass), or provides them with no backward pass at
//! all, in which case gradients silently stop there: `candle_nn::ops::layer_norm` and
//! `candle_nn::ops::softmax_last_dim` are both `apply_op1_no_bwd` (attention, which needs the
//! latter, is in `attention.rs`). Each op here is one pass
//! forward and one backward, parallel over rows on candle's threads, and a test checks it and
//! its gradient against the same function written with candle's differentiable ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

/// LayerNorm over the last dimension: a fused normalization (custom op with its own backward
/// pass) followed by the affine map. `candle_nn::ops::layer_norm` has no backward pass, and the
/// same thing written with elementwise tensor ops is several times slower on the CPU.
pub(crate) fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
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

pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
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
pub(crate) fn f32_pair<'a>(
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
pub(crate) fn par_chunks_mut(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
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
pub(crate) fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
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



/// Mean cross-entropy (nats) of `logits` `[N, V]` against `targets` `[N]` (`u32`), with its
/// backward pass `(softmax(logits) - onehot(target)) * grad / N`. candle's `cross_entropy` is a
/// log-softmax of five ops plus a gather and a sum, each a pass over `N x V` (and more passes
/// backward); this is one pass each way. Per-row losses are summed in row order in `f64`, so the
/// value does not depend on the thread count.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if targets.dims() != [n] {
        candle_core::bail!(
            "cross-entropy: targets {:?} do not match logits {:?}",
            targets.dims(),
            logits.dims()
        );
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}

#[derive(Clone, Copy)]
struct CrossEntropy;

fn targets_slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [u32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("cross-entropy: targets not contiguous".into()))?;
    match s {
        CpuStorage::U32(v) => Ok(&v[a..b]),
        _ => candle_core::bail!("cross-entropy: targets must be u32"),
    }
}

/// `ln(sum(exp(row)))`, stably.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "cross-entropy")?;
        let tg = targets_slice(s2, l2)?;
        let v = l1.dims()[1];
        if let Some(&bad) = tg.iter().find(|&&t| t as usize >= v) {
            candle_core::bail!("cross-entropy: target {bad} outside the vocabulary of {v}");
        }
        let mut losses = vec![0f32; tg.len()];
        let rows_per_item = (CHUNK / v.max(1)).max(1);
        par_chunks_mut(&mut losses, rows_per_item, |start, o| {
            for (i, o) in o.iter_mut().enumerate() {
                let r = start + i;
                let row = &x[r * v..(r + 1) * v];
                *o = log_sum_exp(row) - row[tg[r] as usize];
            }
        });
        let mean = losses.iter().map(|&l| l as f64).sum::<f64>() / tg.len().max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = logits.dim(0)?.max(1);
        let scale = grad_res.to_scalar::<f32>()? / n as f32;
        let d = logits.apply_op2_no_bwd(targets, &CrossEntropyBwd { scale })?;
        Ok((Some(d), None))
    }
}

/// Gradient of [`CrossEntropy`] with respect to the logits.
struct CrossEntropyBwd {
    scale: f32,
}

impl CustomOp2 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "cross-entropy-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "cross-entropy-bwd")?;
        let tg = targets_slice(s2, l2)?;
        let v = l1.dims()[1];
        let mut out = vec![0f32; x.len()];
        par_chunks_mut(&mut out, rows_chunk(v), |start, o| {
            for (i, (xr, or)) in x[start..].chunks_exact(v).zip(o.chunks_exact_mut(v)).enumerate() {
                let max = xr.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
                let mut sum = 0f32;
                for (o, &a) in or.iter_mut().zip(xr) {
                    *o = (a - max).exp();
                    sum += *o;
                }
                let k = self.scale / sum;
                or.iter_mut().for_each(|o| *o *= k);
                or[tg[start / v + i] as usize] -= self.scale;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}


/// `x + b` for `x` `[N, F]` and a bias `b` `[F]`, with a backward pass whose bias gradient is one
/// vectorized pass of column sums. candle's broadcast add reduces the gradient with a strided
/// `sum_keepdim(0)`, which measured 25x slower than this (10.6 ms against 0.4 ms for
/// `[4096, 768]`) and, summed over a model's biases, was a fifth of a training step.
pub(crate) fn bias_add(x: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (_, f) = x.dims2()?;
    if b.dims() != [f] {
        candle_core::bail!("bias-add: bias {:?} does not match {:?}", b.dims(), x.dims());
    }
    x.contiguous()?.apply_op2(&b.contiguous()?, BiasAdd)
}

#[derive(Clone, Copy)]
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "bias-add")?;
        let b = f32_slice(s2, l2, "bias-add")?;
        let f = b.len();
        let mut out = vec![0f32; x.len()];
        par_chunks_mut(&mut out, rows_chunk(f), |start, o| {
            for (or, xr) in o.chunks_exact_mut(f).zip(x[start..].chunks_exact(f)) {
                for ((o, &xv), &bv) in or.iter_mut().zip(xr).zip(b) {
                    *o = xv + bv;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        let db = g.apply_op1_no_bwd(&ColumnSums)?;
        debug_assert_eq!(db.dims(), b.dims());
        Ok((Some(g), Some(db)))
    }
}

/// Column sums of `[N, F]`, as `[F]`. Each column is summed over the rows in row order, so the
/// result does not depend on the thread count; threads split the columns.
struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, "column-sums")?;
        let &[_, f] = l.dims() else {
            candle_core::bail!("column-sums: expected [N, F], got {:?}", l.dims());
        };
        let mut out = vec![0f32; f];
        // Column blocks of 64: each item streams over every row once.
        par_chunks_mut(&mut out, 64, |c0, acc| {
            for row in g.chunks_exact(f) {
                for (a, &v) in acc.iter_mut().zip(&row[c0..]) {
                    *a += v;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normal;
    use candle_core::{Device, Var, D};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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


    /// The fused cross-entropy and its gradient agree with candle's `cross_entropy`; a target
    /// outside the vocabulary is an error, not a wild read.
    #[test]
    fn cross_entropy_matches_candle_and_its_gradient() {
        let dev = Device::Cpu;
        let (n, v) = (301, 97);
        let x = Var::from_tensor(
            &Tensor::from_vec(normal(&mut ChaCha8Rng::seed_from_u64(9), n * v, 3.0), (n, v), &dev)
                .unwrap(),
        )
        .unwrap();
        let tg: Vec<u32> = (0..n as u32).map(|i| (i * 31) % v as u32).collect();
        let tg = Tensor::from_vec(tg, n, &dev).unwrap();
        for threads in [Some(1), Some(2)] {
            crate::with_threads(threads, || {
                let fast = cross_entropy(x.as_tensor(), &tg).unwrap();
                let reference = candle_nn::loss::cross_entropy(x.as_tensor(), &tg).unwrap();
                let (a, b) = (
                    fast.to_scalar::<f32>().unwrap(),
                    reference.to_scalar::<f32>().unwrap(),
                );
                assert!((a - b).abs() < 1e-5, "loss {a} vs {b}");
                let g1 = (fast * 1.7).unwrap().backward().unwrap();
                let g2 = (reference * 1.7).unwrap().backward().unwrap();
                let d = max_abs_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap())
                    .unwrap();
                assert!(d < 1e-6, "gradient differs by {d}");
            });
        }
        let bad = Tensor::from_vec(vec![v as u32; n], n, &dev).unwrap();
        let err = cross_entropy(x.as_tensor(), &bad).unwrap_err().to_string();
        assert!(err.contains("outside the vocabulary"), "{err}");
    }
}
