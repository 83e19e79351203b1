//! # rdbench-gpu
//!
//! The GPU runtime behind one safe API, in cudarc's layering: libraries are loaded at run
//! time, so this crate builds, and its tests pass, on machines with no CUDA at all.
//!
//! - [`probe`]: finds libcuda, libnvrtc and libnvidia-ml *before* anything calls into cudarc
//!   (which panics when a library is missing) and turns absence into [`GpuError::NoDriver`].
//! - [`nvrtc`]: compiles CUDA C++ with NVRTC (to CUBIN for the device's exact architecture,
//!   or PTX), with an on-disk cache keyed by source, options and NVRTC version.
//! - [`expr`] and [`plan`]: the declarative `launch.toml` of kernel submissions: integer
//!   expressions of the problem size and named constants, scratch buffers, launches.
//! - [`device`]: a CUDA device, its stream, buffers and modules; runs a resolved launch plan.
//! - [`timing`]: adaptive sampling statistics (median, relative noise, stopping rule).
//! - [`submission`]: loading and checking `solution.cu` + `launch.toml` without a GPU.
//! - [`monitor`]: NVML sampler (or /proc fallback) writing a timeline and a summary.

pub mod cuda_sig;
pub mod device;
pub mod error;
pub mod expr;
pub mod monitor;
pub mod nvrtc;
pub mod plan;
pub mod probe;
pub mod submission;
pub mod timing;

pub use error::GpuError;
