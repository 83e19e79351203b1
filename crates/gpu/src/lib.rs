//! # rdbench-gpu
//!
//! The GPU runtime behind one safe API, in cudarc's layering: libraries are loaded at run
//! time, so this crate builds, and its tests pass, on machines with no CUDA at all.
//!
//! - [`probe`]: finds libcuda, libnvrtc and libnvidia-ml *before* anything calls into cudarc
//!   (which panics when a library is missing) and turns absence into [`GpuError::NoDriver`].
//! - [`nvrtc`]: compiles CUDA C++ with NVRTC (to CUBIN for the device's exact architecture,
//!   or PTX), in a resource-limited child process when the binary says so, with an
//!   authenticated on-disk cache keyed by source, options and NVRTC version.
//! - [`compile_limits`]: the rlimits and wall clock of compiler child processes (run through
//!   `rdbench_runner`), and [`compile_log`]: what of a compiler's log comes back.
//! - [`cuda_sig`]: the `extern "C" __global__` signatures of a CUDA source (a small C front end).
//! - [`expr`] and [`plan`]: the declarative `launch.toml` of kernel submissions: integer
//!   expressions of the problem size and named constants, scratch buffers, launches.
//! - [`device`]: a CUDA device, its stream, buffers, modules, launches and events.
//! - [`backend`]: the device seam of kernel tasks: [`backend::KernelBackend`] with a CUDA and a
//!   CPU-emulator implementation, and launches checked against parsed signatures.
//! - [`bench`]: **the timing model**, written once for every kernel task (read its overview).
//! - [`kernel_task`]: the [`kernel_task::KernelTask`] trait a kernel task implements, and the
//!   adapter that makes it a `Task`.
//! - [`source_rules`]: what a submission's source may not do (include files, nest unboundedly).
//! - [`submission`]: loading and checking `solution.cu` + `launch.toml` without a GPU.
//! - [`monitor`]: NVML sampler (or /proc fallback) writing a timeline and a summary.

pub mod backend;
pub mod bench;
pub mod compile_limits;
pub mod compile_log;
pub mod cuda_sig;
pub mod device;
pub mod error;
pub mod expr;
pub mod kernel_task;
pub mod monitor;
pub mod nvrtc;
pub mod plan;
pub mod probe;
pub mod source_rules;
pub mod submission;
pub mod testing;

/// The old name of [`bench::analysis`].
pub use bench::analysis as timing;

pub use error::GpuError;

/// What the GPU layer's fallible steps return (a launch, a copy, a harness call).
pub type GpuResult<T = ()> = Result<T, GpuError>;
