//! The raw samples of one timed run, saved beside the score log for offline re-analysis
//! (schema `rdbench.samples/3`: per timed size, every sample with its raw and floored time,
//! clocks, throttle classification and whether launch latency was kept out of its window).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::analysis::{ClockState, Stats, StoppingRule};
use crate::kernel_task::Vars;

/// The schema name written into every samples file.
pub const SCHEMA: &str = "rdbench.samples/3";

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

/// The samples of one timed size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShapeSamples {
    pub vars: Vars,
    pub stats: Stats,
    pub speed_of_light_ms: Option<f64>,
    pub samples: Vec<SampleRecord>,
}

/// A whole samples file: one entry per timed size, in the profile's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSamples {
    pub schema: String,
    pub task: String,
    pub rule: StoppingRule,
    pub shapes: Vec<ShapeSamples>,
}

impl SavedSamples {
    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> rdbench_core::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| rdbench_core::Error::Internal(format!("samples: {e}")))?;
        rdbench_core::fsutil::atomic_write(path, &bytes)
    }

    /// Reads a samples file back (for re-analysis with [`super::analysis`]); a file of another
    /// schema is an error naming it.
    pub fn read(path: &Path) -> rdbench_core::Result<SavedSamples> {
        let bytes = std::fs::read(path).map_err(|e| rdbench_core::Error::io(path, e))?;
        let saved: SavedSamples = serde_json::from_slice(&bytes)
            .map_err(|e| rdbench_core::Error::bad_input(path, e.to_string()))?;
        if saved.schema != SCHEMA {
            return Err(rdbench_core::Error::bad_input(
                path,
                format!("schema {:?}, not {SCHEMA:?}", saved.schema),
            ));
        }
        Ok(saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::analysis::stats;

    #[test]
    fn saved_samples_read_back_and_reanalyse_to_the_same_statistics() {
        let times = [1.0, 1.2, 0.9, 1.1];
        let shape = ShapeSamples {
            vars: crate::kernel_task::vars(&[("n", 8)]),
            stats: stats(&times).unwrap(),
            speed_of_light_ms: Some(0.5),
            samples: times
                .iter()
                .map(|&ms| SampleRecord {
                    ms,
                    floored_ms: ms,
                    latency_hidden: true,
                    sm_clock_mhz: Some(1980),
                    mem_clock_mhz: None,
                    throttle_reasons: vec![],
                    clock_state: ClockState::Steady,
                    cpu_oracle: false,
                    kept: true,
                })
                .collect(),
        };
        let saved = SavedSamples {
            schema: SCHEMA.into(),
            task: "t".into(),
            rule: StoppingRule::default(),
            shapes: vec![shape],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        saved.write(&path).unwrap();
        let back = SavedSamples::read(&path).unwrap();
        let again: Vec<f64> = back.shapes[0]
            .samples
            .iter()
            .map(|s| s.floored_ms)
            .collect();
        assert_eq!(stats(&again), Some(saved.shapes[0].stats));
        std::fs::write(&path, br#"{"schema": "rdbench.samples/2"}"#).unwrap();
        assert!(SavedSamples::read(&path).is_err());
    }
}
