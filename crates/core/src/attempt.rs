//! Attempts: one agent's try at one task under a time limit.
//!
//! The public folder (given to `start --dir`) holds only the starting solution and the
//! instructions. Everything private (the attempt record, the score log, raw samples, monitor
//! timelines) lives under `$RDBENCH_HOME/attempts/<id>/`, where `<id>` is derived from the
//! folder's canonical path, so nothing inside the folder can redirect the scorer.
//!
//! Opening an attempt loads the home's [`InstallationKey`], which authenticates its score log.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::atomic_write;
use crate::home::Home;
use crate::score_log::ScoreLog;
use crate::secret::InstallationKey;
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
    /// The user the attempt belongs to (the caller of `start`, or the user it was started
    /// for): through the scoring service only that user, or the operator, may use it.
    #[serde(default)]
    pub owner_uid: Option<u32>,
}

/// An attempt, the location of its private state, and the key of its score log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub record: AttemptRecord,
    pub private_dir: PathBuf,
    key: InstallationKey,
}

const SCORE_LOG: &str = "score_log.jsonl";

fn canonical(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize().map_err(|e| Error::io(dir, e))
}

/// The private id of a public folder.
pub fn attempt_id(canonical_dir: &Path) -> String {
    let hash = hex::encode(Sha256::digest(canonical_dir.as_os_str().as_encoded_bytes()));
    hash[..16].to_string()
}

impl Attempt {
    /// Creates the private state of a new attempt on `dir` (which must exist), at once.
    pub fn create(
        home: &Home,
        task: &str,
        profile: &str,
        agent: &str,
        dir: &Path,
        time_limit_minutes: Option<f64>,
    ) -> Result<Attempt> {
        let dir = canonical(dir)?;
        Attempt::stage(home, task, profile, agent, &dir, time_limit_minutes, None)?.publish()
    }

    /// Prepares a new attempt on the canonical path `dir` in a staging folder of the home,
    /// invisible to `open` until [`StagedAttempt::publish`]: a `start` killed half-way leaves
    /// no half-started attempt, only a staging folder that [`sweep_stale`] removes.
    pub fn stage(
        home: &Home,
        task: &str,
        profile: &str,
        agent: &str,
        dir: &Path,
        time_limit_minutes: Option<f64>,
        owner_uid: Option<u32>,
    ) -> Result<StagedAttempt> {
        let id = attempt_id(dir);
        let final_dir = home.attempts_dir().join(&id);
        if final_dir.join("attempt.json").exists() {
            return Err(Error::Usage(format!(
                "an attempt already exists for {}; use a new folder",
                dir.display()
            )));
        }
        if final_dir.starts_with(dir) {
            return Err(Error::Usage(format!(
                "RDBENCH_HOME ({}) is inside the attempt folder; the agent could read the score log",
                home.root().display()
            )));
        }
        // Before anything is written: a damaged key leaves no half-created attempt.
        let key = InstallationKey::load_or_create(home)?;
        let staging =
            home.attempts_dir()
                .join(format!("{STAGING_PREFIX}{}-{}", std::process::id(), &id));
        let _ = std::fs::remove_dir_all(&staging);
        crate::fsutil::create_private_dir_all(&staging)?;
        let record = AttemptRecord {
            id,
            task: task.to_string(),
            profile: profile.to_string(),
            agent: agent.to_string(),
            dir: dir.to_path_buf(),
            time_limit_minutes,
            started_at: Utc::now(),
            finished_at: None,
            owner_uid: owner_uid.or_else(|| Some(crate::fsutil::effective_uid())),
        };
        Ok(StagedAttempt {
            attempt: Attempt {
                record,
                private_dir: staging,
                key,
            },
            final_dir,
        })
    }

    /// Opens the attempt started on `dir`.
    pub fn open(home: &Home, dir: &Path) -> Result<Attempt> {
        let canon = canonical(dir)
            .map_err(|_| Error::Usage(format!("{}: no such attempt folder", dir.display())))?;
        Attempt::open_canonical(home, &canon)
    }

    /// Opens the attempt started on the canonical path `dir` without touching that path (the
    /// scoring service takes it from the client, which resolved it with the agent's rights).
    pub fn open_canonical(home: &Home, dir: &Path) -> Result<Attempt> {
        let private_dir = home.attempts_dir().join(attempt_id(dir));
        let path = private_dir.join("attempt.json");
        // The message names the agent's folder only, never the private one.
        let bytes = std::fs::read(&path).map_err(|_| {
            Error::Usage(format!(
                "{}: no attempt was started here; run `rdbench start <task> --dir {}` first",
                dir.display(),
                dir.display()
            ))
        })?;
        let record: AttemptRecord = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_input(&path, format!("malformed attempt record: {e}")))?;
        // A log already chained needs the key that chained it: a lost key is an error here,
        // not a fresh key that would make the whole log read as forged.
        let key = if log_is_chained(&private_dir.join(SCORE_LOG)) {
            InstallationKey::load(home)?
        } else {
            InstallationKey::load_or_create(home)?
        };
        Ok(Attempt {
            record,
            private_dir,
            key,
        })
    }

    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| Error::Internal(format!("serializing attempt: {e}")))?;
        atomic_write(&self.private_dir.join("attempt.json"), &json)
    }

    /// The attempt's score log, keyed for this attempt.
    pub fn score_log(&self) -> ScoreLog {
        ScoreLog::new(self.private_dir.join(SCORE_LOG), &self.key, &self.record.id)
    }

    /// The installation key (for deriving other per-purpose keys).
    pub fn installation_key(&self) -> &InstallationKey {
        &self.key
    }

    /// When the time limit runs out; `None` without a limit.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let minutes = self.record.time_limit_minutes?;
        let ms = minutes * 60_000.0;
        // A limit too large for a date has no deadline; a negative or NaN one is past.
        let ms = if ms.is_nan() {
            0.0
        } else {
            ms.min(i64::MAX as f64)
        };
        self.record
            .started_at
            .checked_add_signed(chrono::Duration::try_milliseconds(ms as i64)?)
    }

    /// Whether an entry logged at `now` is late: past the deadline, or after `finish`.
    pub fn is_late(&self, now: DateTime<Utc>) -> bool {
        self.deadline().is_some_and(|d| now > d) || self.record.finished_at.is_some_and(|f| now > f)
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

/// Staging folders of `start` begin with this; `<prefix><pid>-<id>`.
const STAGING_PREFIX: &str = ".staging-";

/// A new attempt being prepared; see [`Attempt::stage`].
#[derive(Debug)]
pub struct StagedAttempt {
    /// The attempt, its `private_dir` the staging folder (the task's private files go there).
    pub attempt: Attempt,
    final_dir: PathBuf,
}

impl StagedAttempt {
    /// Makes the attempt visible, atomically: its record is written into the staging folder,
    /// which is then renamed into place. Fails, leaving nothing, if another `start` on the
    /// same folder won the race.
    pub fn publish(mut self) -> Result<Attempt> {
        self.attempt.save()?;
        if let Err(e) = std::fs::rename(&self.attempt.private_dir, &self.final_dir) {
            let _ = std::fs::remove_dir_all(&self.attempt.private_dir);
            return Err(if self.final_dir.exists() {
                Error::Usage(format!(
                    "an attempt already exists for {}; use a new folder",
                    self.attempt.record.dir.display()
                ))
            } else {
                Error::io(&self.final_dir, e)
            });
        }
        self.attempt.private_dir = self.final_dir.clone();
        Ok(self.attempt)
    }

    /// Drops the staging folder (a failed `start`).
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.attempt.private_dir);
    }
}

/// Removes what killed processes left in the home: staging folders of `start` and scoring
/// snapshots whose process is gone. Returns how many it removed.
pub fn sweep_stale(home: &Home) -> usize {
    let mut removed = 0;
    let Ok(attempts) = std::fs::read_dir(home.attempts_dir()) else {
        return 0;
    };
    for entry in attempts.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(STAGING_PREFIX) {
            if owner_is_gone(rest) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
            continue;
        }
        let Ok(snapshots) = std::fs::read_dir(entry.path().join("snapshots")) else {
            continue;
        };
        for snap in snapshots.flatten() {
            let snap_name = snap.file_name().to_string_lossy().into_owned();
            if owner_is_gone(&snap_name) && std::fs::remove_dir_all(snap.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Whether the process whose id starts `name` (`<pid>-...`) no longer exists.
fn owner_is_gone(name: &str) -> bool {
    let Some(pid) = name.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for the process's existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

/// Whether the log at `path` holds a chained record (a MAC), read without following links.
fn log_is_chained(path: &Path) -> bool {
    const MAX: u64 = 1 << 30;
    crate::fsutil::read_untrusted(path, MAX)
        .map(|bytes| bytes.windows(7).any(|w| w == b"\"mac\":\""))
        .unwrap_or(false)
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
        assert!(!err.contains(home_dir.path().to_str().unwrap()), "{err}");
    }

    #[test]
    fn a_staged_attempt_is_invisible_until_published_and_stale_staging_is_swept() {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let dir = work.path().canonicalize().unwrap();
        let staged = Attempt::stage(&home, "t", "tiny", "a", &dir, None, Some(1234)).unwrap();
        assert!(Attempt::open(&home, &dir).is_err());
        let a = staged.publish().unwrap();
        assert_eq!(a.record.owner_uid, Some(1234));
        assert!(Attempt::open(&home, &dir).is_ok());
        // A staging folder of a process that no longer exists is swept; ours is not.
        let dead = home.attempts_dir().join(".staging-999999999-x");
        let ours = home
            .attempts_dir()
            .join(format!(".staging-{}-y", std::process::id()));
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::create_dir_all(&ours).unwrap();
        assert_eq!(sweep_stale(&home), 1);
        assert!(!dead.exists() && ours.exists());
    }

    fn test_entry() -> crate::score_log::ScoreEntry {
        serde_json::from_value(serde_json::json!({
            "timestamp": "2026-01-01T00:00:00Z", "task": "t", "profile": "tiny", "valid": true,
            "normalized": 0.5, "submission_sha256": "00", "wall_s": 1.0
        }))
        .unwrap()
    }

    #[test]
    fn the_log_written_at_create_verifies_after_open() {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let a = Attempt::create(&home, "t", "tiny", "agent", work.path(), Some(60.0)).unwrap();
        a.score_log().append(&test_entry()).unwrap();
        let b = Attempt::open(&home, work.path()).unwrap();
        let read = b.score_log().read_verified().unwrap();
        assert!(read.is_intact(), "{:?}", read.broken);
        assert_eq!(read.entries.len(), 1);
        assert!(!format!("{b:?}").contains(&hex::encode(b.installation_key().derive("x"))));
    }

    #[test]
    fn a_lost_key_with_a_chained_log_is_an_error_not_a_new_key() {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let a = Attempt::create(&home, "t", "tiny", "agent", work.path(), None).unwrap();
        a.score_log().append(&test_entry()).unwrap();
        std::fs::remove_file(InstallationKey::path_in(&home)).unwrap();
        let err = Attempt::open(&home, work.path()).unwrap_err().to_string();
        assert!(err.contains("installation key is missing"), "{err}");
        assert!(!InstallationKey::path_in(&home).exists());
        // A damaged key stops a new attempt before it leaves any state.
        std::fs::write(InstallationKey::path_in(&home), b"short").unwrap();
        let other = tempfile::tempdir().unwrap();
        let err = Attempt::create(&home, "t", "tiny", "agent", other.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("damaged installation key"), "{err}");
        let id = attempt_id(&other.path().canonicalize().unwrap());
        assert!(!home.attempts_dir().join(id).exists());
    }

    #[test]
    fn deadline_and_lateness() {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let mut a = Attempt::create(&home, "t", "tiny", "agent", work.path(), Some(1.5)).unwrap();
        let start = a.record.started_at;
        let deadline = a.deadline().unwrap();
        assert_eq!(deadline - start, chrono::Duration::seconds(90));
        assert!(!a.is_late(start));
        assert!(!a.is_late(deadline));
        assert!(a.is_late(deadline + chrono::Duration::milliseconds(1)));
        // Finishing early makes anything after it late.
        let finished = start + chrono::Duration::seconds(10);
        a.record.finished_at = Some(finished);
        assert!(!a.is_late(finished));
        assert!(a.is_late(finished + chrono::Duration::seconds(1)));
        // No limit: late only after finish.
        a.record.time_limit_minutes = None;
        a.record.finished_at = None;
        assert_eq!(a.deadline(), None);
        assert!(!a.is_late(start + chrono::Duration::days(1000)));
        // A limit past the calendar has no deadline rather than a wrapped one.
        a.record.time_limit_minutes = Some(1e300);
        assert_eq!(a.deadline(), None);
    }
}
