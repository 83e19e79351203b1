//! What one scoring run of a submission produced, typed end to end.
//!
//! A task returns a [`ScoreOutcome`]; the CLI turns it into a score-log entry without reading
//! task-specific details: a valid outcome carries the raw score and a one-line `headline` the
//! task wrote for reports; an invalid one carries an [`InvalidKind`] that tests, the exploit
//! corpus and `aggregate` can count, beside the reason shown to the agent. A run on a backend
//! that cannot measure (the CPU emulator of kernel tasks) is [`ScoreOutcome::Unscored`]: it
//! says the submission is correct there and never becomes a score.

use serde::{Deserialize, Serialize};

/// Why a submission is invalid, as a class. The reason string says the specifics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvalidKind {
    /// A submission file is absent (or not a regular file).
    MissingFile,
    /// A submission file is over its size limit.
    TooLarge,
    /// A text file is not UTF-8.
    NotText,
    /// A kernel submission's launch plan is malformed, does not match the kernel signatures,
    /// or fails its limits at some problem size.
    Plan,
    /// The device code does not compile.
    Compile,
    /// The compiled code does not load (module load, missing kernel).
    Load,
    /// The device rejected a launch (configuration, resources).
    Launch,
    /// A kernel faulted (illegal address, trap, misaligned access).
    KernelFault,
    /// An output differs from the expected one.
    WrongOutput,
    /// The submission changed an input it must only read.
    ModifiedInput,
    /// A result is NaN or infinite where a number is required.
    NonFinite,
    /// Scoring outlasted the task's time limit.
    Timeout,
    /// The scoring worker died without reporting (a signal, an abort).
    Crash,
    /// Over a resource limit of the task (memory, scratch, parameters).
    ResourceLimit,
    /// An artifact is malformed (safetensors header, dtype, shape).
    BadArtifact,
    /// Breaks a rule of the task that the scorer checks.
    RuleViolation,
}

impl InvalidKind {
    /// The snake_case name used in logs and `expect.toml` files.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::MissingFile => "missing_file",
            InvalidKind::TooLarge => "too_large",
            InvalidKind::NotText => "not_text",
            InvalidKind::Plan => "plan",
            InvalidKind::Compile => "compile",
            InvalidKind::Load => "load",
            InvalidKind::Launch => "launch",
            InvalidKind::KernelFault => "kernel_fault",
            InvalidKind::WrongOutput => "wrong_output",
            InvalidKind::ModifiedInput => "modified_input",
            InvalidKind::NonFinite => "non_finite",
            InvalidKind::Timeout => "timeout",
            InvalidKind::Crash => "crash",
            InvalidKind::ResourceLimit => "resource_limit",
            InvalidKind::BadArtifact => "bad_artifact",
            InvalidKind::RuleViolation => "rule_violation",
        }
    }
}

impl std::fmt::Display for InvalidKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of scoring one submission. A wrong submission is an `Invalid` outcome, not an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ScoreOutcome {
    Valid {
        /// Raw score as defined by [`TaskInfo::raw_score`](crate::task::TaskInfo::raw_score).
        raw: f64,
        /// One line for tables, written by the task (e.g. `1.234 ms ± 0.2 %, 71 % of SOL`).
        #[serde(default)]
        headline: String,
        /// Task-specific measurements (median, noise, samples, clocks...).
        details: serde_json::Value,
    },
    Invalid {
        kind: InvalidKind,
        /// What is wrong, in words a person can act on.
        reason: String,
        details: serde_json::Value,
    },
    /// Correct where it ran, but measured nowhere: never a score (e.g. the CPU emulator).
    Unscored {
        headline: String,
        details: serde_json::Value,
    },
}

/// Longest reason kept in an outcome: the rest is cut, so a compiler log or a crash's output
/// cannot grow the score log without bound.
pub const MAX_REASON_BYTES: usize = 4096;

impl ScoreOutcome {
    pub fn invalid(kind: InvalidKind, reason: impl Into<String>) -> Self {
        ScoreOutcome::Invalid {
            kind,
            reason: clip_reason(reason.into()),
            details: serde_json::Value::Null,
        }
    }

    /// The invalid kind, if the outcome is invalid.
    pub fn invalid_kind(&self) -> Option<InvalidKind> {
        match self {
            ScoreOutcome::Invalid { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Cuts `reason` to [`MAX_REASON_BYTES`] on a character boundary, saying so.
pub fn clip_reason(mut reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut cut = MAX_REASON_BYTES - 40;
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = reason.len() - cut;
    reason.truncate(cut);
    reason.push_str(&format!(" [... {dropped} more bytes cut]"));
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_as_their_names() {
        for kind in [
            InvalidKind::WrongOutput,
            InvalidKind::KernelFault,
            InvalidKind::Plan,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            let back: InvalidKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn long_reasons_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(5000);
        let clipped = clip_reason(long);
        assert!(clipped.len() <= MAX_REASON_BYTES, "{}", clipped.len());
        assert!(clipped.ends_with("more bytes cut]"));
        assert_eq!(clip_reason("short".into()), "short");
    }
}

/// The timing a timed score's details carry (the kernel kit writes it as part of its details):
/// the run's median and, per timed size, the size's variables and median. Calibration and the
/// score's report read it through this type, never by looking keys up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The run's median, milliseconds (the geometric mean over the sizes for several).
    #[serde(default)]
    pub median_ms: Option<f64>,
    /// Each timed size (kernel tasks that time several).
    #[serde(default)]
    pub shapes: Vec<SizeTiming>,
}

/// One timed size of a [`Timing`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeTiming {
    /// The size's variables (`{"n": 4000037}`, `{"m": .., "n": .., "k": ..}`).
    pub vars: serde_json::Value,
    pub median_ms: f64,
}

impl Timing {
    /// The timing in a score's details; none (the default) where the details carry none, as for
    /// an untimed task.
    pub fn of(details: &serde_json::Value) -> Timing {
        Timing::deserialize(details).unwrap_or_default()
    }
}

#[cfg(test)]
mod timing_tests {
    use super::*;

    #[test]
    fn timing_is_read_from_details_that_carry_more_and_absent_from_those_that_carry_none() {
        let details = serde_json::json!({
            "median_ms": 1.5,
            "noise": 0.01,
            "shapes": [
                { "vars": { "n": 8 }, "median_ms": 1.0, "noise": 0.02 },
                { "vars": { "n": 16 }, "median_ms": 2.25, "stop_reason": "converged" },
            ],
        });
        let timing = Timing::of(&details);
        assert_eq!(timing.median_ms, Some(1.5));
        assert_eq!(timing.shapes.len(), 2);
        assert_eq!(timing.shapes[1].vars, serde_json::json!({ "n": 16 }));
        assert_eq!(
            Timing::of(&serde_json::json!({ "loss": 2.0 })),
            Timing::default()
        );
    }
}
