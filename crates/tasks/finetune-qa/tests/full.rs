//! The `full` profile end to end without a network: an operator's GPT-2-architecture
//! checkpoints (tiny, random), a byte-level tokenizer with GPT-2's `<|endoftext|>`, Alpaca
//! records, and a fake OpenAI-compatible judge (`rdbench_llm_proxy::testing`) behind the proxy with a
//! key the proxy adds. The fake's rule is switched between runs: "always m" (pure position
//! bias, which the two orders must cancel) and "the shorter output" (which a policy that ends
//! at once must win). Its own test binary: it sets the process's environment.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use rdbench_core::task::{InvalidKind, ScoreOutcome, ScoreRequest, Solution, ToolRequest};
use rdbench_llm_proxy::testing::FakeEndpoint;
use rdbench_lm::{hf_gpt2, Gpt, GptConfig};
use rdbench_task_finetune_qa::full::operator::CONFIG_VAR;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ALWAYS_FIRST: u8 = 0;
const SHORTER: u8 = 1;

fn architecture() -> GptConfig {
    GptConfig {
        vocab: 257,
        ctx: 128,
        d_model: 32,
        n_layer: 2,
        n_head: 2,
        d_ff: 64,
        ln_eps: 1e-5,
    }
}

/// GPT-2's byte-level pre-tokenizer and decoder over the 256 byte symbols, no merges, and
/// `<|endoftext|>` as token 256.
fn write_tokenizer(path: &Path) {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut symbols: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    symbols.sort();
    let mut vocab: tokenizers::models::bpe::Vocab = symbols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    vocab.insert("<|endoftext|>".into(), 256);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer
        .add_special_tokens(vec![tokenizers::AddedToken::from("<|endoftext|>", true)])
        .unwrap();
    tokenizer.save(path, false).unwrap();
}

/// A policy that ends every response at once: its final norm outputs a constant that only the
/// end token's embedding reads.
fn terse(base: &Gpt) -> Gpt {
    let cfg = base.config().clone();
    let mut tensors = base.tensors();
    let d = cfg.d_model;
    let mut wte = tensors["wte"]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for t in 0..cfg.vocab {
        wte[t * d] = if t == 256 { 10.0 } else { 0.0 };
    }
    let mut bias = vec![0f32; d];
    bias[0] = 10.0;
    let dev = candle_core::Device::Cpu;
    tensors.insert(
        "wte".into(),
        candle_core::Tensor::from_vec(wte, (cfg.vocab, d), &dev).unwrap(),
    );
    tensors.insert(
        "ln_f.weight".into(),
        candle_core::Tensor::zeros(d, candle_core::DType::F32, &dev).unwrap(),
    );
    tensors.insert(
        "ln_f.bias".into(),
        candle_core::Tensor::from_vec(bias, d, &dev).unwrap(),
    );
    Gpt::from_tensors(cfg, tensors).unwrap()
}

fn recorded(path: &Path) -> String {
    format!(
        "{{ path = {:?}, sha256 = \"{}\" }}",
        path,
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

fn valid(outcome: ScoreOutcome) -> (f64, Value) {
    match outcome {
        ScoreOutcome::Valid { raw, details, .. } => (raw, details),
        other => panic!("not valid: {other:?}"),
    }
}

#[test]
fn full_generates_itself_and_asks_the_operators_judge_in_both_orders() {
    let tmp = tempfile::tempdir().unwrap();
    let ops = tmp.path().join("operator");
    std::fs::create_dir_all(&ops).unwrap();
    let cfg = architecture();
    let base = Gpt::new(cfg.clone(), 1).unwrap();
    hf_gpt2::save(&base, &ops.join("base.safetensors")).unwrap();
    hf_gpt2::save(
        &Gpt::new(cfg.clone(), 2).unwrap(),
        &ops.join("sft.safetensors"),
    )
    .unwrap();
    hf_gpt2::save(&terse(&base), &ops.join("reference.safetensors")).unwrap();
    std::fs::write(
        ops.join("config.json"),
        hf_gpt2::config_json(&cfg).to_string(),
    )
    .unwrap();
    write_tokenizer(&ops.join("tokenizer.json"));
    let records = |items: &[(&str, &str)]| -> String {
        items
            .iter()
            .map(|(i, o)| json!({"instruction": i, "input": "", "output": o}).to_string() + "\n")
            .collect()
    };
    std::fs::write(
        ops.join("train.jsonl"),
        records(&[
            ("Name a color.", "SECRET-ANSWER-1"),
            ("Count to 3.", "SECRET-ANSWER-2"),
        ]),
    )
    .unwrap();
    std::fs::write(
        ops.join("heldout.jsonl"),
        records(&[
            ("Say hi.", "x"),
            ("Add 2 and 2.", "x"),
            ("Name a fruit.", "x"),
        ]),
    )
    .unwrap();
    let key = ops.join("key");
    std::fs::write(&key, "sk-judge-secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The fake judge: the rule in force, applied to the two outputs it is shown.
    let rule = Arc::new(AtomicU8::new(ALWAYS_FIRST));
    let judge_rule = rule.clone();
    let endpoint = FakeEndpoint::start(move |body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let output = |label: &str, next: &str| {
            let start = user.find(label).unwrap() + label.len();
            let end = user[start..].find(next).unwrap() + start;
            user[start..end].chars().count()
        };
        let first = output("## Output of model m\n\n", "\n\n## Output of model M");
        let second = output("## Output of model M\n\n", "\n\nAnswer with");
        match judge_rule.load(Ordering::SeqCst) {
            ALWAYS_FIRST => "m",
            _ if first <= second => "The better model is m.",
            _ => "M",
        }
        .to_string()
    });

    let config = tmp.path().join("full.toml");
    std::fs::write(
        &config,
        format!(
            "model_config = {}\ntokenizer = {}\nbase_model = {}\nsft_model = {}\n\
             reference_model = {}\ntrain_prompts = {}\nheldout_prompts = {}\n\
             prompt_template = \"Q: {{prompt}}\\nA:\"\nbase_url = \"{}\"\n\
             model = \"judge-model\"\nkey_file = {:?}\nattempt_budget_tokens = 100000\n\
             judge_verdict_cap = 3\nconcurrency = 2\nthreads = 1\n",
            recorded(&ops.join("config.json")),
            recorded(&ops.join("tokenizer.json")),
            recorded(&ops.join("base.safetensors")),
            recorded(&ops.join("sft.safetensors")),
            recorded(&ops.join("reference.safetensors")),
            recorded(&ops.join("train.jsonl")),
            recorded(&ops.join("heldout.jsonl")),
            endpoint.base_url(),
            key
        ),
    )
    .unwrap();
    std::env::set_var(CONFIG_VAR, &config);

    let task = &rdbench_task_finetune_qa::tasks()[0];
    task.check_environment("full", Default::default()).unwrap();
    let conformance = tmp.path().join("conformance");
    rdbench_core::conformance::assert_conformant(task.as_ref(), "full", &conformance);

    // The attempt's folder: the base in Hugging Face's format, prompts without outputs.
    let attempt = tmp.path().join("attempt");
    std::fs::create_dir_all(&attempt).unwrap();
    task.prepare(&rdbench_core::task::PrepareRequest {
        profile: "full".into(),
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
        profile: "full".into(),
        submission_dir: dir.to_path_buf(),
        private_dir: tmp.path().join("private"),
        cache_dir: tmp.path().join("cache"),
        samples_path: tmp.path().join("samples.json"),
        seed: 1,
        backend: Default::default(),
    };
    let install = |solution: Solution, name: &str| {
        let dir = tmp.path().join(name);
        task.install_solution(solution, "full", tmp.path(), &dir)
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
    rule.store(SHORTER, Ordering::SeqCst);
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
            profile: "full".into(),
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
    assert!(e.to_string().contains("at most 60"), "{e}");

    // Inputs other than the recorded ones: refused before anything runs.
    std::fs::write(ops.join("heldout.jsonl"), "{\"instruction\": \"Other.\"}\n").unwrap();
    std::fs::remove_dir_all(tmp.path().join("cache").join("finetune-qa")).unwrap();
    let e = task.score(&request(&start)).unwrap_err();
    assert!(e.to_string().contains("not the recorded"), "{e}");
}
