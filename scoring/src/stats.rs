//! Small statistics helpers shared by the bootstraps: seeded random streams and percentiles.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use rdbench_core::rng::splitmix64 as mix;

/// The random stream of one bootstrap sample: a function of the seed, a tag naming the
/// computation and the sample index only, so results do not depend on how samples are spread
/// over threads.
pub fn sample_rng(seed: u64, tag: u64, sample: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(seed ^ mix(tag)) ^ sample))
}

/// A stable 64-bit tag of a string (FNV-1a), for naming random streams.
pub fn tag_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The `q` quantile (0..=1) of `values`, ignoring NaN, with linear interpolation between order
/// statistics (numpy's default). `None` when no value is left.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, q))
}

/// [`quantile`] on values already sorted ascending and free of NaN.
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    // Equal neighbours (infinite ones included) need no interpolation.
    if lo == hi || frac == 0.0 || v[lo] == v[hi] {
        return v[lo];
    }
    v[lo] + (v[hi] - v[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        let v = [3.0, 1.0, 2.0, 4.0, f64::NAN];
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert!((quantile(&v, 0.025).unwrap() - 1.075).abs() < 1e-12);
        assert_eq!(quantile(&[f64::NAN], 0.5), None);
    }

    #[test]
    fn streams_differ_by_sample_and_repeat_by_seed() {
        use rand::Rng;
        let a: u64 = sample_rng(1, 2, 3).gen();
        let b: u64 = sample_rng(1, 2, 3).gen();
        let c: u64 = sample_rng(1, 2, 4).gen();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
