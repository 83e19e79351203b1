//! The NVML session: one `Nvml` per process (initialization is slow), created on first use after
//! the library is probed, so a machine without NVML gets a reason instead of a panic; plus the
//! throttle-reason names shared by the sampler and [`ClockReader`](super::ClockReader).

use std::sync::OnceLock;

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::{Device, Nvml};

use crate::probe;

fn nvml_cell() -> &'static Result<Nvml, String> {
    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    NVML.get_or_init(|| {
        // Probe the library first so its absence reads as such, not as an NVML error code.
        probe::nvml_loadable()?;
        Nvml::init().map_err(|e| format!("NVML init failed: {e}"))
    })
}

/// The process-wide NVML instance, or why there is none.
pub fn nvml() -> Result<&'static Nvml, String> {
    nvml_cell().as_ref().map_err(Clone::clone)
}

/// Number of GPUs NVML sees; `None` without NVML or when NVML cannot count them. For callers
/// that need only the count, so they need not touch `nvml_wrapper` types.
pub fn gpu_count() -> Option<u32> {
    nvml().ok()?.device_count().ok()
}

/// Human names of the set bits of an NVML throttle-reason mask.
pub fn throttle_reason_names(mask: u64) -> Vec<String> {
    const NAMES: &[(ThrottleReasons, &str)] = &[
        (ThrottleReasons::GPU_IDLE, "gpu_idle"),
        (
            ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
            "applications_clocks_setting",
        ),
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync_boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal"),
        (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake"),
        (ThrottleReasons::DISPLAY_CLOCK_SETTING, "display_clocks"),
    ];
    let mut out = Vec::new();
    let mut known = 0u64;
    for (flag, name) in NAMES {
        known |= flag.bits();
        if mask & flag.bits() != 0 {
            out.push((*name).to_string());
        }
    }
    let rest = mask & !known;
    if rest != 0 {
        // Newer drivers add reasons; keep them visible rather than drop them.
        out.push(format!("other_{rest:#x}"));
    }
    out
}

pub(super) fn device_throttle(d: &Device<'_>) -> Vec<String> {
    d.current_throttle_reasons()
        .map(|r| throttle_reason_names(r.bits()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_names_from_mask() {
        assert!(throttle_reason_names(0).is_empty());
        let m = ThrottleReasons::SW_POWER_CAP.bits() | ThrottleReasons::HW_THERMAL_SLOWDOWN.bits();
        assert_eq!(throttle_reason_names(m), vec!["sw_power_cap", "hw_thermal"]);
        let names = throttle_reason_names(ThrottleReasons::GPU_IDLE.bits() | (1 << 40));
        assert_eq!(names[0], "gpu_idle");
        assert!(names[1].starts_with("other_0x"), "{names:?}");
    }
}
