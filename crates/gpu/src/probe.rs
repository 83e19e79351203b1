//! Finds the CUDA driver, NVRTC and NVML libraries before anything calls into cudarc.
//!
//! cudarc loads its libraries lazily by name and panics when one is missing, so every entry
//! point of this crate asks the probe first. NVRTC from the `nvidia-cuda-nvrtc` wheel is not on
//! the loader's path; the probe finds it in Python's site-packages (or `$RDBENCH_NVRTC`) and
//! preloads it by full path, after which cudarc's by-name `dlopen` resolves to the same library
//! through its soname.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use crate::{GpuError, GpuResult};

/// What was found for one library.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryStatus {
    pub found: bool,
    /// Where it was loaded from, when known.
    pub path: Option<PathBuf>,
    /// Why it is not usable.
    pub error: Option<String>,
}

/// The result of probing this machine.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub libcuda: LibraryStatus,
    pub libnvrtc: LibraryStatus,
    pub libnvml: LibraryStatus,
}

/// The file name NVML is loaded from (what nvml-wrapper uses on Linux).
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Every name NVML is probed by, in order; the monitor's nvml-wrapper opens [`NVML_LIBRARY`].
const NVML_NAMES: &[&str] = &["libnvidia-ml.so", NVML_LIBRARY];

/// Exactly the names cudarc will try for a library, in its order: whatever the probe can load
/// by one of these, cudarc can too.
fn cudarc_names(lib: &str) -> Vec<String> {
    cudarc::get_lib_name_candidates(lib)
}

/// Loads the first library of `names` that the loader finds, and keeps it loaded.
fn try_names<S: AsRef<str>>(names: &[S]) -> Result<(), String> {
    let mut errors = Vec::new();
    for name in names.iter().map(AsRef::as_ref) {
        // SAFETY: loading a shared library runs its initializers; these are NVIDIA's own
        // libraries that cudarc would load anyway.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                // Keep it loaded for the life of the process, as cudarc does.
                std::mem::forget(lib);
                return Ok(());
            }
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// The first file mapped into this process whose path `matches`, from /proc/self/maps: where a
/// loaded library was loaded from. The crate's one reader of the map (the monitor's report uses
/// it through [`loaded_nvml_path`]).
fn mapped_file(matches: impl Fn(&str) -> bool) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| matches(p))
        .map(str::to_string)
}

/// Path of a loaded library whose file name starts with `prefix`.
fn loaded_path(prefix: &str) -> Option<PathBuf> {
    mapped_file(|p| {
        Path::new(p)
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with(prefix))
    })
    .map(PathBuf::from)
}

/// Where the loaded NVML library lives, for `rdbench doctor`. Matches anywhere in the path, not
/// just the file name as [`loaded_path`] does, as the monitor's report always has.
pub(crate) fn loaded_nvml_path() -> Option<String> {
    mapped_file(|p| p.contains("libnvidia-ml"))
}

/// Ok when the loader can open [`NVML_LIBRARY`], the name nvml-wrapper opens, so the monitor can
/// report a missing library as such rather than as an NVML error code. Not kept loaded: NVML's
/// own initialization loads it again.
pub(crate) fn nvml_loadable() -> Result<(), String> {
    // SAFETY: loading NVML runs no initialisers with preconditions on us.
    match unsafe { libloading::Library::new(NVML_LIBRARY) } {
        Ok(lib) => {
            drop(lib);
            Ok(())
        }
        Err(e) => Err(format!("{NVML_LIBRARY} not loadable: {e}")),
    }
}

/// How long python3 may take to name its site-packages (it takes about 150 ms; a broken
/// interpreter must not hang the probe).
const PYTHON_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Folders where the `nvidia-cuda-nvrtc` wheel or a CUDA toolkit may have put libnvrtc.
fn nvrtc_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("RDBENCH_NVRTC") {
        let p = PathBuf::from(p);
        dirs.push(if p.is_file() {
            p.parent().map(Path::to_path_buf).unwrap_or(p)
        } else {
            p
        });
    }
    for cuda in [
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/lib/x86_64-linux-gnu",
    ] {
        dirs.push(PathBuf::from(cuda));
    }
    // Python site-packages: ask python3 once, it knows its own layout.
    let asked = rdbench_runner::Command::new("python3")
        .args(["-c", "import site,sys;print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))"])
        .stdout(rdbench_runner::Output::Capture { tail: 64 << 10 })
        .deadline(PYTHON_DEADLINE)
        .run();
    if let Some(out) = asked
        .ok()
        .filter(|o| o.exit == rdbench_runner::Exit::Exited(0))
    {
        for line in out.stdout.text().lines() {
            for sub in [
                "nvidia/cu13/lib",
                "nvidia/cu12/lib",
                "nvidia/cuda_nvrtc/lib",
            ] {
                dirs.push(Path::new(line.trim()).join(sub));
            }
        }
    }
    dirs
}

fn probe_nvrtc() -> LibraryStatus {
    match try_names(&cudarc_names("nvrtc")) {
        Ok(_) => LibraryStatus {
            found: true,
            path: loaded_path("libnvrtc.so"),
            error: None,
        },
        Err(by_name) => {
            // Sonames cudarc's by-name lookup will match once the library is loaded.
            for (dir, soname) in nvrtc_search_dirs()
                .into_iter()
                .flat_map(|d| [(d.clone(), "libnvrtc.so.13"), (d, "libnvrtc.so.12")])
            {
                let candidate = dir.join(soname);
                if !candidate.is_file() {
                    continue;
                }
                // SAFETY: as above. Loaded by full path so the by-name lookup finds it by soname.
                if let Ok(lib) = unsafe { libloading::Library::new(&candidate) } {
                    std::mem::forget(lib);
                    return LibraryStatus {
                        found: true,
                        path: Some(candidate),
                        error: None,
                    };
                }
            }
            LibraryStatus {
                found: false,
                path: None,
                error: Some(format!(
                    "{by_name}; also not in CUDA or Python site-packages folders (install it with \
                     `pip install nvidia-cuda-nvrtc`, or set RDBENCH_NVRTC to libnvrtc.so.13)"
                )),
            }
        }
    }
}

fn probe_simple<S: AsRef<str>>(names: &[S], prefix: &str) -> LibraryStatus {
    match try_names(names) {
        Ok(_) => LibraryStatus {
            found: true,
            path: loaded_path(prefix),
            error: None,
        },
        Err(e) => LibraryStatus {
            found: false,
            path: None,
            error: Some(e),
        },
    }
}

/// Probes once per process; later calls return the same answer.
pub fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| Probe {
        libcuda: probe_simple(&cudarc_names("cuda"), "libcuda.so"),
        libnvrtc: probe_nvrtc(),
        libnvml: probe_simple(NVML_NAMES, "libnvidia-ml.so"),
    })
}

/// Ok when cudarc's driver API can be called without panicking.
pub fn require_driver() -> GpuResult {
    let p = probe();
    if p.libcuda.found {
        Ok(())
    } else {
        // One line: the full list of names tried is in `rdbench doctor`.
        Err(GpuError::NoDriver(
            "libcuda.so.1 not found (`rdbench doctor` lists every name tried)".into(),
        ))
    }
}

/// Ok when cudarc's NVRTC API can be called without panicking.
pub fn require_nvrtc() -> GpuResult {
    let p = probe();
    if p.libnvrtc.found {
        Ok(())
    } else {
        Err(GpuError::NoNvrtc(
            p.libnvrtc.error.clone().unwrap_or_default(),
        ))
    }
}

/// CUDA driver version (e.g. "13.0"), when a driver is present.
pub fn driver_version() -> Option<String> {
    require_driver().ok()?;
    let mut v: std::ffi::c_int = 0;
    // SAFETY: libcuda is loaded (probed above); cuDriverGetVersion only writes an int.
    let rc = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    (rc == cudarc::driver::sys::CUresult::CUDA_SUCCESS)
        .then(|| format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// NVRTC version (e.g. "13.5"), when NVRTC is present.
pub fn nvrtc_version() -> Option<String> {
    require_nvrtc().ok()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: libnvrtc is loaded (probed above); nvrtcVersion only writes two ints.
    let rc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (rc == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS).then(|| format!("{major}.{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_never_panics_and_is_consistent() {
        let p = probe();
        assert_eq!(p.libcuda.found, require_driver().is_ok());
        assert_eq!(p.libnvrtc.found, require_nvrtc().is_ok());
        if !p.libcuda.found {
            let msg = require_driver().unwrap_err().to_string();
            assert!(msg.contains("no NVIDIA driver"), "{msg}");
            assert!(driver_version().is_none());
        }
        if p.libnvrtc.found {
            let v = nvrtc_version().expect("a loaded NVRTC reports its version");
            assert!(v.starts_with("1"), "{v}");
        }
    }
}
