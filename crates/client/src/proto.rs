//! The messages of the scoring service's protocol (framed by [`crate::wire`]).
//!
//! One connection carries one command. `score` takes two turns: the service, having found the
//! caller's attempt, names the submission files it wants ([`ServiceMessage::NeedFiles`]); the
//! client reads them *with the agent's own rights* and sends their bytes ([`SubmittedFiles`]).
//! So the service never opens a path in the agent's folder, and nothing the agent cannot read
//! itself can reach the scorer through a link, a hard link or a race.

use std::path::PathBuf;

use rdbench_core::fsutil::NotRegular;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; a mismatch is refused with a message naming both.
/// 4: tree submissions (a program task's `solution/`: one entry per file, `executable`, the
/// tree refusals); a file that is not plain is one refusal carrying core's `NotRegular`.
/// 3: attempts named by id; `start --owner`; per-file size limits; refusals classified by the
/// service. (Still 3 when the request became the command type itself: its JSON is the same
/// `op` tags and fields, which `command`'s tests pin, so old and new clients interoperate.)
pub const PROTOCOL_VERSION: u32 = 4;

/// What a client sends first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub protocol: u32,
    /// Format the reply as one JSON document.
    pub json: bool,
    pub request: Request,
}

/// The commands of the service are the attempt commands themselves, one type for the flags
/// and the wire ([`crate::command`]).
pub use crate::command::AttemptCommand as Request;

/// What the service sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceMessage {
    /// `score`, turn two: send these files of the attempt's folder `dir` (the folder recorded
    /// at `start`), each at most its `max_bytes`.
    NeedFiles {
        dir: PathBuf,
        files: Vec<rdbench_core::task::SubmissionFile>,
    },
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

/// One file as the client found it. A tree submission (`solution/`) is sent as one entry per
/// file, named by its path under the attempt's folder (`solution/train.py`); a tree refused as
/// a whole (too many files, too deep) as one entry naming the tree or the file where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmittedFile {
    pub name: String,
    pub state: FileState,
    /// Anyone may execute it (a tree's scripts keep the bit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// What the client found when it read one submission file. A refusal carries only its
/// cause: the service classifies it and words the reason, so a client cannot choose the kind
/// of entry (a `crash` or a `kernel_fault` on a CPU task) or its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    /// Its bytes are the next blob of the message.
    Present,
    Missing,
    /// A link, FIFO, device or oversized file: logged as an invalid entry naming the file.
    Refused {
        cause: Refusal,
    },
}

/// Why the client did not send a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// A link, hard link, folder, FIFO, socket or device where a file of its own belongs.
    NotPlain {
        what: NotRegular,
    },
    /// Larger than the file's limit (its size as found).
    TooLarge {
        size: u64,
    },
    /// The attempt's folder could not be opened without following a link.
    FolderNotReachable,
    Unreadable,
    /// A tree with more files than its cap.
    TooManyFiles,
    /// A tree's folder deeper than its cap.
    TooDeep,
    /// A tree's files together larger than its cap.
    TreeTooLarge,
    /// A name in a tree that is not UTF-8, has a control character or is too long.
    BadName,
}

impl Refusal {
    /// The cause of a failed bounded read.
    pub fn of(e: &rdbench_core::fsutil::UntrustedReadError) -> Refusal {
        use rdbench_core::fsutil::UntrustedReadError as E;
        match e {
            E::TooLarge { size, .. } => Refusal::TooLarge { size: *size },
            E::NotARegularFile(what) => Refusal::NotPlain { what: *what },
            E::NotFound | E::Io(_) => Refusal::Unreadable,
        }
    }

    /// The cause of a refused tree, and the path (under the tree) it names.
    pub fn of_tree(e: &rdbench_core::tree::TreeError) -> (Option<String>, Refusal) {
        use rdbench_core::tree::TreeError as T;
        match e {
            T::NotPlain { path, what } => (Some(path.clone()), Refusal::NotPlain { what: *what }),
            T::BadName { path } => (Some(path.clone()), Refusal::BadName),
            T::TooManyFiles { .. } => (None, Refusal::TooManyFiles),
            T::TooLarge { path, .. } => (Some(path.clone()), Refusal::TreeTooLarge),
            T::TooDeep { path, .. } => (Some(path.clone()), Refusal::TooDeep),
            T::Missing(_) => (None, Refusal::Unreadable),
            T::Io { path, .. } => (Some(path.clone()), Refusal::Unreadable),
        }
    }

    /// The entry's kind and reason, worded by the service from the task's own file (its limits)
    /// and `name`, the path the agent knows it by.
    pub fn entry(
        self,
        name: &str,
        file: &rdbench_core::task::SubmissionFile,
    ) -> (rdbench_core::outcome::InvalidKind, String) {
        use rdbench_core::outcome::InvalidKind as K;
        let max_bytes = file.max_bytes;
        let tree = file.tree.unwrap_or(rdbench_core::tree::TreeLimits {
            max_files: 1,
            max_bytes,
            max_depth: 0,
        });
        use rdbench_core::fsutil::NotRegular as N;
        match self {
            Refusal::NotPlain { what: N::HardLink } => (
                K::RuleViolation,
                format!("{name}: a hard link (a file with another name); submit a file of its own"),
            ),
            Refusal::NotPlain { what } => {
                let what = match what {
                    N::Directory => "folder".to_string(),
                    other => other.to_string(),
                };
                (
                    K::RuleViolation,
                    format!(
                        "{name}: a {what}, not a regular file (links, FIFOs and devices are refused)"
                    ),
                )
            }
            Refusal::TooLarge { size } => (
                K::TooLarge,
                format!("{name}: {size} bytes is over its {max_bytes}-byte limit"),
            ),
            Refusal::FolderNotReachable => (
                K::RuleViolation,
                format!(
                    "{name}: the attempt's folder, or a folder on its path, was replaced by a link"
                ),
            ),
            Refusal::Unreadable => (K::MissingFile, format!("{name}: could not be read")),
            Refusal::TooManyFiles => (
                K::TooLarge,
                format!("{name}: more than {} files", tree.max_files),
            ),
            Refusal::TooDeep => (
                K::TooLarge,
                format!("{name}: deeper than {} folders", tree.max_depth),
            ),
            Refusal::TreeTooLarge => (
                K::TooLarge,
                format!(
                    "{name}: the folder's files together are over its {}-byte limit",
                    tree.max_bytes
                ),
            ),
            Refusal::BadName => (
                K::RuleViolation,
                format!(
                    "{name}: a name that is not UTF-8, has a control character or is longer than {} bytes",
                    rdbench_core::tree::MAX_NAME_BYTES
                ),
            ),
        }
    }
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
