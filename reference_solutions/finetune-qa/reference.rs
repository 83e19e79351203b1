//! The reference solution of finetune-qa: METR's recipe for RE-Bench's task, with only what an
//! agent has (the base model, the training prompts, the judge's verdicts under the cap).
//!
//! Each round: sample `samples` responses per training prompt from the current policy
//! (temperature 1), pick each prompt's best by single elimination through the judge
//! (`samples - 1` verdicts per prompt), and fine-tune the policy on the winners. Scored greedy.
//!
//! It is the crate `rdbench-reference-finetune-qa` in `reference_solutions/` (never copied into
//! an attempt). It uses the task crate's policy, judge and preparation, so the task crate cannot
//! depend on it: the registry hands [`REFERENCE`] to `rdbench_task_finetune_qa::tasks`.

use std::path::PathBuf;

use rdbench_core::{fsutil, Error, Result};
use rdbench_lm::save_model;
use serde::{Deserialize, Serialize};

use rdbench_task_finetune_qa::judge;
use rdbench_task_finetune_qa::policy::{self, Generated, GenerationConfig};
use rdbench_task_finetune_qa::prep::{self, Instance, Prepared};
use rdbench_task_finetune_qa::profile::Spec;
use rdbench_task_finetune_qa::Reference;

/// The reference, as the task takes it.
pub const REFERENCE: Reference = ensure;

/// The recipe's settings (public: a method's choices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceConfig {
    pub rounds: usize,
    pub samples: usize,
    pub temperature: f64,
    pub steps: usize,
    pub lr: f64,
}

pub fn config() -> ReferenceConfig {
    ReferenceConfig {
        rounds: 3,
        samples: 8,
        temperature: 1.0,
        steps: 200,
        lr: 1e-3,
    }
}

/// What the recipe did, saved as `reference.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceReport {
    pub config: ReferenceConfig,
    pub verdicts_used: u64,
    /// Mean quality of each round's winners.
    pub winner_quality: Vec<f64>,
    pub seconds: f64,
}

/// Makes (once) the reference policy and returns its path.
pub fn ensure(spec: &Spec, at: &Prepared, inst: &Instance) -> Result<PathBuf> {
    let path = at.reference();
    let done = at.dir.join("reference.json");
    fsutil::build_once(
        &at.dir,
        "reference",
        || done.is_file(),
        || {
            let started = std::time::Instant::now();
            let (gpt, mut report) = train(spec, at, inst)?;
            report.seconds = started.elapsed().as_secs_f64();
            save_model(&gpt, &path).map_err(|e| Error::Internal(e.to_string()))?;
            fsutil::atomic_write(&done, &prep::json(&report))
        },
    )?;
    Ok(path)
}

fn train(
    spec: &Spec,
    at: &Prepared,
    inst: &Instance,
) -> Result<(rdbench_lm::Gpt, ReferenceReport)> {
    let cfg = config();
    let world = inst.world();
    let key = inst.judge_key();
    let text = std::fs::read_to_string(at.train_prompts())
        .map_err(|e| Error::io(at.train_prompts(), e))?;
    let prompts = text
        .lines()
        .map(|l| world.parse(l).and_then(|w| world.instruction_from(&w)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Internal)?;
    let gpt = prep::load_policy(spec, &at.base())?;
    let sampling = GenerationConfig {
        temperature: cfg.temperature,
        top_k: 0,
        max_new_tokens: spec.max_new_tokens,
    };
    let mut verdicts_used = 0u64;
    let mut winner_quality = Vec::new();
    for round in 0..cfg.rounds {
        let engine = policy::engine(&gpt)?;
        let samples: Vec<Vec<Generated>> = (0..cfg.samples)
            .map(|s| {
                rdbench_lm::with_threads(Some(spec.threads), || {
                    policy::generate(
                        &engine,
                        &world,
                        &prompts,
                        &sampling,
                        (round * cfg.samples + s) as u64,
                    )
                })
            })
            .collect::<Result<_>>()?;
        let mut documents = Vec::new();
        let mut quality = 0.0;
        for (p, ins) in prompts.iter().enumerate() {
            let mut field: Vec<&Generated> = samples.iter().map(|s| &s[p]).collect();
            while field.len() > 1 {
                let mut next = Vec::with_capacity(field.len().div_ceil(2));
                for pair in field.chunks(2) {
                    match pair {
                        [a, b] => {
                            verdicts_used += 1;
                            let first =
                                judge::verdict(&world, &key, ins, a.response(), b.response());
                            next.push(if first { *a } else { *b });
                        }
                        [a] => next.push(*a),
                        _ => unreachable!("chunks of two"),
                    }
                }
                field = next;
            }
            let winner = field[0];
            quality += world.quality(ins, &winner.words, winner.ended);
            if winner.ended {
                documents.push(world.document(ins, &winner.words));
            }
        }
        winner_quality.push(quality / prompts.len().max(1) as f64);
        if !documents.is_empty() {
            policy::fine_tune(
                &gpt,
                &documents,
                cfg.steps,
                spec.batch_size,
                cfg.lr,
                round as u64,
                spec.threads,
            )?;
        }
    }
    if verdicts_used > spec.judge_cap {
        return Err(Error::Internal(format!(
            "the reference used {verdicts_used} verdicts, over the cap of {}",
            spec.judge_cap
        )));
    }
    Ok((
        gpt,
        ReferenceReport {
            config: cfg,
            verdicts_used,
            winner_quality,
            seconds: 0.0,
        },
    ))
}
