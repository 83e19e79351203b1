//! Analysis of timed samples: statistics, the adaptive stopping rule, throttle
//! classification and the speed-of-light floor.
//!
//! Measurement (CUDA events, in [`crate::backend::cuda`]) is kept apart from analysis (here),
//! so the raw samples saved beside the score log can be re-analysed offline with the same code.
//!
//! Noise is the relative half-width of a distribution-free 95 % confidence interval of the
//! median (order statistics around n/2 +- 1.96 sqrt(n)/2): the precision of the number that is
//! scored. The relative standard deviation (nvbench's "noise") is reported beside it.

use serde::{Deserialize, Serialize};

/// When to stop taking timed samples.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StoppingRule {
    /// Warm-up before the first timed sample, seconds of wall time.
    pub warmup_s: f64,
    pub min_samples: usize,
    /// Stop once the median's relative 95 % CI half-width is at most this.
    pub max_rel_noise: f64,
    /// Never stop before this much wall time was spent sampling.
    pub min_time_s: f64,
    /// Stop here whatever the noise.
    pub max_time_s: f64,
}

impl Default for StoppingRule {
    fn default() -> Self {
        StoppingRule {
            warmup_s: 0.2,
            min_samples: 10,
            max_rel_noise: 0.005,
            min_time_s: 0.5,
            max_time_s: 15.0,
        }
    }
}

/// Why sampling stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Enough samples, enough time, noise under the limit.
    Converged,
    /// The time cap was reached first.
    TimeCap,
}

/// ln of the geometric mean of `xs` (the mean of their logs); NaN for an empty list or any
/// value that is not positive and finite.
pub fn ln_geometric_mean(xs: &[f64]) -> f64 {
    if xs.is_empty() || xs.iter().any(|x| !(*x > 0.0 && x.is_finite())) {
        return f64::NAN;
    }
    xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64
}

/// The geometric mean of `xs` (NaN as for [`ln_geometric_mean`]).
pub fn geometric_mean(xs: &[f64]) -> f64 {
    ln_geometric_mean(xs).exp()
}

/// Summary statistics of timed samples (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub median_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
    /// stddev / mean.
    pub rel_stddev: f64,
    /// Relative half-width of the 95 % CI of the median.
    pub noise: f64,
}

/// Statistics of a non-empty sample; `None` when empty or not all finite.
pub fn stats(samples: &[f64]) -> Option<Stats> {
    if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let mean = s.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let stddev = var.sqrt();
    let noise = if n < 3 {
        f64::INFINITY
    } else {
        let half = 1.96 * (n as f64).sqrt() / 2.0;
        let lo = ((n as f64 / 2.0 - half).floor().max(0.0)) as usize;
        let hi = ((n as f64 / 2.0 + half).ceil() as usize).min(n - 1);
        (s[hi] - s[lo]) / 2.0 / median
    };
    Some(Stats {
        n,
        median_ms: median,
        mean_ms: mean,
        min_ms: s[0],
        max_ms: s[n - 1],
        stddev_ms: stddev,
        rel_stddev: if mean > 0.0 { stddev / mean } else { 0.0 },
        noise,
    })
}

impl StoppingRule {
    /// Whether to stop after `samples` taken over `elapsed_s` seconds of sampling.
    pub fn check(&self, samples: &[f64], elapsed_s: f64) -> Option<StopReason> {
        if elapsed_s >= self.max_time_s {
            return Some(StopReason::TimeCap);
        }
        if samples.len() < self.min_samples || elapsed_s < self.min_time_s {
            return None;
        }
        match stats(samples) {
            Some(st) if st.noise <= self.max_rel_noise => Some(StopReason::Converged),
            _ => None,
        }
    }
}

/// How the clocks looked right after a sample, from NVML's throttle reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    /// No slowdown reported (or no NVML to ask).
    Steady,
    /// The software power cap held the clock down. This is the normal state of a busy
    /// H100/H200 at full load, so such samples are kept and only counted.
    PowerCapped,
    /// A thermal or hardware slowdown (`hw_slowdown`, `sw_thermal`, `hw_thermal`,
    /// `hw_power_brake`): the machine, not the kernel, set the pace. Such samples are
    /// discarded from the statistics (kept in the samples file, marked).
    Throttled,
}

/// Classifies a sample by the throttle reasons read right after it.
pub fn clock_state(reasons: &[String]) -> ClockState {
    const DISCARD: [&str; 4] = ["hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"];
    if reasons.iter().any(|r| DISCARD.contains(&r.as_str())) {
        ClockState::Throttled
    } else if reasons.iter().any(|r| r == "sw_power_cap") {
        ClockState::PowerCapped
    } else {
        ClockState::Steady
    }
}

/// The least work a kernel task's plan must do at one problem size, declared by the task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// Bytes that must be read from device memory (the inputs, after the L2 flush).
    pub bytes_read: f64,
    /// Bytes that must be written (the outputs). Up to the L2's size they may still sit in
    /// the L2 when the stop event fires, so only the excess counts against DRAM bandwidth.
    pub bytes_written: f64,
    /// Arithmetic operations (flops or integer ops).
    pub ops: f64,
}

/// The speed-of-light time of `work` on a device with `peaks` and an L2 of `l2_bytes`, in
/// milliseconds: a lower bound on any correct plan's time, never a target.
pub fn speed_of_light_ms(work: &Work, peaks: &crate::backend::Peaks, l2_bytes: u64) -> f64 {
    let dram = work.bytes_read + (work.bytes_written - l2_bytes as f64).max(0.0);
    let memory_s = dram / peaks.dram_bytes_per_s;
    let compute_s = work.ops / peaks.ops_per_s;
    memory_s.max(compute_s) * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_mean_weighs_every_size_alike() {
        assert_eq!(ln_geometric_mean(&[2.0]), 2f64.ln());
        assert!((geometric_mean(&[1.0, 100.0]) - 10.0).abs() < 1e-12);
        // Halving the time of either size moves the score by the same amount.
        let base = ln_geometric_mean(&[1.0, 100.0]);
        let a = ln_geometric_mean(&[0.5, 100.0]);
        let b = ln_geometric_mean(&[1.0, 50.0]);
        assert!((a - b).abs() < 1e-12 && a < base);
        for bad in [
            &[][..],
            &[1.0, 0.0],
            &[1.0, f64::NAN],
            &[-1.0],
            &[f64::INFINITY],
        ] {
            assert!(ln_geometric_mean(bad).is_nan(), "{bad:?}");
        }
    }

    #[test]
    fn throttle_reasons_classify_samples() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(clock_state(&r(&[])), ClockState::Steady);
        assert_eq!(clock_state(&r(&["gpu_idle"])), ClockState::Steady);
        assert_eq!(clock_state(&r(&["sw_power_cap"])), ClockState::PowerCapped);
        assert_eq!(
            clock_state(&r(&["sw_power_cap", "hw_thermal"])),
            ClockState::Throttled
        );
    }

    #[test]
    fn speed_of_light_is_the_slower_of_memory_and_compute() {
        let peaks = crate::backend::Peaks {
            dram_bytes_per_s: 1e12,
            ops_per_s: 1e15,
        };
        let w = Work {
            bytes_read: 1e9,
            bytes_written: 1e9,
            ops: 1e9,
        };
        // 1 GB read + (1 GB - 50 MB) written at 1 TB/s.
        let ms = speed_of_light_ms(&w, &peaks, 50_000_000);
        assert!((ms - 1.95).abs() < 1e-9, "{ms}");
        let compute = Work {
            bytes_read: 0.0,
            bytes_written: 0.0,
            ops: 2e15,
        };
        assert!((speed_of_light_ms(&compute, &peaks, 0) - 2000.0).abs() < 1e-9);
        // Writes that fit in the L2 cost nothing.
        let small = Work {
            bytes_read: 0.0,
            bytes_written: 1e6,
            ops: 0.0,
        };
        assert_eq!(speed_of_light_ms(&small, &peaks, 50_000_000), 0.0);
    }
    use proptest::prelude::*;

    #[test]
    fn median_and_noise_of_known_samples() {
        let st = stats(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(st.median_ms, 2.0);
        assert_eq!(st.min_ms, 1.0);
        let even = stats(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(even.median_ms, 2.5);
        let flat = stats(&[1.0; 20]).unwrap();
        assert_eq!(flat.noise, 0.0);
        assert_eq!(flat.rel_stddev, 0.0);
        assert!(stats(&[]).is_none());
        assert!(stats(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn stopping_rule_needs_samples_time_and_low_noise() {
        let rule = StoppingRule::default();
        let quiet = vec![1.0; 50];
        assert_eq!(rule.check(&quiet[..5], 1.0), None, "too few samples");
        assert_eq!(rule.check(&quiet, 0.1), None, "too little time");
        assert_eq!(rule.check(&quiet, 1.0), Some(StopReason::Converged));
        let noisy: Vec<f64> = (0..50).map(|i| 1.0 + (i % 2) as f64 * 0.5).collect();
        assert_eq!(rule.check(&noisy, 1.0), None, "noise above 0.5 %");
        assert_eq!(rule.check(&noisy, 15.0), Some(StopReason::TimeCap));
    }

    proptest! {
        #[test]
        fn median_lies_between_min_and_max(xs in proptest::collection::vec(0.001f64..100.0, 1..200)) {
            let st = stats(&xs).unwrap();
            prop_assert!(st.min_ms <= st.median_ms && st.median_ms <= st.max_ms);
            prop_assert!(st.noise >= 0.0);
        }

        #[test]
        fn noise_shrinks_or_holds_when_samples_repeat(xs in proptest::collection::vec(0.5f64..2.0, 10..50)) {
            let once = stats(&xs).unwrap().noise;
            let mut four = xs.clone();
            for _ in 0..3 { four.extend_from_slice(&xs); }
            prop_assert!(stats(&four).unwrap().noise <= once + 1e-12);
        }
    }
}
