//! The narrow interface the server needs from a chat model: render and tokenize a
//! conversation, run the prompt once (prefill), then step several sequences forward together
//! (decode), each step returning the next-token logits of every sequence.
//!
//! A model's per-sequence state (its KV cache and position) is [`ChatModel::State`]; it is
//! `Clone` so that `n` choices of one request share one prefill: the prompt runs once and its
//! state is cloned for each choice.

use serde::{Deserialize, Serialize};

use crate::LlmError;

/// One message of a conversation, as the OpenAI API and HF chat templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A chat model the server can run.
pub trait ChatModel: Send + 'static {
    /// One sequence's state after the prompt (KV cache, position).
    type State: Clone + Send;

    /// The conversation as prompt tokens, the chat template's generation prompt appended.
    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError>;

    /// Text of generated tokens (special tokens dropped).
    fn detokenize(&self, tokens: &[u32]) -> Result<String, LlmError>;

    /// Tokens that end a completion (end of sequence, end of turn).
    fn stop_tokens(&self) -> &[u32];

    /// Most tokens a sequence may hold, prompt and completion together.
    fn context_length(&self) -> usize;

    /// Runs the prompt; returns the sequence's state and the logits of the next token.
    fn prefill(&mut self, tokens: &[u32]) -> Result<(Self::State, Vec<f32>), LlmError>;

    /// Feeds `tokens[i]` to `states[i]` for every i; returns each sequence's next logits.
    fn decode_step(
        &mut self,
        states: &mut [Self::State],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, LlmError>;
}
