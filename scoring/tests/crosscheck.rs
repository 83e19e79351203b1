//! Cross-check of time-horizon point estimates against an independent implementation:
//! `crosscheck.py` (scikit-learn's LogisticRegression, C = 10) on the same runs, to 1e-4
//! relative. Skips with a printed message when python3, numpy or scikit-learn is missing.

mod common;

use std::path::Path;
use std::process::Command;

use rdbench_scoring::horizon::{time_horizons, HorizonConfig, Outcome};
use rdbench_scoring::input::load_file;
use rdbench_scoring::synth::{metr_like, to_metr_jsonl, SynthConfig};

fn python_ready() -> bool {
    match Command::new("python3")
        .args(["-c", "import numpy, sklearn"])
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            println!(
                "SKIPPED: python3 lacks numpy or scikit-learn (pip install numpy scikit-learn): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            println!("SKIPPED: python3 not found: {e}");
            false
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * b.abs().max(1e-3)
}

/// Runs both implementations on `path` and compares every agent's fit.
fn compare(path: &Path, soft: bool) -> usize {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crosscheck.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(path);
    if soft {
        cmd.arg("--soft");
    }
    let out = cmd.output().expect("run crosscheck.py");
    assert!(
        out.status.success(),
        "crosscheck.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from crosscheck.py");
    let runs = load_file(path).unwrap();
    let cfg = HorizonConfig {
        bootstrap_samples: 0,
        outcome: if soft {
            Outcome::Soft
        } else {
            Outcome::default()
        },
        ..Default::default()
    };
    let ours = time_horizons(&runs, &cfg).unwrap();
    let mut compared = 0;
    for a in &ours.agents {
        let t = &theirs[&a.agent];
        match a.fit {
            None => assert!(
                t.is_null(),
                "{}: we found constant outcomes, sklearn did not",
                a.agent
            ),
            Some(f) => {
                let ours = [
                    ("intercept", f.intercept),
                    ("slope", f.slope),
                    ("p50", a.horizons[0].minutes.unwrap()),
                    ("p80", a.horizons[1].minutes.unwrap()),
                ];
                for (key, value) in ours {
                    let reference = t[key]
                        .as_f64()
                        .unwrap_or_else(|| panic!("{}: no {key}", a.agent));
                    assert!(
                        close(value, reference),
                        "{}: {key} {value} vs scikit-learn {reference}",
                        a.agent
                    );
                }
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn point_estimates_match_scikit_learn_on_synthetic_data() {
    if !python_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runs = metr_like(&SynthConfig {
        agents: 6,
        tasks: 90,
        seed: 11,
        ..Default::default()
    });
    let path = dir.path().join("runs.jsonl");
    std::fs::write(&path, to_metr_jsonl(&runs)).unwrap();
    assert!(compare(&path, false) >= 5);

    // Soft labels: continuous scores in [0, 1].
    let soft: Vec<_> = runs
        .into_iter()
        .map(|mut r| {
            r.score = r.score.min(1.0) * 0.8
                + 0.1 * (r.human_minutes.unwrap().log2() / 12.0).clamp(0.0, 1.0);
            r.score_binarized = None;
            r
        })
        .collect();
    let path = dir.path().join("soft.jsonl");
    std::fs::write(&path, to_metr_jsonl(&soft)).unwrap();
    assert!(compare(&path, true) >= 5);
}

#[test]
fn point_estimates_match_scikit_learn_on_metr_data() {
    let Some(path) = common::reference_data() else {
        return;
    };
    if !python_ready() {
        return;
    }
    assert!(compare(&path, false) >= 9);
}
