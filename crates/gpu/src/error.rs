//! Error kinds of the GPU runtime, in cudarc's manner: a failed driver call keeps the driver's
//! `CUresult` and is classified by that code, never by the words of its message; a failed
//! compilation keeps NVRTC's log. [`GpuError::invalid_kind`] is the one place that decides
//! whether an error is the submission's doing (an invalid entry of some [`InvalidKind`]) or
//! the machine's (an environment error, exit 3).

use std::path::PathBuf;

use cudarc::driver::sys::CUresult;
use rdbench_core::outcome::InvalidKind;

/// Errors of the GPU runtime.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable NVIDIA driver (libcuda) on this machine, or no device.
    #[error("no NVIDIA driver found: {0}")]
    NoDriver(String),
    /// libnvrtc could not be found or loaded.
    #[error("NVRTC not found: {0}")]
    NoNvrtc(String),
    /// The source did not compile; `log` is the compiler's log.
    #[error("{name}: compilation failed ({options}):\n{log}")]
    Compile {
        name: String,
        options: String,
        log: String,
    },
    /// Compiling the source went over a resource limit of the compiler (memory, CPU or
    /// wall-clock time, output size): the source's doing, e.g. an exponential template
    /// instantiation. `limit` names the limit, `detail` says what was seen (the compiler's log).
    #[error("{name}: compilation stopped at a resource limit ({limit}):\n{detail}")]
    ResourceLimit {
        name: String,
        limit: String,
        detail: String,
    },
    /// The compile child process could not be run, or answered nonsense: the kit's or the
    /// machine's problem, never the submission's.
    #[error("the NVRTC compile child failed: {0}")]
    CompileChild(String),
    /// A CUDA driver call failed; `call` names it and `code` is the driver's.
    #[error("CUDA call {call} failed: {message}")]
    Driver {
        call: String,
        code: Option<CUresult>,
        message: String,
    },
    /// A kernel faulted (illegal address, trap, misaligned access...). The CUDA context is
    /// unusable afterwards; the worker process must exit.
    #[error("kernel fault during {call}: {message}")]
    KernelFault {
        call: String,
        code: Option<CUresult>,
        message: String,
    },
    /// A launch was rejected (bad configuration, too many resources, missing function).
    #[error("launch of kernel {kernel:?} failed: {message}")]
    Launch {
        kernel: String,
        code: Option<CUresult>,
        message: String,
    },
    /// A compiled module could not be loaded, or lacks a kernel.
    #[error("loading {name} failed: {message}")]
    Load { name: String, message: String },
    /// A trusted launch whose arguments do not match the kernel's parsed signature: a bug in
    /// the kit or a task's harness wiring, caught before it could become undefined behaviour.
    #[error("kernel {kernel:?}: arguments do not match its signature: {message}")]
    Signature { kernel: String, message: String },
    /// The backend cannot do this (e.g. a 2-D grid on the CPU emulator).
    #[error("{backend} backend: {what}")]
    Unsupported { backend: &'static str, what: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A driver error in words: its code name (`CUDA_ERROR_ILLEGAL_ADDRESS`) and, when libcuda is
/// loaded, the driver's description (asking cudarc without libcuda would panic).
fn describe(e: &cudarc::driver::DriverError) -> String {
    let name = format!("{:?}", e.0);
    if crate::probe::require_driver().is_err() {
        return name;
    }
    match e.error_string() {
        Ok(s) => format!("{name}: {}", s.to_string_lossy()),
        Err(_) => name,
    }
}

impl GpuError {
    /// A failed driver call, classified by its code: sticky kernel faults become
    /// [`GpuError::KernelFault`], everything else [`GpuError::Driver`].
    pub(crate) fn driver(call: &str, e: cudarc::driver::DriverError) -> Self {
        let message = describe(&e);
        if is_fault(e.0) {
            GpuError::KernelFault {
                call: call.to_string(),
                code: Some(e.0),
                message,
            }
        } else {
            GpuError::Driver {
                call: call.to_string(),
                code: Some(e.0),
                message,
            }
        }
    }

    /// A failed `cuLaunchKernel`: a sticky fault left by an earlier kernel, or a rejected launch.
    pub(crate) fn launch(kernel: &str, e: cudarc::driver::DriverError) -> Self {
        let message = describe(&e);
        if is_fault(e.0) {
            GpuError::KernelFault {
                call: format!("cuLaunchKernel({kernel})"),
                code: Some(e.0),
                message,
            }
        } else {
            GpuError::Launch {
                kernel: kernel.to_string(),
                code: Some(e.0),
                message,
            }
        }
    }

    /// A rejected launch found before calling the driver (limits, shared memory).
    pub fn rejected(kernel: &str, message: impl Into<String>) -> Self {
        GpuError::Launch {
            kernel: kernel.to_string(),
            code: None,
            message: message.into(),
        }
    }

    /// The kind of invalid entry this error makes when a submission's code caused it, or
    /// `None` when it is the machine's (or the kit's) fault and must not count against it.
    pub fn invalid_kind(&self) -> Option<InvalidKind> {
        match self {
            GpuError::Compile { .. } => Some(InvalidKind::Compile),
            GpuError::ResourceLimit { .. } => Some(InvalidKind::ResourceLimit),
            GpuError::KernelFault { .. } => Some(InvalidKind::KernelFault),
            GpuError::Launch { .. } => Some(InvalidKind::Launch),
            GpuError::Load { .. } => Some(InvalidKind::Load),
            // The emulator's limits are the submission's choice of launch shape.
            GpuError::Unsupported { .. } => Some(InvalidKind::Launch),
            GpuError::NoDriver(_)
            | GpuError::NoNvrtc(_)
            | GpuError::CompileChild(_)
            | GpuError::Driver { .. }
            | GpuError::Signature { .. }
            | GpuError::Io { .. } => None,
        }
    }

    /// Whether this error means the submission (not the machine) is at fault.
    pub fn is_submission_fault(&self) -> bool {
        self.invalid_kind().is_some()
    }

    /// The driver's code, when a driver call failed.
    pub fn code(&self) -> Option<CUresult> {
        match self {
            GpuError::Driver { code, .. }
            | GpuError::KernelFault { code, .. }
            | GpuError::Launch { code, .. } => *code,
            _ => None,
        }
    }
}

/// Sticky CUDA errors that a kernel causes and that poison the context. A display watchdog
/// (`LAUNCH_TIMEOUT`) and ECC errors are the machine's, not the kernel's.
pub fn is_fault(code: CUresult) -> bool {
    matches!(
        code,
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
            | CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUresult::CUDA_ERROR_MISALIGNED_ADDRESS
            | CUresult::CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUresult::CUDA_ERROR_INVALID_PC
            | CUresult::CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUresult::CUDA_ERROR_ASSERT
            | CUresult::CUDA_ERROR_LAUNCH_FAILED
    )
}

impl From<GpuError> for rdbench_core::Error {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::NoDriver(_) | GpuError::NoNvrtc(_) => {
                rdbench_core::Error::Environment(e.to_string())
            }
            GpuError::Io { path, source } => rdbench_core::Error::Io { path, source },
            other => rdbench_core::Error::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_classified_by_code() {
        let fault = GpuError::driver(
            "cuStreamSynchronize",
            cudarc::driver::DriverError(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS),
        );
        assert!(matches!(fault, GpuError::KernelFault { .. }), "{fault:?}");
        assert_eq!(fault.invalid_kind(), Some(InvalidKind::KernelFault));
        let oom = GpuError::driver(
            "cuMemAlloc",
            cudarc::driver::DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        );
        assert_eq!(oom.invalid_kind(), None, "the machine's problem: {oom}");
        let rejected = GpuError::launch(
            "k",
            cudarc::driver::DriverError(CUresult::CUDA_ERROR_INVALID_VALUE),
        );
        assert_eq!(rejected.invalid_kind(), Some(InvalidKind::Launch));
        let sticky = GpuError::launch(
            "k",
            cudarc::driver::DriverError(CUresult::CUDA_ERROR_LAUNCH_FAILED),
        );
        assert_eq!(sticky.invalid_kind(), Some(InvalidKind::KernelFault));
        assert_eq!(sticky.code(), Some(CUresult::CUDA_ERROR_LAUNCH_FAILED));
    }
}
