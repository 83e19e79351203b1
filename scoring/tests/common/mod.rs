//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use rdbench_scoring::input::Format;
use rdbench_scoring::{Location, Run};

/// A METR-style run for tests.
pub fn run(agent: &str, task: &str, family: &str, minutes: f64, score: f64) -> Run {
    Run {
        run_id: format!("{agent}-{task}-{score}"),
        agent: agent.into(),
        task: task.into(),
        family: family.into(),
        time_limit_minutes: Some(30.0),
        score,
        score_binarized: None,
        human_minutes: Some(minutes),
        score_hidden: false,
        format: Format::Metr,
        at: Location {
            path: PathBuf::from("test"),
            line: 1,
        },
    }
}

/// METR's published runs, when `../shared/reference-data/` is present beside the repository
/// (or wherever `RDBENCH_METR_RUNS` points).
pub fn reference_data() -> Option<PathBuf> {
    let p = std::env::var_os("RDBENCH_METR_RUNS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/reference-data/metr-runs-2025-02.jsonl")
        });
    if p.exists() {
        Some(p)
    } else {
        println!(
            "SKIPPED: {} is absent (METR's reference data is not part of the repository)",
            p.display()
        );
        None
    }
}
