//! Compiles CUDA C++ with NVRTC, for the exact architecture of the device (a CUBIN) or to PTX.
//!
//! A CUBIN for the device's own architecture sidesteps the PTX ISA trap: PTX from a newer
//! NVRTC than the driver knows is rejected at load time, while a CUBIN runs under CUDA's
//! minor-version compatibility.
//!
//! Two defences, because the source is an agent's:
//! - **Isolation** ([`Isolation`], set once per process with [`set_isolation`]): the `rdbench`
//!   binary compiles in a child of itself (its hidden `__nvrtc` subcommand runs
//!   [`child_main`], a `rdbench_runner` worker) under [`CompileLimits`] (address space, CPU,
//!   wall clock, log size), so a template bomb costs one invalid entry of kind
//!   `resource_limit` instead of the scorer's memory. A library user that sets nothing (the
//!   unit tests) compiles in its own process.
//!   Cache hits never start a child.
//! - **A sandbox** ([`sandbox`]): the child restricts itself with Landlock before compiling,
//!   so that NVRTC can read only its own library folder, whatever the source asks for; and
//!   every log is cut down to the diagnostics about the submission's own file
//!   ([`filter_log`](crate::compile_log::filter_log)), so no other file's lines come back.
//! - **An authenticated cache** ([`cache`]): results are cached on disk keyed by the source,
//!   the options and the NVRTC version, and an entry counts only if its HMAC under the
//!   cache's private secret checks out, so a CUBIN planted under the predictable name is
//!   compiled over instead of trusted.

mod cache;
mod child;
pub(crate) mod sandbox;

use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::compile_limits::CompileLimits;
pub use child::child_main;

use crate::probe::{nvrtc_version, require_nvrtc};
use crate::GpuError;

/// Where NVRTC runs.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// In this process, without limits: the default of a process that set nothing (unit
    /// tests, library users compiling their own sources).
    InProcess,
    /// In a child process `exe args...`, which must run [`child_main`], under `limits`.
    Child {
        exe: PathBuf,
        args: Vec<OsString>,
        limits: CompileLimits,
    },
}

impl Isolation {
    /// This process's own executable re-run with `args` (e.g. `["__nvrtc"]`), under the
    /// default limits.
    pub fn current_exe(args: &[&str]) -> Result<Isolation, GpuError> {
        let exe = std::env::current_exe()
            .map_err(|e| GpuError::CompileChild(format!("locating this executable: {e}")))?;
        Ok(Isolation::Child {
            exe,
            args: args.iter().map(OsString::from).collect(),
            limits: CompileLimits::default(),
        })
    }

    pub fn is_child(&self) -> bool {
        matches!(self, Isolation::Child { .. })
    }
}

static ISOLATION: OnceLock<Isolation> = OnceLock::new();

/// Sets where this process's compiles run, once (at startup); a second call is refused and
/// returns its argument. [`compile`] uses it; [`compile_with`] takes one explicitly.
pub fn set_isolation(isolation: Isolation) -> Result<(), Isolation> {
    ISOLATION.set(isolation)
}

/// Where this process's compiles run: what [`set_isolation`] set, else in-process.
pub fn isolation() -> &'static Isolation {
    ISOLATION.get().unwrap_or(&Isolation::InProcess)
}

/// What NVRTC produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Machine code for one real architecture (`sm_XY`).
    Cubin,
    /// PTX for a virtual architecture (`compute_XY`).
    Ptx,
}

/// How to compile.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Compute capability as two digits, e.g. `90` for Hopper.
    pub arch: u32,
    pub output: Output,
    /// Extra NVRTC options the scorer adds (never the submission).
    pub extra: Vec<String>,
    /// Cache folder; `None` disables caching.
    pub cache_dir: Option<PathBuf>,
}

impl CompileOptions {
    pub fn cubin(arch: u32) -> Self {
        CompileOptions {
            arch,
            output: Output::Cubin,
            extra: Vec::new(),
            cache_dir: None,
        }
    }

    pub fn with_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    fn flags(&self) -> Vec<String> {
        let arch = match self.output {
            Output::Cubin => format!("--gpu-architecture=sm_{}", self.arch),
            Output::Ptx => format!("--gpu-architecture=compute_{}", self.arch),
        };
        let mut flags = vec![arch, "-std=c++17".to_string(), "-lineinfo".to_string()];
        flags.extend(self.extra.iter().cloned());
        flags
    }
}

/// A compiled module image.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub name: String,
    pub output: Output,
    pub arch: u32,
    pub image: Vec<u8>,
    /// NVRTC's log (warnings) from a successful compile.
    pub log: String,
    pub nvrtc_version: String,
    /// Whether this came from the cache.
    pub cached: bool,
}

fn cache_key(source: &str, flags: &[String], version: &str) -> String {
    let mut h = Sha256::new();
    h.update(version.as_bytes());
    for f in flags {
        h.update([0]);
        h.update(f.as_bytes());
    }
    h.update([1]);
    h.update(source.as_bytes());
    hex::encode(h.finalize())
}

/// Compiles `source` (named `name` in messages, e.g. `solution.cu`) where this process's
/// [`isolation`] says.
pub fn compile(source: &str, name: &str, opts: &CompileOptions) -> Result<Compiled, GpuError> {
    compile_with(source, name, opts, isolation())
}

/// Compiles `source` under `isolation`, through the cache when `opts` has one.
pub fn compile_with(
    source: &str,
    name: &str,
    opts: &CompileOptions,
    isolation: &Isolation,
) -> Result<Compiled, GpuError> {
    require_nvrtc()?;
    let version = nvrtc_version().unwrap_or_else(|| "unknown".into());
    let flags = opts.flags();
    let ext = match opts.output {
        Output::Cubin => "cubin",
        Output::Ptx => "ptx",
    };
    let key = cache_key(source, &flags, &version);
    // A cache that cannot be opened (an unwritable folder, a secret others can read) costs
    // speed, never correctness: compile without it.
    let cache = opts.cache_dir.as_ref().and_then(|dir| {
        cache::Cache::open(dir)
            .map_err(|e| tracing::warn!("NVRTC cache {} not used: {e}", dir.display()))
            .ok()
    });
    let done = |image, log, cached| Compiled {
        name: name.into(),
        output: opts.output,
        arch: opts.arch,
        image,
        log,
        nvrtc_version: version.clone(),
        cached,
    };
    if let Some(image) = cache.as_ref().and_then(|c| c.get(&key, ext)) {
        return Ok(done(image, String::new(), true));
    }
    let (image, log) = match isolation {
        Isolation::InProcess => compile_uncached(source, name, &flags, opts.output)
            .map(|(image, log)| (image, crate::compile_log::cap_log(log, MAX_LOG_BYTES)))
            .map_err(|e| match e {
                GpuError::Compile { log, .. } if is_out_of_memory(&log) => {
                    GpuError::ResourceLimit {
                        name: name.into(),
                        limit: "this machine's memory".into(),
                        detail: crate::compile_log::cap_log(log, MAX_LOG_BYTES),
                    }
                }
                GpuError::Compile { name, options, log } => GpuError::Compile {
                    name,
                    options,
                    log: crate::compile_log::cap_log(log, MAX_LOG_BYTES),
                },
                other => other,
            })?,
        Isolation::Child { exe, args, limits } => {
            child::compile(exe, args, limits, source, name, &flags, opts.output)?
        }
    };
    if let Some(cache) = &cache {
        // The cache is an optimization: a failure to write it must not fail the compile.
        if let Err(e) = cache.put(&key, ext, &image) {
            tracing::warn!("could not write NVRTC cache entry {key}.{ext}: {e}");
        }
    }
    Ok(done(image, log, false))
}

/// Most compiler log kept from an in-process compile (a child's limits carry their own).
const MAX_LOG_BYTES: usize = crate::compile_limits::DEFAULT_MAX_LOG_BYTES;

/// NVRTC's wording when an allocation fails inside the compiler: the API reports it as a
/// plain compilation error (`NVRTC_ERROR_COMPILATION`), with this in the log.
fn is_out_of_memory(log: &str) -> bool {
    log.contains("catastrophic error: out of memory")
}

fn compile_uncached(
    source: &str,
    name: &str,
    flags: &[String],
    output: Output,
) -> Result<(Vec<u8>, String), GpuError> {
    use cudarc::nvrtc::{result, sys};
    let compile_err = |log: String| GpuError::Compile {
        name: name.into(),
        options: flags.join(" "),
        log,
    };
    let src = CString::new(source).map_err(|_| compile_err("source contains a NUL byte".into()))?;
    let cname = CString::new(name).map_err(|_| compile_err("name contains a NUL byte".into()))?;
    let prog = result::create_program(&src, Some(&cname))
        .map_err(|e| compile_err(format!("nvrtcCreateProgram: {e:?}")))?;
    // SAFETY: `prog` is a live program created above and destroyed exactly once below.
    let outcome = unsafe {
        let compiled = result::compile_program(prog, flags);
        let log = result::get_program_log(prog)
            .map(|chars| {
                let bytes: Vec<u8> = chars
                    .iter()
                    .map(|&c| c as u8)
                    .take_while(|&b| b != 0)
                    .collect();
                // Only what NVRTC says about the submission itself reaches the agent.
                crate::compile_log::filter_log(&String::from_utf8_lossy(&bytes), name)
            })
            .unwrap_or_default();
        match compiled {
            Err(e) => Err(compile_err(if log.trim().is_empty() {
                format!("{e:?}")
            } else {
                log
            })),
            Ok(()) => {
                let image = match output {
                    Output::Ptx => result::get_ptx(prog)
                        .map(|chars| chars.iter().map(|&c| c as u8).collect::<Vec<u8>>())
                        .map_err(|e| compile_err(format!("nvrtcGetPTX: {e:?}"))),
                    Output::Cubin => {
                        let mut size = 0usize;
                        let rc = sys::nvrtcGetCUBINSize(prog, &mut size);
                        if rc != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                            Err(compile_err(format!(
                                "nvrtcGetCUBINSize: {rc:?} (size {size})"
                            )))
                        } else {
                            let mut buf = vec![0u8; size];
                            let rc = sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut _);
                            if rc == sys::nvrtcResult::NVRTC_SUCCESS {
                                Ok(buf)
                            } else {
                                Err(compile_err(format!("nvrtcGetCUBIN: {rc:?}")))
                            }
                        }
                    }
                };
                image.map(|img| (img, log))
            }
        }
    };
    // SAFETY: destroyed once; the outcome no longer refers to it.
    let _ = unsafe { result::destroy_program(prog) };
    outcome
}

/// Reads a `.cu` file and compiles it; errors name the file.
pub fn compile_file(path: &Path, opts: &CompileOptions) -> Result<Compiled, GpuError> {
    let source = std::fs::read_to_string(path).map_err(|e| GpuError::Io {
        path: path.into(),
        source: e,
    })?;
    compile(&source, &path.display().to_string(), opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"extern "C" __global__ void add_one(int* x, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) x[i] += 1;
    }"#;

    #[test]
    fn compiles_to_cubin_and_caches_or_reports_missing_nvrtc() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CompileOptions::cubin(90).with_cache(dir.path());
        match compile(GOOD, "good.cu", &opts) {
            Err(GpuError::NoNvrtc(msg)) => {
                eprintln!("skipped: NVRTC not installed ({msg})");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(first) => {
                assert!(!first.cached);
                assert_eq!(&first.image[..4], b"\x7fELF", "a CUBIN is an ELF image");
                let second = compile(GOOD, "good.cu", &opts).unwrap();
                assert!(second.cached);
                assert_eq!(first.image, second.image);
            }
        }
    }

    /// The file a cache entry of `source` compiled with `opts` lives in: the predictable name
    /// an agent would plant under.
    fn entry_path(source: &str, opts: &CompileOptions) -> PathBuf {
        let version = nvrtc_version().unwrap_or_else(|| "unknown".into());
        let key = cache_key(source, &opts.flags(), &version);
        opts.cache_dir
            .as_ref()
            .unwrap()
            .join(format!("{key}.cubin"))
    }

    #[test]
    fn a_planted_cubin_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let opts = CompileOptions::cubin(90).with_cache(dir.path());
        let good = match compile(GOOD, "good.cu", &opts) {
            Err(GpuError::NoNvrtc(msg)) => return eprintln!("skipped: no NVRTC ({msg})"),
            other => other.unwrap(),
        };
        // A source that cannot compile, with a real CUBIN planted under its cache name: both
        // bare, and as a valid entry of another source copied over.
        let broken = "#error this does not compile\n";
        let planted = entry_path(broken, &opts);
        for plant in [
            good.image.clone(),
            std::fs::read(entry_path(GOOD, &opts)).unwrap(),
        ] {
            std::fs::write(&planted, &plant).unwrap();
            match compile(broken, "broken.cu", &opts) {
                Err(GpuError::Compile { log, .. }) => assert!(log.contains("#error"), "{log}"),
                other => panic!("the planted image was used: {other:?}"),
            }
        }
        // A planted file under a good source's name is compiled over and replaced.
        std::fs::write(entry_path(GOOD, &opts), b"\x7fELF not a cubin").unwrap();
        let again = compile(GOOD, "good.cu", &opts).unwrap();
        assert!(!again.cached, "a planted entry is a miss");
        assert_eq!(again.image, good.image);
        assert!(
            compile(GOOD, "good.cu", &opts).unwrap().cached,
            "and was rewritten"
        );
    }

    #[test]
    fn compile_error_carries_the_log() {
        match compile("this is not CUDA", "bad.cu", &CompileOptions::cubin(80)) {
            Err(GpuError::NoNvrtc(_)) => eprintln!("skipped: NVRTC not installed"),
            Err(GpuError::Compile { name, log, .. }) => {
                assert_eq!(name, "bad.cu");
                assert!(log.contains("bad.cu"), "log names the file: {log}");
                assert!(log.contains("error"), "{log}");
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
    }
}
