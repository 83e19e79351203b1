//! An installation's instance and its cached products: the base model, the comparison SFT
//! model, the agent's training prompts, and the held-out prompts with both models' responses.
//!
//! ```text
//! <cache>/finetune-qa/instance.secret                  256 bits of OS randomness, made once
//! <cache>/finetune-qa/<spec key>-<instance id>/        base.safetensors, sft.safetensors,
//!                                                      train_prompts.txt, heldout.json, prep.json
//!                                                      reference.safetensors, reference.json
//! ```
//!
//! Everything is derived from the secret ([`Instance`]): the language and facts of the world,
//! the corpus and the models' seeds, the prompts, the judge's key and the scorer's sampling
//! seed. Products are built once, under a lock, published by rename; the same secret prepares
//! the same files.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rdbench_core::task_secret::TaskSecret;
use rdbench_core::{fsutil, Error, Result};
use rdbench_lm::{io::load_model, save_model, Gpt};
use serde::{Deserialize, Serialize};

use crate::policy::{self, Generated, GenerationConfig};
use crate::profile::Spec;
use crate::world::{Instruction, World};

/// The task's folder in the cache and the name of its installation secret (both profiles).
pub(crate) const TASK: &str = "finetune-qa";
const DOMAIN: &[u8] = b"rdbench finetune-qa instance v1";

pub const BASE: &str = "base.safetensors";
pub const SFT: &str = "sft.safetensors";
pub const TRAIN_PROMPTS: &str = "train_prompts.txt";
pub const HELDOUT: &str = "heldout.json";
pub const REFERENCE: &str = "reference.safetensors";

/// Every secret parameter of one installation's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub world: u64,
    pub base_corpus: u64,
    pub base_init: u64,
    pub base_batches: u64,
    pub sft_corpus: u64,
    pub sft_batches: u64,
    pub train_prompts: u64,
    pub heldout_prompts: u64,
    /// Key of the judge's verdicts (four derived words).
    pub judge_key: [u64; 4],
    /// The scorer's sampling seed for submissions whose temperature is above 0.
    pub scoring: u64,
}

impl Instance {
    /// The instance of `spec` in the installation whose cache is `cache_dir` (its secret made
    /// on first use).
    pub fn load(spec: &Spec, cache_dir: &Path) -> Result<Instance> {
        Ok(Instance::from_secret(
            spec,
            &TaskSecret::load_or_create(cache_dir, TASK)?,
        ))
    }

    pub fn from_secret(spec: &Spec, secret: &TaskSecret) -> Instance {
        let d = |p: &str| secret.derive(DOMAIN, &spec.name, p);
        Instance {
            world: d("world"),
            base_corpus: d("base corpus"),
            base_init: d("base init"),
            base_batches: d("base batches"),
            sft_corpus: d("sft corpus"),
            sft_batches: d("sft batches"),
            train_prompts: d("train prompts"),
            heldout_prompts: d("heldout prompts"),
            judge_key: [d("judge 0"), d("judge 1"), d("judge 2"), d("judge 3")],
            scoring: d("scoring"),
        }
    }

    pub fn id(&self) -> String {
        rdbench_core::task_secret::instance_id(DOMAIN, self)
    }

    pub fn world(&self) -> World {
        World::new(self.world)
    }

    /// The judge's key as bytes.
    pub fn judge_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        for (chunk, word) in key.chunks_exact_mut(8).zip(self.judge_key) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        key
    }
}

/// The held-out set as the scorer keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heldout {
    pub prompts: Vec<Instruction>,
    pub base: Vec<Generated>,
    pub sft: Vec<Generated>,
}

/// What preparation measured, saved as `prep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepReport {
    pub base_loss: f64,
    pub sft_loss: f64,
    /// Mean quality of the base's and the SFT model's greedy responses to the held-out prompts.
    pub base_quality: f64,
    pub sft_quality: f64,
    pub seconds: f64,
}

/// The folder of one installation's profile.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub dir: PathBuf,
}

impl Prepared {
    pub fn base(&self) -> PathBuf {
        self.dir.join(BASE)
    }
    pub fn sft(&self) -> PathBuf {
        self.dir.join(SFT)
    }
    pub fn train_prompts(&self) -> PathBuf {
        self.dir.join(TRAIN_PROMPTS)
    }
    pub fn reference(&self) -> PathBuf {
        self.dir.join(REFERENCE)
    }

    pub fn heldout(&self) -> Result<Heldout> {
        let path = self.dir.join(HELDOUT);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
    }

    pub fn report(&self) -> Result<PrepReport> {
        let path = self.dir.join("prep.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
    }
}

/// `n` instructions from `seed`.
pub fn instructions(world: &World, seed: u64, n: usize) -> Vec<Instruction> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| world.instruction(&mut rng)).collect()
}

/// Makes (once) and returns the installation's prepared folder.
pub fn ensure_prepared(spec: &Spec, cache_dir: &Path) -> Result<(Prepared, Instance)> {
    let inst = Instance::load(spec, cache_dir)?;
    let at = Prepared {
        dir: cache_dir
            .join(TASK)
            .join(format!("{}-{}", spec.key(), inst.id())),
    };
    let done = at.dir.join("prep.json");
    fsutil::build_once(
        &at.dir,
        "prep",
        || done.is_file(),
        || prepare(spec, &inst, &at, &done),
    )?;
    Ok((at, inst))
}

fn lm_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn prepare(spec: &Spec, inst: &Instance, at: &Prepared, done: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let world = inst.world();
    // The base: a language model of instructions followed by responses, most of them failures.
    let mut rng = ChaCha8Rng::seed_from_u64(inst.base_corpus);
    let base_docs: Vec<Vec<u32>> = (0..spec.base_documents)
        .map(|_| {
            let ins = world.instruction(&mut rng);
            let response = world.corpus_response(&ins, spec.base_good, &mut rng);
            world.document(&ins, &response)
        })
        .collect();
    let base = Gpt::new(spec.model.clone(), inst.base_init).map_err(lm_err)?;
    let base_loss = policy::fine_tune(
        &base,
        &base_docs,
        spec.base_steps,
        spec.batch_size,
        spec.base_lr,
        inst.base_batches,
        spec.threads,
    )?;
    // The comparison model: the base fine-tuned on answers only (supervised, as Alpaca-GPT-2
    // was fine-tuned on Alpaca's responses).
    let sft = policy::copy(&base)?;
    let mut rng = ChaCha8Rng::seed_from_u64(inst.sft_corpus);
    let sft_docs: Vec<Vec<u32>> = (0..spec.sft_documents)
        .map(|_| {
            let ins = world.instruction(&mut rng);
            let answer = world.answer(&ins, &mut rng);
            world.document(&ins, &answer)
        })
        .collect();
    let sft_loss = policy::fine_tune(
        &sft,
        &sft_docs,
        spec.sft_steps,
        spec.batch_size,
        spec.sft_lr,
        inst.sft_batches,
        spec.threads,
    )?;
    let prompts = instructions(&world, inst.heldout_prompts, spec.heldout_prompts);
    let greedy = GenerationConfig::greedy(spec.max_new_tokens);
    let respond = |gpt: &Gpt| {
        rdbench_lm::with_threads(Some(spec.threads), || {
            policy::generate(&policy::engine(gpt)?, &world, &prompts, &greedy, 0)
        })
    };
    let heldout = Heldout {
        base: respond(&base)?,
        sft: respond(&sft)?,
        prompts,
    };
    let quality = |rs: &[Generated]| {
        rs.iter()
            .zip(&heldout.prompts)
            .map(|(r, p)| world.quality(p, &r.words, r.ended))
            .sum::<f64>()
            / rs.len().max(1) as f64
    };
    let report = PrepReport {
        base_loss,
        sft_loss,
        base_quality: quality(&heldout.base),
        sft_quality: quality(&heldout.sft),
        seconds: started.elapsed().as_secs_f64(),
    };
    save_model(&base, &at.base()).map_err(lm_err)?;
    save_model(&sft, &at.sft()).map_err(lm_err)?;
    let train: Vec<String> = instructions(&world, inst.train_prompts, spec.train_prompts)
        .iter()
        .map(|i| world.text(&i.words))
        .collect();
    fsutil::atomic_write(&at.train_prompts(), (train.join("\n") + "\n").as_bytes())?;
    fsutil::atomic_write(&at.dir.join(HELDOUT), &json(&heldout))?;
    fsutil::atomic_write(done, &json(&report))
}

/// `value` as pretty-printed JSON.
pub fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("serializes")
}

/// Loads a policy of the profile's architecture.
pub fn load_policy(spec: &Spec, path: &Path) -> Result<Gpt> {
    load_model(path, &spec.model).map_err(|e| Error::Internal(e.to_string()))
}
