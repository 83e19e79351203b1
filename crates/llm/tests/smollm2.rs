//! The tokenizer and template read from the real SmolLM2 GGUF (`scripts/fetch-smollm2.sh`;
//! skipped with a line where it is not fetched, failed under CI).

use std::path::PathBuf;

use rdbench_llm::{ChatMessage, ChatModel, GgufLlama};

fn model() -> Option<GgufLlama> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI fetches the GGUF (scripts/test.sh)"
        );
        eprintln!("skipped: no SmolLM2 GGUF in .cache/models (scripts/fetch-smollm2.sh)");
        return None;
    }
    Some(GgufLlama::load(&path).unwrap())
}

#[test]
fn smollm2_tokenizer_and_template_are_the_files_own() {
    let Some(m) = model() else { return };
    // general.name as the file has it (its converter named the training run).
    assert_eq!(m.name(), "Smollm2 135M 8k Lc100K Mix1 Ep2");
    // Special tokens are single ids; text has no invented prefix space; digits split one by
    // one (SmolLM's pre-tokenizer).
    let ids = m
        .encode("<|im_start|>user\nHello world 2024<|im_end|>")
        .unwrap();
    let pieces: Vec<String> = ids.iter().map(|&i| m.detokenize(&[i]).unwrap()).collect();
    eprintln!("{ids:?} {pieces:?}");
    assert_eq!(ids[0], 1, "{pieces:?}");
    assert_eq!(*ids.last().unwrap(), 2, "{pieces:?}");
    assert_eq!(
        &pieces[1..ids.len() - 1],
        ["user", "\n", "Hello", " world", " ", "2", "0", "2", "4"]
    );
    let prompt = m
        .prompt_tokens(&[ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }])
        .unwrap();
    let text = m.detokenize(&prompt).unwrap();
    assert!(
        text.contains("You are a helpful AI assistant named SmolLM"),
        "{text}"
    );
    assert!(m.stop_tokens().contains(&2), "<|im_end|> ends a turn");
}
