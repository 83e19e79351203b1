//! What the matrix-product ops share: `C = A x B`, row-major, size variables `m`, `n`, `k`,
//! one harness kernel computing the expected C in double, a CPU oracle on sampled rows.
//! `ops-matmul` (f32) and `ops-gemm` (bf16 in and out, f32 accumulation) differ only in what
//! their [`ProductSpec`] says: element type, sizes, tolerance, files and instructions.

use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    Checked, Compare, HArg, Harness, HostOutputs, KernelInfo, KernelProfile, KernelSources,
    KernelTask, TaskBuffer, Vars,
};
use rdbench_gpu::plan::ElemType;
use rdbench_gpu::GpuResult;

use crate::common::{self, Dist, Gen};

/// The distributions, in the order of the `dist` index the kit passes (both matrices).
pub const DISTS: [Dist; 2] = [Dist::Uniform, Dist::ConstantRow];

/// Multiply-adds the CPU oracle does at most per check: every row of C up to this, else rows
/// sampled evenly (512^3 checks 256 of its 512 rows; 4096^3 checks 4, plus generating all 16.7
/// M elements of B: a few seconds in a debug build). The device comparison checks every element.
pub const ORACLE_BUDGET: u64 = 1 << 26;

/// The correctness cases every product checks on a GPU: tails of every tile, m, n or k = 1,
/// sizes that are no multiple of anything.
pub const ODD_CASES: [[i64; 3]; 7] = [
    [1, 1, 1],
    [5, 7, 3],
    [33, 65, 17],
    [64, 64, 64],
    [127, 1, 255],
    [1, 513, 1000],
    [300, 257, 129],
];

/// One matrix-product op.
pub struct ProductSpec {
    pub name: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    pub score_timeout_s: u64,
    /// The type of A, B and C (accumulation is f32 or better either way).
    pub elem: ElemType,
    /// `[m, n, k]` of the correctness cases on a GPU beyond [`ODD_CASES`], and on the emulator.
    pub cases: &'static [[i64; 3]],
    pub emulator_cases: &'static [[i64; 3]],
    /// The timed `[m, n, k]` sizes of `tiny` and `full`, and what their notes say.
    pub tiny: &'static [[i64; 3]],
    pub tiny_note: &'static str,
    pub full: &'static [[i64; 3]],
    pub full_note: &'static str,
    pub sources: KernelSources,
    /// The harness kernel writing `expected.c`.
    pub expected_kernel: &'static str,
    pub tolerance: fn(&Vars) -> Compare,
    pub instructions: fn(&KernelProfile) -> String,
}

/// A matrix-product op as a kernel task.
#[derive(Clone, Copy)]
pub struct Product(pub &'static ProductSpec);

pub fn mnk(v: &Vars) -> (i64, i64, i64) {
    (v["m"], v["n"], v["k"])
}

/// What a product's k-dependent `atol` is at each timed size of `profile`, for its
/// instructions: `7.8125e-3 at k = 4,096, 1.0750e-2 at k = 11,008`.
pub fn atol_at_timed_sizes(profile: &KernelProfile, tolerance: fn(&Vars) -> Compare) -> String {
    let mut ks: Vec<i64> = profile.timed.iter().map(|v| v["k"]).collect();
    ks.sort_unstable();
    ks.dedup();
    ks.iter()
        .map(|&k| {
            let at = profile
                .timed
                .iter()
                .find(|v| v["k"] == k)
                .expect("k comes from a timed size");
            match tolerance(at) {
                Compare::Tolerance { atol, .. } => {
                    format!("{atol:e} at k = {}", rdbench_core::template::thousands(k))
                }
                Compare::Exact => format!("exact at k = {}", rdbench_core::template::thousands(k)),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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

/// `C = A x B` (`m x k` by `k x n`) as a naive f32 loop computes it, the accumulator passed
/// through `round` after every add: the starting solutions' arithmetic, for the oracles' tests.
#[cfg(test)]
pub(crate) fn naive_product(
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    round: impl Fn(f32) -> f32,
) -> Vec<f32> {
    (0..m * n)
        .map(|t| {
            let (i, j) = (t / n, t % n);
            (0..k).fold(0f32, |s, p| round(s + a[i * k + p] * b[p * n + j]))
        })
        .collect()
}

const NAMES: [&str; 3] = ["m", "n", "k"];

impl Product {
    /// The generator of matrix `salt` (A 0, B 1), rounded to the op's element type.
    fn source(&self, seed: u64, salt: u64, count: u64, row_len: u64, dist: usize) -> Gen {
        let g = Gen::new(seed, salt, count, row_len, DISTS[dist]);
        match self.0.elem {
            ElemType::Bf16 => g.in_bf16(),
            _ => g,
        }
    }

    fn bytes_per_element(&self) -> f64 {
        match self.0.elem {
            ElemType::Bf16 => 2.0,
            _ => 4.0,
        }
    }
}

impl KernelTask for Product {
    fn info(&self) -> KernelInfo {
        let s = self.0;
        common::info(s.name, s.title, s.summary, s.score_timeout_s)
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        let s = self.0;
        common::tiny_and_full(
            NAMES,
            (s.tiny, s.tiny_note),
            (s.full, s.full_note),
            &[ODD_CASES.as_slice(), s.cases].concat(),
            s.emulator_cases,
        )
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        common::buffers(self.0.elem, &["a", "b"], &["c"])
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

    fn sources(&self) -> KernelSources {
        self.0.sources
    }

    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult {
        let (m, n, k) = mnk(vars);
        let elem = self.0.elem;
        common::launch_generate(h, "a", elem, m * k, k, seed, 0, DISTS[dist])?;
        common::launch_generate(h, "b", elem, k * n, n, seed, 1, DISTS[dist])
    }

    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult {
        let (m, n, k) = mnk(vars);
        h.launch(
            self.0.expected_kernel,
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
        (self.0.tolerance)(vars)
    }

    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked {
        let (m, n, k) = mnk(vars);
        let (m, n, k) = (m as u64, n as u64, k as u64);
        let a = self.source(seed, 0, m * k, k, dist);
        let b = self.source(seed, 1, k * n, n, dist).all(k * n);
        let rows = common::rows_to_check(m, n * k, ORACLE_BUDGET);
        common::check_rows(
            "c",
            self.0.elem,
            outputs,
            m,
            n,
            &rows,
            (self.0.tolerance)(vars),
            |i| matmul_row(&a.row(i), &b, n as usize),
        )
    }

    /// Read A and B once, write C once; a multiply and an add per term.
    fn work(&self, vars: &Vars) -> Work {
        let (m, n, k) = mnk(vars);
        let (m, n, k) = (m as f64, n as f64, k as f64);
        let e = self.bytes_per_element();
        Work {
            bytes_read: e * (m * k + k * n),
            bytes_written: e * m * n,
            ops: 2.0 * m * n * k,
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        (self.0.instructions)(profile)
    }
}
