//! Sampling statistics and the adaptive stopping rule of the timing loop.
//!
//! Measurement (CUDA events, in [`crate::device`]) is kept apart from analysis (here), so the
//! raw samples saved beside the score log can be re-analysed offline with the same code.
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

#[cfg(test)]
mod tests {
    use super::*;
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
