//! Fused causal self-attention on the CPU, with its backward pass.
//!
//! The input is the QKV projection as it comes out of the linear layer, `[B, T, 3 d]` (per token:
//! all heads' queries, then keys, then values), and the output is `[B, T, d]` (heads
//! concatenated), so no split, transpose or copy exists on either side. Each sequence is one
//! parallel work item; inside it, every head's four (forward) or seven (backward) small matrix
//! products run single-threaded through the `gemm` crate on strided views. candle's batched
//! matmul instead splits each of the `B * H` tiny products across threads, which measured slower
//! on two threads than on one; and candle's `softmax_last_dim` has no backward pass at all.
//!
//! Work per sequence is independent of the thread count, so results are bit-identical on one
//! thread and on several.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use crate::ops::{f32_slice, par_chunks_mut};

/// A read-only strided matrix view: element `(i, j)` is `data[off + i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    off: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Mat {
            data,
            off,
            rows,
            cols,
            rs,
            cs,
        }
    }
    fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
    fn last(&self) -> usize {
        self.off + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
    }
}

/// `dst = a b` (or `dst += a b` with `accumulate`), single-threaded. `dst` is the strided view
/// `(off, rs, cs)` of `out`, which must not overlap `a` or `b` (it cannot: it is borrowed
/// mutably). Every index is bounds-checked before the unchecked call.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    out: &mut [f32],
    off: usize,
    rs: usize,
    cs: usize,
    a: Mat,
    b: Mat,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(a.last() < a.data.len() && b.last() < b.data.len(), "operand view out of range");
    assert!(off + (m - 1) * rs + (n - 1) * cs < out.len(), "output view out of range");
    // SAFETY: every element gemm touches lies within the three slices (checked above); `out` is
    // a unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr().add(off),
            cs as isize,
            rs as isize,
            accumulate,
            a.data.as_ptr().add(a.off),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.off),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Causal softmax in place over the rows of the `t x t` matrix `s`, of `scale * s`; entries
/// above the diagonal become exactly zero.
fn causal_softmax_rows(s: &mut [f32], t: usize, scale: f32) {
    for (i, row) in s.chunks_exact_mut(t).enumerate() {
        let (keep, masked) = row.split_at_mut(i + 1);
        let max = keep.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
        let mut sum = 0f32;
        for v in keep.iter_mut() {
            *v = (*v * scale - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        keep.iter_mut().for_each(|v| *v *= inv);
        masked.fill(0.0);
    }
}

/// Shape of one call: batch, tokens, heads, head width.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    h: usize,
    hd: usize,
}

impl Dims {
    fn of(l: &Layout, n_head: usize) -> candle_core::Result<Self> {
        let &[b, t, three_d] = l.dims() else {
            candle_core::bail!("causal-attention: qkv must be [B, T, 3 d], got {:?}", l.dims());
        };
        if n_head == 0 || three_d % (3 * n_head) != 0 {
            candle_core::bail!("causal-attention: 3 d = {three_d} does not split into 3 x {n_head} heads");
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
    fn part<'a>(&self, qkv: &'a [f32], part: usize, head: usize) -> Mat<'a> {
        let d = self.d();
        Mat::new(qkv, part * d + head * self.hd, self.t, self.hd, 3 * d, 1)
    }
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
        let (t, d) = (dm.t, dm.d());
        let mut out = vec![0f32; dm.b * t * d];
        par_chunks_mut(&mut out, t * d, |start, y| {
            let seq = &qkv[start / d * 3 * d..][..t * 3 * d];
            let mut p = vec![0f32; t * t];
            for head in 0..dm.h {
                let (q, k, v) = (dm.part(seq, 0, head), dm.part(seq, 1, head), dm.part(seq, 2, head));
                gemm_into(&mut p, 0, t, 1, q, k.t(), false);
                causal_softmax_rows(&mut p, t, self.scale);
                gemm_into(y, head * dm.hd, d, 1, Mat::new(&p, 0, t, t, t, 1), v, false);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((dm.b, t, d))))
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

/// Gradient of [`CausalAttention`] with respect to `qkv`, recomputing the probabilities `P`:
/// `dV = P^T dY`, `dP = dY V^T`, `dS = scale * P * (dP - rowsum(dP * P))`, `dQ = dS K`,
/// `dK = dS^T Q`.
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
        let (t, d) = (dm.t, dm.d());
        if g.len() != dm.b * t * d {
            candle_core::bail!("causal-attention-bwd: gradient of the wrong size");
        }
        let mut out = vec![0f32; qkv.len()];
        par_chunks_mut(&mut out, t * 3 * d, |start, dqkv| {
            let seq = &qkv[start..][..t * 3 * d];
            let gy_all = &g[start / 3..][..t * d];
            let (mut p, mut dp) = (vec![0f32; t * t], vec![0f32; t * t]);
            for head in 0..dm.h {
                let (q, k, v) = (dm.part(seq, 0, head), dm.part(seq, 1, head), dm.part(seq, 2, head));
                let gy = Mat::new(gy_all, head * dm.hd, t, dm.hd, d, 1);
                gemm_into(&mut p, 0, t, 1, q, k.t(), false);
                causal_softmax_rows(&mut p, t, self.0.scale);
                let pm = Mat::new(&p, 0, t, t, t, 1);
                // dV = P^T dY
                gemm_into(dqkv, 2 * d + head * dm.hd, 3 * d, 1, pm.t(), gy, false);
                // dP = dY V^T, then dS in place
                gemm_into(&mut dp, 0, t, 1, gy, v.t(), false);
                for (i, (dr, pr)) in dp.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                    let (keep, masked) = dr.split_at_mut(i + 1);
                    let pr = &pr[..=i];
                    let dot: f32 = keep.iter().zip(pr).map(|(a, b)| a * b).sum();
                    for (x, &pv) in keep.iter_mut().zip(pr) {
                        *x = self.0.scale * pv * (*x - dot);
                    }
                    masked.fill(0.0);
                }
                let ds = Mat::new(&dp, 0, t, t, t, 1);
                // dQ = dS K, dK = dS^T Q
                gemm_into(dqkv, head * dm.hd, 3 * d, 1, ds, k, false);
                gemm_into(dqkv, d + head * dm.hd, 3 * d, 1, ds.t(), q, false);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
