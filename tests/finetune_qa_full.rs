//! finetune-qa's `full` profile through the real binary (same-user mode): an operator's inputs
//! (made up by `rdbench_task_finetune_qa::full::testing`) and a fake judge that prefers the
//! shorter output, named by `$RDBENCH_FINETUNE_QA_FULL`. The operator calibrates and cycles;
//! the agent starts, asks the judge, scores the start and the reference, finishes. Nothing it
//! sees carries the held-out answers' marker, the judge's key or its address.

use super::*;

use rdbench_llm_proxy::testing::FakeEndpoint;
use rdbench_task_finetune_qa::full::{operator::CONFIG_VAR, testing};

#[test]
fn finetune_qa_full_calibrates_starts_judges_scores_and_finishes() {
    let env = Env::new();
    let endpoint = FakeEndpoint::start(|body| testing::judge_reply(body, true));
    let operator = tempfile::tempdir().unwrap();
    let config = testing::write_operator_inputs(operator.path(), &endpoint.base_url()).unwrap();
    let run = |args: &[&str]| -> Output {
        let out = env
            .command(args)
            .env(CONFIG_VAR, &config)
            .output()
            .expect("rdbench runs");
        let all = text(&out);
        for secret in ["SECRET-ANSWER", "sk-judge-secret", &endpoint.base_url()] {
            assert!(!all.contains(secret), "{args:?} shows {secret}: {all}");
        }
        out
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        text(&out)
    };
    ok(&[
        "calibrate",
        "--task",
        "finetune-qa",
        "--profile",
        "full",
        "--runs",
        "1",
    ]);
    let cycle = ok(&["cycle", "--task", "finetune-qa", "--profile", "full"]);
    // Start and reference against the same judge: exactly 0 and 1 (nothing is drawn).
    let line = cycle
        .lines()
        .find(|l| l.starts_with("finetune-qa"))
        .unwrap();
    assert!(
        line.contains("0.00   1.00") && line.contains("scored"),
        "{cycle}"
    );

    let dir = env.work.path().join("qa");
    let d = dir.to_str().unwrap();
    ok(&["start", "finetune-qa", "--profile", "full", "--dir", d]);
    for file in [
        "base_model/model.safetensors",
        "base_model/config.json",
        "base_model/tokenizer.json",
        "train_prompts.jsonl",
        "prompt_template.txt",
        "policy.safetensors",
        "generation.json",
        "INSTRUCTIONS.md",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    for file in walk(&dir) {
        let bytes = std::fs::read(dir.join(&file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("SECRET-ANSWER"), "{file} carries an answer");
        assert!(
            !text.contains(testing::HELDOUT[1]),
            "{file} carries a held-out prompt"
        );
    }

    let said = ok(&[
        "tool",
        d,
        "judge",
        r#"pairs=[{"prompt": "Say hi.", "first": "hello there", "second": "hi"}]"#,
    ]);
    assert!(
        said.contains("1 verdicts (0 for the first response"),
        "{said}"
    );

    ok(&["score", d]);
    ok(&[
        "install-solution",
        "finetune-qa",
        "reference",
        "--dir",
        d,
        "--profile",
        "full",
    ]);
    ok(&["score", d]);
    let scores: Vec<f64> = env
        .log(&dir)
        .iter()
        .map(|e| e["normalized"].as_f64().unwrap())
        .collect();
    assert_eq!(
        scores,
        vec![0.0, 1.0],
        "the same judge and inputs as the calibration"
    );
    let out = run(&["--json", "finish", d]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["score"], 1.0, "{summary}");
}
