//! Matrix products for the two quantizations SmolLM2's GGUF uses, Q4_1 (its layers) and Q8_0
//! (its tied embedding and output), written here rather than taken from candle.
//!
//! Why: decoding is bound by memory traffic (every weight is read once per step), and candle
//! 0.11's Q4_1 dot product is scalar code, so rdbench used to re-quantize the file to Q8_0,
//! reading 1.7 times the bytes. These kernels run Q4_1 as stored, with AVX2, and unpack a
//! block of weights once for four rows of activations, so a batched decode (the `n` choices of
//! a request) or a prompt pays the unpacking once per four rows. [`crate::llama`] runs the
//! other quantizations on candle's kernels.
//!
//! Activations are quantized to 8 bits per block of 32 ([`ActBlock`], ggml's Q8_1: scales
//! rounded to f16), then `dot(w, a) = d_w d_a Σ q_w q_a (+ m_w s_a for Q4_1)`. The AVX2 path is chosen
//! at run time (AVX2, FMA and F16C); the portable path computes the same sums and is what the
//! tests compare it with.

use half::f16;

/// Values per block, for every type here.
pub const BLOCK: usize = 32;

/// A GGUF Q4_1 block: `w = d q + m`, `q` in 0..16; byte `j` holds element `j` in its low
/// nibble and element `j + 16` in its high one.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct BlockQ4_1 {
    d: u16,
    m: u16,
    qs: [u8; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// A GGUF Q8_0 block: `w = d q`, `q` in -128..128.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct BlockQ8_0 {
    d: u16,
    qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// A block of 32 activations quantized to 8 bits: `a = d q`, `s = d Σ q`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ActBlock {
    d: f32,
    s: f32,
    qs: [i8; 32],
}

impl Default for ActBlock {
    fn default() -> Self {
        ActBlock {
            d: 0.0,
            s: 0.0,
            qs: [0; 32],
        }
    }
}

/// A weight block type these kernels multiply.
pub trait WeightBlock: Copy + Default + Send + Sync + 'static {
    /// The block as f32 values.
    fn to_f32(&self, out: &mut [f32]);
    /// `Σ w_i a_i` over one block, portable code.
    fn dot(&self, a: &ActBlock) -> f32;

    /// [`WeightBlock::dot_tile`] in AVX2.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_tile_avx2<const C: usize, const R: usize>(
        w: [&[Self]; C],
        acts: [&[ActBlock]; R],
        out: &mut [[f32; R]; C],
    );

    /// [`WeightBlock::gemv`] in AVX2.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn gemv_avx2(w: &[Self], act: &[ActBlock], out: &mut [f32]);

    /// The products of weight rows `w[c]` with activation rows `acts[r]` into `out[c][r]`,
    /// every block of weights unpacked once for the `R` activation rows.
    fn dot_tile<const C: usize, const R: usize>(
        w: [&[Self]; C],
        acts: [&[ActBlock]; R],
        out: &mut [[f32; R]; C],
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked by `avx2`).
            unsafe { Self::dot_tile_avx2(w, acts, out) };
            return;
        }
        for (row, out) in w.iter().zip(out.iter_mut()) {
            for (o, a) in out.iter_mut().zip(acts) {
                *o = row.iter().zip(a).map(|(w, a)| w.dot(a)).sum();
            }
        }
    }

    /// `out[j]` = row `j` of `w` (rows of `act.len()` blocks) against `act`: one activation
    /// row, as a decode step has, with the loop over rows inside the vectorized code.
    fn gemv(w: &[Self], act: &[ActBlock], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked by `avx2`).
            unsafe { Self::gemv_avx2(w, act, out) };
            return;
        }
        for (row, o) in w.chunks_exact(act.len()).zip(out) {
            *o = row.iter().zip(act).map(|(w, a)| w.dot(a)).sum();
        }
    }
}

impl WeightBlock for BlockQ4_1 {
    fn to_f32(&self, out: &mut [f32]) {
        let (d, m) = (
            f16::from_bits(self.d).to_f32(),
            f16::from_bits(self.m).to_f32(),
        );
        for (j, &byte) in self.qs.iter().enumerate() {
            out[j] = d * f32::from(byte & 0x0F) + m;
            out[j + 16] = d * f32::from(byte >> 4) + m;
        }
    }

    fn dot(&self, a: &ActBlock) -> f32 {
        let mut sum = 0i32;
        for (j, &byte) in self.qs.iter().enumerate() {
            sum += i32::from(byte & 0x0F) * i32::from(a.qs[j]);
            sum += i32::from(byte >> 4) * i32::from(a.qs[j + 16]);
        }
        let (d, m) = (
            f16::from_bits(self.d).to_f32(),
            f16::from_bits(self.m).to_f32(),
        );
        d * a.d * sum as f32 + m * a.s
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_tile_avx2<const C: usize, const R: usize>(
        w: [&[Self]; C],
        acts: [&[ActBlock]; R],
        out: &mut [[f32; R]; C],
    ) {
        x86::q4_1_tile(w, acts, out)
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn gemv_avx2(w: &[Self], act: &[ActBlock], out: &mut [f32]) {
        x86::q4_1_gemv(w, act, out)
    }
}

impl WeightBlock for BlockQ8_0 {
    fn to_f32(&self, out: &mut [f32]) {
        let d = f16::from_bits(self.d).to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = d * f32::from(q);
        }
    }

    fn dot(&self, a: &ActBlock) -> f32 {
        let sum: i32 = self
            .qs
            .iter()
            .zip(&a.qs)
            .map(|(&w, &x)| i32::from(w) * i32::from(x))
            .sum();
        f16::from_bits(self.d).to_f32() * a.d * sum as f32
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_tile_avx2<const C: usize, const R: usize>(
        w: [&[Self]; C],
        acts: [&[ActBlock]; R],
        out: &mut [[f32; R]; C],
    ) {
        x86::q8_0_tile(w, acts, out)
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn gemv_avx2(w: &[Self], act: &[ActBlock], out: &mut [f32]) {
        x86::q8_0_gemv(w, act, out)
    }
}

/// Whether the AVX2 kernels run (decided once).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("RDBENCH_LLM_PORTABLE").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Activations (rows whose length is a multiple of [`BLOCK`]) quantized block by block.
pub fn quantize_rows(x: &[f32]) -> Vec<ActBlock> {
    let mut out = Vec::with_capacity(x.len() / BLOCK);
    for block in x.chunks_exact(BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; 32];
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(block) {
            *q = (v * inv).round() as i8;
            sum += i32::from(*q);
        }
        // Scales rounded to f16 as ggml (and candle) store them, so that products agree with
        // theirs to f32 rounding rather than drifting by the scales' precision.
        out.push(ActBlock {
            d: f16::from_f32(d).to_f32(),
            s: f16::from_f32(d * sum as f32).to_f32(),
            qs,
        });
    }
    out
}

/// `out[m × n] = x[m × k] · wᵀ`, `w` being `n` rows of `k / 32` blocks, the weight rows split
/// over candle's thread pool (the one its own kernels use). One activation row (a decode step
/// of one sequence): each worker runs its rows in one vectorized loop. More: groups of four
/// weight rows, two at a time against four activation rows at a time (each weight block
/// unpacked once for four rows), in tiles of activation rows that stay in the core's caches
/// while its weight rows pass.
pub fn matmul<W: WeightBlock>(
    w: &[W],
    (m, k, n): (usize, usize, usize),
    x: &[f32],
    out: &mut [f32],
) {
    let per_row = k / BLOCK;
    assert!(
        k % BLOCK == 0 && w.len() == n * per_row,
        "weights are not {n} rows of {k}"
    );
    assert!(
        x.len() == m * k && out.len() == m * n,
        "operands are not {m} rows"
    );
    let acts = quantize_rows(x);
    let acts: &[ActBlock] = &acts;
    let act = |r: usize| &acts[r * per_row..(r + 1) * per_row];
    let weights = |j: usize| &w[j * per_row..(j + 1) * per_row];
    let out_ptr = SharedOut::new(out);
    if m == 1 {
        parallel_for(n, 0, |rows| {
            // SAFETY: the range's own elements of the one output row (m = 1), written by this
            // worker alone.
            let out = unsafe { out_ptr.slice(rows.start, rows.len()) };
            W::gemv(&w[rows.start * per_row..rows.end * per_row], acts, out);
        });
        return;
    }
    const TILE: usize = 16;
    let groups = n.div_ceil(4);
    parallel_for(groups, 0, |range| {
        let out_ptr = &out_ptr;
        let write = |r: usize, j: usize, v: f32| {
            // SAFETY: `out` has m × n elements (asserted) and each (r, j) is written by the one
            // worker whose range holds j's group, so no two writes alias.
            unsafe { *out_ptr.0.add(r * n + j) = v }
        };
        for tile in (0..m).step_by(TILE) {
            let tile_end = m.min(tile + TILE);
            for group in range.clone() {
                let j = group * 4;
                if j + 4 > n {
                    // The last rows when n is not a multiple of four, one at a time.
                    for j in j..n {
                        for r in tile..tile_end {
                            let mut o = [[0.0; 1]; 1];
                            W::dot_tile([weights(j)], [act(r)], &mut o);
                            write(r, j, o[0][0]);
                        }
                    }
                    continue;
                }
                let mut r = tile;
                while r + 4 <= tile_end {
                    let rows = [act(r), act(r + 1), act(r + 2), act(r + 3)];
                    for pair in [j, j + 2] {
                        let mut o = [[0.0; 4]; 2];
                        W::dot_tile([weights(pair), weights(pair + 1)], rows, &mut o);
                        for (c, column) in o.iter().enumerate() {
                            for (i, &v) in column.iter().enumerate() {
                                write(r + i, pair + c, v);
                            }
                        }
                    }
                    r += 4;
                }
                while r < tile_end {
                    let mut o = [0.0; 4];
                    W::gemv(&w[j * per_row..(j + 4) * per_row], act(r), &mut o);
                    for (c, v) in o.into_iter().enumerate() {
                        write(r, j + c, v);
                    }
                    r += 1;
                }
            }
        }
    });
}

/// An output buffer the pool's workers write disjoint parts of (see the SAFETY notes where
/// they write).
pub(crate) struct SharedOut(*mut f32);

// SAFETY: workers write disjoint elements through it, and its creator outlives them
// (`execute_chunked` returns after every worker is done).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        SharedOut(out.as_mut_ptr())
    }

    /// `len` elements from `start`.
    ///
    /// # Safety
    /// They lie inside the buffer, and no other worker touches them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Runs `f` over `0..items`, in ranges split over candle's thread pool, or on this thread
/// alone when there are fewer than `min_items` (waking the pool costs more than it saves).
pub(crate) fn parallel_for(
    items: usize,
    min_items: usize,
    f: impl Fn(std::ops::Range<usize>) + Sync,
) {
    if items < min_items {
        f(0..items)
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items, f)
    }
}

/// `Σ a_i b_i` in eight lanes (so the compiler vectorizes it; a plain sum of floats must keep
/// its order and does not).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ActBlock, BlockQ4_1, BlockQ8_0};

    /// Two f16 bits (low: `d`, high: `m`) as f32s.
    #[inline(always)]
    unsafe fn halves(d: u16, m: u16) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(d) | (i32::from(m) << 16)));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_shuffle_ps(v, v, 1)))
    }

    #[inline(always)]
    unsafe fn sum8(v: __m256) -> f32 {
        let four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)))
    }

    /// Four blocks at a time into four accumulators: one row against one row is bound by
    /// the latency of a single accumulator's chain of additions otherwise. (Plain loops, not
    /// closures: a closure would not inherit the function's target features.)
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_1_dot(w: &[BlockQ4_1], a: &[ActBlock]) -> f32 {
        let mask = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut offsets = [0.0f32; 4];
        for b in 0..w.len() {
            let lane = b % 4;
            let (block, a) = (w.get_unchecked(b), a.get_unchecked(b));
            let raw = _mm_loadu_si128(block.qs.as_ptr().cast());
            let low = _mm_and_si128(raw, mask);
            let high = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
            let q = _mm256_set_m128i(high, low);
            let x = _mm256_loadu_si256(a.qs.as_ptr().cast());
            let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones);
            let (d, m) = halves(block.d, block.m);
            acc[lane] = _mm256_fmadd_ps(
                _mm256_set1_ps(d * a.d),
                _mm256_cvtepi32_ps(pairs),
                acc[lane],
            );
            offsets[lane] += m * a.s;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        sum8(sum) + (offsets[0] + offsets[1]) + (offsets[2] + offsets[3])
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_1_gemv(w: &[BlockQ4_1], act: &[ActBlock], out: &mut [f32]) {
        for (row, o) in w.chunks_exact(act.len()).zip(out) {
            *o = q4_1_dot(row, act);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q8_0_gemv(w: &[BlockQ8_0], act: &[ActBlock], out: &mut [f32]) {
        for (row, o) in w.chunks_exact(act.len()).zip(out) {
            *o = q8_0_dot(row, act);
        }
    }

    /// As [`q4_1_dot`], for Q8_0.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0_dot(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..w.len() {
            let lane = b % 4;
            let (block, a) = (w.get_unchecked(b), a.get_unchecked(b));
            let q = _mm256_loadu_si256(block.qs.as_ptr().cast());
            let x = _mm256_loadu_si256(a.qs.as_ptr().cast());
            let magnitude = _mm256_sign_epi8(q, q);
            let signed = _mm256_sign_epi8(x, q);
            let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed), ones);
            let (d, _) = halves(block.d, 0);
            acc[lane] = _mm256_fmadd_ps(
                _mm256_set1_ps(d * a.d),
                _mm256_cvtepi32_ps(pairs),
                acc[lane],
            );
        }
        sum8(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_1_tile<const C: usize, const R: usize>(
        w: [&[BlockQ4_1]; C],
        acts: [&[ActBlock]; R],
        out: &mut [[f32; R]; C],
    ) {
        if C == 1 && R == 1 {
            out[0][0] = q4_1_dot(w[0], acts[0]);
            return;
        }
        let mask = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        let mut offsets = [[0.0f32; R]; C];
        for b in 0..w[0].len() {
            for c in 0..C {
                let block = w[c].get_unchecked(b);
                let raw = _mm_loadu_si128(block.qs.as_ptr().cast());
                let low = _mm_and_si128(raw, mask);
                let high = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
                let q = _mm256_set_m128i(high, low);
                let (d, m) = halves(block.d, block.m);
                for r in 0..R {
                    let a = acts[r].get_unchecked(b);
                    let x = _mm256_loadu_si256(a.qs.as_ptr().cast());
                    let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones);
                    acc[c][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(d * a.d),
                        _mm256_cvtepi32_ps(pairs),
                        acc[c][r],
                    );
                    offsets[c][r] += m * a.s;
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                out[c][r] = sum8(acc[c][r]) + offsets[c][r];
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q8_0_tile<const C: usize, const R: usize>(
        w: [&[BlockQ8_0]; C],
        acts: [&[ActBlock]; R],
        out: &mut [[f32; R]; C],
    ) {
        if C == 1 && R == 1 {
            out[0][0] = q8_0_dot(w[0], acts[0]);
            return;
        }
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        for b in 0..w[0].len() {
            for c in 0..C {
                let block = w[c].get_unchecked(b);
                let q = _mm256_loadu_si256(block.qs.as_ptr().cast());
                // maddubs multiplies unsigned by signed bytes: |w| by sign(w)·a.
                let magnitude = _mm256_sign_epi8(q, q);
                let (d, _) = halves(block.d, 0);
                for r in 0..R {
                    let a = acts[r].get_unchecked(b);
                    let x = _mm256_loadu_si256(a.qs.as_ptr().cast());
                    let signed = _mm256_sign_epi8(x, q);
                    let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed), ones);
                    acc[c][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(d * a.d),
                        _mm256_cvtepi32_ps(pairs),
                        acc[c][r],
                    );
                }
            }
        }
        for c in 0..C {
            for r in 0..R {
                out[c][r] = sum8(acc[c][r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random_q4_1(rng: &mut impl Rng, n: usize) -> Vec<BlockQ4_1> {
        (0..n)
            .map(|_| BlockQ4_1 {
                d: f16::from_f32(rng.gen_range(0.001..0.05)).to_bits(),
                m: f16::from_f32(rng.gen_range(-0.2..0.0)).to_bits(),
                qs: std::array::from_fn(|_| rng.gen()),
            })
            .collect()
    }

    fn random_q8_0(rng: &mut impl Rng, n: usize) -> Vec<BlockQ8_0> {
        (0..n)
            .map(|_| BlockQ8_0 {
                d: f16::from_f32(rng.gen_range(0.001..0.02)).to_bits(),
                // -128 included: the sign trick must hold at the edge.
                qs: std::array::from_fn(|_| rng.gen()),
            })
            .collect()
    }

    /// `x · wᵀ` in f64 from the dequantized weights.
    fn exact<W: WeightBlock>(w: &[W], x: &[f32], m: usize, k: usize) -> Vec<f64> {
        let n = w.len() * BLOCK / k;
        let mut dense = vec![0.0f32; n * k];
        for (b, block) in w.iter().enumerate() {
            block.to_f32(&mut dense[b * BLOCK..(b + 1) * BLOCK]);
        }
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k)
                    .map(|i| f64::from(x[r * k + i]) * f64::from(dense[j * k + i]))
                    .sum();
            }
        }
        out
    }

    fn check<W: WeightBlock>(w: &[W], m: usize, k: usize, seed: u64) {
        let n = w.len() * BLOCK / k;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let mut out = vec![0.0; m * n];
        matmul(w, (m, k, n), &x, &mut out);
        let want = exact(w, &x, m, k);
        // 8-bit activations: each product is off by at most half a step of its block's scale.
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (i, (got, want)) in out.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*got) - want).abs() < 0.02 * scale,
                "element {i}: {got} vs {want} (scale {scale})"
            );
        }
        // The fast path and the portable block products give the same sums (up to f32
        // rounding).
        let per_row = k / BLOCK;
        let acts = quantize_rows(&x);
        for r in 0..m {
            for j in 0..n {
                let row = &w[j * per_row..(j + 1) * per_row];
                let act = &acts[r * per_row..(r + 1) * per_row];
                let portable: f32 = row.iter().zip(act).map(|(w, a)| w.dot(a)).sum();
                let got = out[r * n + j];
                assert!(
                    (got - portable).abs() <= 1e-4 * portable.abs().max(1.0),
                    "row {r} column {j}: {got} vs portable {portable}"
                );
            }
        }
    }

    #[test]
    fn q4_1_products_match_the_dequantized_weights_for_every_row_count() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (k, n) = (96, 13);
        let w = random_q4_1(&mut rng, n * k / BLOCK);
        for m in [1, 2, 3, 4, 5, 8, 17, 37] {
            check(&w, m, k, m as u64);
        }
    }

    #[test]
    fn q8_0_products_match_the_dequantized_weights_for_every_row_count() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (k, n) = (64, 11);
        let w = random_q8_0(&mut rng, n * k / BLOCK);
        for m in [1, 4, 6, 16, 19] {
            check(&w, m, k, 100 + m as u64);
        }
    }

    /// Our products and candle's `k_quants::matmul` on the same bytes: the same quantization
    /// of the activations, so they agree to f32 rounding (up to the one scale ggml and candle
    /// round differently, the Q4_1 activation sum's, rounded as ggml does here).
    fn against_candle<W: WeightBlock, T: candle_core::quantized::k_quants::GgmlType>(
        dtype: candle_core::quantized::GgmlDType,
        tolerance: f32,
    ) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (m, k, n) = (6usize, 128usize, 7usize);
        let dense: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-0.3..0.3)).collect();
        let x: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let t = candle_core::Tensor::from_vec(dense, (n, k), &candle_core::Device::Cpu).unwrap();
        let q = candle_core::quantized::QTensor::quantize(&t, dtype).unwrap();
        let bytes = q.data().unwrap();
        fn copy<B: Clone>(bytes: &[u8], zero: B) -> Vec<B> {
            let mut v = vec![zero; bytes.len() / std::mem::size_of::<B>()];
            // SAFETY: both block types are #[repr(C)] plain numbers of the file's layout.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    v.as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                )
            };
            v
        }
        let ours_w: Vec<W> = copy(&bytes, W::default());
        let theirs_w: Vec<T> = copy(&bytes, T::zeros());
        let mut ours = vec![0.0; m * n];
        let mut theirs = vec![0.0; m * n];
        matmul(&ours_w, (m, k, n), &x, &mut ours);
        candle_core::quantized::k_quants::matmul((m, k, n), &x, &theirs_w, &mut theirs).unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - b).abs() <= tolerance * b.abs().max(1.0),
                "{ours:?}\n{theirs:?}"
            );
        }
    }

    #[test]
    fn products_agree_with_candles_kernels_on_the_same_bytes() {
        use candle_core::quantized::{k_quants, GgmlDType};
        against_candle::<BlockQ8_0, k_quants::BlockQ8_0>(GgmlDType::Q8_0, 1e-5);
        against_candle::<BlockQ4_1, k_quants::BlockQ4_1>(GgmlDType::Q4_1, 2e-3);
    }

    #[test]
    fn zero_activations_give_zero_not_nan() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let w = random_q8_0(&mut rng, 2);
        let mut out = vec![1.0; 2];
        matmul(&w, (1, 32, 2), &[0.0; 32], &mut out);
        assert_eq!(out, [0.0, 0.0]);
    }
}
