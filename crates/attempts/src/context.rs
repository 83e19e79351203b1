//! Who runs a command, what that caller may do, and what the binary and the transport supply.
//!
//! - [`Caller`] and [`Rights`]: the protected-mode rules as data, decided in [`Rights::of`]
//!   and nowhere else: agents cannot start or finish attempts, use only their own attempts,
//!   never lengthen the scoring limit and get the emulator only where the operator allowed it;
//!   operators name attempts through the service by id only.
//! - [`Host`]: what the binary supplies (the task registry, calibrations, the scoring worker,
//!   the catalog and the experiment tools).
//! - [`Peer`]: where a command's files come from and go. [`LocalPeer`] is same-user mode's: the
//!   caller's own folders, read and written here; the service's peer asks its client, which
//!   reads and writes them with the agent's rights.

use std::path::Path;

use rdbench_client::client::{make_attempt_folder, read_submission, write_summary, AttemptFolder};
use rdbench_client::proto::SubmittedFile;
use rdbench_core::attempt::Attempt;
use rdbench_core::calibration::{CalibrationEntry, DeviceFingerprint};
use rdbench_core::home::Home;
use rdbench_core::summary::AttemptSummary;
use rdbench_core::task::{ProfileInfo, Task, TaskInfo};
use rdbench_core::untrusted_tree;
use rdbench_core::{Error, Result};

use crate::output::Out;
use crate::score::{RunResult, ScoringRun};

/// Who gives a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// This process's own user, on the command line: the unprotected same-user mode.
    Local,
    /// A client of `rdbench serve` that is not the operator: may use only its own attempts,
    /// never the emulator (unless the operator allowed it), never a longer scoring limit.
    Agent { uid: u32 },
    /// A client of `rdbench serve` running as root or as the scoring user itself.
    Operator { uid: u32 },
}

impl Caller {
    /// The uid that owns what this caller starts.
    pub fn uid(self) -> u32 {
        match self {
            Caller::Local => rdbench_core::fsutil::effective_uid(),
            Caller::Agent { uid } | Caller::Operator { uid } => uid,
        }
    }
}

/// How a caller may name an attempt by its folder (an id is always accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folders {
    /// Resolved here, with this process's rights (same-user mode).
    Resolved,
    /// Only as the absolute, canonical path its client resolved with the agent's rights.
    Canonical,
    /// Never: the folder belongs to the agent, who can rename it and plant a link to another
    /// attempt in its place.
    Refused,
}

/// What `start --owner` does for a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFlag {
    /// The user is looked up and the attempt is theirs.
    LookedUp,
    /// Refused, for this reason.
    Refused(&'static str),
}

/// What a caller may do, decided once from who it is ([`Rights::of`]); the dispatcher only
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    /// Why `start` is refused, if it is.
    pub start: Option<&'static str>,
    /// Why `finish` is refused, if it is.
    pub finish: Option<&'static str>,
    pub owner_flag: OwnerFlag,
    pub folders: Folders,
    /// Only the attempts owned by this uid; another's reads exactly like no attempt at all.
    pub own_attempts_of: Option<u32>,
    /// Why `score --emulate` is refused, if it is.
    pub emulator: Option<&'static str>,
    /// `score --timeout` may shorten the task's scoring limit, never lengthen it.
    pub timeout_at_most_the_tasks: bool,
}

/// `start` by an agent.
pub const AGENT_START: &str = "starting attempts is the platform's: an operator starts yours \
     (`start TASK --dir D --owner USER` as root or the scoring user)";
/// `finish` by an agent.
pub const AGENT_FINISH: &str =
    "finishing an attempt is the platform's: it picks the final score, which an \
     agent of a hidden-score task must not learn";
/// `score --emulate` by an agent the operator did not allow it.
pub const AGENT_EMULATOR: &str =
    "score --emulate is not served to agents: the emulator compiles solution.cu as host code \
     and would run it as the scorer";
/// `start --owner` in same-user mode.
pub const LOCAL_OWNER: &str =
    "--owner is for starting an agent's attempt through the scoring service \
     (`rdbench --socket S start ... --owner USER`); same-user mode protects nothing";

impl Rights {
    /// The rules of the protected mode (see `rdbench serve`), for `caller`;
    /// `emulator_for_agents` is the operator's `--allow-emulator-for-agents`.
    pub fn of(caller: Caller, emulator_for_agents: bool) -> Rights {
        match caller {
            Caller::Local => Rights {
                start: None,
                finish: None,
                owner_flag: OwnerFlag::Refused(LOCAL_OWNER),
                folders: Folders::Resolved,
                own_attempts_of: None,
                emulator: None,
                timeout_at_most_the_tasks: false,
            },
            Caller::Operator { .. } => Rights {
                start: None,
                finish: None,
                owner_flag: OwnerFlag::LookedUp,
                folders: Folders::Refused,
                own_attempts_of: None,
                emulator: None,
                timeout_at_most_the_tasks: false,
            },
            Caller::Agent { uid } => Rights {
                start: Some(AGENT_START),
                finish: Some(AGENT_FINISH),
                // Never reached: an agent's `start` is refused first.
                owner_flag: OwnerFlag::Refused(AGENT_START),
                folders: Folders::Canonical,
                own_attempts_of: Some(uid),
                emulator: (!emulator_for_agents).then_some(AGENT_EMULATOR),
                timeout_at_most_the_tasks: true,
            },
        }
    }
}

/// Refuses with `why` where there is one.
pub(crate) fn refused(why: Option<&'static str>) -> Result<()> {
    why.map_or(Ok(()), |why| Err(Error::Usage(why.into())))
}

/// What the binary supplies: everything that needs the task crates, the GPU crate or the
/// scoring worker.
pub trait Host {
    /// The task named `name`, or a usage error listing the names.
    fn task(&self, name: &str) -> Result<Box<dyn Task>>;
    /// `list`.
    fn list(&self) -> Result<i32>;
    /// `info TASK`.
    fn info(&self, task: &str) -> Result<i32>;
    /// `tool`: one call of the task's experiment tool for `attempt` (in its turn).
    fn tool(&self, attempt: &Attempt, name: &str, args: &[String]) -> Result<i32>;
    /// The device `task`'s `profile` is scored on, and the calibration that normalizes it
    /// there, if any.
    fn calibration(
        &self,
        task: &dyn Task,
        profile: &ProfileInfo,
    ) -> Result<(DeviceFingerprint, Option<CalibrationEntry>)>;
    /// Runs the scoring worker on a prechecked submission (the environment check and the
    /// worker; whatever the submission does comes back as an outcome).
    fn run_scoring(&self, task: &dyn Task, run: ScoringRun) -> Result<RunResult>;
    /// The name of the GPU that GPU runs use, for the device lock: by its PCI bus id where the
    /// driver gives one ([`rdbench_core::calibration::gpu_name`]).
    fn gpu_name(&self) -> String;
}

/// Everything one command needs.
pub struct Ctx<'a> {
    pub home: &'a Home,
    /// Print one JSON document instead of text.
    pub json: bool,
    pub out: &'a Out,
    pub caller: Caller,
    pub rights: Rights,
    pub host: &'a dyn Host,
}

/// Where a command's files come from and go.
pub trait Peer {
    /// `start`: the new attempt's (empty) folder for `dir`, its canonical path, and whether
    /// it was made for this start (and so is removed again, still empty, if the start fails).
    fn attempt_folder(&mut self, dir: &Path) -> Result<AttemptFolder>;
    /// `start`: puts the starting `files` (relative paths under `staged`, the private staging
    /// copy) into the attempt's folder `folder`.
    fn starting_files(&mut self, folder: &Path, staged: &Path, files: &[String]) -> Result<()>;
    /// `score`: the submission's files in the attempt's folder `dir`, read with the agent's
    /// rights (a refusal is sent as its cause); the blobs of the present files, in order.
    fn submission(
        &mut self,
        info: &TaskInfo,
        dir: &Path,
    ) -> Result<(Vec<SubmittedFile>, Vec<Vec<u8>>)>;
    /// `tool`: runs `tool` when it is this attempt's turn.
    fn tool_turn(
        &mut self,
        attempt: &Attempt,
        tool: &mut dyn FnMut() -> Result<i32>,
    ) -> Result<i32>;
    /// `finish`: the attempt's summary, also for `--out` where given.
    fn summary(&mut self, out: Option<&Path>, summary: &AttemptSummary) -> Result<()>;
}

/// Same-user mode's peer: the caller's own folders, read and written by this process.
#[derive(Debug, Default)]
pub struct LocalPeer;

impl Peer for LocalPeer {
    fn attempt_folder(&mut self, dir: &Path) -> Result<AttemptFolder> {
        make_attempt_folder(dir, None).map_err(|e| Error::Usage(e.message))
    }

    fn starting_files(&mut self, folder: &Path, staged: &Path, files: &[String]) -> Result<()> {
        let dir = untrusted_tree::open_dir(folder).map_err(|e| Error::io(folder, e))?;
        for rel in files {
            let from = staged.join(rel);
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
            untrusted_tree::write_new(&dir, rel, &bytes)
                .map_err(|e| Error::io(folder.join(rel), e))?;
        }
        Ok(())
    }

    fn submission(
        &mut self,
        info: &TaskInfo,
        dir: &Path,
    ) -> Result<(Vec<SubmittedFile>, Vec<Vec<u8>>)> {
        Ok(read_submission(dir, &info.submission_files))
    }

    fn tool_turn(
        &mut self,
        _attempt: &Attempt,
        tool: &mut dyn FnMut() -> Result<i32>,
    ) -> Result<i32> {
        tool()
    }

    fn summary(&mut self, out: Option<&Path>, summary: &AttemptSummary) -> Result<()> {
        let Some(out) = out else {
            return Ok(());
        };
        let json =
            serde_json::to_vec_pretty(summary).map_err(|e| Error::Internal(e.to_string()))?;
        write_summary(out, &json).map_err(|e| Error::Usage(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protected-mode rules, as the service's `//!` states them.
    #[test]
    fn the_rules_of_each_caller() {
        let agent = Rights::of(Caller::Agent { uid: 1000 }, false);
        assert_eq!(agent.start, Some(AGENT_START));
        assert_eq!(agent.finish, Some(AGENT_FINISH));
        assert_eq!(agent.own_attempts_of, Some(1000));
        assert_eq!(agent.folders, Folders::Canonical);
        assert_eq!(agent.emulator, Some(AGENT_EMULATOR));
        assert!(agent.timeout_at_most_the_tasks);
        assert_eq!(
            Rights::of(Caller::Agent { uid: 1000 }, true).emulator,
            None,
            "the operator may allow the emulator"
        );

        let operator = Rights::of(Caller::Operator { uid: 0 }, false);
        assert_eq!((operator.start, operator.finish), (None, None));
        assert_eq!(operator.folders, Folders::Refused);
        assert_eq!(operator.owner_flag, OwnerFlag::LookedUp);
        assert_eq!(operator.own_attempts_of, None);
        assert_eq!(operator.emulator, None);

        let local = Rights::of(Caller::Local, false);
        assert_eq!(local.folders, Folders::Resolved);
        assert_eq!(local.owner_flag, OwnerFlag::Refused(LOCAL_OWNER));
        assert!(!local.timeout_at_most_the_tasks);
    }
}
