//! Calibration: the raw scores of a task's starting and reference solutions measured on one
//! device, so that `norm = (raw - start) / (ref - start)` puts the start at 0 and the
//! reference at 1 on that device.
//!
//! Records are keyed by a [`DeviceFingerprint`] (GPU name, memory, SM count, compute
//! capability, driver and CUDA version; or the CPU model). One JSON file per device, replaced
//! atomically under a lock, so a killed `calibrate` never leaves a half-written file.
//!
//! A calibration measured here (the writable folder) is used before one shipped with rdbench,
//! and never silently: [`CalibrationStore::find`] says which file the calibration came from
//! and, when both exist for the same device, task and profile and they disagree by more than
//! [`AGREEMENT_TOLERANCE`] (in normalized units), returns the disagreement for the caller to
//! warn about and record. A file planted in the writable folder can still win (whoever can
//! write the home can also write the score log), but it can no longer do so unseen.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsutil::{atomic_write, lock_exclusive};
use crate::outcome::Timing;
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

/// The CUDA ordinal of the GPU rdbench scores on: the first one the process sees.
pub const SCORED_GPU_ORDINAL: usize = 0;

/// A GPU's name for the device lock: `gpu-<PCI bus id>` (e.g. `gpu-0000:18:00.0`) where the
/// driver gave one, so that processes numbering their GPUs differently (`CUDA_VISIBLE_DEVICES`,
/// `CUDA_DEVICE_ORDER`) lock the same GPU under the same name; `gpu-<ordinal>` where none is
/// known (no driver, a CPU machine, tests) or the id does not read as one. The bus id is
/// written one way whoever reported it: lowercase hex, the domain in at least four digits
/// (CUDA writes `0000:18:00.0`, NVML `00000000:18:00.0`).
pub fn gpu_name(ordinal: usize, pci_bus_id: Option<&str>) -> String {
    match pci_bus_id.and_then(canonical_pci_bus_id) {
        Some(bus) => format!("gpu-{bus}"),
        None => format!("gpu-{ordinal}"),
    }
}

/// `domain:bus:device.function` in hex, written `{:04x}:{:02x}:{:02x}.{:x}`; `None` for
/// anything else.
fn canonical_pci_bus_id(id: &str) -> Option<String> {
    let hex = |s: &str, max: u32| {
        let digits = !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
        digits
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|&v| v <= max)
    };
    let (domain, rest) = id.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        hex(domain, u32::MAX)?,
        hex(bus, 0xff)?,
        hex(device, 0x1f)?,
        hex(function, 0x7)?
    ))
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

/// Key of the CPU baseline in [`CalibrationEntry::details`].
pub const CPU_BASELINE_KEY: &str = "cpu_baseline";

/// Key of the per-size list in a timed score's details ([`Timing::shapes`]), where
/// `annotate_shapes` adds each size's speed-up.
pub const SHAPES_KEY: &str = "shapes";

impl CalibrationEntry {
    /// Normalizes a raw score against this calibration.
    pub fn normalize(&self, raw: f64) -> f64 {
        normalize(raw, self.start, self.reference)
    }

    /// The CPU baseline measured with this calibration, if the task has one.
    pub fn cpu_baseline(&self) -> Option<crate::task::CpuBaseline> {
        serde_json::from_value(self.details.get(CPU_BASELINE_KEY)?.clone()).ok()
    }

    /// The starting solution's median time at each timed size, as calibrated: per size (its
    /// `vars`), the median over the calibration's runs of that run's median.
    pub fn start_medians(&self) -> Vec<(serde_json::Value, f64)> {
        let runs = self
            .details
            .get("start")
            .and_then(|s| s.get("runs"))
            .and_then(|r| r.as_array())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut per_size: Vec<(serde_json::Value, Vec<f64>)> = Vec::new();
        for run in runs.iter().filter_map(|r| r.get("details")) {
            for size in Timing::of(run).shapes {
                match per_size.iter_mut().find(|(v, _)| *v == size.vars) {
                    Some((_, times)) => times.push(size.median_ms),
                    None => per_size.push((size.vars, vec![size.median_ms])),
                }
            }
        }
        per_size
            .into_iter()
            .map(|(vars, times)| (vars, median(times)))
            .collect()
    }

    /// Adds `speedup_vs_start` (the calibrated start's median over this run's) to every size
    /// in `details[SHAPES_KEY]` that the calibration measured.
    pub fn annotate_shapes(&self, details: &mut serde_json::Value) {
        let start = self.start_medians();
        let speedups: Vec<Option<f64>> = Timing::of(details)
            .shapes
            .iter()
            .map(|size| {
                let (_, base) = start.iter().find(|(v, _)| *v == size.vars)?;
                (size.median_ms > 0.0 && base.is_finite()).then(|| base / size.median_ms)
            })
            .collect();
        let Some(shapes) = details.get_mut(SHAPES_KEY).and_then(|s| s.as_array_mut()) else {
            return;
        };
        for (shape, speedup) in shapes.iter_mut().zip(speedups) {
            if let (Some(speedup), Some(obj)) = (speedup, shape.as_object_mut()) {
                obj.insert("speedup_vs_start".into(), serde_json::json!(speedup));
            }
        }
    }

    /// `{"speedup_vs_cpu": x, "meets_target_speedup": bool}` for a run of `median_ms`, when
    /// this calibration has a CPU baseline (the flag only when the task sets a target).
    pub fn cpu_speedup(&self, median_ms: f64) -> Option<serde_json::Value> {
        let base = self.cpu_baseline()?;
        if !(median_ms > 0.0 && median_ms.is_finite() && base.ms > 0.0) {
            return None;
        }
        let speedup = base.ms / median_ms;
        let mut v = serde_json::json!({ "speedup_vs_cpu": speedup, "cpu_baseline_ms": base.ms });
        if let Some(target) = base.target_speedup {
            v["meets_target_speedup"] = serde_json::Value::Bool(speedup >= target);
            v["target_speedup"] = serde_json::json!(target);
        }
        Some(v)
    }
}

/// The median of a non-empty list (the mean of the middle two for an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// `(raw - start) / (ref - start)`, clamped below at 0 and unbounded above; NaN stays NaN.
pub fn normalize(raw: f64, start: f64, reference: f64) -> f64 {
    if !raw.is_finite() || !start.is_finite() || !reference.is_finite() || start == reference {
        return f64::NAN;
    }
    let norm = (raw - start) / (reference - start);
    // Not `max`: it may keep the sign of -0.0, which reports print as "-0.0000".
    if norm > 0.0 {
        norm
    } else {
        0.0
    }
}

/// All calibrations of one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub fingerprint: DeviceFingerprint,
    pub entries: Vec<CalibrationEntry>,
}

/// Largest disagreement between a measured and a shipped calibration that passes without a
/// warning: the other calibration's start and reference, normalized by the one used, within
/// this of 0 and 1 (the tolerance `check-task` holds start and reference to).
pub const AGREEMENT_TOLERANCE: f64 = 0.05;

/// Which file a calibration was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum CalibrationSource {
    /// Measured on this machine (`rdbench calibrate`): the writable folder of the home.
    Measured(PathBuf),
    /// Shipped with rdbench (committed to the repository).
    Shipped(PathBuf),
    /// Built into the task (hardware-independent tasks: the same numbers on every machine).
    Task(String),
}

impl std::fmt::Display for CalibrationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrationSource::Measured(p) => write!(f, "measured here ({})", p.display()),
            CalibrationSource::Shipped(p) => write!(f, "shipped ({})", p.display()),
            CalibrationSource::Task(task) => write!(f, "shipped with the task {task}"),
        }
    }
}

/// A calibration found, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundCalibration {
    pub entry: CalibrationEntry,
    pub source: CalibrationSource,
    /// Set when another calibration for the same device, task and profile exists (the
    /// shipped one, when a measured one is used) and disagrees beyond [`AGREEMENT_TOLERANCE`].
    pub disagreement: Option<Disagreement>,
}

/// A calibration that was not used and disagrees with the one that was.
#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    pub other: CalibrationEntry,
    pub other_source: CalibrationSource,
    /// The other's start and reference, normalized by the used calibration (unclamped):
    /// `[0, 1]` would be full agreement.
    pub other_normalized: [f64; 2],
}

impl Disagreement {
    /// `Some` when `other` disagrees with `used` beyond [`AGREEMENT_TOLERANCE`] (or either is
    /// degenerate, which cannot be compared).
    pub fn between(
        used: &CalibrationEntry,
        other: CalibrationEntry,
        other_source: CalibrationSource,
    ) -> Option<Disagreement> {
        let unclamped = |x: f64| (x - used.start) / (used.reference - used.start);
        let normalized = [unclamped(other.start), unclamped(other.reference)];
        let agrees = normalized.iter().all(|v| v.is_finite())
            && normalized[0].abs() <= AGREEMENT_TOLERANCE
            && (normalized[1] - 1.0).abs() <= AGREEMENT_TOLERANCE;
        (!agrees).then_some(Disagreement {
            other,
            other_source,
            other_normalized: normalized,
        })
    }
}

impl FoundCalibration {
    /// One line for a warning and for the record of what was used, e.g. `calibration
    /// measured here (...) used: start 1.2, reference 0.3; the shipped one (...) disagrees:
    /// its start and reference normalize to 0.21 and 1.30 under it (tolerance 0.05)`.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "calibration {} used: start {}, reference {}",
            self.source, self.entry.start, self.entry.reference
        );
        if let Some(d) = &self.disagreement {
            line.push_str(&format!(
                "; the other, {}, disagrees: start {}, reference {}, which normalize to {:.3} and \
                 {:.3} under the one used (agreement is 0 and 1 within {AGREEMENT_TOLERANCE})",
                d.other_source,
                d.other.start,
                d.other.reference,
                d.other_normalized[0],
                d.other_normalized[1]
            ));
        }
        line
    }
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

    /// The calibration for a task profile on this device, writable folder first. Use
    /// [`CalibrationStore::find`] to also learn where it came from.
    pub fn lookup(
        &self,
        fp: &DeviceFingerprint,
        task: &str,
        profile: &str,
    ) -> Result<Option<CalibrationEntry>> {
        Ok(self.find(fp, task, profile)?.map(|f| f.entry))
    }

    /// The entry for `task`/`profile` in `dir`'s file for `fp`, with that file's path.
    fn find_in(
        dir: &Path,
        fp: &DeviceFingerprint,
        task: &str,
        profile: &str,
    ) -> Result<Option<(CalibrationEntry, PathBuf)>> {
        let path = Self::file_in(dir, fp);
        let Some(file) = Self::load(&path)? else {
            return Ok(None);
        };
        if file.fingerprint != *fp {
            return Ok(None);
        }
        Ok(file
            .entries
            .into_iter()
            .find(|e| e.task == task && e.profile == profile)
            .map(|e| (e, path)))
    }

    /// The calibration for a task profile on this device (measured here first, then shipped),
    /// where it came from, and the shipped one when the two disagree.
    pub fn find(
        &self,
        fp: &DeviceFingerprint,
        task: &str,
        profile: &str,
    ) -> Result<Option<FoundCalibration>> {
        let measured = Self::find_in(&self.writable, fp, task, profile)?;
        let mut shipped = None;
        for dir in &self.shipped {
            if let Some(found) = Self::find_in(dir, fp, task, profile)? {
                shipped = Some(found);
                break;
            }
        }
        Ok(match (measured, shipped) {
            (None, None) => None,
            (None, Some((entry, path))) => Some(FoundCalibration {
                entry,
                source: CalibrationSource::Shipped(path),
                disagreement: None,
            }),
            (Some((entry, path)), shipped) => {
                let disagreement = shipped.and_then(|(other, other_path)| {
                    Disagreement::between(&entry, other, CalibrationSource::Shipped(other_path))
                });
                Some(FoundCalibration {
                    entry,
                    source: CalibrationSource::Measured(path),
                    disagreement,
                })
            }
        })
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

    /// The lock names a GPU by its bus id, however the driver wrote it, and by its ordinal
    /// without one.
    #[test]
    fn a_gpu_is_named_by_its_pci_bus_id_else_its_ordinal() {
        assert_eq!(gpu_name(0, Some("0000:18:00.0")), "gpu-0000:18:00.0");
        // NVML's eight-digit domain and CUDA's uppercase name the same GPU as CUDA's form.
        assert_eq!(gpu_name(0, Some("00000000:3B:00.0")), "gpu-0000:3b:00.0");
        assert_eq!(gpu_name(1, Some("0000:3B:00.0")), "gpu-0000:3b:00.0");
        assert_eq!(gpu_name(0, Some("10000:01:00.1")), "gpu-10000:01:00.1");
        assert_eq!(gpu_name(0, None), "gpu-0");
        assert_eq!(gpu_name(2, None), "gpu-2");
        for odd in [
            "",
            "0000:18:00",
            "0000:18.00.0",
            "0000:118:00.0",
            "0000:18:00.8",
            "0000:+1:00.0",
            "../0000:18:00.0",
            "0000:18:00.0/x",
            "000000000:18:00.0",
        ] {
            assert_eq!(gpu_name(3, Some(odd)), "gpu-3", "{odd:?}");
        }
    }
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

    /// A calibration of task `t`, profile `tiny`, with `details`.
    fn tiny_entry(details: serde_json::Value) -> CalibrationEntry {
        CalibrationEntry {
            task: "t".into(),
            profile: "tiny".into(),
            start: 1.0,
            reference: 0.0,
            measured_at: Utc::now(),
            provenance: String::new(),
            details,
        }
    }

    #[test]
    fn cpu_speedup_comes_from_the_stored_baseline() {
        let mut entry = tiny_entry(serde_json::json!({}));
        assert_eq!(entry.cpu_speedup(2.0), None, "no baseline, no speed-up");
        let base = crate::task::CpuBaseline {
            ms: 600.0,
            description: "one thread".into(),
            target_speedup: Some(30.0),
        };
        entry.details[CPU_BASELINE_KEY] = serde_json::to_value(&base).unwrap();
        assert_eq!(entry.cpu_baseline(), Some(base));
        let fast = entry.cpu_speedup(10.0).unwrap();
        assert_eq!(fast["speedup_vs_cpu"], 60.0);
        assert_eq!(fast["meets_target_speedup"], true);
        assert_eq!(
            entry.cpu_speedup(30.0).unwrap()["meets_target_speedup"],
            false
        );
        assert_eq!(entry.cpu_speedup(0.0), None);
        assert_eq!(entry.cpu_speedup(f64::NAN), None);
    }

    #[test]
    fn speedup_over_the_start_is_per_size_from_the_calibrated_runs() {
        let size = |m: i64| serde_json::json!({ "m": m, "n": 8 });
        let run = |a: f64, b: f64| {
            serde_json::json!({ "details": { SHAPES_KEY: [
                { "vars": size(1), "median_ms": a },
                { "vars": size(2), "median_ms": b },
            ] } })
        };
        let entry = tiny_entry(
            serde_json::json!({ "start": { "runs": [run(10.0, 40.0), run(12.0, 44.0), run(11.0, 90.0)] } }),
        );
        assert_eq!(
            entry.start_medians(),
            vec![(size(1), 11.0), (size(2), 44.0)]
        );
        let mut details = serde_json::json!({ SHAPES_KEY: [
            { "vars": size(1), "median_ms": 2.0 },
            { "vars": size(2), "median_ms": 4.0 },
            { "vars": size(3), "median_ms": 1.0 },
        ] });
        entry.annotate_shapes(&mut details);
        assert_eq!(details[SHAPES_KEY][0]["speedup_vs_start"], 5.5);
        assert_eq!(details[SHAPES_KEY][1]["speedup_vs_start"], 11.0);
        assert!(
            details[SHAPES_KEY][2].get("speedup_vs_start").is_none(),
            "a size the calibration did not time gets none"
        );
        let mut none = serde_json::json!({ "median_ms": 1.0 });
        entry.annotate_shapes(&mut none);
        assert_eq!(none, serde_json::json!({ "median_ms": 1.0 }));
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

    fn entry(start: f64, reference: f64) -> CalibrationEntry {
        CalibrationEntry {
            task: "t".into(),
            profile: "tiny".into(),
            start,
            reference,
            measured_at: Utc::now(),
            provenance: "test".into(),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn find_says_where_the_calibration_came_from_and_when_they_disagree() {
        let (home, shipped) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let fp = DeviceFingerprint::this_cpu();
        let store = CalibrationStore::new(home.path()).with_shipped(shipped.path());
        let shipped_store = CalibrationStore::new(shipped.path());
        let shipped_file = shipped_store.record(&fp, entry(2.0, 1.0)).unwrap();

        // Only the shipped one: used, and said so.
        let found = store.find(&fp, "t", "tiny").unwrap().unwrap();
        assert_eq!(
            found.source,
            CalibrationSource::Shipped(shipped_file.clone())
        );
        assert_eq!(found.disagreement, None);

        // A measured one that agrees within the tolerance (start 2 %, reference 3 % of the
        // span away): used, no disagreement.
        let home_file = store.record(&fp, entry(2.02, 0.97)).unwrap();
        let found = store.find(&fp, "t", "tiny").unwrap().unwrap();
        assert_eq!(found.source, CalibrationSource::Measured(home_file.clone()));
        assert_eq!(found.entry.start, 2.02);
        assert_eq!(found.disagreement, None, "{}", found.describe());

        // One planted to make every submission look good: still used (measured here comes
        // first), but never silently.
        store.record(&fp, entry(0.5, 0.4)).unwrap();
        let found = store.find(&fp, "t", "tiny").unwrap().unwrap();
        assert_eq!(found.source, CalibrationSource::Measured(home_file));
        let d = found
            .disagreement
            .as_ref()
            .expect("a disagreement is reported");
        assert_eq!(d.other_source, CalibrationSource::Shipped(shipped_file));
        // Under (0.5, 0.4) the shipped start 2 and reference 1 normalize to -15 and -5.
        let [s, r] = d.other_normalized;
        assert!((s + 15.0).abs() < 1e-9 && (r + 5.0).abs() < 1e-9, "{s} {r}");
        let line = found.describe();
        assert!(
            line.contains("measured here") && line.contains("the other, shipped"),
            "{line}"
        );
        assert!(line.contains("disagrees"), "{line}");
        // lookup is find without the provenance.
        assert_eq!(store.lookup(&fp, "t", "tiny").unwrap(), Some(found.entry));
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
