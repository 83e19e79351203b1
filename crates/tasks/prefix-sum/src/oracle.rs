//! The CPU side of prefix-sum: the input generator (bit-identical to the harness kernel
//! `ps_generate`) and the oracle that defines the right answer.

/// Input distributions the scorer draws from (the `dist` argument of `ps_generate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Uniform in [-10, 10), as in RE-Bench.
    Uniform = 0,
    /// Uniform in [1, 10]: every element positive.
    AllPositive = 1,
    /// Uniform in [-10, 0]: no element positive.
    NonePositive = 2,
    /// Magnitude in [1, 10], sign alternating from positive at index 0.
    AlternatingSign = 3,
}

impl Distribution {
    pub const ALL: [Distribution; 4] = [
        Distribution::Uniform,
        Distribution::AllPositive,
        Distribution::NonePositive,
        Distribution::AlternatingSign,
    ];
}

use rdbench_core::rng::splitmix64_at;

/// Element `i` of the input drawn with `seed` from `dist`.
pub fn input_value(seed: u64, i: u64, dist: Distribution) -> i32 {
    let u = splitmix64_at(seed, i) >> 32;
    let scaled = |k: u64| ((u * k) >> 32) as i32;
    match dist {
        Distribution::Uniform => scaled(20) - 10,
        Distribution::AllPositive => scaled(10) + 1,
        Distribution::NonePositive => -scaled(11),
        Distribution::AlternatingSign => {
            let m = scaled(10) + 1;
            if i.is_multiple_of(2) {
                m
            } else {
                -m
            }
        }
    }
}

/// The whole input of size `n`.
pub fn generate(seed: u64, n: usize, dist: Distribution) -> Vec<i32> {
    (0..n as u64).map(|i| input_value(seed, i, dist)).collect()
}

/// The task's definition: `y[i] = sum_{j<=i} x[j] * [odd number of x[0..j) are > 0]`, in
/// wrapping int32 arithmetic.
pub fn prefix_sum(x: &[i32]) -> Vec<i32> {
    let mut y = Vec::with_capacity(x.len());
    let mut odd = false;
    let mut acc: i32 = 0;
    for &v in x {
        if odd {
            acc = acc.wrapping_add(v);
        }
        y.push(acc);
        odd ^= v > 0;
    }
    y
}

/// The first index where `actual` differs from `expected`, with both values.
pub fn first_mismatch(expected: &[i32], actual: &[i32]) -> Option<(usize, i32, Option<i32>)> {
    expected
        .iter()
        .enumerate()
        .find(|&(i, e)| actual.get(i) != Some(e))
        .map(|(i, &e)| (i, e, actual.get(i).copied()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, written as literally as possible (quadratic).
    fn literal(x: &[i32]) -> Vec<i32> {
        (0..x.len())
            .map(|i| {
                (1..=i)
                    .filter(|&j| x[..j].iter().filter(|&&v| v > 0).count() % 2 == 1)
                    .fold(0i32, |acc, j| acc.wrapping_add(x[j]))
            })
            .collect()
    }

    #[test]
    fn small_cases_by_hand() {
        assert_eq!(prefix_sum(&[5]), vec![0]);
        // positives before j: [0,1,1,2,3] -> odd at j=1,2,4 -> y = [0,-2,1,1,-4]
        assert_eq!(prefix_sum(&[1, -2, 3, 4, -5]), vec![0, -2, 1, 1, -4]);
        assert_eq!(prefix_sum(&[-1, -1, -1]), vec![0, 0, 0]);
        assert!(prefix_sum(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn oracle_matches_the_literal_definition(x in proptest::collection::vec(-10i32..10, 0..200)) {
            prop_assert_eq!(prefix_sum(&x), literal(&x));
        }

        #[test]
        fn generator_respects_each_distribution(seed in any::<u64>(), i in 0u64..1_000_000) {
            let u = input_value(seed, i, Distribution::Uniform);
            prop_assert!((-10..10).contains(&u));
            prop_assert!((1..=10).contains(&input_value(seed, i, Distribution::AllPositive)));
            prop_assert!((-10..=0).contains(&input_value(seed, i, Distribution::NonePositive)));
            let a = input_value(seed, i, Distribution::AlternatingSign);
            let ok = if i % 2 == 0 { (1..=10).contains(&a) } else { (-10..=-1).contains(&a) };
            prop_assert!(ok, "alternating value {} at index {}", a, i);
        }
    }

    #[test]
    fn generator_is_deterministic_and_seed_sensitive() {
        assert_eq!(
            generate(7, 100, Distribution::Uniform),
            generate(7, 100, Distribution::Uniform)
        );
        assert_ne!(
            generate(7, 100, Distribution::Uniform),
            generate(8, 100, Distribution::Uniform)
        );
        // Uniform over 20 values: each value appears about 5 % of the time.
        let x = generate(1, 200_000, Distribution::Uniform);
        for v in -10..10 {
            let share = x.iter().filter(|&&e| e == v).count() as f64 / x.len() as f64;
            assert!((share - 0.05).abs() < 0.005, "value {v}: {share}");
        }
    }

    #[test]
    fn generator_matches_pinned_values() {
        // Pinned so that a change to either side (Rust or ps_generate) is noticed.
        // The same values come out of ps_generate run on the CPU emulator (kernels/tools).
        assert_eq!(
            generate(0x5eed, 8, Distribution::Uniform),
            vec![-10, 4, 0, 8, -9, 8, -4, 8]
        );
        assert_eq!(
            generate(0x5eed, 8, Distribution::AllPositive),
            vec![1, 8, 6, 10, 1, 10, 4, 10]
        );
        assert_eq!(
            generate(0x5eed, 8, Distribution::NonePositive),
            vec![0, -8, -6, -10, 0, -10, -3, -10]
        );
        assert_eq!(
            generate(0x5eed, 8, Distribution::AlternatingSign),
            vec![1, -8, 6, -10, 1, -10, 4, -10]
        );
    }

    #[test]
    fn first_mismatch_reports_index_and_values() {
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(
            first_mismatch(&[1, 2, 3], &[1, 9, 3]),
            Some((1, 2, Some(9)))
        );
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 2]), Some((2, 3, None)));
    }
}
