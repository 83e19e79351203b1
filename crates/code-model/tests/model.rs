//! The model's machinery on one small model trained once (`Settings::tiny`, a few seconds):
//! the KV cache against rdbench-lm's full forward pass, the model folder, the chat interface.

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use rdbench_code_model::corpus::documents;
use rdbench_code_model::{
    prepare_cached_with, train, CodeModel, CodeModelError, Settings, MODEL_NAME,
};
use rdbench_llm::sampling::SamplingParams;
use rdbench_llm::{generate, ChatMessage, ChatModel, FinishReason, GenerateParams, LlmError};

fn model() -> CodeModel {
    static MODEL: OnceLock<CodeModel> = OnceLock::new();
    MODEL
        .get_or_init(|| train(5, &Settings::tiny()).unwrap())
        .clone()
}

/// Two documents, one after the other (as training packs them): long enough for every length
/// the tests try.
fn doc_tokens(m: &CodeModel) -> Vec<u32> {
    documents(3, 2, &Settings::default().mixture)
        .iter()
        .flat_map(|d| d.tokens(m.vocab()))
        .collect()
}

fn full_logits(gpt: &rdbench_lm::Gpt, tokens: &[u32]) -> Vec<f32> {
    let t = Tensor::from_vec(tokens.to_vec(), (1, tokens.len()), &Device::Cpu).unwrap();
    let l = gpt.forward(&t).unwrap();
    let last = l.narrow(0, tokens.len() - 1, 1).unwrap();
    last.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn kv_cache_logits_match_the_full_forward_pass() {
    let mut m = model();
    let gpt = m.to_gpt().unwrap();
    let tokens = doc_tokens(&m);
    assert!(tokens.len() > 95, "{}", tokens.len());
    // Prefill at several lengths.
    for len in [1, 9, 64, tokens.len()] {
        let (state, logits) = m.prefill(&tokens[..len]).unwrap();
        assert_eq!(state.len(), len);
        let d = max_diff(&logits, &full_logits(&gpt, &tokens[..len]));
        assert!(d < 1e-4, "prefill of {len}: {d}");
    }
    // Decoding two sequences together, one token each per step, from different prefills.
    let (a, _) = m.prefill(&tokens[..20]).unwrap();
    let (b, _) = m.prefill(&tokens[..50]).unwrap();
    let mut states = vec![a, b];
    for step in 0..40 {
        let feed = [tokens[20 + step], tokens[50 + step]];
        let logits = m.decode_step(&mut states, &feed).unwrap();
        if step % 13 == 0 || step == 39 {
            for (k, start) in [20, 50].into_iter().enumerate() {
                let d = max_diff(&logits[k], &full_logits(&gpt, &tokens[..start + step + 1]));
                assert!(d < 1e-4, "decode step {step}, sequence {k}: {d}");
            }
        }
    }
}

#[test]
fn generate_gives_n_choices_and_refuses_a_prompt_beyond_the_context() {
    let mut m = model();
    let params = GenerateParams {
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
        },
        max_tokens: Some(24),
        n: 2,
        seed: 7,
        stop: vec![],
    };
    let msgs = vec![
        ChatMessage {
            role: "system".into(),
            content: "You are a helpful assistant.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Solve this problem in Rust:\n\nPrint the sum of the decimal digits of N."
                .into(),
        },
    ];
    let g = generate(&mut m, &msgs, &params).unwrap();
    assert_eq!(g.choices.len(), 2);
    for c in &g.choices {
        assert!(c.completion_tokens <= 24);
        if c.finish_reason == FinishReason::Length {
            assert_eq!(c.completion_tokens, 24);
        }
    }
    assert_eq!(g, generate(&mut m, &msgs, &params).unwrap());
    let long = vec![ChatMessage {
        role: "user".into(),
        content: "word ".repeat(2000),
    }];
    let err = generate(&mut m, &long, &params).unwrap_err();
    assert!(matches!(err, LlmError::PromptTooLong { .. }), "{err}");
    assert_eq!(m.context_length(), Settings::tiny().ctx);
    assert_eq!(MODEL_NAME, "rdbench-code-tiny");
}

#[test]
fn the_model_folder_round_trips_and_refuses_corrupt_files() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    m.save(&good).unwrap();
    let mut back = CodeModel::load(&good).unwrap();
    let tokens = doc_tokens(&m);
    let mut orig = m.clone();
    assert_eq!(
        back.prefill(&tokens[..30]).unwrap().1,
        orig.prefill(&tokens[..30]).unwrap().1
    );
    assert_eq!(back.vocab(), m.vocab());

    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        for f in ["model.json", "model.safetensors"] {
            std::fs::copy(good.join(f), d.join(f)).unwrap();
        }
        d
    };
    let is_bad = |d: &std::path::Path| {
        let r = CodeModel::load(d);
        assert!(
            matches!(r, Err(CodeModelError::BadModel { .. })),
            "{}: {:?}",
            d.display(),
            r.as_ref().err()
        );
    };
    // Truncated weights.
    let d = copy("truncated");
    let w = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    is_bad(&d);
    // A NaN in the weights (the last float of the data).
    let d = copy("nan");
    let mut w = std::fs::read(d.join("model.safetensors")).unwrap();
    let n = w.len();
    w[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("model.safetensors"), &w).unwrap();
    is_bad(&d);
    // Metadata: not JSON, a vocabulary one token short, a missing file.
    let d = copy("json");
    std::fs::write(d.join("model.json"), b"{not json").unwrap();
    is_bad(&d);
    let d = copy("vocab");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("model.json")).unwrap()).unwrap();
    meta["vocab"].as_array_mut().unwrap().pop();
    std::fs::write(d.join("model.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    is_bad(&d);
    let d = copy("missing");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    is_bad(&d);
}

#[test]
fn prepare_cached_trains_once_and_concurrent_callers_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        documents: 40,
        steps: 2,
        ..Settings::tiny()
    };
    let paths: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| prepare_cached_with(dir.path(), 9, &settings).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(paths[0], paths[1]);
    let modified = std::fs::metadata(paths[0].join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    // A third call loads what is there.
    assert_eq!(
        prepare_cached_with(dir.path(), 9, &settings).unwrap(),
        paths[0]
    );
    let again = std::fs::metadata(paths[0].join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(modified, again);
    // No temporary folder is left, and the seed does not show in the name.
    let names: Vec<String> = rdbench_core::conformance::names_in(dir.path())
        .unwrap()
        .into_iter()
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The name is the model's and a hash: nothing of the seed is readable in it.
    let hash = names[0].strip_prefix(&format!("{MODEL_NAME}-")).unwrap();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{names:?}"
    );
    CodeModel::load(&paths[0]).unwrap();
}
