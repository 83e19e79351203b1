//! Where rdbench keeps its private state: attempts (score logs, samples, timelines),
//! calibrations, caches and the installation key. None of it lives inside an attempt's folder.

use std::path::{Path, PathBuf};

/// The root of rdbench's private state (`$RDBENCH_HOME`, else `~/.local/share/rdbench`).
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// `$RDBENCH_HOME`, else `$XDG_DATA_HOME/rdbench`, else `$HOME/.local/share/rdbench`.
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("RDBENCH_HOME").filter(|v| !v.is_empty()) {
            return Home::new(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Home::new(PathBuf::from(dir).join("rdbench"));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        Home::new(home.join(".local/share/rdbench"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn attempts_dir(&self) -> PathBuf {
        self.root.join("attempts")
    }
    pub fn calibration_dir(&self) -> PathBuf {
        self.root.join("calibration")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// The installation key and other secrets (0700): readable by the scoring user only.
    pub fn secret_dir(&self) -> PathBuf {
        self.root.join("secret")
    }
    /// Scratch space for calibration and self-test runs.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
}
