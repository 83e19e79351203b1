//! Checks on METR's published runs, when `../shared/reference-data/` is present; each test
//! prints SKIPPED and passes when it is absent.

mod common;

use rdbench_scoring::horizon::run_weights;
use rdbench_scoring::{aggregate, load_file, AggregateConfig};

#[test]
fn weights_match_metrs_published_column() {
    let Some(path) = common::reference_data() else {
        return;
    };
    let runs = load_file(&path).unwrap();
    let ours = run_weights(&runs);
    // METR's file carries its own invsqrt_task_weight (rounded to 10 decimals).
    let text = std::fs::read_to_string(&path).unwrap();
    let theirs: Vec<f64> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["invsqrt_task_weight"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-9 + 1e-6 * b,
            "line {}: {a} vs {b}",
            i + 1
        );
    }
}

#[test]
fn full_aggregation_of_metr_data() {
    let Some(path) = common::reference_data() else {
        return;
    };
    let runs = load_file(&path).unwrap();
    assert_eq!(runs.len(), 7063);
    let mut cfg = AggregateConfig::default();
    cfg.horizon.bootstrap_samples = 100;
    cfg.budget.bootstrap_samples = 200;
    let rep = aggregate(&runs, &cfg).unwrap();
    assert_eq!(rep.horizon.agents.len(), 11);
    // RE-Bench part: only ai_rd_* families, 7 tasks, limits of 30 min and 2 h.
    for a in &rep.budgets.agents {
        for b in &a.budgets {
            for al in &b.allocations {
                assert!(al.n_tasks <= 7);
                assert!(
                    al.time_limit_minutes == 30.0
                        || al.time_limit_minutes == 120.0
                        || al.time_limit_minutes == 480.0
                );
            }
        }
    }
    let tables = rep.render_tables();
    assert!(tables.contains("Claude 3.5 Sonnet (New)"));
    assert!(tables.contains("davinci-002"));
}
