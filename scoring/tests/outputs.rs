//! Tables, JSON, CSV and plots from a full aggregation of synthetic data.

use rdbench_scoring::plot::{write_plots, PlotFormat};
use rdbench_scoring::synth::{metr_like, SynthConfig};
use rdbench_scoring::{aggregate, AggregateConfig};

#[test]
fn aggregation_writes_tables_json_csv_and_plots() {
    let runs = metr_like(&SynthConfig {
        agents: 4,
        tasks: 50,
        seed: 5,
        ..Default::default()
    });
    let mut cfg = AggregateConfig::default();
    cfg.horizon.bootstrap_samples = 50;
    cfg.budget.bootstrap_samples = 100;
    let rep = aggregate(&runs, &cfg).unwrap();

    let tables = rep.render_tables();
    assert!(
        tables.contains("Normalized score at total time budget"),
        "{tables}"
    );
    assert!(tables.contains("Time horizon (METR)"), "{tables}");
    for agent in ["agent-00", "agent-03"] {
        assert!(tables.contains(agent));
    }
    // Synthetic RE-Bench tasks have 30m and 2h limits: the 2h budget offers both allocations.
    assert!(
        tables.contains("4x30m") && tables.contains("1x2h"),
        "{tables}"
    );

    let json = rep.to_json();
    assert_eq!(json["schema"], "rdbench.aggregate/1");
    assert_eq!(json["horizon"]["agents"].as_array().unwrap().len(), 4);
    assert!(json["horizon"]["agents"][0]["horizons"][0]["minutes"].is_number());

    let dir = tempfile::tempdir().unwrap();
    let files = rep.write_files(dir.path()).unwrap();
    assert_eq!(files.len(), 4);
    let budgets = std::fs::read_to_string(dir.path().join("budgets.csv")).unwrap();
    assert!(
        budgets.starts_with("agent,budget_minutes,time_limit_minutes,k,score,ci_low,ci_high,best")
    );
    let horizons = std::fs::read_to_string(dir.path().join("horizons.csv")).unwrap();
    assert_eq!(horizons.lines().count(), 5);
    assert!(horizons
        .lines()
        .next()
        .unwrap()
        .contains("p50_minutes,p50_ci_low,p50_ci_high"));
    let samples = std::fs::read_to_string(dir.path().join("horizon_bootstrap.csv")).unwrap();
    assert_eq!(samples.lines().count(), 1 + 50 * 4);
    let written = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert_eq!(written, serde_json::to_string_pretty(&rep).unwrap() + "\n");
    let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(parsed["schema"], json["schema"]);
    assert_eq!(parsed["inputs"], json["inputs"]);

    let plots = write_plots(&rep, dir.path(), &[PlotFormat::Svg, PlotFormat::Png]).unwrap();
    assert_eq!(plots.len(), 6);
    for name in ["horizon_fits", "score_vs_budget", "horizon_p50"] {
        let svg = std::fs::read_to_string(dir.path().join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("agent-0"),
            "{name}.svg lacks agent labels"
        );
        let png = std::fs::read(dir.path().join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 10_000, "{name}.png is suspiciously small");
    }
}
