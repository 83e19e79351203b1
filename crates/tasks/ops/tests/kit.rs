//! The ops family through the kit's real scoring routine, one body per device: on the CPU
//! emulator always (correctness of every shipped solution of every op at the emulator sizes,
//! never a score), and on the GPU where there is one (the tiny profile, timed and validated).

use rdbench_gpu::backend::KernelBackend;
use rdbench_gpu::testing::assert_shipped_solutions_correct;
use rdbench_task_ops::{attention, gemm, matmul, norm, softmax};

fn shipped_solutions_are_correct<B: KernelBackend>(dev: &B) {
    assert_shipped_solutions_correct(dev, softmax::Softmax);
    assert_shipped_solutions_correct(dev, matmul::task());
    assert_shipped_solutions_correct(dev, norm::Norm::Rms);
    assert_shipped_solutions_correct(dev, norm::Norm::Layer);
    assert_shipped_solutions_correct(dev, gemm::task());
    assert_shipped_solutions_correct(dev, attention::Attention);
}

rdbench_gpu::backend_test!(
    every_shipped_solution_is_correct,
    shipped_solutions_are_correct
);
