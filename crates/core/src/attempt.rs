//! Attempts: one agent's try at one task under a time limit.
//!
//! The public folder (given to `start --dir`) holds only the starting solution and the
//! instructions. Everything private (the attempt record, the score log, raw samples, monitor
//! timelines) lives under `$RDBENCH_HOME/attempts/<id>/`, where `<id>` (`att-` and 32 hex
//! digits) is drawn at random by `start` and printed: the platform names an attempt by its id,
//! which nothing in the agent's folder can redirect (a folder can be renamed and replaced by a
//! link to another; an id cannot). Looking an attempt up by its folder is kept for the agent's
//! convenience through an index, `attempts/by-dir/<hash of the canonical path>`; homes from
//! before the random ids keep their path-derived ids and are still found.
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

/// The index key of a public folder (and the whole id of attempts started before ids were
/// random).
pub fn attempt_id(canonical_dir: &Path) -> String {
    let hash = hex::encode(Sha256::digest(canonical_dir.as_os_str().as_encoded_bytes()));
    hash[..16].to_string()
}

const ID_PREFIX: &str = "att-";

/// A fresh attempt id: `att-` and 128 random bits in hex.
pub fn new_attempt_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Error::Environment(format!("no randomness for an attempt id: {e}")))?;
    Ok(format!("{ID_PREFIX}{}", hex::encode(bytes)))
}

/// Whether `s` has the form of an attempt id (and so can name a folder of the home safely).
pub fn is_attempt_id(s: &str) -> bool {
    s.strip_prefix(ID_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// How a command names an attempt: by the id `start` printed, or by its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptRef {
    Id(String),
    Dir(PathBuf),
}

impl AttemptRef {
    /// An argument that has the form of an id is one; anything else is a folder (write
    /// `./att-...` for a folder named like an id).
    pub fn parse(arg: &Path) -> AttemptRef {
        match arg.to_str() {
            Some(s) if is_attempt_id(s) => AttemptRef::Id(s.to_string()),
            _ => AttemptRef::Dir(arg.to_path_buf()),
        }
    }
}

impl std::fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptRef::Id(id) => f.write_str(id),
            AttemptRef::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// The folder index: `by-dir/<key>` holds the id of the attempt started on that folder.
const BY_DIR: &str = "by-dir";

fn index_path(home: &Home, canonical_dir: &Path) -> PathBuf {
    home.attempts_dir()
        .join(BY_DIR)
        .join(attempt_id(canonical_dir))
}

/// The id the index holds for a folder, if it names an attempt that exists.
fn indexed_id(home: &Home, canonical_dir: &Path) -> Option<String> {
    let bytes = crate::fsutil::read_untrusted(&index_path(home, canonical_dir), 64).ok()?;
    let id = String::from_utf8(bytes).ok()?;
    (is_attempt_id(&id) && home.attempts_dir().join(&id).join("attempt.json").exists())
        .then_some(id)
}

/// The answer for an id with no attempt (and, through the service, another user's id).
pub fn no_such_id(id: &str) -> Error {
    Error::Usage(format!("{id}: no such attempt"))
}

/// The answer for a folder with no attempt (also what the service gives an agent for another
/// user's attempt: one wording, so the two cannot be told apart).
pub fn no_attempt_here(dir: &Path) -> Error {
    Error::Usage(format!(
        "{}: no attempt was started here; run `rdbench start <task> --dir {}` first",
        dir.display(),
        dir.display()
    ))
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
        let id = new_attempt_id()?;
        let final_dir = home.attempts_dir().join(&id);
        if indexed_id(home, dir).is_some()
            || home
                .attempts_dir()
                .join(attempt_id(dir))
                .join("attempt.json")
                .exists()
        {
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

    /// Opens the attempt `what` names; a folder is resolved here, with this process's rights.
    pub fn open_ref(home: &Home, what: &AttemptRef) -> Result<Attempt> {
        match what {
            AttemptRef::Id(id) => Attempt::open_id(home, id),
            AttemptRef::Dir(dir) => Attempt::open(home, dir),
        }
    }

    /// Opens the attempt with the id `start` printed.
    pub fn open_id(home: &Home, id: &str) -> Result<Attempt> {
        if !is_attempt_id(id) {
            return Err(Error::Usage(format!(
                "{id:?}: not an attempt id (`start` prints one: att- and 32 hex digits)"
            )));
        }
        Attempt::load(home, home.attempts_dir().join(id), || no_such_id(id))
    }

    /// Opens the attempt started on the canonical path `dir` without touching that path (the
    /// scoring service takes it from the client, which resolved it with the agent's rights).
    pub fn open_canonical(home: &Home, dir: &Path) -> Result<Attempt> {
        let id = indexed_id(home, dir).unwrap_or_else(|| attempt_id(dir));
        // The message names the agent's folder only, never the private one.
        Attempt::load(home, home.attempts_dir().join(id), || no_attempt_here(dir))
    }

    fn load(home: &Home, private_dir: PathBuf, missing: impl Fn() -> Error) -> Result<Attempt> {
        let path = private_dir.join("attempt.json");
        let bytes = std::fs::read(&path).map_err(|_| missing())?;
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

/// Creates the index entry `index` naming `id`, exclusively; fails if it names an attempt
/// that exists.
fn claim_index(index: &Path, id: &str, attempts_dir: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = index.parent() {
        crate::fsutil::create_private_dir_all(dir)?;
    }
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(index)
        {
            Ok(mut f) => {
                f.write_all(id.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::io(index, e))?;
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let held = crate::fsutil::read_untrusted(index, 64).unwrap_or_default();
                let held = String::from_utf8_lossy(&held).into_owned();
                if is_attempt_id(&held) && attempts_dir.join(&held).join("attempt.json").exists() {
                    return Err(Error::Usage(
                        "an attempt already exists for this folder; use a new folder".into(),
                    ));
                }
                let _ = std::fs::remove_file(index);
            }
            Err(e) => return Err(Error::io(index, e)),
        }
    }
    Err(Error::Usage(
        "another `start` on this folder is under way; use a new folder".into(),
    ))
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
        let home_attempts = self
            .final_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // The folder's index entry first, created exclusively: of two `start`s racing on one
        // folder exactly one gets it. An entry naming no attempt is a killed `start`'s and is
        // taken over.
        let index = home_attempts
            .join(BY_DIR)
            .join(attempt_id(&self.attempt.record.dir));
        let claimed = claim_index(&index, &self.attempt.record.id, &home_attempts);
        if let Err(e) = claimed {
            let _ = std::fs::remove_dir_all(&self.attempt.private_dir);
            return Err(e);
        }
        if let Err(e) = std::fs::rename(&self.attempt.private_dir, &self.final_dir) {
            let _ = std::fs::remove_file(&index);
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

    /// `(home's folder, work folder, home)`: a fresh home and an empty work folder. Each folder
    /// is removed when dropped, so a test keeps the first bound too.
    fn home_and_work() -> (tempfile::TempDir, tempfile::TempDir, Home) {
        let home_dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        (home_dir, work, home)
    }

    #[test]
    fn create_then_open_and_private_state_is_outside() {
        let (_home_dir, work, home) = home_and_work();
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
        let (home_dir, work, home) = home_and_work();
        let err = Attempt::open(&home, work.path()).unwrap_err().to_string();
        assert!(err.contains("rdbench start"), "{err}");
        assert!(!err.contains(home_dir.path().to_str().unwrap()), "{err}");
    }

    #[test]
    fn a_staged_attempt_is_invisible_until_published_and_stale_staging_is_swept() {
        let (_home_dir, work, home) = home_and_work();
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
        let (_home_dir, work, home) = home_and_work();
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
        let (_home_dir, work, home) = home_and_work();
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
        assert!(Attempt::open(&home, other.path()).is_err());
        let left: Vec<_> = std::fs::read_dir(home.attempts_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != BY_DIR && n != &a.record.id)
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn ids_are_random_and_name_the_attempt_whatever_happens_to_its_folder() {
        let (_home_dir, work, home) = home_and_work();
        let p = work.path().canonicalize().unwrap().join("p");
        let q = work.path().canonicalize().unwrap().join("q");
        std::fs::create_dir(&p).unwrap();
        std::fs::create_dir(&q).unwrap();
        let a = Attempt::create(&home, "t", "tiny", "agent", &p, None).unwrap();
        let b = Attempt::create(&home, "t", "tiny", "agent", &q, None).unwrap();
        assert!(is_attempt_id(&a.record.id) && is_attempt_id(&b.record.id));
        assert_ne!(a.record.id, b.record.id);
        assert_ne!(a.record.id, attempt_id(&p), "not derived from the path");
        // The agent swaps its folders: by path, P now reaches Q's attempt; by id, never.
        std::fs::rename(&p, work.path().join("p.old")).unwrap();
        std::os::unix::fs::symlink(&q, &p).unwrap();
        assert_eq!(Attempt::open(&home, &p).unwrap().record.id, b.record.id);
        let by_id = Attempt::open_ref(&home, &AttemptRef::Id(a.record.id.clone())).unwrap();
        assert_eq!(by_id.record.dir, p);
        // Ids are checked for their form before they name a folder of the home.
        for bad in ["../x", "att-../../etc", "att-ABC", "", "by-dir"] {
            assert!(Attempt::open_id(&home, bad).is_err(), "{bad}");
        }
        assert_eq!(
            AttemptRef::parse(Path::new(&a.record.id)),
            AttemptRef::Id(a.record.id.clone())
        );
        assert_eq!(
            AttemptRef::parse(Path::new("./x")),
            AttemptRef::Dir("./x".into())
        );
        let unknown = format!("att-{}", "0".repeat(32));
        let err = Attempt::open_id(&home, &unknown).unwrap_err().to_string();
        assert!(err.contains("no such attempt"), "{err}");
    }

    #[test]
    fn of_two_starts_on_one_folder_one_wins_and_a_killed_start_blocks_nothing() {
        let (_home_dir, work, home) = home_and_work();
        let dir = work.path().canonicalize().unwrap();
        let first = Attempt::stage(&home, "t", "tiny", "a", &dir, None, None).unwrap();
        let second = Attempt::stage(&home, "t", "tiny", "a", &dir, None, None).unwrap();
        first.publish().unwrap();
        assert!(matches!(second.publish(), Err(Error::Usage(_))));
        // An index entry naming no attempt (a `start` killed between its two steps).
        let other = tempfile::tempdir().unwrap();
        let other_dir = other.path().canonicalize().unwrap();
        std::fs::write(
            index_path(&home, &other_dir),
            format!("att-{}", "1".repeat(32)),
        )
        .unwrap();
        Attempt::create(&home, "t", "tiny", "a", &other_dir, None).unwrap();
    }

    #[test]
    fn an_attempt_of_a_home_from_before_random_ids_still_opens_by_folder() {
        let (_home_dir, work, home) = home_and_work();
        let dir = work.path().canonicalize().unwrap();
        let a = Attempt::create(&home, "t", "tiny", "a", &dir, None).unwrap();
        // Rewrite it the old way: private folder and id from the path, no index.
        let legacy = home.attempts_dir().join(attempt_id(&dir));
        std::fs::rename(&a.private_dir, &legacy).unwrap();
        std::fs::remove_file(index_path(&home, &dir)).unwrap();
        let mut record = a.record.clone();
        record.id = attempt_id(&dir);
        std::fs::write(
            legacy.join("attempt.json"),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert_eq!(
            Attempt::open(&home, &dir).unwrap().record.id,
            attempt_id(&dir)
        );
    }

    #[test]
    fn deadline_and_lateness() {
        let (_home_dir, work, home) = home_and_work();
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
