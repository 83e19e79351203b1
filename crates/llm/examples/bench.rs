//! Speed of a GGUF model under rdbench-llm: prefill tokens/s on a prompt of 118 tokens (with
//! SmolLM2's template),
//! then decode tokens/s for one sequence and in aggregate for 8 (one shared prefill, as the
//! server does for `n = 8`). Build it as the server should be built:
//!
//! ```text
//! RUSTFLAGS="-C target-cpu=x86-64-v3" cargo run --release -p rdbench-llm --example bench -- \
//!     .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf [THREADS] [DECODE_TOKENS]
//! ```

use std::time::Instant;

use rdbench_llm::{ChatMessage, ChatModel, GgufLlama};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: bench GGUF [THREADS] [DECODE_TOKENS]")?;
    let threads: usize = args.next().map_or(Ok(2), |s| s.parse())?;
    let decode_tokens: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    rdbench_llm::set_threads(threads);
    let mut model = GgufLlama::load(path.as_ref())?;
    let avx = cfg!(all(target_feature = "avx2", target_feature = "fma"));
    println!("{} threads, built with AVX2+FMA: {avx}", threads);
    // Enough words that the chat-templated prompt is about 127 tokens.
    let words = "Explain in a few sentences why the sky is blue, why sunsets are red, and how \
        the scattering of light by the molecules of the atmosphere depends on its wavelength. \
        Mention Rayleigh, give one everyday example, and keep the answer short and simple for \
        a curious child who is ten years old and likes to ask questions about the world. Use two \
        short paragraphs without lists, and end with one question for the child to think about.";
    let prompt = model.prompt_tokens(&[ChatMessage {
        role: "user".into(),
        content: words.into(),
    }])?;
    // Warm-up (first-touch of the weights, thread pool start).
    model.prefill(&prompt[..8])?;
    let reps = 3;
    let started = Instant::now();
    let mut state = None;
    for _ in 0..reps {
        state = Some(model.prefill(&prompt)?);
    }
    let prefill_s = started.elapsed().as_secs_f64() / reps as f64;
    println!(
        "prefill: {} tokens in {:.3} s = {:.0} tokens/s",
        prompt.len(),
        prefill_s,
        prompt.len() as f64 / prefill_s
    );
    let (state, logits) = state.unwrap();
    for n in [1, 8] {
        let mut states = vec![state.clone(); n];
        let first = rdbench_llm::sampling::argmax(&logits);
        let mut tokens = vec![first; n];
        let started = Instant::now();
        for _ in 0..decode_tokens {
            let logits = model.decode_step(&mut states, &tokens)?;
            tokens = logits
                .iter()
                .map(|l| rdbench_llm::sampling::argmax(l))
                .collect();
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "decode n={n}: {} tokens in {:.3} s = {:.1} tokens/s aggregate ({:.1} per sequence)",
            n * decode_tokens,
            s,
            (n * decode_tokens) as f64 / s,
            decode_tokens as f64 / s
        );
    }
    Ok(())
}
