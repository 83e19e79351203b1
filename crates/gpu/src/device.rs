//! A CUDA device behind a safe API: facts, buffers, modules, launches and events. The kernel
//! backend over it (timing, L2 flush, blocking kernel) is [`crate::backend::cuda`]; the plan
//! runner and the scoring routine are in [`crate::bench`].
//!
//! Every entry point probes for libcuda first ([`crate::probe::require_driver`]) so a machine
//! without a driver gets [`GpuError::NoDriver`] instead of cudarc's panic. Raw cudarc stays
//! inside this crate, and driver errors keep their `CUresult` ([`GpuError::driver`]).

use std::sync::Arc;

use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags, CUfunction_attribute_enum};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig,
    PushKernelArg,
};
use rdbench_core::calibration::{gpu_name, SCORED_GPU_ORDINAL};
use serde::Serialize;

pub use crate::backend::{Arg, Dims};
use crate::nvrtc::{self, CompileOptions, Compiled};
use crate::probe::{driver_version, require_driver};
use crate::{GpuError, GpuResult};

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
    /// Peak SM clock, kHz (absent where the driver no longer reports it).
    pub sm_clock_khz: Option<u32>,
    /// Peak memory clock, kHz.
    pub mem_clock_khz: Option<u32>,
    /// Global memory bus width, bits.
    pub mem_bus_bits: Option<u32>,
}

impl DeviceInfo {
    /// Two-digit architecture for NVRTC, e.g. 90 for compute capability 9.0.
    pub fn arch(&self) -> u32 {
        (self.compute_capability.0 * 10 + self.compute_capability.1) as u32
    }

    /// Peak DRAM bandwidth and arithmetic throughput, for the speed-of-light floor.
    ///
    /// Bandwidth is memory clock x bus width x 2 (double data rate). Arithmetic is the most
    /// operations per clock any unit does per SM (dense tensor cores at their narrowest
    /// type: 8-bit on compute capability 8.9 and 9.x, 4,096 per clock; 8.0-8.7, 2,048 x 2 for
    /// int8; older, 2,048) times SMs times the peak clock: an upper bound, so the floor it
    /// gives is a lower bound on any kernel's time.
    pub fn peaks(&self) -> Option<crate::backend::Peaks> {
        let dram = self.mem_clock_khz? as f64 * 1e3 * 2.0 * self.mem_bus_bits? as f64 / 8.0;
        let per_sm_per_clock = match self.compute_capability {
            (9, _) | (10, _) | (12, _) => 8192.0,
            (8, 9) => 8192.0,
            (8, _) => 4096.0,
            _ => 2048.0,
        };
        let ops = self.sm_count as f64 * self.sm_clock_khz? as f64 * 1e3 * per_sm_per_clock;
        Some(crate::backend::Peaks {
            dram_bytes_per_s: dram,
            ops_per_s: ops,
        })
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
        .map_err(|e| GpuError::NoDriver(format!("cuDeviceGetCount: {:?}", e.0)))?;
    if n <= 0 {
        return Err(GpuError::NoDriver(
            "the driver reports no CUDA device".into(),
        ));
    }
    Ok(n as usize)
}

/// The GPU rdbench scores on (CUDA's device [`SCORED_GPU_ORDINAL`]), described: what calibration
/// keys, the monitor and the device lock name it by.
pub fn scored() -> Result<DeviceInfo, GpuError> {
    describe(SCORED_GPU_ORDINAL)
}

/// The scored GPU's name for the device lock: by its PCI bus id, or by its ordinal where no
/// GPU can be described (see [`gpu_name`]).
pub fn scored_gpu_name() -> String {
    let info = scored().ok();
    gpu_name(
        SCORED_GPU_ORDINAL,
        info.as_ref().and_then(|d| d.pci_bus_id.as_deref()),
    )
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
    result::init().map_err(|e| GpuError::NoDriver(format!("cuInit: {:?}", e.0)))?;
    let dev =
        result::device::get(ordinal as i32).map_err(|e| GpuError::driver("cuDeviceGet", e))?;
    let get = |a: CUdevice_attribute| {
        // SAFETY: `dev` comes from cuDeviceGet above.
        unsafe { result::device::get_attribute(dev, a) }
            .map_err(|e| GpuError::driver("cuDeviceGetAttribute", e))
    };
    Ok(DeviceInfo {
        ordinal,
        name: result::device::get_name(dev).map_err(|e| GpuError::driver("cuDeviceGetName", e))?,
        compute_capability: (
            get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        // SAFETY: as above.
        total_mem_bytes: unsafe { result::device::total_mem(dev) }
            .map_err(|e| GpuError::driver("cuDeviceTotalMem", e))? as u64,
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
        sm_clock_khz: positive(get(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)),
        mem_clock_khz: positive(get(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE,
        )),
        mem_bus_bits: positive(get(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH,
        )),
    })
}

fn positive(v: Result<i32, GpuError>) -> Option<u32> {
    v.ok().filter(|&v| v > 0).map(|v| v as u32)
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
    pub(crate) inner: CudaFunction,
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
    pub fn allow_dynamic_shared(&self, bytes: u32) -> GpuResult {
        self.inner
            .set_attribute(
                CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .map_err(|e| GpuError::Launch {
                kernel: self.name.clone(),
                code: Some(e.0),
                message: format!("{bytes} bytes of dynamic shared memory: {:?}", e.0),
            })
    }

    /// Registers per thread, as the driver reports them.
    pub fn num_regs(&self) -> Option<i32> {
        self.inner.num_regs().ok()
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
            .map_err(|e| GpuError::NoDriver(format!("cuCtx for device {ordinal}: {:?}", e.0)))?;
        // One stream only: cudarc's multi-stream event tracking would add event records
        // around every launch inside the timed region.
        // SAFETY: this crate uses a single stream per context, so no cross-stream hazards exist.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| GpuError::driver("cuStreamCreate", e))?;
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
        let inner = self.ctx.load_module(image).map_err(|e| GpuError::Load {
            name: compiled.name.clone(),
            message: format!("cuModuleLoadData: {:?}", e.0),
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
            return Err(GpuError::rejected(name, "kernel name contains a NUL byte"));
        }
        let inner = module
            .inner
            .load_function(name)
            .map_err(|e| GpuError::Load {
                name: format!("kernel {name:?}"),
                message: format!("not found in the module: {:?}", e.0),
            })?;
        Ok(Function {
            name: name.into(),
            inner,
        })
    }

    /// Allocates `bytes` of zeroed device memory (at least one byte).
    pub fn alloc(&self, bytes: usize) -> Result<Buffer, GpuError> {
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| GpuError::driver(&format!("cuMemAlloc({bytes} bytes)"), e))?;
        Ok(Buffer { slice })
    }

    /// Sets every byte of `buf` to `byte`, asynchronously on the scorer's stream.
    pub fn fill_bytes(&self, buf: &mut Buffer, byte: u8) -> GpuResult {
        use cudarc::driver::DevicePtrMut;
        let len = buf.len_bytes();
        let (ptr, _record) = buf.slice.device_ptr_mut(&self.stream);
        // SAFETY: `ptr` addresses `len` bytes owned by `buf`, on the scorer's stream.
        unsafe { cudarc::driver::result::memset_d8_async(ptr, byte, len, self.stream.cu_stream()) }
            .map_err(|e| GpuError::driver("cuMemsetD8Async", e))
    }

    /// Copies a whole buffer to the host (synchronizes the stream).
    pub fn download_bytes(&self, buf: &Buffer) -> Result<Vec<u8>, GpuError> {
        let bytes: Vec<u8> = self
            .stream
            .clone_dtoh(&buf.slice)
            .map_err(|e| GpuError::driver("cuMemcpyDtoH", e))?;
        self.synchronize()?;
        Ok(bytes)
    }

    /// Copies host bytes into the start of `buf`.
    pub fn upload_bytes(&self, data: &[u8], buf: &mut Buffer) -> GpuResult {
        if data.len() > buf.len_bytes() {
            return Err(GpuError::Signature {
                kernel: "cuMemcpyHtoD".into(),
                message: format!("{} bytes into a buffer of {}", data.len(), buf.len_bytes()),
            });
        }
        let mut view = buf.slice.slice_mut(0..data.len());
        self.stream
            .memcpy_htod(data, &mut view)
            .map_err(|e| GpuError::driver("cuMemcpyHtoD", e))
    }

    /// Waits for all work on the scorer's stream; a kernel fault surfaces here.
    pub fn synchronize(&self) -> GpuResult {
        self.stream
            .synchronize()
            .map_err(|e| GpuError::driver("cuStreamSynchronize", e))
    }

    /// Enqueues one launch on the scorer's stream.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number and type (see
    /// [`crate::backend::CheckedKernel`]), and every buffer must cover what the kernel
    /// accesses; a violation by a submission is contained by the worker process.
    pub unsafe fn launch(&self, f: &Function, dims: Dims, args: &[Arg<'_, Buffer>]) -> GpuResult {
        let mut builder = self.stream.launch_builder(&f.inner);
        // The builder keeps pointers to the scalars: they live in `args`, which outlives it.
        for arg in args {
            match arg {
                Arg::Buffer(b) => builder.arg(&b.slice),
                Arg::I32(v) => builder.arg(v),
                Arg::U32(v) => builder.arg(v),
                Arg::I64(v) => builder.arg(v),
                Arg::U64(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (dims.grid[0], dims.grid[1], dims.grid[2]),
            block_dim: (dims.block[0], dims.block[1], dims.block[2]),
            shared_mem_bytes: dims.shared_mem_bytes,
        };
        // SAFETY: the caller's contract (above).
        unsafe { builder.launch(cfg) }
            .map(|_| ())
            .map_err(|e| GpuError::launch(&f.name, e))
    }

    /// A timing event on the scorer's context.
    pub fn event(&self) -> Result<CudaEvent, GpuError> {
        self.ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| GpuError::driver("cuEventCreate", e))
    }

    /// The scorer's stream.
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Makes the context current on this thread (before raw driver calls).
    pub(crate) fn bind(&self) -> GpuResult {
        self.ctx
            .bind_to_thread()
            .map_err(|e| GpuError::driver("cuCtxSetCurrent", e))
    }

    /// Resets persisting L2 lines so one sample's accesses cannot pin data for the next.
    pub fn reset_persisting_l2(&self) -> GpuResult {
        if self.info.max_persisting_l2_bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: the context is current on this thread; the call takes no arguments.
        let rc = unsafe { cudarc::driver::sys::cuCtxResetPersistingL2Cache() };
        match rc {
            // Unsupported (e.g. under MPS or MIG) means there is no persisting L2 to reset.
            cudarc::driver::sys::CUresult::CUDA_SUCCESS
            | cudarc::driver::sys::CUresult::CUDA_ERROR_NOT_SUPPORTED => Ok(()),
            code => Err(GpuError::driver(
                "cuCtxResetPersistingL2Cache",
                cudarc::driver::DriverError(code),
            )),
        }
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
