//! `doctor`: what this machine has for rdbench: driver, CUDA and NVRTC versions and paths,
//! NVML, GPUs, and the calibrations found.

use rdbench_core::Result;
use rdbench_gpu::probe::{driver_version, nvrtc_version, probe};

use super::Context;
use crate::output;

pub fn doctor(ctx: &Context) -> Result<i32> {
    let p = probe();
    let nvml = rdbench_gpu::monitor::nvml_report();
    let mut gpus = Vec::new();
    if let Ok(n) = rdbench_gpu::device::device_count() {
        for i in 0..n {
            match rdbench_gpu::device::describe(i) {
                Ok(d) => {
                    gpus.push(serde_json::json!({ "info": d, "fingerprint": d.fingerprint().id() }))
                }
                Err(e) => gpus.push(serde_json::json!({ "ordinal": i, "error": e.to_string() })),
            }
        }
    }
    let calibrations: Vec<_> = ctx
        .calibration_store()
        .list()
        .into_iter()
        .map(|(path, file)| match file {
            Ok(f) => serde_json::json!({
                "path": path,
                "device": f.fingerprint.id(),
                "entries": f.entries.iter().map(|e| format!("{}/{}", e.task, e.profile)).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({ "path": path, "error": e.to_string() }),
        })
        .collect();
    let sandbox = rdbench_runner::sandbox::capabilities();
    let cuda = driver_version();
    let nvrtc = nvrtc_version();
    // The PTX trap: PTX from an NVRTC newer than the driver cannot load; the
    // scorer compiles CUBIN for the device's architecture, which is not affected.
    let version_note = match (&cuda, &nvrtc) {
        (Some(c), Some(n)) if version_key(n) > version_key(c) => Some(format!(
            "NVRTC {n} is newer than the driver's CUDA {c}: PTX from it would not load; rdbench compiles CUBIN for the exact architecture, which does"
        )),
        _ => None,
    };
    let report = serde_json::json!({
        "rdbench_version": env!("CARGO_PKG_VERSION"),
        "home": ctx.home.root(),
        "libcuda": p.libcuda,
        "cuda_driver_version": cuda,
        "libnvrtc": p.libnvrtc,
        "nvrtc_version": nvrtc,
        "version_note": version_note,
        "nvml": nvml,
        "gpus": gpus,
        "cpu": rdbench_core::calibration::DeviceFingerprint::this_cpu(),
        "calibrations": calibrations,
        "sandbox": sandbox,
    });
    if ctx.json {
        output::json(&report);
        return Ok(0);
    }
    println!(
        "rdbench {}  (home: {})",
        env!("CARGO_PKG_VERSION"),
        ctx.home.root().display()
    );
    let lib = |name: &str, s: &rdbench_gpu::probe::LibraryStatus, version: Option<&String>| {
        if s.found {
            println!(
                "{name:<9} found{}{}",
                version
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default(),
                s.path
                    .as_ref()
                    .map(|p| format!(" at {}", p.display()))
                    .unwrap_or_default()
            );
        } else {
            println!("{name:<9} NOT FOUND: {}", s.error.as_deref().unwrap_or(""));
        }
    };
    lib("libcuda", &p.libcuda, cuda.as_ref());
    if !p.libcuda.found {
        println!("          no NVIDIA driver found: GPU tasks cannot be scored here (exit code 3); NVRTC compile checks still run");
    }
    lib("libnvrtc", &p.libnvrtc, nvrtc.as_ref());
    if nvml.available {
        println!(
            "NVML      driver {} (CUDA {}), {} GPU(s)",
            nvml.driver_version.as_deref().unwrap_or("?"),
            nvml.cuda_driver_version.as_deref().unwrap_or("?"),
            nvml.devices.len()
        );
    } else {
        println!(
            "NVML      not available ({}): monitors record CPU and memory from /proc",
            nvml.error.as_deref().unwrap_or("no NVIDIA GPU")
        );
    }
    if let Some(note) = &version_note {
        println!("note      {note}");
    }
    for g in &gpus {
        match g.get("info") {
            Some(d) => println!(
                "GPU {}     {} (sm_{}{}, {} SMs, {:.1} GiB, L2 {} MiB) fingerprint {}",
                d["ordinal"],
                d["name"].as_str().unwrap_or("?"),
                d["compute_capability"][0],
                d["compute_capability"][1],
                d["sm_count"],
                d["total_mem_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
                d["l2_cache_bytes"].as_u64().unwrap_or(0) >> 20,
                g["fingerprint"].as_str().unwrap_or("?")
            ),
            None => println!("GPU {}     error: {}", g["ordinal"], g["error"]),
        }
    }
    print_sandbox(&sandbox);
    if calibrations.is_empty() {
        println!("calibrations: none (run `rdbench calibrate` on a GPU machine)");
    }
    for c in &calibrations {
        println!(
            "calibration {}: {}",
            c["path"].as_str().unwrap_or("?"),
            c.get("entries")
                .map(|e| e.to_string())
                .unwrap_or_else(|| c["error"].to_string())
        );
    }
    Ok(0)
}

/// The sandbox for agents' programs: whether it can run here, its layers, and which limits.
fn print_sandbox(caps: &rdbench_runner::sandbox::Capabilities) {
    match &caps.why_not {
        None => println!(
            "sandbox   ready: {} at {}, user namespaces, seccomp, {}",
            caps.bwrap.as_ref().map_or("bwrap", |b| b.version.as_str()),
            caps.bwrap
                .as_ref()
                .map_or(String::new(), |b| b.path.display().to_string()),
            match caps.landlock_abi {
                0 => "no Landlock".to_string(),
                abi => format!("Landlock ABI {abi}"),
            }
        ),
        Some(why) => println!("sandbox   NOT AVAILABLE: {why}"),
    }
    match &caps.cgroup {
        rdbench_runner::sandbox::Cgroup::Delegated { path } => println!(
            "          limits: rlimits (cgroup v2 delegated at {}, not used yet)",
            path.display()
        ),
        rdbench_runner::sandbox::Cgroup::NotDelegated { why } => {
            println!("          limits: rlimits ({why})")
        }
    }
}

fn version_key(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}
