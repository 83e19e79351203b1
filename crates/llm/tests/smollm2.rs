//! The tokenizer and template read from the real SmolLM2 GGUF (`scripts/fetch-smollm2.sh`;
//! skipped with a line where it is not fetched, failed under CI).

use std::path::PathBuf;

use rdbench_llm::{ChatMessage, ChatModel, GgufLlama};

mod common;
use common::candle_logits;

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

/// rdbench's forward (crate::llama, Q4_1 run as stored) against candle-transformers'
/// `quantized_llama` on the same file, both fed the same tokens: logits that agree closely but
/// not exactly, and the same choices up to near-ties. Both quantize activations to 8 bits before every product; where a
/// float differs in its last bit (another summation order) a value can round to the next step,
/// and over 30 layers such flips move logits by a few percent (measured on this prompt: up to
/// 11% of the largest logit, correlations 0.9967 to 0.9995), in either implementation.
#[test]
fn the_forward_agrees_with_candles_quantized_llama_on_smollm2() {
    use candle_core::Device;
    use candle_transformers::models::quantized_llama::ModelWeights;
    let Some(mut m) = model() else { return };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut candle = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    let prompt = m
        .prompt_tokens(&[ChatMessage {
            role: "user".into(),
            content: "What is the capital of France?".into(),
        }])
        .unwrap();
    let (state, mut ours) = m.prefill(&prompt).unwrap();
    let mut theirs = candle_logits(&mut candle, &prompt, 0);
    let mut states = [state];
    let mut continuation = Vec::new();
    for step in 0..8 {
        let r = correlation(&ours, &theirs);
        eprintln!("step {step}: correlation {r}");
        assert!(r > 0.99, "step {step}: correlation {r}");
        // Both are fed candle's greedy token; where two logits nearly tie the choices may
        // differ, so candle's must be among rdbench's top three.
        let token = rdbench_llm::sampling::argmax(&theirs);
        let above = ours.iter().filter(|&&v| v > ours[token as usize]).count();
        assert!(
            above < 3,
            "step {step}: candle's token {token} is rdbench's number {}",
            above + 1
        );
        continuation.push(token);
        ours = m.decode_step(&mut states, &[token]).unwrap().remove(0);
        theirs = candle_logits(&mut candle, &[token], prompt.len() + step);
    }
    // A 135 M model: its greedy answer is not "Paris".
    eprintln!("{:?}", m.detokenize(&continuation).unwrap());
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}
