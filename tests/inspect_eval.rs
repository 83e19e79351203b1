//! `rdbench_inspect` end to end: an Inspect eval of a scripted agent (`mockllm/model`,
//! `python/rdbench_inspect/tests/run_scripted.py`) with the local sandbox, against a live
//! `rdbench serve` as root and the agent as its own user (protected.rs's [`Deployment`]).
//!
//! The agent writes a program and scores it through the package's `score` tool, replays a
//! scoring call, breaks the program, reads `score_log` and submits; the test then reads
//! Inspect's log and checks its score against `rdbench finish` and the log against the
//! service's own. Needs root (the agent's user) and inspect-ai with the package in the
//! checkout's `.venv` (`scripts/test.sh` installs both; under CI their absence is a failure).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::protected::{code, Deployment, Service, AGENT_USER, CANARY};
use super::text;

/// The checkout's `.venv` Python, where it has inspect-ai and rdbench_inspect; `None` (said in
/// one line) where it does not, outside CI.
fn inspect_python() -> Option<PathBuf> {
    let python = super::repo().join(".venv/bin/python3");
    let found = Command::new(&python)
        .args(["-c", "import inspect_ai, rdbench_inspect"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI installs inspect-ai and rdbench_inspect into .venv (scripts/test.sh); they are missing"
    );
    if !found {
        eprintln!(
            "skipped: no inspect-ai with rdbench_inspect in .venv (scripts/test.sh installs them)"
        );
    }
    found.then_some(python)
}

/// One scripted eval of `task` (tiny) against the service on `socket`, the agent writing
/// `submission` (the operator's `install-solution reference` of it): the script's exit code
/// (0: the eval succeeded) and Inspect's log, as JSON.
fn scripted_eval(
    d: &Deployment,
    socket: &Path,
    python: &Path,
    task: &str,
    submission: &str,
) -> (Option<i32>, Value) {
    let reference = d.root.join(format!("{task}-reference"));
    let out = Command::new(&d.bin)
        .args(["install-solution", task, "reference", "--dir"])
        .arg(&reference)
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "install-solution: {}", text(&out));
    // Inspect's home and logs where the agent cannot look (the README's advice).
    let inspect_home = d.root.join(format!("{task}-inspect"));
    std::fs::create_dir(&inspect_home).unwrap();
    super::protected::chmod(&inspect_home, 0o700);
    let logs = inspect_home.join("logs");
    let script = super::repo().join("python/rdbench_inspect/tests/run_scripted.py");
    let started = std::time::Instant::now();
    let out = Command::new(python)
        .arg(&script)
        .args([
            "--task",
            task,
            "--agent-user",
            AGENT_USER,
            "--submission",
            submission,
        ])
        .arg("--workdir")
        .arg(&d.agent_dir)
        .arg("--client")
        .arg(&d.client_bin)
        .arg("--socket")
        .arg(socket)
        .arg("--program")
        .arg(reference.join(submission))
        .arg("--log-dir")
        .arg(&logs)
        // runuser is in sbin; Inspect's own files go under the test's root.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &inspect_home)
        .env_remove("RDBENCH_SOCKET")
        .env_remove("RDBENCH_CLIENT")
        .output()
        .unwrap();
    eprintln!(
        "scripted inspect eval of {task}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    eprintln!("{}", text(&out));
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("Inspect wrote a JSON log");
    (
        code(&out),
        serde_json::from_slice(&std::fs::read(log).unwrap()).unwrap(),
    )
}

/// The tool replies of the log's one sample, in order, as (function, text).
fn tool_replies(sample: &Value) -> Vec<(String, String)> {
    sample["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                parts => parts
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
            };
            let error = m["error"]["message"].as_str().unwrap_or_default();
            (
                m["function"].as_str().unwrap_or_default().to_string(),
                format!("{content}{error}"),
            )
        })
        .collect()
}

/// What the service says of the attempt, as the operator: `finish` (again: it changes
/// nothing) and `log`.
fn service_view(d: &Deployment, service: &Service, id: &str) -> (Value, Value) {
    let json = |args: &[&str]| -> Value {
        let out = d.operator(service, args);
        assert_eq!(code(&out), Some(0), "{args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    (
        json(&["--json", "finish", id]),
        json(&["--json", "log", id]),
    )
}

/// What one scripted eval showed: the tool replies, Inspect's score, and the service's own
/// `finish` summary and `log` of the attempt.
struct Evaluated {
    replies: Vec<(String, String)>,
    score: Value,
    summary: Value,
    service_log: Value,
}

/// A scripted eval of `task`, with the checks every task shares: the script's calls in order,
/// the agent's commands as its own user in its folder, Inspect's score equal to rdbench's
/// `finish`, one logged entry per scoring call (the replay's key logged once), an intact and
/// sealed chain, nothing of the scorer's home in any reply.
fn checked_eval(task: &str, submission: &str) -> Option<Evaluated> {
    let d = Deployment::new()?;
    let python = inspect_python()?;
    let service = d.serve("inspect");
    let (exit, log) = scripted_eval(&d, &service.socket, &python, task, submission);
    assert_eq!(exit, Some(0), "run_scripted.py");
    assert_eq!(log["status"], "success", "{}", log["error"]);
    let sample = &log["samples"][0];
    let replies = tool_replies(sample);
    let functions: Vec<&str> = replies.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        functions,
        [
            "bash",
            "score",
            "bash",
            "score",
            "score",
            "python",
            "score",
            "score_log",
            "submit"
        ],
        "{replies:#?}"
    );
    let (who, score_start) = (&replies[0].1, &replies[1].1);
    assert!(who.starts_with(&format!("{AGENT_USER}\n")), "{who}");
    assert!(who.contains(d.agent_dir.to_str().unwrap()), "{who}");
    assert!(
        score_start.contains("\n(working time left: "),
        "{score_start}"
    );
    let first_line = |i: usize| replies[i].1.lines().next().unwrap_or_default().to_string();
    assert_eq!(first_line(4), first_line(3), "the replayed call's reply");
    assert!(first_line(6).starts_with("INVALID"), "{}", replies[6].1);
    // The log as the agent saw it: three entries (the replay logged nothing), chain intact.
    let log_reply = &replies[7].1;
    assert!(
        log_reply.contains("\n3. ") && !log_reply.contains("\n4. "),
        "{log_reply}"
    );
    assert!(log_reply.contains("\nchain: intact"), "{log_reply}");

    // Inspect's score is rdbench's: finish's (again: it changes nothing), from its log.
    let score = sample["scores"]["rdbench_score"].clone();
    let meta = &score["metadata"];
    let id = meta["attempt_id"].as_str().unwrap();
    let (summary, service_log) = service_view(&d, &service, id);
    assert_eq!(score["value"], summary["score"], "{score:#}\n{summary:#}");
    assert_eq!(meta["raw"], summary["raw"]);
    assert_eq!(
        meta["summary"], summary,
        "the second finish changed nothing"
    );
    assert_eq!(meta["chain"]["intact"], true, "{meta:#}");
    assert!(meta["chain"]["sealed_at"].is_string(), "{meta:#}");
    assert!(
        meta["calibration"]["installed"]["provenance"].is_string(),
        "{meta:#}"
    );
    // Every scoring call carried a key; the replay's is logged once.
    let entries = service_log["entries"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys.len(), 3, "{entries:#?}");
    assert_eq!(keys[1], "call-score-program");
    assert_eq!(
        (&summary["entries"], &summary["valid_entries"]),
        (&3.into(), &2.into())
    );
    // Nothing of the scorer's reached the agent.
    for (function, reply) in &replies {
        for secret in [CANARY, d.home.to_str().unwrap()] {
            assert!(
                !reply.contains(secret),
                "{function} showed {secret}: {reply}"
            );
        }
    }
    Some(Evaluated {
        replies,
        score,
        summary,
        service_log,
    })
}

/// A task whose scores are shown: the start scores 0, the reference 1, and so does the sample.
#[test]
fn a_scripted_inspect_agent_is_scored_by_the_protected_service() {
    let Some(e) = checked_eval("tree-traversal", "program.json") else {
        return;
    };
    let said = |i: usize| e.replies[i].1.as_str();
    assert!(said(1).starts_with("score 0.0000 (raw "), "{}", said(1));
    assert!(said(3).starts_with("score 1.0000 (raw "), "{}", said(3));
    assert_eq!(e.score["value"], 1.0);
    assert_eq!(e.summary["selection"], "best");
    let calibration = &e.score["metadata"]["calibration"];
    assert_eq!(
        calibration["start_reference"], e.service_log["entries"][1]["calibration"],
        "{calibration:#}"
    );
}

/// A hidden-score task (scaling-law): every scoring reply is "recorded" and the log the agent
/// reads shows no score, while Inspect's score is still finish's (the last valid entry).
#[test]
fn a_hidden_score_shows_the_scripted_agent_nothing_but_reaches_inspects_log() {
    let Some(e) = checked_eval("scaling-law", "answer.json") else {
        return;
    };
    for i in [1, 3, 4] {
        assert!(
            e.replies[i].1.starts_with("recorded\n"),
            "{}",
            e.replies[i].1
        );
    }
    let log_reply = &e.replies[7].1;
    assert!(
        !log_reply.contains("score ") && !log_reply.contains("raw"),
        "{log_reply}"
    );
    assert_eq!(e.summary["selection"], "last");
    assert!(e.score["value"].as_f64().unwrap() > 0.9, "{:#}", e.score);
}

/// No service (rdbench-client's exit 3 at `start`): the sample fails with rdbench's
/// environment error, which `inspect eval --retry-on-error` retries; nothing is scored.
#[test]
fn an_unreachable_service_fails_the_sample_for_a_retry() {
    let Some(d) = Deployment::new() else { return };
    let Some(python) = inspect_python() else {
        return;
    };
    let nowhere = d.root.join("run/nothing.sock");
    let (exit, log) = scripted_eval(&d, &nowhere, &python, "tree-traversal", "program.json");
    assert_eq!(exit, Some(1), "run_scripted.py");
    assert_eq!(log["status"], "error", "{log:#}");
    let error = log["samples"][0]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("RdbenchEnvironmentError") && error.contains("exit 3"),
        "{:#}",
        log["samples"][0]["error"]
    );
}

/// The docker and k8s configurations the package ships (docker and k8s are not here to run
/// them): `check_deploy.py` loads them with a YAML parser and checks the keys that matter.
#[test]
fn the_shipped_sandbox_configurations_keep_the_agent_apart() {
    let Some(python) = inspect_python() else {
        return;
    };
    let out = Command::new(python)
        .arg(super::repo().join("python/rdbench_inspect/tests/check_deploy.py"))
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
}

/// The idempotency key through the service, without Inspect: the agent's second `score` with
/// a key already logged for its attempt gets the logged entry back (same bytes, same exit
/// code) with nothing scored; the key is per attempt; a bad key is a usage error before
/// anything is read.
#[test]
fn a_scoring_key_is_logged_once_per_attempt_through_the_service() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("keys");
    let (a, b) = (d.agent_dir.join("a"), d.agent_dir.join("b"));
    let a_id = d.start_for_agent(&service, "tree-traversal", &a);
    let b_id = d.start_for_agent(&service, "tree-traversal", &b);
    let score = |id: &str, key: &str| d.client(&service, &["--json", "score", id, "--key", key]);
    let first = score(&a_id, "k1");
    assert_eq!(code(&first), Some(0), "{}", text(&first));
    d.write_as_agent(&a.join("program.json"), b"{}");
    let again = score(&a_id, "k1");
    assert_eq!(
        (code(&again), &again.stdout),
        (Some(0), &first.stdout),
        "{}",
        text(&again)
    );
    let other = score(&a_id, "k2");
    assert_eq!(code(&other), Some(1), "a new key scores: {}", text(&other));
    let in_b = score(&b_id, "k1");
    assert_eq!(code(&in_b), Some(0), "another attempt: {}", text(&in_b));
    let bad = score(&a_id, "a\u{1b}[2J");
    assert_eq!(code(&bad), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("1 to 128 printable"), "{}", text(&bad));
    let log = d.operator(&service, &["--json", "log", &a_id]);
    let log: Value = serde_json::from_slice(&log.stdout).unwrap();
    let keys: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k1", "k2"]);
}
