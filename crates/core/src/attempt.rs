//! Attempts: one agent's try at one task under a time limit.
//!
//! The public folder (given to `start --dir`) holds only the starting solution and the
//! instructions. Everything private (the attempt record, the score log, raw samples, monitor
//! timelines) lives under `$RDBENCH_HOME/attempts/<id>/`, where `<id>` is derived from the
//! folder's canonical path, so nothing inside the folder can redirect the scorer.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::atomic_write;
use crate::home::Home;
use crate::score_log::ScoreLog;
use crate::{Error, Result};

/// What `start` recorded about an attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub id: String,
    pub task: String,
    pub profile: String,
    pub agent: String,
    pub dir: PathBuf,
    pub time_limit_minutes: Option<f64>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// An attempt and the location of its private state.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub record: AttemptRecord,
    pub private_dir: PathBuf,
}

fn canonical(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize().map_err(|e| Error::io(dir, e))
}

/// The private id of a public folder.
pub fn attempt_id(canonical_dir: &Path) -> String {
    let hash = hex::encode(Sha256::digest(canonical_dir.as_os_str().as_encoded_bytes()));
    hash[..16].to_string()
}

impl Attempt {
    /// Creates the private state of a new attempt on `dir` (which must exist).
    pub fn create(
        home: &Home,
        task: &str,
        profile: &str,
        agent: &str,
        dir: &Path,
        time_limit_minutes: Option<f64>,
    ) -> Result<Attempt> {
        let dir = canonical(dir)?;
        let id = attempt_id(&dir);
        let private_dir = home.attempts_dir().join(&id);
        if private_dir.join("attempt.json").exists() {
            return Err(Error::Usage(format!(
                "an attempt already exists for {} (private state in {}); use a new folder",
                dir.display(),
                private_dir.display()
            )));
        }
        if private_dir.starts_with(&dir) {
            return Err(Error::Usage(format!(
                "RDBENCH_HOME ({}) is inside the attempt folder; the agent could read the score log",
                home.root().display()
            )));
        }
        crate::fsutil::create_private_dir_all(&private_dir)?;
        let record = AttemptRecord {
            id,
            task: task.to_string(),
            profile: profile.to_string(),
            agent: agent.to_string(),
            dir,
            time_limit_minutes,
            started_at: Utc::now(),
            finished_at: None,
        };
        let attempt = Attempt {
            record,
            private_dir,
        };
        attempt.save()?;
        Ok(attempt)
    }

    /// Opens the attempt started on `dir`.
    pub fn open(home: &Home, dir: &Path) -> Result<Attempt> {
        let canon = canonical(dir)
            .map_err(|_| Error::Usage(format!("{}: no such attempt folder", dir.display())))?;
        let private_dir = home.attempts_dir().join(attempt_id(&canon));
        let path = private_dir.join("attempt.json");
        let bytes = std::fs::read(&path).map_err(|_| {
            Error::Usage(format!(
                "{}: no attempt was started here (looked for {}); run `rdbench start <task> --dir {}` first",
                dir.display(),
                path.display(),
                dir.display()
            ))
        })?;
        let record: AttemptRecord = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_input(&path, format!("malformed attempt record: {e}")))?;
        Ok(Attempt {
            record,
            private_dir,
        })
    }

    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| Error::Internal(format!("serializing attempt: {e}")))?;
        atomic_write(&self.private_dir.join("attempt.json"), &json)
    }

    pub fn score_log(&self) -> ScoreLog {
        ScoreLog::new(self.private_dir.join("score_log.jsonl"))
    }

    /// Folder of raw samples, one file per scoring call.
    pub fn samples_dir(&self) -> PathBuf {
        self.private_dir.join("samples")
    }

    /// Folder of monitor timelines.
    pub fn timelines_dir(&self) -> PathBuf {
        self.private_dir.join("timelines")
    }

    /// Task-private scratch (held-out data, per-attempt secrets).
    pub fn task_private_dir(&self) -> PathBuf {
        self.private_dir.join("task")
    }

    pub fn summary_path(&self) -> PathBuf {
        self.private_dir.join("summary.json")
    }

    /// Minutes since the attempt started.
    pub fn elapsed_minutes(&self) -> f64 {
        (Utc::now() - self.record.started_at).num_milliseconds() as f64 / 60_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_open_and_private_state_is_outside() {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let a = Attempt::create(&home, "t", "tiny", "agent", work.path(), Some(60.0)).unwrap();
        assert!(!a
            .private_dir
            .starts_with(work.path().canonicalize().unwrap()));
        let b = Attempt::open(&home, work.path()).unwrap();
        assert_eq!(a.record.id, b.record.id);
        let again = Attempt::create(&home, "t", "tiny", "agent", work.path(), None);
        assert!(matches!(again, Err(Error::Usage(_))));
    }

    #[test]
    fn open_without_start_says_what_to_do() {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let err = Attempt::open(&Home::new(home_dir.path()), work.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("rdbench start"), "{err}");
    }
}
