//! Error kinds of the scoring crate.
//!
//! Every error about input data names where it came from: the file, the line the record starts
//! on (1-based) and, where one field is at fault, the field.

use std::path::PathBuf;

/// Where a record came from: file and 1-based line of the record's first character.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Errors of loading and aggregating attempt results.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// An input file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file holds no records at all.
    #[error("{}: empty file: no attempt results in it", path.display())]
    EmptyFile { path: PathBuf },
    /// The text at a location is not valid JSON.
    #[error("{at}: not valid JSON: {message}")]
    Syntax { at: Location, message: String },
    /// A record lacks a field it needs.
    #[error("{at}: field `{field}` is missing ({format})")]
    MissingField {
        at: Location,
        field: &'static str,
        format: &'static str,
    },
    /// A field holds a value of the wrong type or out of range.
    #[error("{at}: field `{field}`: {message}")]
    BadField {
        at: Location,
        field: &'static str,
        message: String,
    },
    /// A record is neither an rdbench attempt summary nor a METR run.
    #[error("{at}: unrecognised record: {message}")]
    UnknownFormat { at: Location, message: String },
    /// An agent has too few runs for a time-horizon fit.
    #[error(
        "{at}: field `agent`: agent `{agent}` has only {runs} run(s) with human minutes; \
         the time horizon needs at least 2 (drop it with --exclude-agent)"
    )]
    TooFewRuns {
        at: Location,
        agent: String,
        runs: usize,
    },
    /// No runs are left to aggregate after filtering.
    #[error("no attempt results to aggregate: {0}")]
    NoData(String),
    /// A configuration value is out of range (budgets, thresholds, quantiles).
    #[error("invalid setting: {0}")]
    Config(String),
    /// Writing a report, CSV file or plot failed.
    #[error("{}: cannot write: {message}", path.display())]
    Output { path: PathBuf, message: String },
}

impl ScoringError {
    /// True for errors caused by the input data or settings (exit code 2), false for output
    /// failures.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, ScoringError::Output { .. })
    }
}

/// Result alias for this crate.
pub type Result<T, E = ScoringError> = std::result::Result<T, E>;
