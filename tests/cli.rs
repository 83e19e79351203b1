//! End-to-end tests of the `rdbench` binary: each runs the real executable in a temporary
//! home and attempt folder. GPU-only paths are exercised up to the point where a machine
//! without a GPU must stop (exit code 3); on a GPU machine the same tests go further.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn rdbench(&self, args: &[&str]) -> Output {
        // RDBENCH_BIN / RDBENCH_REPO let the prebuilt test binary run on another machine
        // (the GPU check carries binaries built here).
        let bin = std::env::var_os("RDBENCH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rdbench")));
        Command::new(bin)
            .args(args)
            .env("RDBENCH_HOME", self.home.path())
            .env(
                "RDBENCH_SHIPPED_CALIBRATION",
                self.home.path().join("no-shipped"),
            )
            .output()
            .expect("rdbench runs")
    }

    fn attempt(&self, name: &str, task: &str, profile: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        let out = self.rdbench(&[
            "start",
            task,
            "--dir",
            dir.to_str().unwrap(),
            "--profile",
            profile,
        ]);
        assert_eq!(out.status.code(), Some(0), "start: {}", text(&out));
        dir
    }

    fn log(&self, dir: &Path) -> Vec<serde_json::Value> {
        let out = self.rdbench(&["--json", "log", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "log: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("log --json is JSON")
    }
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn repo() -> PathBuf {
    std::env::var_os("RDBENCH_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn has_gpu() -> bool {
    rdbench_gpu::device::device_count().is_ok()
}

#[test]
fn list_info_and_doctor_work_everywhere() {
    let env = Env::new();
    let out = env.rdbench(&["--json", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tasks
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "prefix-sum"));
    let out = env.rdbench(&["info", "prefix-sum"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ln(median milliseconds"));
    let out = env.rdbench(&["--json", "doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let libcuda_found = doc["libcuda"]["found"]
        .as_bool()
        .expect("doctor reports whether libcuda was found");
    assert!(
        doc["cpu"]["name"].as_str().is_some_and(|n| !n.is_empty()),
        "doctor names the CPU: {doc}"
    );
    if has_gpu() {
        assert!(libcuda_found, "a GPU machine has libcuda: {doc}");
        assert!(
            !doc["gpus"].as_array().unwrap().is_empty(),
            "doctor lists the GPUs: {doc}"
        );
    } else {
        let out = env.rdbench(&["doctor"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("no NVIDIA driver found"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let env = Env::new();
    let out = env.rdbench(&["info", "no-such-task"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("prefix-sum"),
        "lists the tasks: {}",
        text(&out)
    );
    let dir = env.work.path().join("a");
    let out = env.rdbench(&[
        "start",
        "prefix-sum",
        "--dir",
        dir.to_str().unwrap(),
        "--profile",
        "huge",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tiny"),
        "{}",
        text(&out)
    );
    let out = env.rdbench(&["score", env.work.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rdbench start"),
        "{}",
        text(&out)
    );
    let out = env.rdbench(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn start_copies_the_starting_solution_and_keeps_the_log_outside() {
    let env = Env::new();
    let dir = env.attempt("a", "prefix-sum", "tiny");
    for f in [
        "solution.cu",
        "launch.toml",
        "INSTRUCTIONS.md",
        "LAUNCH_PLAN.md",
    ] {
        assert!(dir.join(f).is_file(), "{f} copied");
    }
    let all: Vec<String> = walk(&dir);
    assert!(
        all.iter()
            .all(|p| !p.contains("score_log") && !p.contains("reference")),
        "{all:?}"
    );
    let instructions = std::fs::read_to_string(dir.join("INSTRUCTIONS.md")).unwrap();
    assert!(
        instructions.contains("4,000,037"),
        "the profile's n is in the instructions"
    );
    // A second start on the same folder is refused.
    let out = env.rdbench(&["start", "prefix-sum", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn score_without_gpu_exits_3_and_logs_nothing() {
    if has_gpu() {
        eprintln!("skipped: this machine has a GPU");
        return;
    }
    let env = Env::new();
    let dir = env.attempt("a", "prefix-sum", "tiny");
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no NVIDIA driver found"),
        "{}",
        text(&out)
    );
    assert!(
        env.log(&dir).is_empty(),
        "an environment error is not the submission's fault"
    );
}

#[derive(serde::Deserialize)]
struct Expect {
    stage: String,
    reason_contains: String,
}

/// Every case of the exploit corpus: parse and compile failures are caught without a GPU
/// and logged as one invalid entry; run-stage cases need a GPU (exit 3 here) unless the plan
/// already fails its size checks.
#[test]
fn exploit_corpus_is_logged_invalid_with_its_reason() {
    let env = Env::new();
    let corpus = repo().join("tests/exploits/prefix-sum");
    let nvrtc = rdbench_gpu::probe::require_nvrtc().is_ok();
    let mut checked = 0;
    for case in std::fs::read_dir(&corpus).unwrap() {
        let case = case.unwrap().path();
        if !case.join("expect.toml").is_file() {
            continue;
        }
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let expect: Expect =
            toml::from_str(&std::fs::read_to_string(case.join("expect.toml")).unwrap()).unwrap();
        if expect.stage == "compile" && !nvrtc {
            eprintln!("skipped {name}: NVRTC not installed");
            continue;
        }
        let dir = env.attempt(&name, "prefix-sum", "tiny");
        for f in ["solution.cu", "launch.toml"] {
            std::fs::copy(case.join(f), dir.join(f)).unwrap();
        }
        let out = env.rdbench(&["--json", "score", dir.to_str().unwrap(), "--timeout", "30"]);
        let log = env.log(&dir);
        let code = out.status.code();
        if expect.stage == "run" && code == Some(3) {
            assert!(
                !has_gpu(),
                "{name}: exit 3 on a GPU machine: {}",
                text(&out)
            );
            assert!(
                log.is_empty(),
                "{name}: nothing logged for an environment error"
            );
            continue;
        }
        assert_eq!(code, Some(1), "{name}: {}", text(&out));
        assert_eq!(log.len(), 1, "{name}: exactly one entry");
        assert_eq!(log[0]["valid"], false);
        let reason = log[0]["reason"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            reason.contains(&expect.reason_contains.to_lowercase()),
            "{name}: reason {reason:?} should contain {:?}",
            expect.reason_contains
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} cases checked");
}

#[test]
fn bad_files_are_invalid_entries_naming_the_file() {
    let env = Env::new();
    let cases: [(&str, &str, &[u8]); 4] = [
        ("not-toml", "launch.toml", b"this is = = not toml ["),
        ("empty-plan", "launch.toml", b""),
        ("missing-plan", "launch.toml", b"<delete>"),
        ("binary-source", "solution.cu", &[0xff, 0xfe, 0x00, 0x01]),
    ];
    for (name, file, content) in cases {
        let dir = env.attempt(name, "prefix-sum", "tiny");
        if content == b"<delete>" {
            std::fs::remove_file(dir.join(file)).unwrap();
        } else {
            std::fs::write(dir.join(file), content).unwrap();
        }
        let out = env.rdbench(&["score", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let log = env.log(&dir);
        assert_eq!(log.len(), 1, "{name}");
        let reason = log[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains(file),
            "{name}: reason names {file}: {reason}"
        );
    }
}

#[test]
fn finish_writes_a_summary_and_log_survives_a_torn_line() {
    let env = Env::new();
    let dir = env.attempt("a", "prefix-sum", "tiny");
    std::fs::write(
        dir.join("launch.toml"),
        b"[[launch]]\nkernel = \"nope\"\ngrid = 1\nblock = 1\nargs = []\n",
    )
    .unwrap();
    assert_eq!(
        env.rdbench(&["score", dir.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // Simulate a scorer killed mid-write: half a JSON line at the end of the log.
    let private = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("score_log.jsonl"))
        .expect("a score log");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&private)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"timestamp\":\"2026-11-").unwrap();
    drop(f);
    assert_eq!(
        env.rdbench(&["score", dir.to_str().unwrap()]).status.code(),
        Some(1)
    );
    let log = env.log(&dir);
    assert_eq!(
        log.len(),
        2,
        "both whole entries are read past the torn line"
    );
    let summary_path = env.work.path().join("summary.json");
    let out = env.rdbench(&[
        "--json",
        "finish",
        dir.to_str().unwrap(),
        "--out",
        summary_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["schema"], "rdbench.attempt-summary/1");
    assert_eq!(summary["entries"], 2);
    assert_eq!(summary["valid_entries"], 0);
    assert!(summary["score"].is_null());
    assert_eq!(summary["task"], "prefix-sum");
}

#[test]
fn cycle_runs_and_says_what_it_skipped() {
    let env = Env::new();
    let out = env.rdbench(&["--json", "cycle", "--task", "prefix-sum"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    if has_gpu() {
        let start = row["start_score"].as_f64().unwrap();
        let reference = row["reference_score"].as_f64().unwrap();
        assert!(
            start.abs() < 0.05 && (reference - 1.0).abs() < 0.05,
            "{row}"
        );
    } else {
        assert!(row["status"].as_str().unwrap().contains("skipped"), "{row}");
        assert!(
            row["note"]
                .as_str()
                .unwrap()
                .contains("GPU-free checks passed"),
            "{row}"
        );
    }
}

#[test]
fn monitor_records_a_timeline_for_a_short_duration() {
    let env = Env::new();
    let dir = env.attempt("a", "prefix-sum", "tiny");
    let out = env.rdbench(&[
        "--json",
        "monitor",
        dir.to_str().unwrap(),
        "--interval-ms",
        "50",
        "--duration",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["summary"]["samples"].as_u64().unwrap() >= 3, "{v}");
    assert!(Path::new(v["timeline"].as_str().unwrap()).is_file());
    if !has_gpu() {
        assert_eq!(v["summary"]["source"], "proc");
    }
}

#[test]
fn aggregate_reads_runs_and_rejects_bad_lines() {
    let env = Env::new();
    let runs = env.work.path().join("runs.jsonl");
    let mut lines = Vec::new();
    for agent in ["a", "b"] {
        for (t, minutes) in [("t1", 2.0), ("t2", 30.0), ("t3", 240.0), ("t4", 900.0)] {
            for r in 0..4 {
                let skill = if agent == "a" { 60.0 } else { 10.0 };
                let score = if minutes < skill * (1.0 + r as f64 / 4.0) {
                    1.0
                } else {
                    0.0
                };
                lines.push(serde_json::json!({
                    "run_id": format!("{agent}-{t}-{r}"), "task_id": format!("fam_{t}/main"), "task_family": format!("fam_{t}"),
                    "alias": agent, "score": score, "time_limit": 1800, "human_minutes": minutes,
                }).to_string());
            }
        }
    }
    std::fs::write(&runs, lines.join("\n")).unwrap();
    let out_dir = env.work.path().join("agg");
    let out = env.rdbench(&[
        "--json",
        "aggregate",
        runs.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--bootstrap",
        "50",
        "--budget-bootstrap",
        "50",
        "--plots",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("aggregate --json is JSON");
    assert!(report.to_string().contains("\"a\""), "{report}");
    std::fs::write(&runs, format!("{}\n{{\"run_id\": \"x\", \"alias\": \"a\", \"task_id\": \"t\", \"task_family\": \"f\", \"score\": 1, \"human_minutes\": \"ten\"}}\n", lines[0])).unwrap();
    let out = env.rdbench(&["aggregate", runs.to_str().unwrap(), "--no-files"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runs.jsonl:2") && err.contains("human_minutes"),
        "names file, line and field: {err}"
    );
}
