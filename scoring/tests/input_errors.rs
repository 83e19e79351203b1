//! Reading inputs: formats, line numbers, and errors that name file, line and field.

use std::path::Path;

use rdbench_core::score_log::Selection;
use rdbench_core::summary::{AttemptSummary, SUMMARY_SCHEMA};
use rdbench_scoring::horizon::{time_horizons, HorizonConfig, Outcome};
use rdbench_scoring::input::{load_file, parse_str, Format};
use rdbench_scoring::ScoringError;

const GOOD: &str = r#"{"run_id":"r1","task_id":"fam/t1","task_family":"fam","alias":"A","score":1.0,"score_binarized":1,"human_minutes":5.0,"time_limit":1800}"#;

fn metr_line(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    if value == "<absent>" {
        v.as_object_mut().unwrap().remove(field);
    } else {
        v[field] = serde_json::from_str(value).unwrap();
    }
    v.to_string()
}

/// Parses `good line, bad line` and returns the error message (which must name line 2).
fn error_of(field: &str, value: &str) -> String {
    let text = format!("{GOOD}\n{}\n", metr_line(field, value));
    let err = parse_str(&text, Path::new("runs.jsonl")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("runs.jsonl:2:"), "{msg}");
    assert!(msg.contains(field), "{msg}");
    msg
}

#[test]
fn missing_columns_are_named() {
    for field in ["task_id", "task_family", "alias", "score", "human_minutes"] {
        let msg = error_of(field, "<absent>");
        assert!(msg.contains("missing"), "{msg}");
    }
}

#[test]
fn bad_minutes_and_scores_are_named() {
    assert!(error_of("human_minutes", "\"ten\"").contains("expected a number"));
    assert!(error_of("human_minutes", "0").contains("positive"));
    assert!(error_of("human_minutes", "-3").contains("positive"));
    assert!(error_of("score", "\"0.5\"").contains("expected a number"));
    assert!(error_of("score_binarized", "0.5").contains("0 or 1"));
    assert!(error_of("time_limit", "-1").contains("seconds"));
    assert!(error_of("alias", "7").contains("expected a string"));
}

#[test]
fn soft_labels_reject_scores_outside_0_1() {
    let text = format!("{GOOD}\n{}\n", metr_line("score", "1.3"));
    let runs = parse_str(&text, Path::new("runs.jsonl")).unwrap();
    let cfg = HorizonConfig {
        outcome: Outcome::Soft,
        bootstrap_samples: 0,
        ..Default::default()
    };
    let msg = time_horizons(&runs, &cfg).unwrap_err().to_string();
    assert!(msg.starts_with("runs.jsonl:2: field `score`"), "{msg}");
    // Binarized by threshold, the same score is a success.
    assert!(time_horizons(
        &runs,
        &HorizonConfig {
            bootstrap_samples: 0,
            ..Default::default()
        }
    )
    .is_ok());
}

#[test]
fn empty_files_and_bad_json_are_errors() {
    for text in ["", "  \n\n", "[]"] {
        let err = parse_str(text, Path::new("empty.jsonl")).unwrap_err();
        assert!(matches!(err, ScoringError::EmptyFile { .. }), "{err}");
        assert!(err.to_string().contains("empty.jsonl"));
    }
    let err = parse_str(
        &format!("{GOOD}\n{GOOD}\n{{\"alias\": \n"),
        Path::new("x.jsonl"),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("x.jsonl:3"), "{err}");
    let err = parse_str("{\"foo\": 1}", Path::new("x.json")).unwrap_err();
    assert!(matches!(err, ScoringError::UnknownFormat { .. }), "{err}");
    let err = parse_str("[1, 2]", Path::new("x.json")).unwrap_err();
    assert!(err.to_string().contains("expected a JSON object"), "{err}");
    let err = load_file(Path::new("/nonexistent/runs.jsonl")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/runs.jsonl"), "{err}");
}

#[test]
fn an_agent_with_one_run_is_an_error_naming_it() {
    let lone = metr_line("alias", "\"Lonely\"");
    let text = format!("{GOOD}\n{}\n{lone}\n", metr_line("run_id", "\"r2\""));
    let runs = parse_str(&text, Path::new("runs.jsonl")).unwrap();
    let msg = time_horizons(&runs, &HorizonConfig::default())
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("runs.jsonl:3: field `agent`"), "{msg}");
    assert!(msg.contains("Lonely"), "{msg}");
}

#[test]
fn inconsistent_task_metadata_is_an_error() {
    let text = format!("{GOOD}\n{}\n", metr_line("human_minutes", "6.0"));
    let runs = parse_str(&text, Path::new("runs.jsonl")).unwrap();
    let msg = time_horizons(&runs, &HorizonConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("runs.jsonl:2: field `human_minutes`"),
        "{msg}"
    );
    assert!(msg.contains("runs.jsonl:1"), "{msg}");
}

fn summary(agent: &str, score: Option<f64>) -> AttemptSummary {
    let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    AttemptSummary {
        schema: SUMMARY_SCHEMA.into(),
        attempt_id: format!("att-{agent}"),
        agent: agent.into(),
        task: "prefix-sum".into(),
        task_family: "prefix-sum".into(),
        profile: "tiny".into(),
        time_limit_minutes: Some(30.0),
        score,
        raw: score,
        selection: Selection::Best,
        score_hidden: false,
        entries: 3,
        valid_entries: 2,
        late_entries: 0,
        log_break: None,
        started_at: t,
        finished_at: t,
        device: None,
        human_minutes: Some(120.0),
    }
}

#[test]
fn rdbench_summaries_in_every_container() {
    let a = serde_json::to_string_pretty(&summary("A", Some(0.7))).unwrap();
    let b = serde_json::to_string_pretty(&summary("B", None)).unwrap();
    // One pretty object, as `rdbench finish` writes it.
    let runs = parse_str(&a, Path::new("one.json")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].format, Format::Rdbench);
    assert_eq!(runs[0].score, 0.7);
    assert_eq!(runs[0].human_minutes, Some(120.0));
    // An array: lines name where each element starts; no valid entry counts as 0.
    let arr = format!("[\n{a},\n{b}\n]\n");
    let runs = parse_str(&arr, Path::new("arr.json")).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].at.line, 2);
    assert_eq!(runs[1].at.line, 2 + a.lines().count());
    assert_eq!(runs[1].score, 0.0);
    // JSON lines, mixed with METR runs.
    let lines = format!(
        "{}\n{GOOD}\n",
        serde_json::to_string(&summary("C", Some(0.1))).unwrap()
    );
    let runs = parse_str(&lines, Path::new("mixed.jsonl")).unwrap();
    assert_eq!(runs[0].format, Format::Rdbench);
    assert_eq!(runs[1].format, Format::Metr);
    assert_eq!(runs[1].at.line, 2);
    assert_eq!(runs[1].time_limit_minutes, Some(30.0));
    // A bad field in an array element names its line.
    let bad = a.replace(
        "\"human_minutes\": 120.0",
        "\"human_minutes\": \"two hours\"",
    );
    let err = parse_str(&format!("[\n{a},\n{bad}\n]"), Path::new("arr.json")).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "arr.json:{}: field `human_minutes`",
            2 + a.lines().count()
        )),
        "{err}"
    );
    // A wrong schema is refused.
    let wrong = a.replace(SUMMARY_SCHEMA, "rdbench.attempt-summary/9");
    let err = parse_str(&wrong, Path::new("one.json")).unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
}
