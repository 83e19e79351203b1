//! `doctor`: what this machine has for rdbench: driver, CUDA and NVRTC versions and paths,
//! NVML, GPUs, the sandbox, and the calibrations found. The text is a few short lines per
//! part (every library name tried once, grouped by why it failed; each calibrated task once
//! with its profiles); `--json` has everything in full.

use rdbench_core::Result;
use rdbench_gpu::probe::{driver_version, nvrtc_version, probe};

use super::glance::{dedup_counted, wrap, WIDTH};
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
    let store = ctx.calibration_store().list();
    let calibrations: Vec<_> = store
        .iter()
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
        // candle's quantized kernels (serve-llm) are slower (up to ~25x) without these at compile time.
        "built_with": { "avx2": cfg!(target_feature = "avx2"), "fma": cfg!(target_feature = "fma") },
    });
    if ctx.json {
        output::json(&report);
        return Ok(0);
    }
    let say = |label: &str, text: &str| {
        for line in wrap(&format!("{label:<13}"), INDENT, text, WIDTH) {
            println!("{line}");
        }
    };
    say(
        "rdbench",
        &format!(
            "{} (home: {})",
            env!("CARGO_PKG_VERSION"),
            ctx.home.root().display()
        ),
    );
    library(
        &say,
        "libcuda",
        &p.libcuda,
        cuda.as_ref(),
        "no NVIDIA driver found, so GPU tasks cannot be scored here (exit code 3); NVRTC \
         compile checks still run",
    );
    library(
        &say,
        "libnvrtc",
        &p.libnvrtc,
        nvrtc.as_ref(),
        "kernel sources are not compiled until it is installed (README, after the two commands)",
    );
    say("serve-llm", built_with_note());
    if nvml.available {
        say(
            "NVML",
            &format!(
                "driver {} (CUDA {}), {} GPU(s)",
                nvml.driver_version.as_deref().unwrap_or("?"),
                nvml.cuda_driver_version.as_deref().unwrap_or("?"),
                nvml.devices.len()
            ),
        );
    } else {
        say(
            "NVML",
            "not available: monitors record CPU and memory from /proc",
        );
        say_tried(&say, nvml.error.as_deref().unwrap_or("no NVIDIA GPU"));
    }
    if let Some(note) = &version_note {
        say("note", note);
    }
    for g in &gpus {
        let label = format!("GPU {}", g["ordinal"]);
        match g.get("info") {
            Some(d) => say(
                &label,
                &format!(
                    "{} (sm_{}{}, {} SMs, {:.1} GiB, L2 {} MiB) fingerprint {}",
                    d["name"].as_str().unwrap_or("?"),
                    d["compute_capability"][0],
                    d["compute_capability"][1],
                    d["sm_count"],
                    d["total_mem_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
                    d["l2_cache_bytes"].as_u64().unwrap_or(0) >> 20,
                    g["fingerprint"].as_str().unwrap_or("?")
                ),
            ),
            None => say(&label, &format!("error: {}", g["error"])),
        }
    }
    print_sandbox(&say, &sandbox);
    print_calibrations(&say, &store);
    say("", "everything in full: rdbench --json doctor");
    Ok(0)
}

/// A file of the calibration store, as `CalibrationStore::list` reads it.
type CalibrationListing = (
    std::path::PathBuf,
    Result<rdbench_core::calibration::CalibrationFile>,
);

/// Continuation lines start under the text, past the label column.
const INDENT: &str = "             ";

/// A library: where it was found, or what its absence means and every name tried, each once,
/// grouped by why it failed.
fn library(
    say: &dyn Fn(&str, &str),
    name: &str,
    status: &rdbench_gpu::probe::LibraryStatus,
    version: Option<&String>,
    without_it: &str,
) {
    if status.found {
        let version = version
            .map(|v| format!(", version {v}"))
            .unwrap_or_default();
        say(name, &format!("found{version}"));
        if let Some(path) = &status.path {
            say("", &format!("at {}", path.display()));
        }
    } else {
        say(name, &format!("NOT FOUND: {without_it}"));
        say_tried(say, status.error.as_deref().unwrap_or(""));
    }
}

/// A loader's error, as [`tried`] groups it: per reason, how many names and which.
fn say_tried(say: &dyn Fn(&str, &str), error: &str) {
    for (reason, names) in tried(error) {
        match names.len() {
            0 => say("", &reason),
            1 => say("", &format!("{}: {reason}", names[0])),
            n => {
                say("", &format!("{n} names tried, each: {reason}"));
                say("", &names.join(", "));
            }
        }
    }
}

/// A dynamic loader's error for several names ("a.so: a.so: cannot open ...; b.so: ...") as
/// (reason, names) groups: each reason once, in the order first seen, with every name that
/// failed for it once. Parts that name no library are reasons of their own.
fn tried(error: &str) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for part in error.split("; ").map(str::trim).filter(|p| !p.is_empty()) {
        // "a.so: ..." or "a.so not loadable: ...": the library's name is the first word.
        let parsed = part
            .split_once(": ")
            .and_then(|(head, rest)| Some((head.split(' ').next()?, rest)))
            .filter(|(name, _)| name.contains(".so"));
        let (name, reason) = match parsed {
            // dlerror repeats the name: "a.so: a.so: cannot open ..."
            Some((name, rest)) => (
                Some(name),
                rest.strip_prefix(&format!("{name}: ")).unwrap_or(rest),
            ),
            None => (None, part),
        };
        let at = match groups.iter().position(|(r, _)| r == reason) {
            Some(at) => at,
            None => {
                groups.push((reason.to_string(), Vec::new()));
                groups.len() - 1
            }
        };
        if let Some(name) = name {
            let names = &mut groups[at].1;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    groups
}

/// The sandbox for agents' programs: whether it can run here, its layers, and which limits.
fn print_sandbox(say: &dyn Fn(&str, &str), caps: &rdbench_runner::sandbox::Capabilities) {
    match &caps.why_not {
        None => say(
            "sandbox",
            &format!(
                "ready: {} at {}, user namespaces, seccomp, {}",
                caps.bwrap.as_ref().map_or("bwrap", |b| b.version.as_str()),
                caps.bwrap
                    .as_ref()
                    .map_or(String::new(), |b| b.path.display().to_string()),
                match caps.landlock_abi {
                    0 => "no Landlock".to_string(),
                    abi => format!("Landlock ABI {abi}"),
                }
            ),
        ),
        Some(why) => say("sandbox", &format!("NOT AVAILABLE: {why}")),
    }
    match &caps.cgroup {
        rdbench_runner::sandbox::Cgroup::Delegated { path } => say(
            "",
            &format!(
                "limits: rlimits (cgroup v2 delegated at {}, not used yet)",
                path.display()
            ),
        ),
        rdbench_runner::sandbox::Cgroup::NotDelegated { why } => {
            say("", &format!("limits: rlimits ({why})"))
        }
    }
}

/// Each calibration file: its device, then each task once with its profiles.
fn print_calibrations(say: &dyn Fn(&str, &str), store: &[CalibrationListing]) {
    if store.is_empty() {
        say(
            "calibrations",
            "none yet (run `rdbench calibrate` on a GPU machine)",
        );
    }
    for (path, file) in store {
        match file {
            Ok(f) => {
                let tasks = dedup_counted(f.entries.iter().map(|e| e.task.as_str()));
                let per_task: Vec<String> = tasks
                    .iter()
                    .map(|(task, _)| {
                        let profiles: Vec<&str> = f
                            .entries
                            .iter()
                            .filter(|e| e.task == *task)
                            .map(|e| e.profile.as_str())
                            .collect();
                        format!("{task} ({})", profiles.join(", "))
                    })
                    .collect();
                say(
                    "calibrations",
                    &format!("{} in {}:", f.fingerprint.id(), path.display()),
                );
                say("", &per_task.join(", "));
            }
            Err(e) => say(
                "calibrations",
                &format!("{}: unreadable: {e}", path.display()),
            ),
        }
    }
}

/// Whether this binary's quantized model kernels can use AVX2 and FMA (decided at compile time).
fn built_with_note() -> &'static str {
    if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "built with AVX2 and FMA: candle's quantized kernels at full speed"
    } else {
        "built without AVX2 and FMA: quantized models run slower (up to ~25x); build with \
         RUSTFLAGS=\"-C target-cpu=x86-64-v3\" (docs/serve-llm.md)"
    }
}

fn version_key(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::tried;

    #[test]
    fn tried_names_each_library_once_per_reason() {
        let error = "libcuda.so: libcuda.so: cannot open shared object file: No such file or \
                     directory; libcuda.so.1: libcuda.so.1: cannot open shared object file: No \
                     such file or directory; libcuda.so: libcuda.so: cannot open shared object \
                     file: No such file or directory; libcuda.so.2: libcuda.so.2: wrong ELF class; \
                     also not in CUDA folders (install it)";
        let groups = tried(error);
        assert_eq!(
            groups,
            [
                (
                    "cannot open shared object file: No such file or directory".to_string(),
                    vec!["libcuda.so".to_string(), "libcuda.so.1".to_string()]
                ),
                (
                    "wrong ELF class".to_string(),
                    vec!["libcuda.so.2".to_string()]
                ),
                ("also not in CUDA folders (install it)".to_string(), vec![]),
            ]
        );
    }
}
