//! Error kinds of the GPU runtime. Each says which call failed and, for compilation, carries
//! the NVRTC log, so a task can hand it to the agent verbatim.

use std::path::PathBuf;

/// Errors of the GPU runtime.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable NVIDIA driver (libcuda) on this machine, or no device.
    #[error("no NVIDIA driver found: {0}")]
    NoDriver(String),
    /// libnvrtc could not be found or loaded.
    #[error("NVRTC not found: {0}")]
    NoNvrtc(String),
    /// The source did not compile; `log` is NVRTC's program log.
    #[error("{name}: NVRTC compilation failed ({options}):\n{log}")]
    Compile {
        name: String,
        options: String,
        log: String,
    },
    /// A CUDA driver call failed; `call` names it.
    #[error("CUDA call {call} failed: {message}")]
    Driver { call: String, message: String },
    /// A kernel faulted (illegal address, trap, misaligned access...). The CUDA context is
    /// unusable afterwards; the worker process must exit.
    #[error("kernel fault during {call}: {message}")]
    KernelFault { call: String, message: String },
    /// A launch was rejected (bad configuration, too many resources, missing function).
    #[error("launch of kernel {kernel:?} failed: {message}")]
    Launch { kernel: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GpuError {
    pub(crate) fn driver(call: &str, err: impl std::fmt::Display) -> Self {
        let message = err.to_string();
        if is_fault(&message) {
            GpuError::KernelFault {
                call: call.to_string(),
                message,
            }
        } else {
            GpuError::Driver {
                call: call.to_string(),
                message,
            }
        }
    }

    /// A failed `cuLaunchKernel`: a sticky fault left by an earlier kernel, or a rejected launch.
    pub(crate) fn launch(kernel: &str, err: impl std::fmt::Display) -> Self {
        let message = err.to_string();
        if is_fault(&message) {
            GpuError::KernelFault {
                call: format!("cuLaunchKernel({kernel})"),
                message,
            }
        } else {
            GpuError::Launch {
                kernel: kernel.to_string(),
                message,
            }
        }
    }

    /// Whether this error means the submission (not the machine) is at fault.
    pub fn is_submission_fault(&self) -> bool {
        matches!(
            self,
            GpuError::Compile { .. } | GpuError::KernelFault { .. } | GpuError::Launch { .. }
        )
    }
}

/// Sticky CUDA errors that a kernel causes and that poison the context.
fn is_fault(message: &str) -> bool {
    const FAULTS: [&str; 8] = [
        "ILLEGAL_ADDRESS",
        "ILLEGAL_INSTRUCTION",
        "MISALIGNED_ADDRESS",
        "INVALID_ADDRESS_SPACE",
        "INVALID_PC",
        "HARDWARE_STACK_ERROR",
        "ASSERT",
        "LAUNCH_FAILED",
    ];
    FAULTS.iter().any(|f| message.contains(f))
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
