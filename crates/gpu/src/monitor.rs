//! NVML monitoring, with a /proc fallback.
//!
//! A [`Monitor`] takes [`Sample`]s: per GPU (utilization, memory, power, the energy counter,
//! SM and memory clocks, temperature, throttle reasons, per-process memory) read through NVML,
//! and for the host (CPU busy, memory, resident memory of watched processes) read from /proc.
//! On a machine without NVML the GPU list is empty and the [`Source`] says why
//! ("no NVIDIA GPU: ...").
//!
//! [`start`] runs a monitor on its own thread, which appends one JSON line per sample to a
//! timeline file (JSONL: a [`TimelineHeader`] line, then samples; every line is flushed, so a
//! killed process leaves a readable file). Samples are taken on a fixed grid of deadlines
//! (`start + k * interval`), so the timeline does not drift however long the sampling takes.
//! [`MonitorHandle::stop`] ends it and returns a [`MonitorSummary`] (GPU busy seconds, energy,
//! peak memory, throttle reasons seen, ...), the part that goes into a score entry.
//! [`summarize`] computes the same summary from samples, and [`read_timeline`] reads a
//! timeline back (tolerating a torn last line).
//!
//! [`ClockReader`] is the cheap per-sample clock/throttle snapshot for the timing loop, and
//! [`nvml_report`] is what `rdbench doctor` prints.
//!
//! NVML is loaded at run time: the library is probed with `libloading` first, then initialized
//! once per process (initialization is slow) and kept in a `OnceLock`. Any query a device does
//! not support leaves its field `None`; nothing here panics on a missing library.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};

/// Schema tag of the timeline's header line.
pub const TIMELINE_SCHEMA: &str = "rdbench.timeline/1";

/// The file name NVML is loaded from (what nvml-wrapper uses on Linux).
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

// ---------------------------------------------------------------------------------------------
// Errors

/// Errors of the monitor. I/O errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: line {line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: not a timeline: {reason}", path.display())]
    BadTimeline { path: PathBuf, reason: String },
    #[error("GPU {index}: {reason}")]
    Gpu { index: u32, reason: String },
    #[error("invalid monitor config: {0}")]
    Config(String),
    #[error("could not start the sampler thread: {0}")]
    Spawn(#[source] io::Error),
    #[error("the sampler thread panicked")]
    ThreadPanicked,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Data model

/// What to sample and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Time between samples (the grid of deadlines).
    pub interval: Duration,
    /// GPUs to sample, by NVML index; `None` = all.
    pub gpu_indices: Option<Vec<u32>>,
    /// Processes whose GPU memory (and host RSS) to record; `None` = all GPU processes, no RSS.
    pub pids: Option<Vec<u32>>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            gpu_indices: None,
            pids: None,
        }
    }
}

/// Memory one process holds on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessMem {
    pub pid: u32,
    /// `None` where NVML reports the amount as unavailable (e.g. under WDDM).
    pub used_bytes: Option<u64>,
}

/// One GPU at one instant. Fields NVML cannot read on a device are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub index: u32,
    pub util_gpu_pct: Option<u32>,
    pub util_mem_pct: Option<u32>,
    pub mem_used_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    pub power_w: Option<f64>,
    /// Total energy counter since the driver was loaded, in millijoules.
    pub energy_mj: Option<u64>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub temperature_c: Option<u32>,
    /// Active clock-limiting reasons ("sw_power_cap", "hw_slowdown", "gpu_idle", ...).
    #[serde(default)]
    pub throttle_reasons: Vec<String>,
    #[serde(default)]
    pub processes: Vec<ProcessMem>,
}

/// The host at one instant, from /proc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSample {
    /// Busy share of all CPUs since the previous sample, 0..=100.
    pub cpu_busy_pct: f64,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    /// Summed VmRSS of the configured pids (that still exist); `None` without pids.
    pub process_rss_bytes: Option<u64>,
}

/// One line of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the monitor started.
    pub t_s: f64,
    pub unix_ms: i64,
    #[serde(default)]
    pub gpus: Vec<GpuSample>,
    pub cpu: Option<CpuSample>,
}

/// Where the samples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// NVML: the driver version and the names of the sampled devices ("0: NVIDIA H100 ...").
    Nvml {
        driver_version: String,
        devices: Vec<String>,
    },
    /// /proc only; `note` is `"no NVIDIA GPU: <why NVML failed>"`.
    Proc { note: String },
}

impl Source {
    /// "nvml" or "proc".
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Nvml { .. } => "nvml",
            Source::Proc { .. } => "proc",
        }
    }

    /// The note of a /proc source.
    pub fn note(&self) -> Option<&str> {
        match self {
            Source::Nvml { .. } => None,
            Source::Proc { note } => Some(note),
        }
    }
}

/// The monitor configuration as written into the timeline header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineConfig {
    pub interval_ms: f64,
    pub gpu_indices: Option<Vec<u32>>,
    pub pids: Option<Vec<u32>>,
}

impl From<&MonitorConfig> for TimelineConfig {
    fn from(c: &MonitorConfig) -> Self {
        Self {
            interval_ms: c.interval.as_secs_f64() * 1e3,
            gpu_indices: c.gpu_indices.clone(),
            pids: c.pids.clone(),
        }
    }
}

/// First line of a timeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineHeader {
    /// Always [`TIMELINE_SCHEMA`].
    pub schema: String,
    pub source: Source,
    pub config: TimelineConfig,
    /// Wall-clock start (the origin of every sample's `t_s`), RFC 3339 and Unix milliseconds.
    pub start_time: String,
    pub start_unix_ms: i64,
    /// Process id of the monitoring process.
    pub monitor_pid: u32,
    pub hostname: Option<String>,
}

/// A timeline read back, with what was wrong with its tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub header: TimelineHeader,
    pub samples: Vec<Sample>,
    /// The unparseable last line (a write cut short by a kill), if there was one.
    pub torn_last_line: Option<String>,
}

/// What a monitoring run amounts to; goes into a score entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorSummary {
    /// "nvml" or "proc".
    pub source: String,
    pub note: Option<String>,
    pub samples: usize,
    /// Time from the first sample to the last.
    pub duration_s: f64,
    /// Integral of GPU utilization over time (trapezoid rule), summed over GPUs.
    pub gpu_busy_s: Option<f64>,
    /// Energy in joules, summed over GPUs: from the energy counter's difference where a GPU
    /// has one, else the integral of power over time.
    pub energy_j: Option<f64>,
    /// Peak device memory in use (by anyone), summed over the sampled GPUs at each instant.
    pub peak_mem_bytes: Option<u64>,
    /// Peak device memory of the recorded processes, summed over processes and GPUs.
    #[serde(default)]
    pub peak_process_mem_bytes: Option<u64>,
    pub max_temperature_c: Option<u32>,
    pub sm_clock_mhz_min: Option<u32>,
    pub sm_clock_mhz_max: Option<u32>,
    /// Union of throttle reasons over all samples and GPUs, sorted.
    #[serde(default)]
    pub throttle_reasons_seen: Vec<String>,
    pub cpu_busy_pct_mean: Option<f64>,
    pub peak_host_mem_bytes: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Summary

/// Per-GPU state of the summary.
#[derive(Debug, Default, Clone)]
struct GpuAcc {
    /// Previous (t, util %) and (t, power W), for the trapezoid rule.
    prev_util: Option<(f64, f64)>,
    prev_power: Option<(f64, f64)>,
    busy_s: f64,
    has_busy: bool,
    power_j: f64,
    has_power: bool,
    first_energy_mj: Option<u64>,
    last_energy_mj: Option<u64>,
    energy_readings: usize,
    energy_monotonic: bool,
}

/// Incremental [`MonitorSummary`]: the sampler thread feeds it one sample at a time, so a
/// day-long `monitor` does not keep its samples in memory.
#[derive(Debug, Default, Clone)]
pub struct SummaryBuilder {
    samples: usize,
    first_t: Option<f64>,
    last_t: f64,
    gpus: BTreeMap<u32, GpuAcc>,
    peak_mem: Option<u64>,
    peak_proc_mem: Option<u64>,
    max_temp: Option<u32>,
    sm_min: Option<u32>,
    sm_max: Option<u32>,
    throttle: BTreeSet<String>,
    cpu_sum: f64,
    cpu_n: usize,
    peak_host: Option<u64>,
}

fn max_opt<T: Ord>(a: Option<T>, b: T) -> Option<T> {
    Some(match a {
        Some(a) if a >= b => a,
        _ => b,
    })
}

fn min_opt<T: Ord>(a: Option<T>, b: T) -> Option<T> {
    Some(match a {
        Some(a) if a <= b => a,
        _ => b,
    })
}

/// Adds the trapezoid from `prev` to `(t, v)` to `acc`; a missing reading breaks the segment.
fn trapezoid(prev: &mut Option<(f64, f64)>, t: f64, v: Option<f64>, acc: &mut f64, any: &mut bool) {
    match v {
        Some(v) => {
            if let Some((t0, v0)) = *prev {
                if t > t0 {
                    *acc += 0.5 * (v0 + v) * (t - t0);
                    *any = true;
                }
            }
            *prev = Some((t, v));
        }
        None => *prev = None,
    }
}

impl SummaryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample (samples must come in time order).
    pub fn push(&mut self, s: &Sample) {
        self.samples += 1;
        if self.first_t.is_none() {
            self.first_t = Some(s.t_s);
        }
        self.last_t = s.t_s;

        let mut mem_sum: Option<u64> = None;
        let mut proc_sum: Option<u64> = None;
        for g in &s.gpus {
            let acc = self.gpus.entry(g.index).or_insert_with(|| GpuAcc {
                energy_monotonic: true,
                ..GpuAcc::default()
            });
            trapezoid(
                &mut acc.prev_util,
                s.t_s,
                g.util_gpu_pct.map(|u| f64::from(u) / 100.0),
                &mut acc.busy_s,
                &mut acc.has_busy,
            );
            trapezoid(
                &mut acc.prev_power,
                s.t_s,
                g.power_w,
                &mut acc.power_j,
                &mut acc.has_power,
            );
            if let Some(e) = g.energy_mj {
                if acc.first_energy_mj.is_none() {
                    acc.first_energy_mj = Some(e);
                }
                if let Some(last) = acc.last_energy_mj {
                    // A counter going backwards (driver reload, wrap) makes the difference
                    // meaningless; fall back to the power integral for this GPU.
                    if e < last {
                        acc.energy_monotonic = false;
                    }
                }
                acc.last_energy_mj = Some(e);
                acc.energy_readings += 1;
            }
            if let Some(m) = g.mem_used_bytes {
                mem_sum = Some(mem_sum.unwrap_or(0) + m);
            }
            for p in &g.processes {
                if let Some(b) = p.used_bytes {
                    proc_sum = Some(proc_sum.unwrap_or(0) + b);
                }
            }
            if let Some(t) = g.temperature_c {
                self.max_temp = max_opt(self.max_temp, t);
            }
            if let Some(c) = g.sm_clock_mhz {
                self.sm_min = min_opt(self.sm_min, c);
                self.sm_max = max_opt(self.sm_max, c);
            }
            for r in &g.throttle_reasons {
                if !self.throttle.contains(r) {
                    self.throttle.insert(r.clone());
                }
            }
        }
        if let Some(m) = mem_sum {
            self.peak_mem = max_opt(self.peak_mem, m);
        }
        if let Some(p) = proc_sum {
            self.peak_proc_mem = max_opt(self.peak_proc_mem, p);
        }
        if let Some(c) = &s.cpu {
            if c.cpu_busy_pct.is_finite() {
                self.cpu_sum += c.cpu_busy_pct;
                self.cpu_n += 1;
            }
            self.peak_host = max_opt(self.peak_host, c.mem_used_bytes);
        }
    }

    /// The summary so far. `source` is "nvml" if any sample had a GPU, else "proc"; callers that
    /// know the [`Source`] use [`SummaryBuilder::finish_with`].
    pub fn finish(&self) -> MonitorSummary {
        let mut busy: Option<f64> = None;
        let mut energy: Option<f64> = None;
        for acc in self.gpus.values() {
            if acc.has_busy {
                busy = Some(busy.unwrap_or(0.0) + acc.busy_s);
            }
            let by_counter = match (acc.first_energy_mj, acc.last_energy_mj) {
                (Some(a), Some(b)) if acc.energy_readings >= 2 && acc.energy_monotonic => {
                    Some((b - a) as f64 / 1000.0)
                }
                _ => None,
            };
            let gpu_j = by_counter.or(acc.has_power.then_some(acc.power_j));
            if let Some(j) = gpu_j {
                energy = Some(energy.unwrap_or(0.0) + j);
            }
        }
        MonitorSummary {
            source: if self.gpus.is_empty() { "proc" } else { "nvml" }.to_string(),
            note: None,
            samples: self.samples,
            duration_s: self.first_t.map_or(0.0, |t0| (self.last_t - t0).max(0.0)),
            gpu_busy_s: busy,
            energy_j: energy,
            peak_mem_bytes: self.peak_mem,
            peak_process_mem_bytes: self.peak_proc_mem,
            max_temperature_c: self.max_temp,
            sm_clock_mhz_min: self.sm_min,
            sm_clock_mhz_max: self.sm_max,
            throttle_reasons_seen: self.throttle.iter().cloned().collect(),
            cpu_busy_pct_mean: (self.cpu_n > 0).then(|| self.cpu_sum / self.cpu_n as f64),
            peak_host_mem_bytes: self.peak_host,
        }
    }

    /// The summary, with source and note taken from `source`.
    pub fn finish_with(&self, source: &Source) -> MonitorSummary {
        let mut s = self.finish();
        s.source = source.kind().to_string();
        s.note = source.note().map(str::to_string);
        s
    }
}

/// Summary of a list of samples (in time order). Integrals use the trapezoid rule over `t_s`.
pub fn summarize(samples: &[Sample]) -> MonitorSummary {
    let mut b = SummaryBuilder::new();
    samples.iter().for_each(|s| b.push(s));
    b.finish()
}

/// Summary of a timeline read back, with source and note from its header.
pub fn summarize_timeline(header: &TimelineHeader, samples: &[Sample]) -> MonitorSummary {
    let mut b = SummaryBuilder::new();
    samples.iter().for_each(|s| b.push(s));
    b.finish_with(&header.source)
}

// ---------------------------------------------------------------------------------------------
// NVML: one instance per process

fn nvml_cell() -> &'static Result<Nvml, String> {
    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    NVML.get_or_init(|| {
        // Probe the library first so its absence reads as such, not as an NVML error code.
        // SAFETY: loading NVML runs no initialisers with preconditions on us.
        match unsafe { libloading::Library::new(NVML_LIBRARY) } {
            Ok(lib) => drop(lib),
            Err(e) => return Err(format!("{NVML_LIBRARY} not loadable: {e}")),
        }
        Nvml::init().map_err(|e| format!("NVML init failed: {e}"))
    })
}

/// The process-wide NVML instance, or why there is none.
pub fn nvml() -> Result<&'static Nvml, String> {
    nvml_cell().as_ref().map_err(Clone::clone)
}

/// Where the loaded NVML library lives, from this process's memory map.
fn loaded_library_path() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libnvidia-ml"))
        .map(str::to_string)
}

/// Human names of the set bits of an NVML throttle-reason mask.
pub fn throttle_reason_names(mask: u64) -> Vec<String> {
    const NAMES: &[(ThrottleReasons, &str)] = &[
        (ThrottleReasons::GPU_IDLE, "gpu_idle"),
        (
            ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
            "applications_clocks_setting",
        ),
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync_boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal"),
        (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake"),
        (ThrottleReasons::DISPLAY_CLOCK_SETTING, "display_clocks"),
    ];
    let mut out = Vec::new();
    let mut known = 0u64;
    for (flag, name) in NAMES {
        known |= flag.bits();
        if mask & flag.bits() != 0 {
            out.push((*name).to_string());
        }
    }
    let rest = mask & !known;
    if rest != 0 {
        // Newer drivers add reasons; keep them visible rather than drop them.
        out.push(format!("other_{rest:#x}"));
    }
    out
}

fn device_throttle(d: &Device<'_>) -> Vec<String> {
    d.current_throttle_reasons()
        .map(|r| throttle_reason_names(r.bits()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

/// CPU time counters from the first line of /proc/stat: (busy, total) in jiffies.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is already inside user.
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (used, total) bytes from /proc/meminfo; used = MemTotal - MemAvailable.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").or_else(|| {
        // Kernels before 3.14 have no MemAvailable.
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    })?;
    Some((total.saturating_sub(available), total))
}

/// VmRSS in bytes from a `/proc/<pid>/status` text.
pub fn parse_status_rss(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|x| x.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Host sampler over /proc. CPU busy is a difference of counters, so it keeps the last reading.
#[derive(Debug, Clone)]
pub struct ProcSampler {
    pids: Option<Vec<u32>>,
    prev_stat: Option<(u64, u64)>,
    last_busy_pct: f64,
}

impl ProcSampler {
    pub fn new(pids: Option<Vec<u32>>) -> Self {
        let prev_stat = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t));
        Self {
            pids,
            prev_stat,
            last_busy_pct: 0.0,
        }
    }

    /// One host sample; `None` where /proc is not there (not Linux).
    pub fn sample(&mut self) -> Option<CpuSample> {
        let (mem_used, mem_total) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo(&t))?;
        if let Some((busy, total)) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t))
        {
            if let Some((b0, t0)) = self.prev_stat {
                let dt = total.saturating_sub(t0);
                // Counters tick at USER_HZ (100 Hz); over a short interval nothing may have
                // ticked, and then the previous value is the best estimate.
                if dt > 0 {
                    let db = busy.saturating_sub(b0).min(dt);
                    self.last_busy_pct = 100.0 * db as f64 / dt as f64;
                }
            }
            self.prev_stat = Some((busy, total));
        }
        let process_rss_bytes = self.pids.as_ref().map(|pids| {
            pids.iter()
                .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
                .filter_map(|t| parse_status_rss(&t))
                .sum()
        });
        Some(CpuSample {
            cpu_busy_pct: self.last_busy_pct,
            mem_used_bytes: mem_used,
            mem_total_bytes: mem_total,
            process_rss_bytes,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The sampler

/// A synchronous sampler: NVML devices (if any) plus /proc. [`start`] runs one on a thread;
/// a caller can also take samples inline.
pub struct Monitor {
    source: Source,
    devices: Vec<(u32, Device<'static>)>,
    pids: Option<Vec<u32>>,
    proc: ProcSampler,
    origin: Instant,
    /// Test hook: time each sample takes on top of the reads (slow NVML), to test drift.
    #[cfg(test)]
    sample_delay: Duration,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("source", &self.source)
            .field("pids", &self.pids)
            .finish()
    }
}

impl Monitor {
    /// Opens NVML (once per process) and the selected devices; without NVML, a /proc monitor.
    /// Fails only on a bad config: a requested GPU index NVML does not have.
    pub fn new(config: &MonitorConfig) -> Result<Self, MonitorError> {
        if config.interval.is_zero() {
            return Err(MonitorError::Config("interval must be > 0".into()));
        }
        let proc = ProcSampler::new(config.pids.clone());
        let base = |source| Monitor {
            source,
            devices: Vec::new(),
            pids: config.pids.clone(),
            proc: proc.clone(),
            origin: Instant::now(),
            #[cfg(test)]
            sample_delay: Duration::ZERO,
        };
        let nvml = match nvml() {
            Ok(n) => n,
            Err(why) => {
                return Ok(base(Source::Proc {
                    note: format!("no NVIDIA GPU: {why}"),
                }))
            }
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => {
                return Ok(base(Source::Proc {
                    note: format!("no NVIDIA GPU: NVML device count failed: {e}"),
                }))
            }
        };
        if count == 0 {
            return Ok(base(Source::Proc {
                note: "no NVIDIA GPU: NVML reports 0 devices".into(),
            }));
        }
        let indices: Vec<u32> = config
            .gpu_indices
            .clone()
            .unwrap_or_else(|| (0..count).collect());
        let mut devices = Vec::with_capacity(indices.len());
        let mut names = Vec::with_capacity(indices.len());
        for i in indices {
            let d = nvml.device_by_index(i).map_err(|e| MonitorError::Gpu {
                index: i,
                reason: e.to_string(),
            })?;
            let name = d.name().unwrap_or_else(|_| "unknown".into());
            names.push(format!("{i}: {name}"));
            devices.push((i, d));
        }
        let driver_version = nvml
            .sys_driver_version()
            .unwrap_or_else(|_| "unknown".into());
        let mut m = base(Source::Nvml {
            driver_version,
            devices: names,
        });
        m.devices = devices;
        Ok(m)
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// One sample now; `t_s` is measured from when this monitor was created (or re-based by
    /// [`start`]).
    pub fn sample(&mut self) -> Sample {
        let t_s = self.origin.elapsed().as_secs_f64();
        let unix_ms = chrono::Utc::now().timestamp_millis();
        let gpus = self
            .devices
            .iter()
            .map(|(i, d)| sample_gpu(*i, d, self.pids.as_deref()))
            .collect();
        let cpu = self.proc.sample();
        #[cfg(test)]
        std::thread::sleep(self.sample_delay);
        Sample {
            t_s,
            unix_ms,
            gpus,
            cpu,
        }
    }
}

fn sample_gpu(index: u32, d: &Device<'_>, pids: Option<&[u32]>) -> GpuSample {
    let util = d.utilization_rates().ok();
    let mem = d.memory_info().ok();
    // Compute and graphics lists overlap for processes doing both; keep one entry per pid.
    let mut procs: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    let lists = [
        d.running_compute_processes(),
        d.running_graphics_processes(),
    ];
    for p in lists.into_iter().flat_map(|r| r.unwrap_or_default()) {
        if pids.is_some_and(|w| !w.contains(&p.pid)) {
            continue;
        }
        let used = match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => Some(b),
            UsedGpuMemory::Unavailable => None,
        };
        let e = procs.entry(p.pid).or_insert(None);
        *e = match (*e, used) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    GpuSample {
        index,
        util_gpu_pct: util.as_ref().map(|u| u.gpu),
        util_mem_pct: util.as_ref().map(|u| u.memory),
        mem_used_bytes: mem.as_ref().map(|m| m.used),
        mem_total_bytes: mem.as_ref().map(|m| m.total),
        power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        energy_mj: d.total_energy_consumption().ok(),
        sm_clock_mhz: d.clock_info(Clock::SM).ok(),
        mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
        temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
        throttle_reasons: device_throttle(d),
        processes: procs
            .into_iter()
            .map(|(pid, used_bytes)| ProcessMem { pid, used_bytes })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The sampler thread

/// The first deadline of the grid `start + k * interval` (k >= 1) that is after `now`.
/// Missed deadlines are skipped, never squeezed in, and the grid never shifts.
pub fn next_deadline(start: Instant, interval: Duration, now: Instant) -> Instant {
    let elapsed = now.saturating_duration_since(start).as_nanos();
    let step = interval.as_nanos().max(1);
    let k = elapsed / step + 1;
    start + Duration::from_nanos(u64::try_from(k * step).unwrap_or(u64::MAX))
}

fn write_line<T: Serialize>(file: &mut File, path: &Path, value: &T) -> Result<(), MonitorError> {
    let mut line = serde_json::to_vec(value).map_err(|e| MonitorError::Json {
        path: path.to_path_buf(),
        line: 0,
        source: e,
    })?;
    line.push(b'\n');
    // One write per line on an unbuffered file: a kill leaves at most the last line torn.
    file.write_all(&line).map_err(io_err(path))?;
    file.flush().map_err(io_err(path))
}

/// A running monitor thread. Dropping it stops the thread (without the summary).
#[derive(Debug)]
pub struct MonitorHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<MonitorSummary, MonitorError>>>,
    source: Source,
    path: PathBuf,
}

impl MonitorHandle {
    /// The flag that ends the thread when set (at its next deadline); for a `monitor` command
    /// that runs until Ctrl-C: set it from the signal handler, then call [`MonitorHandle::wait`].
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn timeline_path(&self) -> &Path {
        &self.path
    }

    /// Whether the thread has ended (stopped, or failed writing).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the thread now (it takes one last sample) and returns the summary.
    pub fn stop(mut self) -> Result<MonitorSummary, MonitorError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits until the stop flag is set by someone else (or the thread fails), then returns
    /// the summary.
    pub fn wait(mut self) -> Result<MonitorSummary, MonitorError> {
        self.join()
    }

    fn join(&mut self) -> Result<MonitorSummary, MonitorError> {
        let Some(t) = self.thread.take() else {
            return Err(MonitorError::ThreadPanicked);
        };
        t.thread().unpark();
        t.join().map_err(|_| MonitorError::ThreadPanicked)?
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.join();
        }
    }
}

/// Starts a monitor thread that writes the timeline at `timeline_path` (created or truncated):
/// a header line, a sample at once, then one every `config.interval` on a fixed grid, and a
/// last one when stopped.
pub fn start(config: MonitorConfig, timeline_path: &Path) -> Result<MonitorHandle, MonitorError> {
    let monitor = Monitor::new(&config)?;
    spawn(monitor, &config, timeline_path)
}

fn spawn(
    mut monitor: Monitor,
    config: &MonitorConfig,
    timeline_path: &Path,
) -> Result<MonitorHandle, MonitorError> {
    let path = timeline_path.to_path_buf();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err(&path))?;

    let start_wall = chrono::Utc::now();
    let header = TimelineHeader {
        schema: TIMELINE_SCHEMA.to_string(),
        source: monitor.source.clone(),
        config: TimelineConfig::from(config),
        start_time: start_wall.to_rfc3339(),
        start_unix_ms: start_wall.timestamp_millis(),
        monitor_pid: std::process::id(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty()),
    };
    write_line(&mut file, &path, &header)?;
    if let Source::Proc { note } = &monitor.source {
        tracing::info!(target: "rdbench::monitor", "{note}; recording CPU and memory from /proc");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let source = monitor.source.clone();
    let interval = config.interval;
    let thread_stop = Arc::clone(&stop);
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("rdbench-monitor".into())
        .spawn(move || {
            let start = Instant::now();
            monitor.origin = start;
            let mut summary = SummaryBuilder::new();
            let mut record = |monitor: &mut Monitor, file: &mut File| -> Result<(), MonitorError> {
                let s = monitor.sample();
                write_line(file, &thread_path, &s)?;
                summary.push(&s);
                Ok(())
            };
            record(&mut monitor, &mut file)?;
            'run: loop {
                let deadline = next_deadline(start, interval, Instant::now());
                // park_timeout may wake early (unpark, spuriously); re-check until the deadline.
                loop {
                    if thread_stop.load(Ordering::SeqCst) {
                        break 'run;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::park_timeout(deadline - now);
                }
                record(&mut monitor, &mut file)?;
            }
            // A last sample at stop, so the summary spans the whole run.
            record(&mut monitor, &mut file)?;
            Ok(summary.finish_with(&monitor.source))
        })
        .map_err(MonitorError::Spawn)?;
    Ok(MonitorHandle {
        stop,
        thread: Some(thread),
        source,
        path,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading a timeline

/// Reads a timeline back; a torn last line is skipped (see [`read_timeline_detailed`]) and
/// logged.
pub fn read_timeline(path: &Path) -> Result<(TimelineHeader, Vec<Sample>), MonitorError> {
    let t = read_timeline_detailed(path)?;
    if let Some(line) = &t.torn_last_line {
        tracing::warn!(
            target: "rdbench::monitor",
            "{}: ignoring a torn last line ({} bytes)",
            path.display(),
            line.len()
        );
    }
    Ok((t.header, t.samples))
}

/// Reads a timeline back, reporting a torn last line instead of failing on it. Any other
/// unparseable line is an error.
pub fn read_timeline_detailed(path: &Path) -> Result<Timeline, MonitorError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let bytes = line.map_err(io_err(path))?;
        // A torn write can cut a UTF-8 sequence; keep it as text for the parse to reject.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !text.trim().is_empty() {
            lines.push((i + 1, text));
        }
    }
    let Some((_, first)) = lines.first() else {
        return Err(MonitorError::BadTimeline {
            path: path.into(),
            reason: "empty file".into(),
        });
    };
    let header: TimelineHeader =
        serde_json::from_str(first).map_err(|e| MonitorError::BadTimeline {
            path: path.into(),
            reason: format!("bad header line: {e}"),
        })?;
    if header.schema != TIMELINE_SCHEMA {
        return Err(MonitorError::BadTimeline {
            path: path.into(),
            reason: format!("schema {:?}, expected {TIMELINE_SCHEMA:?}", header.schema),
        });
    }
    let n = lines.len();
    let mut samples = Vec::with_capacity(n - 1);
    let mut torn_last_line = None;
    for (k, (line_no, text)) in lines.into_iter().enumerate().skip(1) {
        match serde_json::from_str::<Sample>(&text) {
            Ok(s) => samples.push(s),
            Err(_) if k == n - 1 => torn_last_line = Some(text),
            Err(source) => {
                return Err(MonitorError::Json {
                    path: path.into(),
                    line: line_no,
                    source,
                })
            }
        }
    }
    Ok(Timeline {
        header,
        samples,
        torn_last_line,
    })
}

// ---------------------------------------------------------------------------------------------
// Clock snapshots for the timing loop

/// Clocks and limits of one GPU at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockSnapshot {
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub throttle_reasons: Vec<String>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
}

/// Reads one GPU's clocks; holds the device handle so each read is five NVML queries.
pub struct ClockReader {
    index: u32,
    device: Device<'static>,
}

impl std::fmt::Debug for ClockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockReader")
            .field("index", &self.index)
            .finish()
    }
}

impl ClockReader {
    /// `None` without NVML or without that GPU.
    pub fn open(gpu_index: u32) -> Option<ClockReader> {
        let device = nvml().ok()?.device_by_index(gpu_index).ok()?;
        Some(ClockReader {
            index: gpu_index,
            device,
        })
    }

    /// The NVML device with this PCI bus id (as CUDA reports it, e.g. `0000:18:00.0`): the
    /// way to read the clocks of the GPU a CUDA ordinal names, since NVML indices and CUDA
    /// ordinals differ under `CUDA_VISIBLE_DEVICES` or CUDA's fastest-first ordering.
    pub fn open_pci(bus_id: &str) -> Option<ClockReader> {
        let device = nvml().ok()?.device_by_pci_bus_id(bus_id).ok()?;
        let index = device.index().ok()?;
        Some(ClockReader { index, device })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn read(&self) -> ClockSnapshot {
        let d = &self.device;
        ClockSnapshot {
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
            throttle_reasons: device_throttle(d),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// doctor

/// One GPU as NVML describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvmlDevice {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub pci_bus_id: Option<String>,
    /// Power management limit.
    pub power_limit_w: Option<f64>,
    pub max_sm_clock_mhz: Option<u32>,
    pub max_mem_clock_mhz: Option<u32>,
    /// "9.0" for an H100.
    pub compute_capability: Option<String>,
}

/// What NVML says about this machine, for `rdbench doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvmlReport {
    pub available: bool,
    pub error: Option<String>,
    pub library_path: Option<String>,
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, "13.0".
    pub cuda_driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub devices: Vec<NvmlDevice>,
}

/// Reports NVML's view of the machine; never fails, `error` says what is missing.
pub fn nvml_report() -> NvmlReport {
    let nvml = match nvml() {
        Ok(n) => n,
        Err(e) => {
            return NvmlReport {
                available: false,
                error: Some(e),
                library_path: None,
                driver_version: None,
                cuda_driver_version: None,
                nvml_version: None,
                devices: Vec::new(),
            }
        }
    };
    let mut error = None;
    let count = nvml.device_count().unwrap_or_else(|e| {
        error = Some(format!("device count failed: {e}"));
        0
    });
    let devices = (0..count)
        .map(|i| match nvml.device_by_index(i) {
            Ok(d) => NvmlDevice {
                index: i,
                name: d.name().ok(),
                uuid: d.uuid().ok(),
                memory_total_bytes: d.memory_info().ok().map(|m| m.total),
                pci_bus_id: d.pci_info().ok().map(|p| p.bus_id),
                power_limit_w: d
                    .power_management_limit()
                    .ok()
                    .map(|mw| f64::from(mw) / 1000.0),
                max_sm_clock_mhz: d.max_clock_info(Clock::SM).ok(),
                max_mem_clock_mhz: d.max_clock_info(Clock::Memory).ok(),
                compute_capability: d
                    .cuda_compute_capability()
                    .ok()
                    .map(|c| format!("{}.{}", c.major, c.minor)),
            },
            Err(e) => {
                error.get_or_insert_with(|| format!("device {i}: {e}"));
                NvmlDevice {
                    index: i,
                    name: None,
                    uuid: None,
                    memory_total_bytes: None,
                    pci_bus_id: None,
                    power_limit_w: None,
                    max_sm_clock_mhz: None,
                    max_mem_clock_mhz: None,
                    compute_capability: None,
                }
            }
        })
        .collect();
    NvmlReport {
        available: true,
        error,
        library_path: loaded_library_path().or_else(|| Some(NVML_LIBRARY.to_string())),
        driver_version: nvml.sys_driver_version().ok(),
        cuda_driver_version: nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        }),
        nvml_version: nvml.sys_nvml_version().ok(),
        devices,
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, util: u32, power: f64, energy: Option<u64>) -> GpuSample {
        GpuSample {
            index,
            util_gpu_pct: Some(util),
            util_mem_pct: Some(0),
            mem_used_bytes: Some(1000),
            mem_total_bytes: Some(10_000),
            power_w: Some(power),
            energy_mj: energy,
            sm_clock_mhz: Some(1500),
            mem_clock_mhz: Some(2600),
            temperature_c: Some(50),
            throttle_reasons: Vec::new(),
            processes: Vec::new(),
        }
    }

    fn at(t_s: f64, gpus: Vec<GpuSample>) -> Sample {
        Sample {
            t_s,
            unix_ms: (t_s * 1000.0) as i64,
            gpus,
            cpu: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summarize_busy_seconds_trapezoid() {
        // 0% -> 100% over 1 s (0.5 busy-s), 100% for 2 s (2 busy-s).
        let s = [
            at(0.0, vec![gpu(0, 0, 0.0, None)]),
            at(1.0, vec![gpu(0, 100, 0.0, None)]),
            at(3.0, vec![gpu(0, 100, 0.0, None)]),
        ];
        let m = summarize(&s);
        assert_eq!(m.samples, 3);
        assert!(close(m.duration_s, 3.0));
        assert!(close(m.gpu_busy_s.unwrap(), 2.5), "{:?}", m.gpu_busy_s);
        assert_eq!(m.source, "nvml");
    }

    #[test]
    fn summarize_busy_seconds_sum_over_gpus_and_gaps() {
        let mut missing = gpu(1, 0, 0.0, None);
        missing.util_gpu_pct = None;
        let s = [
            at(0.0, vec![gpu(0, 50, 0.0, None), gpu(1, 100, 0.0, None)]),
            at(2.0, vec![gpu(0, 50, 0.0, None), missing]),
            at(4.0, vec![gpu(0, 50, 0.0, None), gpu(1, 100, 0.0, None)]),
        ];
        // GPU 0: 0.5 * 4 = 2; GPU 1: both segments touch a missing reading, so nothing.
        assert!(close(summarize(&s).gpu_busy_s.unwrap(), 2.0));
    }

    #[test]
    fn summarize_energy_by_counter_beats_power_integral() {
        let s = [
            at(0.0, vec![gpu(0, 0, 100.0, Some(1_000_000))]),
            at(1.0, vec![gpu(0, 0, 100.0, Some(1_250_000))]),
            at(2.0, vec![gpu(0, 0, 100.0, Some(1_300_000))]),
        ];
        // Counter: 300_000 mJ = 300 J (the power integral would say 200 J).
        assert!(close(summarize(&s).energy_j.unwrap(), 300.0));
    }

    #[test]
    fn summarize_energy_by_power_integral() {
        let s = [
            at(0.0, vec![gpu(0, 0, 100.0, None)]),
            at(1.0, vec![gpu(0, 0, 300.0, None)]),
            at(1.5, vec![gpu(0, 0, 300.0, None)]),
        ];
        // 200 J + 150 J.
        assert!(close(summarize(&s).energy_j.unwrap(), 350.0));
        // A counter that goes backwards is not trusted.
        let s = [
            at(0.0, vec![gpu(0, 0, 100.0, Some(5_000))]),
            at(1.0, vec![gpu(0, 0, 100.0, Some(1_000))]),
        ];
        assert!(close(summarize(&s).energy_j.unwrap(), 100.0));
        // Energy per GPU by its own means, then summed.
        let s = [
            at(0.0, vec![gpu(0, 0, 10.0, Some(0)), gpu(1, 0, 100.0, None)]),
            at(
                1.0,
                vec![gpu(0, 0, 10.0, Some(40_000)), gpu(1, 0, 100.0, None)],
            ),
        ];
        assert!(close(summarize(&s).energy_j.unwrap(), 140.0));
    }

    #[test]
    fn summarize_peaks_clocks_throttle_union() {
        let mut a = gpu(0, 10, 50.0, None);
        a.mem_used_bytes = Some(4_000);
        a.sm_clock_mhz = Some(1980);
        a.temperature_c = Some(61);
        a.throttle_reasons = vec!["gpu_idle".into()];
        a.processes = vec![ProcessMem {
            pid: 7,
            used_bytes: Some(3_000),
        }];
        let mut b = gpu(1, 10, 50.0, None);
        b.mem_used_bytes = Some(5_000);
        b.sm_clock_mhz = Some(1410);
        b.throttle_reasons = vec!["sw_power_cap".into(), "gpu_idle".into()];
        let mut c = gpu(0, 10, 50.0, None);
        c.mem_used_bytes = Some(8_000);
        c.sm_clock_mhz = Some(1755);
        c.temperature_c = Some(75);
        c.throttle_reasons = vec!["hw_thermal".into()];
        c.processes = vec![
            ProcessMem {
                pid: 7,
                used_bytes: Some(6_000),
            },
            ProcessMem {
                pid: 8,
                used_bytes: None,
            },
        ];
        let cpu = |busy: f64, mem: u64| CpuSample {
            cpu_busy_pct: busy,
            mem_used_bytes: mem,
            mem_total_bytes: 1 << 30,
            process_rss_bytes: None,
        };
        let mut s1 = at(0.0, vec![a, b]);
        s1.cpu = Some(cpu(20.0, 900));
        let mut s2 = at(1.0, vec![c]);
        s2.cpu = Some(cpu(60.0, 700));
        let m = summarize(&[s1, s2]);
        // Sum over GPUs at an instant: 4000 + 5000 beats 8000.
        assert_eq!(m.peak_mem_bytes, Some(9_000));
        assert_eq!(m.peak_process_mem_bytes, Some(6_000));
        assert_eq!(m.sm_clock_mhz_min, Some(1410));
        assert_eq!(m.sm_clock_mhz_max, Some(1980));
        assert_eq!(m.max_temperature_c, Some(75));
        assert_eq!(
            m.throttle_reasons_seen,
            vec!["gpu_idle", "hw_thermal", "sw_power_cap"]
        );
        assert!(close(m.cpu_busy_pct_mean.unwrap(), 40.0));
        assert_eq!(m.peak_host_mem_bytes, Some(900));
    }

    #[test]
    fn summarize_proc_only_and_empty() {
        let e = summarize(&[]);
        assert_eq!(
            (e.samples, e.duration_s, e.gpu_busy_s, e.energy_j),
            (0, 0.0, None, None)
        );
        assert_eq!(e.source, "proc");
        let s = [at(0.0, vec![]), at(0.5, vec![])];
        let m = summarize(&s);
        assert_eq!(m.source, "proc");
        assert_eq!(m.gpu_busy_s, None);
        assert_eq!(m.peak_mem_bytes, None);
        assert!(m.throttle_reasons_seen.is_empty());
        let src = Source::Proc {
            note: "no NVIDIA GPU: x".into(),
        };
        let mut b = SummaryBuilder::new();
        s.iter().for_each(|x| b.push(x));
        assert_eq!(
            b.finish_with(&src).note.as_deref(),
            Some("no NVIDIA GPU: x")
        );
    }

    #[test]
    fn throttle_names_from_mask() {
        assert!(throttle_reason_names(0).is_empty());
        let m = ThrottleReasons::SW_POWER_CAP.bits() | ThrottleReasons::HW_THERMAL_SLOWDOWN.bits();
        assert_eq!(throttle_reason_names(m), vec!["sw_power_cap", "hw_thermal"]);
        let names = throttle_reason_names(ThrottleReasons::GPU_IDLE.bits() | (1 << 40));
        assert_eq!(names[0], "gpu_idle");
        assert!(names[1].starts_with("other_0x"), "{names:?}");
    }

    #[test]
    fn proc_parsers() {
        let stat = "cpu  100 5 50 800 20 1 2 3 7 0\ncpu0 1 2 3 4\n";
        // total = 100+5+50+800+20+1+2+3 = 981; idle = 820.
        assert_eq!(parse_proc_stat(stat), Some((161, 981)));
        let mi = "MemTotal:       2048 kB\nMemFree:         100 kB\nMemAvailable:    512 kB\n";
        assert_eq!(parse_meminfo(mi), Some((1536 * 1024, 2048 * 1024)));
        let old = "MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 5 kB\n";
        assert_eq!(parse_meminfo(old), Some((80 * 1024, 100 * 1024)));
        assert_eq!(
            parse_status_rss("Name: x\nVmRSS:\t  12 kB\n"),
            Some(12 * 1024)
        );
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn proc_sampler_plausible_here() {
        let mut p = ProcSampler::new(Some(vec![std::process::id()]));
        // Burn a little CPU so the counters move.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let c = p.sample().expect("this machine has /proc");
        assert!(c.mem_total_bytes > 0);
        assert!(c.mem_used_bytes > 0 && c.mem_used_bytes <= c.mem_total_bytes);
        assert!(
            (0.0..=100.0).contains(&c.cpu_busy_pct),
            "{}",
            c.cpu_busy_pct
        );
        let rss = c.process_rss_bytes.expect("our own pid");
        assert!(rss > 1 << 20, "rss {rss}");
        assert_eq!(
            ProcSampler::new(None).sample().unwrap().process_rss_bytes,
            None
        );
    }

    #[test]
    fn source_matches_library_presence() {
        // SAFETY: only checks whether the dynamic loader can find the library.
        let lib_present = unsafe { libloading::Library::new(NVML_LIBRARY) }.is_ok();
        let m = Monitor::new(&MonitorConfig::default()).expect("default config never fails");
        match m.source() {
            Source::Proc { note } => {
                assert!(note.starts_with("no NVIDIA GPU"), "{note}");
                if !lib_present {
                    assert!(note.contains(NVML_LIBRARY), "{note}");
                }
                assert!(ClockReader::open(0).is_none() || lib_present);
                let r = nvml_report();
                if !lib_present {
                    assert!(!r.available && r.error.is_some() && r.devices.is_empty());
                }
            }
            Source::Nvml {
                driver_version,
                devices,
            } => {
                assert!(lib_present);
                assert!(!driver_version.is_empty() && !devices.is_empty());
                let r = nvml_report();
                assert!(r.available && !r.devices.is_empty());
                let c = ClockReader::open(0).expect("GPU 0 exists").read();
                assert!(c.sm_clock_mhz.is_some());
            }
        }
    }

    #[test]
    fn zero_interval_is_a_config_error() {
        let c = MonitorConfig {
            interval: Duration::ZERO,
            ..MonitorConfig::default()
        };
        assert!(matches!(Monitor::new(&c), Err(MonitorError::Config(_))));
    }

    #[test]
    fn next_deadline_stays_on_grid() {
        let s = Instant::now();
        let i = Duration::from_millis(20);
        assert_eq!(next_deadline(s, i, s), s + i);
        assert_eq!(next_deadline(s, i, s + Duration::from_millis(5)), s + i);
        // Exactly on a deadline: the next one.
        assert_eq!(next_deadline(s, i, s + i), s + 2 * i);
        // Late by 2.5 intervals (a slow sample): skip to the grid, do not shift it.
        assert_eq!(
            next_deadline(s, i, s + Duration::from_millis(70)),
            s + 4 * i
        );
        assert_eq!(
            next_deadline(s, i, s + Duration::from_secs(3600)),
            s + Duration::from_millis(3_600_020)
        );
    }

    #[test]
    fn start_stop_writes_timeline_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("timeline.jsonl");
        let cfg = MonitorConfig {
            interval: Duration::from_millis(20),
            ..MonitorConfig::default()
        };
        let h = start(cfg, &path).unwrap();
        assert_eq!(h.timeline_path(), path);
        std::thread::sleep(Duration::from_millis(200));
        let summary = h.stop().unwrap();
        let (header, samples) = read_timeline(&path).unwrap();
        assert_eq!(header.schema, TIMELINE_SCHEMA);
        assert_eq!(header.config.interval_ms, 20.0);
        assert_eq!(header.monitor_pid, std::process::id());
        // Initial + about 10 on the grid + final; allow for a loaded machine.
        assert!(samples.len() >= 6, "{} samples", samples.len());
        assert_eq!(summary.samples, samples.len());
        assert_eq!(summary.source, header.source.kind());
        assert_eq!(summary, summarize_timeline(&header, &samples));
        assert!(summary.duration_s >= 0.15, "{}", summary.duration_s);
        assert!(samples.windows(2).all(|w| w[0].t_s <= w[1].t_s));
        assert!(samples.iter().all(|s| s.cpu.is_some()));
        if let Source::Proc { note } = &header.source {
            assert!(note.starts_with("no NVIDIA GPU"));
            assert_eq!(summary.note.as_deref(), Some(note.as_str()));
            assert!(samples.iter().all(|s| s.gpus.is_empty()));
        }
    }

    #[test]
    fn sampling_does_not_drift() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let interval = 0.04;
        let cfg = MonitorConfig {
            interval: Duration::from_millis(40),
            ..MonitorConfig::default()
        };
        let mut m = Monitor::new(&cfg).unwrap();
        // Each sample takes 13 ms more than the reads: sleeping `interval` between samples
        // would put sample k at k * 53 ms, cycling through offsets 13, 26, 39, 12, ... ms
        // from the 40 ms grid (median about 25 ms). On the grid, offsets are wake-up latency.
        m.sample_delay = Duration::from_millis(13);
        let h = spawn(m, &cfg, &path).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        h.stop().unwrap();
        let (_, samples) = read_timeline(&path).unwrap();
        // Drop the initial sample (t = 0) and the final one (taken at stop, off the grid).
        let grid = &samples[1..samples.len() - 1];
        assert!(grid.len() >= 10, "{} grid samples", grid.len());
        let mut offsets: Vec<f64> = grid
            .iter()
            .map(|s| s.t_s - (s.t_s / interval).floor() * interval)
            .collect();
        offsets.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // Generous for a loaded 2-core machine, still well below the drifting median.
        let median = offsets[offsets.len() / 2];
        assert!(
            median < 0.012,
            "median offset from the grid {median}: {offsets:?}"
        );
    }

    #[test]
    fn torn_last_line_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let h = start(
            MonitorConfig {
                interval: Duration::from_millis(10),
                ..Default::default()
            },
            &path,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        h.stop().unwrap();
        let (_, whole) = read_timeline(&path).unwrap();
        // Append half a line, as a kill mid-write would.
        let full = serde_json::to_string(&whole[0]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);
        let t = read_timeline_detailed(&path).unwrap();
        assert_eq!(t.samples, whole);
        assert!(t.torn_last_line.is_some());
        assert_eq!(read_timeline(&path).unwrap().1.len(), whole.len());
        // A bad line in the middle is an error naming the file and line.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{not json");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let e = read_timeline(&path).unwrap_err();
        assert!(matches!(e, MonitorError::Json { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("t.jsonl"), "{e}");
    }

    #[test]
    fn bad_timelines_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.jsonl");
        let e = read_timeline(&missing).unwrap_err();
        assert!(
            matches!(e, MonitorError::Io { .. }) && e.to_string().contains("none.jsonl"),
            "{e}"
        );
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            read_timeline(&empty),
            Err(MonitorError::BadTimeline { .. })
        ));
        let other = dir.path().join("other.jsonl");
        let mut header = serde_json::to_value(TimelineHeader {
            schema: TIMELINE_SCHEMA.into(),
            source: Source::Proc {
                note: "no NVIDIA GPU: test".into(),
            },
            config: TimelineConfig::from(&MonitorConfig::default()),
            start_time: "2026-01-01T00:00:00Z".into(),
            start_unix_ms: 0,
            monitor_pid: 1,
            hostname: None,
        })
        .unwrap();
        header["schema"] = "other/2".into();
        std::fs::write(&other, format!("{header}\n")).unwrap();
        let e = read_timeline(&other).unwrap_err();
        assert!(e.to_string().contains("other/2"), "{e}");
    }

    #[test]
    fn drop_stops_thread_and_leaves_readable_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let h = start(
            MonitorConfig {
                interval: Duration::from_millis(10),
                ..Default::default()
            },
            &path,
        )
        .unwrap();
        let flag = h.stop_flag();
        std::thread::sleep(Duration::from_millis(30));
        flag.store(true, Ordering::SeqCst);
        let t = Instant::now();
        let s = h.wait().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(s.samples >= 2);
        let h2 = start(MonitorConfig::default(), &path).unwrap();
        drop(h2);
        let (_, samples) = read_timeline(&path).unwrap();
        // Truncated and rewritten: the initial and the final sample.
        assert!(
            !samples.is_empty() && samples.len() <= 3,
            "{}",
            samples.len()
        );
    }

    #[test]
    fn serde_shapes() {
        let src = Source::Nvml {
            driver_version: "580.1".into(),
            devices: vec!["0: H100".into()],
        };
        let v = serde_json::to_value(&src).unwrap();
        assert_eq!(v["kind"], "nvml");
        let back: Source = serde_json::from_value(v).unwrap();
        assert_eq!(back, src);
        let s = at(0.25, vec![gpu(0, 3, 1.5, Some(9))]);
        let back: Sample = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let m = summarize(&[s.clone(), at(0.5, vec![gpu(0, 3, 1.5, Some(19))])]);
        let back: MonitorSummary =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
