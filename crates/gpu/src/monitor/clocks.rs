//! [`ClockReader`]: one GPU's clocks, throttle reasons, temperature and power at one instant, cheap
//! enough to read beside every timed sample.

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Device;
use serde::{Deserialize, Serialize};

use super::nvml::{device_throttle, nvml};

/// Clocks and limits of one GPU at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockSnapshot {
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub throttle_reasons: Vec<String>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
}

/// Reads one GPU's clocks; holds the device handle so each read is five NVML queries.
pub struct ClockReader {
    index: u32,
    device: Device<'static>,
}

impl std::fmt::Debug for ClockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockReader")
            .field("index", &self.index)
            .finish()
    }
}

impl ClockReader {
    /// `None` without NVML or without that GPU.
    pub fn open(gpu_index: u32) -> Option<ClockReader> {
        let device = nvml().ok()?.device_by_index(gpu_index).ok()?;
        Some(ClockReader {
            index: gpu_index,
            device,
        })
    }

    /// The NVML device with this PCI bus id (as CUDA reports it, e.g. `0000:18:00.0`): the
    /// way to read the clocks of the GPU a CUDA ordinal names, since NVML indices and CUDA
    /// ordinals differ under `CUDA_VISIBLE_DEVICES` or CUDA's fastest-first ordering.
    pub fn open_pci(bus_id: &str) -> Option<ClockReader> {
        let device = nvml().ok()?.device_by_pci_bus_id(bus_id).ok()?;
        let index = device.index().ok()?;
        Some(ClockReader { index, device })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn read(&self) -> ClockSnapshot {
        let d = &self.device;
        ClockSnapshot {
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
            throttle_reasons: device_throttle(d),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        }
    }
}
