//! The attempt's score log: append-only JSON lines, one [`ScoreEntry`] per scoring call.
//!
//! Safe under concurrent scorers: every append takes an exclusive `flock` on the log, writes
//! one whole line with a single `write` on an `O_APPEND` descriptor and `fsync`s it. Safe under
//! a crash mid-write: a torn last line (no trailing newline) is fenced off with a newline before
//! the next append and reported, not parsed, by [`ScoreLog::read`], so it never hides the
//! entries after it.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::outcome::InvalidKind;
use crate::{Error, Result};

/// One scoring call, valid or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreEntry {
    pub timestamp: DateTime<Utc>,
    pub task: String,
    pub profile: String,
    /// False when the submission was invalid; `raw` and `normalized` are then absent (NaN).
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<f64>,
    /// Why the submission is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The class of an invalid submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<InvalidKind>,
    /// The task's one-line summary of a valid run (e.g. the median and its noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Correct where it ran, but not measured (the CPU emulator): never a score.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unscored: bool,
    /// SHA-256 of the submission files the scorer read.
    pub submission_sha256: String,
    /// Device fingerprint id the score was measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Calibration used to normalize: (start, reference) raw scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<[f64; 2]>,
    /// Wall time of the whole scoring call, seconds.
    pub wall_s: f64,
    /// Task-specific measurements.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Summary of the GPU (or /proc) monitor during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<serde_json::Value>,
    /// Raw samples file, relative to the attempt's private folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_file: Option<String>,
    /// Monitor timeline file, relative to the attempt's private folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline_file: Option<String>,
}

/// A problem found while reading the log: a torn or malformed line that was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct LogWarning {
    pub line: usize,
    pub message: String,
}

/// Handle on one score log file.
#[derive(Debug, Clone)]
pub struct ScoreLog {
    path: PathBuf,
}

impl ScoreLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ScoreLog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry as a single line. Never rewrites earlier bytes.
    pub fn append(&self, entry: &ScoreEntry) -> Result<()> {
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| Error::Internal(format!("serializing score entry: {e}")))?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent() {
            crate::fsutil::create_private_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        file.lock_exclusive()
            .map_err(|e| Error::io(&self.path, e))?;
        let result = (|| -> std::io::Result<()> {
            // Fence off a line torn by a crash so this entry starts on a line of its own.
            let len = file.metadata()?.len();
            if len > 0 {
                file.seek(SeekFrom::Start(len - 1))?;
                let mut last = [0u8; 1];
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    line.insert(0, b'\n');
                }
            }
            file.write_all(&line)?;
            file.sync_data()
        })();
        let _ = FileExt::unlock(&file);
        result.map_err(|e| Error::io(&self.path, e))
    }

    /// Reads every well-formed entry, in order, with warnings for lines that were skipped.
    /// A missing log reads as empty.
    pub fn read(&self) -> Result<(Vec<ScoreEntry>, Vec<LogWarning>)> {
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ScoreEntry>(line) {
                Ok(entry) => entries.push(entry),
                Err(e) => warnings.push(LogWarning {
                    line: i + 1,
                    message: format!("skipped a malformed line (torn write?): {e}"),
                }),
            }
        }
        Ok((entries, warnings))
    }
}

/// How the final score of an attempt is chosen from its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The best valid normalized score (visible-score tasks).
    Best,
    /// The last entry, valid or not (tasks whose score is hidden from the agent).
    Last,
}

/// Picks the entry that counts. Entries without a normalized score rank below any valid one.
pub fn select_final(entries: &[ScoreEntry], selection: Selection) -> Option<&ScoreEntry> {
    match selection {
        Selection::Last => entries.last(),
        Selection::Best => entries
            .iter()
            .filter(|e| e.valid && e.normalized.is_some_and(f64::is_finite))
            .max_by(|a, b| a.normalized.unwrap().total_cmp(&b.normalized.unwrap()))
            .or_else(|| entries.iter().rev().find(|e| e.valid && !e.unscored))
            .or_else(|| entries.last()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(valid: bool, normalized: Option<f64>) -> ScoreEntry {
        ScoreEntry {
            timestamp: Utc::now(),
            task: "t".into(),
            profile: "tiny".into(),
            valid,
            raw: normalized.map(|n| -n),
            normalized,
            reason: (!valid).then(|| "wrong".to_string()),
            kind: (!valid).then_some(InvalidKind::WrongOutput),
            headline: None,
            unscored: false,
            submission_sha256: "00".into(),
            device: None,
            calibration: None,
            wall_s: 1.0,
            details: serde_json::Value::Null,
            monitor: None,
            samples_file: None,
            timeline_file: None,
        }
    }

    #[test]
    fn the_log_and_its_folder_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = ScoreLog::new(dir.path().join("a/b/log.jsonl"));
        log.append(&entry(true, Some(0.5))).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(log.path()), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }

    #[test]
    fn append_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let log = ScoreLog::new(dir.path().join("log.jsonl"));
        log.append(&entry(true, Some(0.5))).unwrap();
        log.append(&entry(false, None)).unwrap();
        let (entries, warnings) = log.read().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(warnings.is_empty());
        assert_eq!(entries[0].normalized, Some(0.5));
        assert!(!entries[1].valid);
    }

    #[test]
    fn torn_line_is_fenced_off_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = ScoreLog::new(&path);
        log.append(&entry(true, Some(0.1))).unwrap();
        // A crash mid-write leaves half a line without its newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"timestamp\":\"2026-").unwrap();
        drop(f);
        log.append(&entry(true, Some(0.9))).unwrap();
        let (entries, warnings) = log.read().unwrap();
        assert_eq!(entries.len(), 2, "both whole entries survive the torn one");
        assert_eq!(entries[1].normalized, Some(0.9));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 2);
    }

    #[test]
    fn concurrent_appends_keep_every_line_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = path.clone();
                s.spawn(move || {
                    let log = ScoreLog::new(path);
                    for i in 0..25 {
                        log.append(&entry(true, Some((t * 100 + i) as f64)))
                            .unwrap();
                    }
                });
            }
        });
        let (entries, warnings) = ScoreLog::new(&path).read().unwrap();
        assert!(warnings.is_empty());
        assert_eq!(entries.len(), 100);
    }

    #[test]
    fn best_ignores_invalid_and_last_takes_last() {
        let entries = vec![
            entry(true, Some(0.3)),
            entry(true, Some(0.8)),
            entry(false, None),
        ];
        assert_eq!(
            select_final(&entries, Selection::Best).unwrap().normalized,
            Some(0.8)
        );
        assert!(!select_final(&entries, Selection::Last).unwrap().valid);
        assert!(select_final(&[], Selection::Best).is_none());
    }
}
