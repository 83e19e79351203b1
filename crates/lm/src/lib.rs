//! # rdbench-lm
//!
//! Shared language-model code for rdbench's loss-based tasks, on candle (CPU in the default
//! build; no download anywhere):
//!
//! - [`corpus`]: a hidden-Markov-model corpus, deterministic from seeds, whose exact
//!   Bayes-optimal next-token loss (the **floor**) is computed by the forward algorithm.
//! - [`model`]: a small GPT-style transformer (pre-norm, learned positions, tied head).
//! - [`ops`]: fused CPU ops with their own backward passes (LayerNorm, GELU, causal softmax,
//!   cross-entropy).
//! - [`train`]: token sets, an AdamW training loop, mean next-token loss.
//! - [`io`]: safetensors save and a load that checks size, names, dtypes, shapes, finiteness.
//! - [`hf_gpt2`]: GPT-2 checkpoints in Hugging Face's layout read as (and written from) this
//!   GPT, which is GPT-2's architecture.
//! - [`infer`]: a GPT run incrementally (KV cache, several sequences per step) in plain `f32`,
//!   for tasks that sample their models.

mod attention;
pub mod backprop;
pub mod corpus;
pub mod hf_gpt2;
pub mod infer;
pub mod io;
mod kernels;
pub mod model;
pub mod ops;
pub mod train;

pub use backprop::{Breakdown, GptEvaluator, GptTrainer, Part};
pub use corpus::{Hmm, HmmConfig};
pub use io::{load_checked, load_model, save_model, save_tensors, LoadError, LoadErrorKind};
pub use model::{Gpt, GptConfig};
pub use train::{eval_loss, train, train_model, TokenSet, TrainConfig, TrainReport, Trainer};

/// Version of what training computes. It changes whenever the same configuration and seeds
/// would train different weights (a fix, or different arithmetic), and everything that stores
/// trained results keys or labels them with it (fix-embedding's model cache, scaling-law's
/// measured sweeps), so nothing trained by an older trainer is reused unnoticed.
///
/// 1: candle's autograd, in which attention probabilities had no gradient (candle's
/// `softmax_last_dim` has no backward pass), so queries and keys never trained. 2: attention
/// gets its gradient; [`train_model`] runs the hand-written pass ([`backprop`]).
pub const TRAINING_VERSION: u32 = 2;

/// Runs `f` with candle's CPU work limited to `threads` threads (`None`: leave candle's default,
/// one per physical core, or whatever `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` say).
///
/// Small models gain nothing from several threads, and on a busy machine candle's spinning worker
/// threads make them several times slower, so the small profiles run on one thread. candle reads
/// its thread count from the environment (`RAYON_NUM_THREADS` for matrix products on every call,
/// `CANDLE_NUM_THREADS` once for its elementwise pool), so this sets those variables for the
/// duration of `f` and restores them after. An explicit `RAYON_NUM_THREADS` from the user wins.
pub fn with_threads<R>(threads: Option<usize>, f: impl FnOnce() -> R) -> R {
    const VARS: [&str; 2] = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"];
    let Some(n) = threads else { return f() };
    if std::env::var_os(VARS[0]).is_some() {
        return f();
    }
    let saved: Vec<_> = VARS.iter().map(std::env::var_os).collect();
    for v in VARS {
        std::env::set_var(v, n.to_string());
    }
    let out = f();
    for (v, old) in VARS.iter().zip(saved) {
        match old {
            Some(x) => std::env::set_var(v, x),
            None => std::env::remove_var(v),
        }
    }
    out
}

/// Tells glibc's allocator to keep freed memory instead of handing it back to the kernel.
///
/// A CPU training step allocates and frees tensors of tens of megabytes; with glibc's defaults
/// each one is a fresh `mmap` whose pages are faulted in and zeroed again, which was a quarter of
/// a step of the `full` model (measured: 2.25 s -> 1.7 s per step). Called once, by the training
/// and evaluation loops; a no-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Largest threshold glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit); larger blocks are
            // still mmapped. Setting it also turns off glibc's dynamic threshold.
            const MMAP_THRESHOLD: libc::c_int = 32 << 20;
            // SAFETY: mallopt only adjusts allocator parameters; both are valid values.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
            }
        });
    }
}

/// Errors of this crate (bad files while loading models are [`LoadError`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("{0}")]
    Config(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

pub type Result<T> = std::result::Result<T, LmError>;
