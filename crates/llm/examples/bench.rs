//! Speed of a GGUF model under rdbench-llm, the routine of `scripts/bench-serve-llm.sh` (which
//! runs llama.cpp beside it on the same prompt tokens): prefill tokens/s on a chat-templated
//! prompt of about 120 tokens, then greedy decode tokens/s for one sequence and, in aggregate,
//! for `n` sequences sharing that prefill (as the server does for a request's `n` choices).
//! Every repetition's time is printed as one JSON line (the raw samples); the script reduces
//! them. Build it as the server should be built:
//!
//! ```text
//! RUSTFLAGS="-C target-cpu=x86-64-v3" cargo run --release -p rdbench-llm --example bench -- \
//!     GGUF THREADS DECODE_TOKENS REPS PROMPT_TOKENS_OUT
//! ```

use std::time::Instant;

use rdbench_llm::sampling::argmax;
use rdbench_llm::{ChatMessage, ChatModel, GgufLlama};

/// The prompt both engines run (about 120 tokens once templated).
const PROMPT: &str = "Explain in a few sentences why the sky is blue, why sunsets are red, and \
    how the scattering of light by the molecules of the atmosphere depends on its wavelength. \
    Mention Rayleigh, give one everyday example, and keep the answer short and simple for a \
    curious child who is ten years old and likes to ask questions about the world. Use two \
    short paragraphs without lists, and end with one question for the child to think about.";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, threads, decode_tokens, reps, tokens_out] = &args[..] else {
        return Err("usage: bench GGUF THREADS DECODE_TOKENS REPS PROMPT_TOKENS_OUT".into());
    };
    let threads: usize = threads.parse()?;
    let decode_tokens: usize = decode_tokens.parse()?;
    let reps: usize = reps.parse()?;
    rdbench_llm::set_threads(threads);
    let mut model = GgufLlama::load(path.as_ref())?;
    let avx = cfg!(all(target_feature = "avx2", target_feature = "fma"));
    let prompt = model.prompt_tokens(&[ChatMessage {
        role: "user".into(),
        content: PROMPT.into(),
    }])?;
    let listed: Vec<String> = prompt.iter().map(u32::to_string).collect();
    std::fs::write(tokens_out, listed.join(" "))?;
    println!(
        r#"{{"engine":"rdbench","threads":{threads},"avx2_fma":{avx},"prompt_tokens":{}}}"#,
        prompt.len()
    );
    // Warm-up: first touch of the weights, the thread pool's start.
    let (_, _) = model.prefill(&prompt[..8])?;
    let mut state = None;
    for rep in 0..reps {
        let started = Instant::now();
        state = Some(model.prefill(&prompt)?);
        let seconds = started.elapsed().as_secs_f64();
        println!(
            r#"{{"phase":"prefill","rep":{rep},"tokens":{},"seconds":{seconds}}}"#,
            prompt.len()
        );
    }
    let (state, logits) = state.ok_or("REPS must be at least 1")?;
    for n in [1, 8] {
        for rep in 0..reps {
            let mut states = vec![state.clone(); n];
            let mut tokens = vec![argmax(&logits); n];
            let started = Instant::now();
            for _ in 0..decode_tokens {
                let logits = model.decode_step(&mut states, &tokens)?;
                tokens = logits.iter().map(|l| argmax(l)).collect();
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                r#"{{"phase":"decode","n":{n},"rep":{rep},"tokens":{},"seconds":{seconds}}}"#,
                n * decode_tokens
            );
        }
    }
    Ok(())
}
