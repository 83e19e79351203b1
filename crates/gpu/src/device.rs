//! A CUDA device behind a safe API: buffers, modules, launches, event timers, L2 flushing and
//! the execution of a resolved launch plan.
//!
//! Every entry point probes for libcuda first ([`crate::probe::require_driver`]) so a machine
//! without a driver gets [`GpuError::NoDriver`] instead of cudarc's panic. Task crates use
//! only this module's types; raw cudarc stays inside this crate.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags, CUfunction_attribute_enum};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig,
    PushKernelArg,
};
use serde::Serialize;

use crate::nvrtc::{self, CompileOptions, Compiled};
use crate::plan::{ResolvedArg, ResolvedLaunch, ResolvedPlan};
use crate::probe::{driver_version, require_driver};
use crate::GpuError;

/// Static facts about a device, read once when it is opened.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_mem_bytes: u64,
    pub sm_count: u32,
    pub l2_cache_bytes: u64,
    pub max_persisting_l2_bytes: u64,
    pub max_shared_mem_per_block_optin: u32,
    /// CUDA version the driver supports (cuDriverGetVersion), e.g. "13.0".
    pub driver_version: Option<String>,
    /// PCI bus id (`0000:18:00.0`), which names the same GPU in NVML.
    pub pci_bus_id: Option<String>,
}

impl DeviceInfo {
    /// Two-digit architecture for NVRTC, e.g. 90 for compute capability 9.0.
    pub fn arch(&self) -> u32 {
        (self.compute_capability.0 * 10 + self.compute_capability.1) as u32
    }

    /// The calibration key of this device.
    pub fn fingerprint(&self) -> rdbench_core::calibration::DeviceFingerprint {
        rdbench_core::calibration::DeviceFingerprint {
            kind: "gpu".into(),
            name: self.name.clone(),
            memory_bytes: self.total_mem_bytes,
            sm_count: Some(self.sm_count),
            compute_capability: Some(format!(
                "{}.{}",
                self.compute_capability.0, self.compute_capability.1
            )),
            // The driver release (e.g. 580.65) comes from NVML; the CUDA version from libcuda.
            driver_version: crate::monitor::nvml()
                .ok()
                .and_then(|n| n.sys_driver_version().ok()),
            cuda_version: self.driver_version.clone(),
        }
    }
}

/// Number of CUDA devices; `NoDriver` when there is no driver or no device.
pub fn device_count() -> Result<usize, GpuError> {
    require_driver()?;
    let n = CudaContext::device_count()
        .map_err(|e| GpuError::NoDriver(format!("cuDeviceGetCount: {e:?}")))?;
    if n <= 0 {
        return Err(GpuError::NoDriver(
            "the driver reports no CUDA device".into(),
        ));
    }
    Ok(n as usize)
}

/// Reads a device's facts without creating a context (cheap; used for calibration keys and
/// `doctor` in processes that must not hold a CUDA context).
pub fn describe(ordinal: usize) -> Result<DeviceInfo, GpuError> {
    use cudarc::driver::result;
    let count = device_count()?;
    if ordinal >= count {
        return Err(GpuError::NoDriver(format!(
            "no CUDA device {ordinal}: this machine has {count}"
        )));
    }
    result::init().map_err(|e| GpuError::NoDriver(format!("cuInit: {e:?}")))?;
    let dev = result::device::get(ordinal as i32)
        .map_err(|e| GpuError::driver("cuDeviceGet", format!("{e:?}")))?;
    let get = |a: CUdevice_attribute| {
        // SAFETY: `dev` comes from cuDeviceGet above.
        unsafe { result::device::get_attribute(dev, a) }
            .map_err(|e| GpuError::driver("cuDeviceGetAttribute", format!("{e:?}")))
    };
    Ok(DeviceInfo {
        ordinal,
        name: result::device::get_name(dev)
            .map_err(|e| GpuError::driver("cuDeviceGetName", format!("{e:?}")))?,
        compute_capability: (
            get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        // SAFETY: as above.
        total_mem_bytes: unsafe { result::device::total_mem(dev) }
            .map_err(|e| GpuError::driver("cuDeviceTotalMem", format!("{e:?}")))?
            as u64,
        sm_count: get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
        l2_cache_bytes: get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u64,
        max_persisting_l2_bytes: get(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE,
        )
        .unwrap_or(0) as u64,
        max_shared_mem_per_block_optin: get(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )? as u32,
        driver_version: driver_version(),
        pci_bus_id: pci_bus_id(dev),
    })
}

fn pci_bus_id(dev: cudarc::driver::sys::CUdevice) -> Option<String> {
    let mut buf = [0u8; 64];
    // SAFETY: `dev` is a valid device handle; the driver writes a NUL-terminated string of at
    // most `buf.len()` bytes.
    let rc = unsafe {
        cudarc::driver::sys::cuDeviceGetPCIBusId(buf.as_mut_ptr() as *mut _, buf.len() as i32, dev)
    };
    if rc != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Device memory, untyped. Kernels see it as a pointer of whatever type they declare.
pub struct Buffer {
    slice: CudaSlice<u8>,
}

impl Buffer {
    pub fn len_bytes(&self) -> usize {
        self.slice.len()
    }
}

/// A loaded module (one compiled `.cu` file).
#[derive(Clone)]
pub struct Module {
    inner: Arc<CudaModule>,
}

/// A kernel of a loaded module.
#[derive(Clone)]
pub struct Function {
    name: String,
    inner: CudaFunction,
}

impl Function {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Static shared memory per block, bytes.
    pub fn static_shared_bytes(&self) -> u32 {
        self.inner
            .shared_size_bytes()
            .map(|b| b.max(0) as u32)
            .unwrap_or(0)
    }

    /// Allows `bytes` of dynamic shared memory per block. Needed when static plus dynamic
    /// shared memory exceeds the default 48 KiB; set once, outside any timed region.
    pub fn allow_dynamic_shared(&self, bytes: u32) -> Result<(), GpuError> {
        self.inner
            .set_attribute(
                CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .map_err(|e| GpuError::Launch {
                kernel: self.name.clone(),
                message: format!("{bytes} bytes of dynamic shared memory: {e:?}"),
            })
    }

    /// Registers per thread, as the driver reports them.
    pub fn num_regs(&self) -> Option<i32> {
        self.inner.num_regs().ok()
    }
}

/// One kernel argument.
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    Buffer(&'a Buffer),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
}

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
}

/// An open device with the scorer's own stream.
pub struct GpuDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
}

impl GpuDevice {
    /// Opens device `ordinal` with its primary context and a new non-default stream.
    pub fn open(ordinal: usize) -> Result<Self, GpuError> {
        let info = describe(ordinal)?;
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| GpuError::NoDriver(format!("cuCtx for device {ordinal}: {e:?}")))?;
        // One stream only: cudarc's multi-stream event tracking would add event records
        // around every launch inside the timed region.
        // SAFETY: this crate uses a single stream per context, so no cross-stream hazards exist.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| GpuError::driver("cuStreamCreate", format!("{e:?}")))?;
        Ok(GpuDevice { ctx, stream, info })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Compile options for this device's exact architecture.
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions::cubin(self.info.arch())
    }

    /// Loads a compiled module.
    pub fn load(&self, compiled: &Compiled) -> Result<Module, GpuError> {
        let image = cudarc::nvrtc::Ptx::from_binary(compiled.image.clone());
        let inner = self.ctx.load_module(image).map_err(|e| {
            GpuError::driver(
                &format!("cuModuleLoadData({})", compiled.name),
                format!("{e:?}"),
            )
        })?;
        Ok(Module { inner })
    }

    /// Compiles `source` for this device and loads it.
    pub fn compile_and_load(&self, source: &str, name: &str) -> Result<Module, GpuError> {
        self.load(&nvrtc::compile(source, name, &self.compile_options())?)
    }

    /// A kernel by name.
    pub fn function(&self, module: &Module, name: &str) -> Result<Function, GpuError> {
        if name.contains('\0') {
            return Err(GpuError::Launch {
                kernel: name.into(),
                message: "kernel name contains a NUL byte".into(),
            });
        }
        let inner = module
            .inner
            .load_function(name)
            .map_err(|e| GpuError::Launch {
                kernel: name.into(),
                message: format!("not found in the module: {e:?}"),
            })?;
        Ok(Function {
            name: name.into(),
            inner,
        })
    }

    /// Allocates `bytes` of zeroed device memory (at least one byte).
    pub fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        let slice = self.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(|e| {
            GpuError::driver(&format!("cuMemAlloc({bytes} bytes)"), format!("{e:?}"))
        })?;
        Ok(Buffer { slice })
    }

    /// Sets every byte of `buf` to zero, asynchronously on the scorer's stream.
    pub fn zero(&self, buf: &mut Buffer) -> Result<(), GpuError> {
        self.stream
            .memset_zeros(&mut buf.slice)
            .map_err(|e| GpuError::driver("cuMemsetD8Async", format!("{e:?}")))
    }

    /// Sets every byte of `buf` to `byte`, asynchronously on the scorer's stream.
    pub fn fill_bytes(&self, buf: &mut Buffer, byte: u8) -> Result<(), GpuError> {
        use cudarc::driver::DevicePtrMut;
        let len = buf.len_bytes();
        let (ptr, _record) = buf.slice.device_ptr_mut(&self.stream);
        // SAFETY: `ptr` addresses `len` bytes owned by `buf`, on the scorer's stream.
        unsafe { cudarc::driver::result::memset_d8_async(ptr, byte, len, self.stream.cu_stream()) }
            .map_err(|e| GpuError::driver("cuMemsetD8Async", format!("{e:?}")))
    }

    /// Copies a buffer to the host as `i32`s (synchronizes the stream).
    pub fn download_i32(&self, buf: &Buffer) -> Result<Vec<i32>, GpuError> {
        let bytes: Vec<u8> = self
            .stream
            .clone_dtoh(&buf.slice)
            .map_err(|e| GpuError::driver("cuMemcpyDtoH", format!("{e:?}")))?;
        self.synchronize()?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Copies a buffer to the host as `u64`s (synchronizes the stream).
    pub fn download_u64(&self, buf: &Buffer) -> Result<Vec<u64>, GpuError> {
        let bytes: Vec<u8> = self
            .stream
            .clone_dtoh(&buf.slice)
            .map_err(|e| GpuError::driver("cuMemcpyDtoH", format!("{e:?}")))?;
        self.synchronize()?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// Copies host bytes into the start of `buf`.
    pub fn upload_bytes(&self, data: &[u8], buf: &mut Buffer) -> Result<(), GpuError> {
        if data.len() > buf.len_bytes() {
            return Err(GpuError::Driver {
                call: "cuMemcpyHtoD".into(),
                message: format!("{} bytes into a buffer of {}", data.len(), buf.len_bytes()),
            });
        }
        self.stream
            .memcpy_htod(data, &mut buf.slice)
            .map_err(|e| GpuError::driver("cuMemcpyHtoD", format!("{e:?}")))
    }

    /// Waits for all work on the scorer's stream; a kernel fault surfaces here.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream
            .synchronize()
            .map_err(|e| GpuError::driver("cuStreamSynchronize", format!("{e:?}")))
    }

    /// Enqueues one launch on the scorer's stream.
    pub fn launch(&self, f: &Function, dims: Dims, args: &[Arg<'_>]) -> Result<(), GpuError> {
        let mut builder = self.stream.launch_builder(&f.inner);
        // The builder keeps pointers to the scalars: they live in `args`, which outlives it.
        for arg in args {
            match arg {
                Arg::Buffer(b) => builder.arg(&b.slice),
                Arg::I32(v) => builder.arg(v),
                Arg::U32(v) => builder.arg(v),
                Arg::I64(v) => builder.arg(v),
                Arg::U64(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (dims.grid[0], dims.grid[1], dims.grid[2]),
            block_dim: (dims.block[0], dims.block[1], dims.block[2]),
            shared_mem_bytes: dims.shared_mem_bytes,
        };
        // SAFETY: argument count and kinds were checked against the kernel's declared
        // signature by the launch plan; a mismatch the parser could not see is the
        // submission's fault and is contained by the worker process.
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(|e| GpuError::launch(&f.name, format!("{e:?}")))
    }

    /// A pair of timing events on the scorer's stream.
    pub fn timer(&self) -> Result<Timer, GpuError> {
        let make = || {
            self.ctx
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| GpuError::driver("cuEventCreate", format!("{e:?}")))
        };
        Ok(Timer {
            start: make()?,
            end: make()?,
            stream: self.stream.clone(),
        })
    }

    /// Resets persisting L2 lines so one sample's accesses cannot pin data for the next.
    pub fn reset_persisting_l2(&self) -> Result<(), GpuError> {
        if self.info.max_persisting_l2_bytes == 0 {
            return Ok(());
        }
        self.ctx
            .bind_to_thread()
            .map_err(|e| GpuError::driver("cuCtxSetCurrent", format!("{e:?}")))?;
        // SAFETY: the context is current on this thread; the call takes no arguments.
        let rc = unsafe { cudarc::driver::sys::cuCtxResetPersistingL2Cache() };
        // Unsupported (e.g. under MPS or MIG) means there is no persisting L2 to reset.
        if rc == cudarc::driver::sys::CUresult::CUDA_SUCCESS
            || rc == cudarc::driver::sys::CUresult::CUDA_ERROR_NOT_SUPPORTED
        {
            Ok(())
        } else {
            Err(GpuError::driver(
                "cuCtxResetPersistingL2Cache",
                format!("{rc:?}"),
            ))
        }
    }
}

/// CUDA events around work on the scorer's stream.
pub struct Timer {
    start: CudaEvent,
    end: CudaEvent,
    stream: Arc<CudaStream>,
}

impl Timer {
    pub fn start(&self) -> Result<(), GpuError> {
        self.start
            .record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", format!("{e:?}")))
    }

    pub fn stop(&self) -> Result<(), GpuError> {
        self.end
            .record(&self.stream)
            .map_err(|e| GpuError::driver("cuEventRecord", format!("{e:?}")))
    }

    /// Waits for the end event and returns the milliseconds between the two.
    pub fn elapsed_ms(&self) -> Result<f64, GpuError> {
        self.end
            .synchronize()
            .map_err(|e| GpuError::driver("cuEventSynchronize", format!("{e:?}")))?;
        self.start
            .elapsed_ms(&self.end)
            .map(f64::from)
            .map_err(|e| GpuError::driver("cuEventElapsedTime", format!("{e:?}")))
    }
}

/// The harness kernel that evicts L2 before each timed sample.
pub const L2_FLUSH_SOURCE: &str = include_str!("../../../kernels/harness/l2_flush.cu");

/// Evicts the L2 cache by read-modify-writing a buffer twice its size.
pub struct L2Flusher {
    function: Function,
    buffer: Buffer,
    words: u64,
    grid: u32,
}

impl L2Flusher {
    pub fn new(dev: &GpuDevice) -> Result<Self, GpuError> {
        let module = dev.compile_and_load(L2_FLUSH_SOURCE, "kernels/harness/l2_flush.cu")?;
        let function = dev.function(&module, "rdbench_l2_flush")?;
        let bytes = (dev.info.l2_cache_bytes.max(1 << 20) * 2) as usize;
        let buffer = dev.alloc(bytes)?;
        Ok(L2Flusher {
            function,
            buffer,
            words: (bytes / 4) as u64,
            grid: dev.info.sm_count * 8,
        })
    }

    /// Enqueues the flush (and a persisting-L2 reset) on the scorer's stream.
    pub fn flush(&self, dev: &GpuDevice) -> Result<(), GpuError> {
        dev.reset_persisting_l2()?;
        dev.launch(
            &self.function,
            Dims::linear(self.grid, 256),
            &[Arg::Buffer(&self.buffer), Arg::U64(self.words)],
        )
    }
}

/// A resolved launch plan bound to a module: its kernels and scratch buffers, ready to enqueue.
pub struct PlanRunner {
    launches: Vec<(Function, ResolvedLaunch)>,
    scratch: HashMap<String, (Buffer, bool)>,
    scratch_order: Vec<String>,
}

impl PlanRunner {
    /// Looks up every kernel and allocates the scratch buffers.
    pub fn new(dev: &GpuDevice, module: &Module, plan: &ResolvedPlan) -> Result<Self, GpuError> {
        let mut launches = Vec::with_capacity(plan.launches.len());
        for l in &plan.launches {
            let function = dev.function(module, &l.kernel)?;
            let total = function.static_shared_bytes() as u64 + l.shared_mem_bytes as u64;
            if total > dev.info.max_shared_mem_per_block_optin as u64 {
                return Err(GpuError::Launch {
                    kernel: l.kernel.clone(),
                    message: format!(
                        "{} bytes of static plus {} of dynamic shared memory exceed this device's {} per block",
                        function.static_shared_bytes(),
                        l.shared_mem_bytes,
                        dev.info.max_shared_mem_per_block_optin
                    ),
                });
            }
            if total > 48 * 1024 {
                function.allow_dynamic_shared(l.shared_mem_bytes)?;
            }
            launches.push((function, l.clone()));
        }
        let mut scratch = HashMap::new();
        let mut scratch_order = Vec::new();
        for s in &plan.scratch {
            let mut buf = dev.alloc(s.bytes() as usize)?;
            if !s.zero_init {
                // "init = none" promises nothing: give it garbage, so a plan that relies on
                // fresh allocations being zero fails here instead of passing by luck.
                dev.fill_bytes(&mut buf, 0xA5)?;
            }
            scratch.insert(s.name.clone(), (buf, s.zero_init));
            scratch_order.push(s.name.clone());
        }
        Ok(PlanRunner {
            launches,
            scratch,
            scratch_order,
        })
    }

    /// Enqueues the whole plan: zero-initialized scratch first, then every launch in order.
    /// `buffers` binds the task's buffer names (e.g. `input`, `output`).
    pub fn enqueue(
        &mut self,
        dev: &GpuDevice,
        buffers: &[(&str, &Buffer)],
    ) -> Result<(), GpuError> {
        for name in &self.scratch_order {
            let (buf, zero) = self
                .scratch
                .get_mut(name)
                .expect("scratch allocated in new");
            if *zero {
                dev.zero(buf)?;
            }
        }
        for (function, launch) in &self.launches {
            let mut args = Vec::with_capacity(launch.args.len());
            for a in &launch.args {
                args.push(match a {
                    ResolvedArg::Buffer(name) => {
                        let buf = buffers
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, b)| *b)
                            .or_else(|| self.scratch.get(name).map(|(b, _)| b))
                            .ok_or_else(|| GpuError::Launch {
                                kernel: launch.kernel.clone(),
                                message: format!("no buffer named {name:?}"),
                            })?;
                        Arg::Buffer(buf)
                    }
                    ResolvedArg::I32(v) => Arg::I32(*v),
                    ResolvedArg::U32(v) => Arg::U32(*v),
                    ResolvedArg::I64(v) => Arg::I64(*v),
                    ResolvedArg::U64(v) => Arg::U64(*v),
                });
            }
            let dims = Dims {
                grid: launch.grid,
                block: launch.block,
                shared_mem_bytes: launch.shared_mem_bytes,
            };
            dev.launch(function, dims, &args)?;
        }
        Ok(())
    }

    /// Registers per thread of each kernel, for reports.
    pub fn registers(&self) -> Vec<(String, Option<i32>)> {
        self.launches
            .iter()
            .map(|(f, _)| (f.name.clone(), f.num_regs()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on every machine: without a driver the answer is a typed error, never a panic.
    #[test]
    fn open_without_driver_is_a_typed_error() {
        match GpuDevice::open(0) {
            Ok(dev) => {
                let info = dev.info();
                assert!(info.sm_count > 0 && info.l2_cache_bytes > 0, "{info:?}");
            }
            Err(GpuError::NoDriver(msg)) => assert!(!msg.is_empty()),
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
}
