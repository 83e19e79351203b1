//! Property tests: score@k, weights, and order independence of horizons.

mod common;

use proptest::prelude::*;
use rdbench_scoring::horizon::{run_weights, time_horizons, HorizonConfig};
use rdbench_scoring::score_at_k::{score_at_k, score_at_k_sorted, Method};

fn scores() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.0f64..1.5, 1..12)
}

proptest! {
    #[test]
    fn score_at_k_is_mean_at_1_and_max_at_n(s in scores()) {
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let max = s.iter().cloned().fold(f64::MIN, f64::max);
        let (at1, m1) = score_at_k(&s, 1, false);
        let (atn, mn) = score_at_k(&s, n, false);
        prop_assert_eq!(m1, Method::WithoutReplacement);
        prop_assert_eq!(mn, Method::WithoutReplacement);
        prop_assert!((at1 - mean).abs() <= 1e-12 * (1.0 + mean.abs()));
        prop_assert!((atn - max).abs() <= 1e-12 * (1.0 + max.abs()));
    }

    #[test]
    fn score_at_k_never_decreases_with_k(s in scores()) {
        let n = s.len();
        let mut sorted = s.clone();
        sorted.sort_by(f64::total_cmp);
        // Without replacement, k = 1..=n.
        let mut prev = f64::MIN;
        for k in 1..=n {
            let v = score_at_k_sorted(&sorted, k, Method::WithoutReplacement);
            prop_assert!(v >= prev - 1e-12, "k={} v={} prev={}", k, v, prev);
            prev = v;
        }
        // With replacement, any k; bounded by the maximum.
        let mut prev = f64::MIN;
        for k in 1..=3 * n + 2 {
            let v = score_at_k_sorted(&sorted, k, Method::WithReplacement);
            prop_assert!(v >= prev - 1e-12);
            prop_assert!(v <= sorted[n - 1] + 1e-12);
            prev = v;
        }
        // The method switches to with replacement exactly past n.
        prop_assert_eq!(score_at_k(&s, n + 1, false).1, Method::WithReplacement);
    }

    #[test]
    fn hidden_score_tasks_take_the_mean(s in scores(), k in 1usize..30) {
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        let (v, m) = score_at_k(&s, k, true);
        prop_assert_eq!(m, Method::Mean);
        prop_assert!((v - mean).abs() < 1e-12);
    }

    #[test]
    fn weights_sum_to_one_per_agent(
        cells in prop::collection::vec((0usize..3, 0usize..8, 1usize..5), 1..40)
    ) {
        let mut runs = Vec::new();
        for (agent, task, n) in &cells {
            for _ in 0..*n {
                runs.push(common::run(
                    &format!("a{agent}"),
                    &format!("t{task}"),
                    &format!("f{}", task / 3),
                    1.0 + *task as f64,
                    0.0,
                ));
            }
        }
        let w = run_weights(&runs);
        for agent in 0..3 {
            let name = format!("a{agent}");
            let (sum, any) = runs.iter().zip(&w).filter(|(r, _)| r.agent == name)
                .fold((0.0, false), |(s, _), (_, w)| (s + w, true));
            if any {
                prop_assert!((sum - 1.0).abs() < 1e-12, "agent {} sums to {}", name, sum);
            }
        }
        prop_assert!(w.iter().all(|x| *x > 0.0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn horizons_unchanged_by_run_order(seed in 0u64..1000, rot in 1usize..500) {
        let cfg = rdbench_scoring::synth::SynthConfig {
            agents: 3, tasks: 30, rebench_tasks: 0, seed, ..Default::default()
        };
        let runs = rdbench_scoring::synth::metr_like(&cfg);
        let mut shuffled = runs.clone();
        shuffled.reverse();
        let r = rot % shuffled.len();
        shuffled.rotate_left(r);
        let hc = HorizonConfig { bootstrap_samples: 20, ..Default::default() };
        let a = time_horizons(&runs, &hc).unwrap();
        let b = time_horizons(&shuffled, &hc).unwrap();
        prop_assert_eq!(a.agents.len(), b.agents.len());
        for (x, y) in a.agents.iter().zip(&b.agents) {
            prop_assert_eq!(&x.agent, &y.agent);
            prop_assert_eq!(x.fit.map(|f| (f.intercept, f.slope)), y.fit.map(|f| (f.intercept, f.slope)));
            for (hx, hy) in x.horizons.iter().zip(&y.horizons) {
                prop_assert_eq!(hx.minutes, hy.minutes);
                prop_assert_eq!(hx.ci_low, hy.ci_low);
                prop_assert_eq!(hx.ci_high, hy.ci_high);
            }
        }
    }
}
