//! # ops: a KernelBench-style family of kernel tasks
//!
//! One task per op, each a [`KernelTask`](rdbench_gpu::kernel_task::KernelTask) made a
//! [`Task`] by the kit's [`KernelTaskAdapter`]:
//!
//! - `ops-softmax` ([`softmax::Softmax`]): row-wise, numerically stable softmax of an
//!   `m x n` f32 matrix;
//! - `ops-matmul` ([`matmul::SPEC`]): `C = A x B` in f32, three size variables `m, n, k`;
//! - `ops-rmsnorm` and `ops-layernorm` ([`norm::Norm`]): row normalizations of an `m x n` bf16
//!   matrix with f32 statistics (bf16 weight, and bias for LayerNorm);
//! - `ops-gemm` ([`gemm::SPEC`]): `C = A x B` with bf16 inputs and output, f32 accumulation
//!   (the contract of bf16 tensor cores);
//! - `ops-attention` ([`attention::Attention`]): causal self-attention forward, bf16, head
//!   dimension 64, size variables `bh` (batch x heads) and `s` (sequence length).
//!
//! What the ops share lives in [`common`]: the one input generator (harness kernel
//! `kernels/harness/ops_generate.cu` and its bit-exact CPU twin), the tolerance rule of the CPU
//! oracles, the NaN poison word, profiles, task info and the common half of the instructions.
//! Each op's own files: `kernels/ops-<op>/` (harness and starting solution),
//! `reference_solutions/ops-<op>/`, `tests/exploits/ops-<op>/`.

#[macro_use]
pub mod common;
pub mod attention;
pub mod gemm;
pub mod matmul;
pub mod norm;
pub mod product;
pub mod softmax;

use rdbench_core::task::Task;
use rdbench_gpu::kernel_task::KernelTaskAdapter;

/// The tasks of this crate, for the CLI's registry.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![
        Box::new(KernelTaskAdapter::new(softmax::Softmax)),
        Box::new(KernelTaskAdapter::new(matmul::task())),
        Box::new(KernelTaskAdapter::new(norm::Norm::Rms)),
        Box::new(KernelTaskAdapter::new(norm::Norm::Layer)),
        Box::new(KernelTaskAdapter::new(gemm::task())),
        Box::new(KernelTaskAdapter::new(attention::Attention)),
    ]
}
