//! Fused causal self-attention on the CPU, with its backward pass.
//!
//! The input is the QKV projection as it comes out of the linear layer, `[B, T, 3 d]` (per token:
//! all heads' queries, then keys, then values), and the output is `[B, T, d]` (heads
//! concatenated), so no split, transpose or copy exists on either side. Each sequence is one
//! parallel work item; inside it, every head's small matrix products (two forward, five
//! backward, the probabilities being recomputed) run single-threaded through the `gemm` crate on
//! strided views. candle's batched matmul instead splits each of the `B * H` tiny products
//! across threads, which measured slower on two threads than on one; and candle's
//! `softmax_last_dim` has no backward pass at all.
//!
//! Work per sequence is independent of the thread count, so results are bit-identical on one
//! thread and on several.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use crate::kernels::{exp, gemm_into, par_chunks_mut, Dst, Mat};
use crate::ops::f32_slice;

/// Shape of one attention call: batch, tokens, heads, head width.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub hd: usize,
}

impl Dims {
    fn of(l: &Layout, n_head: usize) -> candle_core::Result<Self> {
        let &[b, t, three_d] = l.dims() else {
            candle_core::bail!("causal-attention: qkv must be [B, T, 3 d], got {:?}", l.dims());
        };
        if n_head == 0 || !three_d.is_multiple_of(3 * n_head) {
            candle_core::bail!(
                "causal-attention: 3 d = {three_d} does not split into 3 x {n_head} heads"
            );
        }
        Ok(Dims {
            b,
            t,
            h: n_head,
            hd: three_d / 3 / n_head,
        })
    }

    fn d(&self) -> usize {
        self.h * self.hd
    }

    /// Query (`part` 0), key (1) or value (2) of head `head` within one sequence's `[T, 3 d]`.
    fn part<'a>(&self, seq: &'a [f32], part: usize, head: usize) -> Mat<'a> {
        let d = self.d();
        Mat::new(seq, part * d + head * self.hd, self.t, self.hd, 3 * d, 1)
    }
}

/// Causal softmax in place over the rows of the `t x t` matrix `s`, of `scale * s`; entries
/// above the diagonal become exactly zero and are never exponentiated.
fn causal_softmax_rows(s: &mut [f32], t: usize, scale: f32) {
    for (i, row) in s.chunks_exact_mut(t).enumerate() {
        let (keep, masked) = row.split_at_mut(i + 1);
        let max = keep.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
        for v in keep.iter_mut() {
            *v = exp(*v * scale - max);
        }
        let inv = 1.0 / keep.iter().sum::<f32>();
        keep.iter_mut().for_each(|v| *v *= inv);
        masked.fill(0.0);
    }
}

/// One head's columns of a row-major buffer with rows of `rs`, starting at column `off`.
fn strided(data: &mut [f32], off: usize, rs: usize) -> Dst<'_> {
    Dst {
        data,
        off,
        rs,
        cs: 1,
    }
}

/// Attention of every sequence of `qkv` `[B, T, 3 d]` into `y` `[B, T, d]`.
pub(crate) fn forward(qkv: &[f32], dm: Dims, scale: f32, y: &mut [f32]) {
    let (t, d) = (dm.t, dm.d());
    par_chunks_mut(y, t * d, |start, y| {
        let seq = &qkv[start / d * 3 * d..][..t * 3 * d];
        let mut p = vec![0f32; t * t];
        for head in 0..dm.h {
            let (q, k, v) = (dm.part(seq, 0, head), dm.part(seq, 1, head), dm.part(seq, 2, head));
            gemm_into(Dst::rows(&mut p, t), q, k.t(), false, false);
            causal_softmax_rows(&mut p, t, scale);
            gemm_into(strided(y, head * dm.hd, d), Mat::rows(&p, t, t), v, false, false);
        }
    });
}

/// Gradient of [`forward`] with respect to `qkv`, from the output gradient `gy` `[B, T, d]`,
/// into `dqkv` `[B, T, 3 d]`, recomputing the probabilities `P`: `dV = P^T dY`, `dP = dY V^T`,
/// `dS = scale * P * (dP - rowsum(dP * P))`, `dQ = dS K`, `dK = dS^T Q`.
pub(crate) fn backward(qkv: &[f32], gy: &[f32], dm: Dims, scale: f32, dqkv: &mut [f32]) {
    let (t, d) = (dm.t, dm.d());
    par_chunks_mut(dqkv, t * 3 * d, |start, dqkv| {
        let seq = &qkv[start..][..t * 3 * d];
        let gy_seq = &gy[start / 3..][..t * d];
        let (mut p, mut dp) = (vec![0f32; t * t], vec![0f32; t * t]);
        for head in 0..dm.h {
            let (q, k, v) = (dm.part(seq, 0, head), dm.part(seq, 1, head), dm.part(seq, 2, head));
            let gyh = Mat::new(gy_seq, head * dm.hd, t, dm.hd, d, 1);
            gemm_into(Dst::rows(&mut p, t), q, k.t(), false, false);
            causal_softmax_rows(&mut p, t, scale);
            let pm = Mat::rows(&p, t, t);
            gemm_into(strided(dqkv, 2 * d + head * dm.hd, 3 * d), pm.t(), gyh, false, false);
            gemm_into(Dst::rows(&mut dp, t), gyh, v.t(), false, false);
            for (i, (dr, pr)) in dp.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                let (keep, masked) = dr.split_at_mut(i + 1);
                let pr = &pr[..=i];
                let dot: f32 = keep.iter().zip(pr).map(|(a, b)| a * b).sum();
                for (x, &pv) in keep.iter_mut().zip(pr) {
                    *x = scale * pv * (*x - dot);
                }
                masked.fill(0.0);
            }
            let ds = Mat::rows(&dp, t, t);
            gemm_into(strided(dqkv, head * dm.hd, 3 * d), ds, k, false, false);
            gemm_into(strided(dqkv, d + head * dm.hd, 3 * d), ds.t(), q, false, false);
        }
    });
}

/// `softmax(q k^T * scale + causal mask) v` for every head of `qkv` `[B, T, 3 d]` with
/// `n_head` heads, as `[B, T, d]` (heads concatenated).
pub(crate) fn causal_attention(
    qkv: &Tensor,
    n_head: usize,
    scale: f32,
) -> candle_core::Result<Tensor> {
    qkv.contiguous()?
        .apply_op1(CausalAttention { n_head, scale })
}

#[derive(Clone, Copy)]
struct CausalAttention {
    n_head: usize,
    scale: f32,
}

impl CustomOp1 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(s, l, "causal-attention")?;
        let dm = Dims::of(l, self.n_head)?;
        let mut out = vec![0f32; dm.b * dm.t * dm.d()];
        forward(qkv, dm, self.scale, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((dm.b, dm.t, dm.d()))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d_qkv = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &CausalAttentionBwd(*self))?;
        Ok(Some(d_qkv))
    }
}

/// Gradient of [`CausalAttention`] with respect to `qkv`.
struct CausalAttentionBwd(CausalAttention);

impl CustomOp2 for CausalAttentionBwd {
    fn name(&self) -> &'static str {
        "causal-attention-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_slice(s1, l1, "causal-attention-bwd")?;
        let g = f32_slice(s2, l2, "causal-attention-bwd")?;
        let dm = Dims::of(l1, self.0.n_head)?;
        if g.len() != dm.b * dm.t * dm.d() {
            candle_core::bail!("causal-attention-bwd: gradient of the wrong size");
        }
        let mut out = vec![0f32; qkv.len()];
        backward(qkv, g, dm, self.0.scale, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normal;
    use crate::ops::max_abs_diff;
    use candle_core::{Device, Var, D};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The fused attention and its gradient agree with the same function written with candle's
    /// differentiable ops (split, transpose, matmul, scale, mask, composite softmax), on one
    /// thread and on two.
    #[test]
    fn attention_matches_candle_and_its_gradient() {
        let dev = Device::Cpu;
        let (b, t, h, hd) = (3, 11, 2, 5);
        let d = h * hd;
        let n = b * t * 3 * d;
        let qkv = Var::from_tensor(
            &Tensor::from_vec(normal(&mut ChaCha8Rng::seed_from_u64(7), n, 1.5), (b, t, 3 * d), &dev)
                .unwrap(),
        )
        .unwrap();
        let r = Tensor::from_vec(normal(&mut ChaCha8Rng::seed_from_u64(8), b * t * d, 1.0), (b, t, d), &dev)
            .unwrap();
        let mask: Vec<f32> = (0..t * t)
            .map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &dev).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        let reference = |x: &Tensor| -> Tensor {
            let x = x.reshape((b, t, 3, h, hd)).unwrap();
            let part = |i| x.narrow(2, i, 1).unwrap().squeeze(2).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let (q, k, v) = (part(0), part(1), part(2));
            let s = (q.matmul(&k.t().unwrap()).unwrap() * scale as f64).unwrap().broadcast_add(&mask).unwrap();
            let p = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
            p.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b, t, d)).unwrap()
        };
        for threads in [Some(1), Some(2)] {
            crate::with_threads(threads, || {
                let fast = causal_attention(qkv.as_tensor(), h, scale).unwrap();
                let slow = reference(qkv.as_tensor());
                let diff = max_abs_diff(&fast, &slow).unwrap();
                assert!(diff < 1e-5, "forward differs by {diff} ({threads:?} threads)");
                let g1 = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let (a, c) = (g1.get(qkv.as_tensor()).unwrap(), g2.get(qkv.as_tensor()).unwrap());
                let diff = max_abs_diff(a, c).unwrap();
                assert!(diff < 1e-5, "gradient differs by {diff} ({threads:?} threads)");
                // Queries and keys get a gradient (candle's softmax_last_dim would give none).
                let dq = a.narrow(2, 0, 2 * d).unwrap().abs().unwrap().sum_all().unwrap();
                assert!(dq.to_scalar::<f32>().unwrap() > 1e-3);
            });
        }
        let bad = Tensor::zeros((2, 3, 7), candle_core::DType::F32, &dev).unwrap();
        assert!(causal_attention(&bad, 2, 1.0).is_err());
    }
}
