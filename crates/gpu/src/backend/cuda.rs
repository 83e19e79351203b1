//! The CUDA backend: [`GpuDevice`] plus the measurement pieces that only a GPU has.
//!
//! - **Timer**: CUDA events on the scorer's stream around the whole plan. Before the start
//!   event the timer enqueues a *blocking kernel* (nvbench's approach) that spins on a flag in
//!   host-mapped memory; the plan's launches queue up behind it, and only when all of them
//!   and the stop event are enqueued does the host release the flag. The GPU then runs start
//!   event, plan and stop event back to back, so host launch latency stays out of the window.
//!   The spin has a time limit; if it expires (the launch queue filled before the release)
//!   the sample says `latency_hidden = false`.
//! - **Cache flush**: persisting-L2 reset, then a read-modify-write of a buffer twice the L2.
//! - **Clocks**: the NVML device with this context's PCI bus id.

use std::cell::OnceCell;
use std::path::Path;

use cudarc::driver::sys;

use super::{Arg, BackendInfo, CompileReport, Dims, KernelBackend, SampleTimer, TimedWindow};
use crate::device::{Buffer, Function, GpuDevice, Module};
use crate::monitor::ClockReader;
use crate::nvrtc;
use crate::{GpuError, GpuResult};

/// The kit's L2 flush kernel.
pub const L2_FLUSH_SOURCE: &str = include_str!("../../../../kernels/harness/l2_flush.cu");
/// The blocking kernel that holds the stream while a sample is enqueued.
pub const BLOCK_STREAM_SOURCE: &str = include_str!("../../../../kernels/harness/block_stream.cu");

/// How long the blocking kernel waits for the host before giving up, nanoseconds.
const BLOCK_TIMEOUT_NS: u64 = 2_000_000_000;

/// An NVIDIA GPU as a kernel backend.
pub struct CudaBackend {
    dev: GpuDevice,
    flusher: OnceCell<L2Flusher>,
}

struct L2Flusher {
    function: Function,
    buffer: Buffer,
    words: u64,
    grid: u32,
}

impl CudaBackend {
    /// Opens CUDA device `ordinal`.
    pub fn open(ordinal: usize) -> Result<Self, GpuError> {
        Ok(CudaBackend {
            dev: GpuDevice::open(ordinal)?,
            flusher: OnceCell::new(),
        })
    }

    pub fn device(&self) -> &GpuDevice {
        &self.dev
    }

    fn flusher(&self) -> Result<&L2Flusher, GpuError> {
        if let Some(f) = self.flusher.get() {
            return Ok(f);
        }
        let module = self
            .dev
            .compile_and_load(L2_FLUSH_SOURCE, "kernels/harness/l2_flush.cu")?;
        let function = self.dev.function(&module, "rdbench_l2_flush")?;
        let info = self.dev.info();
        let bytes = (info.l2_cache_bytes.max(1 << 20) * 2) as usize;
        let flusher = L2Flusher {
            function,
            buffer: self.dev.alloc(bytes)?,
            words: (bytes / 4) as u64,
            grid: info.sm_count * 8,
        };
        Ok(self.flusher.get_or_init(|| flusher))
    }
}

impl KernelBackend for CudaBackend {
    type Buffer = Buffer;
    type Module = Module;
    type Function = Function;
    type Timer = CudaTimer;

    fn info(&self) -> BackendInfo {
        let info = self.dev.info();
        BackendInfo {
            backend: super::BackendKind::Cuda,
            name: info.name.clone(),
            timed: true,
            peaks: info.peaks(),
            l2_bytes: info.l2_cache_bytes,
            compiler: crate::probe::nvrtc_version()
                .map(|v| format!("NVRTC {v}"))
                .unwrap_or_else(|| "NVRTC".into()),
        }
    }

    fn compile(
        &self,
        source: &str,
        name: &str,
        cache: Option<&Path>,
    ) -> Result<(Module, CompileReport), GpuError> {
        let mut opts = self.dev.compile_options();
        opts.cache_dir = cache.map(Path::to_path_buf);
        let compiled = nvrtc::compile(source, name, &opts)?;
        let module = self.dev.load(&compiled)?;
        Ok((
            module,
            CompileReport {
                compiler: format!("NVRTC {}", compiled.nvrtc_version),
                cached: compiled.cached,
            },
        ))
    }

    fn function(&self, module: &Module, name: &str) -> Result<Function, GpuError> {
        self.dev.function(module, name)
    }

    fn static_shared_bytes(&self, f: &Function) -> u32 {
        f.static_shared_bytes()
    }

    fn num_regs(&self, f: &Function) -> Option<i32> {
        f.num_regs()
    }

    fn prepare_launch(&self, f: &Function, kernel: &str, dims: &Dims) -> GpuResult {
        let info = self.dev.info();
        let total = f.static_shared_bytes() as u64 + dims.shared_mem_bytes as u64;
        if total > info.max_shared_mem_per_block_optin as u64 {
            return Err(GpuError::rejected(
                kernel,
                format!(
                    "{} bytes of static plus {} of dynamic shared memory exceed this device's {} per block",
                    f.static_shared_bytes(),
                    dims.shared_mem_bytes,
                    info.max_shared_mem_per_block_optin
                ),
            ));
        }
        if total > 48 * 1024 {
            f.allow_dynamic_shared(dims.shared_mem_bytes)?;
        }
        Ok(())
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        self.dev.alloc(bytes)
    }

    fn len_bytes(&self, buf: &Buffer) -> usize {
        buf.len_bytes()
    }

    fn fill_bytes(&self, buf: &mut Buffer, byte: u8) -> GpuResult {
        self.dev.fill_bytes(buf, byte)
    }

    fn upload(&self, data: &[u8], buf: &mut Buffer) -> GpuResult {
        self.dev.upload_bytes(data, buf)
    }

    fn download(&self, buf: &Buffer) -> Result<Vec<u8>, GpuError> {
        self.dev.download_bytes(buf)
    }

    unsafe fn launch(&self, f: &Function, dims: Dims, args: &[Arg<'_, Buffer>]) -> GpuResult {
        // SAFETY: forwarded contract.
        unsafe { self.dev.launch(f, dims, args) }
    }

    fn synchronize(&self) -> GpuResult {
        self.dev.synchronize()
    }

    fn timer(&self) -> Result<Option<CudaTimer>, GpuError> {
        CudaTimer::new(&self.dev).map(Some)
    }

    fn flush_caches(&self) -> GpuResult {
        self.dev.reset_persisting_l2()?;
        let f = self.flusher()?;
        // SAFETY: rdbench_l2_flush(unsigned int* buf, unsigned long long n_words), and
        // `buffer` holds `words` 32-bit words.
        unsafe {
            self.dev.launch(
                &f.function,
                Dims::linear(f.grid, 256),
                &[Arg::Buffer(&f.buffer), Arg::U64(f.words)],
            )
        }
    }

    fn clocks(&self) -> Option<ClockReader> {
        // NVML indices need not match CUDA ordinals: match by PCI bus id, and trust index 0
        // only on a single-GPU machine.
        self.dev
            .info()
            .pci_bus_id
            .as_deref()
            .and_then(ClockReader::open_pci)
            .or_else(|| {
                let single = crate::monitor::gpu_count()? == 1;
                single.then(|| ClockReader::open(0)).flatten()
            })
    }
}

/// A 4-byte flag in pinned, device-mapped host memory.
struct HostFlag {
    host: *mut u32,
    device: u64,
}

impl HostFlag {
    fn new(dev: &GpuDevice) -> Result<Self, GpuError> {
        dev.bind()?;
        let mut host: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: plain allocation call with a valid out-pointer; the context is current.
        let rc = unsafe {
            sys::cuMemHostAlloc(
                &mut host,
                4,
                sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE,
            )
        };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(GpuError::driver(
                "cuMemHostAlloc",
                cudarc::driver::DriverError(rc),
            ));
        }
        let mut device: sys::CUdeviceptr = 0;
        // SAFETY: `host` was allocated with DEVICEMAP just above.
        let rc = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut device, host, 0) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            // SAFETY: freeing what we allocated.
            unsafe { sys::cuMemFreeHost(host) };
            return Err(GpuError::driver(
                "cuMemHostGetDevicePointer",
                cudarc::driver::DriverError(rc),
            ));
        }
        let flag = HostFlag {
            host: host as *mut u32,
            device: device as u64,
        };
        flag.set(0);
        Ok(flag)
    }

    fn set(&self, v: u32) {
        // SAFETY: `host` points at 4 bytes of pinned memory owned by self; volatile because
        // the GPU reads (and on timeout writes) it concurrently.
        unsafe { std::ptr::write_volatile(self.host, v) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    fn get(&self) -> u32 {
        // SAFETY: as in `set`.
        unsafe { std::ptr::read_volatile(self.host) }
    }
}

impl Drop for HostFlag {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemHostAlloc in `new`, freed once.
        unsafe { sys::cuMemFreeHost(self.host as *mut std::ffi::c_void) };
    }
}

/// CUDA events around a sample, with the blocking kernel in front when it is available.
pub struct CudaTimer {
    start: cudarc::driver::CudaEvent,
    end: cudarc::driver::CudaEvent,
    stream: std::sync::Arc<cudarc::driver::CudaStream>,
    blocker: Option<(Function, HostFlag)>,
    blocked: bool,
}

impl CudaTimer {
    fn new(dev: &GpuDevice) -> Result<Self, GpuError> {
        // Without the blocking kernel, timing still works; launch latency is then in the window
        // and every sample says so.
        let blocker = (|| -> Result<_, GpuError> {
            let module =
                dev.compile_and_load(BLOCK_STREAM_SOURCE, "kernels/harness/block_stream.cu")?;
            Ok((
                dev.function(&module, "rdbench_block_stream")?,
                HostFlag::new(dev)?,
            ))
        })()
        .map_err(|e| tracing::warn!("blocking kernel unavailable, launch latency is timed: {e}"))
        .ok();
        Ok(CudaTimer {
            start: dev.event()?,
            end: dev.event()?,
            stream: dev.stream().clone(),
            blocker,
            blocked: false,
        })
    }
}

impl SampleTimer for CudaTimer {
    fn start(&mut self) -> GpuResult {
        self.blocked = false;
        if let Some((f, flag)) = &self.blocker {
            flag.set(0);
            let mut builder = self.stream.launch_builder(&f.inner);
            let (addr, timeout) = (flag.device, BLOCK_TIMEOUT_NS);
            cudarc::driver::PushKernelArg::arg(&mut builder, &addr);
            cudarc::driver::PushKernelArg::arg(&mut builder, &timeout);
            let one_thread = cudarc::driver::LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (1, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: rdbench_block_stream(unsigned long long flag, unsigned long long
            // timeout_ns): two u64 arguments, one thread.
            unsafe { builder.launch(one_thread) }
                .map_err(|e| GpuError::launch("rdbench_block_stream", e))?;
            self.blocked = true;
        }
        self.start
            .record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", e))
    }

    fn stop(&mut self) -> GpuResult {
        self.end
            .record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", e))?;
        if let Some((_, flag)) = &self.blocker {
            flag.set(1);
        }
        Ok(())
    }

    fn elapsed_ms(&mut self) -> Result<TimedWindow, GpuError> {
        self.end
            .synchronize()
            .map_err(|e| GpuError::driver("cuEventSynchronize", e))?;
        let ms = self
            .start
            .elapsed_ms(&self.end)
            .map(f64::from)
            .map_err(|e| GpuError::driver("cuEventElapsedTime", e))?;
        // The kernel writes 2 into the flag when it gave up waiting.
        let timed_out = self.blocker.as_ref().is_some_and(|(_, f)| f.get() == 2);
        Ok(TimedWindow {
            ms,
            latency_hidden: self.blocked && !timed_out,
        })
    }
}
