//! `launch.toml`: the declarative launch plan of a kernel submission.
//!
//! A kernel submission is `solution.cu` (device code only) plus `launch.toml`, which says which
//! `extern "C" __global__` kernels to launch, in order, with which grid, block, dynamic shared
//! memory and arguments, and which scratch buffers the scorer should allocate. The scorer owns
//! the host side. See `docs/launch-plan.md` for the format reference.
//!
//! Life cycle:
//! 1. [`LaunchPlan::parse`] / [`LaunchPlan::from_file`]: TOML syntax, unknown keys, types,
//!    names, expression syntax. Needs nothing from the task.
//! 2. [`LaunchPlan::check_against`]: kernel names and argument lists against the signatures
//!    read from the CUDA source by [`parse_kernel_signatures`] (no GPU needed).
//! 3. [`LaunchPlan::resolve`]: for one binding of the task variables (e.g. `n`), evaluates
//!    every expression and checks every limit, giving a [`ResolvedPlan`] of plain numbers.
//!
//! Every [`PlanError`] message starts with the file path, then the location in the plan
//! (`launch[1] (kernel "scan"): grid.x`, `scratch "tile_sums": len`, `constants.BLOCK`), then
//! what is wrong.
//!
//! The code follows the life cycle: `types.rs` (the plan as written and as resolved, and
//! [`PlanError`]), `parse.rs` (step 1), `check.rs` (step 2), `resolve.rs` (step 3). The kernel
//! signatures come from [`crate::cuda_sig`] and are re-exported here.

use std::collections::BTreeMap;

mod check;
mod parse;
mod resolve;
#[cfg(test)]
mod tests;
mod types;

pub use types::{
    ArgSpec, BufferSpec, ElemType, LaunchPlan, LaunchSpec, PlanError, PlanLimits, ResolvedArg,
    ResolvedLaunch, ResolvedPlan, ResolvedScratch, ScalarType, ScratchSpec,
};
// The signature parser moved to `cuda_sig`; its paths through `plan` stay valid.
pub use crate::cuda_sig::{parse_kernel_signatures, KernelSignature, ParamKind};

// ---------------------------------------------------------------------------------------------
// Message helpers shared by parse, check and resolve
// ---------------------------------------------------------------------------------------------

fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

fn launch_location(index: usize, kernel: &str) -> String {
    format!("launch[{index}] (kernel {kernel:?})")
}

const AXES: [&str; 3] = ["x", "y", "z"];

impl LaunchPlan {
    fn invalid(&self, location: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            path: self.path.clone(),
            location: location.into(),
            message: message.into(),
        }
    }

    /// Describes a name that is not a buffer, for messages.
    fn not_a_buffer(
        &self,
        name: &str,
        buffers: &[BufferSpec],
        vars: Option<&BTreeMap<String, i64>>,
    ) -> String {
        let mut known: Vec<&str> = buffers.iter().map(|b| b.name.as_str()).collect();
        known.extend(self.scratch.iter().map(|s| s.name.as_str()));
        let mut msg = format!(
            "unknown buffer `{name}`; the buffers are {}",
            quote_list(known)
        );
        let is_var = vars.is_some_and(|v| v.contains_key(name));
        if self.constants.contains_key(name) || is_var {
            let what = if is_var {
                "a task variable"
            } else {
                "a constant"
            };
            msg = format!(
                "`{name}` is {what}, not a buffer; to pass its value write \"i32: {name}\" (or u32/i64/u64)"
            );
        }
        msg
    }
}
