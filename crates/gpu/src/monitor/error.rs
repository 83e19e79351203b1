//! Errors of the monitor: I/O and JSON errors name the file, GPU errors the NVML index.

use std::io;
use std::path::{Path, PathBuf};

/// Errors of the monitor. I/O errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: line {line}: {source}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: not a timeline: {reason}", path.display())]
    BadTimeline { path: PathBuf, reason: String },
    #[error("GPU {index}: {reason}")]
    Gpu { index: u32, reason: String },
    #[error("invalid monitor config: {0}")]
    Config(String),
    #[error("could not start the sampler thread: {0}")]
    Spawn(#[source] io::Error),
    #[error("the sampler thread panicked")]
    ThreadPanicked,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    }
}
