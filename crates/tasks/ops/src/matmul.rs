//! `ops-matmul`: `C = A x B` in f32, row-major, with three size variables (`m`, `n`, `k`).
//! Harness: `kernels/ops-matmul/harness.cu` (one thread per output, dot products in double).
//! The task itself is the shared [`Product`]; this file says what is f32 about it.

use rdbench_gpu::kernel_task::{Compare, KernelFiles, KernelProfile, KernelSources, Vars};
use rdbench_gpu::plan::ElemType;

use crate::common;
use crate::product::{Product, ProductSpec, DISTS};

/// The starting solution (one thread per output, a plain loop) and the reference (32 x 32
/// shared-memory tiles).
pub const SOURCES: KernelSources = op_sources!("ops-matmul");
pub const STARTING: KernelFiles = SOURCES.solutions.start;
pub const REFERENCE: KernelFiles = SOURCES.solutions.reference;

/// The relative part of the tolerance.
pub const RTOL: f32 = 1e-5;
/// The absolute part per unit of k: 2^-20. With entries uniform in [-1, 1) the partial sums of
/// a k-long dot product wander to about sqrt(k) / 3, and the rounding error of an f32 sum in
/// any order has a standard deviation of about 2^-25 * k / 7; so `k * 2^-20` is about 200
/// standard deviations (no correct f32 kernel comes near it, over millions of outputs), yet
/// about 3x below the typical error of TF32 inputs (10-bit mantissas: about 2^-11 per product,
/// 1e-2 at k = 4096) and further below bf16's. KernelBench's fixed 1e-2 would accept both.
pub const ATOL_PER_K: f32 = 1.0 / (1 << 20) as f32;

/// The tolerance at size `vars`: it grows with the length of the dot product.
pub fn tolerance(vars: &Vars) -> Compare {
    Compare::Tolerance {
        rtol: RTOL,
        atol: ATOL_PER_K * vars["k"] as f32,
    }
}

fn instructions(profile: &KernelProfile) -> String {
    let atol = crate::product::atol_at_timed_sizes(profile, tolerance);
    common::instructions(
        include_str!("matmul.md"),
        &[
            ("RTOL", &format!("{RTOL:e}")),
            ("ATOL_PER_K", "2^-20"),
            ("ATOL_TIMED", &atol),
        ],
        profile,
        &DISTS,
        ElemType::F32,
    )
}

/// What makes the product `ops-matmul`.
pub static SPEC: ProductSpec = ProductSpec {
    name: "ops-matmul",
    title: "Optimize a Kernel: matrix multiplication",
    summary: "Write the fastest correct CUDA kernels for C = A x B in f32 (A m x k, B k x n, \
              row-major).",
    score_timeout_s: 300,
    elem: ElemType::F32,
    cases: &[],
    // Odd sizes, tails of every tile, m, n or k = 1, at sizes the emulator runs in seconds.
    emulator_cases: &[[1, 1, 1], [5, 7, 3], [33, 65, 17], [2, 1, 70], [64, 64, 64]],
    tiny: &[[512, 512, 512], [512, 3072, 768]],
    tiny_note: "a square product and GPT-2 small's MLP at 512 tokens; quick runs",
    // 137 and 185 GFLOP: the 32 x 32-tiled reference runs at perhaps 6-10 TFLOP/s on an
    // H100, so 15-30 ms each; the naive start several times that (estimates, not measured).
    full: &[[4096, 4096, 4096], [2048, 11_008, 4096]],
    full_note: "4,096 cubed and Llama-2-7B's MLP up projection at 2,048 tokens; about 20 ms \
                each for the reference on an H100, estimated",
    sources: SOURCES,
    expected_kernel: "ops_matmul_expected",
    tolerance,
    instructions,
};

/// The task.
pub fn task() -> Product {
    Product(&SPEC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{Dist, Gen};
    use crate::product::{matmul_row, mnk, naive_product, ORACLE_BUDGET};
    use rdbench_gpu::kernel_task::KernelTask;

    #[test]
    fn worked_example() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        assert_eq!(matmul_row(&a[..3], &b, 2), vec![58.0, 64.0]);
        assert_eq!(matmul_row(&a[3..], &b, 2), vec![139.0, 154.0]);
    }

    #[test]
    fn tolerance_scales_with_k() {
        let t = |k| match tolerance(&common::sizes(["m", "n", "k"], &[[8, 8, k]])[0]) {
            Compare::Tolerance { atol, .. } => atol,
            Compare::Exact => unreachable!(),
        };
        assert_eq!(t(1), 2f32.powi(-20));
        assert_eq!(t(4096), 2f32.powi(-8));
    }

    #[test]
    fn oracle_accepts_f32_sums_and_rejects_errors() {
        let vars = common::sizes(["m", "n", "k"], &[[5, 7, 300]]).remove(0);
        let a = Gen::new(3, 0, 5 * 300, 300, Dist::Uniform).all(5 * 300);
        let b = Gen::new(3, 1, 300 * 7, 7, Dist::Uniform).all(300 * 7);
        let c = naive_product(&a, &b, (5, 7, 300), |s| s);
        let out = |v: &[f32]| common::host_outputs("c", v);
        assert_eq!(task().oracle(&vars, 3, 0, &out(&c)), Ok(()));
        let mut bad = c.clone();
        bad[34] += 0.01;
        assert_eq!(
            task().oracle(&vars, 3, 0, &out(&bad)).unwrap_err().index,
            34
        );
        bad[34] = f32::INFINITY;
        assert!(task().oracle(&vars, 3, 0, &out(&bad)).is_err());
    }

    #[test]
    fn oracle_is_cheap_at_the_tiny_profile() {
        let p = &task().profiles()[0];
        for (m, n, k) in p.timed.iter().map(mnk) {
            let rows = common::rows_to_check(m as u64, (n * k) as u64, ORACLE_BUDGET);
            assert!(rows.len() as i64 * n * k <= 1 << 26);
        }
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for text in common::rendered_instructions(&task()) {
            assert!(text.contains("[[58, 64], [139, 154]]"));
        }
    }
}
