//! The commands on the agent's side: validate locally, send, print what the service says.
//!
//! Everything that touches the agent's folder happens here, with the agent's rights: `start`
//! makes the folder and writes the starting files the service sends (as the owner, when root
//! starts an attempt for a user); `score` reads the submission files (bounded by each file's
//! limit, no links anywhere on the path, no FIFOs) and sends their bytes; `finish --out`
//! replaces its file without following a link. See [`rdbench_core::untrusted_tree`].

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rdbench_core::fsutil::UntrustedReadError;
use rdbench_core::task::SubmissionFile;
use rdbench_core::template::printable;
use rdbench_core::untrusted_tree::{self, UserIds};

use crate::command::AttemptCommand;
use crate::proto::{
    is_plain_relative, Envelope, FileState, Refusal, Reply, Request, ServiceMessage, SubmittedFile,
    SubmittedFiles, PROTOCOL_VERSION,
};
use crate::wire::{Connection, Limits, WireError};

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
            // The service escapes its text already; a client prints nothing raw either way.
            print!("{}", printable(&reply.stdout));
            eprint!("{}", printable(&reply.stderr));
            reply.code
        }
        Err(e) => {
            eprintln!("rdbench: {}", printable(&e.to_string()));
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
    let mut start_folder = None;
    if let AttemptCommand::Start { dir, owner, .. } = command {
        let owner_ids = owner
            .as_deref()
            .map(|name| {
                untrusted_tree::lookup_user(name)
                    .map_err(|e| ClientError::usage(format!("--owner: {e}")))
            })
            .transpose()?;
        start_folder = Some((make_attempt_folder(dir, owner_ids)?, owner_ids));
    }
    let request = command.resolved(
        canonical_attempt_folder,
        start_folder.as_ref().map(|(folder, _)| folder.path.clone()),
    )?;
    let exchanged = exchange(socket, json, &request);
    match (command, &start_folder, exchanged) {
        (AttemptCommand::Start { .. }, Some((folder, owner)), Ok((reply, blobs)))
            if reply.code == 0 =>
        {
            write_starting_files(&folder.path, *owner, &reply, blobs)?;
            Ok(reply)
        }
        // A start that did not happen leaves no folder behind (one it made, still empty).
        (AttemptCommand::Start { .. }, Some((folder, owner)), result) => {
            if folder.created {
                let _ = as_writer(*owner, || {
                    untrusted_tree::remove_empty_dir(&folder.path)
                        .map(|_| String::new())
                        .map_err(|e| e.to_string())
                });
            }
            result.map(|(reply, _)| reply)
        }
        (AttemptCommand::Finish { out: Some(out), .. }, _, Ok((reply, _))) => {
            if let Some(summary) = &reply.summary {
                let text = serde_json::to_vec_pretty(summary)
                    .map_err(|e| ClientError::environment(e.to_string()))?;
                write_summary(out, &text)?;
            }
            Ok(reply)
        }
        (_, _, result) => result.map(|(reply, _)| reply),
    }
}

/// One command's exchange with the service: the request, the submission's files when the
/// service asks for them, the reply and its blobs.
fn exchange(
    socket: &Path,
    json: bool,
    request: &Request,
) -> Result<(Reply, Vec<Vec<u8>>), ClientError> {
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
    loop {
        let (message, blobs) = conn.receive(Limits::REPLY).map_err(|e| {
            ClientError::environment(format!("reading the scoring service's reply: {e}"))
        })?;
        match message {
            ServiceMessage::Reply(reply) => return Ok((reply, blobs)),
            ServiceMessage::NeedFiles { dir, files } => {
                if !matches!(request, Request::Score { .. }) {
                    return Err(ClientError::environment(
                        "the scoring service asked for files outside `score`",
                    ));
                }
                let (files, bytes) = read_submission(&dir, &files);
                let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
                conn.send(&SubmittedFiles { files }, &refs).map_err(sent)?;
            }
        }
    }
}

/// An attempt's folder named on the command line, resolved (with the caller's rights) to its
/// canonical path.
fn canonical_attempt_folder(dir: &Path) -> Result<PathBuf, ClientError> {
    dir.canonicalize()
        .map_err(|_| ClientError::usage(format!("{}: no such attempt folder", dir.display())))
}

/// `path` made absolute against the current folder (a physical path), without `.`, and
/// refused with `..`: with no link on it either, it is the canonical path.
fn absolute(path: &Path) -> Result<PathBuf, ClientError> {
    let abs = std::path::absolute(path)
        .map_err(|e| ClientError::usage(format!("{}: {e}", path.display())))?;
    if abs
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ClientError::usage(format!(
            "{}: `..` in the path; give the folder's real path",
            path.display()
        )));
    }
    Ok(abs.components().collect())
}

/// Runs `work` as `owner` where this process is root writing for another user, else as this
/// process: what the operator's client writes into an agent's tree, it writes with the
/// agent's rights.
fn as_writer(
    owner: Option<UserIds>,
    work: impl FnOnce() -> Result<String, String>,
) -> Result<String, ClientError> {
    match owner {
        Some(user) if rdbench_core::fsutil::effective_uid() == 0 && user.uid != 0 => {
            untrusted_tree::as_user(user, work)
        }
        _ => work(),
    }
    .map_err(ClientError::usage)
}

/// A new attempt's folder: its canonical path, and whether this `start` made it (and so
/// removes it again, still empty, if the start fails).
#[derive(Debug, Clone)]
pub struct AttemptFolder {
    pub path: PathBuf,
    pub created: bool,
}

/// Makes (or checks) the new attempt's empty folder, as `owner` where given (else as the
/// caller), never through a link, and returns its canonical path; shared by the client and
/// `rdbench`'s same-user mode.
pub fn make_attempt_folder(
    dir: &Path,
    owner: Option<UserIds>,
) -> Result<AttemptFolder, ClientError> {
    let abs = absolute(dir)?;
    let shown = dir.display().to_string();
    // Looked up first, never through a link: a failed start removes only a folder that was not
    // there before, and only while it is empty.
    let existed = untrusted_tree::open_dir(&abs).is_ok();
    as_writer(owner, || {
        let fd = untrusted_tree::create_dir_all(&abs).map_err(|e| format!("{shown}: {e}"))?;
        match untrusted_tree::is_empty(&fd) {
            Ok(true) => Ok(String::new()),
            Ok(false) => Err(format!(
                "{shown}: not empty; an attempt starts in a new or empty folder"
            )),
            Err(e) => Err(format!("{shown}: {e}")),
        }
    })?;
    Ok(AttemptFolder {
        path: abs,
        created: !existed,
    })
}

/// Writes the starting files into the attempt's folder: as its owner where given, each file
/// created exclusively, never through a link (a name planted meanwhile makes `start` fail
/// rather than write elsewhere).
pub fn write_starting_files(
    folder: &Path,
    owner: Option<UserIds>,
    reply: &Reply,
    blobs: Vec<Vec<u8>>,
) -> Result<(), ClientError> {
    if blobs.len() != reply.files.len() {
        return Err(ClientError::environment(format!(
            "the scoring service sent {} starting files but {} contents",
            reply.files.len(),
            blobs.len()
        )));
    }
    if let Some(bad) = reply.files.iter().find(|f| !is_plain_relative(&f.path)) {
        return Err(ClientError::environment(format!(
            "the scoring service sent a starting file with a path outside the folder: {:?}",
            bad.path
        )));
    }
    as_writer(owner, || {
        let dir =
            untrusted_tree::open_dir(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        for (file, bytes) in reply.files.iter().zip(&blobs) {
            untrusted_tree::write_new(&dir, &file.path, bytes)
                .map_err(|e| format!("{}/{}: {e}", folder.display(), file.path))?;
        }
        Ok(String::new())
    })?;
    Ok(())
}

/// Writes `finish --out`: replaced atomically, never through a link on the path.
pub fn write_summary(out: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let abs = absolute(out)?;
    untrusted_tree::replace_file(&abs, bytes)
        .map_err(|e| ClientError::usage(format!("--out {}: {e}", out.display())))
}

/// Reads the submission files the service asked for from the attempt's folder `dir`, bounded
/// by each file's limit and never through a link (the folder is walked from `/` without
/// following one). A refusal is sent as its cause, for the service to log.
pub fn read_submission(dir: &Path, files: &[SubmissionFile]) -> (Vec<SubmittedFile>, Vec<Vec<u8>>) {
    let folder = untrusted_tree::open_dir(dir);
    let mut submitted = Vec::new();
    let mut blobs = Vec::new();
    for file in files {
        if let (Ok(_), Some(limits)) = (&folder, file.tree) {
            read_tree_into(dir, &file.name, limits, &mut submitted, &mut blobs);
            continue;
        }
        let state = match &folder {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileState::Missing,
            Err(_) => FileState::Refused {
                cause: Refusal::FolderNotReachable,
            },
            Ok(_) if !is_plain_relative(&file.name) || file.name.contains('/') => {
                FileState::Refused {
                    cause: Refusal::Unreadable,
                }
            }
            Ok(fd) => match untrusted_tree::read_file(fd, &file.name, file.max_bytes) {
                Ok(bytes) => {
                    blobs.push(bytes);
                    FileState::Present
                }
                Err(UntrustedReadError::NotFound) => FileState::Missing,
                Err(e) => FileState::Refused {
                    cause: Refusal::of(&e),
                },
            },
        };
        submitted.push(SubmittedFile {
            name: file.name.clone(),
            state,
            executable: false,
        });
    }
    (submitted, blobs)
}

/// A tree submission as one entry per file (`name/path`), or one refusal naming where the
/// read stopped. An empty or absent folder is missing.
fn read_tree_into(
    dir: &Path,
    tree: &str,
    limits: rdbench_core::tree::TreeLimits,
    submitted: &mut Vec<SubmittedFile>,
    blobs: &mut Vec<Vec<u8>>,
) {
    let state = match rdbench_core::tree::read_tree(&dir.join(tree), &limits) {
        Ok(files) if !files.is_empty() => {
            for f in files {
                submitted.push(SubmittedFile {
                    name: format!("{tree}/{}", f.path),
                    state: FileState::Present,
                    executable: f.executable,
                });
                blobs.push(f.bytes);
            }
            return;
        }
        Ok(_) | Err(rdbench_core::tree::TreeError::Missing(_)) => {
            (tree.to_string(), FileState::Missing)
        }
        Err(e) => {
            let (path, cause) = Refusal::of_tree(&e);
            let name = match path.as_deref() {
                Some(".") | None => tree.to_string(),
                Some(p) => format!("{tree}/{p}"),
            };
            (name, FileState::Refused { cause })
        }
    };
    submitted.push(SubmittedFile {
        name: state.0,
        state: state.1,
        executable: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdbench_core::tree::TreeLimits;

    const LIMITS: TreeLimits = TreeLimits {
        max_files: 8,
        max_bytes: 1 << 10,
        max_depth: 2,
    };

    /// A tree is read as one entry per file with its mode, and a link inside it is one refusal
    /// naming the link's path; an empty or absent folder is missing.
    #[test]
    fn a_tree_is_sent_file_by_file_and_a_link_in_it_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let tree = [SubmissionFile::tree("solution", LIMITS)];
        let sol = d.path().join("solution");
        std::fs::create_dir_all(sol.join("lib")).unwrap();
        std::fs::write(sol.join("run.sh"), "echo hi\n").unwrap();
        std::fs::set_permissions(sol.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(sol.join("lib/a.py"), "x = 1\n").unwrap();
        let (files, blobs) = read_submission(d.path(), &tree);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["solution/lib/a.py", "solution/run.sh"]);
        assert!(files[1].executable && !files[0].executable);
        assert_eq!(blobs, [b"x = 1\n".to_vec(), b"echo hi\n".to_vec()]);

        std::os::unix::fs::symlink("/etc/shadow", sol.join("lib/secret")).unwrap();
        let (files, blobs) = read_submission(d.path(), &tree);
        assert!(blobs.is_empty());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "solution/lib/secret");
        assert!(matches!(
            files[0].state,
            FileState::Refused {
                cause: Refusal::NotPlain {
                    what: rdbench_core::fsutil::NotRegular::SymbolicLink,
                }
            }
        ));

        for dir in [tempfile::tempdir().unwrap(), {
            let e = tempfile::tempdir().unwrap();
            std::fs::create_dir(e.path().join("solution")).unwrap();
            e
        }] {
            let (files, _) = read_submission(dir.path(), &tree);
            assert!(matches!(
                files[..],
                [SubmittedFile {
                    state: FileState::Missing,
                    ..
                }]
            ));
        }
    }
}
