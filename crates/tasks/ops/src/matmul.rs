//! `ops-matmul`: `C = A x B` in f32, row-major, with three size variables (`m`, `n`, `k`).
//! Harness: `kernels/ops/matmul/harness.cu` (one thread per output, dot products in double).

use rdbench_core::task::TaskInfo;
use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    Compare, HArg, Harness, HarnessSource, HostOutputs, KernelFiles, KernelProfile,
    KernelSolutions, KernelTask, Mismatch, TaskBuffer, Vars,
};
use rdbench_gpu::plan::ElemType;
use rdbench_gpu::GpuError;

use crate::common::{self, Dist, Gen};

/// The starting solution (one thread per output, a plain loop) and the reference (32 x 32
/// shared-memory tiles).
pub const SOLUTIONS: KernelSolutions = op_solutions!("matmul");
pub const STARTING: KernelFiles = SOLUTIONS.start;
pub const REFERENCE: KernelFiles = SOLUTIONS.reference;

const HARNESS: HarnessSource = op_harness!("matmul");

/// The distributions, in the order of the `dist` index the kit passes (both matrices).
pub const DISTS: [Dist; 2] = [Dist::Uniform, Dist::ConstantRow];

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

/// Multiply-adds the CPU oracle does at most per check: every row of C up to this, else rows
/// sampled evenly (the tiny profile, 512^3, checks 256 of its 512 rows; the full profile,
/// 4096^3, checks 4 rows, plus generating all 16.7 M elements of B: a few seconds in a debug
/// build). The device comparison checks every element.
const ORACLE_BUDGET: u64 = 1 << 26;

fn mnk(v: &Vars) -> (i64, i64, i64) {
    (v["m"], v["n"], v["k"])
}

/// Row `i` of `C = A x B` in f64, from row `i` of A (`k` values) and all of B (`k x n`).
pub fn matmul_row(a_row: &[f32], b: &[f32], n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; n];
    for (p, &a) in a_row.iter().enumerate() {
        for (cj, &bv) in c.iter_mut().zip(&b[p * n..(p + 1) * n]) {
            *cj += a as f64 * bv as f64;
        }
    }
    c
}

/// The task.
#[derive(Debug, Default, Clone, Copy)]
pub struct Matmul;

impl KernelTask for Matmul {
    fn info(&self) -> TaskInfo {
        common::info(
            "ops-matmul",
            "Optimize a Kernel: matrix multiplication",
            "Write the fastest correct CUDA kernels for C = A x B in f32 (A m x k, B k x n, \
             row-major).",
            300,
        )
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        let names = ["m", "n", "k"];
        let cases = common::sizes(
            names,
            &[
                [1, 1, 1],
                [5, 7, 3],
                [33, 65, 17],
                [64, 64, 64],
                [127, 1, 255],
                [1, 513, 1000],
                [300, 257, 129],
            ],
        );
        // Odd sizes, tails of every tile, m, n or k = 1, at sizes the emulator runs in seconds.
        let emu = common::sizes(
            names,
            &[[1, 1, 1], [5, 7, 3], [33, 65, 17], [2, 1, 70], [64, 64, 64]],
        );
        vec![
            common::profile(
                "tiny",
                common::sizes(names, &[[512, 512, 512]]).remove(0),
                "quick runs",
                cases.clone(),
                emu.clone(),
            ),
            // 137 GFLOP: the 32 x 32-tiled reference runs at perhaps 6-10 TFLOP/s on an
            // H100, so 15-25 ms; the naive start several times that (estimates, not measured).
            common::profile(
                "full",
                common::sizes(names, &[[4096, 4096, 4096]]).remove(0),
                "about 20 ms for the reference on an H100, estimated",
                cases,
                emu,
            ),
        ]
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        common::buffers(ElemType::F32, &["a", "b"], &["c"])
    }

    fn elements(&self, buffer: &str, vars: &Vars) -> u64 {
        let (m, n, k) = mnk(vars);
        (match buffer {
            "a" => m * k,
            "b" => k * n,
            _ => m * n,
        }) as u64
    }

    fn distributions(&self) -> &'static [&'static str] {
        &["uniform", "constant-row"]
    }

    fn solutions(&self) -> KernelSolutions {
        SOLUTIONS
    }

    fn harness(&self) -> HarnessSource {
        HARNESS
    }

    /// A with salt 0, B with salt 1 (independent values).
    fn generate(
        &self,
        h: &mut dyn Harness,
        vars: &Vars,
        seed: u64,
        dist: usize,
    ) -> Result<(), GpuError> {
        let (m, n, k) = mnk(vars);
        common::launch_generate(h, "a", ElemType::F32, m * k, k, seed, 0, DISTS[dist])?;
        common::launch_generate(h, "b", ElemType::F32, k * n, n, seed, 1, DISTS[dist])
    }

    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> Result<(), GpuError> {
        let (m, n, k) = mnk(vars);
        h.launch(
            "ops_matmul_expected",
            Dims::grid_stride(m * n),
            &[
                HArg::Buffer("a"),
                HArg::Buffer("b"),
                HArg::Buffer("expected.c"),
                HArg::I64(m),
                HArg::I64(n),
                HArg::I64(k),
            ],
        )
    }

    fn compare(&self, _output: &str, vars: &Vars) -> Compare {
        tolerance(vars)
    }

    fn poison_word(&self, _output: &str, seed: u64) -> u32 {
        common::nan_poison(ElemType::F32, seed)
    }

    fn oracle(
        &self,
        vars: &Vars,
        seed: u64,
        dist: usize,
        outputs: &HostOutputs,
    ) -> Result<(), Mismatch> {
        let (m, n, k) = mnk(vars);
        let (m, n, k) = (m as u64, n as u64, k as u64);
        let a = Gen::new(seed, 0, m * k, k, DISTS[dist]);
        let b = Gen::new(seed, 1, k * n, n, DISTS[dist]).all(k * n);
        let rows = common::rows_to_check(m, n * k, ORACLE_BUDGET);
        common::check_rows(
            "c",
            ElemType::F32,
            &outputs.f32s("c"),
            m,
            n,
            &rows,
            tolerance(vars),
            |i| matmul_row(&a.row(i), &b, n as usize),
        )
    }

    /// Read A and B once, write C once; a multiply and an add per term.
    fn work(&self, vars: &Vars) -> Work {
        let (m, n, k) = mnk(vars);
        let (m, n, k) = (m as f64, n as f64, k as f64);
        Work {
            bytes_read: 4.0 * (m * k + k * n),
            bytes_written: 4.0 * m * n,
            ops: 2.0 * m * n * k,
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        let Compare::Tolerance { atol, .. } = tolerance(&profile.timed) else {
            unreachable!("a tolerance")
        };
        common::instructions(
            include_str!("matmul.md"),
            &[
                ("RTOL", &format!("{RTOL:e}")),
                ("ATOL_PER_K", "2^-20"),
                ("ATOL_TIMED", &format!("{atol:e}")),
            ],
            profile,
            &DISTS,
            ElemType::F32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A naive f32 loop, as the starting solution computes it.
        let c: Vec<f32> = (0..5 * 7)
            .map(|t| {
                let (i, j) = (t / 7, t % 7);
                (0..300).fold(0f32, |s, p| s + a[i * 300 + p] * b[p * 7 + j])
            })
            .collect();
        let out = |v: &[f32]| common::host_outputs("c", v);
        assert_eq!(Matmul.oracle(&vars, 3, 0, &out(&c)), Ok(()));
        let mut bad = c.clone();
        bad[34] += 0.01;
        assert_eq!(
            Matmul.oracle(&vars, 3, 0, &out(&bad)).unwrap_err().index,
            34
        );
        bad[34] = f32::INFINITY;
        assert!(Matmul.oracle(&vars, 3, 0, &out(&bad)).is_err());
    }

    #[test]
    fn oracle_is_cheap_at_the_tiny_profile() {
        let p = &Matmul.profiles()[0];
        let (m, n, k) = mnk(&p.timed);
        let rows = common::rows_to_check(m as u64, (n * k) as u64, ORACLE_BUDGET);
        assert!(rows.len() as i64 * n * k <= 1 << 26);
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for p in Matmul.profiles() {
            let text = Matmul.instructions(&p);
            assert!(!text.contains("{{"), "{}", p.name);
            assert!(text.contains(&common::describe_vars(&p.timed)));
            assert!(text.contains("[[58, 64], [139, 154]]"));
        }
    }
}
