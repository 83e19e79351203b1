//! [`nvml_report`]: what NVML says about the machine (driver, CUDA and NVML versions, each GPU's
//! name, memory, limits and compute capability), for `rdbench doctor`. Never fails.

use nvml_wrapper::enum_wrappers::device::Clock;
use serde::{Deserialize, Serialize};

use super::nvml::nvml;
use crate::probe::{loaded_nvml_path, NVML_LIBRARY};

/// One GPU as NVML describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvmlDevice {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub pci_bus_id: Option<String>,
    /// Power management limit.
    pub power_limit_w: Option<f64>,
    pub max_sm_clock_mhz: Option<u32>,
    pub max_mem_clock_mhz: Option<u32>,
    /// "9.0" for an H100.
    pub compute_capability: Option<String>,
}

/// What NVML says about this machine, for `rdbench doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvmlReport {
    pub available: bool,
    pub error: Option<String>,
    pub library_path: Option<String>,
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, "13.0".
    pub cuda_driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub devices: Vec<NvmlDevice>,
}

/// Reports NVML's view of the machine; never fails, `error` says what is missing.
pub fn nvml_report() -> NvmlReport {
    let nvml = match nvml() {
        Ok(n) => n,
        Err(e) => {
            return NvmlReport {
                available: false,
                error: Some(e),
                library_path: None,
                driver_version: None,
                cuda_driver_version: None,
                nvml_version: None,
                devices: Vec::new(),
            }
        }
    };
    let mut error = None;
    let count = nvml.device_count().unwrap_or_else(|e| {
        error = Some(format!("device count failed: {e}"));
        0
    });
    let devices = (0..count)
        .map(|i| match nvml.device_by_index(i) {
            Ok(d) => NvmlDevice {
                index: i,
                name: d.name().ok(),
                uuid: d.uuid().ok(),
                memory_total_bytes: d.memory_info().ok().map(|m| m.total),
                pci_bus_id: d.pci_info().ok().map(|p| p.bus_id),
                power_limit_w: d
                    .power_management_limit()
                    .ok()
                    .map(|mw| f64::from(mw) / 1000.0),
                max_sm_clock_mhz: d.max_clock_info(Clock::SM).ok(),
                max_mem_clock_mhz: d.max_clock_info(Clock::Memory).ok(),
                compute_capability: d
                    .cuda_compute_capability()
                    .ok()
                    .map(|c| format!("{}.{}", c.major, c.minor)),
            },
            Err(e) => {
                error.get_or_insert_with(|| format!("device {i}: {e}"));
                NvmlDevice {
                    index: i,
                    name: None,
                    uuid: None,
                    memory_total_bytes: None,
                    pci_bus_id: None,
                    power_limit_w: None,
                    max_sm_clock_mhz: None,
                    max_mem_clock_mhz: None,
                    compute_capability: None,
                }
            }
        })
        .collect();
    NvmlReport {
        available: true,
        error,
        library_path: loaded_nvml_path().or_else(|| Some(NVML_LIBRARY.to_string())),
        driver_version: nvml.sys_driver_version().ok(),
        cuda_driver_version: nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        }),
        nvml_version: nvml.sys_nvml_version().ok(),
        devices,
    }
}
