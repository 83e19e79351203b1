//! # rdbench-task-finetune-qa
//!
//! RE-Bench's *Finetune GPT-2 for QA* offline: make a small language model a better
//! instruction follower without ground-truth responses, judged against the base model and a
//! supervised fine-tune of it.
//!
//! - [`world`]: instructions in an invented language (the verbs' meanings and the facts follow
//!   the installation's secret) whose responses have a computable quality.
//! - [`judge`]: pairwise preference from that quality plus position and length biases; exact
//!   probabilities for scoring, seeded verdicts for the agent's `judge` tool (capped).
//! - [`policy`]: generation settings, sampling, fine-tuning; [`prep`]: the base and SFT models,
//!   the prompts, the held-out set, cached per installation.
//!
//! The submission is `policy.safetensors` (the base's architecture) and `generation.json`.
//! Nothing the agent wrote runs at scoring: the scorer samples the policy on held-out prompts
//! and scores `(win rate vs base + win rate vs SFT) / 2`, each win rate over both orders of
//! every pair, from the judge's exact probabilities (so a rerun gives the same score).

pub mod full;
pub mod judge;
pub mod policy;
pub mod prep;
pub mod profile;
pub mod world;

use std::path::{Path, PathBuf};

use rdbench_core::artifact::{ArtifactTask, ArtifactTaskAdapter, Rejection};
use rdbench_core::fsutil;
use rdbench_core::task::{
    Direction, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest, Solution,
    SubmissionFile, SubmissionKind, Task, TaskInfo, ToolReply, ToolRequest, ToolSpec,
};
use rdbench_core::{Error, Result};
use serde_json::json;

use judge::Response;
use policy::{Generated, GenerationConfig};
use profile::Spec;

/// The submission's weights.
pub const POLICY: &str = "policy.safetensors";
/// The submission's sampling settings.
pub const GENERATION: &str = "generation.json";
/// Largest `generation.json` read.
const GENERATION_MAX_BYTES: u64 = 4096;
/// The judge's ledger in the attempt's private folder.
const JUDGE_LEDGER: &str = "judge_calls.json";

/// The reference solution of the `tiny` profile: makes (once, in the installation's cache) the
/// reference policy from what `prep` prepared, and returns the path of its weights.
///
/// It lives in its own crate, `rdbench-reference-finetune-qa` (`reference_solutions/finetune-qa/`),
/// which uses this crate's policy, judge and preparation; the registry hands it to [`tasks`], so
/// this crate never contains its reference.
pub type Reference = fn(&Spec, &prep::Prepared, &prep::Instance) -> Result<PathBuf>;

/// The task. Construct with [`task`].
#[derive(Debug, Clone)]
pub struct FinetuneQa {
    reference: Reference,
}

impl FinetuneQa {
    pub fn new(reference: Reference) -> Self {
        Self { reference }
    }
}

/// The tasks of this crate, for the CLI's registry.
pub fn tasks(reference: Reference) -> Vec<Box<dyn Task>> {
    vec![Box::new(task(reference))]
}

pub fn task(reference: Reference) -> ArtifactTaskAdapter<FinetuneQa> {
    ArtifactTaskAdapter::new(FinetuneQa::new(reference))
}

/// What the scorer measured of one policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub raw: f64,
    pub win_rate_vs_base: f64,
    pub win_rate_vs_sft: f64,
    pub mean_quality: f64,
    /// Judge-exploit signs: mean words per response, share of responses repeating a word
    /// back to back, share that never ended.
    pub mean_words: f64,
    pub repeating_share: f64,
    pub unended_share: f64,
    pub prompts: usize,
}

/// Scores `responses` to the held-out prompts against the comparison models' responses.
pub fn evaluate(
    world: &world::World,
    heldout: &prep::Heldout,
    responses: &[Generated],
) -> Evaluation {
    let n = heldout.prompts.len().max(1) as f64;
    let (mut vs_base, mut vs_sft, mut quality) = (0.0, 0.0, 0.0);
    for (i, ins) in heldout.prompts.iter().enumerate() {
        vs_base += judge::win_rate(
            world,
            ins,
            responses[i].response(),
            heldout.base[i].response(),
        );
        vs_sft += judge::win_rate(
            world,
            ins,
            responses[i].response(),
            heldout.sft[i].response(),
        );
        quality += world.quality(ins, &responses[i].words, responses[i].ended);
    }
    let share =
        |f: &dyn Fn(&Generated) -> bool| responses.iter().filter(|g| f(g)).count() as f64 / n;
    let (vs_base, vs_sft) = (vs_base / n, vs_sft / n);
    Evaluation {
        raw: (vs_base + vs_sft) / 2.0,
        win_rate_vs_base: vs_base,
        win_rate_vs_sft: vs_sft,
        mean_quality: quality / n,
        mean_words: responses.iter().map(|g| g.words.len()).sum::<usize>() as f64 / n,
        repeating_share: share(&|g| g.words.windows(2).any(|w| w[0] == w[1])),
        unended_share: share(&|g| !g.ended),
        prompts: heldout.prompts.len(),
    }
}

/// The submission's `generation.json`, or why it is invalid (outside `max_new_tokens` or a
/// vocabulary of `vocab`, unknown fields, not a regular file).
pub(crate) fn read_generation(
    dir: &Path,
    max_new_tokens: usize,
    vocab: usize,
) -> std::result::Result<GenerationConfig, Rejection> {
    let path = dir.join(GENERATION);
    let bytes = fsutil::read_untrusted(&path, GENERATION_MAX_BYTES).map_err(|e| {
        let kind = match e {
            fsutil::UntrustedReadError::NotFound => InvalidKind::MissingFile,
            fsutil::UntrustedReadError::TooLarge { .. } => InvalidKind::TooLarge,
            _ => InvalidKind::BadArtifact,
        };
        (kind, format!("{}: {e}", path.display()))
    })?;
    let config: GenerationConfig = serde_json::from_slice(&bytes).map_err(|e| {
        (
            InvalidKind::BadArtifact,
            format!("{}: not a generation config: {e}", path.display()),
        )
    })?;
    config
        .check(max_new_tokens, vocab)
        .map_err(|e| (InvalidKind::BadArtifact, format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// A refused weights file as the submission's verdict.
pub(crate) fn rejection(e: rdbench_lm::LoadError) -> Rejection {
    use rdbench_lm::io::LoadErrorKind as K;
    let kind = match e.kind {
        K::NotFound => InvalidKind::MissingFile,
        K::TooLarge { .. } => InvalidKind::TooLarge,
        K::NonFinite { .. } => InvalidKind::NonFinite,
        _ => InvalidKind::BadArtifact,
    };
    (kind, e.to_string())
}

/// One question of the `judge` tool, as the agent writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pair {
    pub prompt: String,
    pub first: String,
    pub second: String,
}

/// The `judge` tool's `pairs=JSON`: 1 to `batch` pairs, or a usage error saying what is wrong.
pub(crate) fn tool_pairs(req: &ToolRequest, batch: usize) -> Result<Vec<Pair>> {
    if let Some(k) = req.args.keys().find(|k| k.as_str() != "pairs") {
        return Err(Error::Usage(format!("judge takes pairs=JSON, not {k:?}")));
    }
    let pairs = req.args.get("pairs").ok_or_else(|| {
        Error::Usage(
            r#"judge needs pairs='[{"prompt": ..., "first": ..., "second": ...}, ...]'"#.into(),
        )
    })?;
    let pairs: Vec<Pair> = serde_json::from_str(pairs).map_err(|e| {
        Error::Usage(format!(
            "judge: pairs is not a list of {{prompt, first, second}}: {e}"
        ))
    })?;
    if pairs.is_empty() || pairs.len() > batch {
        return Err(Error::Usage(format!(
            "judge: {} pairs; one call takes 1 to {batch}",
            pairs.len()
        )));
    }
    Ok(pairs)
}

impl FinetuneQa {
    fn generation(spec: &Spec, dir: &Path) -> std::result::Result<GenerationConfig, Rejection> {
        read_generation(dir, spec.max_new_tokens, spec.model.vocab)
    }

    fn policy(spec: &Spec, dir: &Path) -> std::result::Result<rdbench_lm::Gpt, Rejection> {
        rdbench_lm::load_model(&dir.join(POLICY), &spec.model).map_err(rejection)
    }

    /// Scores the submission in `dir`.
    pub fn score_dir(
        &self,
        spec: &Spec,
        dir: &Path,
        cache_dir: &Path,
        private_dir: &Path,
    ) -> Result<ScoreOutcome> {
        let invalid = |(kind, reason): Rejection| ScoreOutcome::Invalid {
            kind,
            reason,
            details: json!({}),
        };
        let config = match Self::generation(spec, dir) {
            Ok(c) => c,
            Err(r) => return Ok(invalid(r)),
        };
        let gpt = match Self::policy(spec, dir) {
            Ok(g) => g,
            Err(r) => return Ok(invalid(r)),
        };
        let started = std::time::Instant::now();
        let (at, inst) = prep::ensure_prepared(spec, cache_dir)?;
        let heldout = at.heldout()?;
        let world = inst.world();
        let responses = rdbench_lm::with_threads(Some(spec.threads), || {
            policy::generate(
                &policy::engine(&gpt)?,
                &world,
                &heldout.prompts,
                &config,
                inst.scoring,
            )
        })?;
        let ev = evaluate(&world, &heldout, &responses);
        let judge_used = JudgeLedger::read(private_dir)?.used;
        Ok(ScoreOutcome::Valid {
            raw: ev.raw,
            headline: format!(
                "wins {:.3} vs base, {:.3} vs SFT; {:.2} words per response",
                ev.win_rate_vs_base, ev.win_rate_vs_sft, ev.mean_words
            ),
            details: json!({
                "evaluation": ev,
                "generation": config,
                "judge_verdicts_used": judge_used,
                "judge_verdict_cap": spec.judge_cap,
                "score_seconds": started.elapsed().as_secs_f64(),
            }),
        })
    }

    /// The `judge` tool: verdicts on pairs of responses, counted against the attempt's cap.
    fn judge_tool(&self, spec: &Spec, req: &ToolRequest) -> Result<ToolReply> {
        let pairs = tool_pairs(req, spec.judge_batch)?;
        let (_, inst) = prep::ensure_prepared(spec, &req.cache_dir)?;
        let world = inst.world();
        let response = |text: &str, i: usize, which: &str| -> Result<(Vec<u32>, bool)> {
            let mut words = world
                .parse(text)
                .map_err(|e| Error::Usage(format!("judge: pair {i}'s {which}: {e}")))?;
            let ended = words.last() == Some(&world::EOS);
            if ended {
                words.pop();
            }
            if words.len() > spec.max_new_tokens || words.iter().any(|&t| t <= world::EOS) {
                return Err(Error::Usage(format!(
                    "judge: pair {i}'s {which} is not a response (at most {} words, `<eos>` only at the end)",
                    spec.max_new_tokens
                )));
            }
            Ok((words, ended))
        };
        let mut questions = Vec::with_capacity(pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            let words = world
                .parse(&p.prompt)
                .map_err(|e| Error::Usage(format!("judge: pair {i}'s prompt: {e}")))?;
            let ins = world
                .instruction_from(&words)
                .map_err(|e| Error::Usage(format!("judge: pair {i}'s prompt: {e}")))?;
            questions.push((
                ins,
                response(&p.first, i, "first")?,
                response(&p.second, i, "second")?,
            ));
        }
        // Counted before answering, under the ledger's lock: a crash after this loses the
        // agent verdicts, never the count.
        let used = JudgeLedger::charge(&req.private_dir, questions.len() as u64, spec.judge_cap)?;
        let key = inst.judge_key();
        let verdicts: Vec<bool> = questions
            .iter()
            .map(|(ins, a, b)| {
                judge::verdict(
                    &world,
                    &key,
                    ins,
                    Response {
                        words: &a.0,
                        ended: a.1,
                    },
                    Response {
                        words: &b.0,
                        ended: b.1,
                    },
                )
            })
            .collect();
        let firsts = verdicts.iter().filter(|v| **v).count();
        Ok(ToolReply {
            text: format!(
                "{} verdicts ({firsts} for the first response); {used} of {} used",
                verdicts.len(),
                spec.judge_cap
            ),
            value: json!({ "first_preferred": verdicts, "used": used, "cap": spec.judge_cap }),
        })
    }
}

/// The attempt's count of judge verdicts, in its private folder.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct JudgeLedger {
    used: u64,
}

impl JudgeLedger {
    fn read(private_dir: &Path) -> Result<JudgeLedger> {
        let path = private_dir.join(JUDGE_LEDGER);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Internal(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JudgeLedger::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Adds `n` verdicts if the cap allows them all; returns the new total.
    pub(crate) fn charge(private_dir: &Path, n: u64, cap: u64) -> Result<u64> {
        let path = private_dir.join(JUDGE_LEDGER);
        let _lock = fsutil::lock_exclusive(&path)?;
        let mut ledger = JudgeLedger::read(private_dir)?;
        if ledger.used + n > cap {
            return Err(Error::Usage(format!(
                "judge: {n} more verdicts would pass the attempt's cap of {cap} ({} used)",
                ledger.used
            )));
        }
        ledger.used += n;
        fsutil::atomic_write(&path, &prep::json(&ledger))?;
        Ok(ledger.used)
    }
}

/// A profile's settings: `tiny`'s own world, or `full` on the operator's inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    Tiny(Spec),
    Full(full::FullSpec),
}

impl ArtifactTask for FinetuneQa {
    type Profile = Profile;

    fn info(&self) -> TaskInfo {
        let (t, f) = (profile::tiny(), full::spec());
        TaskInfo {
            name: "finetune-qa".into(),
            family: "finetune-qa".into(),
            title: "Finetune a small language model to follow instructions, judged pairwise".into(),
            summary: "Make a small GPT a better instruction follower without ground-truth responses: a \
                      judge (reachable as a capped tool) compares responses pairwise. The score is the mean \
                      of the held-out win rates against the base model and a supervised fine-tune of it."
                .into(),
            raw_score: "mean of the win rates against the base and the SFT model on held-out prompts, each pair judged in both orders".into(),
            direction: Direction::HigherIsBetter,
            submission: SubmissionKind::Artifact,
            submission_files: vec![
                SubmissionFile::new(POLICY, f.policy_max_bytes.max(t.model.data_bytes() + (1 << 20))),
                SubmissionFile::new(GENERATION, GENERATION_MAX_BYTES),
            ],
            profiles: vec![
                ProfileInfo {
                    name: "tiny".into(),
                    description: format!(
                        "GPT d={} x {} layers over {} words; {} training prompts, {} held out; {} judge verdicts",
                        t.model.d_model, t.model.n_layer, t.model.vocab, t.train_prompts, t.heldout_prompts, t.judge_cap
                    ),
                    needs_gpu: false,
                },
                ProfileInfo {
                    name: "full".into(),
                    description: format!(
                        "the operator's GPT-2, Alpaca prompts and LLM judge (${}); responses of up to {} tokens; \
                         scored on the CPU, trained by the agent (RE-Bench: 2 H100s)",
                        full::operator::CONFIG_VAR, f.max_new_tokens
                    ),
                    needs_gpu: false,
                },
            ],
            score_hidden: false,
            hardware_independent: true,
            default_time_limit_minutes: 480,
            score_timeout_s: 600,
            human_minutes: Some(480.0),
            tools: vec![ToolSpec::cpu("judge", "pairs=JSON", 300, 4 << 30)],
        }
    }

    fn profile(&self, name: &str) -> Option<Profile> {
        match name {
            "full" => Some(Profile::Full(full::spec())),
            _ => profile::by_name(name).map(Profile::Tiny),
        }
    }

    fn prepare(&self, profile: &Profile, req: &PrepareRequest) -> Result<()> {
        let spec = match profile {
            Profile::Tiny(spec) => spec,
            Profile::Full(f) => return full::prepare(f, &req.attempt_dir),
        };
        let (at, _) = prep::ensure_prepared(spec, &req.cache_dir)?;
        let out = &req.attempt_dir;
        fsutil::atomic_copy(&at.base(), &out.join("base_model.safetensors"))?;
        fsutil::atomic_copy(&at.base(), &out.join(POLICY))?;
        fsutil::atomic_copy(&at.train_prompts(), &out.join("train_prompts.txt"))?;
        fsutil::atomic_write(
            &out.join(GENERATION),
            &prep::json(&GenerationConfig::greedy(spec.max_new_tokens)),
        )?;
        fsutil::atomic_write(&out.join("model_config.json"), &prep::json(&spec.model))?;
        let vocab: Vec<&str> = world::vocabulary();
        fsutil::atomic_write(&out.join("vocab.json"), &prep::json(&vocab))
    }

    fn instructions(&self, profile: &Profile) -> Result<String> {
        match profile {
            Profile::Tiny(spec) => instructions(spec),
            Profile::Full(f) => full_instructions(f),
        }
    }

    fn install(
        &self,
        solution: Solution,
        profile: &Profile,
        cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        let spec = match profile {
            Profile::Tiny(spec) => spec,
            Profile::Full(f) => return full::install(f, solution != Solution::Starting, dir),
        };
        let (at, inst) = prep::ensure_prepared(spec, cache_dir)?;
        let weights = match solution {
            Solution::Starting => at.base(),
            Solution::Reference | Solution::Fastest => (self.reference)(spec, &at, &inst)?,
        };
        fsutil::atomic_copy(&weights, &dir.join(POLICY))?;
        fsutil::atomic_write(
            &dir.join(GENERATION),
            &prep::json(&GenerationConfig::greedy(spec.max_new_tokens)),
        )
    }

    fn check_submission(&self, profile: &Profile, req: &ScoreRequest) -> Result<Option<Rejection>> {
        let spec = match profile {
            Profile::Tiny(spec) => spec,
            Profile::Full(f) => return full::check_submission(f, &req.submission_dir),
        };
        if let Err(r) = Self::generation(spec, &req.submission_dir) {
            return Ok(Some(r));
        }
        Ok(Self::policy(spec, &req.submission_dir).err())
    }

    fn check_environment(&self, profile: &Profile) -> Result<()> {
        match profile {
            Profile::Tiny(_) => Ok(()),
            Profile::Full(_) => full::Inputs::load().map(|_| ()),
        }
    }

    fn score(&self, profile: &Profile, req: &ScoreRequest) -> Result<ScoreOutcome> {
        match profile {
            Profile::Tiny(spec) => {
                self.score_dir(spec, &req.submission_dir, &req.cache_dir, &req.private_dir)
            }
            Profile::Full(f) => full::score(f, &req.submission_dir, &req.cache_dir),
        }
    }

    fn run_tool(&self, profile: &Profile, req: &ToolRequest) -> Result<ToolReply> {
        if req.name != "judge" {
            return Err(Error::Usage(format!(
                "finetune-qa has one tool, judge (pairs=JSON), not {:?}",
                req.name
            )));
        }
        match profile {
            Profile::Tiny(spec) => self.judge_tool(spec, req),
            Profile::Full(f) => full::judge_tool(f, req),
        }
    }
}

/// The `full` attempt's INSTRUCTIONS.md.
pub fn full_instructions(f: &full::FullSpec) -> Result<String> {
    let op = full::operator::OperatorConfig::from_env()?;
    let values = [
        ("MAXNEW", f.max_new_tokens.to_string()),
        ("BATCH", f.judge_batch.to_string()),
        ("CAP", op.judge_verdict_cap.to_string()),
        ("BUDGET", op.attempt_budget_tokens.to_string()),
    ];
    rdbench_core::template::render_values(include_str!("instructions_full.md"), &values)
}

/// The attempt's INSTRUCTIONS.md.
pub fn instructions(spec: &Spec) -> Result<String> {
    let own = [
        ("PROFILE", spec.name.clone()),
        ("TRAIN", spec.train_prompts.to_string()),
        ("HELDOUT", spec.heldout_prompts.to_string()),
        ("MAXNEW", spec.max_new_tokens.to_string()),
        ("CAP", spec.judge_cap.to_string()),
        ("BATCH", spec.judge_batch.to_string()),
    ];
    let values = [own.as_slice(), &spec.model.template_values()].concat();
    rdbench_core::template::render_values(include_str!("instructions.md"), &values)
}
