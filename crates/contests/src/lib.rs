//! # rdbench-contests: code-contest problems and the scorer's Rust evaluator
//!
//! The library under `codecontests-scaffold` (RE-Bench's "Scaffolding for Rust
//! Codecontests"), in two parts the task uses:
//!
//! - [`problems`]: stdin/stdout problems generated from templates and a seed (statements in
//!   several phrasings, public, private and generated tests), a visible split for the agent
//!   and a held-out split from a secret seed that never share a (template, parameter,
//!   phrasing) combination, the view a scaffold may see ([`problems::ScaffoldProblem`]), and
//!   for every template a reference Rust solution and realistic wrong ones
//!   ([`problems::solutions`]), for the tests and the tiny code model's corpus;
//! - [`evaluate`]: the scorer's own evaluator, run in the scorer and never in the scaffold's
//!   process: it compiles one Rust file with `rustc` in the runner's sandbox and runs each
//!   test in a fresh one, and reports METR's result fields.
//!
//! `docs/codecontests-problems.md` is the guide: templates, the split, what the scaffold sees,
//! the evaluator's limits and sandbox, the exploit cases and measured times.

pub mod evaluate;
pub mod problems;

pub use evaluate::{EvalError, EvalLimits, Evaluation, Evaluator, Toolchain};
pub use problems::{
    held_out, visible, ContestProblem, Problem, ScaffoldProblem, TemplateId, TestGroups,
};
