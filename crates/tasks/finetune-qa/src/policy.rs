//! A policy (rdbench-lm's GPT over the world's vocabulary): its generation settings, sampling
//! responses with them, and fine-tuning it on documents.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdbench_core::{Error, Result};
use rdbench_lm::infer::{Engine, KvState};
use rdbench_lm::{Gpt, TokenSet, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::world::{Instruction, World, BOS, EOS, PAD, SEP};

/// How the scorer samples a policy: the submission's `generation.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// 0: greedy; at most [`MAX_TEMPERATURE`].
    pub temperature: f64,
    /// Sample among the `top_k` likeliest words (0: all).
    pub top_k: usize,
    /// Most words of a response (at most the profile's `max_new_tokens`).
    pub max_new_tokens: usize,
}

pub const MAX_TEMPERATURE: f64 = 2.0;

impl GenerationConfig {
    /// Greedy, up to the profile's limit: the starting submission's and the comparison
    /// models' settings.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerationConfig {
            temperature: 0.0,
            top_k: 0,
            max_new_tokens,
        }
    }

    /// Why the settings are outside a profile's limits (`max_new_tokens`, a vocabulary of
    /// `vocab`), if they are.
    pub fn check(&self, max_new_tokens: usize, vocab: usize) -> std::result::Result<(), String> {
        if !(0.0..=MAX_TEMPERATURE).contains(&self.temperature) {
            return Err(format!(
                "temperature {} is outside 0..={MAX_TEMPERATURE}",
                self.temperature
            ));
        }
        if self.top_k > vocab {
            return Err(format!(
                "top_k {} is more than the vocabulary's {vocab} tokens",
                self.top_k
            ));
        }
        if self.max_new_tokens == 0 || self.max_new_tokens > max_new_tokens {
            return Err(format!(
                "max_new_tokens {} is outside 1..={max_new_tokens}",
                self.max_new_tokens
            ));
        }
        Ok(())
    }
}

/// One generated response: its words (end token excluded) and whether it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub words: Vec<u32>,
    pub ended: bool,
}

impl Generated {
    /// The response as the judge sees it.
    pub fn response(&self) -> crate::judge::Response<'_> {
        crate::judge::Response {
            words: &self.words,
            ended: self.ended,
        }
    }
}

/// Sequences decoded together: their KV caches are what generation holds in memory (GPT-2
/// small's are 7 MB each at 100 tokens).
const GENERATION_BATCH: usize = 64;

/// The tokens that end a response and those never sampled.
#[derive(Debug, Clone, Copy)]
pub struct Stops<'a> {
    pub eos: u32,
    pub never: &'a [u32],
}

/// Responses of the world's policy to each of `prompts` (never sampling `<pad>`, `<bos>` or
/// `<sep>`): [`generate_tokens`] on the world's prompt tokens.
pub fn generate(
    engine: &Engine,
    world: &World,
    prompts: &[Instruction],
    config: &GenerationConfig,
    seed: u64,
) -> Result<Vec<Generated>> {
    let prompts: Vec<Vec<u32>> = prompts.iter().map(|p| world.prompt_tokens(p)).collect();
    let stops = Stops {
        eos: EOS,
        never: &[PAD, BOS, SEP],
    };
    generate_tokens(engine, &prompts, stops, config, seed)
}

/// Responses of `engine`'s model to each of `prompts` (token ids), [`GENERATION_BATCH`]
/// sequences decoded together; response `i` is sampled from ChaCha stream `i` of `seed`, so
/// it does not depend on the batching. A response ends at `stops.eos` (not kept), at
/// `config.max_new_tokens` or at the context's end.
pub fn generate_tokens(
    engine: &Engine,
    prompts: &[Vec<u32>],
    stops: Stops<'_>,
    config: &GenerationConfig,
    seed: u64,
) -> Result<Vec<Generated>> {
    let mut out = Vec::with_capacity(prompts.len());
    for (batch, chunk) in prompts.chunks(GENERATION_BATCH).enumerate() {
        let first = batch * GENERATION_BATCH;
        out.extend(generate_batch(engine, chunk, first, stops, config, seed)?);
    }
    Ok(out)
}

/// [`generate_tokens`] for one batch whose first prompt is prompt `first` of the whole list.
fn generate_batch(
    engine: &Engine,
    prompts: &[Vec<u32>],
    first: usize,
    stops: Stops<'_>,
    config: &GenerationConfig,
    seed: u64,
) -> Result<Vec<Generated>> {
    let mut states: Vec<KvState> = prompts.iter().map(|_| engine.empty_state()).collect();
    let mut rows = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        rows.extend(p.iter().map(|&t| (i, t)));
    }
    let mut out: Vec<Generated> = prompts
        .iter()
        .map(|_| Generated {
            words: Vec::new(),
            ended: false,
        })
        .collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..prompts.len())
        .map(|i| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream((first + i) as u64);
            r
        })
        .collect();
    let mut running: Vec<usize> = (0..prompts.len()).collect();
    let room = engine.config().ctx;
    while !running.is_empty() {
        let logits = engine
            .forward(&mut states, &rows)
            .map_err(Error::Internal)?;
        rows.clear();
        let mut still = Vec::new();
        for (seq, logits) in running.iter().copied().zip(logits) {
            let token = sample(&logits, stops.never, config, &mut rngs[seq]);
            let g = &mut out[seq];
            if token == stops.eos {
                g.ended = true;
            } else {
                g.words.push(token);
                if g.words.len() < config.max_new_tokens && states[seq].len() < room {
                    rows.push((seq, token));
                    still.push(seq);
                }
            }
        }
        running = still;
    }
    Ok(out)
}

/// A token from `logits` under `config`, never one of `never`.
fn sample(logits: &[f32], never: &[u32], config: &GenerationConfig, rng: &mut impl Rng) -> u32 {
    // Likeliest first, ties to the lower id: one total order, so the greedy pick, the top k
    // and the sampling walk are the same however they are found.
    let likelier = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    let allowed = (0..logits.len()).filter(|&t| !never.contains(&(t as u32)));
    if config.temperature == 0.0 {
        return allowed.min_by(likelier).expect("a vocabulary") as u32;
    }
    let mut order: Vec<usize> = allowed.collect();
    if config.top_k > 0 && config.top_k < order.len() {
        // A vocabulary of 50,257 sorted whole for every token would dominate GPT-2's sampling.
        order.select_nth_unstable_by(config.top_k - 1, likelier);
        order.truncate(config.top_k);
    }
    order.sort_by(likelier);
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&t| ((logits[t] as f64 - top) / config.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut draw = rng.gen::<f64>() * total;
    for (&t, w) in order.iter().zip(&weights) {
        if draw < *w {
            return t as u32;
        }
        draw -= w;
    }
    *order.last().expect("a vocabulary") as u32
}

/// Fine-tunes `gpt` in place on `documents` (`<bos> instruction <sep> response <eos>` each),
/// packed into rows of the model's context.
pub fn fine_tune(
    gpt: &Gpt,
    documents: &[Vec<u32>],
    steps: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
    threads: usize,
) -> Result<f64> {
    let seq_len = gpt.config().ctx + 1;
    let rows = rdbench_lm::train::pack_documents(documents, seq_len, PAD);
    let data = TokenSet::new(rows, seq_len).map_err(|e| Error::Internal(e.to_string()))?;
    let cfg = TrainConfig::cosine(steps, batch_size, lr, steps / 10, seed);
    let report = rdbench_lm::with_threads(Some(threads), || {
        rdbench_lm::train_model(gpt, &data, &cfg, "finetune-qa")
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(report.final_train_loss)
}

/// A copy of `gpt` with its own weights.
pub fn copy(gpt: &Gpt) -> Result<Gpt> {
    let tensors = gpt
        .tensors()
        .into_iter()
        .map(|(k, t)| t.copy().map(|t| (k, t)))
        .collect::<candle_core::Result<_>>()
        .map_err(|e| Error::Internal(e.to_string()))?;
    Gpt::from_tensors(gpt.config().clone(), tensors).map_err(|e| Error::Internal(e.to_string()))
}

/// The engine that samples `gpt`.
pub fn engine(gpt: &Gpt) -> Result<Engine> {
    Engine::from_gpt(gpt).map_err(|e| Error::Internal(e.to_string()))
}
