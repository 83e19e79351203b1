//! `ops-softmax`: row-wise, numerically stable softmax of an `m x n` f32 matrix (`input` ->
//! `output`). Harness: `kernels/ops-softmax/harness.cu` (one warp per row, exponentials and
//! sums in double).

use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    Checked, Compare, HArg, Harness, HostOutputs, KernelFiles, KernelInfo, KernelProfile,
    KernelSources, KernelTask, TaskBuffer, Vars,
};
use rdbench_gpu::plan::ElemType;
use rdbench_gpu::GpuResult;

use crate::common::{self, Dist, Gen};

/// The starting solution (one thread per row, three serial passes) and the reference (one
/// block per row, a block reduction).
pub const SOURCES: KernelSources = op_sources!("ops-softmax");
pub const STARTING: KernelFiles = SOURCES.solutions.start;
pub const REFERENCE: KernelFiles = SOURCES.solutions.reference;

/// The distributions, in the order of the `dist` index the kit passes.
pub const DISTS: [Dist; 3] = [Dist::Uniform, Dist::Large, Dist::ConstantRow];

/// The tolerance. Outputs are in [0, 1], about 1/n on average. rtol 1e-5 (about 84 f32 ulps)
/// covers `expf`'s few ulps plus the rounding of an f32 sum of n terms in any order (a serial
/// sum of n = 4096 such terms errs by about 1e-6 relative, random-walk growth); it is looser
/// than `torch.testing`'s f32 default (rtol 1.3e-6, for elementwise ops) and far tighter than
/// KernelBench's 1e-2. atol 1e-6 rather than the usual 1e-5: at n = 4096 a typical output is
/// 2.4e-4, and an atol of 1e-5 would accept a 4 % error there.
pub const TOLERANCE: Compare = Compare::Tolerance {
    rtol: 1e-5,
    atol: 1e-6,
};

/// Elements the CPU oracle recomputes at most per check (rows sampled evenly above that: the
/// full profile checks 1,024 of its 65,536 rows; the device comparison checks every element).
const ORACLE_BUDGET: u64 = 1 << 22;

fn mn(v: &Vars) -> (i64, i64) {
    (v["m"], v["n"])
}

/// The exact softmax of a row, in f64.
pub fn softmax_row(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// The task.
#[derive(Debug, Default, Clone, Copy)]
pub struct Softmax;

impl KernelTask for Softmax {
    fn info(&self) -> KernelInfo {
        common::info(
            "ops-softmax",
            "Optimize a Kernel: row-wise softmax",
            "Write the fastest correct CUDA kernels for a numerically stable row-wise softmax of an \
             m x n f32 matrix.",
            180,
        )
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        common::tiny_and_full(
            ["m", "n"],
            (
                &[[4096, 1024], [256, 50_257]],
                "rows of 1,024 and GPT-2's vocabulary of 50,257; quick runs",
            ),
            // Attention-like rows of 4,096, GPT-2's vocabulary (an odd row length: no vector
            // width divides it) and short rows of 128. 1 GiB, 1.6 GiB and 256 MiB in, as much
            // out: about 0.65, 1.0 and 0.16 ms at an H100's 3.35 TB/s for a reference that
            // reads its input about once (estimates, not measured).
            (
                &[[65_536, 4096], [8192, 50_257], [524_288, 128]],
                "rows of 4,096, GPT-2's vocabulary of 50,257 and rows of 128; about 0.2-1 ms each \
                 for the reference on an H100, estimated",
            ),
            &[
                [1, 1],
                [3, 33],
                [17, 257],
                [64, 1000],
                [257, 4099],
                [2, 50_001],
            ],
            // Tails of every block size, m = 1 and n = 1, at sizes the emulator runs in seconds.
            &[[1, 1], [3, 33], [17, 257], [64, 1000], [1, 2049]],
        )
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        common::buffers(ElemType::F32, &["input"], &["output"])
    }

    fn elements(&self, _buffer: &str, vars: &Vars) -> u64 {
        let (m, n) = mn(vars);
        (m * n) as u64
    }

    fn distributions(&self) -> &'static [&'static str] {
        &["uniform", "large", "constant-row"]
    }

    fn sources(&self) -> KernelSources {
        SOURCES
    }

    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult {
        let (m, n) = mn(vars);
        common::launch_generate(h, "input", ElemType::F32, m * n, n, seed, 0, DISTS[dist])
    }

    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult {
        let (m, n) = mn(vars);
        h.launch(
            "ops_softmax_expected",
            Dims::linear(m as u32, 32),
            &[
                HArg::Buffer("input"),
                HArg::Buffer("expected.output"),
                HArg::I64(m),
                HArg::I64(n),
            ],
        )
    }

    fn compare(&self, _output: &str, _vars: &Vars) -> Compare {
        TOLERANCE
    }

    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked {
        let (m, n) = mn(vars);
        let (m, n) = (m as u64, n as u64);
        let g = Gen::new(seed, 0, m * n, n, DISTS[dist]);
        let rows = common::rows_to_check(m, n, ORACLE_BUDGET);
        common::check_rows(
            "output",
            ElemType::F32,
            outputs,
            m,
            n,
            &rows,
            TOLERANCE,
            |r| softmax_row(&g.row(r)),
        )
    }

    /// Read x once, write y once; a max, a subtraction, an exp, an add and a multiply per
    /// element.
    fn work(&self, vars: &Vars) -> Work {
        let (m, n) = mn(vars);
        let e = (m * n) as f64;
        Work {
            bytes_read: 4.0 * e,
            bytes_written: 4.0 * e,
            ops: 5.0 * e,
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        let Compare::Tolerance { rtol, atol } = TOLERANCE else {
            unreachable!("a tolerance")
        };
        common::instructions(
            include_str!("softmax.md"),
            &[
                ("RTOL", &format!("{rtol:e}")),
                ("ATOL", &format!("{atol:e}")),
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
    fn worked_examples() {
        common::assert_close(
            &softmax_row(&[1.0, 2.0, 3.0]),
            &[0.090_030_6, 0.244_728_5, 0.665_241_0],
            1e-7,
        );
        common::assert_close(&softmax_row(&[7.5; 4]), &[0.25; 4], 1e-7);
        assert_eq!(softmax_row(&[-3.0]), vec![1.0]);
    }

    #[test]
    fn stable_on_large_inputs() {
        // exp(100) overflows f32 and exp(1000) overflows f64: the shift keeps both finite.
        let y = softmax_row(&[1000.0, 999.0, -1000.0, 100.0]);
        assert!(y.iter().all(|v| v.is_finite()));
        assert!((y.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((y[0] / y[1] - 1f64.exp()).abs() < 1e-9);
        let g = Gen::new(9, 0, 64 * 100, 100, Dist::Large);
        for r in 0..64 {
            let y = softmax_row(&g.row(r));
            assert!((y.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn oracle_rejects_poison_and_short_outputs() {
        let vars = common::sizes(["m", "n"], &[[3, 5]]).remove(0);
        let g = Gen::new(1, 0, 15, 5, Dist::Uniform);
        let good: Vec<f32> = (0..3)
            .flat_map(|r| softmax_row(&g.row(r)))
            .map(|v| v as f32)
            .collect();
        let out = |v: &[f32]| common::host_outputs("output", v);
        assert_eq!(Softmax.oracle(&vars, 1, 0, &out(&good)), Ok(()));
        let mut bad = good.clone();
        bad[7] = f32::from_bits(rdbench_gpu::kernel_task::default_poison(
            ElemType::F32,
            "output",
            1,
        ));
        assert_eq!(
            Softmax.oracle(&vars, 1, 0, &out(&bad)).unwrap_err().index,
            7
        );
        assert!(Softmax.oracle(&vars, 1, 0, &out(&good[..14])).is_err());
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for text in common::rendered_instructions(&Softmax) {
            assert!(text.contains("1e-5") && text.contains("1e-6"), "{text}");
        }
    }
}
