//! # cuda-backtest: METR's GAC "CUDA backtesting"
//!
//! A moving-average crossover strategy with execution rules (next-open fills with slippage,
//! commission, stop-loss before take-profit against the bar's range) backtested over
//! `assets` price series of `bars` OHLC bars and a grid of `params` parameter sets, in integer
//! ticks so that every output is bit-exact. Outputs per (asset, parameter set): final PnL,
//! number of fills, maximum drawdown, sum and sum of squares of the per-bar PnL; plus the
//! full fill log of `log_pairs` pairs the scorer picks from each run's secret seed. The raw
//! score is `ln(milliseconds)` of the whole launch plan.
//!
//! This crate holds only what is the task's own: sizes, the harness kernels that generate
//! inputs and compute expected outputs (`kernels/cuda-backtest/harness.cu`), the CPU oracle
//! and baseline ([`oracle`]), the poison word and the instructions. Loading, checking, timing
//! and validation are the kernel-task kit's ([`rdbench_gpu::bench`]).

pub mod oracle;

use rdbench_core::task::{CpuBaseline, Task};
use rdbench_core::template::{render, thousands};
use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    vars, Checked, HArg, Harness, HostOutputs, KernelInfo, KernelProfile, KernelSources,
    KernelTask, KernelTaskAdapter, Mismatch, Role, TaskBuffer, Vars,
};
use rdbench_gpu::plan::{ElemType, PlanLimits};
use rdbench_gpu::GpuResult;

use crate::oracle::{Distribution, Sizes};

/// The tasks of this crate, for the CLI's registry.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(KernelTaskAdapter::new(CudaBacktest))]
}

/// The starting solution (a literal port of a per-bar loop, one thread per pair); the reference
/// (one block per asset, parameter sets across threads, shared-memory tiles of bars, O(1)
/// rolling window sums: normalized score 1); the fastest version we could write (the reference
/// with cheaper per-bar arithmetic, not yet timed on a GPU).
/// Also the task's trusted harness, `kernels/cuda-backtest/harness.cu`, after the splitmix64 hash
/// its inputs are drawn from.
pub const SOURCES: KernelSources = rdbench_gpu::kernel_sources!(
    "cuda-backtest",
    fastest,
    prelude = ["kernels/harness/splitmix64.cu"]
);

const INSTRUCTIONS: &str = include_str!("instructions.md");

/// The size variables, in the order of [`sizes`]'s tuples.
const VARS: [&str; 5] = ["assets", "bars", "params", "log_pairs", "log_cap"];

/// Size variables from `(assets, bars, params, log_pairs, log_cap)`.
fn case(v: (i64, i64, i64, i64, i64)) -> Vars {
    vars(&[
        (VARS[0], v.0),
        (VARS[1], v.1),
        (VARS[2], v.2),
        (VARS[3], v.3),
        (VARS[4], v.4),
    ])
}

/// The sizes of a case, for the oracle.
pub fn sizes(v: &Vars) -> Sizes {
    let get = |k: &str| v[k] as usize;
    Sizes {
        assets: get("assets"),
        bars: get("bars"),
        params: get("params"),
        log_pairs: get("log_pairs"),
        log_cap: get("log_cap"),
    }
}

/// The task.
#[derive(Debug, Default, Clone, Copy)]
pub struct CudaBacktest;

/// Sizes every profile checks before its own: one bar, one pair; counts that are not
/// multiples of a warp or a tile; fewer bars than the longest window; a log cap that
/// overflows (pairs with more fills than room).
const SMALL_CASES: [(i64, i64, i64, i64, i64); 4] = [
    (1, 1, 1, 1, 1),
    (3, 300, 5, 4, 8),
    (2, 1_037, 33, 7, 4),
    (5, 2_999, 70, 16, 64),
];

impl CudaBacktest {
    fn profile(
        name: &'static str,
        timed: (i64, i64, i64, i64, i64),
        extra: &[(i64, i64, i64, i64, i64)],
        description: &str,
    ) -> KernelProfile {
        let mut cases: Vec<Vars> = SMALL_CASES.iter().chain(extra).map(|&c| case(c)).collect();
        cases.push(case(timed));
        KernelProfile {
            name,
            description: description.into(),
            timed: vec![case(timed)],
            cases,
            // The emulator runs a thread per fiber: small cases plus the tiny profile's size.
            emulator_cases: SMALL_CASES
                .iter()
                .chain(&[(8, 4_096, 16, 16, 256)])
                .map(|&c| case(c))
                .collect(),
        }
    }
}

impl KernelTask for CudaBacktest {
    fn info(&self) -> KernelInfo {
        KernelInfo {
            // The starting solution takes seconds per run at the full size, and two timed
            // samples also run the (multi-threaded) CPU oracle.
            score_timeout_s: 600,
            human_minutes: Some(770.0),
            ..KernelInfo::new(
                "cuda-backtest",
                "cuda-backtesting",
                "CUDA backtesting: a moving-average crossover over a parameter grid",
                "Write the fastest correct CUDA kernels for a trade-execution backtest: a \
                 moving-average crossover strategy with next-open fills, slippage, commission, \
                 stop-loss and take-profit, over many assets and parameter sets, in integer ticks. \
                 Every aggregate and the fill logs of secret pairs are checked bit for bit.",
            )
        }
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        vec![
            Self::profile(
                "tiny",
                (8, 4_096, 16, 16, 256),
                &[],
                "8 assets x 4,096 bars x 16 parameter sets (quick runs)",
            ),
            Self::profile(
                "full",
                (1_024, 131_072, 256, 64, 4_096),
                &[(64, 8_192, 256, 64, 4_096)],
                "1,024 assets x 131,072 bars x 256 parameter sets (one H100/H200)",
            ),
        ]
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        let b = |name, elem, role| TaskBuffer { name, elem, role };
        vec![
            b("open", ElemType::I32, Role::Input),
            b("high", ElemType::I32, Role::Input),
            b("low", ElemType::I32, Role::Input),
            b("close", ElemType::I32, Role::Input),
            b("params", ElemType::I32, Role::Input),
            b("costs", ElemType::I32, Role::Input),
            b("log_pairs", ElemType::I32, Role::Input),
            b("pnl", ElemType::I64, Role::Output),
            b("fills", ElemType::I32, Role::Output),
            b("max_drawdown", ElemType::I64, Role::Output),
            b("pnl_sum", ElemType::I64, Role::Output),
            b("pnl_sq_sum", ElemType::I64, Role::Output),
            b("fill_log", ElemType::I32, Role::Output),
        ]
    }

    fn elements(&self, buffer: &str, vars: &Vars) -> u64 {
        let z = sizes(vars);
        (match buffer {
            "open" | "high" | "low" | "close" => z.assets * z.bars,
            "params" => 4 * z.params,
            "costs" => 2 * z.assets,
            "log_pairs" => z.log_pairs,
            "fill_log" => z.log_pairs * z.log_cap * oracle::FILL_WORDS,
            _ => z.assets * z.params,
        }) as u64
    }

    fn distributions(&self) -> &'static [&'static str] {
        &Distribution::NAMES
    }

    fn sources(&self) -> KernelSources {
        SOURCES
    }

    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult {
        let z = sizes(vars);
        let (assets, params, logs) = (z.assets as i64, z.params as i64, z.log_pairs as i64);
        h.launch(
            "bt_generate_bars",
            Dims::grid_stride(assets),
            &[
                HArg::Buffer("open"),
                HArg::Buffer("high"),
                HArg::Buffer("low"),
                HArg::Buffer("close"),
                HArg::I64(assets),
                HArg::I64(z.bars as i64),
                HArg::U64(seed),
                HArg::I32(dist as i32),
            ],
        )?;
        h.launch(
            "bt_generate_setup",
            Dims::grid_stride(assets.max(params).max(logs)),
            &[
                HArg::Buffer("params"),
                HArg::Buffer("costs"),
                HArg::Buffer("log_pairs"),
                HArg::I64(assets),
                HArg::I64(params),
                HArg::I64(logs),
                HArg::U64(seed),
            ],
        )
    }

    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult {
        let z = sizes(vars);
        let mut args: Vec<HArg> = [
            "open",
            "high",
            "low",
            "close",
            "params",
            "costs",
            "log_pairs",
        ]
        .into_iter()
        .map(HArg::Buffer)
        .collect();
        for v in [z.assets, z.bars, z.params, z.log_pairs, z.log_cap] {
            args.push(HArg::I64(v as i64));
        }
        args.extend(
            [
                "expected.pnl",
                "expected.fills",
                "expected.max_drawdown",
                "expected.pnl_sum",
                "expected.pnl_sq_sum",
                "expected.fill_log",
            ]
            .map(HArg::Buffer),
        );
        // 64-thread blocks: the pairs of one asset are few at small sizes, and a long
        // sequential loop per thread wants many blocks in flight.
        let pairs = (z.assets * z.params) as i64;
        let grid = ((pairs + 63) / 64).clamp(1, 65_535) as u32;
        h.launch("bt_expected", Dims::linear(grid, 64), &args)
    }

    /// In [2^30, 2^31) per 32-bit word: never a fill count, bar, quantity or price (all far
    /// below 2^30 at these sizes); an i64 made of two such words is above 2^62, never a PnL.
    /// Only 8 bits vary, from a hash of the seed: a plan reads the poison before writing, and
    /// 30 raw seed bits there would cut a search for the seed (and so for the next samples'
    /// inputs, from the seed stream) from 2^64 candidates to 2^34.
    fn poison_word(&self, output: &str, seed: u64) -> u32 {
        0x4000_0000 | (rdbench_gpu::kernel_task::poison_bits(seed, output) & 0xFF) << 8
    }

    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked {
        let z = sizes(vars);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let inst = oracle::generate_threads(seed, z, Distribution::ALL[dist], threads);
        let want = oracle::backtest(&inst, z.log_cap, threads);
        let i64s = [
            ("pnl", &want.pnl),
            ("max_drawdown", &want.max_drawdown),
            ("pnl_sum", &want.pnl_sum),
            ("pnl_sq_sum", &want.pnl_sq_sum),
        ];
        for (name, expected) in i64s {
            mismatch(name, expected, &outputs.i64s(name))?;
        }
        mismatch("fills", &want.fills, &outputs.i32s("fills"))?;
        mismatch("fill_log", &want.fill_log, &outputs.i32s("fill_log"))
    }

    /// The CPU oracle on every correctness case with at most 2^20 bars in all (milliseconds
    /// at the tiny size, about a second on many cores for the full profile's middle case);
    /// larger timed runs get it on the kit's two samples.
    fn oracle_max_elements(&self) -> u64 {
        1 << 20
    }

    /// Read the bars once and write the outputs once. No arithmetic floor: a plan might skip
    /// work on bars where nothing can change, so only memory traffic bounds it from below.
    fn work(&self, vars: &Vars) -> Work {
        let z = sizes(vars);
        let pairs = (z.assets * z.params) as f64;
        Work {
            bytes_read: 16.0 * (z.assets * z.bars) as f64 + 16.0 * z.params as f64,
            bytes_written: 36.0 * pairs + 12.0 * (z.log_pairs * z.log_cap) as f64,
            ops: 0.0,
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        let z = sizes(&profile.timed[0]);
        let n = |v: usize| thousands(v as i64);
        render(
            INSTRUCTIONS,
            &[
                ("PROFILE", profile.name),
                ("ASSETS", &n(z.assets)),
                ("BARS", &n(z.bars)),
                ("PARAMS", &n(z.params)),
                ("LOG_PAIRS", &n(z.log_pairs)),
                ("LOG_CAP", &n(z.log_cap)),
            ],
        )
        .expect("the instructions template and its values agree (tested)")
    }

    fn plan_limits(&self) -> PlanLimits {
        PlanLimits {
            max_total_scratch_bytes: 8 << 30,
            ..PlanLimits::default()
        }
    }

    /// The backtest a careful script runs: one thread, O(1) rolling sums, every pair and
    /// the fill logs ([`oracle::backtest`]); inputs generated first, untimed. Assets are
    /// independent and equally sized, so at most [`CPU_BASELINE_ASSETS`] of them are timed
    /// and the time is scaled to all (the full profile's whole run would take minutes).
    fn cpu_baseline(&self, vars: &Vars) -> Option<CpuBaseline> {
        let all = sizes(vars);
        let assets = all.assets.min(CPU_BASELINE_ASSETS);
        let z = Sizes {
            assets,
            log_pairs: all.log_pairs.min(assets * all.params),
            ..all
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let inst =
            oracle::generate_threads(CPU_BASELINE_SEED, z, Distribution::RandomWalk, threads);
        let started = std::time::Instant::now();
        let out = oracle::backtest(&inst, z.log_cap, 1);
        let measured_ms = started.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(out);
        Some(CpuBaseline {
            ms: measured_ms * all.assets as f64 / assets as f64,
            description: format!(
                "oracle::backtest on one CPU thread (O(1) rolling window sums, every pair and fill log): \
                 {measured_ms:.1} ms for {assets} of {} assets, scaled linearly",
                all.assets
            ),
            target_speedup: Some(TARGET_SPEEDUP),
        })
    }
}

/// METR's goal for the task: 30 times faster than the CPU program.
pub const TARGET_SPEEDUP: f64 = 30.0;
/// Assets the CPU baseline times (about 13 s at the full profile's bars and parameters on a
/// 2-core build machine, at 6 ns a step).
pub const CPU_BASELINE_ASSETS: usize = 64;
/// Any fixed seed: the baseline's time does not depend on which instance it runs.
const CPU_BASELINE_SEED: u64 = 0xBA5E_11E5;

/// The first difference between `expected` and `got` as a [`Mismatch`] of `output`.
fn mismatch<T: PartialEq + Copy + ToString>(output: &str, expected: &[T], got: &[T]) -> Checked {
    match oracle::first_mismatch(expected, got) {
        None => Ok(()),
        Some((i, e, g)) => Err(Mismatch {
            output: output.into(),
            index: i as u64,
            expected: e.to_string(),
            got: g.map(|v| v.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn instructions_render_for_every_profile() {
        for p in CudaBacktest.profiles() {
            let text = CudaBacktest.instructions(&p);
            assert!(!text.contains("{{"), "{}", p.name);
            assert!(text.contains(&thousands(sizes(&p.timed[0]).bars as i64)));
        }
    }

    /// The worked example's numbers in the instructions are the ones the oracle's test
    /// (`oracle::tests::worked_example_by_hand`) checks.
    #[test]
    fn instructions_state_the_checked_worked_example() {
        for line in [
            "| open | 100 | 101 | 103 | 106 | 104 | 100 | 97 | 98 |",
            "| high | 102 | 104 | 107 | 108 | 105 | 101 | 99 | 103 |",
            "| low | 99 | 100 | 102 | 103 | 99 | 96 | 95 | 97 |",
            "| close | 101 | 103 | 106 | 104 | 100 | 97 | 98 | 102 |",
            "`fast = 2`, `slow = 3`, `stop = 5`, `take = 20`, `slippage = 1`, `commission = 2`",
            "Outputs: `pnl = -15`, `fills = 3`, `max_drawdown = 15`, `pnl_sum = -15`,",
            "`pnl_sq_sum = 25 + 25 + 1 + 16 = 67`; fill log `(3, +1, 107), (4, -1, 101), (5, -1, 99)`.",
        ] {
            assert!(INSTRUCTIONS.contains(line), "instructions.md lacks: {line}");
        }
    }

    /// Every shipped plan resolves within the plan limits at every size of every profile
    /// (the full profile's too, which no CPU test scores).
    #[test]
    fn shipped_plans_resolve_at_every_size() {
        let adapter = KernelTaskAdapter::new(CudaBacktest);
        let work = tempfile::tempdir().unwrap();
        let s = CudaBacktest.sources().solutions;
        for (which, files) in [("start", s.start), ("reference", s.reference)]
            .into_iter()
            .chain(s.fastest.map(|f| ("fastest", f)))
        {
            let dir = work.path().join(which);
            rdbench_gpu::kernel_task::write_solution(&files, &dir).unwrap();
            for p in CudaBacktest.profiles() {
                if let Err(e) = adapter.check_submission(&dir, &p) {
                    panic!("{which} at {}: {e}", p.name);
                }
            }
        }
    }

    #[test]
    fn every_case_has_room_for_its_logged_pairs() {
        for p in CudaBacktest.profiles() {
            for c in p.cases.iter().chain(&p.emulator_cases) {
                let z = sizes(c);
                assert!(z.log_pairs <= z.assets * z.params, "{c:?}");
                assert!(z.log_pairs >= 1 && z.log_cap >= 1, "{c:?}");
            }
            assert_eq!(p.cases.last(), p.timed.first());
        }
    }

    #[test]
    fn cpu_baseline_times_the_single_thread_backtest() {
        let b = CudaBacktest
            .cpu_baseline(&case((2, 1_000, 4, 2, 16)))
            .expect("the task has a CPU baseline");
        assert!(b.ms > 0.0 && b.ms < 60_000.0, "{b:?}");
        assert_eq!(b.target_speedup, Some(30.0));
        assert!(b.description.contains("2 of 2 assets"), "{}", b.description);
        // More assets than it times: a part is timed and scaled to the whole.
        let big = CudaBacktest
            .cpu_baseline(&case((CPU_BASELINE_ASSETS as i64 * 4, 8, 2, 1, 1)))
            .unwrap();
        assert!(
            big.description.contains(&format!(
                "{CPU_BASELINE_ASSETS} of {} assets",
                CPU_BASELINE_ASSETS * 4
            )),
            "{}",
            big.description
        );
    }

    /// Prints the CPU baseline's cost per (pair, bar) step here (run it in release:
    /// `cargo test --release -p rdbench-task-cuda-backtest -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cpu_baseline_cost_per_step() {
        let v = case((16, 16_384, 64, 16, 256));
        let b = CudaBacktest.cpu_baseline(&v).unwrap();
        let steps = (16 * 16_384 * 64) as f64;
        assert!(b.description.contains("16 of 16"));
        let full = 1_024.0 * 131_072.0 * 256.0;
        println!(
            "cpu baseline: {:.1} ms for {steps:e} steps = {:.2} ns/step; the full profile would take about {:.0} s",
            b.ms,
            b.ms * 1e6 / steps,
            b.ms * 1e-3 / steps * full
        );
    }

    #[test]
    fn poison_is_never_a_right_answer() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64u64 {
            let w = CudaBacktest.poison_word("fills", seed);
            assert!((1 << 30..1 << 31).contains(&(w as i64)), "{w}");
            assert_eq!(w & !0xFF00, 0x4000_0000, "only 8 bits vary: {w:#x}");
            seen.insert(w);
        }
        assert!(seen.len() > 16, "the poison moves with the seed");
    }

    fn bytes_of<T: Copy>(v: &[T], to: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
        v.iter().flat_map(|&x| to(x)).collect()
    }

    /// The oracle accepts its own answer and names the first wrong element of a corrupted or
    /// truncated one.
    #[test]
    fn oracle_checks_every_output() {
        let v = case((3, 300, 5, 4, 8));
        let z = sizes(&v);
        let inst = oracle::generate(11, z, Distribution::RandomWalk);
        let want = oracle::backtest(&inst, z.log_cap, 1);
        let host = |w: &oracle::Outputs| {
            let i64b = |x: &Vec<i64>| bytes_of(x, |e| e.to_le_bytes().to_vec());
            let i32b = |x: &Vec<i32>| bytes_of(x, |e| e.to_le_bytes().to_vec());
            HostOutputs::new(BTreeMap::from([
                ("pnl".to_string(), i64b(&w.pnl)),
                ("max_drawdown".to_string(), i64b(&w.max_drawdown)),
                ("pnl_sum".to_string(), i64b(&w.pnl_sum)),
                ("pnl_sq_sum".to_string(), i64b(&w.pnl_sq_sum)),
                ("fills".to_string(), i32b(&w.fills)),
                ("fill_log".to_string(), i32b(&w.fill_log)),
            ]))
        };
        assert_eq!(CudaBacktest.oracle(&v, 11, 0, &host(&want)), Ok(()));
        let mut bad = want.clone();
        bad.fill_log[7] += 1;
        let m = CudaBacktest.oracle(&v, 11, 0, &host(&bad)).unwrap_err();
        assert_eq!((m.output.as_str(), m.index), ("fill_log", 7));
        let mut short = want.clone();
        short.max_drawdown.pop();
        let m = CudaBacktest.oracle(&v, 11, 0, &host(&short)).unwrap_err();
        assert_eq!(m.output, "max_drawdown");
        assert_eq!(m.got, None);
        // Another seed's instance is another answer.
        assert!(CudaBacktest.oracle(&v, 12, 0, &host(&want)).is_err());
    }
}
