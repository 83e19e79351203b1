//! Calibration: the raw scores of a task's starting and reference solutions measured on one
//! device, so that `norm = (raw - start) / (ref - start)` puts the start at 0 and the
//! reference at 1 on that device.
//!
//! Records are keyed by a [`DeviceFingerprint`] (GPU name, memory, SM count, compute
//! capability, driver and CUDA version; or the CPU model). One JSON file per device, replaced
//! atomically under a lock, so a killed `calibrate` never leaves a half-written file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{atomic_write, lock_exclusive};
use crate::{Error, Result};

/// What the scores were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceFingerprint {
    /// `gpu` or `cpu`.
    pub kind: String,
    pub name: String,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_version: Option<String>,
}

impl DeviceFingerprint {
    /// A readable, filesystem-safe id: a slug of the name plus a hash of every field.
    pub fn id(&self) -> String {
        let slug: String = self
            .name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .split('-')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let canonical = serde_json::to_string(self).expect("fingerprint serializes");
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        format!("{}-{}-{}", self.kind, slug, &hash[..10])
    }

    /// The CPU of this machine, from /proc/cpuinfo and /proc/meminfo.
    pub fn this_cpu() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let name = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split(':').nth(1))
            })
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        DeviceFingerprint {
            kind: "cpu".into(),
            name: format!("{name} x{cores}"),
            memory_bytes: mem_kb * 1024,
            sm_count: None,
            compute_capability: None,
            driver_version: None,
            cuda_version: None,
        }
    }
}

/// Start and reference raw scores of one task profile on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationEntry {
    pub task: String,
    pub profile: String,
    pub start: f64,
    pub reference: f64,
    pub measured_at: DateTime<Utc>,
    /// How the numbers were obtained (command, versions, number of runs).
    pub provenance: String,
    /// Per-solution measurements (medians, noise, every run).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl CalibrationEntry {
    /// Normalizes a raw score against this calibration.
    pub fn normalize(&self, raw: f64) -> f64 {
        normalize(raw, self.start, self.reference)
    }
}

/// `(raw - start) / (ref - start)`, clamped below at 0 and unbounded above; NaN stays NaN.
pub fn normalize(raw: f64, start: f64, reference: f64) -> f64 {
    if !raw.is_finite() || !start.is_finite() || !reference.is_finite() || start == reference {
        return f64::NAN;
    }
    let norm = (raw - start) / (reference - start);
    norm.max(0.0)
}

/// All calibrations of one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub fingerprint: DeviceFingerprint,
    pub entries: Vec<CalibrationEntry>,
}

/// Calibration files in a writable folder plus read-only shipped folders.
#[derive(Debug, Clone)]
pub struct CalibrationStore {
    writable: PathBuf,
    shipped: Vec<PathBuf>,
}

impl CalibrationStore {
    pub fn new(writable: impl Into<PathBuf>) -> Self {
        CalibrationStore {
            writable: writable.into(),
            shipped: Vec::new(),
        }
    }

    /// Adds a read-only folder searched after the writable one (calibrations shipped with rdbench).
    pub fn with_shipped(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shipped.push(dir.into());
        self
    }

    fn file_in(dir: &Path, fp: &DeviceFingerprint) -> PathBuf {
        dir.join(format!("{}.json", fp.id()))
    }

    fn load(path: &Path) -> Result<Option<CalibrationFile>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::bad_input(path, format!("not a calibration file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The calibration for a task profile on this device, writable folder first.
    pub fn lookup(
        &self,
        fp: &DeviceFingerprint,
        task: &str,
        profile: &str,
    ) -> Result<Option<CalibrationEntry>> {
        for dir in std::iter::once(&self.writable).chain(self.shipped.iter()) {
            if let Some(file) = Self::load(&Self::file_in(dir, fp))? {
                if file.fingerprint != *fp {
                    continue;
                }
                if let Some(e) = file
                    .entries
                    .into_iter()
                    .find(|e| e.task == task && e.profile == profile)
                {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    /// Every calibration file found, for `doctor`.
    pub fn list(&self) -> Vec<(PathBuf, Result<CalibrationFile>)> {
        let mut out = Vec::new();
        for dir in std::iter::once(&self.writable).chain(self.shipped.iter()) {
            let Ok(read) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            for p in paths {
                let loaded = Self::load(&p).and_then(|f| {
                    f.ok_or_else(|| Error::Internal("calibration file vanished".into()))
                });
                out.push((p, loaded));
            }
        }
        out
    }

    /// Records (or replaces) one entry for this device. Atomic and serialized across processes.
    pub fn record(&self, fp: &DeviceFingerprint, entry: CalibrationEntry) -> Result<PathBuf> {
        let path = Self::file_in(&self.writable, fp);
        let _lock = lock_exclusive(&path)?;
        let mut file = Self::load(&path)?.unwrap_or_else(|| CalibrationFile {
            fingerprint: fp.clone(),
            entries: Vec::new(),
        });
        file.entries
            .retain(|e| !(e.task == entry.task && e.profile == entry.profile));
        file.entries.push(entry);
        file.entries
            .sort_by(|a, b| (&a.task, &a.profile).cmp(&(&b.task, &b.profile)));
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Internal(format!("serializing calibration: {e}")))?;
        atomic_write(&path, &json)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn start_is_zero_reference_is_one() {
        assert_eq!(normalize(5.0, 5.0, 2.0), 0.0);
        assert_eq!(normalize(2.0, 5.0, 2.0), 1.0);
        assert!(
            (normalize(1.0, 5.0, 2.0) - 4.0 / 3.0).abs() < 1e-12,
            "above 1 is kept"
        );
        assert_eq!(normalize(7.0, 5.0, 2.0), 0.0, "below start clamps to 0");
        assert!(normalize(f64::NAN, 5.0, 2.0).is_nan());
        assert!(normalize(3.0, 2.0, 2.0).is_nan(), "degenerate calibration");
    }

    proptest! {
        #[test]
        fn normalization_is_monotone_toward_reference(start in -10.0f64..10.0, gap in 0.1f64..5.0, a in -20.0f64..20.0, b in -20.0f64..20.0) {
            let reference = start - gap; // lower is better
            let (better, worse) = if a < b { (a, b) } else { (b, a) };
            prop_assert!(normalize(better, start, reference) >= normalize(worse, start, reference));
        }
    }

    #[test]
    fn store_records_and_finds_by_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let store = CalibrationStore::new(dir.path());
        let fp = DeviceFingerprint::this_cpu();
        let mut other = fp.clone();
        other.name.push_str(" (other)");
        let entry = CalibrationEntry {
            task: "t".into(),
            profile: "tiny".into(),
            start: 1.0,
            reference: 0.5,
            measured_at: Utc::now(),
            provenance: "test".into(),
            details: serde_json::Value::Null,
        };
        store.record(&fp, entry.clone()).unwrap();
        store
            .record(
                &fp,
                CalibrationEntry {
                    start: 2.0,
                    ..entry.clone()
                },
            )
            .unwrap();
        let found = store.lookup(&fp, "t", "tiny").unwrap().unwrap();
        assert_eq!(found.start, 2.0, "re-calibration replaces the entry");
        assert!(store.lookup(&other, "t", "tiny").unwrap().is_none());
        assert!(store.lookup(&fp, "t", "full").unwrap().is_none());
    }

    #[test]
    fn corrupt_calibration_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CalibrationStore::new(dir.path());
        let fp = DeviceFingerprint::this_cpu();
        std::fs::write(dir.path().join(format!("{}.json", fp.id())), b"{not json").unwrap();
        let err = store.lookup(&fp, "t", "tiny").unwrap_err().to_string();
        assert!(err.contains(&fp.id()), "{err}");
    }
}
