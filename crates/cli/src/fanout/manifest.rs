//! The fanout manifest: which submissions to score, one scoring job per line, read and
//! validated whole before anything runs (a raw line becomes a [`Job`] only once every field
//! is checked), so a scheduler never starts an array of jobs that half fail on a typo.
//!
//! The format is JSON lines, versioned by its first line:
//!
//! ```text
//! {"rdbench_manifest": 1}
//! {"task": "tree-traversal", "profile": "tiny", "submission": "subs/alice", "agent": "alice"}
//! {"task": "tree-traversal", "submission": "/srv/subs/bob", "seed": 7, "label": "run 2"}
//! ```
//!
//! Job `N` (the scheduler's array index, from 0) is the `N`-th job line (line `N + 2`). A
//! relative `submission` is relative to the manifest's folder. A bad manifest is a usage error
//! (exit 2) on one line naming the file, the line and what is wrong.

use std::path::{Path, PathBuf};

use rdbench_client::command::DEFAULT_PROFILE;
use rdbench_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::registry;

/// The manifest version this binary reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The largest manifest read (a million short lines): it is read whole.
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// The manifest's first line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    rdbench_manifest: u32,
}

/// One scoring job: a submission of a task's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub task: String,
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The submission folder, as the manifest names it (its files are read untrusted).
    pub submission: PathBuf,
    /// The scoring run's seed (the secret inputs it draws) [default: a fresh random one].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Who made the submission: the attempt summary's `agent`, which `aggregate` groups by.
    #[serde(default = "default_agent")]
    pub agent: String,
    /// Free text kept with the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

fn default_profile() -> String {
    DEFAULT_PROFILE.into()
}

fn default_agent() -> String {
    "unknown".into()
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file, as given.
    pub path: PathBuf,
    pub jobs: Vec<Job>,
    /// Whether any job's profile can only be scored on a GPU.
    pub needs_gpu: bool,
}

impl Manifest {
    /// Reads and validates the whole manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest> {
        let bad = |line: usize, what: String| {
            Error::Usage(format!("{}: line {line}: {what}", path.display()))
        };
        let text = read_bounded(path)?;
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let header = match lines.next() {
            Some((_, first)) => serde_json::from_str::<Header>(first).map_err(|e| {
                bad(
                    1,
                    format!(
                        "the first line must be {{\"rdbench_manifest\": {MANIFEST_VERSION}}}: {e}"
                    ),
                )
            })?,
            None => return Err(bad(1, "empty file: no header, no jobs".into())),
        };
        if header.rdbench_manifest != MANIFEST_VERSION {
            return Err(bad(
                1,
                format!(
                    "manifest version {} is not {MANIFEST_VERSION}, the one this rdbench reads",
                    header.rdbench_manifest
                ),
            ));
        }
        let mut jobs = Vec::new();
        let mut needs_gpu = false;
        for (line, raw) in lines {
            let job: Job = serde_json::from_str(raw).map_err(|e| bad(line, e.to_string()))?;
            needs_gpu |= validate(&job).map_err(|e| bad(line, e))?;
            jobs.push(job);
        }
        if jobs.is_empty() {
            return Err(bad(
                2,
                "no jobs: one JSON object per line after the header".into(),
            ));
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            jobs,
            needs_gpu,
        })
    }

    /// Job `index`, or a usage error naming the manifest's range.
    pub fn job(&self, index: usize) -> Result<&Job> {
        self.jobs.get(index).ok_or_else(|| {
            Error::Usage(format!(
                "{}: no job {index}: it has {} jobs, 0 to {}",
                self.path.display(),
                self.jobs.len(),
                self.jobs.len() - 1
            ))
        })
    }

    /// Where `job`'s submission is, absolute (the untrusted reader walks from `/`): a relative
    /// path is relative to the manifest's folder.
    pub fn submission_dir(&self, job: &Job) -> Result<PathBuf> {
        let dir = match self.path.parent() {
            Some(dir) => dir.join(&job.submission),
            None => job.submission.clone(),
        };
        super::absolute(&dir)
    }
}

/// Checks a job's fields against the task registry; returns whether its profile needs a GPU.
fn validate(job: &Job) -> std::result::Result<bool, String> {
    let task = registry::find(&job.task).map_err(|e| format!("task: {e}"))?;
    let needs_gpu = task
        .info()
        .profile(&job.profile)
        .map_err(|e| format!("profile: {e}"))?
        .needs_gpu;
    if job.submission.as_os_str().is_empty() {
        return Err("submission: empty path".into());
    }
    rdbench_attempts::start::check_agent_name(&job.agent).map_err(|e| format!("agent: {e}"))?;
    Ok(needs_gpu)
}

/// The manifest's text (the operator's file: a link to it is followed), refused above
/// [`MAX_MANIFEST_BYTES`] before it is read.
fn read_bounded(path: &Path) -> Result<String> {
    let cannot = |e: &dyn std::fmt::Display| {
        Error::Usage(format!("{}: cannot read the manifest: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let bytes = rdbench_core::fsutil::read_untrusted_file(file, MAX_MANIFEST_BYTES)
        .map_err(|e| cannot(&e))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::Usage(format!("{}: not UTF-8 text", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, text).unwrap();
        Manifest::load(&path)
    }

    fn error(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_jobs_with_defaults_and_knows_gpu_profiles() {
        let m = load(
            "{\"rdbench_manifest\": 1}\n\
             {\"task\": \"tree-traversal\", \"submission\": \"a\"}\n\
             {\"task\": \"prefix-sum\", \"profile\": \"tiny\", \"submission\": \"/b\", \"seed\": 7, \"agent\": \"x\"}\n",
        )
        .unwrap();
        assert_eq!(m.jobs.len(), 2);
        assert_eq!(m.jobs[0].profile, "tiny");
        assert_eq!(m.jobs[0].agent, "unknown");
        assert_eq!(m.jobs[1].seed, Some(7));
        assert!(m.needs_gpu, "prefix-sum needs a GPU");
        assert_eq!(m.submission_dir(&m.jobs[1]).unwrap(), PathBuf::from("/b"));
        let relative = m.submission_dir(&m.jobs[0]).unwrap();
        assert!(
            relative.is_absolute() && relative.ends_with("a"),
            "{relative:?}"
        );
        assert!(m.job(2).unwrap_err().to_string().contains("0 to 1"));
    }

    #[test]
    fn every_error_names_the_line_and_what_is_wrong() {
        let head = "{\"rdbench_manifest\": 1}\n";
        for (text, line, what) in [
            ("", 1, "empty file"),
            ("{\"rdbench_manifest\": 2}\n", 1, "version 2"),
            ("{\"task\": \"x\"}\n", 1, "first line"),
            (head, 2, "no jobs"),
            (
                &format!("{head}{{\"task\": \"nope\", \"submission\": \"a\"}}"),
                2,
                "unknown task",
            ),
            (
                &format!("{head}{{\"task\": \"tree-traversal\", \"profile\": \"huge\", \"submission\": \"a\"}}"),
                2,
                "no profile",
            ),
            (
                &format!("{head}{{\"task\": \"tree-traversal\", \"submission\": \"a\", \"extra\": 1}}"),
                2,
                "unknown field",
            ),
            (
                &format!("{head}{{\"task\": \"tree-traversal\", \"submission\": \"a\"}}\n\n"),
                3,
                "EOF",
            ),
            (
                &format!("{head}{{\"task\": \"tree-traversal\", \"submission\": \"a\", \"agent\": \"\"}}"),
                2,
                "agent",
            ),
        ] {
            let e = error(text);
            assert!(e.contains(&format!("m.jsonl: line {line}: ")), "{e}");
            assert!(e.contains(what), "{e} lacks {what}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
