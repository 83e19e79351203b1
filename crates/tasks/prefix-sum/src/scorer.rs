//! Scoring a prefix-sum submission on the GPU (runs inside the worker process).
//!
//! 1. Load, check and compile the submission for this device (invalid on any failure, with
//!    the NVRTC log for compile errors).
//! 2. Correctness: every size of [`crate::correctness_sizes`] times every input distribution,
//!    fresh secret seeds, output poisoned before each run, every element checked on the GPU by
//!    the trusted harness, the input checked unmodified, and the CPU oracle on the small sizes.
//! 3. Timing at the profile's size: warm-up by time, then samples until the stopping rule
//!    holds. Each sample gets fresh inputs, a poisoned output and a flushed L2; CUDA events
//!    bracket the whole launch plan on the scorer's stream; each output is validated on the
//!    GPU and twice per run against the CPU oracle; SM clock and throttle reasons are read per
//!    sample. Raw samples go to `req.samples_path`.

use std::time::Instant;

use rdbench_core::rng::SplitMix64;
use rdbench_core::task::{ScoreOutcome, ScoreRequest};
use rdbench_core::{Error, Result};
use rdbench_gpu::device::{Arg, Buffer, Dims, GpuDevice, L2Flusher, Module, PlanRunner};
use rdbench_gpu::monitor::ClockReader;
use rdbench_gpu::nvrtc;
use rdbench_gpu::submission::KernelSubmission;
use rdbench_gpu::timing::{stats, StopReason, StoppingRule};
use rdbench_gpu::GpuError;
use serde::Serialize;

use crate::oracle::{self, Distribution};
use crate::{buffers, correctness_sizes, plan_limits, HARNESS_SOURCE};

/// Sizes up to this are also checked against the CPU oracle in the correctness phase.
const CPU_ORACLE_MAX_N: i64 = 1 << 21;
const TILE: i64 = 4096;

/// The trusted harness kernels and their scratch space.
struct Harness {
    generate: rdbench_gpu::device::Function,
    fill: rdbench_gpu::device::Function,
    tiles: rdbench_gpu::device::Function,
    carry: rdbench_gpu::device::Function,
    finish: rdbench_gpu::device::Function,
    compare: rdbench_gpu::device::Function,
    check_input: rdbench_gpu::device::Function,
    tile_flip: Buffer,
    tile_sum0: Buffer,
    tile_sum1: Buffer,
    carry_parity: Buffer,
    carry_sum: Buffer,
    mismatches: Buffer,
    first_bad: Buffer,
}

fn grid_stride(n: i64) -> Dims {
    Dims::linear(((n + 255) / 256).clamp(1, 65_535) as u32, 256)
}

/// Outcome of one GPU check: number of wrong elements and the first wrong index.
struct Check {
    mismatches: u64,
    first_bad: u64,
}

impl Harness {
    fn new(dev: &GpuDevice, module: &Module, max_n: i64) -> Result<Self, GpuError> {
        let f = |name: &str| dev.function(module, name);
        let tiles = ((max_n + TILE - 1) / TILE) as usize;
        Ok(Harness {
            generate: f("ps_generate")?,
            fill: f("ps_fill")?,
            tiles: f("ps_ref_tiles")?,
            carry: f("ps_ref_carry")?,
            finish: f("ps_ref_finish")?,
            compare: f("ps_compare")?,
            check_input: f("ps_check_input")?,
            tile_flip: dev.alloc(tiles * 4)?,
            tile_sum0: dev.alloc(tiles * 4)?,
            tile_sum1: dev.alloc(tiles * 4)?,
            carry_parity: dev.alloc(tiles * 4)?,
            carry_sum: dev.alloc(tiles * 4)?,
            mismatches: dev.alloc(8)?,
            first_bad: dev.alloc(8)?,
        })
    }

    fn generate(
        &self,
        dev: &GpuDevice,
        x: &Buffer,
        n: i64,
        seed: u64,
        dist: Distribution,
    ) -> Result<(), GpuError> {
        dev.launch(
            &self.generate,
            grid_stride(n),
            &[
                Arg::Buffer(x),
                Arg::I64(n),
                Arg::U64(seed),
                Arg::I32(dist as i32),
            ],
        )
    }

    fn poison(&self, dev: &GpuDevice, y: &Buffer, n: i64, value: i32) -> Result<(), GpuError> {
        dev.launch(
            &self.fill,
            grid_stride(n),
            &[Arg::Buffer(y), Arg::I64(n), Arg::I32(value)],
        )
    }

    /// Writes the right answer for input `x` into `expected`.
    fn expected(
        &self,
        dev: &GpuDevice,
        x: &Buffer,
        n: i64,
        expected: &Buffer,
    ) -> Result<(), GpuError> {
        let tiles = ((n + TILE - 1) / TILE) as u32;
        dev.launch(
            &self.tiles,
            Dims::linear(tiles, 256),
            &[
                Arg::Buffer(x),
                Arg::I64(n),
                Arg::Buffer(&self.tile_flip),
                Arg::Buffer(&self.tile_sum0),
                Arg::Buffer(&self.tile_sum1),
            ],
        )?;
        dev.launch(
            &self.carry,
            Dims::linear(1, 32),
            &[
                Arg::I64(tiles as i64),
                Arg::Buffer(&self.tile_flip),
                Arg::Buffer(&self.tile_sum0),
                Arg::Buffer(&self.tile_sum1),
                Arg::Buffer(&self.carry_parity),
                Arg::Buffer(&self.carry_sum),
            ],
        )?;
        dev.launch(
            &self.finish,
            Dims::linear(tiles, 256),
            &[
                Arg::Buffer(x),
                Arg::I64(n),
                Arg::Buffer(&self.carry_parity),
                Arg::Buffer(&self.carry_sum),
                Arg::Buffer(expected),
            ],
        )
    }

    fn counted(
        &mut self,
        dev: &GpuDevice,
        launch: impl FnOnce(&Self) -> Result<(), GpuError>,
    ) -> Result<Check, GpuError> {
        dev.upload_bytes(&0u64.to_le_bytes(), &mut self.mismatches)?;
        dev.upload_bytes(&u64::MAX.to_le_bytes(), &mut self.first_bad)?;
        launch(self)?;
        let mismatches = dev.download_u64(&self.mismatches)?[0];
        let first_bad = dev.download_u64(&self.first_bad)?[0];
        Ok(Check {
            mismatches,
            first_bad,
        })
    }

    /// Compares `actual` with `expected` element by element.
    fn compare(
        &mut self,
        dev: &GpuDevice,
        expected: &Buffer,
        actual: &Buffer,
        n: i64,
    ) -> Result<Check, GpuError> {
        self.counted(dev, |h| {
            dev.launch(
                &h.compare,
                grid_stride(n),
                &[
                    Arg::Buffer(expected),
                    Arg::Buffer(actual),
                    Arg::I64(n),
                    Arg::Buffer(&h.mismatches),
                    Arg::Buffer(&h.first_bad),
                ],
            )
        })
    }

    /// Regenerates the input from its seed and compares it with what is in `x` now.
    fn check_input(
        &mut self,
        dev: &GpuDevice,
        x: &Buffer,
        n: i64,
        seed: u64,
        dist: Distribution,
    ) -> Result<Check, GpuError> {
        self.counted(dev, |h| {
            dev.launch(
                &h.check_input,
                grid_stride(n),
                &[
                    Arg::Buffer(x),
                    Arg::I64(n),
                    Arg::U64(seed),
                    Arg::I32(dist as i32),
                    Arg::Buffer(&h.mismatches),
                    Arg::Buffer(&h.first_bad),
                ],
            )
        })
    }
}

/// The task buffers and harness state for one scoring run.
struct Run<'a> {
    dev: &'a GpuDevice,
    harness: Harness,
    input: Buffer,
    output: Buffer,
    expected: Buffer,
    poison: i32,
    /// Secret per-run seeds derived from the request's seed.
    seeds: SplitMix64,
}

/// One timed sample as saved in the raw samples file.
#[derive(Debug, Serialize)]
struct TimedSample {
    ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sm_clock_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_clock_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    throttle_reasons: Vec<String>,
    cpu_oracle: bool,
}

/// Why a run stopped: the submission's fault (an invalid entry) or the machine's (exit 3).
enum Fail {
    Invalid(String),
    Environment(String),
}

type Verdict<T> = std::result::Result<T, Fail>;

/// Kernel faults and rejected launches are the submission's doing; any other CUDA error (in
/// the trusted harness, the driver, the machine) is not, and must not be logged against it.
fn classify(e: &GpuError, during: &str) -> Fail {
    match e {
        GpuError::KernelFault { message, .. } => {
            Fail::Invalid(format!("kernel fault {during}: {message}"))
        }
        GpuError::Launch { kernel, message } => Fail::Invalid(format!(
            "launch of kernel {kernel:?} failed {during}: {message}"
        )),
        other => Fail::Environment(format!("CUDA error {during}: {other}")),
    }
}

/// The outcome for a failed run.
fn outcome_of(fail: Fail, cases_passed: usize) -> Result<ScoreOutcome> {
    match fail {
        Fail::Invalid(reason) => Ok(invalid_with(reason, cases_passed)),
        Fail::Environment(message) => Err(Error::Environment(message)),
    }
}

impl Run<'_> {
    /// Runs the plan once on fresh input and checks every element. `cpu` adds the CPU oracle.
    fn checked_run(
        &mut self,
        runner: &mut PlanRunner,
        n: i64,
        dist: Distribution,
        cpu: bool,
    ) -> Verdict<()> {
        let seed = self.seeds.next_u64();
        let during = format!("at n = {n} ({} input)", dist_name(dist));
        let gpu = |e: GpuError| classify(&e, &during);
        self.harness
            .generate(self.dev, &self.input, n, seed, dist)
            .map_err(gpu)?;
        self.harness
            .poison(self.dev, &self.output, n, self.poison)
            .map_err(gpu)?;
        runner
            .enqueue(
                self.dev,
                &[("input", &self.input), ("output", &self.output)],
            )
            .map_err(gpu)?;
        self.dev.synchronize().map_err(gpu)?;
        self.validate(n, seed, dist, &during)?;
        if cpu {
            self.cpu_check(n, seed, dist, &during)?;
        }
        Ok(())
    }

    /// GPU validation of the output just produced from input `seed`.
    fn validate(&mut self, n: i64, seed: u64, dist: Distribution, during: &str) -> Verdict<()> {
        let gpu = |e: GpuError| classify(&e, during);
        let input = self
            .harness
            .check_input(self.dev, &self.input, n, seed, dist)
            .map_err(gpu)?;
        if input.mismatches > 0 {
            return Err(Fail::Invalid(format!(
                "the submission modified its input {during}: {} elements changed, first at index {}",
                input.mismatches, input.first_bad
            )));
        }
        self.harness
            .expected(self.dev, &self.input, n, &self.expected)
            .map_err(gpu)?;
        let out = self
            .harness
            .compare(self.dev, &self.expected, &self.output, n)
            .map_err(gpu)?;
        if out.mismatches > 0 {
            let expected = self.dev.download_i32(&self.expected).map_err(gpu)?;
            let actual = self.dev.download_i32(&self.output).map_err(gpu)?;
            let i = out.first_bad as usize;
            return Err(Fail::Invalid(format!(
                "wrong output {during}: first wrong index {i}: expected {}, got {} ({} of {n} elements wrong)",
                expected.get(i).copied().unwrap_or_default(),
                actual.get(i).copied().unwrap_or_default(),
                out.mismatches
            )));
        }
        Ok(())
    }

    /// CPU oracle check of the output just produced (independent of the GPU harness).
    fn cpu_check(&mut self, n: i64, seed: u64, dist: Distribution, during: &str) -> Verdict<()> {
        let gpu = |e: GpuError| classify(&e, during);
        let x = oracle::generate(seed, n as usize, dist);
        let want = oracle::prefix_sum(&x);
        let mut got = self.dev.download_i32(&self.output).map_err(gpu)?;
        got.truncate(n as usize);
        match oracle::first_mismatch(&want, &got) {
            None => Ok(()),
            Some((i, e, a)) => Err(Fail::Invalid(format!(
                "wrong output {during} (CPU oracle): first wrong index {i}: expected {e}, got {}",
                a.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
            ))),
        }
    }
}

fn dist_name(d: Distribution) -> &'static str {
    match d {
        Distribution::Uniform => "uniform",
        Distribution::AllPositive => "all-positive",
        Distribution::NonePositive => "none-positive",
        Distribution::AlternatingSign => "alternating-sign",
    }
}

/// Scores the submission in `req.submission_dir` at problem size `n`.
pub fn score(req: &ScoreRequest, n: i64, rule: &StoppingRule) -> Result<ScoreOutcome> {
    let dev = match GpuDevice::open(0) {
        Ok(dev) => dev,
        Err(e @ GpuError::NoDriver(_)) => return Err(Error::Environment(e.to_string())),
        Err(e) => return Err(Error::Environment(format!("opening the GPU: {e}"))),
    };
    let buffers = buffers();
    let sizes = correctness_sizes(n);
    let submission = match KernelSubmission::load(&req.submission_dir, &buffers) {
        Ok(s) => s,
        Err(e) => return Ok(ScoreOutcome::invalid(e.to_string())),
    };
    if let Err(e) = submission.check_sizes(&sizes, &buffers, &plan_limits()) {
        return Ok(ScoreOutcome::invalid(e.to_string()));
    }
    // The trusted kernels first: if this machine's NVRTC or driver cannot build and load
    // them, that is an environment problem, not the submission's.
    let opts = dev
        .compile_options()
        .with_cache(req.cache_dir.join("nvrtc"));
    let harness_module = nvrtc::compile(HARNESS_SOURCE, "kernels/prefix_sum/harness.cu", &opts)
        .and_then(|c| dev.load(&c))
        .map_err(|e| {
            Error::Environment(format!(
                "the trusted harness kernels do not build or load on this device: {e}"
            ))
        })?;
    let flusher = L2Flusher::new(&dev)
        .map_err(|e| Error::Environment(format!("the L2 flush kernel: {e}")))?;
    let source_name = req.submission_dir.join("solution.cu").display().to_string();
    let compiled = match nvrtc::compile(&submission.source, &source_name, &opts) {
        Ok(c) => c,
        Err(e @ GpuError::Compile { .. }) => return Ok(ScoreOutcome::invalid(e.to_string())),
        Err(e) => return Err(Error::Environment(e.to_string())),
    };
    let module = match dev.load(&compiled) {
        Ok(m) => m,
        Err(e) => {
            return Ok(ScoreOutcome::invalid(format!(
                "the compiled solution did not load: {e}"
            )))
        }
    };
    let alloc = |bytes: usize| {
        dev.alloc(bytes)
            .map_err(|e| Error::Environment(format!("allocating {bytes} bytes: {e}")))
    };
    let mut run = Run {
        dev: &dev,
        harness: Harness::new(&dev, &harness_module, n)
            .map_err(|e| Error::Internal(format!("harness: {e}")))?,
        input: alloc(n as usize * 4)?,
        output: alloc(n as usize * 4)?,
        expected: alloc(n as usize * 4)?,
        // A poison value the submission cannot predict, in [2^30, 2^31): never a right
        // answer, since |y| <= 10 n <= 1e9 < 2^30.
        poison: 0x4000_0000 | ((req.seed >> 16) as i32 & 0x3FFF_FFFF),
        seeds: SplitMix64(req.seed),
    };

    // Correctness on every size and distribution.
    let mut cases = 0usize;
    let mut timed_runner = None;
    for &size in &sizes {
        let plan = submission
            .resolve(size, &buffers, &plan_limits())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut runner = match PlanRunner::new(&dev, &module, &plan) {
            Ok(r) => r,
            Err(e) => {
                return outcome_of(
                    classify(&e, &format!("preparing the plan at n = {size}")),
                    cases,
                )
            }
        };
        // Below the profile size, buffers of exactly `size` elements, so that reads and
        // writes past the end leave the allocation instead of landing in a larger buffer.
        let full_buffers = if size < n {
            let (input, output) = (alloc(size as usize * 4)?, alloc(size as usize * 4)?);
            Some((
                std::mem::replace(&mut run.input, input),
                std::mem::replace(&mut run.output, output),
            ))
        } else {
            None
        };
        for dist in Distribution::ALL {
            if let Err(fail) = run.checked_run(&mut runner, size, dist, size <= CPU_ORACLE_MAX_N) {
                return outcome_of(fail, cases);
            }
            cases += 1;
        }
        if let Some((input, output)) = full_buffers {
            run.input = input;
            run.output = output;
        }
        if size == n {
            timed_runner = Some(runner);
        }
    }
    let mut runner = timed_runner
        .ok_or_else(|| Error::Internal("profile size missing from correctness sizes".into()))?;
    let registers = runner.registers();

    // Warm-up by time (clocks up, caches of code and TLBs warm).
    let warm_start = Instant::now();
    let mut warmups = 0;
    while warm_start.elapsed().as_secs_f64() < rule.warmup_s || warmups < 2 {
        if let Err(fail) = run.checked_run(&mut runner, n, Distribution::Uniform, false) {
            return outcome_of(fail, cases);
        }
        warmups += 1;
    }

    // Timed samples.
    // Clocks of the GPU this context runs on (NVML indices need not match CUDA ordinals).
    // If the bus id lookup fails, index 0 is only trusted on a single-GPU machine.
    let clocks = dev
        .info()
        .pci_bus_id
        .as_deref()
        .and_then(ClockReader::open_pci)
        .or_else(|| {
            let single = rdbench_gpu::monitor::nvml().ok()?.device_count().ok()? == 1;
            single.then(|| ClockReader::open(0)).flatten()
        });
    let timer = dev.timer().map_err(|e| Error::Internal(e.to_string()))?;
    let mut samples: Vec<TimedSample> = Vec::new();
    let mut times: Vec<f64> = Vec::new();
    let sampling_start = Instant::now();
    let stop = loop {
        let seed = run.seeds.next_u64();
        let i = samples.len();
        let during = format!("in timed sample {i} at n = {n}");
        let step = (|| -> std::result::Result<f64, GpuError> {
            run.harness
                .generate(&dev, &run.input, n, seed, Distribution::Uniform)?;
            run.harness.poison(&dev, &run.output, n, run.poison)?;
            flusher.flush(&dev)?;
            timer.start()?;
            runner.enqueue(&dev, &[("input", &run.input), ("output", &run.output)])?;
            timer.stop()?;
            timer.elapsed_ms()
        })();
        let ms = match step {
            Ok(ms) => ms,
            Err(e) => return outcome_of(classify(&e, &during), cases),
        };
        // Clocks right after the sample, before validation work changes them.
        let snap = clocks.as_ref().map(|c| c.read());
        // Two CPU-oracle checks per run, early enough that even a capped run has both.
        let cpu = i == 0 || i == 3;
        let verdict = run
            .validate(n, seed, Distribution::Uniform, &during)
            .and_then(|_| {
                if cpu {
                    run.cpu_check(n, seed, Distribution::Uniform, &during)
                } else {
                    Ok(())
                }
            });
        if let Err(fail) = verdict {
            return outcome_of(fail, cases);
        }
        samples.push(TimedSample {
            ms,
            sm_clock_mhz: snap.as_ref().and_then(|s| s.sm_clock_mhz),
            mem_clock_mhz: snap.as_ref().and_then(|s| s.mem_clock_mhz),
            throttle_reasons: snap.map(|s| s.throttle_reasons).unwrap_or_default(),
            cpu_oracle: cpu,
        });
        times.push(ms);
        if let Some(reason) = rule.check(&times, sampling_start.elapsed().as_secs_f64()) {
            break reason;
        }
    };
    let st = stats(&times).ok_or_else(|| Error::Internal("no timed samples".into()))?;
    let mut throttle: Vec<String> = samples
        .iter()
        .flat_map(|s| s.throttle_reasons.iter().cloned())
        .collect();
    throttle.sort();
    throttle.dedup();
    let sm_clocks: Vec<u32> = samples.iter().filter_map(|s| s.sm_clock_mhz).collect();
    let info = dev.info();
    let moved_bytes = 8.0 * n as f64; // read x once, write y once
    let details = serde_json::json!({
        "n": n,
        "median_ms": st.median_ms,
        "noise": st.noise,
        "rel_stddev": st.rel_stddev,
        "samples": st.n,
        "min_ms": st.min_ms,
        "max_ms": st.max_ms,
        "stop_reason": match stop { StopReason::Converged => "converged", StopReason::TimeCap => "time_cap" },
        "effective_bandwidth_gb_s": moved_bytes / (st.median_ms * 1e-3) / 1e9,
        "sm_clock_mhz_min": sm_clocks.iter().min(),
        "sm_clock_mhz_max": sm_clocks.iter().max(),
        "throttle_reasons_seen": throttle,
        "correctness_cases": cases,
        "warmup_runs": warmups,
        "registers": registers,
        "device": info.name,
        "compute_capability": format!("{}.{}", info.compute_capability.0, info.compute_capability.1),
        "nvrtc_version": compiled.nvrtc_version,
        "compile_cached": compiled.cached,
    });
    let raw = serde_json::json!({
        "schema": "rdbench.samples/1",
        "task": "prefix-sum",
        "n": n,
        "rule": rule,
        "stats": st,
        "samples": samples,
    });
    rdbench_core::fsutil::atomic_write(
        &req.samples_path,
        &serde_json::to_vec_pretty(&raw).unwrap_or_default(),
    )?;
    Ok(ScoreOutcome::Valid {
        raw: st.median_ms.ln(),
        details,
    })
}

fn invalid_with(reason: String, cases_passed: usize) -> ScoreOutcome {
    ScoreOutcome::Invalid {
        reason,
        details: serde_json::json!({ "correctness_cases_passed": cases_passed }),
    }
}
