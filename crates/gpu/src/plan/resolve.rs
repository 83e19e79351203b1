//! Resolving a plan for one binding of the task variables: every expression evaluated and every
//! limit checked, giving a [`ResolvedPlan`] of plain numbers.
//!
//! [`LaunchPlan::resolve`] runs the steps in a fixed order (counts, name clashes, scratch
//! buffers, then each launch's grid, block, shared memory and arguments) and stops at the first
//! error, so a plan with several faults always reports the same one.

use std::collections::BTreeMap;

use super::types::{
    ArgSpec, BufferSpec, LaunchPlan, LaunchSpec, PlanError, PlanLimits, ResolvedArg,
    ResolvedLaunch, ResolvedPlan, ResolvedScratch, ScalarType,
};
use super::{launch_location, AXES};
use crate::expr::Expr;

impl LaunchPlan {
    /// Evaluates every expression with the task variables `vars` (and the plan's constants) and
    /// checks every limit, giving plain numbers to launch.
    ///
    /// Also checks names: constants and scratch buffers may not clash with task variables or
    /// task buffers, expressions may use only variables and constants, and buffer arguments must
    /// name a task buffer or a scratch buffer. Each error message ends with the variable
    /// binding it was found at (e.g. `(with n = 100000000)`).
    pub fn resolve(
        &self,
        vars: &BTreeMap<String, i64>,
        buffers: &[BufferSpec],
        limits: &PlanLimits,
    ) -> Result<ResolvedPlan, PlanError> {
        let r = Resolver::new(self, vars, buffers, limits);
        r.check_counts()?;
        r.check_names()?;
        let scratch = r.resolve_scratch()?;
        let launches = self
            .launches
            .iter()
            .enumerate()
            .map(|(i, l)| r.resolve_launch(i, l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResolvedPlan { scratch, launches })
    }
}

/// One resolution: the plan, the binding, and what every message needs.
struct Resolver<'a> {
    plan: &'a LaunchPlan,
    vars: &'a BTreeMap<String, i64>,
    buffers: &'a [BufferSpec],
    limits: &'a PlanLimits,
    /// The task variables and the plan's constants: the names expressions may use.
    env: BTreeMap<String, i64>,
    /// ` (with n = 100000000)`, appended to every message; empty without variables.
    at: String,
}

impl<'a> Resolver<'a> {
    fn new(
        plan: &'a LaunchPlan,
        vars: &'a BTreeMap<String, i64>,
        buffers: &'a [BufferSpec],
        limits: &'a PlanLimits,
    ) -> Resolver<'a> {
        let at = {
            let parts: Vec<String> = vars.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" (with {})", parts.join(", "))
            }
        };
        let mut env = vars.clone();
        env.extend(plan.constants.iter().map(|(k, v)| (k.clone(), *v)));
        Resolver {
            plan,
            vars,
            buffers,
            limits,
            env,
            at,
        }
    }

    fn fail(&self, location: String, message: String) -> PlanError {
        self.plan.invalid(location, format!("{message}{}", self.at))
    }

    fn eval(&self, e: &Expr, loc: &str) -> Result<i64, PlanError> {
        e.eval(&self.env)
            .map_err(|err| self.fail(loc.to_string(), err.to_string()))
    }

    /// At least one launch, and no more launches or scratch buffers than the limits allow.
    fn check_counts(&self) -> Result<(), PlanError> {
        let (plan, limits) = (self.plan, self.limits);
        if plan.launches.is_empty() {
            return Err(self.fail("launch".into(), "the plan has no launches".into()));
        }
        if plan.launches.len() > limits.max_launches {
            return Err(self.fail(
                "launch".into(),
                format!(
                    "the plan has {} launches; at most {} are allowed",
                    plan.launches.len(),
                    limits.max_launches
                ),
            ));
        }
        if plan.scratch.len() > limits.max_scratch_buffers {
            return Err(self.fail(
                "scratch".into(),
                format!(
                    "the plan has {} scratch buffers; at most {} are allowed",
                    plan.scratch.len(),
                    limits.max_scratch_buffers
                ),
            ));
        }
        Ok(())
    }

    /// Constants and scratch buffers may not take the name of a task variable or task buffer
    /// (only known now: parsing sees neither).
    fn check_names(&self) -> Result<(), PlanError> {
        let (vars, buffers) = (self.vars, self.buffers);
        for name in self.plan.constants.keys() {
            if vars.contains_key(name) {
                return Err(self.fail(
                    format!("constants.{name}"),
                    format!("`{name}` is a task variable; a constant may not redefine it"),
                ));
            }
            if buffers.iter().any(|b| &b.name == name) {
                return Err(self.fail(
                    format!("constants.{name}"),
                    format!("`{name}` is the name of a task buffer; choose another name"),
                ));
            }
        }
        for s in &self.plan.scratch {
            let loc = format!("scratch {:?}", s.name);
            if buffers.iter().any(|b| b.name == s.name) {
                return Err(self.fail(
                    loc,
                    format!(
                        "`{}` is the name of a task buffer; choose another name",
                        s.name
                    ),
                ));
            }
            if vars.contains_key(&s.name) {
                return Err(self.fail(
                    loc,
                    format!(
                        "`{}` is the name of a task variable; choose another name",
                        s.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every scratch buffer's length, checked against the per-buffer and (running) total limits.
    fn resolve_scratch(&self) -> Result<Vec<ResolvedScratch>, PlanError> {
        let limits = self.limits;
        let mut scratch = Vec::new();
        let mut total: u64 = 0;
        for s in &self.plan.scratch {
            let loc = format!("scratch {:?}: len", s.name);
            let len = self.eval(&s.len, &loc)?;
            if len < 1 {
                return Err(self.fail(
                    loc,
                    format!(
                        "`{}` = {len}; a scratch buffer needs at least 1 element",
                        s.len.source()
                    ),
                ));
            }
            let len = len as u64;
            let bytes = len.checked_mul(s.elem.size_bytes());
            let too_big = match bytes {
                Some(b) => b > limits.max_scratch_bytes,
                None => true,
            };
            if too_big {
                return Err(self.fail(
                    loc,
                    format!(
                        "`{}` = {len} elements of {} is {} bytes; at most {} bytes are allowed per scratch buffer",
                        s.len.source(),
                        s.elem,
                        bytes.map_or_else(|| "more than 2^64".to_string(), |b| b.to_string()),
                        limits.max_scratch_bytes
                    ),
                ));
            }
            let bytes = bytes.unwrap_or(u64::MAX);
            total = total.saturating_add(bytes);
            if total > limits.max_total_scratch_bytes {
                return Err(self.fail(
                    format!("scratch {:?}", s.name),
                    format!(
                        "scratch buffers up to this one take {total} bytes; at most {} bytes are allowed in total",
                        limits.max_total_scratch_bytes
                    ),
                ));
            }
            scratch.push(ResolvedScratch {
                name: s.name.clone(),
                elem: s.elem,
                len,
                zero_init: s.zero_init,
            });
        }
        Ok(scratch)
    }

    /// Launch `i`: grid, block (and its thread count), dynamic shared memory, then arguments.
    fn resolve_launch(&self, i: usize, l: &LaunchSpec) -> Result<ResolvedLaunch, PlanError> {
        let limits = self.limits;
        let loc = launch_location(i, &l.kernel);
        let grid = self.resolve_dims(&loc, &l.grid, "grid", limits.max_grid)?;
        let block = self.resolve_dims(&loc, &l.block, "block", limits.max_block)?;
        let threads: u64 = block.iter().map(|&d| d as u64).product();
        if threads > limits.max_threads_per_block as u64 {
            return Err(self.fail(
                format!("{loc}: block"),
                format!(
                    "{} x {} x {} = {threads} threads per block; at most {} are allowed",
                    block[0], block[1], block[2], limits.max_threads_per_block
                ),
            ));
        }
        let sloc = format!("{loc}: shared_mem");
        let smem = self.eval(&l.shared_mem, &sloc)?;
        if smem < 0 || smem > limits.max_shared_mem_bytes as i64 {
            return Err(self.fail(
                sloc,
                format!(
                    "`{}` = {smem} bytes; dynamic shared memory must be in [0, {}]",
                    l.shared_mem.source(),
                    limits.max_shared_mem_bytes
                ),
            ));
        }
        let args = l
            .args
            .iter()
            .enumerate()
            .map(|(j, a)| self.resolve_arg(format!("{loc}: args[{j}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ResolvedLaunch {
            kernel: l.kernel.clone(),
            grid,
            block,
            shared_mem_bytes: smem as u32,
            args,
        })
    }

    /// A grid or block: 1 to 3 expressions, each in `[1, max]` for its axis; missing axes are 1.
    /// A single expression is located as `grid`, several as `grid.x`, `grid.y`, ...
    fn resolve_dims(
        &self,
        loc: &str,
        exprs: &[Expr],
        what: &str,
        max: [u32; 3],
    ) -> Result<[u32; 3], PlanError> {
        let mut out = [1u32; 3];
        for (axis, e) in exprs.iter().enumerate().take(3) {
            let dloc = if exprs.len() == 1 {
                format!("{loc}: {what}")
            } else {
                format!("{loc}: {what}.{}", AXES[axis])
            };
            let v = self.eval(e, &dloc)?;
            let limit = max[axis];
            if v < 1 || v > limit as i64 {
                return Err(self.fail(
                    dloc,
                    format!(
                        "`{}` = {v}; {what}.{} must be in [1, {limit}]",
                        e.source(),
                        AXES[axis]
                    ),
                ));
            }
            out[axis] = v as u32;
        }
        Ok(out)
    }

    /// One argument at `aloc`: a known buffer, or a scalar whose value fits its type.
    fn resolve_arg(&self, aloc: String, a: &ArgSpec) -> Result<ResolvedArg, PlanError> {
        Ok(match a {
            ArgSpec::Buffer(name) => {
                let known = self.buffers.iter().any(|b| &b.name == name)
                    || self.plan.scratch.iter().any(|s| &s.name == name);
                if !known {
                    return Err(self.fail(
                        aloc,
                        self.plan.not_a_buffer(name, self.buffers, Some(self.vars)),
                    ));
                }
                ResolvedArg::Buffer(name.clone())
            }
            ArgSpec::Scalar { ty, value } => {
                let v = self.eval(value, &aloc)?;
                let (lo, hi) = ty.range();
                if (v as i128) < lo || (v as i128) > hi {
                    return Err(self.fail(
                        aloc,
                        format!(
                            "`{}` = {v} does not fit in {ty} (range {lo} to {hi})",
                            value.source()
                        ),
                    ));
                }
                // In range by the check above, so the conversions cannot fail.
                match ty {
                    ScalarType::I32 => ResolvedArg::I32(v as i32),
                    ScalarType::U32 => ResolvedArg::U32(v as u32),
                    ScalarType::I64 => ResolvedArg::I64(v),
                    ScalarType::U64 => ResolvedArg::U64(v as u64),
                }
            }
        })
    }
}
