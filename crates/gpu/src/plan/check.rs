//! Checking a parsed plan against the kernels of its CUDA source (as read by
//! [`crate::cuda_sig`]) and the task's buffers, before any size is known: kernel names, argument
//! counts, and pointer/scalar kinds and widths.

use std::collections::BTreeSet;

use super::types::{ArgSpec, BufferSpec, LaunchPlan, PlanError};
use super::{launch_location, quote_list};
use crate::cuda_sig::{KernelSignature, ParamKind};

impl LaunchPlan {
    /// Checks kernel names and argument lists against the kernels found in the CUDA source
    /// (see [`parse_kernel_signatures`](crate::cuda_sig::parse_kernel_signatures)) and buffer
    /// names against the task's buffers and the plan's scratch buffers.
    ///
    /// Errors: unknown kernel (the message lists the kernels found), wrong number of arguments,
    /// a buffer passed to a scalar parameter or a scalar to a pointer parameter, a scalar whose
    /// type differs from the declared one (e.g. `i32` to `long long`, or `i32` to
    /// `unsigned int`), and any parameter of kind [`ParamKind::Other`] (a struct, `float`, `T**`,
    /// a reference, a type the front end does not know): a plan passes only buffers and integer
    /// scalars, and an argument smaller than its parameter would have the driver copy host
    /// memory past it into the kernel, so such a kernel cannot be launched by a plan. A read-only
    /// task buffer passed to a non-`const` pointer is allowed (the scorer checks that inputs are
    /// unmodified).
    pub fn check_against(
        &self,
        sigs: &[KernelSignature],
        buffers: &[BufferSpec],
    ) -> Result<(), PlanError> {
        let scratch: BTreeSet<&str> = self.scratch.iter().map(|s| s.name.as_str()).collect();
        for b in buffers {
            if scratch.contains(b.name.as_str()) {
                return Err(self.invalid(
                    format!("scratch {:?}", b.name),
                    format!(
                        "`{}` is the name of a task buffer; choose another name",
                        b.name
                    ),
                ));
            }
        }
        for (i, l) in self.launches.iter().enumerate() {
            let loc = launch_location(i, &l.kernel);
            let Some(sig) = sigs.iter().find(|s| s.name == l.kernel) else {
                let msg = if sigs.is_empty() {
                    format!(
                        "unknown kernel `{}`: no extern \"C\" __global__ kernels were found in the CUDA source",
                        l.kernel
                    )
                } else {
                    format!(
                        "unknown kernel `{}`; the extern \"C\" __global__ kernels in the CUDA source are {}",
                        l.kernel,
                        quote_list(sigs.iter().map(|s| s.name.as_str()))
                    )
                };
                return Err(self.invalid(format!("{loc}: kernel"), msg));
            };
            if sig.params.len() != l.args.len() {
                let plural = |n: usize| if n == 1 { "" } else { "s" };
                return Err(self.invalid(
                    format!("{loc}: args"),
                    format!(
                        "kernel {} takes {} parameter{}, launch[{i}] passes {} argument{}",
                        l.kernel,
                        sig.params.len(),
                        plural(sig.params.len()),
                        l.args.len(),
                        plural(l.args.len())
                    ),
                ));
            }
            for (j, (arg, param)) in l.args.iter().zip(&sig.params).enumerate() {
                let aloc = format!("{loc}: args[{j}]");
                match (arg, param) {
                    (_, ParamKind::Other(ty)) => {
                        return Err(self.invalid(
                            aloc,
                            format!(
                                "parameter {j} of kernel {} is `{ty}`, a type a launch plan cannot \
                                 pass: a plan passes buffers to pointer parameters (`T*`) and \
                                 \"i32/u32/i64/u64: EXPR\" values to integer parameters, nothing \
                                 else (no struct, floating-point, pointer-to-pointer or reference \
                                 parameters); pass such data through a buffer",
                                l.kernel
                            ),
                        ))
                    }
                    (ArgSpec::Buffer(name), ParamKind::Pointer { is_const }) => {
                        let task = buffers.iter().find(|b| &b.name == name);
                        if task.is_none() && !scratch.contains(name.as_str()) {
                            return Err(self.invalid(aloc, self.not_a_buffer(name, buffers, None)));
                        }
                        if let Some(b) = task {
                            if !b.writable && !is_const {
                                tracing::debug!(
                                    "{}: {aloc}: read-only buffer `{name}` passed to a non-const pointer parameter",
                                    self.path.display()
                                );
                            }
                        }
                    }
                    (ArgSpec::Buffer(name), ParamKind::Scalar(t)) => {
                        return Err(self.invalid(
                            aloc,
                            format!(
                                "buffer `{name}` is a pointer, but parameter {j} of kernel {} is a scalar {t} (`{}`); pass a value as \"{t}: EXPR\"",
                                l.kernel,
                                t.c_name()
                            ),
                        ))
                    }
                    (ArgSpec::Scalar { ty, .. }, ParamKind::Pointer { .. }) => {
                        return Err(self.invalid(
                            aloc,
                            format!(
                                "a scalar {ty} is passed, but parameter {j} of kernel {} is a pointer; pass a buffer name",
                                l.kernel
                            ),
                        ))
                    }
                    (ArgSpec::Scalar { ty, .. }, ParamKind::Scalar(t)) => {
                        if ty != t {
                            let width = if ty.size_bytes() != t.size_bytes() {
                                format!(
                                    " ({}-bit where the kernel expects {}-bit)",
                                    ty.size_bytes() * 8,
                                    t.size_bytes() * 8
                                )
                            } else {
                                " (same width, different signedness)".to_string()
                            };
                            return Err(self.invalid(
                                aloc,
                                format!(
                                    "a scalar {ty} is passed, but parameter {j} of kernel {} is `{}`{width}; write \"{t}: ...\"",
                                    l.kernel,
                                    t.c_name()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
