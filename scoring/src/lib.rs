//! rdbench-scoring: turns many attempts into the two headline numbers METR publishes.
//!
//! - [`budget`]: RE-Bench's **normalized score at a total time budget**: score@k
//!   ([`score_at_k`], the exact expected best of k attempts) averaged over tasks, for every way
//!   of splitting a budget into k attempts of one time limit, with bootstrap intervals.
//! - [`horizon`]: METR's **time horizon**: a weighted, L2-penalized logistic regression of
//!   success on log2 human minutes per agent, p50 and p80, and a hierarchical bootstrap over
//!   task families, tasks and runs.
//! - [`input`] reads rdbench attempt summaries and METR's published runs; errors name the file,
//!   line and field ([`error::ScoringError`]).
//! - [`report`] runs both ([`report::aggregate`]), prints tables and writes JSON and CSV;
//!   [`plot`] draws the figures as SVG and PNG.
//! - [`synth`] generates realistic synthetic data sets for tests and benchmarks.
//!
//! Bootstraps run on all cores (rayon); every sample draws from its own seeded stream, so the
//! results are the same for any thread count.

pub mod budget;
pub mod error;
pub mod horizon;
pub mod input;
pub mod plot;
pub mod report;
pub mod score_at_k;
pub mod stats;
pub mod synth;

pub use error::{Location, Result, ScoringError};
pub use input::{load_file, load_files, Run};
pub use report::{aggregate, AggregateConfig, Report};

/// Runs `f` on a rayon pool of `threads` threads (`None`: the global pool, one thread per core).
/// Results do not depend on the thread count; this exists to show that, and to limit CPU use.
pub fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> T {
    match threads {
        Some(n) if n > 0 => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(f),
            Err(_) => f(),
        },
        _ => f(),
    }
}
