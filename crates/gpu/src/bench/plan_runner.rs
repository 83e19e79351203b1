//! A resolved launch plan bound to a backend: its kernels looked up, launch shapes checked,
//! scratch allocated, ready to enqueue once per run.

use std::collections::HashMap;

use crate::backend::{Arg, Dims, KernelBackend};
use crate::plan::{ResolvedArg, ResolvedLaunch, ResolvedPlan};
use crate::{GpuError, GpuResult};

/// The byte `init = "none"` scratch is filled with: garbage, so a plan that relies on fresh
/// allocations being zero fails instead of passing by luck.
pub const UNINIT_SCRATCH_BYTE: u8 = 0xA5;

/// A plan ready to run on `B`.
pub struct PlanRunner<B: KernelBackend> {
    launches: Vec<(B::Function, ResolvedLaunch)>,
    scratch: HashMap<String, (B::Buffer, bool)>,
    scratch_order: Vec<String>,
}

impl<B: KernelBackend> PlanRunner<B> {
    /// Looks up every kernel, checks each launch shape (and opts into its dynamic shared
    /// memory) and allocates the scratch buffers; all outside any timed region.
    pub fn new(dev: &B, module: &B::Module, plan: &ResolvedPlan) -> Result<Self, GpuError> {
        let mut launches = Vec::with_capacity(plan.launches.len());
        for l in &plan.launches {
            let function = dev.function(module, &l.kernel)?;
            dev.prepare_launch(&function, &l.kernel, &dims_of(l))?;
            launches.push((function, l.clone()));
        }
        let mut scratch = HashMap::new();
        let mut scratch_order = Vec::new();
        for s in &plan.scratch {
            let mut buf = dev.alloc(s.bytes() as usize)?;
            if !s.zero_init {
                dev.fill_bytes(&mut buf, UNINIT_SCRATCH_BYTE)?;
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
    pub fn enqueue(&mut self, dev: &B, buffers: &[(&str, &B::Buffer)]) -> GpuResult {
        for name in &self.scratch_order {
            let (buf, zero) = self
                .scratch
                .get_mut(name)
                .expect("scratch allocated in new");
            if *zero {
                dev.fill_bytes(buf, 0)?;
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
                            .ok_or_else(|| {
                                GpuError::rejected(
                                    &launch.kernel,
                                    format!("no buffer named {name:?}"),
                                )
                            })?;
                        Arg::Buffer(buf)
                    }
                    ResolvedArg::I32(v) => Arg::I32(*v),
                    ResolvedArg::U32(v) => Arg::U32(*v),
                    ResolvedArg::I64(v) => Arg::I64(*v),
                    ResolvedArg::U64(v) => Arg::U64(*v),
                });
            }
            // SAFETY: the plan's arguments were checked against the kernel signatures parsed
            // from the submission's source when it was loaded (count, pointer vs scalar,
            // scalar widths); what the parser cannot see is the submission's fault and is
            // contained by the worker process.
            unsafe { dev.launch(function, dims_of(launch), &args)? };
        }
        Ok(())
    }

    /// Registers per thread of each kernel, for reports.
    pub fn registers(&self, dev: &B) -> Vec<(String, Option<i32>)> {
        self.launches
            .iter()
            .map(|(f, l)| (l.kernel.clone(), dev.num_regs(f)))
            .collect()
    }

    pub fn launch_count(&self) -> usize {
        self.launches.len()
    }
}

fn dims_of(l: &ResolvedLaunch) -> Dims {
    Dims {
        grid: l.grid,
        block: l.block,
        shared_mem_bytes: l.shared_mem_bytes,
    }
}
