//! # rdbench-client
//!
//! The agent's side of protected scoring. In a protected deployment the scorer runs as its own
//! user (`rdbench serve`), holding the score logs, calibrations, caches, secrets and reference
//! solutions in a home only that user can read; the agent gets this crate's binary,
//! `rdbench-client`, which contains none of them (it links no task crate), and talks to the
//! service over a Unix socket. The service knows the caller by the socket's peer credentials.
//!
//! The same [`AttemptCommand`]s are `rdbench`'s own `start`, `score`, `tool`, `status`, `log`,
//! `finish`, `list` and `info`: with `--socket` (or `$RDBENCH_SOCKET`) the full binary forwards them here.
//!
//! - [`command`]: the commands, one type for the flags and the wire;
//! - [`wire`]: the framing (JSON header + bounded binary blobs);
//! - [`proto`]: the messages;
//! - [`client`]: what each command does on the agent's side.

pub mod client;
pub mod command;
pub mod proto;
pub mod wire;

pub use client::run;
pub use command::AttemptCommand;
