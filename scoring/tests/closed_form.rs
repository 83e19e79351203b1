//! Closed-form cases on small synthetic data, degenerate agents, and reproducibility.

mod common;

use common::run;
use rdbench_scoring::budget::{budget_scores, BudgetConfig};
use rdbench_scoring::horizon::{
    fit_logistic, time_horizons, FitStatus, HorizonConfig, Outcome, Point,
};
use rdbench_scoring::synth::{metr_like, SynthConfig};
use rdbench_scoring::with_threads;

/// Time horizons with `samples` bootstrap samples and otherwise default settings.
fn horizons(
    runs: &[rdbench_scoring::Run],
    samples: usize,
) -> rdbench_scoring::horizon::HorizonReport {
    let cfg = HorizonConfig {
        bootstrap_samples: samples,
        ..Default::default()
    };
    time_horizons(runs, &cfg).unwrap()
}

fn limited(agent: &str, task: &str, limit: f64, score: f64) -> rdbench_scoring::Run {
    let mut r = run(agent, task, task, 10.0, score);
    r.time_limit_minutes = Some(limit);
    r
}

#[test]
fn budget_allocations_use_exact_best_of_k() {
    // Task a at 30 min: scores 0, 0.5, 1. Best of 2 distinct: (0.5 + 1 + 1) / 3.
    // Task b at 30 min: score 0.2 only; best of 2 with replacement is 0.2.
    // One 60-minute attempt at task a scoring 0.9.
    let runs = vec![
        limited("A", "a", 30.0, 0.0),
        limited("A", "a", 30.0, 0.5),
        limited("A", "a", 30.0, 1.0),
        limited("A", "b", 30.0, 0.2),
        limited("A", "a", 60.0, 0.9),
    ];
    let cfg = BudgetConfig {
        budgets_minutes: vec![30.0, 60.0],
        bootstrap_samples: 200,
        ..Default::default()
    };
    let rep = budget_scores(&runs, &cfg).unwrap();
    let a = &rep.agents[0];
    // 30 min budget: only 1x30m, the mean of task means: (0.5 + 0.2) / 2.
    assert_eq!(a.budgets[0].allocations.len(), 1);
    assert!((a.budgets[0].allocations[0].score - 0.35).abs() < 1e-12);
    // 60 min budget: 2x30m = ((2.5 / 3) + 0.2) / 2, and 1x60m = 0.9 (best).
    let b60 = &a.budgets[1];
    assert_eq!(b60.allocations.len(), 2);
    let two = b60.allocations.iter().find(|x| x.k == 2).unwrap();
    assert!((two.score - (2.5 / 3.0 + 0.2) / 2.0).abs() < 1e-12);
    assert_eq!(two.tasks_without_replacement, 1);
    assert_eq!(two.tasks_with_replacement, 1);
    let best = b60.best_allocation().unwrap();
    assert_eq!((best.k, best.time_limit_minutes), (1, 60.0));
    assert!((best.score - 0.9).abs() < 1e-12);
    // A single attempt has no spread: its interval is the point.
    assert_eq!(best.ci_low, Some(0.9));
    assert_eq!(best.ci_high, Some(0.9));
    // The 2x30m interval brackets the estimate.
    assert!(two.ci_low.unwrap() <= two.score && two.score <= two.ci_high.unwrap());
}

#[test]
fn hidden_score_tasks_use_the_mean_in_budgets() {
    let mut runs = vec![limited("A", "s", 30.0, 0.0), limited("A", "s", 30.0, 1.0)];
    for r in &mut runs {
        r.score_hidden = true;
    }
    let cfg = BudgetConfig {
        budgets_minutes: vec![60.0],
        bootstrap_samples: 0,
        ..Default::default()
    };
    let rep = budget_scores(&runs, &cfg).unwrap();
    let al = &rep.agents[0].budgets[0].allocations[0];
    assert_eq!(al.k, 2);
    assert!((al.score - 0.5).abs() < 1e-12);
    assert_eq!(al.tasks_mean, 1);
    assert_eq!(al.ci_low, None);
}

#[test]
fn symmetric_data_gives_p50_at_the_centre() {
    // Tasks at 1/2 and 2 minutes (x = -1, +1) with success rates 3/4 and 1/4: by symmetry the
    // intercept is 0, so p50 = 2^0 = 1 minute.
    let mut runs = Vec::new();
    for (task, minutes, succ) in [("short", 0.5, 3), ("long", 2.0, 1)] {
        for i in 0..4 {
            runs.push(run(
                "A",
                task,
                task,
                minutes,
                if i < succ { 1.0 } else { 0.0 },
            ));
        }
    }
    let rep = horizons(&runs, 0);
    let a = &rep.agents[0];
    let fit = a.fit.unwrap();
    assert!(fit.converged);
    assert!(fit.intercept.abs() < 1e-10, "{fit:?}");
    assert!(fit.slope < 0.0);
    let p50 = a.horizons[0].minutes.unwrap();
    assert!((p50 - 1.0).abs() < 1e-9, "p50 = {p50}");
    // p80 from the formula.
    let p80 = a.horizons[1].minutes.unwrap();
    let expect = (((0.8f64 / 0.2).ln() - fit.intercept) / fit.slope).exp2();
    assert!((p80 - expect).abs() < 1e-12 * expect);
    assert!(p80 < p50);
}

#[test]
fn fit_satisfies_the_optimality_conditions() {
    // Gradient of C * sum(w * BCE) + b^2 / 2 vanishes at the solution.
    let pts = [
        Point {
            x: 0.0,
            weight: 0.3,
            weighted_success: 0.25,
        },
        Point {
            x: 2.0,
            weight: 0.2,
            weighted_success: 0.1,
        },
        Point {
            x: 5.0,
            weight: 0.4,
            weighted_success: 0.05,
        },
        Point {
            x: 8.0,
            weight: 0.1,
            weighted_success: 0.0,
        },
    ];
    let c = 10.0;
    let f = fit_logistic(&pts, c);
    assert!(f.converged);
    let (mut ga, mut gb) = (0.0, f.slope);
    for p in &pts {
        let prob = f.probability(p.x);
        ga += c * (p.weight * prob - p.weighted_success);
        gb += c * (p.weight * prob - p.weighted_success) * p.x;
    }
    assert!(ga.abs() < 1e-10 && gb.abs() < 1e-10, "gradient {ga} {gb}");
}

#[test]
fn all_failure_and_all_success_agents_get_clear_results() {
    let mut runs = Vec::new();
    for (i, m) in [1.0, 4.0, 16.0].iter().enumerate() {
        let t = format!("t{i}");
        runs.push(run("never", &t, "f", *m, 0.0));
        runs.push(run("always", &t, "f", *m, 1.0));
        runs.push(run("mixed", &t, "f", *m, (i == 0) as u8 as f64));
    }
    let rep = horizons(&runs, 50);
    let get = |n: &str| rep.agents.iter().find(|a| a.agent == n).unwrap();
    assert_eq!(get("never").status, FitStatus::AllFailure);
    assert_eq!(get("never").horizons[0].minutes, Some(0.0));
    assert_eq!(get("never").horizons[0].valid_samples, 0);
    assert_eq!(get("always").status, FitStatus::AllSuccess);
    assert_eq!(get("always").horizons[0].minutes, None);
    assert_eq!(get("mixed").status, FitStatus::Fitted);
    // Samples that drew no success for "mixed" are skipped, not counted.
    let valid = get("mixed").horizons[0].valid_samples;
    assert!(valid > 0 && valid < 50, "valid samples {valid}");
}

#[test]
fn soft_labels_match_the_split_into_weighted_zeros_and_ones() {
    // A run scoring s is the same as a success of weight s and a failure of weight 1 - s.
    let soft = vec![
        run("A", "a", "a", 1.0, 0.75),
        run("A", "b", "b", 8.0, 0.25),
        run("A", "c", "c", 64.0, 0.0),
    ];
    let cfg = HorizonConfig {
        bootstrap_samples: 0,
        outcome: Outcome::Soft,
        ..Default::default()
    };
    let a = time_horizons(&soft, &cfg).unwrap().agents[0].fit.unwrap();
    // Weights: one run per task, three one-task families: 1/3 each.
    let w = 1.0 / 3.0;
    let pts = [
        Point {
            x: 0.0,
            weight: w,
            weighted_success: 0.75 * w,
        },
        Point {
            x: 3.0,
            weight: w,
            weighted_success: 0.25 * w,
        },
        Point {
            x: 6.0,
            weight: w,
            weighted_success: 0.0,
        },
    ];
    let b = fit_logistic(&pts, 10.0);
    assert!((a.intercept - b.intercept).abs() < 1e-10);
    assert!((a.slope - b.slope).abs() < 1e-10);
}

#[test]
fn bootstrap_is_seeded_and_independent_of_thread_count() {
    let runs = metr_like(&SynthConfig {
        agents: 4,
        tasks: 60,
        seed: 3,
        ..Default::default()
    });
    let cfg = HorizonConfig {
        bootstrap_samples: 100,
        ..Default::default()
    };
    let one = with_threads(Some(1), || time_horizons(&runs, &cfg).unwrap());
    let two = with_threads(Some(2), || time_horizons(&runs, &cfg).unwrap());
    let three = with_threads(Some(3), || time_horizons(&runs, &cfg).unwrap());
    let key = |r: &rdbench_scoring::horizon::HorizonReport| {
        r.agents
            .iter()
            .flat_map(|a| {
                a.horizons
                    .iter()
                    .map(|h| (h.ci_low, h.ci_high, h.valid_samples))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&one), key(&two));
    assert_eq!(key(&one), key(&three));
    let other = time_horizons(
        &runs,
        &HorizonConfig {
            seed: 7,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(key(&one), key(&other));
    // Intervals bracket the point estimates for well-identified agents.
    for a in &one.agents {
        let h = &a.horizons[0];
        if let (Some(m), Some(l), Some(u)) = (h.minutes, h.ci_low, h.ci_high) {
            assert!(l < u, "{}: [{l}, {u}]", a.agent);
            assert!(
                l <= m * 1.5 && m <= u * 1.5,
                "{}: {m} vs [{l}, {u}]",
                a.agent
            );
        }
    }

    let bcfg = BudgetConfig {
        bootstrap_samples: 300,
        ..Default::default()
    };
    let b1 = with_threads(Some(1), || budget_scores(&runs, &bcfg).unwrap());
    let b2 = with_threads(Some(2), || budget_scores(&runs, &bcfg).unwrap());
    assert_eq!(
        serde_json::to_string(&b1).unwrap(),
        serde_json::to_string(&b2).unwrap()
    );
}

#[test]
fn synthetic_benchmark_data_has_the_intended_shape() {
    let runs = metr_like(&SynthConfig::default());
    let agents: std::collections::BTreeSet<_> = runs.iter().map(|r| &r.agent).collect();
    let tasks: std::collections::BTreeSet<_> = runs.iter().map(|r| &r.task).collect();
    assert_eq!(agents.len(), 10);
    assert_eq!(tasks.len(), 170);
    assert!((6000..8000).contains(&runs.len()), "{} runs", runs.len());
    // Stronger agents (higher index) have longer horizons: the fit recovers the ordering.
    let rep = horizons(&runs, 0);
    let p50 = |n: &str| {
        rep.agents.iter().find(|a| a.agent == n).unwrap().horizons[0]
            .minutes
            .unwrap()
    };
    assert!(p50("agent-00") < p50("agent-05") && p50("agent-05") < p50("agent-09"));
}
