//! The `full` profile's inputs, all the operator's, named by a TOML file at
//! `$RDBENCH_FINETUNE_QA_FULL` in the scorer's environment, each file with the sha256 the
//! operator recorded:
//!
//! ```toml
//! model_config = { path = "/srv/gpt2/config.json", sha256 = "…" }         # Hugging Face GPT-2
//! tokenizer = { path = "/srv/gpt2/tokenizer.json", sha256 = "…" }
//! base_model = { path = "/srv/gpt2/model.safetensors", sha256 = "…" }     # float32
//! sft_model = { path = "/srv/gpt2-alpaca/model.safetensors", sha256 = "…" }
//! reference_model = { path = "/srv/…/model.safetensors", sha256 = "…" }  # optional
//! train_prompts = { path = "/srv/alpaca/train.jsonl", sha256 = "…" }
//! heldout_prompts = { path = "/srv/alpaca/heldout.jsonl", sha256 = "…" }
//! prompt_template = "…{prompt}…"          # optional; Alpaca's by default
//! base_url = "http://127.0.0.1:8000/v1"   # the judge: any OpenAI-compatible endpoint
//! model = "meta-llama/Meta-Llama-3-8B-Instruct"
//! key_file = "/srv/rdbench/judge.key"     # optional; read by the proxy only
//! attempt_budget_tokens = 50000000        # the agent's judge calls, all together
//! judge_verdict_cap = 20000               # optional
//! concurrency = 8                         # optional: judge calls at once
//! threads = 16                            # optional: generation threads (default: all)
//! ```
//!
//! Prompt files are JSON lines with Alpaca's fields: `instruction` and an optional `input`
//! (other fields, such as `output`, are never read, so Alpaca's own file can be named). Every
//! file is the scorer's: the agent gets the base model, its config and tokenizer, and the
//! training prompts' instructions, copied; the SFT model, the reference and the held-out prompts
//! never leave the scorer. A file whose hash differs from the record, a malformed line (named by
//! its number) or an empty prompt set is an environment error, so no run starts on inputs
//! other than the recorded ones.

use std::path::{Path, PathBuf};

use rdbench_core::{fsutil, Error, Result};
use serde::Deserialize;

/// The variable naming the operator's TOML file.
pub const CONFIG_VAR: &str = "RDBENCH_FINETUNE_QA_FULL";
/// Largest prompt file read (Alpaca's 52,002 records with their outputs are 22 MB).
const MAX_PROMPT_FILE_BYTES: u64 = 256 << 20;
/// Largest config or tokenizer file read (GPT-2's tokenizer.json is 1.4 MB).
const MAX_SMALL_FILE_BYTES: u64 = 64 << 20;
/// Largest instruction (with its input) a prompt may have, in bytes.
pub const MAX_PROMPT_BYTES: usize = 8192;

/// Alpaca's template for an instruction without a separate input, which is how its SFT
/// models were trained to be prompted.
pub const ALPACA_TEMPLATE: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{prompt}\n\n### Response:\n";

/// A file and the sha256 the operator recorded for it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    pub path: PathBuf,
    pub sha256: String,
}

impl Recorded {
    /// The file's bytes, checked against the record.
    pub fn read(&self, max: u64) -> Result<Vec<u8>> {
        fsutil::read_recorded(&self.path, &self.sha256, max)
    }
}

/// The operator's TOML file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    pub model_config: Recorded,
    pub tokenizer: Recorded,
    pub base_model: Recorded,
    pub sft_model: Recorded,
    #[serde(default)]
    pub reference_model: Option<Recorded>,
    pub train_prompts: Recorded,
    pub heldout_prompts: Recorded,
    #[serde(default = "default_template")]
    pub prompt_template: String,
    pub base_url: String,
    pub model: String,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    pub attempt_budget_tokens: u64,
    #[serde(default = "default_cap")]
    pub judge_verdict_cap: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub threads: Option<usize>,
}

fn default_template() -> String {
    ALPACA_TEMPLATE.into()
}

fn default_cap() -> u64 {
    20_000
}

fn default_concurrency() -> usize {
    8
}

impl OperatorConfig {
    /// The file `$RDBENCH_FINETUNE_QA_FULL` names, read and checked for shape (the files it
    /// names are read, and their hashes checked, where they are used).
    pub fn from_env() -> Result<OperatorConfig> {
        OperatorConfig::load(&rdbench_core::operator::config_path(
            CONFIG_VAR,
            "finetune-qa/full needs the operator's GPT-2 models, prompts and judge",
            "docs/finetune-qa.md",
        )?)
    }

    pub fn load(path: &Path) -> Result<OperatorConfig> {
        let bad = |m: String| Error::Environment(format!("{}: {m}", path.display()));
        let c: OperatorConfig = rdbench_core::operator::read_toml(path)?;
        if c.prompt_template.matches("{prompt}").count() != 1 {
            return Err(bad(
                "`prompt_template` must hold `{prompt}` exactly once".into()
            ));
        }
        if c.model.trim().is_empty() || c.base_url.trim().is_empty() {
            return Err(bad("`model` and `base_url` must not be empty".into()));
        }
        if c.attempt_budget_tokens == 0 || c.judge_verdict_cap == 0 || c.concurrency == 0 {
            return Err(bad(
                "`attempt_budget_tokens`, `judge_verdict_cap` and `concurrency` must be positive"
                    .into(),
            ));
        }
        if c.threads == Some(0) {
            return Err(bad("`threads` must be positive".into()));
        }
        Ok(c)
    }

    /// The model's architecture, from the operator's `config.json`.
    pub fn architecture(&self) -> Result<rdbench_lm::GptConfig> {
        let bytes = self.model_config.read(MAX_SMALL_FILE_BYTES)?;
        rdbench_lm::hf_gpt2::config_from_json(&bytes)
            .map_err(|e| Error::Environment(format!("{}: {e}", self.model_config.path.display())))
    }

    /// The tokenizer file's bytes.
    pub fn tokenizer_bytes(&self) -> Result<Vec<u8>> {
        self.tokenizer.read(MAX_SMALL_FILE_BYTES)
    }

    /// The training prompts (instructions, with their inputs), checked.
    pub fn train(&self) -> Result<Vec<String>> {
        read_prompts(&self.train_prompts)
    }

    /// The held-out prompts, checked.
    pub fn heldout(&self) -> Result<Vec<String>> {
        read_prompts(&self.heldout_prompts)
    }

    /// A prompt as the policy reads it.
    pub fn render(&self, prompt: &str) -> String {
        self.prompt_template.replace("{prompt}", prompt)
    }
}

/// The prompts of a JSON-lines file of Alpaca records: `instruction`, then `input` after a
/// blank line when it is not empty.
pub fn read_prompts(file: &Recorded) -> Result<Vec<String>> {
    let path = &file.path;
    let bad = |m: String| Error::Environment(format!("{}: {m}", path.display()));
    let bytes = file.read(MAX_PROMPT_FILE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    #[derive(Deserialize)]
    struct Record {
        instruction: String,
        #[serde(default)]
        input: String,
    }
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line)
            .map_err(|e| bad(format!("line {}: not an Alpaca record: {e}", i + 1)))?;
        let prompt = match r.input.trim() {
            "" => r.instruction.trim().to_string(),
            input => format!("{}\n\n{input}", r.instruction.trim()),
        };
        if prompt.is_empty() || prompt.len() > MAX_PROMPT_BYTES {
            return Err(bad(format!(
                "line {}: an instruction must have 1 to {MAX_PROMPT_BYTES} bytes",
                i + 1
            )));
        }
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        return Err(bad("no prompts".into()));
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn recorded(dir: &Path, name: &str, text: &str) -> Recorded {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Recorded {
            path,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        }
    }

    #[test]
    fn prompts_are_read_only_from_the_recorded_file_and_outputs_are_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"instruction\": \"Name a color.\", \"output\": \"Red.\"}\n\n\
                    {\"instruction\": \"Add.\", \"input\": \"2 and 3\", \"output\": \"5\"}\n";
        let file = recorded(dir.path(), "p.jsonl", text);
        assert_eq!(
            read_prompts(&file).unwrap(),
            ["Name a color.", "Add.\n\n2 and 3"]
        );
        let wrong = Recorded {
            sha256: "00".repeat(32),
            ..file.clone()
        };
        let e = read_prompts(&wrong).unwrap_err().to_string();
        assert!(e.contains("not the recorded"), "{e}");
        let e = read_prompts(&recorded(dir.path(), "q.jsonl", "{\"input\": \"x\"}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("q.jsonl: line 1"), "{e}");
        let e = read_prompts(&recorded(dir.path(), "e.jsonl", "\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no prompts"), "{e}");
    }

    #[test]
    fn the_config_refuses_what_would_make_a_rule_meaningless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.toml");
        let file = |name: &str| format!("{name} = {{ path = \"/x/{name}\", sha256 = \"00\" }}\n");
        let base = [
            "model_config",
            "tokenizer",
            "base_model",
            "sft_model",
            "train_prompts",
            "heldout_prompts",
        ]
        .map(file)
        .concat()
            + "base_url = \"http://h/v1\"\nmodel = \"judge\"\nattempt_budget_tokens = 1000\n";
        std::fs::write(&path, &base).unwrap();
        let c = OperatorConfig::load(&path).unwrap();
        assert_eq!(
            (c.judge_verdict_cap, c.concurrency, c.threads),
            (20_000, 8, None)
        );
        assert!(c
            .render("Hi.")
            .contains("### Instruction:\nHi.\n\n### Response:\n"));
        for extra in [
            "prompt_template = \"no slot\"\n",
            "prompt_template = \"{prompt}{prompt}\"\n",
            "concurrency = 0\n",
            "judge_verdict_cap = 0\n",
            "threads = 0\n",
            "unknown = 1\n",
        ] {
            std::fs::write(&path, format!("{base}{extra}")).unwrap();
            assert!(OperatorConfig::load(&path).is_err(), "{extra}");
        }
    }
}
