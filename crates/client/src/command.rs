//! The attempt commands: one type for `rdbench`'s flags, `rdbench-client`'s flags and the
//! service's protocol.
//!
//! [`AttemptCommand`] is a clap subcommand and a serde message at once: what a user types is
//! what the client sends ([`crate::proto::Envelope`]) and what the service (or `rdbench`'s
//! same-user mode) dispatches. Before sending, the client puts into it what only it can know
//! ([`AttemptCommand::resolved`]): a folder naming an attempt becomes the canonical path it
//! resolved with the agent's rights, and `start`'s folder the one it made. `finish --out` never
//! travels: the client writes that file itself.
//!
//! Adding a command: a variant here (with its arms in [`AttemptCommand::name`] and, where it
//! names an attempt, in the attempt accessor) and its arm in the dispatcher of
//! `rdbench-attempts`.

use std::path::{Path, PathBuf};

use clap::builder::TypedValueParser;
use clap::Subcommand;
use rdbench_core::attempt::AttemptRef;
use rdbench_core::score_log::ScoreKey;
use serde::{Deserialize, Serialize};

/// The profile every command that takes `--profile` uses when none is named: a constant, so a
/// command means the same on every machine, and `tiny`, the size that every task has, that
/// runs in minutes and that the self-test cycle and `check-task` already use. A command given
/// an attempt takes no `--profile`: it uses the attempt's own.
pub const DEFAULT_PROFILE: &str = "tiny";

/// `--profile`'s help, the same on every command that takes it.
pub const PROFILE_HELP: &str = "The task's profile (its size; `info TASK` lists them). \
     Every command defaults to tiny; a command given an attempt uses the attempt's profile";

/// An attempt named on the command line: an id as it is (`att-...`), anything else a folder.
fn attempt_arg() -> impl TypedValueParser<Value = AttemptRef> {
    clap::builder::PathBufValueParser::new().map(|path| AttemptRef::parse(&path))
}

/// The commands of an attempt, shared by `rdbench` and `rdbench-client`, and the service's
/// requests (`op` names the command on the wire). `calibrate`, `serve` and the task author's
/// tools are not among them: they run only as the scoring identity. `start` and `finish` are
/// the operator's; an agent scores, reads its log and uses tools on the attempts started for
/// it.
#[derive(Debug, Clone, PartialEq, Subcommand, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AttemptCommand {
    /// List the tasks.
    List,
    /// Describe one task and its calibration on this machine.
    Info { task: String },
    /// Start an attempt: copy the starting solution and instructions into DIR; prints the
    /// attempt's id, which every other command accepts (through the scoring service, the
    /// operator's commands take only the id).
    Start {
        task: String,
        /// The attempt's folder (created; must be empty if it exists; no symbolic link on its
        /// path).
        // On the wire: the absolute path of the new, empty folder the client made (as the
        // owner).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = DEFAULT_PROFILE, help = PROFILE_HELP)]
        profile: String,
        /// Time limit of the attempt, minutes [default: the task's].
        #[arg(long)]
        time_limit: Option<f64>,
        /// Who makes the attempt (recorded in the summary; at most 128 printable characters).
        #[arg(long, default_value = "unknown")]
        agent: String,
        /// The Unix user the attempt is for (the operator starting an agent's attempt through
        /// the scoring service): the folder and its files are made as that user, and only that
        /// user's client may score it.
        #[arg(long)]
        owner: Option<String>,
        /// Start even though this installation cannot score the profile (no GPU, no sweep, no
        /// calibration): for the project's own tests and the CPU emulator. Its entries are
        /// then refused, emulated or raw, and `finish` gives no final score.
        #[arg(long)]
        #[serde(default)]
        allow_unscorable: bool,
    },
    /// Score the submission of an attempt and append the result to its score log.
    Score {
        /// The attempt: the id `start` printed (att-...), or its folder.
        #[arg(value_name = "ATTEMPT", value_parser = attempt_arg())]
        attempt: AttemptRef,
        /// Score even without a calibration for this device (raw score only).
        #[arg(long)]
        allow_uncalibrated: bool,
        /// Override the task's scoring time limit, seconds (at least 1; through the service,
        /// at most the task's own limit).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: Option<u64>,
        /// Run a kernel task on the CPU emulator: correctness only, never a score. For the
        /// project's own kernels and tests: the .cu is compiled as host code, so the scoring
        /// service refuses it to agents.
        #[arg(long)]
        emulate: bool,
        /// An idempotency key (1 to 128 printable characters): if an entry with this key is
        /// already logged for the attempt, it is reported again (same exit code) and nothing
        /// is scored. A platform sends a fresh key per tool call, so a retried call counts once.
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<ScoreKey>,
    },
    /// Run one of the task's experiment tools for an attempt, through the scorer, which keeps
    /// the tool's record where the agent cannot edit it (scaling-law: `train n_embd=N
    /// max_iters=N [seed=N]`; its instructions give an example that fits the profile).
    Tool {
        /// The attempt: the id `start` printed (att-...), or its folder.
        #[arg(value_name = "ATTEMPT", value_parser = attempt_arg())]
        attempt: AttemptRef,
        /// The tool (the task's instructions name its tools).
        name: String,
        /// The tool's arguments, as KEY=VALUE.
        args: Vec<String>,
    },
    /// Where an attempt stands: time used and left, entries so far, the best score (where
    /// the task shows scores).
    Status {
        /// The attempt: the id `start` printed (att-...), or its folder.
        #[arg(value_name = "ATTEMPT", value_parser = attempt_arg())]
        attempt: AttemptRef,
    },
    /// Show an attempt's score log.
    Log {
        /// The attempt: the id `start` printed (att-...), or its folder.
        #[arg(value_name = "ATTEMPT", value_parser = attempt_arg())]
        attempt: AttemptRef,
    },
    /// End an attempt: pick the final score, seal the log and write the attempt summary (the
    /// operator's command).
    Finish {
        /// The attempt: the id `start` printed (att-...), or (same-user mode only) its folder.
        #[arg(value_name = "ATTEMPT", value_parser = attempt_arg())]
        attempt: AttemptRef,
        /// Also write the summary here (e.g. shared storage for `aggregate`); written without
        /// following a link anywhere on the path.
        // A path of the caller's: the client writes it from the reply, so it never travels.
        #[arg(long)]
        #[serde(skip)]
        out: Option<PathBuf>,
    },
}

impl AttemptCommand {
    /// The command's name, as typed and as the wire's `op`.
    pub fn name(&self) -> &'static str {
        match self {
            AttemptCommand::List => "list",
            AttemptCommand::Info { .. } => "info",
            AttemptCommand::Start { .. } => "start",
            AttemptCommand::Score { .. } => "score",
            AttemptCommand::Tool { .. } => "tool",
            AttemptCommand::Status { .. } => "status",
            AttemptCommand::Log { .. } => "log",
            AttemptCommand::Finish { .. } => "finish",
        }
    }

    /// The attempt the command names, if any (by folder or id).
    fn attempt_mut(&mut self) -> Option<&mut AttemptRef> {
        match self {
            AttemptCommand::Score { attempt, .. }
            | AttemptCommand::Tool { attempt, .. }
            | AttemptCommand::Status { attempt }
            | AttemptCommand::Log { attempt }
            | AttemptCommand::Finish { attempt, .. } => Some(attempt),
            AttemptCommand::List | AttemptCommand::Info { .. } | AttemptCommand::Start { .. } => {
                None
            }
        }
    }

    /// Whether this command names no attempt and changes nothing (`list`, `info`).
    pub fn is_catalog(&self) -> bool {
        matches!(self, AttemptCommand::List | AttemptCommand::Info { .. })
    }

    /// The command as the client sends it: the attempt's folder (if it names one by folder)
    /// replaced by `resolve`'s canonical path, `start`'s folder by `start_dir`, and
    /// `finish --out` left out (the client writes it).
    pub fn resolved<E>(
        &self,
        resolve: impl FnOnce(&Path) -> Result<PathBuf, E>,
        start_dir: Option<PathBuf>,
    ) -> Result<AttemptCommand, E> {
        let mut sent = self.clone();
        if let Some(AttemptRef::Dir(dir)) = sent.attempt_mut() {
            *dir = resolve(dir)?;
        }
        match &mut sent {
            AttemptCommand::Start { dir, .. } => {
                if let Some(made) = start_dir {
                    *dir = made;
                }
            }
            AttemptCommand::Finish { out, .. } => *out = None,
            _ => {}
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AttemptCommand,
    }

    fn parse(args: &[&str]) -> AttemptCommand {
        Cli::try_parse_from(std::iter::once("rdbench").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    /// The wire is the protocol-3 format the service spoke before the command and the
    /// request were one type: the same `op` tags and field names.
    #[test]
    fn the_wire_form_is_protocol_3s() {
        let score = parse(&[
            "score",
            "att-0123456789abcdef0123456789abcdef",
            "--timeout",
            "5",
        ]);
        assert_eq!(
            serde_json::to_value(&score).unwrap(),
            serde_json::json!({
                "op": "score",
                "attempt": { "id": "att-0123456789abcdef0123456789abcdef" },
                "allow_uncalibrated": false,
                "timeout": 5,
                "emulate": false,
            })
        );
        assert_eq!(
            serde_json::to_value(parse(&["list"])).unwrap(),
            serde_json::json!({ "op": "list" })
        );
        let start = parse(&["start", "prefix-sum", "--dir", "/a/b", "--owner", "u"]);
        assert_eq!(
            serde_json::to_value(&start).unwrap(),
            serde_json::json!({
                "op": "start", "task": "prefix-sum", "dir": "/a/b", "profile": "tiny",
                "time_limit": null, "agent": "unknown", "owner": "u",
                "allow_unscorable": false,
            })
        );
    }

    /// `score --key` travels as a string; a key the service would refuse is refused by the
    /// parser already, and a bad one on the wire does not parse.
    #[test]
    fn a_score_key_travels_checked() {
        let score = parse(&["score", "d", "--key", "call_1"]);
        let wire = serde_json::to_value(&score).unwrap();
        assert_eq!(wire["key"], "call_1");
        assert_eq!(
            serde_json::from_value::<AttemptCommand>(wire).unwrap(),
            score
        );
        let too_long = "k".repeat(129);
        assert!(Cli::try_parse_from(["rdbench", "score", "d", "--key", &too_long]).is_err());
        let mut bad = serde_json::to_value(&score).unwrap();
        bad["key"] = serde_json::json!("a\u{7}b");
        assert!(serde_json::from_value::<AttemptCommand>(bad).is_err());
    }

    /// A client of before `--allow-unscorable` sends no such field: it reads as not given.
    #[test]
    fn a_start_without_allow_unscorable_still_parses() {
        let wire = serde_json::json!({
            "op": "start", "task": "t", "dir": "/d", "profile": "full",
            "time_limit": null, "agent": "a", "owner": null,
        });
        let start: AttemptCommand = serde_json::from_value(wire).unwrap();
        assert!(matches!(
            start,
            AttemptCommand::Start { allow_unscorable: false, ref profile, .. } if profile == "full"
        ));
    }

    /// Every `--profile` defaults to the one constant.
    #[test]
    fn start_defaults_to_the_one_default_profile() {
        let start = parse(&["start", "t", "--dir", "d"]);
        assert!(matches!(
            start,
            AttemptCommand::Start { ref profile, .. } if profile == DEFAULT_PROFILE
        ));
    }

    /// `finish --out` is the caller's path: it never goes on the wire, and what comes back
    /// parses to the same command without it.
    #[test]
    fn finish_out_never_travels() {
        let finish = parse(&["finish", "some/folder", "--out", "/tmp/summary.json"]);
        let wire = serde_json::to_value(&finish).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({ "op": "finish", "attempt": { "dir": "some/folder" } })
        );
        let back: AttemptCommand = serde_json::from_value(wire).unwrap();
        let sent = finish
            .resolved(|d| Ok::<_, ()>(d.to_path_buf()), None)
            .unwrap();
        assert_eq!(back, sent);
        assert!(matches!(back, AttemptCommand::Finish { out: None, .. }));
    }

    /// An id is sent as it is; a folder becomes what the resolver made of it; `start`'s
    /// folder becomes the one the client made.
    #[test]
    fn resolving_replaces_folders_only() {
        let id = "att-0123456789abcdef0123456789abcdef";
        let canonical = |_: &Path| Ok::<_, ()>(PathBuf::from("/real/place"));
        let log = parse(&["log", id]).resolved(canonical, None).unwrap();
        assert_eq!(
            log,
            AttemptCommand::Log {
                attempt: AttemptRef::Id(id.into())
            }
        );
        let log = parse(&["log", "here"]).resolved(canonical, None).unwrap();
        assert_eq!(
            log,
            AttemptCommand::Log {
                attempt: AttemptRef::Dir(PathBuf::from("/real/place"))
            }
        );
        let refused = parse(&["status", "here"]).resolved(|_| Err("gone"), None);
        assert_eq!(refused, Err("gone"));
        let start = parse(&["start", "t", "--dir", "rel"])
            .resolved(canonical, Some(PathBuf::from("/abs/rel")))
            .unwrap();
        assert!(matches!(start, AttemptCommand::Start { dir, .. } if dir == Path::new("/abs/rel")));
    }
}
