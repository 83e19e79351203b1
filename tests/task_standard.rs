//! `rdbench export task-standard`: the family it writes is imported by Python and driven the way
//! a Task Standard driver drives it (each method in a process of its own), against the live
//! protected service as root, with the attempt owned by the test's agent user. Where the test
//! cannot make that user (not root) it says so and checks nothing; CI runs it as root.

use std::path::Path;
use std::process::Command;

use super::protected::{code, Deployment, AGENT_USER, CANARY};
use super::text;

/// Calls `expr` (Python, with the family's `TaskFamily` as `F` and its tiny task as `t`) in a
/// fresh Python process, as a driver does; its value as JSON (NaN as the string "NaN").
fn run_method(family: &Path, module: &str, expr: &str) -> Result<serde_json::Value, String> {
    let program = format!(
        "import json, math, sys\n\
         sys.path.insert(0, {dir:?})\n\
         from {module} import TaskFamily as F\n\
         t = F.get_tasks()['tiny']\n\
         def plain(v):\n    \
             if isinstance(v, float) and math.isnan(v): return 'NaN'\n    \
             if isinstance(v, dict): return {{k: plain(x) for k, x in v.items()}}\n    \
             if isinstance(v, list): return [plain(x) for x in v]\n    \
             return v\n\
         print(json.dumps(plain({expr})))\n",
        dir = family.to_str().unwrap(),
    );
    let out = Command::new("python3")
        .args(["-c", &program])
        .output()
        .expect("python3 runs");
    if code(&out) != Some(0) {
        return Err(text(&out));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out))))
}

#[test]
fn an_exported_family_scores_through_the_service_from_python() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("ts");
    let attempt = d.agent_dir.join("ts-attempt");
    let state = d.root.join("ts-state");
    let families = d.root.join("families");
    let out = Command::new(&d.bin)
        .args([
            "export",
            "task-standard",
            "tree-traversal",
            "--profile",
            "tiny",
            "--out",
        ])
        .arg(&families)
        .arg("--service-socket")
        .arg(&service.socket)
        .arg("--client")
        .arg(&d.client_bin)
        .args(["--agent-user", AGENT_USER, "--attempt-dir"])
        .arg(&attempt)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let family = families.join("rdbench_tree_traversal");
    let module = "rdbench_tree_traversal";
    let call =
        |expr: &str| run_method(&family, module, expr).unwrap_or_else(|e| panic!("{expr}: {e}"));

    let tasks = call("F.get_tasks()");
    assert_eq!(tasks.as_object().unwrap().len(), 1, "{tasks}");
    assert!(
        tasks["tiny"]["instructions"]
            .as_str()
            .unwrap()
            .contains(attempt.to_str().unwrap()),
        "{tasks}"
    );
    assert_eq!(call("F.get_permissions(t)"), serde_json::json!([]));
    assert_eq!(call("F.standard_version"), "0.5.0");
    // Nothing to score before `start`: one line naming the state file, an error the driver
    // sees (not a score).
    let before = run_method(&family, module, "F.intermediate_score(t)");
    assert!(
        before
            .as_ref()
            .is_err_and(|e| e.contains("no attempt started")),
        "{before:?}"
    );

    call("F.start(t)");
    use std::os::unix::fs::MetadataExt;
    let program = attempt.join("program.json");
    assert_eq!(std::fs::metadata(&program).unwrap().uid(), d.uid);
    let id_file = state.join("tree-traversal-tiny.attempt.json");
    assert_eq!(std::fs::metadata(&id_file).unwrap().mode() & 0o777, 0o600);

    let first = call("F.intermediate_score(t)");
    assert_eq!(first["score"], 0.0, "{first}");
    assert_eq!(first["message"]["valid"], true, "{first}");

    // The agent's own edit: the reference program, then a broken one.
    let reference = d.root.join("reference");
    let out = Command::new(&d.bin)
        .args([
            "install-solution",
            "tree-traversal",
            "reference",
            "--profile",
            "tiny",
            "--dir",
        ])
        .arg(&reference)
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    d.write_as_agent(
        &program,
        &std::fs::read(reference.join("program.json")).unwrap(),
    );
    let best = call("F.intermediate_score(t)");
    let best_score = best["score"].as_f64().unwrap();
    assert!((best_score - 1.0).abs() < 1e-9, "{best}");
    d.write_as_agent(&program, br#"{"format": "rdbench-vliw/1", "bundles": []}"#);
    let invalid = call("F.intermediate_score(t)");
    assert_eq!(invalid["score"], "NaN", "{invalid}");
    assert_eq!(invalid["message"]["valid"], false, "{invalid}");
    assert!(invalid["message"]["reason"].is_string(), "{invalid}");

    // The final score is rdbench's (the best valid entry), and asking twice finishes once.
    let final_score = call("F.aggregate_scores(t, [])");
    assert_eq!(final_score.as_f64(), Some(best_score));
    assert_eq!(call("F.aggregate_scores(t, [])").as_f64(), Some(best_score));
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("tree-traversal-tiny.summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["score"].as_f64(), Some(best_score), "{summary}");
    assert_eq!(summary["entries"], 3, "{summary}");
    assert_eq!(summary["valid_entries"], 2, "{summary}");
    // The family holds nothing of the scorer's.
    for file in std::fs::read_dir(&family).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let body = String::from_utf8_lossy(&bytes);
        assert!(!body.contains(CANARY) && !body.contains(d.home.to_str().unwrap()));
    }
}

/// A stand-in client that answers as the service would, so the family's side of a hidden-score
/// task and of an unreachable service is checked on any machine: `score` of a hidden task
/// tells the driver's agent-visible message nothing of the score, an environment error raises
/// (the driver retries) instead of scoring 0, and a second `aggregate_scores` finishes nothing.
#[test]
fn an_exported_family_hides_hidden_scores_and_raises_on_environment_errors() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let client = work.path().join("fake-client");
    std::fs::write(
        &client,
        "#!/bin/sh\n\
         case \"$4\" in\n\
         start) echo '{\"id\": \"att-00000000000000000000000000000000\"}' ;;\n\
         score) if [ -e \"$0.down\" ]; then echo 'cannot reach the service' >&2; exit 3; fi\n\
                echo '{\"normalized\": 0.7, \"raw\": 1.5, \"headline\": \"loss 1.5\"}' ;;\n\
         finish) echo finished >> \"$0.finished\"; echo '{\"score\": 0.7, \"entries\": 1}' ;;\n\
         *) exit 2 ;;\n\
         esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(super::rdbench_bin())
        .args([
            "export",
            "task-standard",
            "scaling-law",
            "--profile",
            "tiny",
            "--out",
        ])
        .arg(work.path())
        .arg("--client")
        .arg(&client)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let family = work.path().join("rdbench_scaling_law");
    let module = "rdbench_scaling_law";
    let call =
        |expr: &str| run_method(&family, module, expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    call("F.start(t)");
    let entry = call("F.intermediate_score(t)");
    assert_eq!(entry["score"], "NaN", "{entry}");
    assert_eq!(
        entry["message"],
        serde_json::json!({"valid": true, "recorded": true})
    );
    std::fs::write(work.path().join("fake-client.down"), "").unwrap();
    let down = run_method(&family, module, "F.intermediate_score(t)");
    assert!(
        down.as_ref()
            .is_err_and(|e| e.contains("RdbenchError") && e.contains("cannot reach the service")),
        "{down:?}"
    );
    std::fs::remove_file(work.path().join("fake-client.down")).unwrap();
    assert_eq!(call("F.aggregate_scores(t, [])").as_f64(), Some(0.7));
    assert_eq!(
        call("F.score(t, '')").as_f64(),
        Some(0.7),
        "score after the finish"
    );
    let finished = std::fs::read_to_string(work.path().join("fake-client.finished")).unwrap();
    assert_eq!(finished.lines().count(), 1, "finished once");
}
