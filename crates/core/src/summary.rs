//! The attempt summary `rdbench finish` writes, one JSON object per attempt; `rdbench
//! aggregate` reads files of these (one object, or JSON lines) from shared storage.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::score_log::Selection;

/// Schema tag written into every summary.
pub const SUMMARY_SCHEMA: &str = "rdbench.attempt-summary/1";

/// The result of one finished attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptSummary {
    pub schema: String,
    pub attempt_id: String,
    pub agent: String,
    pub task: String,
    pub task_family: String,
    pub profile: String,
    /// Per-attempt time limit, minutes (RE-Bench's `time_limit`).
    pub time_limit_minutes: Option<f64>,
    /// Final normalized score (0 = starting solution, 1 = reference); `None` if nothing valid.
    pub score: Option<f64>,
    /// Final raw score.
    pub raw: Option<f64>,
    /// How the final entry was chosen.
    pub selection: Selection,
    /// Whether the task hides its score from the agent.
    pub score_hidden: bool,
    /// Entries that could count: trusted (in the intact part of the chain) and not late.
    pub entries: usize,
    pub valid_entries: usize,
    /// Entries recorded after the time limit or after `finish`: kept, never counted.
    #[serde(default)]
    pub late_entries: usize,
    /// The first break in the score log's chain (tampering or damage), if any: entries from
    /// there on never count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_break: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Device fingerprint id of the final entry.
    pub device: Option<String>,
    /// Human time estimate of the task, minutes (for the time horizon), when known.
    pub human_minutes: Option<f64>,
}
