//! Compiles CUDA C++ with NVRTC, for the exact architecture of the device (a CUBIN) or to PTX.
//!
//! A CUBIN for the device's own architecture sidesteps the PTX ISA trap: PTX from a newer
//! NVRTC than the driver knows is rejected at load time, while a CUBIN runs under CUDA's
//! minor-version compatibility. Results are cached on disk keyed by the source, the options
//! and the NVRTC version, so repeated scoring of an unchanged submission skips the compiler.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::probe::{nvrtc_version, require_nvrtc};
use crate::GpuError;

/// What NVRTC produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Compiles `source` (named `name` in messages, e.g. `solution.cu`).
pub fn compile(source: &str, name: &str, opts: &CompileOptions) -> Result<Compiled, GpuError> {
    require_nvrtc()?;
    let version = nvrtc_version().unwrap_or_else(|| "unknown".into());
    let flags = opts.flags();
    let ext = match opts.output {
        Output::Cubin => "cubin",
        Output::Ptx => "ptx",
    };
    let cache_path = opts
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.{ext}", cache_key(source, &flags, &version))));
    if let Some(path) = &cache_path {
        if let Ok(image) = std::fs::read(path) {
            return Ok(Compiled {
                name: name.into(),
                output: opts.output,
                arch: opts.arch,
                image,
                log: String::new(),
                nvrtc_version: version,
                cached: true,
            });
        }
    }
    let (image, log) = compile_uncached(source, name, &flags, opts.output)?;
    if let Some(path) = &cache_path {
        // The cache is an optimization: a failure to write it must not fail the compile.
        if let Err(e) = rdbench_core::fsutil::atomic_write(path, &image) {
            tracing::warn!("could not write NVRTC cache {}: {e}", path.display());
        }
    }
    Ok(Compiled {
        name: name.into(),
        output: opts.output,
        arch: opts.arch,
        image,
        log,
        nvrtc_version: version,
        cached: false,
    })
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
                String::from_utf8_lossy(&bytes).into_owned()
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
