//! The device seam of kernel tasks (candle's pattern): one [`KernelBackend`] trait, two
//! implementations with the same shape.
//!
//! - [`cuda`]: an NVIDIA GPU through cudarc ([`crate::device::GpuDevice`]): NVRTC to a CUBIN,
//!   the scorer's own stream, CUDA events. Timed.
//! - [`emu`]: the CPU emulator of `kernels/tools/cuda_emu.h`: the `.cu` is compiled by the host
//!   C++ compiler into a shared object with one generated launcher per `extern "C"` kernel,
//!   buffers are host memory with guard pages. Runs the same launch plans, harness kernels and
//!   checks as the GPU, so the whole Rust scoring pipeline is exercised in CI; it is never
//!   timed and never produces a score.
//!
//! The scoring routine ([`crate::bench`]) is written once against this trait. Launches of
//! kernels from a parsed source go through [`CheckedKernel`], which compares every argument
//! with the kernel's declared parameters, so a wiring mistake in trusted code is an error
//! rather than undefined behaviour; the raw [`KernelBackend::launch`] is `unsafe`.

pub mod cuda;
pub mod emu;

use std::path::Path;

use serde::Serialize;

use crate::plan::{KernelSignature, ParamKind, ScalarType};
use crate::{GpuError, GpuResult};

/// Grid, block and dynamic shared memory of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_mem_bytes: u32,
}

impl Dims {
    pub fn linear(grid: u32, block: u32) -> Self {
        Dims {
            grid: [grid, 1, 1],
            block: [block, 1, 1],
            shared_mem_bytes: 0,
        }
    }

    /// A 1-D grid-stride launch of 256-thread blocks covering `n` elements (at most 65,535
    /// blocks): how the kit's and tasks' elementwise harness kernels are launched.
    pub fn grid_stride(n: i64) -> Self {
        Dims::linear(((n + 255) / 256).clamp(1, 65_535) as u32, 256)
    }
}

/// One kernel argument. `B` is the backend's buffer type.
pub enum Arg<'a, B> {
    Buffer(&'a B),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
}

impl<B> Clone for Arg<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Arg<'_, B> {}

impl<B> Arg<'_, B> {
    /// Whether this argument fits a parameter of kind `p`. Pointers take buffers; integer
    /// scalars take exactly their type; `float` takes an `F32`.
    pub fn fits(&self, p: &ParamKind) -> bool {
        match (self, p) {
            (Arg::Buffer(_), ParamKind::Pointer { .. }) => true,
            (Arg::I32(_), ParamKind::Scalar(ScalarType::I32)) => true,
            (Arg::U32(_), ParamKind::Scalar(ScalarType::U32)) => true,
            (Arg::I64(_), ParamKind::Scalar(ScalarType::I64)) => true,
            (Arg::U64(_), ParamKind::Scalar(ScalarType::U64)) => true,
            // `Other` keeps the parameter's text, its name included (`float rtol`).
            (Arg::F32(_), ParamKind::Other(t)) => {
                t.split_whitespace().find(|w| *w != "const") == Some("float")
            }
            _ => false,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Arg::Buffer(_) => "a buffer",
            Arg::I32(_) => "an i32",
            Arg::U32(_) => "a u32",
            Arg::I64(_) => "an i64",
            Arg::U64(_) => "a u64",
            Arg::F32(_) => "an f32",
        }
    }
}

/// Which implementation of [`KernelBackend`] a device is. A scoring run's
/// [`Execution`](rdbench_core::task::Execution) picks one: measured runs on CUDA, emulated ones
/// on the CPU emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// An NVIDIA GPU through CUDA: timed.
    Cuda,
    /// The CPU emulator of `kernels/tools/cuda_emu.h`: correctness only.
    Emulator,
}

impl BackendKind {
    /// The execution a scoring run on this backend is.
    pub fn execution(self) -> rdbench_core::task::Execution {
        match self {
            BackendKind::Cuda => rdbench_core::task::Execution::Measured,
            BackendKind::Emulator => rdbench_core::task::Execution::Emulated,
        }
    }
}

/// What a backend is and what it can measure, for reports and the speed-of-light floor.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub backend: BackendKind,
    /// Device name (`NVIDIA H100 80GB HBM3`, `CPU emulator (cuda_emu.h)`).
    pub name: String,
    /// Whether [`KernelBackend::timer`] measures anything: an untimed backend never scores.
    pub timed: bool,
    /// The device's peak throughput, when known (GPU only).
    pub peaks: Option<Peaks>,
    /// L2 cache size, bytes (0 where there is none to speak of).
    pub l2_bytes: u64,
    /// Toolchain that builds device code (NVRTC version, host compiler).
    pub compiler: String,
}

/// Peak throughput of a device, for the speed-of-light floor of every timed sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Peaks {
    /// DRAM bandwidth, bytes per second (memory clock x bus width x 2).
    pub dram_bytes_per_s: f64,
    /// Most arithmetic operations per second any unit of the device can do (dense tensor
    /// cores at their narrowest type): a bound no kernel can beat, not a target.
    pub ops_per_s: f64,
}

/// The result of compiling a source for a backend.
#[derive(Debug, Clone, Serialize)]
pub struct CompileReport {
    /// Compiler identification (NVRTC version, host compiler).
    pub compiler: String,
    /// Whether the compiled image came from the cache.
    pub cached: bool,
}

/// A kernel task's device: allocation, compilation, launch and measurement.
pub trait KernelBackend {
    type Buffer;
    type Module;
    type Function;
    type Timer: SampleTimer;

    fn info(&self) -> BackendInfo;

    /// Compiles `source` (named `name` in messages) and loads it. Compilation failures are
    /// [`GpuError::Compile`] with the compiler's log; `cache` holds compiled images.
    fn compile(
        &self,
        source: &str,
        name: &str,
        cache: Option<&Path>,
    ) -> Result<(Self::Module, CompileReport), GpuError>;

    /// A kernel of a loaded module by name.
    fn function(&self, module: &Self::Module, name: &str) -> Result<Self::Function, GpuError>;

    /// Static shared memory of a kernel, bytes (0 where unknown).
    fn static_shared_bytes(&self, f: &Self::Function) -> u32;

    /// Registers per thread of a kernel, when the device reports them.
    fn num_regs(&self, f: &Self::Function) -> Option<i32>;

    /// Checks a launch shape against the device and opts the kernel into the dynamic shared
    /// memory it asks for; done once per plan, outside any timed region.
    fn prepare_launch(&self, f: &Self::Function, kernel: &str, dims: &Dims) -> GpuResult;

    /// `bytes` of device memory (at least one byte); contents unspecified.
    fn alloc(&self, bytes: usize) -> Result<Self::Buffer, GpuError>;

    fn len_bytes(&self, buf: &Self::Buffer) -> usize;

    /// Sets every byte of `buf` to `byte`, in stream order.
    fn fill_bytes(&self, buf: &mut Self::Buffer, byte: u8) -> GpuResult;

    /// Copies `data` into the start of `buf`, in stream order.
    fn upload(&self, data: &[u8], buf: &mut Self::Buffer) -> GpuResult;

    /// Copies a whole buffer to the host (waits for the stream).
    fn download(&self, buf: &Self::Buffer) -> Result<Vec<u8>, GpuError>;

    /// Enqueues one launch.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number and type, and every buffer must
    /// be as large as the kernel will access. [`CheckedKernel::launch`] checks the first
    /// against the parsed signature; launch plans are checked the same way when parsed.
    unsafe fn launch(
        &self,
        f: &Self::Function,
        dims: Dims,
        args: &[Arg<'_, Self::Buffer>],
    ) -> GpuResult;

    /// Waits for all enqueued work; a kernel fault surfaces here.
    fn synchronize(&self) -> GpuResult;

    /// A timer for samples, or `None` on a backend that cannot measure time.
    fn timer(&self) -> Result<Option<Self::Timer>, GpuError>;

    /// Evicts caches before a timed sample (L2 flush, persisting-L2 reset); no-op where
    /// there are none to evict.
    fn flush_caches(&self) -> GpuResult;

    /// SM clock and throttle reasons of the device, when NVML can read them.
    fn clocks(&self) -> Option<crate::monitor::ClockReader>;
}

/// Measures one sample of enqueued work.
pub trait SampleTimer {
    /// Starts a sample: called before the timed work is enqueued.
    fn start(&mut self) -> GpuResult;
    /// Ends the sample: called after the timed work is enqueued.
    fn stop(&mut self) -> GpuResult;
    /// Waits for the sample and returns its milliseconds, and whether launch latency was kept
    /// out of the window.
    fn elapsed_ms(&mut self) -> Result<TimedWindow, GpuError>;
}

/// One measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedWindow {
    pub ms: f64,
    /// True when the timed work was queued behind a blocking kernel and released at once, so
    /// host launch latency is not inside the window.
    pub latency_hidden: bool,
}

/// A kernel together with its parsed signature: launches are checked argument by argument.
pub struct CheckedKernel<B: KernelBackend> {
    pub function: B::Function,
    pub signature: KernelSignature,
}

impl<B: KernelBackend> CheckedKernel<B> {
    /// Looks `name` up in `module` and in the signatures parsed from the module's source.
    pub fn new(
        dev: &B,
        module: &B::Module,
        signatures: &[KernelSignature],
        name: &str,
    ) -> Result<Self, GpuError> {
        let signature = signatures
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| GpuError::Signature {
                kernel: name.into(),
                message: "no `extern \"C\" __global__` kernel of that name in its source".into(),
            })?;
        Ok(CheckedKernel {
            function: dev.function(module, name)?,
            signature,
        })
    }

    /// Checks `args` against the signature, then launches.
    pub fn launch(&self, dev: &B, dims: Dims, args: &[Arg<'_, B::Buffer>]) -> GpuResult {
        let params = &self.signature.params;
        if args.len() != params.len() {
            return Err(GpuError::Signature {
                kernel: self.signature.name.clone(),
                message: format!("{} arguments for {} parameters", args.len(), params.len()),
            });
        }
        for (i, (a, p)) in args.iter().zip(params).enumerate() {
            if !a.fits(p) {
                return Err(GpuError::Signature {
                    kernel: self.signature.name.clone(),
                    message: format!("argument {i} is {} for parameter {p}", a.describe()),
                });
            }
        }
        // SAFETY: count and kinds match the declared parameters (checked above); buffer
        // sizes are the caller's contract with its own trusted kernel.
        unsafe { dev.launch(&self.function, dims, args) }
    }
}
