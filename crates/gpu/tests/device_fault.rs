//! GPU-only device test, in its own test binary (its own process): the kernel fault it
//! provokes poisons the CUDA context, which would break any other test sharing the process.
//! Without a GPU it is skipped with a message.

use rdbench_gpu::device::{Arg, Dims, GpuDevice};
use rdbench_gpu::GpuError;

/// On a GPU: a kernel runs, a timer measures it, a fault is reported as a fault.
#[test]
fn launch_time_and_fault_on_gpu() {
    let Ok(dev) = GpuDevice::open(0) else {
        eprintln!("skipped: no NVIDIA GPU");
        return;
    };
    let src = r#"extern "C" __global__ void fill(int* x, long long n, int v) {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] = v; }
        extern "C" __global__ void wild(int* x) { int* p = (int*)0x10; *p = 1; }"#;
    let module = dev.compile_and_load(src, "test.cu").unwrap();
    let fill = dev.function(&module, "fill").unwrap();
    let mut buf = dev.alloc(4 * 1000).unwrap();
    let timer = dev.timer().unwrap();
    timer.start().unwrap();
    dev.launch(
        &fill,
        Dims::linear(4, 256),
        &[Arg::Buffer(&buf), Arg::I64(1000), Arg::I32(7)],
    )
    .unwrap();
    timer.stop().unwrap();
    assert!(timer.elapsed_ms().unwrap() >= 0.0);
    assert!(dev.download_i32(&buf).unwrap().iter().all(|&v| v == 7));
    dev.zero(&mut buf).unwrap();
    assert!(dev.download_i32(&buf).unwrap().iter().all(|&v| v == 0));
    assert!(dev.function(&module, "missing").is_err());
    let wild = dev.function(&module, "wild").unwrap();
    let _ = dev.launch(&wild, Dims::linear(1, 1), &[Arg::Buffer(&buf)]);
    match dev.synchronize() {
        Err(GpuError::KernelFault { .. }) => {}
        other => panic!("expected a kernel fault, got {:?}", other.err()),
    }
}
