//! Test support, candle's way: one test body per device. [`backend_test!`](crate::backend_test)
//! turns `fn body<B: KernelBackend>(dev: &B)` into `<name>_emu`, run on the CPU emulator
//! always, and `<name>_cuda`, run on the GPU where there is one. With `RDBENCH_REQUIRE_GPU=1`
//! (as `scripts/gpu-check.sh` sets it) a missing GPU fails the CUDA variant instead of
//! skipping it, so a green run on a GPU machine cannot hide a skipped GPU test.

use crate::backend::cuda::CudaBackend;
use crate::backend::emu::EmuBackend;

/// Whether GPU tests must run (`RDBENCH_REQUIRE_GPU=1`).
pub fn gpu_required() -> bool {
    std::env::var("RDBENCH_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU, or `None` with a message; panics instead when a GPU is required.
pub fn cuda_or_skip(test: &str) -> Option<CudaBackend> {
    match CudaBackend::open(0) {
        Ok(dev) => Some(dev),
        Err(e) if gpu_required() => panic!("{test}: RDBENCH_REQUIRE_GPU=1 but no GPU: {e}"),
        Err(e) => {
            eprintln!("skipped {test} on CUDA: {e}");
            None
        }
    }
}

/// The emulator, or `None` with a message when there is no host C++ compiler (CI has one).
pub fn emu_or_skip(test: &str) -> Option<EmuBackend> {
    match EmuBackend::new() {
        Ok(dev) => Some(dev),
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: {e}"),
        Err(e) => {
            eprintln!("skipped {test} on the emulator: {e}");
            None
        }
    }
}

/// `backend_test!(name, body)`: `name_emu` and `name_cuda` running `body(&dev)`.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn emu() {
                if let Some(dev) = $crate::testing::emu_or_skip(concat!(stringify!($name), "_emu"))
                {
                    super::$body(&dev);
                }
            }
            #[test]
            fn cuda() {
                if let Some(dev) =
                    $crate::testing::cuda_or_skip(concat!(stringify!($name), "_cuda"))
                {
                    super::$body(&dev);
                }
            }
        }
    };
}
