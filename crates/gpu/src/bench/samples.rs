//! The raw samples of one timed run, saved beside the score log for offline re-analysis
//! (schema `rdbench.samples/2`: every sample with its raw and floored time, clocks, throttle
//! classification and whether launch latency was kept out of its window).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::analysis::{ClockState, Stats, StoppingRule};
use crate::kernel_task::Vars;

/// The schema name written into every samples file.
pub const SCHEMA: &str = "rdbench.samples/2";

/// One timed sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The measured window, milliseconds.
    pub ms: f64,
    /// `ms` raised to the speed-of-light floor (what the statistics use).
    pub floored_ms: f64,
    pub latency_hidden: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_clock_mhz: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub throttle_reasons: Vec<String>,
    pub clock_state: ClockState,
    pub cpu_oracle: bool,
    /// False for samples discarded as throttled.
    pub kept: bool,
}

/// A whole samples file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSamples {
    pub schema: String,
    pub task: String,
    pub vars: Vars,
    pub rule: StoppingRule,
    pub stats: Stats,
    pub speed_of_light_ms: Option<f64>,
    pub samples: Vec<SampleRecord>,
}

impl SavedSamples {
    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> rdbench_core::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| rdbench_core::Error::Internal(format!("samples: {e}")))?;
        rdbench_core::fsutil::atomic_write(path, &bytes)
    }

    /// Reads a samples file (for re-analysis).
    pub fn read(path: &Path) -> rdbench_core::Result<serde_json::Value> {
        let bytes = std::fs::read(path).map_err(|e| rdbench_core::Error::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| rdbench_core::Error::bad_input(path, e.to_string()))
    }
}
