//! The data model: what to sample ([`MonitorConfig`]), one sample ([`Sample`] of
//! [`GpuSample`]s and a [`CpuSample`]), where samples come from ([`Source`]), the timeline file's
//! header, and the [`MonitorSummary`] of a run. All of it is (de)serialized as timeline lines or
//! score entries, so field names are part of the file formats.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Schema tag of the timeline's header line.
pub const TIMELINE_SCHEMA: &str = "rdbench.timeline/1";

/// What to sample and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Time between samples (the grid of deadlines).
    pub interval: Duration,
    /// GPUs to sample, by NVML index; `None` = all.
    pub gpu_indices: Option<Vec<u32>>,
    /// Processes whose GPU memory (and host RSS) to record; `None` = all GPU processes, no RSS.
    pub processes: Option<Watched>,
}

/// Which processes a monitor follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Watched {
    /// Exactly these processes.
    Pids { pids: Vec<u32> },
    /// A process and everything it started, found again at each sample: its descendants by
    /// parent, and every member of its process group. A worker's own children (the NVRTC
    /// child, a tool's subprocesses) count with it; with the runner's PID namespace the root is
    /// the namespace's init, to which orphans are reparented, so a descendant that left the
    /// group is still under the root.
    TreeOf { root: u32 },
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            gpu_indices: None,
            processes: None,
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
    /// Summed VmRSS of the watched processes (that still exist); `None` when none are watched.
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
    #[serde(default)]
    pub processes: Option<Watched>,
}

impl From<&MonitorConfig> for TimelineConfig {
    fn from(c: &MonitorConfig) -> Self {
        Self {
            interval_ms: c.interval.as_secs_f64() * 1e3,
            gpu_indices: c.gpu_indices.clone(),
            processes: c.processes.clone(),
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
