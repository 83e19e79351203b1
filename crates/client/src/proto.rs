//! The messages of the scoring service's protocol (framed by [`crate::wire`]).
//!
//! One connection carries one command. `score` takes two turns: the service, having found the
//! caller's attempt, names the submission files it wants ([`ServiceMessage::NeedFiles`]); the
//! client reads them *with the agent's own rights* and sends their bytes ([`SubmittedFiles`]).
//! So the service never opens a path in the agent's folder, and nothing the agent cannot read
//! itself can reach the scorer through a link, a hard link or a race.

use std::path::PathBuf;

use rdbench_core::outcome::InvalidKind;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; a mismatch is refused with a message naming both.
pub const PROTOCOL_VERSION: u32 = 2;

/// What a client sends first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub protocol: u32,
    /// Format the reply as one JSON document.
    pub json: bool,
    pub request: Request,
}

/// The commands an agent may give the service. `calibrate`, `serve` and the task author's
/// tools are not among them: they run only as the scoring identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    List,
    Info {
        task: String,
    },
    /// `dir` is the canonical path of a new, empty folder the client made with its own rights.
    Start {
        task: String,
        dir: PathBuf,
        profile: String,
        time_limit: Option<f64>,
        agent: String,
    },
    /// `dir` is the canonical path of the attempt's folder.
    Score {
        dir: PathBuf,
        allow_uncalibrated: bool,
        timeout: Option<u64>,
        emulate: bool,
    },
    Log {
        dir: PathBuf,
    },
    /// A task's experiment tool for the attempt in `dir` ([`crate::AttemptCommand::Tool`]).
    Tool {
        dir: PathBuf,
        name: String,
        args: Vec<String>,
    },
    Finish {
        dir: PathBuf,
    },
}

/// What the service sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceMessage {
    /// `score`, turn two: send these files of the attempt's folder, each at most `max_file`
    /// bytes.
    NeedFiles { names: Vec<String>, max_file: u64 },
    /// The end of the command.
    Reply(Reply),
}

/// The outcome of one command: what the local command would have printed, and its exit code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// `start`: the starting files, in the order of the message's blobs, for the client to
    /// write into the attempt's folder.
    #[serde(default)]
    pub files: Vec<ReplyFile>,
    /// `finish`: the attempt summary, for `--out`.
    #[serde(default)]
    pub summary: Option<serde_json::Value>,
}

/// One file of a task's starting material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyFile {
    /// Relative to the attempt's folder, `/`-separated, never `..`.
    pub path: String,
}

/// `score`, turn two: the files the service asked for, in its order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedFiles {
    pub files: Vec<SubmittedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedFile {
    pub name: String,
    pub state: FileState,
}

/// What the client found when it read one submission file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    /// Its bytes are the next blob of the message.
    Present,
    Missing,
    /// A link, FIFO, device or oversized file: logged as an invalid entry naming the file.
    Refused {
        kind: InvalidKind,
        reason: String,
    },
}

/// Whether `path` is a plain relative path (no root, no `..`, no empty parts).
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths() {
        for ok in ["a", "a/b.cu", "INSTRUCTIONS.md"] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a"] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }
}
