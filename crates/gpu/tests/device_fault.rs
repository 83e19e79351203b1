//! GPU-only device test, in its own test binary (its own process): the kernel fault it
//! provokes poisons the CUDA context, which would break any other test sharing the process.
//! Without a GPU it is skipped with a message (a failure under `RDBENCH_REQUIRE_GPU=1`).

use rdbench_gpu::backend::{Arg, CheckedKernel, Dims, KernelBackend, SampleTimer};
use rdbench_gpu::plan::parse_kernel_signatures;
use rdbench_gpu::GpuError;

/// On a GPU: a kernel runs, a timer measures it, a fault is reported as a fault by its code.
#[test]
fn launch_time_and_fault_on_gpu() {
    let Some(dev) = rdbench_gpu::testing::cuda_or_skip("launch_time_and_fault_on_gpu") else {
        return;
    };
    let src = r#"extern "C" __global__ void fill(int* x, long long n, int v) {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] = v; }
        extern "C" __global__ void wild(int* x) { int* p = (int*)0x10; *p = 1; }"#;
    let (module, _) = dev.compile(src, "test.cu", None).unwrap();
    let sigs = parse_kernel_signatures(src);
    let fill = CheckedKernel::new(&dev, &module, &sigs, "fill").unwrap();
    let buf = dev.alloc(4 * 1000).unwrap();
    let mut timer = dev.timer().unwrap().expect("CUDA times");
    timer.start().unwrap();
    fill.launch(
        &dev,
        Dims::linear(4, 256),
        &[Arg::Buffer(&buf), Arg::I64(1000), Arg::I32(7)],
    )
    .unwrap();
    timer.stop().unwrap();
    let window = timer.elapsed_ms().unwrap();
    assert!(window.ms >= 0.0);
    assert!(window.latency_hidden, "the blocking kernel held the stream");
    let bytes = dev.download(&buf).unwrap();
    assert!(bytes
        .chunks_exact(4)
        .all(|c| i32::from_le_bytes(c.try_into().unwrap()) == 7));
    assert!(dev.function(&module, "missing").is_err());
    let wild = CheckedKernel::new(&dev, &module, &sigs, "wild").unwrap();
    let _ = wild.launch(&dev, Dims::linear(1, 1), &[Arg::Buffer(&buf)]);
    match dev.synchronize() {
        Err(e @ GpuError::KernelFault { .. }) => {
            assert_eq!(
                e.code(),
                Some(cudarc::driver::sys::CUresult::CUDA_ERROR_ILLEGAL_ADDRESS)
            );
        }
        other => panic!("expected a kernel fault, got {:?}", other.err()),
    }
}
