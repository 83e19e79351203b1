//! # prefix-sum: RE-Bench's "Optimize a Kernel"
//!
//! Input `x`: n int32 values from [-10, 10). Output `y`: `y[i] = sum_{j<=i} x[j] * p_j` where
//! `p_j` is 1 when an odd number of the strictly earlier elements are positive. The raw score
//! is `ln(milliseconds)` of the whole launch plan (lower is better).
//!
//! This crate holds only what is prefix-sum's own: sizes, distributions, the harness kernels
//! that generate inputs and compute the expected output (`kernels/prefix-sum/harness.cu`), the
//! CPU oracle ([`oracle`]), the poison word and the instructions. Loading, checking, timing and
//! validation are the kernel-task kit's ([`rdbench_gpu::bench`]).

pub mod oracle;

use rdbench_core::task::Task;
use rdbench_core::template::{render, thousands};
use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    vars, Checked, HArg, Harness, HostOutputs, KernelFiles, KernelInfo, KernelProfile,
    KernelSources, KernelTask, KernelTaskAdapter, Mismatch, Role, TaskBuffer, Vars,
};
use rdbench_gpu::plan::{ElemType, PlanLimits};
use rdbench_gpu::GpuResult;

use crate::oracle::Distribution;

/// The tasks of this crate, for the CLI's registry.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(KernelTaskAdapter::new(PrefixSum))]
}

/// The starting solution (two textbook scans, 6 launches), RE-Bench's reference (a
/// reduce-then-scan of a few kernels: normalized score 1) and the fastest version we could
/// write (a single-pass scan with decoupled look-back).
/// Also the task's trusted harness, `kernels/prefix-sum/harness.cu`, after the splitmix64 hash
/// its inputs are drawn from.
pub const SOURCES: KernelSources = rdbench_gpu::kernel_sources!(
    "prefix-sum",
    fastest,
    prelude = ["kernels/harness/splitmix64.cu"]
);
pub const REFERENCE: KernelFiles = SOURCES.solutions.reference;

const INSTRUCTIONS: &str = include_str!("instructions.md");

/// Elements per tile of the harness's reference scan (`PS_TILE` in harness.cu).
const TILE: i64 = 4096;

/// Sizes checked for correctness before timing: 1, sizes that are not a multiple of any
/// power-of-two block size, and the profile's size.
pub fn correctness_sizes(n: i64) -> Vec<i64> {
    let mut sizes: Vec<i64> = [1, 2, 31, 1_000, 4_097, 65_537, 1_000_003]
        .into_iter()
        .filter(|&s| s < n)
        .collect();
    sizes.push(n);
    sizes
}

fn n_of(v: &Vars) -> i64 {
    v["n"]
}

/// The task.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrefixSum;

impl PrefixSum {
    fn profile(name: &'static str, n: i64, description: &str) -> KernelProfile {
        KernelProfile {
            name,
            description: description.into(),
            timed: vec![vars(&[("n", n)])],
            cases: correctness_sizes(n)
                .into_iter()
                .map(|s| vars(&[("n", s)]))
                .collect(),
            // Tails of every tile and block size the shipped solutions use, at sizes the
            // emulator runs in seconds.
            emulator_cases: [1, 2, 31, 33, 2_049, 4_097, 8_193, 20_000]
                .into_iter()
                .map(|s| vars(&[("n", s)]))
                .collect(),
        }
    }
}

impl KernelTask for PrefixSum {
    fn info(&self) -> KernelInfo {
        KernelInfo {
            human_minutes: Some(480.0),
            ..KernelInfo::new(
                "prefix-sum",
                "optimize-a-kernel",
                "Optimize a Kernel: conditional prefix sum",
                "Write the fastest correct CUDA kernels for a prefix sum that adds an element only \
                 when an odd number of the earlier elements are positive. The scorer times the whole \
                 launch plan with CUDA events (L2 flushed, fresh inputs, every output validated).",
            )
        }
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        vec![
            Self::profile("tiny", 4_000_037, "n = 4,000,037 (quick runs)"),
            Self::profile("full", 100_000_000, "n = 100,000,000 (RE-Bench)"),
        ]
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        vec![
            TaskBuffer {
                name: "input",
                elem: ElemType::I32,
                role: Role::Input,
            },
            TaskBuffer {
                name: "output",
                elem: ElemType::I32,
                role: Role::Output,
            },
        ]
    }

    fn elements(&self, _buffer: &str, vars: &Vars) -> u64 {
        n_of(vars) as u64
    }

    fn distributions(&self) -> &'static [&'static str] {
        &[
            "uniform",
            "all-positive",
            "none-positive",
            "alternating-sign",
        ]
    }

    fn sources(&self) -> KernelSources {
        SOURCES
    }

    fn harness_scratch(&self, vars: &Vars) -> Vec<(&'static str, u64)> {
        let tiles = ((n_of(vars) + TILE - 1) / TILE) as u64;
        [
            "tile_flip",
            "tile_sum0",
            "tile_sum1",
            "carry_parity",
            "carry_sum",
        ]
        .into_iter()
        .map(|name| (name, tiles * 4))
        .collect()
    }

    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult {
        let n = n_of(vars);
        h.launch(
            "ps_generate",
            Dims::grid_stride(n),
            &[
                HArg::Buffer("input"),
                HArg::I64(n),
                HArg::U64(seed),
                HArg::I32(dist as i32),
            ],
        )
    }

    /// The harness's three-phase reference scan into `expected.output`.
    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult {
        let n = n_of(vars);
        let tiles = ((n + TILE - 1) / TILE) as u32;
        let tile_state = [
            HArg::Buffer("tile_flip"),
            HArg::Buffer("tile_sum0"),
            HArg::Buffer("tile_sum1"),
        ];
        let mut args = vec![HArg::Buffer("input"), HArg::I64(n)];
        args.extend(tile_state);
        h.launch("ps_ref_tiles", Dims::linear(tiles, 256), &args)?;
        let mut args = vec![HArg::I64(tiles as i64)];
        args.extend(tile_state);
        args.extend([HArg::Buffer("carry_parity"), HArg::Buffer("carry_sum")]);
        h.launch("ps_ref_carry", Dims::linear(1, 32), &args)?;
        h.launch(
            "ps_ref_finish",
            Dims::linear(tiles, 256),
            &[
                HArg::Buffer("input"),
                HArg::I64(n),
                HArg::Buffer("carry_parity"),
                HArg::Buffer("carry_sum"),
                HArg::Buffer("expected.output"),
            ],
        )
    }

    // The poison word is the kit's default for an i32 output, in [2^30, 2^31): never a right
    // answer, since |y| <= 10 n <= 1e9 < 2^30.

    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked {
        let x = oracle::generate(seed, n_of(vars) as usize, Distribution::ALL[dist]);
        let want = oracle::prefix_sum(&x);
        match oracle::first_mismatch(&want, &outputs.i32s("output")) {
            None => Ok(()),
            Some((i, e, a)) => Err(Mismatch {
                output: "output".into(),
                index: i as u64,
                expected: e.to_string(),
                got: a.map(|v| v.to_string()),
            }),
        }
    }

    /// Read x once, write y once; one add per element.
    fn work(&self, vars: &Vars) -> Work {
        let n = n_of(vars) as f64;
        Work {
            bytes_read: 4.0 * n,
            bytes_written: 4.0 * n,
            ops: n,
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        render(
            INSTRUCTIONS,
            &[
                ("N", &thousands(n_of(&profile.timed[0]))),
                ("PROFILE", profile.name),
            ],
        )
        .expect("the instructions template and its values agree (tested)")
    }

    fn plan_limits(&self) -> PlanLimits {
        PlanLimits {
            max_total_scratch_bytes: 2 << 30,
            ..PlanLimits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correctness_sizes_cover_one_odd_sizes_and_the_profile() {
        let sizes = correctness_sizes(100_000_000);
        assert_eq!(sizes.first(), Some(&1));
        assert_eq!(sizes.last(), Some(&100_000_000));
        assert!(sizes.iter().any(|s| s % 2 == 1 && *s > 1000));
        assert_eq!(correctness_sizes(1), vec![1]);
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for p in PrefixSum.profiles() {
            let text = PrefixSum.instructions(&p);
            assert!(!text.contains("{{"), "{}", p.name);
            assert!(text.contains(&thousands(n_of(&p.timed[0]))));
        }
    }

    #[test]
    fn poison_is_never_a_right_answer() {
        for seed in [0u64, 1, u64::MAX, 0xdead_beef] {
            let w = PrefixSum.poison_word("output", seed) as i64;
            assert!((1 << 30..1 << 31).contains(&w), "{w}");
        }
    }
}
