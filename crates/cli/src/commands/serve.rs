//! `rdbench serve`: the protected scoring service.
//!
//! Run as the scoring identity (root, or a dedicated user), it owns the home (score logs,
//! calibrations, caches, secrets) and refuses to start unless that home is private to it. An
//! agent, as another user, reaches it only through the Unix socket, with `rdbench-client`:
//!
//! - the caller is known by the socket's peer credentials (`SO_PEERCRED`), which it cannot
//!   forge; root and the scoring user are operators, everyone else an agent;
//! - an agent may use only the attempts it started (or that were started for it), may not
//!   lengthen the scoring time limit, and is not served the CPU emulator (which compiles the
//!   submission as host code) unless the operator allowed it;
//! - the service never opens a path in the agent's folder: the client sends the submission's
//!   bytes, read with the agent's own rights, and writes the starting files itself;
//! - calibration, monitoring and the task author's tools are not served at all.
//!
//! One connection carries one command, on its own thread; a panic in it becomes an internal
//! error for that client, never the end of the service.
//!
//! No agent can starve the service or the operator (issue 20):
//!
//! - every message is read within a deadline ([`Deadline`]): its first byte within 10 s (120 s
//!   for the submission, which the client reads from disk first), the header within 10 s of
//!   that, blobs at 4 MiB/s at least, 10 min at most; a peer trickling bytes is cut at the
//!   deadline, not kept alive by each byte. Replies are sent under the same deadline;
//! - admission ([`super::admission`]): 8 connections per agent uid, 64 for all agents, and an
//!   operator lane of 16 that agents never fill; submission bytes are reserved before they are
//!   read, 1.25 GiB per agent uid within 3 GiB for all agents, 2 GiB apart for operators;
//! - tool runs (a worker process each, under the tool's declared wall and memory limits) queue:
//!   one per attempt, half the cores at once
//!   per machine, a caller waits at most 10 min;
//! - a refusal is one line naming the cap that was hit; at most 32 refusals are answered at
//!   once, and connections beyond those are closed unanswered, so a flood costs no threads.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdbench_attempts::dispatch::require_absolute;
use rdbench_attempts::{Peer, Rights};
use rdbench_client::client::AttemptFolder;
use rdbench_client::proto::{
    Envelope, Reply, ReplyFile, ServiceMessage, SubmittedFile, SubmittedFiles, PROTOCOL_VERSION,
};
use rdbench_client::wire::{Connection, Deadline, Limits, WireError};
use rdbench_core::attempt::{sweep_stale, Attempt};
use rdbench_core::fsutil::{effective_uid, ensure_private_dir};
use rdbench_core::home::Home;
use rdbench_core::summary::AttemptSummary;
use rdbench_core::task::TaskInfo;
use rdbench_core::{Error, Result};

use super::admission::{Admission, Busy, Caps, Slot};
use super::attempt::Kit;
use super::{Caller, Context};
use crate::output::Out;

/// Refused connections answered at once (each reads the request, briefly, to answer it in the
/// protocol); more are closed unanswered.
const MAX_REFUSING: usize = 32;
/// How long a refused connection's request may take: it is only read to be answered.
const REFUSAL_DEADLINE: Deadline = Deadline {
    first_byte: Duration::from_secs(2),
    header: Duration::from_secs(2),
    ..Deadline::REQUEST
};

/// What every connection's thread needs.
#[derive(Debug)]
struct Service {
    home: Home,
    uid: u32,
    allow_emulator_for_agents: bool,
    /// Connections, receive budgets and the tool queue, per caller.
    admission: Arc<Admission>,
}

pub fn serve(ctx: &Context, socket: &Path, allow_emulator_for_agents: bool) -> Result<i32> {
    // By construction, not by politeness: a home another user can enter is refused.
    ensure_private_dir(ctx.home.root())?;
    let swept = sweep_stale(&ctx.home);
    let listener = bind(socket)?;
    let service = Arc::new(Service {
        home: ctx.home.clone(),
        uid: effective_uid(),
        allow_emulator_for_agents,
        admission: Arc::new(Admission::new(Caps::for_this_machine())),
    });
    warn!(
        ctx,
        "rdbench serve: listening on {} as uid {}; the home is private to this user{}{}",
        socket.display(),
        service.uid,
        if swept > 0 {
            format!("; removed {swept} files left by killed runs")
        } else {
            String::new()
        },
        if allow_emulator_for_agents {
            "; WARNING: agents may run the emulator, which executes their code as this user"
        } else {
            ""
        }
    );
    let refusing = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let Ok(uid) = peer_uid(&stream) else {
            continue;
        };
        let caller = if uid == 0 || uid == service.uid {
            Caller::Operator { uid }
        } else {
            Caller::Agent { uid }
        };
        // Admitted here, before a thread exists: a refused flood never holds a slot.
        let admitted = service.admission.connect(caller);
        if let Err(busy) = &admitted {
            tracing::info!(uid, %busy, "refused");
            if refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
                refusing.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
        }
        let (service, refusing) = (service.clone(), refusing.clone());
        let spawned = std::thread::Builder::new()
            .name("rdbench-serve".into())
            .spawn(move || {
                let refused = admitted.is_err();
                handle(&service, stream, caller, admitted);
                if refused {
                    refusing.fetch_sub(1, Ordering::SeqCst);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a connection thread: {e}");
        }
    }
    Ok(0)
}

/// Binds the socket, replacing a stale one (no listener behind it), never a live service's
/// socket or a file that is not a socket.
fn bind(socket: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            // Made 0755 whatever the process's umask (rdbench's is 077): agents must reach
            // the socket in it.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| Error::io(parent, e))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(parent, e))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        if !meta.file_type().is_socket() {
            return Err(Error::Usage(format!(
                "{}: exists and is not a socket",
                socket.display()
            )));
        }
        if UnixStream::connect(socket).is_ok() {
            return Err(Error::Usage(format!(
                "{}: another `rdbench serve` is listening there",
                socket.display()
            )));
        }
        std::fs::remove_file(socket).map_err(|e| Error::io(socket, e))?;
    }
    let listener = UnixListener::bind(socket).map_err(|e| Error::io(socket, e))?;
    // Any local user may connect; who they are is the peer credential, not the file mode.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| Error::io(socket, e))?;
    Ok(listener)
}

/// The uid of the process at the other end, from the kernel.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes into it.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The service's side of the shared connection type: requests within the request limits,
/// write errors as this crate's errors.
trait ServiceSide {
    fn receive_request<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> std::result::Result<(T, Vec<Vec<u8>>), WireError>;
    fn reply(&mut self, message: &ServiceMessage, blobs: &[&[u8]]) -> Result<()>;
}

impl ServiceSide for Connection {
    fn receive_request<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> std::result::Result<(T, Vec<Vec<u8>>), WireError> {
        // A first message carries no blobs: only a submission does, reserved first.
        self.receive(Limits::ENVELOPE)
    }
    fn reply(&mut self, message: &ServiceMessage, blobs: &[&[u8]]) -> Result<()> {
        self.send(message, blobs)
            .map_err(|e| Error::Environment(format!("writing to the client: {e}")))
    }
}

/// Serves one connection: `admitted` holds its place, or says why it has none (the caller is
/// told so in its reply).
fn handle(service: &Service, stream: UnixStream, caller: Caller, admitted: Result<Slot, Busy>) {
    let uid = caller.uid();
    let Ok(mut conn) = Connection::new(stream) else {
        return;
    };
    // A peer that stops sending or reading holds its thread until a message's deadline only.
    conn.set_deadline(Some(if admitted.is_ok() {
        Deadline::REQUEST
    } else {
        REFUSAL_DEADLINE
    }));
    let ctx = Context {
        home: service.home.clone(),
        json: false,
        out: Out::capture(),
        caller,
    };
    let envelope = match conn.receive_request::<Envelope>() {
        Ok((envelope, _)) => envelope,
        Err(e) => {
            // A refused caller hears why, whatever it sent.
            let e = match &admitted {
                Err(busy) => (*busy).into(),
                Ok(_) => Error::Usage(e.to_string()),
            };
            let _ = conn.reply(&error_reply(&ctx, &e), &[]);
            return;
        }
    };
    let ctx = Context {
        json: envelope.json,
        ..ctx
    };
    // The next message is `score`'s submission, which the client reads from disk first.
    conn.set_deadline(Some(Deadline::SUBMISSION));
    let op = envelope.request.name();
    let mut peer = Client {
        service,
        conn: &mut conn,
        caller,
        held: 0,
        files: Vec::new(),
        blobs: Vec::new(),
        summary: None,
    };
    let result = if let Err(busy) = admitted {
        Err(busy.into())
    } else if envelope.protocol != PROTOCOL_VERSION {
        Err(Error::Usage(format!(
            "rdbench-client speaks protocol {}, this service {PROTOCOL_VERSION}; use the client installed with it",
            envelope.protocol
        )))
    } else {
        let kit = Kit::new(&ctx);
        let rights = Rights::of(caller, service.allow_emulator_for_agents);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rdbench_attempts::dispatch(&ctx.attempts(&kit, rights), &mut peer, envelope.request)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "the service failed serving `{op}`"
            )))
        })
    };
    // The submission's receive budget goes back here, however the command ended.
    let (files, blobs, summary) = peer.finish();
    let (message, blobs) = match result {
        Ok(code) => {
            let (stdout, stderr) = ctx.out.take();
            (
                ServiceMessage::Reply(Reply {
                    code,
                    stdout,
                    stderr,
                    files,
                    summary,
                }),
                blobs,
            )
        }
        Err(e) => (error_reply(&ctx, &e), Vec::new()),
    };
    if let ServiceMessage::Reply(r) = &message {
        tracing::info!(uid, op, code = r.code, "served");
    }
    let refs: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
    let _ = conn.reply(&message, &refs);
}

/// An error as `rdbench` itself reports it: a line on stderr, and JSON on stdout with --json.
fn error_reply(ctx: &Context, e: &Error) -> ServiceMessage {
    let (stdout, mut stderr) = ctx.out.take();
    let code = e.exit_code() as i32;
    stderr.push_str(&format!(
        "rdbench: {}\n",
        rdbench_core::template::printable(&e.to_string())
    ));
    let stdout = if ctx.json {
        format!(
            "{}\n",
            serde_json::json!({ "error": e.to_string(), "exit_code": code })
        )
    } else {
        stdout
    };
    ServiceMessage::Reply(Reply {
        code,
        stdout,
        stderr,
        ..Reply::default()
    })
}

/// The service's side of a command's files: its client, which reads and writes them with
/// the agent's rights. The service never opens a path in the agent's folder.
struct Client<'a> {
    service: &'a Service,
    conn: &'a mut Connection,
    caller: Caller,
    /// Bytes of the caller's receive budget this command holds (given back by [`Self::finish`]
    /// or on drop).
    held: u64,
    /// `start`: the starting files for the client to write, and their contents.
    files: Vec<ReplyFile>,
    blobs: Vec<Vec<u8>>,
    /// `finish`: the summary, for the client's `--out`.
    summary: Option<serde_json::Value>,
}

impl Client<'_> {
    /// What the reply carries besides the printed output; the receive budget goes back.
    fn finish(mut self) -> (Vec<ReplyFile>, Vec<Vec<u8>>, Option<serde_json::Value>) {
        (
            std::mem::take(&mut self.files),
            std::mem::take(&mut self.blobs),
            self.summary.take(),
        )
    }
}

impl Drop for Client<'_> {
    fn drop(&mut self) {
        self.service.admission.release(self.caller, self.held);
    }
}

impl Peer for Client<'_> {
    /// The client made the folder (as its owner) and sent its absolute, canonical path; it
    /// removes it again if the start fails.
    fn attempt_folder(&mut self, dir: &Path) -> Result<AttemptFolder> {
        require_absolute(dir)?;
        Ok(AttemptFolder {
            path: dir.into(),
            created: false,
        })
    }

    fn starting_files(&mut self, _folder: &Path, staged: &Path, files: &[String]) -> Result<()> {
        for rel in files {
            let path = staged.join(rel);
            self.blobs
                .push(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
            self.files.push(ReplyFile { path: rel.clone() });
        }
        Ok(())
    }

    /// Asks the client for the files, and receives them within the task's limits and the
    /// caller's receive budget.
    fn submission(
        &mut self,
        info: &TaskInfo,
        dir: &Path,
    ) -> Result<(Vec<SubmittedFile>, Vec<Vec<u8>>)> {
        self.conn.reply(
            &ServiceMessage::NeedFiles {
                dir: dir.into(),
                files: info.submission_files.clone(),
            },
            &[],
        )?;
        // No blob may be larger than the task's largest file, nor all of them together
        // than its files' limits together: checked on each announced length, before a
        // byte of it is read (the snapshot then checks each file against its own limit).
        let largest = info.submission_files.iter().map(|f| f.max_bytes).max();
        let all: u64 = info.submission_files.iter().map(|f| f.max_bytes).sum();
        let mut announced = 0u64;
        let mut refused = None;
        let (admission, caller, held) = (&self.service.admission, self.caller, &mut self.held);
        // A tree is sent as one blob per file: as many as its cap allows.
        let limits = Limits {
            max_blobs: info
                .submission_files
                .iter()
                .map(|f| f.max_files() as u32)
                .sum::<u32>()
                .max(Limits::REQUEST.max_blobs),
            ..Limits::REQUEST
        };
        let received = self
            .conn
            .receive_reserving::<SubmittedFiles>(limits, &mut |n| {
                announced = announced.saturating_add(n);
                if largest.is_none_or(|l| n > l) || announced > all {
                    refused = Some(Error::Usage(format!(
                        "the client announced {announced} bytes of submission, more than {}'s \
                         files may have ({all} bytes, at most {} in one)",
                        info.name,
                        largest.unwrap_or(0)
                    )));
                    return false;
                }
                // The caller's receive budget (per agent uid, all agents, or the operators');
                // held until the command ends.
                match admission.reserve(caller, n) {
                    Ok(()) => {
                        *held += n;
                        true
                    }
                    Err(busy) => {
                        refused = Some(busy.into());
                        false
                    }
                }
            });
        // A refused reservation says which limit was hit, not how the read ended.
        if let Some(e) = refused {
            return Err(e);
        }
        let (files, blobs) =
            received.map_err(|e| Error::Usage(format!("receiving the submission: {e}")))?;
        Ok((files.files, blobs))
    }

    /// Tools use the machine's cores for up to their wall limit, so they queue (one per
    /// attempt, a few per machine); a wait past the bound is a busy refusal.
    fn tool_turn(
        &mut self,
        attempt: &Attempt,
        tool: &mut dyn FnMut() -> Result<i32>,
    ) -> Result<i32> {
        let _turn = self
            .service
            .admission
            .tool_turn(self.caller, &attempt.private_dir)?;
        tool()
    }

    /// The client writes `--out` (the flag never reaches the service); the reply carries the
    /// summary.
    fn summary(&mut self, _out: Option<&Path>, summary: &AttemptSummary) -> Result<()> {
        self.summary = serde_json::to_value(summary).ok();
        Ok(())
    }
}

/// Refuses to serve from a binary other users can read or run: it holds every reference
/// solution, and an agent that finds it (its path is in the service's world-readable
/// `/proc/PID/cmdline`) would run `install-solution` and submit the reference. A binary under a
/// folder others cannot enter is unreachable whatever its own mode.
pub fn check_own_binary(ctx: &Context, allow_public_binary: bool) -> Result<()> {
    let Some(exposed) = exposed_binary() else {
        return Ok(());
    };
    if allow_public_binary {
        warn!(
            ctx,
            "rdbench serve: WARNING: {exposed}; any user can run this binary's install-solution \
             and read every reference solution (--allow-public-binary)"
        );
        return Ok(());
    }
    Err(Error::Environment(format!(
        "{exposed}: other users could run it and install the reference solutions it holds; \
         install it mode 0750 under a group no agent is in (README, \"Protected scoring\"), \
         or pass --allow-public-binary on a machine with no agent"
    )))
}

/// The running binary and its mode, where every folder above it lets others through and the
/// file itself lets them read or execute it.
fn exposed_binary() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let mode = std::fs::metadata(&exe).ok()?.permissions().mode();
    if mode & 0o005 == 0 {
        return None;
    }
    let reachable = exe
        .ancestors()
        .skip(1)
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    reachable.then(|| format!("{} (mode {:o})", exe.display(), mode & 0o7777))
}
