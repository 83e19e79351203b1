//! The `full` profile's inputs, all the operator's: a CodeContests JSONL of held-out problems
//! (METR used 175 from Hugging Face's `code_contests`), optionally a visible one for the
//! attempt's folder, each checked against the sha256 the operator recorded (the manifest), and
//! an OpenAI-compatible endpoint with its model and key. They are named by a TOML file at
//! `$RDBENCH_CODECONTESTS_FULL` in the scorer's environment:
//!
//! ```toml
//! problems = "/srv/codecontests/test.jsonl"
//! problems_sha256 = "…"                       # of the file's bytes, hex
//! visible = "/srv/codecontests/valid.jsonl"   # optional
//! visible_sha256 = "…"                        # required with `visible`
//! base_url = "https://api.openai.com/v1"
//! model = "gpt-3.5-turbo-0125"
//! key_file = "/srv/rdbench/openai.key"        # optional; read by the proxy only
//! run_budget_tokens = 2000000
//! attempt_budget_tokens = 100000000
//! problem_deadline_s = 120                    # optional
//! concurrency = 8                             # optional: problems run at once
//! ```
//!
//! The files are the scorer's: the agent reads none of them (the visible file is copied into
//! its folder). A file whose hash differs from the manifest, a malformed line (named by its
//! number) or an empty split is an environment error, so a scoring run never starts on
//! problems other than the recorded ones.

use std::path::{Path, PathBuf};

use rdbench_contests::ContestProblem;
use rdbench_core::{Error, Result};
use serde::Deserialize;

/// The variable naming the operator's TOML file.
pub const CONFIG_VAR: &str = "RDBENCH_CODECONTESTS_FULL";
/// Largest problems file read, bytes (CodeContests' test split with generated tests is tens of
/// megabytes).
const MAX_FILE_BYTES: u64 = 2 << 30;

/// The operator's TOML file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    pub problems: PathBuf,
    pub problems_sha256: String,
    #[serde(default)]
    pub visible: Option<PathBuf>,
    #[serde(default)]
    pub visible_sha256: Option<String>,
    pub base_url: String,
    pub model: String,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    pub run_budget_tokens: u64,
    pub attempt_budget_tokens: u64,
    #[serde(default = "default_deadline")]
    pub problem_deadline_s: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_deadline() -> u64 {
    120
}

fn default_concurrency() -> usize {
    8
}

impl OperatorConfig {
    /// The file `$RDBENCH_CODECONTESTS_FULL` names, read and checked for shape (not the
    /// problem files: [`Self::problems`] reads those).
    pub fn from_env() -> Result<OperatorConfig> {
        OperatorConfig::load(&rdbench_core::operator::config_path(
            CONFIG_VAR,
            "codecontests-scaffold/full needs the operator's problems and endpoint",
            "docs/codecontests-scaffold.md",
        )?)
    }

    pub fn load(path: &Path) -> Result<OperatorConfig> {
        let bad = |m: String| Error::Environment(format!("{}: {m}", path.display()));
        let c: OperatorConfig = rdbench_core::operator::read_toml(path)?;
        if c.visible.is_some() != c.visible_sha256.is_some() {
            return Err(bad("`visible` and `visible_sha256` go together".into()));
        }
        if c.model.trim().is_empty() || c.base_url.trim().is_empty() {
            return Err(bad("`model` and `base_url` must not be empty".into()));
        }
        if c.run_budget_tokens == 0 || c.attempt_budget_tokens < c.run_budget_tokens {
            return Err(bad(
                "`run_budget_tokens` must be positive and at most `attempt_budget_tokens`".into(),
            ));
        }
        if c.concurrency == 0 || c.problem_deadline_s == 0 {
            return Err(bad(
                "`concurrency` and `problem_deadline_s` must be positive".into(),
            ));
        }
        Ok(c)
    }

    /// The held-out problems, checked against the manifest.
    pub fn problems(&self) -> Result<Vec<ContestProblem>> {
        read_problems(&self.problems, &self.problems_sha256)
    }

    /// The visible problems, checked against the manifest; none when not configured.
    pub fn visible(&self) -> Result<Vec<ContestProblem>> {
        match (&self.visible, &self.visible_sha256) {
            (Some(path), Some(sha)) => read_problems(path, sha),
            _ => Ok(Vec::new()),
        }
    }
}

/// A CodeContests JSONL whose bytes hash to `sha256`: one problem per non-empty line.
pub fn read_problems(path: &Path, sha256: &str) -> Result<Vec<ContestProblem>> {
    let bad = |m: String| Error::Environment(format!("{}: {m}", path.display()));
    let bytes = rdbench_core::fsutil::read_recorded(path, sha256, MAX_FILE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: ContestProblem = serde_json::from_str(line)
            .map_err(|e| bad(format!("line {}: not a CodeContests problem: {e}", i + 1)))?;
        if !p.is_well_formed() || p.public_tests.is_empty() && p.private_tests.is_empty() {
            return Err(bad(format!(
                "line {}: problem {:?} has no tests, or inputs without outputs",
                i + 1,
                p.name
            )));
        }
        problems.push(p);
    }
    if problems.is_empty() {
        return Err(bad("no problems".into()));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn line(name: &str) -> String {
        serde_json::json!({
            "name": name, "description": "Print 1.", "cf_rating": 800,
            "public_tests": {"input": ["\n"], "output": ["1\n"]},
            "private_tests": {"input": [], "output": []},
        })
        .to_string()
    }

    #[test]
    fn problems_load_only_when_the_file_matches_its_recorded_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.jsonl");
        let text = format!("{}\n\n{}\n", line("a"), line("b"));
        std::fs::write(&path, &text).unwrap();
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        let problems = read_problems(&path, &sha).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[1].name, "b");
        let wrong = read_problems(&path, &"0".repeat(64)).unwrap_err();
        assert!(wrong.to_string().contains("not the recorded"), "{wrong}");
        std::fs::write(&path, format!("{}\n{{\"name\": 1}}\n", line("a"))).unwrap();
        let text = std::fs::read(&path).unwrap();
        let e = read_problems(&path, &hex::encode(Sha256::digest(&text))).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn the_config_refuses_what_would_make_a_rule_meaningless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.toml");
        let base = "problems = \"/p\"\nproblems_sha256 = \"x\"\nbase_url = \"http://h/v1\"\n\
                    model = \"m\"\nrun_budget_tokens = 10\nattempt_budget_tokens = 100\n";
        std::fs::write(&path, base).unwrap();
        let c = OperatorConfig::load(&path).unwrap();
        assert_eq!((c.concurrency, c.problem_deadline_s), (8, 120));
        for extra in ["visible = \"/v\"\n", "concurrency = 0\n", "unknown = 1\n"] {
            std::fs::write(&path, format!("{base}{extra}")).unwrap();
            assert!(OperatorConfig::load(&path).is_err(), "{extra}");
        }
        std::fs::write(&path, base.replace("= 100", "= 5")).unwrap();
        assert!(OperatorConfig::load(&path).is_err());
    }
}
