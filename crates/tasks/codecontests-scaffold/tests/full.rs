//! The `full` profile end to end without a network: an operator's CodeContests file and
//! manifest, and a fake OpenAI-compatible endpoint (a local axum server) behind the proxy, with
//! a key the proxy adds. The starting scaffold, run in the sandbox, asks once per problem: the
//! fake answers the first problem with a right program and the second with a wrong one, so
//! the share solved must be exactly one half. Its own test binary: it sets the process's
//! environment.

use rdbench_core::task::{profile_of, Execution, ScoreOutcome, ScoreRequest, Solution};
use serde_json::json;
use sha2::{Digest, Sha256};

const RIGHT: &str = "use std::io::Read;\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();\n    println!(\"{}\", v[0] + v[1]);\n}\n";
const WRONG: &str = "fn main() {\n    println!(\"7\");\n}\n";

fn problem(name: &str, description: &str, cases: &[(&str, &str)]) -> String {
    let tests = |range: std::ops::Range<usize>| {
        json!({
            "input": cases[range.clone()].iter().map(|c| c.0).collect::<Vec<_>>(),
            "output": cases[range].iter().map(|c| c.1).collect::<Vec<_>>(),
        })
    };
    json!({
        "name": name, "description": description, "source": 2, "difficulty": 7,
        "public_tests": tests(0..1), "private_tests": tests(1..cases.len()),
    })
    .to_string()
}

#[test]
fn full_scores_the_operators_problems_through_the_operators_endpoint() {
    if let Some(why) = rdbench_runner::sandbox::capabilities().why_not {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI has the sandbox: {why}"
        );
        eprintln!("skipped: no sandbox here: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = [
        problem(
            "sum",
            "Print a + b.",
            &[("1 2\n", "3\n"), ("7 7\n", "14\n"), ("-1 1\n", "0\n")],
        ),
        problem(
            "sum again",
            "Print the sum of a and b.",
            &[("2 2\n", "4\n"), ("3 4\n", "7\n")],
        ),
    ]
    .join("\n");
    let problems = tmp.path().join("test.jsonl");
    std::fs::write(&problems, &text).unwrap();
    let key = tmp.path().join("key");
    std::fs::write(&key, "sk-operator-secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The fake endpoint: the right program for "Print a + b.", a wrong one otherwise. The run's
    // budget holds both problems' requests at once (concurrency 2): the proxy reserves each
    // request's `max_tokens` (512 in the starting scaffold) until it is answered, and with a
    // budget of 1,000 the second of two concurrent requests was refused about half the time.
    let endpoint = rdbench_llm_proxy::testing::FakeEndpoint::start(|body| {
        let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
        if prompt.contains("Print a + b.") {
            RIGHT
        } else {
            WRONG
        }
        .to_string()
    });
    let config = tmp.path().join("full.toml");
    std::fs::write(
        &config,
        format!(
            "problems = {:?}\nproblems_sha256 = \"{}\"\nbase_url = \"{}\"\n\
             model = \"operator-model\"\nkey_file = {:?}\nrun_budget_tokens = 10000\n\
             attempt_budget_tokens = 100000\nconcurrency = 2\n",
            problems,
            hex::encode(Sha256::digest(text.as_bytes())),
            endpoint.base_url(),
            key
        ),
    )
    .unwrap();
    std::env::set_var(
        rdbench_task_codecontests_scaffold::operator::CONFIG_VAR,
        &config,
    );

    let task = &rdbench_task_codecontests_scaffold::tasks()[0];
    let full = profile_of(task.as_ref(), "full").unwrap();
    task.check_environment(&full, Execution::Measured).unwrap();
    let submission = tmp.path().join("submission");
    task.install_solution(Solution::Starting, &full, tmp.path(), &submission)
        .unwrap();
    let request = ScoreRequest {
        profile: full,
        submission_dir: submission,
        private_dir: tmp.path().join("private"),
        cache_dir: tmp.path().join("cache"),
        samples_path: tmp.path().join("samples.json"),
        seed: 1,
        execution: Default::default(),
    };
    let outcome = task.score(&request).unwrap();
    let ScoreOutcome::Valid { raw, details, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(raw, 0.5, "{details}");
    assert_eq!(details["results"]["failed_a_test"], 1, "{details}");
    assert_eq!(details["tokens"]["prompt"], 20, "{details}");
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 2);
    for (auth, body) in &seen {
        assert_eq!(auth.as_deref(), Some("Bearer sk-operator-secret"));
        assert_eq!(body["model"], "operator-model");
    }

    // Problems other than the manifest's: refused before anything runs.
    std::fs::write(&problems, format!("{text}\n")).unwrap();
    let e = task.score(&request).unwrap_err();
    assert!(e.to_string().contains("not the recorded"), "{e}");
}
