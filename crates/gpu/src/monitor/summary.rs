//! Summarizing samples into a [`MonitorSummary`]: busy seconds and power by the trapezoid rule,
//! energy from the counter's difference where it is trustworthy, peaks, clock range and the
//! union of throttle reasons. [`SummaryBuilder`] is incremental, so a long run keeps no samples.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{MonitorSummary, Sample, Source, TimelineHeader};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{CpuSample, GpuSample, ProcessMem};

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
