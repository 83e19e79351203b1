//! Slice-level CPU kernels: the one implementation of every fused function, used both by the
//! candle custom ops ([`crate::ops`], [`crate::attention`]) and by the hand-written training
//! pass ([`crate::backprop`]).
//!
//! Row-wise kernels take whole rows; [`par_rows`] splits them across candle's thread count in
//! chunks that do not depend on that count's value, and no kernel reduces across work items in
//! an order that does, so every result is bit-identical on one thread and on several.

/// Elements per parallel work item of the elementwise kernels.
pub(crate) const CHUNK: usize = 1 << 14;

/// The thread count candle was given (`with_threads`, `RAYON_NUM_THREADS`).
pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Runs `f` compiled for AVX2 when the CPU has it (checked once, then a cached flag), else as
/// built (the workspace targets baseline x86-64: 4-wide SSE2).
///
/// `f` is inlined into a function with the wider target features, so the kernels' loops get
/// 8-wide vectors. The arithmetic is the same: Rust never contracts a multiply and an add into
/// an FMA, nor reorders a float sum, whatever the target features, so the results are
/// bit-identical on CPUs with and without AVX2 (a test compares both paths). Every parallel
/// driver below runs its work items through this.
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx,avx2")]
        #[inline]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && !force_baseline() {
            // SAFETY: the CPU supports every feature `avx2` is compiled with (checked above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Whether [`wide`] must run the baseline build (tests compare the two paths).
#[cfg(test)]
fn force_baseline() -> bool {
    BASELINE.with(|b| b.get())
}
#[cfg(not(test))]
#[inline(always)]
fn force_baseline() -> bool {
    false
}
#[cfg(test)]
thread_local! {
    static BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with [`wide`] taking the baseline build on this thread (on one thread every kernel
/// runs on the caller's).
#[cfg(test)]
pub(crate) fn with_baseline<R>(f: impl FnOnce() -> R) -> R {
    BASELINE.with(|b| b.set(true));
    let out = f();
    BASELINE.with(|b| b.set(false));
    out
}

/// Runs `f(first_element, chunk)` over `len`-element chunks of `out`, on the rayon pool when
/// more than one thread is allowed.
pub(crate) fn par_chunks_mut(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    let len = len.max(1);
    let f = |(i, c): (usize, &mut [f32])| {
        wide(
            #[inline(always)]
            || f(i * len, c),
        )
    };
    if threads() > 1 {
        out.par_chunks_mut(len).enumerate().for_each(f);
    } else {
        out.chunks_mut(len).enumerate().for_each(f);
    }
}

/// Elements per parallel work item of a row-wise kernel on rows of `d`: whole rows, about
/// [`CHUNK`].
pub(crate) fn rows_chunk(d: usize) -> usize {
    d.max(1) * (CHUNK / d.max(1)).max(1)
}

/// `f(first_row, rows_of_out)` over chunks of whole `d`-wide rows of `out`, in parallel.
pub(crate) fn par_rows(out: &mut [f32], d: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    par_chunks_mut(
        out,
        rows_chunk(d),
        #[inline(always)]
        |start, o| f(start / d.max(1), o),
    );
}

/// `e^x` in single precision without a libm call, so that loops over it vectorize: range
/// reduction by `ln 2` and a degree-6 polynomial (Cephes' `expf` coefficients), then `2^n` built
/// in the exponent bits. Relative error below 3e-7 on `[-87, 88]` (a test checks it against
/// `f64::exp`); inputs are clamped to that range, so the result is never `inf` or a denormal.
/// libm's scalar `expf` was the largest elementwise cost of a training step.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n + 127 into the exponent field; t's low bits hold n + 2^22 (two's complement).
    let n_int = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// `tanh` through one [`exp`]; absolute error below 1e-6, which is all GELU needs.
#[inline(always)]
fn tanh(y: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * y) + 1.0)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// GELU, tanh approximation (GPT-2's), elementwise.
pub(crate) fn gelu(x: &[f32], out: &mut [f32]) {
    par_chunks_mut(
        out,
        CHUNK,
        #[inline(always)]
        |start, o| {
            for (o, &v) in o.iter_mut().zip(&x[start..]) {
                *o = 0.5 * v * (1.0 + tanh(SQRT_2_OVER_PI * v * (1.0 + GELU_C * v * v)));
            }
        },
    );
}

/// `g * gelu'(x)`: `0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3c x^2)` with
/// `t = tanh(sqrt(2/pi) (x + c x^3))`.
pub(crate) fn gelu_bwd(x: &[f32], g: &[f32], out: &mut [f32]) {
    par_chunks_mut(
        out,
        CHUNK,
        #[inline(always)]
        |start, o| {
            for ((o, &v), &gv) in o.iter_mut().zip(&x[start..]).zip(&g[start..]) {
                let t = tanh(SQRT_2_OVER_PI * v * (1.0 + GELU_C * v * v));
                let dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v);
                *o = gv * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * dt);
            }
        },
    );
}

/// Mean and `1 / sqrt(var + eps)` of one row.
#[inline(always)]
fn row_stats(xr: &[f32], eps: f32) -> (f32, f32) {
    let d = xr.len() as f32;
    let mean = xr.iter().sum::<f32>() / d;
    let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
    (mean, 1.0 / (var + eps).sqrt())
}

/// [`row_stats`] of every `d`-wide row of `x`, into `stats`, eight rows at a time: each row is
/// still summed in column order, so every value is bit-identical to [`row_stats`]'s, but eight
/// serial addition chains run side by side instead of one after another (a 192-wide row is
/// two chains of 192 dependent additions, which made LayerNorm latency-bound).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // column `c` of eight rows per step is the point
fn rows_stats(x: &[f32], d: usize, eps: f32, stats: &mut Vec<(f32, f32)>) {
    const ROWS: usize = 8;
    stats.clear();
    let n = d as f32;
    let mut groups = x.chunks_exact(ROWS * d);
    for g in &mut groups {
        let rows: [&[f32]; ROWS] = std::array::from_fn(|j| &g[j * d..(j + 1) * d]);
        // -0.0: the neutral element `Iterator::sum` starts from.
        let mut s = [-0.0f32; ROWS];
        for c in 0..d {
            for j in 0..ROWS {
                s[j] += rows[j][c];
            }
        }
        let mean = s.map(|s| s / n);
        let mut q = [-0.0f32; ROWS];
        for c in 0..d {
            for j in 0..ROWS {
                let t = rows[j][c] - mean[j];
                q[j] += t * t;
            }
        }
        for j in 0..ROWS {
            stats.push((mean[j], 1.0 / (q[j] / n + eps).sqrt()));
        }
    }
    stats.extend(
        groups
            .remainder()
            .chunks_exact(d)
            .map(|r| row_stats(r, eps)),
    );
}

/// LayerNorm without its affine map: `(x - mean) / sqrt(var + eps)` per `d`-wide row.
pub(crate) fn ln_hat(x: &[f32], d: usize, eps: f32, out: &mut [f32]) {
    layer_norm_rows(x, d, eps, None, out)
}

/// LayerNorm with its affine map, `(x - mean) / sqrt(var + eps) * w + b` per row, in one pass:
/// bit-identical to [`ln_hat`] followed by the affine map, without the normalized rows in
/// between (evaluation keeps no activations).
pub(crate) fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_rows(x, w.len(), eps, Some((w, b)), out)
}

fn layer_norm_rows(
    x: &[f32],
    d: usize,
    eps: f32,
    affine: Option<(&[f32], &[f32])>,
    out: &mut [f32],
) {
    par_rows(
        out,
        d,
        #[inline(always)]
        |r0, o| {
            let x = &x[r0 * d..][..o.len()];
            let mut stats = Vec::with_capacity(o.len() / d.max(1));
            rows_stats(x, d, eps, &mut stats);
            let rows = x.chunks_exact(d).zip(o.chunks_exact_mut(d)).zip(&stats);
            for ((xr, or), &(mean, inv)) in rows {
                match affine {
                    Some((w, b)) => {
                        for (((o, v), &wv), &bv) in or.iter_mut().zip(xr).zip(w).zip(b) {
                            *o = (v - mean) * inv * wv + bv;
                        }
                    }
                    None => {
                        for (o, v) in or.iter_mut().zip(xr) {
                            *o = (v - mean) * inv;
                        }
                    }
                }
            }
        },
    );
}

/// Gradient of [`ln_hat`] from its input `x`: `dx = inv * (g - mean(g) - xhat * mean(g * xhat))`
/// per row.
pub(crate) fn ln_hat_bwd(x: &[f32], g: &[f32], d: usize, eps: f32, out: &mut [f32]) {
    par_rows(
        out,
        d,
        #[inline(always)]
        |r0, o| {
            let mut stats = Vec::with_capacity(o.len() / d.max(1));
            rows_stats(&x[r0 * d..][..o.len()], d, eps, &mut stats);
            let rows = x[r0 * d..].chunks_exact(d).zip(g[r0 * d..].chunks_exact(d));
            for (((xr, gr), or), &(mean, inv)) in rows.zip(o.chunks_exact_mut(d)).zip(&stats) {
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
        },
    );
}

/// Writes `softmax(row)` into `out` and returns `ln(sum(exp(row)))`, stably.
#[inline(always)]
fn softmax_row(row: &[f32], out: &mut [f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for (o, &v) in out.iter_mut().zip(row) {
        *o = exp(v - max);
    }
    let sum: f32 = out.iter().sum();
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
    max + sum.ln()
}

/// Checks that every target lies in `0..v`.
pub(crate) fn check_targets(targets: &[u32], v: usize) -> Result<(), String> {
    match targets.iter().find(|&&t| t as usize >= v) {
        Some(bad) => Err(format!("target {bad} outside the vocabulary of {v}")),
        None => Ok(()),
    }
}

/// Mean cross-entropy of `logits` `[N, V]` against `targets` (checked by [`check_targets`]).
/// Per-row losses are summed in row order in `f64`.
pub(crate) fn cross_entropy(logits: &[f32], targets: &[u32], v: usize) -> f64 {
    mean_of_row_losses(
        targets.len(),
        v,
        #[inline(always)]
        |r0, o| {
            let mut scratch = vec![0f32; v];
            for (i, o) in o.iter_mut().enumerate() {
                let row = &logits[(r0 + i) * v..][..v];
                *o = softmax_row(row, &mut scratch) - row[targets[r0 + i] as usize];
            }
        },
    )
}

/// The mean of `n` per-row losses of rows `v` wide, `row_losses(r0, out)` writing the losses
/// of rows `r0..r0 + out.len()`; the rows are split over the threads, and the losses summed in
/// row order in `f64`, so the result does not depend on the thread count.
fn mean_of_row_losses(n: usize, v: usize, row_losses: impl Fn(usize, &mut [f32]) + Sync) -> f64 {
    let mut losses = vec![0f32; n];
    par_chunks_mut(&mut losses, (CHUNK / v.max(1)).max(1), row_losses);
    losses.iter().map(|&l| l as f64).sum::<f64>() / n.max(1) as f64
}

/// Mean cross-entropy of `logits` `[N, V]` against `targets` (checked by [`check_targets`]),
/// for evaluation: each row's `ln(sum(exp(row - max)))` with the maximum and the sum taken in
/// eight interleaved lanes (vector registers instead of one serial chain of 2048 additions),
/// and no probabilities written. Its per-row sums are therefore rounded differently from
/// [`cross_entropy`]'s (relative differences of order 1e-7); training never uses it. Per-row
/// losses are summed in row order in `f64`, so the result does not depend on the thread count.
pub(crate) fn mean_nll(logits: &[f32], targets: &[u32], v: usize) -> f64 {
    const LANES: usize = 8;
    mean_of_row_losses(
        targets.len(),
        v,
        #[inline(always)]
        |r0, o| {
            for (i, o) in o.iter_mut().enumerate() {
                let row = &logits[(r0 + i) * v..][..v];
                let (body, tail) = row.split_at(v - v % LANES);
                let mut m = [f32::NEG_INFINITY; LANES];
                for c in body.chunks_exact(LANES) {
                    for (m, &x) in m.iter_mut().zip(c) {
                        *m = m.max(x);
                    }
                }
                let max = m
                    .iter()
                    .chain(tail)
                    .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let mut s = [0f32; LANES];
                for c in body.chunks_exact(LANES) {
                    for (s, &x) in s.iter_mut().zip(c) {
                        *s += exp(x - max);
                    }
                }
                let sum = s.iter().sum::<f32>() + tail.iter().map(|&x| exp(x - max)).sum::<f32>();
                *o = max + sum.ln() - row[targets[r0 + i] as usize];
            }
        },
    )
}

/// Gradient of `scale * sum of row losses` with respect to the logits:
/// `scale * (softmax(row) - onehot(target))`, written into `out` (which may be a copy of the
/// logits' buffer: each row is read before it is written).
pub(crate) fn cross_entropy_bwd(
    logits: &[f32],
    targets: &[u32],
    v: usize,
    scale: f32,
    out: &mut [f32],
) {
    par_rows(
        out,
        v,
        #[inline(always)]
        |r0, o| {
            for (i, or) in o.chunks_exact_mut(v).enumerate() {
                softmax_row(&logits[(r0 + i) * v..][..v], or);
                or.iter_mut().for_each(|x| *x *= scale);
                or[targets[r0 + i] as usize] -= scale;
            }
        },
    );
}

/// In-place variant of [`cross_entropy_bwd`] (the logits are overwritten by their gradient);
/// returns the mean loss as [`cross_entropy`] would.
pub(crate) fn cross_entropy_fused(
    logits: &mut [f32],
    targets: &[u32],
    v: usize,
    scale: f32,
) -> f64 {
    let n = targets.len();
    let mut losses = vec![0f32; n];
    {
        use rayon::prelude::*;
        let rows = (CHUNK / v.max(1)).max(1);
        let work = |(c, (lg, ls)): (usize, (&mut [f32], &mut [f32]))| {
            wide(
                #[inline(always)]
                || {
                    let mut scratch = vec![0f32; v];
                    for (i, (row, l)) in lg.chunks_exact_mut(v).zip(ls.iter_mut()).enumerate() {
                        let t = targets[c * rows + i] as usize;
                        *l = softmax_row(row, &mut scratch) - row[t];
                        for (x, &p) in row.iter_mut().zip(&scratch) {
                            *x = p * scale;
                        }
                        row[t] -= scale;
                    }
                },
            )
        };
        if threads() > 1 {
            logits
                .par_chunks_mut(rows * v)
                .zip(losses.par_chunks_mut(rows))
                .enumerate()
                .for_each(work);
        } else {
            logits
                .chunks_mut(rows * v)
                .zip(losses.chunks_mut(rows))
                .enumerate()
                .for_each(work);
        }
    }
    losses.iter().map(|&l| l as f64).sum::<f64>() / n.max(1) as f64
}

/// Column sums of `g` `[N, F]` into `out` `[F]` (added to what is there when `accumulate`).
/// Each column is summed over the rows in row order; threads split the columns.
pub(crate) fn column_sums(g: &[f32], f: usize, out: &mut [f32], accumulate: bool) {
    par_chunks_mut(
        out,
        64,
        #[inline(always)]
        |c0, acc| {
            if !accumulate {
                acc.fill(0.0);
            }
            for row in g.chunks_exact(f) {
                for (a, &v) in acc.iter_mut().zip(&row[c0..]) {
                    *a += v;
                }
            }
        },
    );
}

/// Column sums of `g * x` (both `[N, F]`) into `out` `[F]`, accumulated.
pub(crate) fn column_dot(g: &[f32], x: &[f32], f: usize, out: &mut [f32]) {
    par_chunks_mut(
        out,
        64,
        #[inline(always)]
        |c0, acc| {
            for (gr, xr) in g.chunks_exact(f).zip(x.chunks_exact(f)) {
                for ((a, &gv), &xv) in acc.iter_mut().zip(&gr[c0..]).zip(&xr[c0..]) {
                    *a += gv * xv;
                }
            }
        },
    );
}

/// A read-only strided matrix view: element `(i, j)` is `data[off + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    pub fn new(
        data: &'a [f32],
        off: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        Mat {
            data,
            off,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat::new(data, 0, rows, cols, cols, 1)
    }

    pub fn t(self) -> Self {
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

/// Where a product goes: the strided view `(off, rs, cs)` of `data`.
pub(crate) struct Dst<'a> {
    pub data: &'a mut [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Dst<'a> {
    /// A whole row-major matrix with rows of `cols`.
    pub fn rows(data: &'a mut [f32], cols: usize) -> Self {
        Dst {
            data,
            off: 0,
            rs: cols,
            cs: 1,
        }
    }
}

/// `dst = a b`, or `dst += a b` with `accumulate`, through the `gemm` crate (the one candle
/// uses). `parallel` lets it split the product across the thread count; per-head products
/// inside an already parallel loop pass `false`. Every index is bounds-checked before the
/// unchecked call.
pub(crate) fn gemm_into(dst: Dst, a: Mat, b: Mat, accumulate: bool, parallel: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions of a matrix product");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst.off + (m - 1) * dst.rs + (n - 1) * dst.cs < dst.data.len(),
        "output view out of range"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[dst.off + i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(
        a.last() < a.data.len() && b.last() < b.data.len(),
        "operand view out of range"
    );
    let par = match threads() {
        t if parallel && t > 1 => gemm::Parallelism::Rayon(t),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: every element gemm reads or writes lies within the three slices (checked above),
    // and `dst.data` is a unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.off),
            dst.cs as isize,
            dst.rs as isize,
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
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_its_range_and_clamps() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
            x += 0.001_7;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1e30) > 0.0 && exp(-1e30) < 1e-37);
        assert!(exp(1e30).is_finite());
        assert!(exp(f32::NAN).is_nan(), "a diverged value stays visible");
    }

    /// Eight rows at a time gives exactly the statistics of one row at a time (ragged groups
    /// included), so LayerNorm and training are unchanged by it.
    #[test]
    fn rows_stats_are_row_stats() {
        for (n, d) in [(19, 192), (8, 5), (3, 7)] {
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 7919) % 1009) as f32 * 0.37 - 150.0)
                .collect();
            let mut stats = Vec::new();
            rows_stats(&x, d, 1e-5, &mut stats);
            let want: Vec<_> = x.chunks_exact(d).map(|r| row_stats(r, 1e-5)).collect();
            let bits = |v: &[(f32, f32)]| -> Vec<(u32, u32)> {
                v.iter().map(|(a, b)| (a.to_bits(), b.to_bits())).collect()
            };
            assert_eq!(bits(&stats), bits(&want), "n {n} d {d}");
        }
    }

    /// The evaluation loss agrees with the reference kernel to float rounding, including rows
    /// whose length is not a multiple of the lane count and very large logits.
    #[test]
    fn mean_nll_matches_cross_entropy() {
        for v in [2048, 37, 5] {
            let n = 70;
            let logits: Vec<f32> = (0..n * v)
                .map(|i| {
                    ((i * 7919) % 1013) as f32 * 0.013 - 6.0 + if i % 97 == 0 { 80.0 } else { 0.0 }
                })
                .collect();
            let targets: Vec<u32> = (0..n).map(|i| ((i * 31) % v) as u32).collect();
            let (a, b) = (
                mean_nll(&logits, &targets, v),
                cross_entropy(&logits, &targets, v),
            );
            assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "v {v}: {a} vs {b}");
        }
    }

    #[test]
    fn gemm_views_compute_strided_products() {
        // a = [[1, 2], [3, 4], [5, 6]] (3 x 2), b = a^T (2 x 3)
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = vec![1.0f32; 9];
        gemm_into(
            Dst::rows(&mut out, 3),
            Mat::rows(&a, 3, 2),
            Mat::rows(&a, 3, 2).t(),
            false,
            false,
        );
        assert_eq!(out, [5.0, 11.0, 17.0, 11.0, 25.0, 39.0, 17.0, 39.0, 61.0]);
        let mut acc = vec![1.0f32; 4];
        let at = Mat::rows(&a, 3, 2).t();
        gemm_into(Dst::rows(&mut acc, 2), at, Mat::rows(&a, 3, 2), true, true);
        assert_eq!(acc, [36.0, 45.0, 45.0, 57.0]);
    }

    #[test]
    fn column_sums_do_not_depend_on_threads() {
        let (n, f) = (333, 130);
        let g: Vec<f32> = (0..n * f)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let sums = |t| {
            crate::with_threads(Some(t), || {
                let mut out = vec![0f32; f];
                column_sums(&g, f, &mut out, false);
                out
            })
        };
        let (one, two) = (sums(1), sums(2));
        assert_eq!(one, two);
        let want: f32 = (0..n).map(|r| g[r * f + 129]).sum();
        assert_eq!(one[129], want);
    }
}
