//! # rdbench-attempts
//!
//! The life of one attempt, and the one dispatcher of its commands
//! ([`rdbench_client::AttemptCommand`]) for both of `rdbench`'s modes: same-user (the command
//! runs in the caller's own process) and protected (`rdbench serve` runs it for a client).
//!
//! - [`dispatch`]: [`dispatch::dispatch`] runs a command for a caller. What differs between
//!   callers is data ([`context::Rights`], decided once from [`context::Caller`]); what
//!   differs between the modes is where files come from and go ([`context::Peer`]: this
//!   process's own folders, or the client across the socket).
//! - [`start`]: staging an attempt in the private home and handing out its starting files.
//! - [`score`]: scoring a snapshot of the submission and logging the entry.
//! - [`review`]: `status`, `log` and `finish`.
//! - [`output`]: text or JSON, on the terminal or captured for the service's reply.
//!
//! The task registry, calibrations (which need the GPU crate), the scoring worker and the
//! experiment tools belong to the binary: the library reaches them through
//! [`context::Host`], so it depends on no task crate and no GPU code.

/// `println!` into a command's [`output::Out`] (`$ctx.out`).
#[macro_export]
macro_rules! say {
    ($ctx:expr, $($arg:tt)*) => { $ctx.out.line(format_args!($($arg)*)) };
}

/// `eprintln!` into a command's [`output::Out`] (`$ctx.out`).
#[macro_export]
macro_rules! warn {
    ($ctx:expr, $($arg:tt)*) => { $ctx.out.warn(format_args!($($arg)*)) };
}

pub mod context;
pub mod dispatch;
pub mod output;
pub mod review;
pub mod score;
pub mod start;

#[cfg(test)]
mod testing;

pub use context::{Caller, Ctx, Host, LocalPeer, Peer, Rights};
pub use dispatch::dispatch;
pub use score::{
    device_lock, entry_for, run_stamp, scoring_run, snapshot_folder, RunResult, ScoringRun,
};
