//! # rdbench-code-model: the tiny code model of `codecontests-scaffold`
//!
//! A stand-in for the "capable model" of RE-Bench's Rust-codecontests scaffolding task: a small
//! GPT (rdbench-lm's) that rdbench trains during preparation, from the installation's seed,
//! on chat documents made from the same problem generator as the task's problems (visible
//! combos only), and that `rdbench serve-llm --code-model DIR` serves through the
//! OpenAI-compatible API. It is a **weak sampler**: on held-out problems one sample is
//! seldom a working program, while several samples filtered by the public tests often contain
//! one. What it measures and what it does not: `docs/code-model.md`.
//!
//! - [`tokenizer`]: a word-level vocabulary built from the generator's own text.
//! - [`corpus`]: the chat documents and their mixture of right and wrong, bare and fenced answers.
//! - [`infer`]: the GPT run incrementally with a KV cache in plain `f32`.
//! - this module: [`train`], the model folder ([`CodeModel::save`], [`CodeModel::load`],
//!   [`prepare_cached`]) and the [`ChatModel`] implementation with its chat template.

pub mod corpus;
/// The incremental GPT runner, shared with other tasks that sample rdbench-lm models.
pub use rdbench_lm::infer;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rdbench_llm::{ChatMessage, ChatModel, LlmError};
use rdbench_lm::{GptConfig, TokenSet, TrainConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::corpus::{chat_tokens, Mixture};
use crate::infer::{Engine, KvState};
use crate::tokenizer::{Vocab, ASSISTANT, END, SYSTEM, USER};

/// The model name `serve-llm --code-model` serves under.
pub const MODEL_NAME: &str = "rdbench-code-tiny";

/// Version of the model folder's format and of what training computes here (the corpus, the
/// tokenizer, the schedule): [`prepare_cached`] keys its folder with it.
pub const FORMAT_VERSION: u32 = 3;

const WEIGHTS_FILE: &str = "model.safetensors";
const META_FILE: &str = "model.json";
/// Largest `model.json` read (the vocabulary is most of it).
const META_MAX_BYTES: u64 = 4 << 20;
/// Largest model loaded, parameters.
const MAX_PARAMS: usize = 64 << 20;

/// This crate's errors.
#[derive(Debug, thiserror::Error)]
pub enum CodeModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model folder that is not a valid model of this crate.
    #[error("{}: {message}", path.display())]
    BadModel { path: PathBuf, message: String },
    /// Training failed.
    #[error("training: {0}")]
    Train(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CodeModelError + '_ {
    move |source| CodeModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What training does: the model's shape, the corpus and the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub ctx: usize,
    pub d_model: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_ff: usize,
    pub documents: usize,
    pub mixture: Mixture,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    /// Threads of the training kernels.
    pub threads: usize,
    /// Training runs at most: a run whose final loss is above [`CONVERGED_LOSS`] is followed by
    /// one from another seed derived from the first, and the lowest loss is kept.
    pub attempts: u32,
}

impl Default for Settings {
    /// The profile the task trains (docs/code-model.md has its measurements).
    fn default() -> Settings {
        Settings {
            ctx: 192,
            d_model: 64,
            n_layer: 2,
            n_head: 4,
            d_ff: 256,
            documents: 8000,
            mixture: Mixture {
                p_reference: 0.5,
                p_bare: 0.7,
                p_outro: 0.4,
                p_system: 0.3,
            },
            steps: 900,
            batch_size: 16,
            lr: 6e-3,
            warmup_steps: 20,
            threads: 1,
            attempts: 3,
        }
    }
}

impl Settings {
    /// A deliberately small, fast profile for tests (it learns little).
    pub fn tiny() -> Settings {
        Settings {
            d_model: 32,
            n_layer: 1,
            n_head: 2,
            d_ff: 64,
            documents: 200,
            steps: 20,
            batch_size: 4,
            attempts: 1,
            ..Settings::default()
        }
    }

    fn gpt(&self, vocab: usize) -> GptConfig {
        GptConfig {
            vocab,
            ctx: self.ctx,
            d_model: self.d_model,
            n_layer: self.n_layer,
            n_head: self.n_head,
            d_ff: self.d_ff,
            ln_eps: 1e-5,
        }
    }
}

/// What `model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub format_version: u32,
    pub name: String,
    pub gpt: GptConfig,
    pub vocab: Vec<String>,
    pub settings: Settings,
    /// Seconds training took, and its final training loss (nats per token).
    pub train_seconds: f64,
    pub final_loss: f64,
    pub training_tokens: usize,
    /// Training runs made (see [`Settings::attempts`]); this model is the one of lowest loss.
    pub attempts: u32,
}

/// The trained model, ready to serve.
#[derive(Debug, Clone)]
pub struct CodeModel {
    meta: Meta,
    vocab: Vocab,
    engine: Engine,
    stop: [u32; 1],
}

/// Trains a model from `seed` (weights, corpus and batch order all follow from it).
pub fn train(seed: u64, settings: &Settings) -> Result<CodeModel, CodeModelError> {
    let started = Instant::now();
    let mut best: Option<CodeModel> = None;
    for attempt in 0..settings.attempts.max(1) {
        // Another seed, derived: a new corpus, initialization and batch order.
        let seed = seed ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let model = train_once(seed, settings)?;
        let converged = model.meta.final_loss <= CONVERGED_LOSS;
        if best
            .as_ref()
            .is_none_or(|b| model.meta.final_loss < b.meta.final_loss)
        {
            best = Some(model);
        }
        if let Some(b) = best.as_mut() {
            b.meta.attempts = attempt + 1;
        }
        if converged {
            break;
        }
    }
    let mut model = best.ok_or_else(|| CodeModelError::Train("no training attempt".into()))?;
    model.meta.train_seconds = started.elapsed().as_secs_f64();
    Ok(model)
}

/// Final training loss (nats per token) at or below which a run has learned the task: measured
/// runs that stayed above it had not learned to copy the task's line yet (a plateau whose
/// length depends on the seed: one of seven seeds was at 0.78 after the default schedule, its
/// reference-like solve rate 0.38 against 0.72-0.94 for the others).
pub const CONVERGED_LOSS: f64 = 0.5;

/// One training run of `seed`.
fn train_once(seed: u64, settings: &Settings) -> Result<CodeModel, CodeModelError> {
    let started = Instant::now();
    let vocab = Vocab::build();
    let cfg = settings.gpt(vocab.len());
    let terr = |e: rdbench_lm::LmError| CodeModelError::Train(e.to_string());
    let docs: Vec<Vec<u32>> = corpus::documents(seed, settings.documents, &settings.mixture)
        .iter()
        .map(|d| d.tokens(&vocab))
        .collect();
    // Rows of ctx + 1 tokens: ctx inputs and their next tokens.
    let rows = corpus::pack(&docs, settings.ctx + 1);
    if rows.is_empty() {
        return Err(CodeModelError::Train("no document fits the context".into()));
    }
    let data = TokenSet::new(rows, settings.ctx + 1).map_err(terr)?;
    let gpt = rdbench_lm::Gpt::new(cfg.clone(), seed ^ 0x6770_745f_696e_6974).map_err(terr)?;
    let tc = TrainConfig::cosine(
        settings.steps,
        settings.batch_size,
        settings.lr,
        settings.warmup_steps,
        seed ^ 0x6261_7463_6865_7300,
    );
    let report = rdbench_lm::with_threads(Some(settings.threads.max(1)), || {
        rdbench_lm::train_model(&gpt, &data, &tc, "code model")
    })
    .map_err(terr)?;
    let engine = Engine::from_gpt(&gpt).map_err(|e| CodeModelError::Train(e.to_string()))?;
    let meta = Meta {
        format_version: FORMAT_VERSION,
        name: MODEL_NAME.into(),
        gpt: cfg,
        vocab: vocab.tokens().to_vec(),
        settings: settings.clone(),
        train_seconds: started.elapsed().as_secs_f64(),
        final_loss: report.final_train_loss,
        training_tokens: settings.steps * settings.batch_size * settings.ctx,
        attempts: 1,
    };
    Ok(CodeModel {
        meta,
        vocab,
        engine,
        stop: [END],
    })
}

/// The folder name [`prepare_cached`] gives the model of `seed` and `settings`: a hash, so the
/// seed (an installation's secret) does not show in it.
pub fn cache_name(seed: u64, settings: &Settings) -> String {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(FORMAT_VERSION.to_le_bytes());
    h.update(rdbench_lm::TRAINING_VERSION.to_le_bytes());
    h.update(serde_json::to_vec(settings).unwrap_or_default());
    h.update(Vocab::build().hash().as_bytes());
    format!("{MODEL_NAME}-{}", &hex::encode(h.finalize())[..16])
}

/// The model of `seed` (the default [`Settings`]) under `dir`, trained first if it is not there
/// yet; returns its folder. See [`prepare_cached_with`].
pub fn prepare_cached(dir: &Path, seed: u64) -> Result<PathBuf, CodeModelError> {
    prepare_cached_with(dir, seed, &Settings::default())
}

/// As [`prepare_cached`] with `settings`. Trains into a temporary folder beside the target
/// and renames it into place, so the target is either absent or complete; a lock file makes a
/// concurrent caller wait for the first one's model instead of training its own (and should
/// the lock be unavailable, the second rename loses and its copy is removed). An existing
/// folder is loaded (checked) before it is returned.
pub fn prepare_cached_with(
    dir: &Path,
    seed: u64,
    settings: &Settings,
) -> Result<PathBuf, CodeModelError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = cache_name(seed, settings);
    let target = dir.join(&name);
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    fs2::FileExt::lock_exclusive(&lock).map_err(io_err(&lock_path))?;
    if !target.exists() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        let res = train(seed, settings).and_then(|m| {
            m.save(&tmp)?;
            std::fs::rename(&tmp, &target).map_err(io_err(&target))
        });
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            if !target.exists() {
                return res.map(|_| target);
            }
        }
    }
    CodeModel::load(&target)?;
    Ok(target)
}

impl CodeModel {
    /// Writes `model.safetensors` and `model.json` into `dir` (created; must not be a file).
    pub fn save(&self, dir: &Path) -> Result<(), CodeModelError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let gpt = self.to_gpt().map_err(|e| CodeModelError::BadModel {
            path: dir.to_path_buf(),
            message: e,
        })?;
        let weights = dir.join(WEIGHTS_FILE);
        rdbench_lm::save_model(&gpt, &weights).map_err(|e| CodeModelError::BadModel {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let meta = dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(&self.meta).expect("the metadata serializes");
        std::fs::write(&meta, json).map_err(io_err(&meta))
    }

    /// Loads a folder written by [`CodeModel::save`], checking everything: the metadata's
    /// format, the vocabulary, the sizes, and every tensor's name, shape and finiteness
    /// (rdbench-lm's checked loading).
    pub fn load(dir: &Path) -> Result<CodeModel, CodeModelError> {
        let bad = |path: &Path, message: String| CodeModelError::BadModel {
            path: path.to_path_buf(),
            message,
        };
        let meta_path = dir.join(META_FILE);
        let bytes = rdbench_core::fsutil::read_untrusted(&meta_path, META_MAX_BYTES)
            .map_err(|e| bad(&meta_path, format!("cannot read: {e:?}")))?;
        let meta: Meta = serde_json::from_slice(&bytes)
            .map_err(|e| bad(&meta_path, format!("not this crate's metadata: {e}")))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(bad(
                &meta_path,
                format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    meta.format_version
                ),
            ));
        }
        let vocab = Vocab::from_tokens(meta.vocab.clone()).map_err(|e| bad(&meta_path, e))?;
        meta.gpt
            .validate()
            .map_err(|e| bad(&meta_path, e.to_string()))?;
        if meta.gpt.vocab != vocab.len() || meta.gpt.n_params() > MAX_PARAMS {
            return Err(bad(
                &meta_path,
                format!(
                    "the model has {} vocabulary rows for {} tokens and {} parameters (at most {MAX_PARAMS})",
                    meta.gpt.vocab,
                    vocab.len(),
                    meta.gpt.n_params()
                ),
            ));
        }
        let weights = dir.join(WEIGHTS_FILE);
        let gpt = rdbench_lm::load_model(&weights, &meta.gpt)
            .map_err(|e| bad(&weights, e.to_string()))?;
        let engine = Engine::from_gpt(&gpt).map_err(|e| bad(&weights, e.to_string()))?;
        Ok(CodeModel {
            meta,
            vocab,
            engine,
            stop: [END],
        })
    }

    /// The weights as rdbench-lm's [`rdbench_lm::Gpt`] (for saving and for checks).
    pub fn to_gpt(&self) -> Result<rdbench_lm::Gpt, String> {
        self.engine.to_gpt().map_err(|e| e.to_string())
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The chat template's tokens of `messages`, ending with `<|assistant|>`: roles `system`,
    /// `user` and `assistant` (any other role reads as `user`), each message
    /// `<|role|>{content}<|end|>`.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Vec<u32> {
        let mut tokens = chat_tokens(
            &self.vocab,
            messages.iter().map(|m| {
                let role = match m.role.as_str() {
                    "system" | "developer" => SYSTEM,
                    "assistant" => ASSISTANT,
                    _ => USER,
                };
                (role, m.content.as_str())
            }),
        );
        tokens.push(ASSISTANT);
        tokens
    }
}

fn model_err(e: String) -> LlmError {
    LlmError::Tokenizer(e)
}

impl ChatModel for CodeModel {
    type State = KvState;

    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        Ok(self.chat_prompt(messages))
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, LlmError> {
        self.vocab.decode(tokens).map_err(model_err)
    }

    fn stop_tokens(&self) -> &[u32] {
        &self.stop
    }

    fn context_length(&self) -> usize {
        self.meta.gpt.ctx
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<(KvState, Vec<f32>), LlmError> {
        if tokens.len() > self.context_length() {
            return Err(LlmError::PromptTooLong {
                prompt: tokens.len(),
                context: self.context_length(),
            });
        }
        if tokens.is_empty() {
            return Err(model_err("an empty prompt".into()));
        }
        let mut states = [self.engine.empty_state()];
        let rows: Vec<(usize, u32)> = tokens.iter().map(|&t| (0, t)).collect();
        let mut logits = self.engine.forward(&mut states, &rows).map_err(model_err)?;
        let [state] = states;
        Ok((state, logits.pop().expect("one sequence")))
    }

    fn decode_step(
        &mut self,
        states: &mut [KvState],
        tokens: &[u32],
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        if states.len() != tokens.len() {
            return Err(model_err(format!(
                "{} states for {} tokens",
                states.len(),
                tokens.len()
            )));
        }
        let rows: Vec<(usize, u32)> = tokens.iter().copied().enumerate().collect();
        self.engine.forward(states, &rows).map_err(model_err)
    }
}
