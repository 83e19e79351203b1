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
//!
//! One file per concern: `model` (the types), `summary`, `nvml` (the session), `procfs`,
//! `sampler` (the monitor and its thread), `timeline` (reading back), `clocks`, `report`
//! (doctor), `error`. Everything public is re-exported here, so paths are `monitor::X`.

mod clocks;
mod error;
mod model;
mod nvml;
mod procfs;
mod report;
mod sampler;
mod summary;
mod timeline;

pub use clocks::{ClockReader, ClockSnapshot};
pub use error::MonitorError;
pub use model::{
    CpuSample, GpuSample, MonitorConfig, MonitorSummary, ProcessMem, Sample, Source, Timeline,
    TimelineConfig, TimelineHeader, Watched, TIMELINE_SCHEMA,
};
pub use nvml::{gpu_count, nvml, throttle_reason_names};
pub use procfs::{
    parse_meminfo, parse_proc_stat, parse_stat_ids, parse_status_rss, tree_of, ProcSampler,
};
pub use report::{nvml_report, NvmlDevice, NvmlReport};
pub use sampler::{next_deadline, start, Monitor, MonitorHandle};
pub use summary::{summarize, summarize_timeline, SummaryBuilder};
pub use timeline::{read_timeline, read_timeline_detailed};
// The name lives with the other NVML library names, in the probe.
pub use crate::probe::NVML_LIBRARY;
