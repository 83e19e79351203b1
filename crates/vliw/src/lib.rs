//! # rdbench-vliw: the simulated accelerator of the `tree-traversal` task
//!
//! A re-implementation, from its specification, of the VLIW SIMD machine of Anthropic's
//! performance take-home (no code of the original is used): one core, five engines with slot
//! limits (alu 12, valu 6, load 2, store 2, flow 1), vectors of 8 words, 1,536 words of
//! scratch, a flat memory of 32-bit words, and every effect of a cycle applied after all of
//! its reads.
//!
//! - [`isa`]: the instructions, decoded; their exact semantics are in [`machine`].
//! - [`program`]: the submission format (`program.json`, versioned, size-capped), parsed into
//!   a validated [`program::Program`]; every static error names the bundle and slot.
//! - [`machine`]: the simulator. A run returns the cycle count or the [`machine::Fault`] that
//!   ended it (an address out of bounds, a division by zero, no halt within the cycle limit).
//! - [`problem`]: the tree-traversal problem: parameters (tree height, batch, rounds, hash
//!   stages), the presets of the task's profiles, inputs from a seed, the memory image and
//!   the CPU oracle.
//! - [`baseline`]: the scalar starting program, one slot per bundle, for any parameters.
//!
//! This crate holds nothing secret and no optimized program: the agent's local tool
//! (`rdbench-vliw`) is built from it alone.

pub mod baseline;
pub mod isa;
pub mod machine;
pub mod problem;
pub mod program;

pub use isa::{AluOp, Slot, SCRATCH_SIZE, SLOT_LIMITS, VLEN};
pub use machine::{run, Fault, RunStats};
pub use problem::Params;
pub use program::{ParseError, Program};
