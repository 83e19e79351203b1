//! # rdbench-core
//!
//! The task model shared by every rdbench crate, with no GPU code in it:
//!
//! - [`task`]: the [`Task`](task::Task) trait a task crate implements, [`TaskInfo`](task::TaskInfo),
//!   [`Profile`](task::Profile) and the outcome of one scoring run.
//! - [`outcome`]: [`ScoreOutcome`](outcome::ScoreOutcome) and [`InvalidKind`](outcome::InvalidKind),
//!   the typed result of one scoring run.
//! - [`attempt`]: an attempt's public folder (what the agent sees) and its private state
//!   (score log, samples, timelines) kept outside that folder.
//! - [`score_log`]: the append-only JSONL score log, safe under concurrent writers and a crash
//!   mid-write, chained and authenticated so edits, insertions, reorderings and deletions show.
//! - [`secret`]: the [`InstallationKey`](secret::InstallationKey) that authenticates the score
//!   log, created once per home.
//! - [`task_secret`]: per-task instance secrets in the cache, for tasks whose hidden data must
//!   not be reproducible from the source; [`fsutil::build_once`] builds cached products once.
//! - [`calibration`]: start/reference raw scores keyed by a [`DeviceFingerprint`](calibration::DeviceFingerprint),
//!   and the normalization `norm = (raw - start) / (ref - start)`.
//! - [`summary`]: the attempt summary that `rdbench finish` writes and `rdbench aggregate` reads.
//! - [`untrusted_tree`]: reading and writing in a folder another user controls, never through
//!   a link (the operator's client in the agent's folder).
//! - [`error`]: the error kinds, each mapped to one CLI exit code.

pub mod artifact;
pub mod attempt;
pub mod calibration;
pub mod conformance;
pub mod error;
pub mod fsutil;
pub mod home;
pub mod operator;
pub mod outcome;
pub mod rng;
pub mod score_log;
pub mod secret;
pub mod summary;
pub mod task;
pub mod task_secret;
pub mod template;
pub mod tree;
pub mod untrusted_tree;

pub use error::{Error, ExitCode, Result};
