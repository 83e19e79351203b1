//! The commands on the agent's side: validate locally, send, print what the service says.
//!
//! Everything that touches the agent's folder happens here, with the agent's rights: `start`
//! makes the folder and writes the starting files the service sends; `score` reads the
//! submission files (bounded, no links, no FIFOs) and sends their bytes.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use rdbench_core::fsutil::{read_untrusted, UntrustedReadError};
use rdbench_core::outcome::InvalidKind;

use crate::proto::{
    is_plain_relative, Envelope, FileState, Reply, Request, ServiceMessage, SubmittedFile,
    SubmittedFiles, PROTOCOL_VERSION,
};
use crate::wire::{Connection, Limits, WireError};

/// The commands of an attempt, shared by `rdbench` and `rdbench-client`.
#[derive(Debug, Clone, Subcommand)]
pub enum AttemptCommand {
    /// List the tasks.
    List,
    /// Describe one task and its calibration on this machine.
    Info { task: String },
    /// Start an attempt: copy the starting solution and instructions into DIR.
    Start {
        task: String,
        /// The attempt's folder (created; must be empty if it exists).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "full")]
        profile: String,
        /// Time limit of the attempt, minutes [default: the task's].
        #[arg(long)]
        time_limit: Option<f64>,
        /// Who makes the attempt (recorded in the summary).
        #[arg(long, default_value = "unknown")]
        agent: String,
    },
    /// Score the submission in an attempt's folder and append the result to its score log.
    Score {
        dir: PathBuf,
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
    },
    /// Run one of the task's experiment tools for an attempt, through the scorer, which keeps
    /// the tool's record where the agent cannot edit it (scaling-law: `train n_embd=64
    /// max_iters=500 [seed=0]`).
    Tool {
        dir: PathBuf,
        /// The tool (the task's instructions name its tools).
        name: String,
        /// The tool's arguments, as KEY=VALUE.
        args: Vec<String>,
    },
    /// Show an attempt's score log.
    Log { dir: PathBuf },
    /// End an attempt: pick the final score, seal the log and write the attempt summary.
    Finish {
        dir: PathBuf,
        /// Also write the summary here (e.g. shared storage for `aggregate`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A failure on the client's side, with the exit code it maps to (2 usage, 3 environment).
#[derive(Debug)]
pub struct ClientError {
    pub code: i32,
    pub message: String,
}

impl ClientError {
    fn usage(message: impl Into<String>) -> Self {
        ClientError {
            code: 2,
            message: message.into(),
        }
    }
    fn environment(message: impl Into<String>) -> Self {
        ClientError {
            code: 3,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `command` against the service at `socket`, prints what it says, and returns the exit
/// code (0-3, as `rdbench`'s).
pub fn run(socket: &Path, json: bool, command: &AttemptCommand) -> i32 {
    match call(socket, json, command) {
        Ok(reply) => {
            print!("{}", reply.stdout);
            eprint!("{}", reply.stderr);
            reply.code
        }
        Err(e) => {
            eprintln!("rdbench: {e}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": e.message, "exit_code": e.code })
                );
            }
            e.code
        }
    }
}

/// As [`run`], returning the service's reply instead of printing it.
pub fn call(socket: &Path, json: bool, command: &AttemptCommand) -> Result<Reply, ClientError> {
    let request = match command {
        AttemptCommand::List => Request::List,
        AttemptCommand::Info { task } => Request::Info { task: task.clone() },
        AttemptCommand::Start {
            task,
            dir,
            profile,
            time_limit,
            agent,
        } => Request::Start {
            task: task.clone(),
            dir: make_attempt_folder(dir)?,
            profile: profile.clone(),
            time_limit: *time_limit,
            agent: agent.clone(),
        },
        AttemptCommand::Score {
            dir,
            allow_uncalibrated,
            timeout,
            emulate,
        } => Request::Score {
            dir: attempt_folder(dir)?,
            allow_uncalibrated: *allow_uncalibrated,
            timeout: *timeout,
            emulate: *emulate,
        },
        AttemptCommand::Log { dir } => Request::Log {
            dir: attempt_folder(dir)?,
        },
        AttemptCommand::Tool { dir, name, args } => Request::Tool {
            dir: attempt_folder(dir)?,
            name: name.clone(),
            args: args.clone(),
        },
        AttemptCommand::Finish { dir, .. } => Request::Finish {
            dir: attempt_folder(dir)?,
        },
    };
    let stream = UnixStream::connect(socket).map_err(|e| {
        ClientError::environment(format!(
            "cannot reach the scoring service at {}: {e}; is `rdbench serve` running there?",
            socket.display()
        ))
    })?;
    let mut conn =
        Connection::new(stream).map_err(|e| ClientError::environment(format!("socket: {e}")))?;
    let sent =
        |e: WireError| ClientError::environment(format!("sending to the scoring service: {e}"));
    conn.send(
        &Envelope {
            protocol: PROTOCOL_VERSION,
            json,
            request: request.clone(),
        },
        &[],
    )
    .map_err(sent)?;
    let (reply, blobs) = loop {
        let (message, blobs) = conn.receive(Limits::REPLY).map_err(|e| {
            ClientError::environment(format!("reading the scoring service's reply: {e}"))
        })?;
        match message {
            ServiceMessage::Reply(reply) => break (reply, blobs),
            ServiceMessage::NeedFiles { names, max_file } => {
                let Request::Score { dir, .. } = &request else {
                    return Err(ClientError::environment(
                        "the scoring service asked for files outside `score`",
                    ));
                };
                let (files, bytes) = read_submission(dir, &names, max_file);
                let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
                conn.send(&SubmittedFiles { files }, &refs).map_err(sent)?;
            }
        }
    };
    match command {
        AttemptCommand::Start { dir, .. } if reply.code == 0 => {
            write_starting_files(dir, &reply, blobs)?
        }
        AttemptCommand::Finish { out: Some(out), .. } => {
            if let Some(summary) = &reply.summary {
                let text = serde_json::to_vec_pretty(summary)
                    .map_err(|e| ClientError::environment(e.to_string()))?;
                std::fs::write(out, text)
                    .map_err(|e| ClientError::usage(format!("--out {}: {e}", out.display())))?;
            }
        }
        _ => {}
    }
    Ok(reply)
}

/// The canonical path of an existing attempt folder.
fn attempt_folder(dir: &Path) -> Result<PathBuf, ClientError> {
    dir.canonicalize()
        .map_err(|_| ClientError::usage(format!("{}: no such attempt folder", dir.display())))
}

/// Makes (or checks) the new attempt's empty folder, with the caller's rights, and returns its
/// canonical path; shared by the client and `rdbench`'s same-user mode.
pub fn make_attempt_folder(dir: &Path) -> Result<PathBuf, ClientError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| ClientError::usage(format!("{}: {e}", dir.display())))?;
        if entries.next().is_some() {
            return Err(ClientError::usage(format!(
                "{}: not empty; an attempt starts in a new or empty folder",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ClientError::usage(format!("{}: {e}", dir.display())))?;
    attempt_folder(dir)
}

/// Reads the submission files the service asked for, as the agent, bounded and without
/// following links. A refusal is sent as such, for the service to log as an invalid entry.
pub fn read_submission(
    dir: &Path,
    names: &[String],
    max_file: u64,
) -> (Vec<SubmittedFile>, Vec<Vec<u8>>) {
    let mut files = Vec::new();
    let mut blobs = Vec::new();
    for name in names {
        let path = dir.join(name);
        let state = if !is_plain_relative(name) {
            FileState::Refused {
                kind: InvalidKind::RuleViolation,
                reason: format!("{name}: not a plain file name"),
            }
        } else {
            match read_untrusted(&path, max_file) {
                Ok(bytes) => {
                    blobs.push(bytes);
                    FileState::Present
                }
                Err(UntrustedReadError::NotFound) => FileState::Missing,
                Err(e) => FileState::Refused {
                    kind: refusal_kind(&e),
                    reason: format!("{}: {e}", path.display()),
                },
            }
        };
        files.push(SubmittedFile {
            name: name.clone(),
            state,
        });
    }
    (files, blobs)
}

/// The class of entry a refused submission file becomes.
pub fn refusal_kind(e: &UntrustedReadError) -> InvalidKind {
    match e {
        UntrustedReadError::TooLarge { .. } => InvalidKind::TooLarge,
        UntrustedReadError::NotARegularFile(_) => InvalidKind::RuleViolation,
        UntrustedReadError::NotFound | UntrustedReadError::Io(_) => InvalidKind::MissingFile,
    }
}

fn write_starting_files(dir: &Path, reply: &Reply, blobs: Vec<Vec<u8>>) -> Result<(), ClientError> {
    if blobs.len() != reply.files.len() {
        return Err(ClientError::environment(format!(
            "the scoring service sent {} starting files but {} contents",
            reply.files.len(),
            blobs.len()
        )));
    }
    for (file, bytes) in reply.files.iter().zip(blobs) {
        if !is_plain_relative(&file.path) {
            return Err(ClientError::environment(format!(
                "the scoring service sent a starting file with a path outside the folder: {:?}",
                file.path
            )));
        }
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ClientError::usage(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, bytes)
            .map_err(|e| ClientError::usage(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
