//! The scoring routine of every kernel task, written once against [`KernelBackend`]: the
//! correctness matrix, warm-up, the per-sample protocol and the stopping rule. The overview
//! is in [`crate::bench`].

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use rdbench_core::outcome::InvalidKind;
use rdbench_core::rng::SplitMix64;
use rdbench_core::task::{ScoreOutcome, ScoreRequest};
use rdbench_core::{Error, Result};
use serde::Serialize;

use super::analysis::{
    clock_state, geometric_mean, speed_of_light_ms, stats, ClockState, Stats, StopReason,
    StoppingRule,
};
use super::plan_runner::PlanRunner;
use super::samples::{SampleRecord, SavedSamples, ShapeSamples};
use crate::backend::{
    Arg, BackendInfo, CheckedKernel, CompileReport, Dims, KernelBackend, SampleTimer, TimedWindow,
};
use crate::kernel_task::{
    format_element, Compare, HArg, Harness, HostOutputs, KernelTask, Role, TaskBuffer, Vars,
};
use crate::plan::{parse_kernel_signatures, BufferSpec, ElemType, PlanLimits, ResolvedPlan};
use crate::submission::KernelSubmission;
use crate::{GpuError, GpuResult};

/// The kit's own harness kernels (poison fill, output comparison).
pub const KIT_HARNESS: &str = include_str!("../../../../kernels/harness/kit.cu");

/// Timed samples that also get the CPU oracle: early, so a capped run still has both.
const CPU_ORACLE_SAMPLES: [usize; 2] = [0, 3];
/// Validated runs through the sample protocol on a backend that cannot time.
const UNTIMED_RUNS: usize = 3;

/// What the routine is asked to do.
pub struct BenchRequest<'a> {
    pub req: &'a ScoreRequest,
    /// Correctness sizes, in order.
    pub cases: Vec<Vars>,
    /// The sizes to time, in order, each one of `cases`: each gets its own warm-up, samples
    /// and stopping rule, and the raw score combines their medians.
    pub timed: Vec<Vars>,
    pub rule: StoppingRule,
}

/// Why a run stopped: the submission's fault (an invalid entry) or the machine's (exit 3).
enum Fail {
    Invalid(InvalidKind, String),
    Environment(String),
}

type Verdict<T> = std::result::Result<T, Fail>;

/// An error from the submission's own plan: anything the device blames on the code.
fn from_plan(e: GpuError, during: &str) -> Fail {
    match e.invalid_kind() {
        Some(kind) => Fail::Invalid(kind, format!("{e} {during}")),
        None => Fail::Environment(format!("CUDA error {during}: {e}")),
    }
}

/// An error from trusted work (harness, copies): only a sticky fault the plan left behind is
/// the submission's; any other failure is the machine's or the kit's.
fn from_trusted(e: GpuError, during: &str) -> Fail {
    match e {
        GpuError::KernelFault { .. } => {
            Fail::Invalid(InvalidKind::KernelFault, format!("{e} {during}"))
        }
        other => Fail::Environment(format!("trusted harness work failed {during}: {other}")),
    }
}

/// A submission's plan buffer specs from the task's buffers.
pub fn buffer_specs(buffers: &[TaskBuffer]) -> Vec<BufferSpec> {
    buffers
        .iter()
        .map(|b| BufferSpec::new(b.name, b.elem, b.role == Role::Output))
        .collect()
}

/// The buffers of one problem size: the task's, the expected outputs and pristine inputs.
struct CaseBuffers<B: KernelBackend> {
    bufs: Vec<(String, B::Buffer)>,
}

impl<B: KernelBackend> CaseBuffers<B> {
    fn get(&self, name: &str) -> &B::Buffer {
        &self
            .bufs
            .iter()
            .find(|(n, _)| n == name)
            .expect("allocated in CaseBuffers::new")
            .1
    }

    fn get_mut(&mut self, name: &str) -> &mut B::Buffer {
        &mut self
            .bufs
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("allocated in CaseBuffers::new")
            .1
    }
}

/// A plan bound to the device and the buffers of its size: what one run needs.
struct Prepared<B: KernelBackend> {
    runner: PlanRunner<B>,
    case: CaseBuffers<B>,
}

/// Binds harness buffer names to buffers, for one harness call.
struct Binding<'x, B: KernelBackend> {
    dev: &'x B,
    kernels: &'x HashMap<String, CheckedKernel<B>>,
    names: Vec<(String, &'x B::Buffer)>,
}

impl<B: KernelBackend> Harness for Binding<'_, B> {
    fn launch(&mut self, kernel: &str, dims: Dims, args: &[HArg<'_>]) -> GpuResult {
        let k = self
            .kernels
            .get(kernel)
            .ok_or_else(|| GpuError::Signature {
                kernel: kernel.into(),
                message: "not a harness kernel of this task".into(),
            })?;
        let mut bound = Vec::with_capacity(args.len());
        for a in args {
            bound.push(match *a {
                HArg::Buffer(name) => Arg::Buffer(
                    self.names
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, b)| *b)
                        .ok_or_else(|| GpuError::Signature {
                            kernel: kernel.into(),
                            message: format!("no harness buffer named {name:?}"),
                        })?,
                ),
                HArg::I32(v) => Arg::I32(v),
                HArg::U32(v) => Arg::U32(v),
                HArg::I64(v) => Arg::I64(v),
                HArg::U64(v) => Arg::U64(v),
                HArg::F32(v) => Arg::F32(v),
            });
        }
        k.launch(self.dev, dims, &bound)
    }
}

/// Everything one scoring run holds.
struct Bench<'a, B: KernelBackend, T: KernelTask + ?Sized> {
    dev: &'a B,
    task: &'a T,
    buffers: Vec<TaskBuffer>,
    kernels: HashMap<String, CheckedKernel<B>>,
    harness_scratch: Vec<(String, B::Buffer)>,
    verdict: B::Buffer,
    seeds: SplitMix64,
}

fn case_name(vars: &Vars) -> String {
    vars.iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a, B: KernelBackend, T: KernelTask + ?Sized> Bench<'a, B, T> {
    fn alloc_case(&self, vars: &Vars) -> Result<CaseBuffers<B>, GpuError> {
        let mut bufs = Vec::new();
        for b in &self.buffers {
            let bytes = (self.task.elements(b.name, vars) * b.elem.size_bytes()) as usize;
            bufs.push((b.name.to_string(), self.dev.alloc(bytes)?));
            let twin = match b.role {
                Role::Input => format!("pristine.{}", b.name),
                Role::Output => format!("expected.{}", b.name),
            };
            bufs.push((twin, self.dev.alloc(bytes)?));
        }
        Ok(CaseBuffers { bufs })
    }

    /// The task's buffers of one role (a copy: the loops that use it also borrow `self`).
    fn of_role(&self, role: Role) -> Vec<TaskBuffer> {
        self.buffers
            .iter()
            .filter(|b| b.role == role)
            .cloned()
            .collect()
    }

    /// A harness binding over `case`: task buffer names, `expected.*`, harness scratch.
    /// With `pristine`, each input name is bound to its pristine copy instead.
    fn binding<'x>(&'x self, case: &'x CaseBuffers<B>, pristine: bool) -> Binding<'x, B> {
        let mut names: Vec<(String, &B::Buffer)> = Vec::new();
        for b in &self.buffers {
            let source = match (b.role, pristine) {
                (Role::Input, true) => format!("pristine.{}", b.name),
                _ => b.name.to_string(),
            };
            names.push((b.name.to_string(), case.get(&source)));
            if b.role == Role::Output {
                let e = format!("expected.{}", b.name);
                names.push((e.clone(), case.get(&e)));
            }
        }
        for (n, buf) in &self.harness_scratch {
            names.push((n.clone(), buf));
        }
        Binding {
            dev: self.dev,
            kernels: &self.kernels,
            names,
        }
    }

    /// Generate, poison, (flush and time), run the plan. Returns the timed window, if timed.
    fn execute(
        &mut self,
        prep: &mut Prepared<B>,
        vars: &Vars,
        seed: u64,
        dist: usize,
        timer: Option<&mut B::Timer>,
        during: &str,
    ) -> Verdict<Option<TimedWindow>> {
        let Prepared { runner, case } = prep;
        let trusted = |e| from_trusted(e, during);
        self.task
            .generate(&mut self.binding(case, false), vars, seed, dist)
            .map_err(trusted)?;
        for b in self.of_role(Role::Output) {
            let word = self.task.poison_word(b.name, seed);
            self.poison(case.get_mut(b.name), b.elem, word)
                .map_err(trusted)?;
        }
        let plan_bufs: Vec<(&str, &B::Buffer)> = self
            .buffers
            .iter()
            .map(|b| (b.name, case.get(b.name)))
            .collect();
        let plan = |e| from_plan(e, during);
        match timer {
            Some(timer) => {
                self.dev.flush_caches().map_err(trusted)?;
                timer.start().map_err(trusted)?;
                runner.enqueue(self.dev, &plan_bufs).map_err(plan)?;
                timer.stop().map_err(trusted)?;
                // A fault inside the plan surfaces when the stop event is waited for.
                timer.elapsed_ms().map(Some).map_err(plan)
            }
            None => {
                runner.enqueue(self.dev, &plan_bufs).map_err(plan)?;
                self.dev.synchronize().map_err(plan)?;
                Ok(None)
            }
        }
    }

    /// One validated run on a fresh seed: execute, then validate (with the CPU oracle if `cpu`).
    fn checked_run(
        &mut self,
        prep: &mut Prepared<B>,
        vars: &Vars,
        dist: usize,
        timer: Option<&mut B::Timer>,
        cpu: bool,
        during: &str,
    ) -> Verdict<()> {
        let seed = self.seeds.next_u64();
        self.execute(prep, vars, seed, dist, timer, during)?;
        self.validate(&prep.case, vars, seed, dist, cpu, during)
    }

    fn poison(&self, buf: &mut B::Buffer, elem: ElemType, word: u32) -> GpuResult {
        let bytes = self.dev.len_bytes(buf);
        if elem.size_bytes() == 2 && bytes % 2 == 0 {
            // The word's low half: a 2-byte NaN pattern (bf16) needs both of its bytes.
            let n = (bytes / 2) as i64;
            return self.kernels["rdbench_fill_u16"].launch(
                self.dev,
                Dims::grid_stride(n),
                &[Arg::Buffer(buf), Arg::I64(n), Arg::U32(word)],
            );
        }
        if elem.size_bytes() < 4 || bytes % 4 != 0 {
            return self.dev.fill_bytes(buf, word as u8);
        }
        let words = (bytes / 4) as i64;
        self.kernels["rdbench_fill_u32"].launch(
            self.dev,
            Dims::grid_stride(words),
            &[Arg::Buffer(buf), Arg::I64(words), Arg::U32(word)],
        )
    }

    /// Compares `n` elements of `got` with `want` on the device; (mismatches, first index).
    fn compare(
        &mut self,
        want: &B::Buffer,
        got: &B::Buffer,
        elem: ElemType,
        n: u64,
        how: Compare,
    ) -> Result<(u64, u64), GpuError> {
        let nonce = self.seeds.next_u64();
        let mut v = Vec::with_capacity(32);
        for w in [nonce, 0, 0, u64::MAX] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        self.dev.upload(&v, &mut self.verdict)?;
        let (kernel, count, extra): (&str, u64, Option<(f32, f32)>) = match (elem, how) {
            (ElemType::F32, Compare::Tolerance { rtol, atol }) => {
                ("rdbench_compare_f32", n, Some((rtol, atol)))
            }
            // Exact floats still go through the float compare: NaN never matches.
            (ElemType::F32, Compare::Exact) => ("rdbench_compare_f32", n, Some((0.0, 0.0))),
            (ElemType::Bf16, Compare::Tolerance { rtol, atol }) => {
                ("rdbench_compare_bf16", n, Some((rtol, atol)))
            }
            (ElemType::Bf16, Compare::Exact) => ("rdbench_compare_bf16", n, Some((0.0, 0.0))),
            (e, _) if e.size_bytes() == 4 => ("rdbench_compare_u32", n, None),
            (e, _) if e.size_bytes() == 8 => ("rdbench_compare_u64", n, None),
            (e, _) => ("rdbench_compare_u8", n * e.size_bytes(), None),
        };
        let mut args = vec![Arg::Buffer(want), Arg::Buffer(got), Arg::I64(count as i64)];
        if let Some((rtol, atol)) = extra {
            args.push(Arg::F32(rtol));
            args.push(Arg::F32(atol));
        }
        args.push(Arg::Buffer(&self.verdict));
        self.kernels[kernel].launch(self.dev, Dims::grid_stride(count as i64), &args)?;
        let back = self.dev.download(&self.verdict)?;
        let word =
            |i: usize| u64::from_le_bytes(back[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        if word(0) != nonce || word(1) != count {
            return Err(GpuError::Signature {
                kernel: kernel.into(),
                message: format!(
                    "verdict not intact: nonce {}, {} of {count} elements checked",
                    if word(0) == nonce {
                        "intact"
                    } else {
                        "overwritten"
                    },
                    word(1)
                ),
            });
        }
        let per = if kernel == "rdbench_compare_u8" {
            elem.size_bytes()
        } else {
            1
        };
        Ok((word(2), word(3) / per))
    }

    /// Every input unmodified, every output right (and the CPU oracle when `cpu`).
    fn validate(
        &mut self,
        case: &CaseBuffers<B>,
        vars: &Vars,
        seed: u64,
        dist: usize,
        cpu: bool,
        during: &str,
    ) -> Verdict<()> {
        let trusted = |e| from_trusted(e, during);
        // Inputs: regenerate into the pristine copies (written only now, after the plan) and
        // compare bit for bit.
        self.task
            .generate(&mut self.binding(case, true), vars, seed, dist)
            .map_err(trusted)?;
        for b in self.of_role(Role::Input) {
            let n = self.task.elements(b.name, vars);
            let pristine = case.get(&format!("pristine.{}", b.name));
            let (bad, first) = self
                .compare(
                    pristine,
                    case.get(b.name),
                    match b.elem {
                        ElemType::F32 => ElemType::U32, // bitwise: an input is data, not a value
                        ElemType::Bf16 => ElemType::U16,
                        e => e,
                    },
                    n,
                    Compare::Exact,
                )
                .map_err(trusted)?;
            if bad > 0 {
                return Err(Fail::Invalid(
                    InvalidKind::ModifiedInput,
                    format!(
                        "the submission modified its input `{}` {during}: {bad} elements changed, first at index {first}",
                        b.name
                    ),
                ));
            }
        }
        self.task
            .expected(&mut self.binding(case, false), vars)
            .map_err(trusted)?;
        for b in self.of_role(Role::Output) {
            let n = self.task.elements(b.name, vars);
            let want = case.get(&format!("expected.{}", b.name));
            let got = case.get(b.name);
            let (bad, first) = self
                .compare(want, got, b.elem, n, self.task.compare(b.name, vars))
                .map_err(trusted)?;
            if bad > 0 {
                let w = self.dev.download(want).map_err(trusted)?;
                let g = self.dev.download(got).map_err(trusted)?;
                let show = |bytes: &[u8]| format_element(bytes, b.elem, first).unwrap_or_default();
                let output = if self
                    .buffers
                    .iter()
                    .filter(|b| b.role == Role::Output)
                    .count()
                    > 1
                {
                    format!(" in `{}`", b.name)
                } else {
                    String::new()
                };
                return Err(Fail::Invalid(
                    InvalidKind::WrongOutput,
                    format!(
                        "wrong output{output} {during}: first wrong index {first}: expected {}, got {} ({bad} of {n} elements wrong)",
                        show(&w),
                        show(&g)
                    ),
                ));
            }
        }
        if cpu {
            let mut outputs = std::collections::BTreeMap::new();
            for b in self.buffers.iter().filter(|b| b.role == Role::Output) {
                let mut bytes = self.dev.download(case.get(b.name)).map_err(trusted)?;
                bytes.truncate((self.task.elements(b.name, vars) * b.elem.size_bytes()) as usize);
                outputs.insert(b.name.to_string(), bytes);
            }
            if let Err(m) = self.task.oracle(vars, seed, dist, &HostOutputs { outputs }) {
                return Err(Fail::Invalid(
                    InvalidKind::WrongOutput,
                    format!(
                        "wrong output {during} (CPU oracle): first wrong index {} of `{}`: expected {}, got {}",
                        m.index,
                        m.output,
                        m.expected,
                        m.got.unwrap_or_else(|| "nothing".into())
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn invalid_with(kind: InvalidKind, reason: String, cases_passed: usize) -> ScoreOutcome {
    ScoreOutcome::Invalid {
        kind,
        reason: rdbench_core::outcome::clip_reason(reason),
        details: serde_json::json!({ "correctness_cases_passed": cases_passed }),
    }
}

fn outcome_of(fail: Fail, cases_passed: usize) -> Result<ScoreOutcome> {
    match fail {
        Fail::Invalid(kind, reason) => Ok(invalid_with(kind, reason, cases_passed)),
        Fail::Environment(message) => Err(Error::Environment(message)),
    }
}

/// What one timed size measured.
#[derive(Serialize)]
struct ShapeDetails {
    vars: Vars,
    median_ms: f64,
    noise: f64,
    rel_stddev: f64,
    samples: usize,
    samples_discarded_throttled: usize,
    samples_power_capped: usize,
    samples_at_speed_of_light_floor: usize,
    launch_latency_hidden: bool,
    min_ms: f64,
    max_ms: f64,
    stop_reason: StopReason,
    speed_of_light_ms: Option<f64>,
    share_of_speed_of_light: Option<f64>,
    effective_bandwidth_gb_s: f64,
    sm_clock_mhz_min: Option<u32>,
    sm_clock_mhz_max: Option<u32>,
    throttle_reasons_seen: Vec<String>,
    warmup_runs: usize,
}

/// One timed size: its details and its raw samples.
struct ShapeRun {
    details: ShapeDetails,
    stats: Stats,
    samples: Vec<SampleRecord>,
}

/// Details of a valid timed run: aggregates over the timed sizes (a geometric mean for times
/// and shares, the worst noise, sums of counts), then every size's own details in `shapes`.
#[derive(Serialize)]
struct TimedDetails<'a> {
    /// Geometric mean of the sizes' medians (the median itself for one size).
    median_ms: f64,
    /// The largest of the sizes' noises.
    noise: f64,
    samples: usize,
    samples_discarded_throttled: usize,
    samples_power_capped: usize,
    samples_at_speed_of_light_floor: usize,
    launch_latency_hidden: bool,
    /// Geometric mean of the sizes' floors.
    speed_of_light_ms: Option<f64>,
    /// Geometric mean of the sizes' shares (floor over median).
    share_of_speed_of_light: Option<f64>,
    sm_clock_mhz_min: Option<u32>,
    sm_clock_mhz_max: Option<u32>,
    throttle_reasons_seen: Vec<String>,
    correctness_cases: usize,
    warmup_runs: usize,
    registers: Vec<(String, Option<i32>)>,
    backend: &'a BackendInfo,
    compiler: String,
    compile_cached: bool,
    shapes: Vec<ShapeDetails>,
}

impl<'a> TimedDetails<'a> {
    /// The aggregates over `shapes` (at least one).
    fn over(
        shapes: Vec<ShapeDetails>,
        correctness_cases: usize,
        registers: Vec<(String, Option<i32>)>,
        backend: &'a BackendInfo,
        compiler: String,
        compile_cached: bool,
    ) -> Self {
        let each = |f: fn(&ShapeDetails) -> f64| shapes.iter().map(f).collect::<Vec<_>>();
        let sum = |f: fn(&ShapeDetails) -> usize| shapes.iter().map(f).sum::<usize>();
        let all_some = |f: fn(&ShapeDetails) -> Option<f64>| {
            shapes
                .iter()
                .map(f)
                .collect::<Option<Vec<f64>>>()
                .map(|v| geometric_mean(&v))
        };
        let mut throttle: Vec<String> = shapes
            .iter()
            .flat_map(|s| s.throttle_reasons_seen.iter().cloned())
            .collect();
        throttle.sort();
        throttle.dedup();
        TimedDetails {
            median_ms: geometric_mean(&each(|s| s.median_ms)),
            noise: each(|s| s.noise).into_iter().fold(0.0, f64::max),
            samples: sum(|s| s.samples),
            samples_discarded_throttled: sum(|s| s.samples_discarded_throttled),
            samples_power_capped: sum(|s| s.samples_power_capped),
            samples_at_speed_of_light_floor: sum(|s| s.samples_at_speed_of_light_floor),
            launch_latency_hidden: shapes.iter().all(|s| s.launch_latency_hidden),
            speed_of_light_ms: all_some(|s| s.speed_of_light_ms),
            share_of_speed_of_light: all_some(|s| s.share_of_speed_of_light),
            sm_clock_mhz_min: shapes.iter().filter_map(|s| s.sm_clock_mhz_min).min(),
            sm_clock_mhz_max: shapes.iter().filter_map(|s| s.sm_clock_mhz_max).max(),
            throttle_reasons_seen: throttle,
            correctness_cases,
            warmup_runs: sum(|s| s.warmup_runs),
            registers,
            backend,
            compiler,
            compile_cached,
            shapes,
        }
    }

    /// One line for the score log: the median (or the geometric mean over sizes), its noise,
    /// samples and share of speed of light.
    fn headline(&self) -> String {
        let what = match self.shapes.len() {
            1 => format!("{:.4} ms ± {:.2} %", self.median_ms, self.noise * 100.0),
            k => format!(
                "geometric mean {:.4} ms over {k} sizes (noise ≤ {:.2} %)",
                self.median_ms,
                self.noise * 100.0
            ),
        };
        match self.share_of_speed_of_light {
            Some(share) => format!(
                "{what} ({} samples), {:.0} % of speed of light",
                self.samples,
                100.0 * share
            ),
            None => format!("{what} ({} samples)", self.samples),
        }
    }
}

impl<B: KernelBackend, T: KernelTask + ?Sized> Bench<'_, B, T> {
    /// Warm-up, then timed samples at `vars` until `rule` holds; every run validated.
    fn time_shape(
        &mut self,
        prep: &mut Prepared<B>,
        vars: &Vars,
        timer: &mut B::Timer,
        rule: &StoppingRule,
    ) -> Verdict<ShapeRun> {
        let info = self.dev.info();
        // Warm-up by time (clocks up, code and TLBs warm), every run validated.
        let warm_start = Instant::now();
        let mut warmups = 0;
        while warm_start.elapsed().as_secs_f64() < rule.warmup_s || warmups < 2 {
            let during = format!("in warm-up run {warmups} at {}", case_name(vars));
            self.checked_run(prep, vars, 0, Some(&mut *timer), false, &during)?;
            warmups += 1;
        }
        let clocks = self.dev.clocks();
        let work = self.task.work(vars);
        let sol_ms = info
            .peaks
            .map(|p| speed_of_light_ms(&work, &p, info.l2_bytes));
        let mut samples: Vec<SampleRecord> = Vec::new();
        let mut kept_times: Vec<f64> = Vec::new();
        let sampling_start = Instant::now();
        let stop = loop {
            let seed = self.seeds.next_u64();
            let i = samples.len();
            let during = format!("in timed sample {i} at {}", case_name(vars));
            let window = self
                .execute(prep, vars, seed, 0, Some(&mut *timer), &during)?
                .expect("a timer was given");
            // Clocks right after the sample, before validation work changes them.
            let snap = clocks.as_ref().map(|c| c.read());
            let cpu = CPU_ORACLE_SAMPLES.contains(&i);
            self.validate(&prep.case, vars, seed, 0, cpu, &during)?;
            let reasons = snap
                .as_ref()
                .map(|s| s.throttle_reasons.clone())
                .unwrap_or_default();
            let state = clock_state(&reasons);
            // No correct plan can beat the speed of light: a faster reading is a measurement
            // artefact and counts as the floor.
            let floored = sol_ms.map_or(window.ms, |f| window.ms.max(f));
            let kept = state != ClockState::Throttled;
            if kept {
                kept_times.push(floored);
            }
            samples.push(SampleRecord {
                ms: window.ms,
                floored_ms: floored,
                latency_hidden: window.latency_hidden,
                sm_clock_mhz: snap.as_ref().and_then(|s| s.sm_clock_mhz),
                mem_clock_mhz: snap.as_ref().and_then(|s| s.mem_clock_mhz),
                throttle_reasons: reasons,
                clock_state: state,
                cpu_oracle: cpu,
                kept,
            });
            if let Some(reason) = rule.check(&kept_times, sampling_start.elapsed().as_secs_f64()) {
                break reason;
            }
        };
        let Some(st) = stats(&kept_times) else {
            return Err(Fail::Environment(format!(
                "the GPU was thermally or hardware throttled in all {} timed samples at {}; score again when it has cooled",
                samples.len(),
                case_name(vars)
            )));
        };
        let mut throttle: Vec<String> = samples
            .iter()
            .flat_map(|s| s.throttle_reasons.iter().cloned())
            .collect();
        throttle.sort();
        throttle.dedup();
        let sm_clocks: Vec<u32> = samples.iter().filter_map(|s| s.sm_clock_mhz).collect();
        let moved = work.bytes_read + work.bytes_written;
        let details = ShapeDetails {
            vars: vars.clone(),
            median_ms: st.median_ms,
            noise: st.noise,
            rel_stddev: st.rel_stddev,
            samples: st.n,
            samples_discarded_throttled: samples.iter().filter(|s| !s.kept).count(),
            samples_power_capped: samples
                .iter()
                .filter(|s| s.clock_state == ClockState::PowerCapped)
                .count(),
            samples_at_speed_of_light_floor: samples.iter().filter(|s| s.floored_ms > s.ms).count(),
            launch_latency_hidden: samples.iter().all(|s| s.latency_hidden),
            min_ms: st.min_ms,
            max_ms: st.max_ms,
            stop_reason: stop,
            speed_of_light_ms: sol_ms,
            share_of_speed_of_light: sol_ms.map(|f| f / st.median_ms),
            effective_bandwidth_gb_s: moved / (st.median_ms * 1e-3) / 1e9,
            sm_clock_mhz_min: sm_clocks.iter().min().copied(),
            sm_clock_mhz_max: sm_clocks.iter().max().copied(),
            throttle_reasons_seen: throttle,
            warmup_runs: warmups,
        };
        Ok(ShapeRun {
            details,
            stats: st,
            samples,
        })
    }
}

/// What a stage of [`score`] that can end the run gives: `Ok(Ok(value))` to go on,
/// `Ok(Err(outcome))` when the submission already has its verdict (an invalid entry), `Err`
/// for the machine's or the kit's failures.
type Stage<T> = Result<std::result::Result<T, ScoreOutcome>>;

/// The timed sizes, in order, each with its plan and buffers ready.
type TimedSizes<B> = Vec<(Vars, Prepared<B>)>;

/// A device failure as the machine's, saying what failed.
fn env_err(what: &str) -> impl FnOnce(GpuError) -> Error {
    let what = what.to_string();
    move |e: GpuError| Error::Environment(format!("{what}: {e}"))
}

/// Scores the submission in `br.req.submission_dir` on `dev`, in stages: the submission's plan
/// resolved at every size, the trusted harness and then the submission compiled, harness
/// scratch allocated, the correctness matrix, then warm-up and timed samples at every timed
/// size and the report (or, on a backend that cannot time, a few untimed runs and no score).
pub fn score<B: KernelBackend, T: KernelTask + ?Sized>(
    dev: &B,
    task: &T,
    br: &BenchRequest<'_>,
) -> Result<ScoreOutcome> {
    let req = br.req;
    let buffers = task.buffers();
    let specs = buffer_specs(&buffers);
    let limits = task.plan_limits();
    check_timed_sizes(br)?;
    let (submission, plans) = match resolve_plans(&specs, &limits, br) {
        Ok(resolved) => resolved,
        Err(outcome) => return Ok(outcome),
    };
    let info = dev.info();
    let cache = req.cache_dir.join(match info.backend {
        crate::backend::BackendKind::Cuda => "nvrtc",
        crate::backend::BackendKind::Emulator => "emu",
    });
    let kernels = compile_harness(dev, task, &cache)?;
    let (module, compiled) = match compile_submission(dev, &submission, req, &cache)? {
        Ok(compiled) => compiled,
        Err(outcome) => return Ok(outcome),
    };
    let harness_scratch = alloc_harness_scratch(dev, task, &br.cases)?;
    let mut bench = Bench {
        dev,
        task,
        buffers,
        kernels,
        harness_scratch,
        verdict: dev.alloc(32).map_err(env_err("verdict buffer"))?,
        seeds: SplitMix64(req.seed),
    };
    let (cases, mut timed) = match bench.check_correctness(&module, br, &plans)? {
        Ok(passed) => passed,
        Err(outcome) => return Ok(outcome),
    };
    let registers = timed[0].1.runner.registers(dev);
    let Some(mut timer) = dev.timer().map_err(env_err("timer"))? else {
        return bench.run_untimed(&mut timed, cases, &info, &compiled, registers);
    };
    let runs = match bench.time_sizes(&mut timed, &mut timer, &br.rule, cases)? {
        Ok(runs) => runs,
        Err(outcome) => return Ok(outcome),
    };
    report(task, br, runs, cases, registers, &info, &compiled)
}

/// The profile's sizes make sense: at least one timed size, each among the correctness cases.
fn check_timed_sizes(br: &BenchRequest<'_>) -> Result<()> {
    if br.timed.is_empty() {
        return Err(Error::Internal(
            "a kernel profile without a timed size".into(),
        ));
    }
    if let Some(v) = br.timed.iter().find(|v| !br.cases.contains(v)) {
        return Err(Error::Internal(format!(
            "timed size {} is not among the correctness cases",
            case_name(v)
        )));
    }
    Ok(())
}

/// Loads the submission and resolves its plan at every correctness size, before any device
/// work; a submission that does not load or resolve gets its invalid outcome.
fn resolve_plans(
    specs: &[BufferSpec],
    limits: &PlanLimits,
    br: &BenchRequest<'_>,
) -> std::result::Result<(KernelSubmission, Vec<ResolvedPlan>), ScoreOutcome> {
    let submission = match KernelSubmission::load(&br.req.submission_dir, specs) {
        Ok(s) => s,
        Err(e) => return Err(ScoreOutcome::invalid(e.invalid_kind(), e.to_string())),
    };
    let mut plans = Vec::with_capacity(br.cases.len());
    for vars in &br.cases {
        match submission.resolve_vars(vars, specs, limits) {
            Ok(p) => plans.push(p),
            Err(e) => return Err(ScoreOutcome::invalid(e.invalid_kind(), e.to_string())),
        }
    }
    Ok((submission, plans))
}

/// The trusted kernels (the kit's harness and the task's), built before the submission: if
/// this machine cannot build them, that is an environment problem, not the submission's.
fn compile_harness<B: KernelBackend, T: KernelTask + ?Sized>(
    dev: &B,
    task: &T,
    cache: &Path,
) -> Result<HashMap<String, CheckedKernel<B>>> {
    let harness = task.sources().harness;
    let mut kernels = HashMap::new();
    for (name, source) in [
        ("kernels/harness/kit.cu", KIT_HARNESS),
        (harness.name, harness.source),
    ] {
        let (module, _) = dev.compile(source, name, Some(cache)).map_err(|e| {
            Error::Environment(format!(
                "the trusted harness kernels do not build or load here: {e}"
            ))
        })?;
        let sigs = parse_kernel_signatures(source);
        for s in &sigs {
            let k = CheckedKernel::new(dev, &module, &sigs, &s.name)
                .map_err(|e| Error::Internal(format!("{name}: {e}")))?;
            kernels.insert(s.name.clone(), k);
        }
    }
    Ok(kernels)
}

/// Compiles and loads the submission's `solution.cu`: an error the submission caused gets its
/// invalid outcome, any other is the machine's.
fn compile_submission<B: KernelBackend>(
    dev: &B,
    submission: &KernelSubmission,
    req: &ScoreRequest,
    cache: &Path,
) -> Stage<(B::Module, CompileReport)> {
    let source_name = req.submission_dir.join("solution.cu").display().to_string();
    match dev.compile(&submission.source, &source_name, Some(cache)) {
        Ok(m) => Ok(Ok(m)),
        Err(e) => match e.invalid_kind() {
            Some(kind) => Ok(Err(ScoreOutcome::invalid(kind, e.to_string()))),
            None => Err(Error::Environment(e.to_string())),
        },
    }
}

/// Harness scratch large enough for every size the run uses.
fn alloc_harness_scratch<B: KernelBackend, T: KernelTask + ?Sized>(
    dev: &B,
    task: &T,
    cases: &[Vars],
) -> Result<Vec<(String, B::Buffer)>> {
    let mut scratch_bytes: Vec<(&'static str, u64)> = Vec::new();
    for vars in cases {
        for (name, bytes) in task.harness_scratch(vars) {
            match scratch_bytes.iter_mut().find(|(n, _)| *n == name) {
                Some((_, b)) => *b = (*b).max(bytes),
                None => scratch_bytes.push((name, bytes)),
            }
        }
    }
    let mut harness_scratch = Vec::new();
    for (name, bytes) in scratch_bytes {
        harness_scratch.push((
            name.to_string(),
            dev.alloc(bytes as usize)
                .map_err(env_err("harness scratch"))?,
        ));
    }
    Ok(harness_scratch)
}

impl<B: KernelBackend, T: KernelTask + ?Sized> Bench<'_, B, T> {
    /// Correctness: every size x every distribution, on buffers of exactly that size, so that
    /// reads and writes past the end leave the allocation instead of landing in a larger one.
    /// The timed sizes keep their buffers for timing. Gives the number of cases passed and the
    /// timed sizes, prepared, in order.
    fn check_correctness(
        &mut self,
        module: &B::Module,
        br: &BenchRequest<'_>,
        plans: &[ResolvedPlan],
    ) -> Stage<(usize, TimedSizes<B>)> {
        let oracle_max = self.task.oracle_max_elements();
        let dists = self.task.distributions();
        let mut cases = 0usize;
        let mut timed: Vec<Option<Prepared<B>>> = br.timed.iter().map(|_| None).collect();
        for (vars, plan) in br.cases.iter().zip(plans) {
            let runner = match PlanRunner::new(self.dev, module, plan) {
                Ok(r) => r,
                Err(e) => {
                    return outcome_of(
                        from_plan(e, &format!("preparing the plan at {}", case_name(vars))),
                        cases,
                    )
                    .map(Err)
                }
            };
            let case = self
                .alloc_case(vars)
                .map_err(env_err("allocating case buffers"))?;
            let mut prep = Prepared { runner, case };
            let largest = self
                .buffers
                .iter()
                .map(|b| self.task.elements(b.name, vars))
                .max()
                .unwrap_or(0);
            for (dist, dist_name) in dists.iter().enumerate() {
                let during = format!("at {} ({dist_name} input)", case_name(vars));
                let cpu = largest <= oracle_max;
                let run = self.checked_run(&mut prep, vars, dist, None, cpu, &during);
                if let Err(fail) = run {
                    return outcome_of(fail, cases).map(Err);
                }
                cases += 1;
            }
            if let Some(slot) = br
                .timed
                .iter()
                .position(|t| t == vars)
                .and_then(|i| timed.get_mut(i))
            {
                if slot.is_none() {
                    *slot = Some(prep);
                }
            }
        }
        let timed: TimedSizes<B> = br
            .timed
            .iter()
            .cloned()
            .zip(timed)
            .map(|(v, p)| p.map(|p| (v, p)))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Internal("a timed size missing from the cases".into()))?;
        Ok(Ok((cases, timed)))
    }

    /// A backend that cannot time: a few runs through the sample protocol at each timed size,
    /// then no score.
    fn run_untimed(
        &mut self,
        timed: &mut [(Vars, Prepared<B>)],
        cases: usize,
        info: &BackendInfo,
        compiled: &CompileReport,
        registers: Vec<(String, Option<i32>)>,
    ) -> Result<ScoreOutcome> {
        for (vars, prep) in timed.iter_mut() {
            for i in 0..UNTIMED_RUNS {
                let during = format!("in run {i} at {}", case_name(vars));
                let run = self.checked_run(prep, vars, 0, None, i == 0, &during);
                if let Err(fail) = run {
                    return outcome_of(fail, cases);
                }
            }
        }
        let sizes: Vec<&Vars> = timed.iter().map(|(v, _)| v).collect();
        Ok(ScoreOutcome::Unscored {
            headline: format!(
                "correct on {cases} cases and {UNTIMED_RUNS} sample runs ({}, not timed: no score)",
                info.name
            ),
            details: serde_json::json!({
                "correctness_cases": cases,
                "sample_runs": UNTIMED_RUNS,
                "sizes": sizes,
                "backend": info,
                "compiler": compiled.compiler,
                "registers": registers,
            }),
        })
    }

    /// Warm-up and timed samples at each timed size, in order.
    fn time_sizes(
        &mut self,
        timed: &mut [(Vars, Prepared<B>)],
        timer: &mut B::Timer,
        rule: &StoppingRule,
        cases: usize,
    ) -> Stage<Vec<ShapeRun>> {
        let mut runs = Vec::with_capacity(timed.len());
        for (vars, prep) in timed.iter_mut() {
            match self.time_shape(prep, vars, timer, rule) {
                Ok(run) => runs.push(run),
                Err(fail) => return outcome_of(fail, cases).map(Err),
            }
        }
        Ok(Ok(runs))
    }
}

/// The outcome of a valid timed run: details aggregated over the timed sizes, every size's
/// samples written to the samples file, the raw score from the sizes' medians.
fn report<T: KernelTask + ?Sized>(
    task: &T,
    br: &BenchRequest<'_>,
    runs: Vec<ShapeRun>,
    cases: usize,
    registers: Vec<(String, Option<i32>)>,
    info: &BackendInfo,
    compiled: &CompileReport,
) -> Result<ScoreOutcome> {
    let medians: Vec<f64> = runs.iter().map(|r| r.stats.median_ms).collect();
    let mut shapes = Vec::with_capacity(runs.len());
    let mut saved = Vec::with_capacity(runs.len());
    for run in runs {
        saved.push(ShapeSamples {
            vars: run.details.vars.clone(),
            stats: run.stats,
            speed_of_light_ms: run.details.speed_of_light_ms,
            samples: run.samples,
        });
        shapes.push(run.details);
    }
    let details = TimedDetails::over(
        shapes,
        cases,
        registers,
        info,
        compiled.compiler.clone(),
        compiled.cached,
    );
    let headline = details.headline();
    SavedSamples {
        schema: super::samples::SCHEMA.into(),
        task: task.info().name.into(),
        rule: br.rule,
        shapes: saved,
    }
    .write(&br.req.samples_path)?;
    Ok(ScoreOutcome::Valid {
        raw: task.raw_score(&medians),
        headline,
        details: serde_json::to_value(&details).map_err(|e| Error::Internal(e.to_string()))?,
    })
}
