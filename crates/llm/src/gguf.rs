//! A llama-architecture GGUF model (SmolLM2, Llama, ...) on candle's CPU quantized kernels:
//! weights run by rdbench's own forward ([`crate::llama`], whose KV caches batch the `n`
//! choices of a request into one decode), the tokenizer built from the GGUF's own vocabulary
//! and merges, the chat template and end tokens from its metadata. Q4_1 tensors are
//! run as stored, by rdbench's own kernels ([`crate::kernels`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::quantized::{gguf_file, QTensor};
use candle_core::Device;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::Tokenizer;

use crate::llama::{
    KvCache, Llama, LlamaConfig, LlamaLayer, Projections, QuantMatrix, MAX_CONTEXT,
};
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
    model: Llama,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_tokens: Vec<u32>,
    context_length: usize,
    name: String,
    add_bos: Option<u32>,
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
        let context_length = meta
            .u32("llama.context_length")
            .map_or(MAX_CONTEXT, |c| (c as usize).min(MAX_CONTEXT));
        let model = load_weights(&content, &mut file, &meta, context_length)?;
        Ok(GgufLlama {
            model,
            tokenizer,
            template,
            stop_tokens,
            context_length,
            name,
            add_bos,
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
}

impl ChatModel for GgufLlama {
    type State = KvCache;

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

    fn prefill(&mut self, tokens: &[u32]) -> Result<(KvCache, Vec<f32>), LlmError> {
        let mut caches = [self.model.new_cache()];
        let logits = self.model.forward(&mut caches, &[tokens])?;
        let [cache] = caches;
        Ok((cache, logits.into_iter().next().expect("one sequence")))
    }

    fn decode_step(
        &mut self,
        states: &mut [KvCache],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let tokens: Vec<&[u32]> = tokens.iter().map(std::slice::from_ref).collect();
        self.model.forward(states, &tokens)
    }
}

/// The model's weights, shapes from the `llama.*` metadata.
fn load_weights<R: std::io::Read + std::io::Seek>(
    content: &gguf_file::Content,
    file: &mut R,
    meta: &Metadata,
    context: usize,
) -> Result<Llama, LlmError> {
    let bad = |message: String| LlmError::BadModel {
        path: meta.path.clone(),
        message,
    };
    let count = |key: &str| meta.u32(key).map(|v| v as usize);
    let dim = count("llama.embedding_length")?;
    let heads = count("llama.attention.head_count")?;
    let head_dim = match count("llama.rope.dimension_count") {
        Ok(d) => d,
        Err(_) if heads > 0 => dim / heads,
        Err(e) => return Err(e),
    };
    let config = LlamaConfig {
        dim,
        layers: count("llama.block_count")?,
        heads,
        kv_heads: count("llama.attention.head_count_kv").unwrap_or(heads),
        head_dim,
        rms_eps: meta.f32("llama.attention.layer_norm_rms_epsilon")?,
        rope_base: meta.f32("llama.rope.freq_base").unwrap_or(10_000.0),
        context,
    };
    if head_dim * heads != dim {
        return Err(bad(format!(
            "rotary dimension {head_dim} x {heads} heads is not the width {dim}: not served"
        )));
    }
    let mut tensor = |name: &str| -> Result<QTensor, LlmError> {
        content
            .tensor(file, name, &Device::Cpu)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))
    };
    let mut layers = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let mut parts = |names: &[&str]| -> Result<Vec<QTensor>, LlmError> {
            names
                .iter()
                .map(|part| tensor(&format!("blk.{i}.{part}.weight")))
                .collect()
        };
        let projections = |tensors: Vec<QTensor>, what: &str| {
            Projections::new(&tensors).map_err(|e| bad(format!("blk.{i}'s {what}: {e}")))
        };
        let qkv = projections(parts(&["attn_q", "attn_k", "attn_v"])?, "attention")?;
        let gate_up = projections(parts(&["ffn_gate", "ffn_up"])?, "feed-forward")?;
        let [wo, down] = [parts(&["attn_output"])?, parts(&["ffn_down"])?]
            .map(|t| QuantMatrix::new(&t[0]).map_err(|e| bad(format!("blk.{i}: {e}"))));
        layers.push(LlamaLayer {
            qkv,
            wo: wo?,
            gate_up,
            down: down?,
            attn_norm: Vec::new(),
            ffn_norm: Vec::new(),
        });
    }
    let mut matrix = |name: &str| {
        QuantMatrix::new(&tensor(name)?).map_err(|e| bad(format!("tensor `{name}`: {e}")))
    };
    let embeddings = matrix("token_embd.weight")?;
    let output = if content.tensor_infos.contains_key("output.weight") {
        Some(matrix("output.weight")?)
    } else {
        None
    };
    let mut vector = |name: &str| -> Result<Vec<f32>, LlmError> {
        let t = tensor(name)?;
        t.dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))
    };
    for (i, layer) in layers.iter_mut().enumerate() {
        layer.attn_norm = vector(&format!("blk.{i}.attn_norm.weight"))?;
        layer.ffn_norm = vector(&format!("blk.{i}.ffn_norm.weight"))?;
    }
    let model = Llama {
        config,
        embeddings,
        layers,
        norm: vector("output_norm.weight")?,
        output,
    };
    model.validate().map_err(bad)?;
    Ok(model)
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

    fn f32(&self, key: &str) -> Result<f32, LlmError> {
        self.get(key)?
            .to_f32()
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

#[cfg(test)]
mod tests {
    //! The forward of [`crate::llama`] against candle-transformers' `quantized_llama` on small
    //! random models written as GGUF files, and batched decoding against one sequence at a time.

    use std::io::Cursor;

    use candle_core::quantized::gguf_file::Value;
    use candle_core::quantized::GgmlDType;
    use candle_core::Tensor;
    use candle_transformers::models::quantized_llama::ModelWeights;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::candle_reference::candle_logits;

    /// A random llama (GQA: 4 query heads over 2 key/value heads) as an in-memory GGUF, its
    /// matrices in `dtype`; `tied`: no `output.weight`.
    fn random_gguf(dtype: GgmlDType, tied: bool, seed: u64) -> Cursor<Vec<u8>> {
        random_gguf_with_values(dtype, dtype, tied, seed)
    }

    /// As [`random_gguf`], `attn_v` in `values` (GGUFs often keep it in another quantization,
    /// which stops it being stacked with the queries and keys).
    fn random_gguf_with_values(
        dtype: GgmlDType,
        values: GgmlDType,
        tied: bool,
        seed: u64,
    ) -> Cursor<Vec<u8>> {
        let (dim, hidden, vocab, layers) = (64usize, 128usize, 96usize, 2usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut random = |shape: &[usize], scale: f32| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
        };
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        let mut add = |name: String, t: Tensor, dtype: GgmlDType| {
            tensors.push((name, QTensor::quantize(&t, dtype).unwrap()));
        };
        add(
            "token_embd.weight".into(),
            random(&[vocab, dim], 1.0),
            dtype,
        );
        if !tied {
            add("output.weight".into(), random(&[vocab, dim], 0.3), dtype);
        }
        add(
            "output_norm.weight".into(),
            random(&[dim], 0.5).affine(1.0, 1.0).unwrap(),
            GgmlDType::F32,
        );
        for i in 0..layers {
            for (part, rows, cols) in [
                ("attn_q", dim, dim),
                ("attn_k", dim / 2, dim),
                ("attn_v", dim / 2, dim),
                ("attn_output", dim, dim),
                ("ffn_gate", hidden, dim),
                ("ffn_up", hidden, dim),
                ("ffn_down", dim, hidden),
            ] {
                let dtype = if part == "attn_v" { values } else { dtype };
                add(
                    format!("blk.{i}.{part}.weight"),
                    random(&[rows, cols], 0.3),
                    dtype,
                );
            }
            for norm in ["attn_norm", "ffn_norm"] {
                let weight = random(&[dim], 0.5).affine(1.0, 1.0).unwrap();
                add(format!("blk.{i}.{norm}.weight"), weight, GgmlDType::F32);
            }
        }
        let metadata = [
            ("general.architecture", Value::String("llama".into())),
            ("llama.embedding_length", Value::U32(dim as u32)),
            ("llama.block_count", Value::U32(layers as u32)),
            ("llama.attention.head_count", Value::U32(4)),
            ("llama.attention.head_count_kv", Value::U32(2)),
            ("llama.rope.dimension_count", Value::U32(16)),
            ("llama.rope.freq_base", Value::F32(100_000.0)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ];
        let metadata: Vec<_> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<_> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &metadata, &tensors).unwrap();
        out.set_position(0);
        out
    }

    fn load_both(mut file: Cursor<Vec<u8>>) -> (Llama, ModelWeights) {
        let content = gguf_file::Content::read(&mut file).unwrap();
        let meta = Metadata {
            content: &content,
            path: "random.gguf".into(),
        };
        let ours = load_weights(&content, &mut file, &meta, 64).unwrap();
        file.set_position(0);
        let content = gguf_file::Content::read(&mut file).unwrap();
        let candle = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
        (ours, candle)
    }

    fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
        assert_eq!(ours.len(), theirs.len());
        let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = ours
            .iter()
            .zip(theirs)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 2e-4 * scale.max(1.0),
            "{what}: largest difference {worst} on logits up to {scale}"
        );
    }

    #[test]
    fn the_forward_matches_candles_quantized_llama() {
        for (dtype, values, tied) in [
            (GgmlDType::Q8_0, GgmlDType::Q8_0, false),
            (GgmlDType::Q8_0, GgmlDType::Q8_0, true),
            (GgmlDType::F32, GgmlDType::F32, false),
            // Queries and keys stacked, values apart.
            (GgmlDType::Q8_0, GgmlDType::F32, false),
        ] {
            let (ours, mut candle) = load_both(random_gguf_with_values(dtype, values, tied, 7));
            let stacked = matches!(
                ours.layers[0].qkv,
                crate::llama::Projections::Stacked { .. }
            );
            assert_eq!(stacked, dtype == values);
            let prompt = [5u32, 17, 3, 88, 41, 0, 60];
            let mut caches = [ours.new_cache()];
            let logits = ours.forward(&mut caches, &[&prompt]).unwrap();
            let what = format!("{dtype:?} tied={tied} prefill");
            assert_close(&logits[0], &candle_logits(&mut candle, &prompt, 0), &what);
            for (step, token) in [9u32, 95, 1].into_iter().enumerate() {
                let logits = ours.forward(&mut caches, &[&[token]]).unwrap();
                let theirs = candle_logits(&mut candle, &[token], prompt.len() + step);
                assert_close(
                    &logits[0],
                    &theirs,
                    &format!("{dtype:?} tied={tied} step {step}"),
                );
            }
            assert_eq!(caches[0].len(), prompt.len() + 3);
        }
    }

    #[test]
    fn a_batched_decode_computes_what_one_sequence_at_a_time_does() {
        // Agreement to rounding is all a batch can promise; then both runs must be fed the
        // same tokens, which the fixed ones below are.
        let (ours, _) = load_both(random_gguf(GgmlDType::Q8_0, false, 11));
        let mut prompt_cache = [ours.new_cache()];
        ours.forward(&mut prompt_cache, &[&[1, 2, 3, 4]]).unwrap();
        // Three choices from one prompt plus one sequence of another length, in one batch.
        let mut other = [ours.new_cache()];
        ours.forward(&mut other, &[&[50, 51]]).unwrap();
        let mut batch = vec![
            prompt_cache[0].clone(),
            prompt_cache[0].clone(),
            prompt_cache[0].clone(),
            other[0].clone(),
        ];
        let mut alone = batch.clone();
        for step in 0..4u32 {
            let tokens = [7 + step, 30, 90 - step, 12];
            let rows: Vec<&[u32]> = tokens.iter().map(std::slice::from_ref).collect();
            let batched = ours.forward(&mut batch, &rows).unwrap();
            for (i, cache) in alone.iter_mut().enumerate() {
                let one = ours
                    .forward(std::slice::from_mut(cache), &[&[tokens[i]]])
                    .unwrap();
                // One row runs the decode kernel (four partial sums per row), several the
                // batched one (one sum): the same products, added in another order.
                assert_close(&batched[i], &one[0], &format!("sequence {i}, step {step}"));
            }
        }
        assert_eq!(batch[0].len(), 8);
        assert_eq!(batch[3].len(), 6);
    }

    #[test]
    fn q4_1_weights_run_as_stored() {
        // The products themselves are checked against candle's in `kernels`; end to end, a
        // random model amplifies the one rounding where ggml and candle differ (the activation
        // sum's scale), so this checks the greedy choice, and the real model's test
        // (tests/smollm2.rs) the logits.
        let (ours, mut candle) = load_both(random_gguf(GgmlDType::Q4_1, false, 3));
        let prompt = [4u32, 8, 15, 16, 23, 42];
        let logits = ours.forward(&mut [ours.new_cache()], &[&prompt]).unwrap();
        let theirs = candle_logits(&mut candle, &prompt, 0);
        assert_eq!(
            crate::sampling::argmax(&logits[0]),
            crate::sampling::argmax(&theirs)
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let (ours, _) = load_both(random_gguf(GgmlDType::Q8_0, false, 5));
        let err = ours.forward(&mut [ours.new_cache()], &[&[96]]).unwrap_err();
        assert!(matches!(err, LlmError::Model(_)), "{err}");
        let long = vec![1u32; 65];
        let err = ours.forward(&mut [ours.new_cache()], &[&long]).unwrap_err();
        assert!(matches!(
            err,
            LlmError::PromptTooLong {
                prompt: 65,
                context: 64
            }
        ));
    }
}
