//! The full time-horizon run (point fits plus 1000 hierarchical bootstrap samples for every
//! agent) on METR's published runs when `../shared/reference-data/metr-runs-2025-02.jsonl` is
//! present (or `RDBENCH_METR_RUNS` names a copy), else on a synthetic data set of the same size
//! (about 7,000 runs, 170 tasks, 10 agents). Also the budget table with 5000 samples, and parsing.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use rdbench_scoring::budget::{budget_scores, BudgetConfig};
use rdbench_scoring::horizon::{time_horizons, HorizonConfig};
use rdbench_scoring::synth::{metr_like, to_metr_jsonl, SynthConfig};

fn reference_path() -> PathBuf {
    std::env::var_os("RDBENCH_METR_RUNS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/reference-data/metr-runs-2025-02.jsonl")
        })
}

fn bench(c: &mut Criterion) {
    let path = reference_path();
    let (label, runs) = match rdbench_scoring::load_file(&path) {
        Ok(runs) => ("metr-2025-02", runs),
        Err(_) => {
            eprintln!(
                "{} not found: benchmarking a synthetic METR-like data set instead",
                path.display()
            );
            ("synthetic", metr_like(&SynthConfig::default()))
        }
    };
    eprintln!(
        "data: {label}, {} runs, {} rayon threads",
        runs.len(),
        rayon::current_num_threads()
    );
    let synthetic = metr_like(&SynthConfig::default());
    let mut group = c.benchmark_group("aggregate");
    group.sample_size(10);
    let cfg = HorizonConfig::default();
    group.bench_function(format!("time_horizon_1000_bootstrap/{label}"), |b| {
        b.iter(|| time_horizons(&runs, &cfg).expect("horizons"))
    });
    group.bench_function("time_horizon_1000_bootstrap/synthetic", |b| {
        b.iter(|| time_horizons(&synthetic, &cfg).expect("horizons"))
    });
    let budget_cfg = BudgetConfig {
        family_prefixes: Some(vec!["ai_rd_".into()]),
        ..BudgetConfig::default()
    };
    group.bench_function(format!("budget_table_5000_bootstrap/{label}"), |b| {
        b.iter(|| budget_scores(&runs, &budget_cfg).expect("budgets"))
    });
    let text = to_metr_jsonl(&synthetic);
    group.bench_function("parse_jsonl/synthetic", |b| {
        b.iter(|| {
            rdbench_scoring::input::parse_str(&text, "synthetic.jsonl".as_ref()).expect("parse")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
