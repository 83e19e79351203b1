//! Taking samples: [`Monitor`] reads the NVML devices (if any) and /proc in one call, and
//! [`start`] runs one on its own thread, writing the timeline a line at a time on a fixed grid
//! of deadlines and feeding the summary as it goes. [`MonitorHandle`] stops it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Device;
use serde::Serialize;

use super::error::{io_err, MonitorError};
use super::model::{
    GpuSample, MonitorConfig, MonitorSummary, ProcessMem, Sample, Source, TimelineConfig,
    TimelineHeader, Watched, TIMELINE_SCHEMA,
};
use super::nvml::{device_throttle, nvml};
use super::procfs::ProcSampler;
use super::summary::SummaryBuilder;

/// A synchronous sampler: NVML devices (if any) plus /proc. [`start`] runs one on a thread;
/// a caller can also take samples inline.
pub struct Monitor {
    source: Source,
    devices: Vec<(u32, Device<'static>)>,
    processes: Option<Watched>,
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
            .field("processes", &self.processes)
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
        let proc = ProcSampler::new();
        let base = |source| Monitor {
            source,
            devices: Vec::new(),
            processes: config.processes.clone(),
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
        let pids = self.processes.as_ref().map(Watched::resolve);
        let gpus = self
            .devices
            .iter()
            .map(|(i, d)| sample_gpu(*i, d, pids.as_deref()))
            .collect();
        let cpu = self.proc.sample(pids.as_deref());
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

/// A monitor sampling every 10 ms into `dir/t.jsonl`, for tests of the sampler and the
/// timeline reader.
#[cfg(test)]
pub(crate) fn start_fast(dir: &Path) -> (MonitorHandle, PathBuf) {
    let path = dir.join("t.jsonl");
    let config = MonitorConfig {
        interval: Duration::from_millis(10),
        ..Default::default()
    };
    (start(config, &path).expect("the monitor starts"), path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{
        gpu_count, nvml_report, read_timeline, summarize_timeline, ClockReader, NVML_LIBRARY,
    };

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
    fn gpu_count_agrees_with_source() {
        let m = Monitor::new(&MonitorConfig::default()).expect("default config never fails");
        match m.source() {
            // No NVML, a failed count, or no device.
            Source::Proc { .. } => assert_eq!(gpu_count().unwrap_or(0), 0),
            // The default config samples every GPU.
            Source::Nvml { devices, .. } => assert_eq!(gpu_count(), Some(devices.len() as u32)),
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
    fn drop_stops_thread_and_leaves_readable_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let (h, path) = super::start_fast(dir.path());
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
}
