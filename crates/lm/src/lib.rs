//! # rdbench-lm
//!
//! Shared language-model code for rdbench's loss-based tasks, on candle (CPU in the default
//! build; no download anywhere):
//!
//! - [`corpus`]: a hidden-Markov-model corpus, deterministic from seeds, whose exact
//!   Bayes-optimal next-token loss (the **floor**) is computed by the forward algorithm.
//! - [`model`]: a small GPT-style transformer (pre-norm, learned positions, tied head).
//! - [`train`]: token sets, an AdamW training loop, mean next-token loss.
//! - [`io`]: safetensors save and a load that checks size, names, dtypes, shapes, finiteness.

pub mod corpus;
pub mod io;
pub mod model;
pub mod train;

pub use corpus::{Hmm, HmmConfig};
pub use io::{load_model, save_model, LoadError, LoadErrorKind};
pub use model::{Gpt, GptConfig};
pub use train::{eval_loss, train, train_model, TokenSet, TrainConfig, TrainReport};

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
