//! The crate's errors. Loading a model and running it can fail; each variant keeps its cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The GGUF file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The GGUF file is not a model this crate can run (metadata, tensors).
    #[error("{}: {message}", path.display())]
    BadModel { path: PathBuf, message: String },
    /// Candle failed while running the model.
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// The model was asked something it cannot compute (a token outside its vocabulary).
    #[error("model: {0}")]
    Model(String),
    /// Tokenizing or detokenizing failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not render the conversation.
    #[error("chat template: {0}")]
    Template(#[from] minijinja::Error),
    /// The prompt does not leave room in the context window.
    #[error("the prompt has {prompt} tokens; the model's context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
    /// Listening or serving failed.
    #[error("{what}: {source}")]
    Serve {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
