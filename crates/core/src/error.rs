//! Error kinds. Every error maps to one process exit code ([`ExitCode`]), so the CLI never has
//! to guess how to report a failure to the evaluation platform.
//!
//! A submission that is wrong is *not* an error: it is a scored-invalid
//! [`ScoreOutcome`](crate::task::ScoreOutcome). Errors are for the caller's input, the
//! environment, and the kit's own I/O.

use std::path::PathBuf;

/// Process exit codes of the `rdbench` CLI (the README lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// A submission was scored (or the command succeeded).
    Scored = 0,
    /// The submission is invalid: it was logged with a NaN score and a reason.
    Invalid = 1,
    /// Bad command-line usage or bad input files given by the caller.
    Usage = 2,
    /// The environment cannot run this: no GPU or driver, no calibration, missing library.
    Environment = 3,
}

/// Errors of the task model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the caller gave us is malformed; names the file and what is wrong.
    #[error("{}: {message}", path.display())]
    BadInput { path: PathBuf, message: String },
    /// Bad usage: unknown task, unknown profile, conflicting flags.
    #[error("{0}")]
    Usage(String),
    /// The environment lacks what the operation needs (driver, GPU, library, calibration).
    #[error("{0}")]
    Environment(String),
    /// I/O on one of rdbench's own files failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A bug or an unexpected state inside the kit.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The exit code the CLI uses for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::BadInput { .. } | Error::Usage(_) => ExitCode::Usage,
            Error::Environment(_) => ExitCode::Environment,
            Error::Io { .. } | Error::Internal(_) => ExitCode::Environment,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed input file.
    pub fn bad_input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
