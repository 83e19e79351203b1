//! What `full`'s scorer spends on generation: a GPT-2-small-sized policy (random weights: the
//! cost does not depend on them) answering prompts greedily, 64 sequences at a time, exactly
//! as scoring runs it. Prints one JSON line per repetition.
//!
//! ```text
//! cargo run --release -p rdbench-task-finetune-qa --example full_generation -- \
//!     [PROMPTS] [PROMPT_TOKENS] [NEW_TOKENS] [THREADS] [REPS]
//! ```

use rdbench_lm::{Gpt, GptConfig};
use rdbench_task_finetune_qa::policy::{self, GenerationConfig, Stops};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.next().map_or(Ok(default), |s| s.parse())?)
    };
    let (prompts, prompt_tokens, new_tokens, threads, reps) =
        (next(64)?, next(40)?, next(60)?, next(2)?, next(3)?);
    let cfg = GptConfig {
        vocab: 50257,
        ctx: 1024,
        d_model: 768,
        n_layer: 12,
        n_head: 12,
        d_ff: 3072,
        ln_eps: 1e-5,
    };
    let gpt = Gpt::new(cfg.clone(), 1)?;
    let engine = policy::engine(&gpt)?;
    drop(gpt);
    let inputs: Vec<Vec<u32>> = (0..prompts)
        .map(|p| {
            (0..prompt_tokens)
                .map(|i| ((p * 7919 + i * 104_729) % 50_000) as u32)
                .collect()
        })
        .collect();
    // No end token is ever sampled: every response runs to the limit, the worst case.
    let stops = Stops {
        eos: u32::MAX,
        never: &[],
    };
    let config = GenerationConfig::greedy(new_tokens);
    for rep in 0..reps {
        let started = std::time::Instant::now();
        let out = rdbench_lm::with_threads(Some(threads), || {
            policy::generate_tokens(&engine, &inputs, stops, &config, 0)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let generated: usize = out.iter().map(|g| g.words.len()).sum();
        println!(
            "{}",
            serde_json::json!({
                "engine": "rdbench", "rep": rep, "threads": threads, "prompts": prompts,
                "prompt_tokens": prompt_tokens, "new_tokens": generated, "seconds": seconds,
                "generated_tokens_per_s": generated as f64 / seconds,
            })
        );
    }
    Ok(())
}
