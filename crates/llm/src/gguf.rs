//! A llama-architecture GGUF model (SmolLM2, Llama, ...) on candle's CPU quantized kernels:
//! weights through `candle_transformers::models::quantized_llama`, the tokenizer built from the
//! GGUF's own vocabulary and merges, the chat template and end tokens from its metadata. Q4_1
//! tensors are re-quantized to Q8_0 as they load (`requantize_q4_1` says why).
//!
//! **No batched decode.** `quantized_llama::ModelWeights` keeps its KV cache private, one batch
//! row per model value, and its decode concatenates the new keys to that cache, so a prompt
//! prefilled once (batch 1) cannot then be decoded as a batch of `n`. What this does instead:
//! the prompt runs once, the model value (whose weights are shared, reference-counted) is
//! cloned with its cache for each choice, and each step decodes the choices one after the
//! other. `n` choices thus cost one prefill and `n` single-sequence decodes per token.

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::Tokenizer;

use crate::template::ChatTemplate;
use crate::{ChatMessage, ChatModel, LlmError};

/// Texts of end-of-turn tokens, counted as stop tokens when the vocabulary has them (llama.cpp
/// does the same: a chat model ends its turn with one of these, not always with its EOS).
const END_OF_TURN: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// A loaded GGUF chat model.
pub struct GgufLlama {
    /// The weights with an empty KV cache; each request's sequences start from a clone.
    weights: ModelWeights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_tokens: Vec<u32>,
    context_length: usize,
    name: String,
    add_bos: Option<u32>,
    device: Device,
}

/// One sequence: the model with its own KV cache, and how many tokens that cache holds.
#[derive(Clone)]
pub struct LlamaState {
    weights: ModelWeights,
    position: usize,
}

impl GgufLlama {
    /// Loads `path` on the CPU.
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        let bad = |message: String| LlmError::BadModel {
            path: path.to_owned(),
            message,
        };
        let mut file = File::open(path).map_err(|source| LlmError::Io {
            path: path.to_owned(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| bad(format!("not a readable GGUF file: {e}")))?;
        let meta = Metadata {
            content: &content,
            path: path.to_owned(),
        };
        let arch = meta.string("general.architecture")?;
        if arch != "llama" {
            return Err(bad(format!(
                "architecture `{arch}`; only `llama` models are served"
            )));
        }
        let name = meta
            .string("general.name")
            .unwrap_or_else(|_| file_stem(path));
        let tokenizer = tokenizer(&content, &meta)?;
        let token_text = |id: u32| tokenizer.id_to_token(id).unwrap_or_default();
        let eos = meta.u32("tokenizer.ggml.eos_token_id")?;
        let bos = meta.u32("tokenizer.ggml.bos_token_id").ok();
        let template = ChatTemplate::new(
            &meta.string("tokenizer.chat_template")?,
            &bos.map(token_text).unwrap_or_default(),
            &token_text(eos),
        )?;
        let mut stop_tokens = vec![eos];
        stop_tokens.extend(
            END_OF_TURN
                .iter()
                .filter_map(|t| tokenizer.token_to_id(t))
                .filter(|id| *id != eos),
        );
        let add_bos = match content.metadata.get("tokenizer.ggml.add_bos_token") {
            Some(v) if v.to_bool().unwrap_or(false) => bos,
            _ => None,
        };
        // quantized_llama's rotary tables end at MAX_SEQ_LEN whatever the model was trained on.
        let context_length = meta
            .u32("llama.context_length")
            .map_or(MAX_SEQ_LEN, |c| (c as usize).min(MAX_SEQ_LEN));
        let device = Device::Cpu;
        let (content, mut weights_file) = requantize_q4_1(content, &mut file, &device)
            .map_err(|e| bad(format!("re-quantizing Q4_1 weights to Q8_0: {e}")))?;
        let weights = ModelWeights::from_gguf(content, &mut weights_file, &device)
            .map_err(|e| bad(format!("loading the weights: {e}")))?;
        Ok(GgufLlama {
            weights,
            tokenizer,
            template,
            stop_tokens,
            context_length,
            name,
            add_bos,
            device,
        })
    }

    /// The model's own name (`general.name`, else the file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens of `text`, special tokens in it recognised as such (the rendered template holds
    /// `<|im_start|>` and the like).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    fn forward(
        &self,
        weights: &mut ModelWeights,
        tokens: &[u32],
        position: usize,
    ) -> Result<Vec<f32>, LlmError> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = weights.forward(&input, position)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?)
    }
}

impl ChatModel for GgufLlama {
    type State = LlamaState;

    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        let text = self.template.render(messages)?;
        let mut tokens: Vec<u32> = self.add_bos.into_iter().collect();
        tokens.extend(self.encode(&text)?);
        Ok(tokens)
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, LlmError> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|e| LlmError::Tokenizer(e.to_string()))
    }

    fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    fn context_length(&self) -> usize {
        self.context_length
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<(LlamaState, Vec<f32>), LlmError> {
        let mut weights = self.weights.clone();
        let logits = self.forward(&mut weights, tokens, 0)?;
        let state = LlamaState {
            weights,
            position: tokens.len(),
        };
        Ok((state, logits))
    }

    fn decode_step(
        &mut self,
        states: &mut [LlamaState],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        // One sequence at a time: see the module's docs for why this cannot batch.
        states
            .iter_mut()
            .zip(tokens)
            .map(|(state, &token)| {
                let logits = self.forward(&mut state.weights, &[token], state.position)?;
                state.position += 1;
                Ok(logits)
            })
            .collect()
    }
}

/// The model's tensors with every Q4_1 one re-quantized to Q8_0, as an in-memory GGUF.
///
/// Why: candle 0.11's Q4_1 dot product is scalar code on every CPU, while Q8_0's has an AVX2
/// kernel; SmolLM2's PyPI GGUF is Q4_1. Q8_0 holds each Q4_1 weight to within 1/254 of its
/// block's largest magnitude (a sixteenth of a Q4_1 step), so the model computes nearly the
/// same function, not bit for bit what llama.cpp computes from the Q4_1 file.
fn requantize_q4_1(
    content: gguf_file::Content,
    file: &mut File,
    device: &Device,
) -> candle_core::Result<(gguf_file::Content, Cursor<Vec<u8>>)> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(file, name, device)?;
        let tensor = if tensor.dtype() == GgmlDType::Q4_1 {
            QTensor::quantize(&tensor.dequantize(device)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<_> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<_> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors)?;
    out.set_position(0);
    let content = gguf_file::Content::read(&mut out)?;
    Ok((content, out))
}

/// The GGUF's tokenizer: byte-level BPE from `tokenizer.ggml.tokens` and `.merges`, built by
/// candle's `TokenizerFromGguf` (on the `tokenizers` crate), with the pre-tokenizer Hugging
/// Face uses for the `tokenizer.ggml.pre` names candle does not know. Candle's fallback for
/// those is GPT-2's byte level *with* a prefix space, which would turn each text between
/// special tokens into " text" (`<|im_start|>user` would become `<|im_start|> user`).
fn tokenizer(content: &gguf_file::Content, meta: &Metadata) -> Result<Tokenizer, LlmError> {
    let mut tokenizer = Tokenizer::from_gguf(content).map_err(|e| LlmError::BadModel {
        path: meta.path.clone(),
        message: format!("building the tokenizer: {e}"),
    })?;
    let pre = meta.string("tokenizer.ggml.pre").unwrap_or_default();
    // HF's tokenizer.json of these models: a byte-level split with GPT-2's regex and no
    // prefix space; SmolLM's (`smollm`) splits digits one by one first.
    let byte_level = ByteLevel::new(false, true, true);
    match pre.as_str() {
        "smollm" => {
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        }
        "" | "gpt2" | "default" => {
            tokenizer.with_pre_tokenizer(Some(byte_level));
        }
        _ => {}
    }
    Ok(tokenizer)
}

/// Typed reads of the GGUF's metadata, errors naming the file and the key.
struct Metadata<'a> {
    content: &'a gguf_file::Content,
    path: PathBuf,
}

impl Metadata<'_> {
    fn get(&self, key: &str) -> Result<&gguf_file::Value, LlmError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| self.bad(key, "missing"))
    }

    fn string(&self, key: &str) -> Result<String, LlmError> {
        self.get(key)?
            .to_string()
            .cloned()
            .map_err(|e| self.bad(key, &e.to_string()))
    }

    fn u32(&self, key: &str) -> Result<u32, LlmError> {
        self.get(key)?
            .to_u32()
            .map_err(|e| self.bad(key, &e.to_string()))
    }

    fn bad(&self, key: &str, what: &str) -> LlmError {
        LlmError::BadModel {
            path: self.path.clone(),
            message: format!("metadata `{key}`: {what}"),
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}
