//! `ops-gemm`: `C = A x B` with bf16 inputs and output and f32 accumulation, row-major, three
//! size variables (`m`, `n`, `k`): the GEMM of a transformer's linear layers, the contract of
//! bf16 tensor cores. Harness: `kernels/ops-gemm/harness.cu` (one thread per output, dot
//! products in double). `ops-matmul` beside it is the f32 GEMM on CUDA cores, where tensor-core
//! precision is the exploit; here tensor cores are the point. The task itself is the shared
//! [`Product`]; this file says what is bf16 about it.

use rdbench_gpu::kernel_task::{Compare, KernelProfile, KernelSources, Vars};
use rdbench_gpu::plan::ElemType;

use crate::common;
use crate::matmul::ATOL_PER_K;
use crate::product::{Product, ProductSpec, DISTS};

/// The starting solution (one thread per output, f32 on CUDA cores) and the reference (64 x 64
/// tiles on bf16 tensor cores through `mma.sync`).
pub const SOURCES: KernelSources = op_sources!("ops-gemm");

/// The tolerance at size `vars`: the bf16 rtol, and an atol that grows with the length of the
/// dot product as `ops-matmul`'s does (f32 accumulation error, see [`ATOL_PER_K`]).
pub fn tolerance(vars: &Vars) -> Compare {
    let Compare::Tolerance { rtol, atol } = common::BF16_TOLERANCE else {
        unreachable!("a tolerance")
    };
    Compare::Tolerance {
        rtol,
        atol: atol.max(ATOL_PER_K * vars["k"] as f32),
    }
}

fn instructions(profile: &KernelProfile) -> String {
    let atol = crate::product::atol_at_timed_sizes(profile, tolerance);
    let bf16 = common::bf16_instructions();
    common::instructions(
        include_str!("gemm.md"),
        &[
            ("BF16", bf16.as_str()),
            ("ATOL_PER_K", "2^-20"),
            ("ATOL_TIMED", &atol),
        ],
        profile,
        &DISTS,
        ElemType::Bf16,
    )
}

/// What makes the product `ops-gemm`.
pub static SPEC: ProductSpec = ProductSpec {
    name: "ops-gemm",
    title: "Optimize a Kernel: bf16 GEMM",
    summary:
        "Write the fastest correct CUDA kernels for C = A x B with bf16 inputs and output and \
              f32 accumulation (A m x k, B k x n, row-major).",
    score_timeout_s: 300,
    elem: ElemType::Bf16,
    // Beyond the odd sizes, linear layers of real models: GPT-2 small's MLP (768 -> 3072) at
    // 512 tokens, Llama-2-7B's attention projection (4096 -> 4096) and
    // MLP (4096 -> 11008) at 128 tokens.
    cases: &[[512, 3072, 768], [128, 4096, 4096], [128, 11_008, 4096]],
    // At sizes the emulator runs in seconds (it models every MMA in software).
    emulator_cases: &[[1, 1, 1], [5, 7, 3], [33, 65, 17], [2, 1, 70], [70, 80, 50]],
    tiny: &[[1024, 1024, 1024], [512, 3072, 768]],
    tiny_note: "a square product and GPT-2 small's MLP at 512 tokens; quick runs",
    // 137, 185 and 185 GFLOP: the 64 x 64-tiled mma.sync reference perhaps reaches 150-250
    // TFLOP/s on an H100 (about 1 ms each), the naive start a few TFLOP/s (estimates, not
    // measured).
    full: &[
        [4096, 4096, 4096],
        [2048, 11_008, 4096],
        [2048, 4096, 11_008],
    ],
    full_note: "4,096 cubed, and Llama-2-7B's MLP up and down projections at 2,048 tokens; \
                about 1 ms each for the reference on an H100, estimated",
    sources: SOURCES,
    expected_kernel: "ops_gemm_expected",
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
    use crate::product::{mnk, naive_product, ORACLE_BUDGET};
    use rdbench_gpu::kernel_task::{bf16_to_f32, f32_to_bf16};
    use rdbench_gpu::kernel_task::{KernelTask, Vars};

    fn vars(m: i64, n: i64, k: i64) -> Vars {
        common::sizes(["m", "n", "k"], &[[m, n, k]]).remove(0)
    }

    #[test]
    fn tolerance_scales_with_k_above_the_bf16_floor() {
        let atol = |k| match tolerance(&vars(8, 8, k)) {
            Compare::Tolerance { atol, .. } => atol,
            Compare::Exact => unreachable!(),
        };
        assert_eq!(atol(1), 1e-5);
        assert_eq!(atol(4096), 2f32.powi(-8));
    }

    /// The product of the oracle's bf16 inputs (seed 3) as a naive loop computes it, the
    /// accumulator passed through `round` after every add.
    fn product(m: usize, n: usize, k: usize, round: impl Fn(f32) -> f32) -> Vec<f32> {
        let a = Gen::new(3, 0, (m * k) as u64, k as u64, Dist::Uniform)
            .in_bf16()
            .all((m * k) as u64);
        let b = Gen::new(3, 1, (k * n) as u64, n as u64, Dist::Uniform)
            .in_bf16()
            .all((k * n) as u64);
        naive_product(&a, &b, (m, n, k), round)
    }

    #[test]
    fn oracle_accepts_f32_accumulation_and_rejects_errors() {
        let (m, n, k) = (5, 7, 300);
        let good = product(m, n, k, |s| s);
        let out = |v: &[f32]| common::host_outputs_bf16("c", v);
        let v = vars(m as i64, n as i64, k as i64);
        assert_eq!(task().oracle(&v, 3, 0, &out(&good)), Ok(()));
        let mut bad = good.clone();
        bad[34] = bad[34] * 1.03 + 0.05;
        assert_eq!(task().oracle(&v, 3, 0, &out(&bad)).unwrap_err().index, 34);
        for poison in [f32::NAN, f32::INFINITY] {
            let mut bad = good.clone();
            bad[20] = poison;
            assert_eq!(task().oracle(&v, 3, 0, &out(&bad)).unwrap_err().index, 20);
        }
        assert!(task().oracle(&v, 3, 0, &out(&good[..34])).is_err());
    }

    #[test]
    fn oracle_rejects_low_precision_accumulation() {
        let (m, n, k) = (8, 8, 1000);
        let v = vars(m as i64, n as i64, k as i64);
        let out = |v: &[f32]| common::host_outputs_bf16("c", v);
        // bf16 accumulators, and f16-precision ones (11 significant bits, as .f16 MMAs).
        let bf16 = product(m, n, k, |s| bf16_to_f32(f32_to_bf16(s)));
        assert!(task().oracle(&v, 3, 0, &out(&bf16)).is_err());
        let f16 = product(m, n, k, |s| {
            let u = s.to_bits();
            f32::from_bits((u + 0xFFF + ((u >> 13) & 1)) & !0x1FFF)
        });
        assert!(task().oracle(&v, 3, 0, &out(&f16)).is_err());
    }

    #[test]
    fn oracle_is_cheap_at_every_profile() {
        for p in task().profiles() {
            for (m, n, k) in p.timed.iter().map(mnk) {
                let rows = common::rows_to_check(m as u64, (n * k) as u64, ORACLE_BUDGET);
                // The first and last rows are always checked: two rows of Llama's 11,008 x
                // 4,096 are 90 M multiply-adds, about 0.1 s.
                assert!(rows.len() as i64 * n * k <= 1 << 27, "{}", p.name);
            }
        }
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for text in common::rendered_instructions(&task()) {
            assert!(text.contains("[[58, 64], [139, 154]]") && text.contains("7.8125e-3"));
        }
    }
}
