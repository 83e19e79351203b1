//! Fused CPU operations with their own backward passes, as candle custom ops (the kernels
//! themselves are in [`crate::kernels`]).
//!
//! candle builds these functions from many elementwise tensor ops (each a separate pass over
//! memory, and several more in the backward pass), or provides them with no backward pass at
//! all, in which case gradients silently stop there: `candle_nn::ops::layer_norm` and
//! `candle_nn::ops::softmax_last_dim` are both `apply_op1_no_bwd` (attention, which needs the
//! latter, is in `attention.rs`). Each op here is one pass forward and one backward, and a test
//! checks it and its gradient against the same function written with candle's differentiable
//! ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use crate::kernels;

/// The contiguous `f32` data of a custom op's input.
pub(crate) fn f32_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: only f32 is supported"),
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
        candle_core::bail!("{op}: shape mismatch");
    }
    Ok((x, g))
}

fn last_dim(l: &Layout) -> usize {
    *l.dims().last().unwrap_or(&1)
}

/// Largest absolute elementwise difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
}

/// A shape-preserving op given by its two kernels, over rows of the last dimension `d`: the
/// forward pass from `x`, the backward pass from `x` and the output gradient `g`.
trait RowKernel: Copy + Send + Sync + 'static {
    const NAME: &'static str;
    const BWD_NAME: &'static str;
    fn forward(&self, x: &[f32], d: usize, out: &mut [f32]);
    fn backward(&self, x: &[f32], g: &[f32], d: usize, out: &mut [f32]);
}

/// A [`RowKernel`] as a candle op with a backward pass.
#[derive(Clone, Copy)]
struct Fused<K>(K);

impl<K: RowKernel> Fused<K> {
    fn apply(kernel: K, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1(Fused(kernel))
    }
}

impl<K: RowKernel> CustomOp1 for Fused<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, K::NAME)?;
        let mut out = vec![0f32; x.len()];
        self.0.forward(x, last_dim(l), &mut out);
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
            .apply_op2_no_bwd(&grad_res.contiguous()?, &FusedBwd(self.0))?;
        Ok(Some(dx))
    }
}

/// The gradient of a [`Fused`] op.
struct FusedBwd<K>(K);

impl<K: RowKernel> CustomOp2 for FusedBwd<K> {
    fn name(&self) -> &'static str {
        K::BWD_NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = f32_pair(s1, l1, s2, l2, K::BWD_NAME)?;
        let mut out = vec![0f32; x.len()];
        self.0.backward(x, g, last_dim(l1), &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// LayerNorm over the last dimension: a fused normalization followed by the affine map.
pub(crate) fn layer_norm(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
) -> candle_core::Result<Tensor> {
    Fused::apply(LnHat { eps }, x)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

/// `(x - mean) / sqrt(var + eps)` over the last dimension.
#[derive(Clone, Copy)]
struct LnHat {
    eps: f32,
}

impl RowKernel for LnHat {
    const NAME: &'static str = "ln-hat";
    const BWD_NAME: &'static str = "ln-hat-bwd";
    fn forward(&self, x: &[f32], d: usize, out: &mut [f32]) {
        kernels::ln_hat(x, d, self.eps, out)
    }
    fn backward(&self, x: &[f32], g: &[f32], d: usize, out: &mut [f32]) {
        kernels::ln_hat_bwd(x, g, d, self.eps, out)
    }
}

/// GELU, tanh approximation (GPT-2's), with a fused backward pass. candle's own `gelu` computes
/// the same values, but its backward pass builds the derivative from about ten temporary tensors.
pub(crate) fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    Fused::apply(GeluTanh, x)
}

#[derive(Clone, Copy)]
struct GeluTanh;

impl RowKernel for GeluTanh {
    const NAME: &'static str = "gelu-tanh";
    const BWD_NAME: &'static str = "gelu-tanh-bwd";
    fn forward(&self, x: &[f32], _d: usize, out: &mut [f32]) {
        kernels::gelu(x, out)
    }
    fn backward(&self, x: &[f32], g: &[f32], _d: usize, out: &mut [f32]) {
        kernels::gelu_bwd(x, g, out)
    }
}

/// Mean cross-entropy (nats) of `logits` `[N, V]` against `targets` `[N]` (`u32`), with its
/// backward pass `(softmax(logits) - onehot(target)) * grad / N`. candle's `cross_entropy` is a
/// log-softmax of five ops plus a gather and a sum, each a pass over `N x V` (and more passes
/// backward); this is one pass each way. The value does not depend on the thread count.
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

/// The logits and targets of a cross-entropy op, targets checked against the vocabulary.
fn ce_inputs<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(&'a [f32], &'a [u32], usize)> {
    let x = f32_slice(s1, l1, "cross-entropy")?;
    let (a, b) = l2
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("cross-entropy: targets not contiguous".into()))?;
    let CpuStorage::U32(tg) = s2 else {
        candle_core::bail!("cross-entropy: targets must be u32");
    };
    let v = last_dim(l1);
    let tg = &tg[a..b];
    kernels::check_targets(tg, v)
        .map_err(|e| candle_core::Error::Msg(format!("cross-entropy: {e}")))?;
    Ok((x, tg, v))
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
        let (x, tg, v) = ce_inputs(s1, l1, s2, l2)?;
        let mean = kernels::cross_entropy(x, tg, v);
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
        let (x, tg, v) = ce_inputs(s1, l1, s2, l2)?;
        let mut out = vec![0f32; x.len()];
        kernels::cross_entropy_bwd(x, tg, v, self.scale, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `x + b` for `x` `[N, F]` and a bias `b` `[F]`, with a backward pass whose bias gradient is one
/// pass of column sums. candle's broadcast add reduces the gradient with a strided
/// `sum_keepdim(0)`, which measured 25x slower (10.6 ms against 0.4 ms for `[4096, 768]`).
pub(crate) fn bias_add(x: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (_, f) = x.dims2()?;
    if b.dims() != [f] {
        candle_core::bail!(
            "bias-add: bias {:?} does not match {:?}",
            b.dims(),
            x.dims()
        );
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
        kernels::par_rows(
            &mut out,
            f,
            #[inline(always)]
            |r0, o| {
                for (or, xr) in o.chunks_exact_mut(f).zip(x[r0 * f..].chunks_exact(f)) {
                    for ((o, &xv), &bv) in or.iter_mut().zip(xr).zip(b) {
                        *o = xv + bv;
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad_res.contiguous()?;
        let db = g.apply_op1_no_bwd(&ColumnSums)?;
        Ok((Some(g), Some(db)))
    }
}

/// Column sums of `[N, F]`, as `[F]`.
struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, "column-sums")?;
        let f = last_dim(l);
        let mut out = vec![0f32; f];
        kernels::column_sums(g, f, &mut out, false);
        Ok((CpuStorage::F32(out), Shape::from(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::CHUNK;
    use crate::model::{normal, normal_tensor, normal_var};
    use candle_core::{Device, Var, D};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The largest difference between the gradients, with respect to each of `vars`, of two
    /// computations of one value (`fast` and `reference`), both weighted by `r` and summed.
    fn gradient_gap(fast: Tensor, reference: Tensor, r: &Tensor, vars: &[&Var]) -> f32 {
        let grads = |y: Tensor| (y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let (g1, g2) = (grads(fast), grads(reference));
        vars.iter()
            .map(|v| {
                let (a, c) = (g1.get(v.as_tensor()), g2.get(v.as_tensor()));
                max_abs_diff(a.expect("gradient"), c.expect("gradient")).unwrap()
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn layer_norm_matches_reference_and_its_gradient() {
        let x = normal_var(1, 1.3, (5, 7));
        let w = normal_var(2, 1.0, 7);
        let b = normal_var(3, 1.0, 7);
        let r = normal_tensor(4, 1.0, (5, 7));
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
        let d = gradient_gap(fast, reference, &r, &[&x, &w, &b]);
        assert!(d < 1e-4, "gradient differs by {d}");
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
        let r = normal_tensor(6, 1.0, (n / 7, 7));
        for threads in [Some(1), Some(2)] {
            crate::with_threads(threads, || {
                let fast = gelu_tanh(x.as_tensor()).unwrap();
                let reference = x.as_tensor().gelu().unwrap();
                let d = max_abs_diff(&fast, &reference).unwrap();
                assert!(d < 1e-5, "forward differs by {d} ({threads:?} threads)");
                let d = gradient_gap(fast, reference, &r, &[&x]);
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
        let x = normal_var(9, 3.0, (n, v));
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
                let d = max_abs_diff(
                    g1.get(x.as_tensor()).unwrap(),
                    g2.get(x.as_tensor()).unwrap(),
                )
                .unwrap();
                assert!(d < 1e-6, "gradient differs by {d}");
            });
        }
        let bad = Tensor::from_vec(vec![v as u32; n], n, &dev).unwrap();
        let err = cross_entropy(x.as_tensor(), &bad).unwrap_err().to_string();
        assert!(err.contains("outside the vocabulary"), "{err}");
    }
}
