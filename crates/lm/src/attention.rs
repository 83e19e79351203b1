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

use crate::kernels::{exp, gemm_into, par_chunks_mut, wide, Dst, Mat};
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
            candle_core::bail!(
                "causal-attention: qkv must be [B, T, 3 d], got {:?}",
                l.dims()
            );
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

/// Query rows per block. Block `[r0, r1)` needs only keys `0..r1`, so the products skip most
/// of the masked upper triangle (for 128 tokens, 62.5 % of the full products' work).
const QUERY_BLOCK: usize = 32;

/// The query blocks `[r0, r1)` of `t` tokens.
fn query_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t.div_ceil(QUERY_BLOCK)).map(move |i| (i * QUERY_BLOCK, ((i + 1) * QUERY_BLOCK).min(t)))
}

/// Rows `r0..r1` of a matrix view.
fn row_range(m: Mat, r0: usize, r1: usize) -> Mat {
    Mat {
        off: m.off + r0 * m.rs,
        rows: r1 - r0,
        ..m
    }
}

/// The `t x t` probability (or score-gradient) block `[r0, r1) x [0, r1)` of `p`, writable.
fn block_dst(p: &mut [f32], t: usize, r0: usize) -> Dst<'_> {
    Dst {
        data: p,
        off: r0 * t,
        rs: t,
        cs: 1,
    }
}

/// Causal softmax in place over rows `r0..r1` of `scale * s` (`t x t`, only columns `..r1`
/// used): row `i` keeps columns `0..=i`; columns `i + 1..r1` become exactly zero and are never
/// exponentiated.
#[inline(always)]
fn causal_softmax_rows(s: &mut [f32], t: usize, r0: usize, r1: usize, scale: f32) {
    for i in r0..r1 {
        let row = &mut s[i * t..i * t + r1];
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

/// One head's causal probabilities `P = softmax(q k^T * scale + mask)` of one sequence into the
/// `t x t` buffer `p` (blocks only: entries right of each block's last key are never written).
#[inline(always)]
fn probabilities(q: Mat, k: Mat, t: usize, scale: f32, p: &mut [f32]) {
    for (r0, r1) in query_blocks(t) {
        let (qb, kb) = (row_range(q, r0, r1), row_range(k, 0, r1));
        gemm_into(block_dst(p, t, r0), qb, kb.t(), false, false);
        causal_softmax_rows(p, t, r0, r1, scale);
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

/// Runs `f(sequence, out_chunk, probs_chunk)` for every sequence in parallel, where `out` has
/// `out_len` elements per sequence and `probs` (when kept) `h * t * t`.
fn per_sequence(
    out: &mut [f32],
    out_len: usize,
    probs: Option<&mut [f32]>,
    probs_len: usize,
    f: impl Fn(usize, &mut [f32], Option<&mut [f32]>) + Sync,
) {
    use rayon::prelude::*;
    let kept = |(i, (o, p))| {
        wide(
            #[inline(always)]
            || f(i, o, Some(p)),
        )
    };
    match probs {
        Some(p) if crate::kernels::threads() > 1 => out
            .par_chunks_mut(out_len)
            .zip(p.par_chunks_mut(probs_len))
            .enumerate()
            .for_each(kept),
        Some(p) => out
            .chunks_mut(out_len)
            .zip(p.chunks_mut(probs_len))
            .enumerate()
            .for_each(kept),
        None => par_chunks_mut(
            out,
            out_len,
            #[inline(always)]
            |start, o| f(start / out_len, o, None),
        ),
    }
}

/// Attention of every sequence of `qkv` `[B, T, 3 d]` into `y` `[B, T, d]`; `probs`
/// (`[B, H, T, T]`), when given, keeps the probabilities for [`backward`].
pub(crate) fn forward(qkv: &[f32], dm: Dims, scale: f32, y: &mut [f32], probs: Option<&mut [f32]>) {
    let (t, d) = (dm.t, dm.d());
    per_sequence(
        y,
        t * d,
        probs,
        dm.h * t * t,
        #[inline(always)]
        |b, y, kept| {
            let seq = &qkv[b * t * 3 * d..][..t * 3 * d];
            let mut scratch = Vec::new();
            let keep = kept.is_some();
            let p_all = match kept {
                Some(p) => p,
                None => {
                    scratch.resize(t * t, 0f32);
                    &mut scratch[..]
                }
            };
            for head in 0..dm.h {
                // Kept: each head has its own block; otherwise one scratch block is reused.
                let p = &mut p_all[if keep { head * t * t } else { 0 }..][..t * t];
                let (q, k, v) = (
                    dm.part(seq, 0, head),
                    dm.part(seq, 1, head),
                    dm.part(seq, 2, head),
                );
                probabilities(q, k, t, scale, p);
                for (r0, r1) in query_blocks(t) {
                    let pb = Mat::new(p, r0 * t, r1 - r0, r1, t, 1);
                    let out = strided(y, r0 * d + head * dm.hd, d);
                    gemm_into(out, pb, row_range(v, 0, r1), false, false);
                }
            }
        },
    );
}

/// Gradient of [`forward`] with respect to `qkv`, from the output gradient `gy` `[B, T, d]`,
/// into `dqkv` `[B, T, 3 d]`, using the probabilities [`forward`] kept (or recomputing them):
/// per query block, `dP = dY V^T`, `dS = scale * P * (dP - rowsum(dP * P))`, `dQ = dS K`,
/// `dK += dS^T Q`, `dV += P^T dY`.
pub(crate) fn backward(
    qkv: &[f32],
    gy: &[f32],
    dm: Dims,
    scale: f32,
    probs: Option<&[f32]>,
    dqkv: &mut [f32],
) {
    let (t, d) = (dm.t, dm.d());
    par_chunks_mut(
        dqkv,
        t * 3 * d,
        #[inline(always)]
        |start, dqkv| {
            let b = start / (t * 3 * d);
            let seq = &qkv[start..][..t * 3 * d];
            let gy_seq = &gy[b * t * d..][..t * d];
            let (mut p_own, mut dp) = (Vec::new(), vec![0f32; t * t]);
            // dK and dV accumulate over query blocks.
            dqkv.fill(0.0);
            for head in 0..dm.h {
                let (q, k, v) = (
                    dm.part(seq, 0, head),
                    dm.part(seq, 1, head),
                    dm.part(seq, 2, head),
                );
                let p: &[f32] = match probs {
                    Some(all) => &all[(b * dm.h + head) * t * t..][..t * t],
                    None => {
                        p_own.resize(t * t, 0f32);
                        probabilities(q, k, t, scale, &mut p_own);
                        &p_own
                    }
                };
                let gyh = Mat::new(gy_seq, head * dm.hd, t, dm.hd, d, 1);
                for (r0, r1) in query_blocks(t) {
                    let pb = Mat::new(p, r0 * t, r1 - r0, r1, t, 1);
                    let gyb = row_range(gyh, r0, r1);
                    gemm_into(
                        strided(dqkv, 2 * d + head * dm.hd, 3 * d),
                        pb.t(),
                        gyb,
                        true,
                        false,
                    );
                    gemm_into(
                        block_dst(&mut dp, t, r0),
                        gyb,
                        row_range(v, 0, r1).t(),
                        false,
                        false,
                    );
                    for i in r0..r1 {
                        let (dr, pr) = (&mut dp[i * t..i * t + r1], &p[i * t..i * t + r1]);
                        let (keep, masked) = dr.split_at_mut(i + 1);
                        let pr = &pr[..=i];
                        let dot: f32 = keep.iter().zip(pr).map(|(a, b)| a * b).sum();
                        for (x, &pv) in keep.iter_mut().zip(pr) {
                            *x = scale * pv * (*x - dot);
                        }
                        masked.fill(0.0);
                    }
                    let ds = Mat::new(&dp, r0 * t, r1 - r0, r1, t, 1);
                    let dq = strided(dqkv, r0 * 3 * d + head * dm.hd, 3 * d);
                    gemm_into(dq, ds, row_range(k, 0, r1), false, false);
                    let dk = strided(dqkv, d + head * dm.hd, 3 * d);
                    gemm_into(dk, ds.t(), row_range(q, r0, r1), true, false);
                }
            }
        },
    );
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
        forward(qkv, dm, self.scale, &mut out, None);
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
        backward(qkv, g, dm, self.0.scale, None, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{normal_tensor, normal_var};
    use crate::ops::max_abs_diff;
    use candle_core::{Device, D};

    /// The fused attention and its gradient agree with the same function written with candle's
    /// differentiable ops (split, transpose, matmul, scale, mask, composite softmax), on one
    /// thread and on two.
    #[test]
    fn attention_matches_candle_and_its_gradient() {
        let dev = Device::Cpu;
        // 70 tokens: three query blocks, the last one ragged.
        let (b, t, h, hd) = (3, 70, 2, 5);
        let d = h * hd;
        let qkv = normal_var(7, 1.5, (b, t, 3 * d));
        let r = normal_tensor(8, 1.0, (b, t, d));
        let mask: Vec<f32> = (0..t * t)
            .map(|i| {
                if i % t > i / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &dev).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        let reference = |x: &Tensor| -> Tensor {
            let x = x.reshape((b, t, 3, h, hd)).unwrap();
            let part = |i| {
                x.narrow(2, i, 1)
                    .unwrap()
                    .squeeze(2)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let (q, k, v) = (part(0), part(1), part(2));
            let s = (q.matmul(&k.t().unwrap()).unwrap() * scale as f64)
                .unwrap()
                .broadcast_add(&mask)
                .unwrap();
            let p = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
            p.matmul(&v)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((b, t, d))
                .unwrap()
        };
        for threads in [Some(1), Some(2)] {
            crate::with_threads(threads, || {
                let fast = causal_attention(qkv.as_tensor(), h, scale).unwrap();
                let slow = reference(qkv.as_tensor());
                let diff = max_abs_diff(&fast, &slow).unwrap();
                assert!(
                    diff < 1e-5,
                    "forward differs by {diff} ({threads:?} threads)"
                );
                let g1 = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let (a, c) = (
                    g1.get(qkv.as_tensor()).unwrap(),
                    g2.get(qkv.as_tensor()).unwrap(),
                );
                let diff = max_abs_diff(a, c).unwrap();
                assert!(
                    diff < 1e-5,
                    "gradient differs by {diff} ({threads:?} threads)"
                );
                // Queries and keys get a gradient (candle's softmax_last_dim would give none).
                let dq = a
                    .narrow(2, 0, 2 * d)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                assert!(dq.to_scalar::<f32>().unwrap() > 1e-3);
            });
        }
        let bad = Tensor::zeros((2, 3, 7), candle_core::DType::F32, &dev).unwrap();
        assert!(causal_attention(&bad, 2, 1.0).is_err());
    }
}
