//! The `full` profile end to end without a network: an operator's GPT-2-architecture
//! checkpoints (tiny, random), a byte-level tokenizer with GPT-2's `<|endoftext|>`, Alpaca
//! records, and a fake OpenAI-compatible judge (`rdbench_llm_proxy::testing`) behind the proxy with a
//! key the proxy adds. The fake's rule is switched between runs: "always m" (pure position
//! bias, which the two orders must cancel) and "the shorter output" (which a policy that ends
//! at once must win). Its own test binary: it sets the process's environment.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdbench_core::task::{
    profile_of, Execution, InvalidKind, ScoreOutcome, ScoreRequest, Solution, ToolRequest,
};
use rdbench_llm_proxy::testing::FakeEndpoint;
use rdbench_lm::{hf_gpt2, Gpt, GptConfig};
use rdbench_task_finetune_qa::full::operator::CONFIG_VAR;
use rdbench_task_finetune_qa::full::testing;
use serde_json::{json, Value};

fn valid(outcome: ScoreOutcome) -> (f64, Value) {
    match outcome {
        ScoreOutcome::Valid { raw, details, .. } => (raw, details),
        other => panic!("not valid: {other:?}"),
    }
}

#[test]
fn full_generates_itself_and_asks_the_operators_judge_in_both_orders() {
    let tmp = tempfile::tempdir().unwrap();
    // The fake judge: pure position bias until `shorter` is set, then the shorter output.
    let shorter = Arc::new(AtomicBool::new(false));
    let rule = shorter.clone();
    let endpoint =
        FakeEndpoint::start(move |body| testing::judge_reply(body, rule.load(Ordering::SeqCst)));
    let ops = tmp.path().join("operator");
    let config = testing::write_operator_inputs(&ops, &endpoint.base_url()).unwrap();
    std::env::set_var(CONFIG_VAR, &config);
    let cfg = testing::architecture();

    let task = &rdbench_task_finetune_qa::tasks(rdbench_reference_finetune_qa::REFERENCE)[0];
    let full = profile_of(task.as_ref(), "full").unwrap();
    task.check_environment(&full, Execution::Measured).unwrap();
    let conformance = tmp.path().join("conformance");
    rdbench_core::conformance::assert_conformant(task.as_ref(), "full", &conformance);

    // The attempt's folder: the base in Hugging Face's format, prompts without outputs.
    let attempt = tmp.path().join("attempt");
    std::fs::create_dir_all(&attempt).unwrap();
    task.prepare(&rdbench_core::task::PrepareRequest {
        profile: full.clone(),
        attempt_dir: attempt.clone(),
        private_dir: tmp.path().join("private"),
        cache_dir: tmp.path().join("cache"),
    })
    .unwrap();
    for f in [
        "base_model/model.safetensors",
        "base_model/config.json",
        "base_model/tokenizer.json",
        "policy.safetensors",
        "generation.json",
        "prompt_template.txt",
        "INSTRUCTIONS.md",
    ] {
        assert!(attempt.join(f).is_file(), "{f}");
    }
    let train = std::fs::read_to_string(attempt.join("train_prompts.jsonl")).unwrap();
    assert_eq!(train.lines().count(), 2);
    assert!(
        train.contains("Name a color.") && !train.contains("SECRET-ANSWER"),
        "{train}"
    );
    let instructions = std::fs::read_to_string(attempt.join("INSTRUCTIONS.md")).unwrap();
    assert!(
        instructions.contains("3 verdicts and 100000 judge tokens"),
        "{instructions}"
    );

    let request = |dir: &Path| ScoreRequest {
        profile: full.clone(),
        submission_dir: dir.to_path_buf(),
        private_dir: tmp.path().join("private"),
        cache_dir: tmp.path().join("cache"),
        samples_path: tmp.path().join("samples.json"),
        seed: 1,
        execution: Default::default(),
    };
    let install = |solution: Solution, name: &str| {
        let dir = tmp.path().join(name);
        task.install_solution(solution, &full, tmp.path(), &dir)
            .unwrap();
        dir
    };
    let start = install(Solution::Starting, "start");
    let reference = install(Solution::Reference, "reference");

    // Position bias alone: every differing pair splits evenly over the two orders.
    let (raw, details) = valid(task.score(&request(&start)).unwrap());
    let ev = &details["evaluation"];
    assert_eq!(ev["win_rate_vs_base"], 0.5, "{details}");
    assert_eq!(raw, 0.5, "{details}");
    assert_eq!(ev["prompts"], 3);
    let calls = ev["judge_calls"].as_u64().unwrap();
    assert_eq!(calls % 2, 0, "both orders: {details}");
    let (raw, details) = valid(task.score(&request(&reference)).unwrap());
    assert_eq!(raw, 0.5, "{details}");
    assert_eq!(details["evaluation"]["mean_tokens"], 0.0, "{details}");
    assert_eq!(details["evaluation"]["unended_share"], 0.0, "{details}");

    // A judge that likes short answers: the policy that ends at once wins every pair it does
    // not tie, and the start still ties the base exactly.
    shorter.store(true, Ordering::SeqCst);
    let (ref_raw, details) = valid(task.score(&request(&reference)).unwrap());
    assert!(ref_raw > 0.9, "{details}");
    let (start_raw, details) = valid(task.score(&request(&start)).unwrap());
    assert_eq!(details["evaluation"]["win_rate_vs_base"], 0.5, "{details}");
    assert!(start_raw < ref_raw, "{details}");
    for (auth, body) in endpoint.seen() {
        assert_eq!(auth.as_deref(), Some("Bearer sk-judge-secret"));
        assert_eq!(body["model"], "judge-model");
    }

    // Settings and weights outside the rules are invalid, naming the file.
    let bad = install(Solution::Starting, "bad");
    std::fs::write(
        bad.join("generation.json"),
        r#"{"temperature": 0, "top_k": 0, "max_new_tokens": 61}"#,
    )
    .unwrap();
    let rejection = task.precheck(&request(&bad)).unwrap().unwrap();
    assert_eq!(rejection.0, InvalidKind::BadArtifact);
    assert!(rejection.1.contains("generation.json"), "{rejection:?}");
    std::fs::write(
        bad.join("generation.json"),
        r#"{"temperature": 0.7, "top_k": 8, "max_new_tokens": 20}"#,
    )
    .unwrap();
    let other = Gpt::new(
        GptConfig {
            d_ff: 32,
            ..cfg.clone()
        },
        4,
    )
    .unwrap();
    hf_gpt2::save(&other, &bad.join("policy.safetensors")).unwrap();
    match task.score(&request(&bad)).unwrap() {
        ScoreOutcome::Invalid { kind, reason, .. } => {
            assert_eq!(kind, InvalidKind::BadArtifact);
            assert!(
                reason.contains("policy.safetensors") && reason.contains("c_fc"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }

    // The judge tool: verdicts for the agent, counted against the attempt's cap.
    let tool = |pairs: Value| {
        task.run_tool(&ToolRequest {
            profile: full.clone(),
            name: "judge".into(),
            args: [("pairs".to_string(), pairs.to_string())].into(),
            private_dir: tmp.path().join("private"),
            cache_dir: tmp.path().join("cache"),
        })
    };
    let pair = |a: &str, b: &str| json!({"prompt": "Say hi.", "first": a, "second": b});
    let reply = tool(json!([
        pair("hi", "hello there"),
        pair("hello there", "hi")
    ]))
    .unwrap();
    assert_eq!(
        reply.value["first_preferred"],
        json!([true, false]),
        "{reply:?}"
    );
    assert_eq!(reply.value["used"], 2);
    assert_eq!(
        reply.value["tokens_used"],
        2 * FakeEndpoint::USAGE.2,
        "{reply:?}"
    );
    assert!(!reply.text.contains("sk-judge-secret") && !reply.text.contains("127.0.0.1"));
    let over = tool(json!([pair("a", "b"), pair("b", "a")])).unwrap_err();
    assert!(over.to_string().contains("cap of 3"), "{over}");
    let long = "word ".repeat(80);
    let e = tool(json!([pair(&long, "b")])).unwrap_err();
    assert!(e.to_string().contains("over 60 tokens"), "{e}");
    let huge = "x".repeat(1 << 20);
    let e = tool(json!([pair("hi", &huge)])).unwrap_err();
    assert!(e.to_string().contains("second is over 60 tokens"), "{e}");

    // Inputs other than the recorded ones: refused before anything runs.
    std::fs::write(ops.join("heldout.jsonl"), "{\"instruction\": \"Other.\"}\n").unwrap();
    std::fs::remove_dir_all(tmp.path().join("cache").join("finetune-qa")).unwrap();
    let e = task.score(&request(&start)).unwrap_err();
    assert!(e.to_string().contains("not the recorded"), "{e}");
}
