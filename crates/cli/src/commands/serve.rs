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
//! - tool runs (which train inside this process) queue: one per attempt, half the cores at once
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

use rdbench_client::proto::{
    Envelope, Reply, ReplyFile, Request, ServiceMessage, SubmittedFiles, PROTOCOL_VERSION,
};
use rdbench_client::wire::{Connection, Deadline, Limits, WireError};
use rdbench_core::attempt::{sweep_stale, Attempt, AttemptRef};
use rdbench_core::fsutil::{effective_uid, ensure_private_dir};
use rdbench_core::home::Home;
use rdbench_core::task::Backend;
use rdbench_core::{Error, Result};

use super::admission::{Admission, Busy, Caps, Slot, ToolTurn};
use super::attempt::{self, Submission};
use super::{catalog, Caller, Context};
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

impl Service {
    /// Waits for a turn to run a tool on `attempt`: tools run inside this process, so they
    /// queue (one per attempt, a few per machine); a wait past the bound is a busy refusal.
    fn tool_turn(&self, caller: Caller, attempt: &Attempt) -> Result<ToolTurn<'_>> {
        Ok(self.admission.tool_turn(caller, &attempt.private_dir)?)
    }
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

/// What a served command leaves besides its printed output.
#[derive(Default)]
struct Served {
    code: i32,
    files: Vec<ReplyFile>,
    blobs: Vec<Vec<u8>>,
    summary: Option<serde_json::Value>,
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
    let op = op_name(&envelope.request);
    let result = if let Err(busy) = admitted {
        Err(busy.into())
    } else if envelope.protocol != PROTOCOL_VERSION {
        Err(Error::Usage(format!(
            "rdbench-client speaks protocol {}, this service {PROTOCOL_VERSION}; use the client installed with it",
            envelope.protocol
        )))
    } else {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch(service, &ctx, &mut conn, envelope.request)
        }))
        .unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "the service failed serving `{op}`"
            )))
        })
    };
    let (message, blobs) = match result {
        Ok(served) => {
            let (stdout, stderr) = ctx.out.take();
            (
                ServiceMessage::Reply(Reply {
                    code: served.code,
                    stdout,
                    stderr,
                    files: served.files,
                    summary: served.summary,
                }),
                served.blobs,
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

fn op_name(request: &Request) -> &'static str {
    match request {
        Request::List => "list",
        Request::Info { .. } => "info",
        Request::Start { .. } => "start",
        Request::Score { .. } => "score",
        Request::Log { .. } => "log",
        Request::Status { .. } => "status",
        Request::Tool { .. } => "tool",
        Request::Finish { .. } => "finish",
    }
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

fn dispatch(
    service: &Service,
    ctx: &Context,
    conn: &mut Connection,
    request: Request,
) -> Result<Served> {
    let code = |code| Served {
        code,
        ..Served::default()
    };
    match request {
        Request::List => catalog::list(ctx).map(code),
        Request::Info { task } => catalog::info(ctx, &task).map(code),
        Request::Start {
            task,
            dir,
            profile,
            time_limit,
            agent,
            owner,
        } => {
            let owner_uid = match (ctx.caller, owner) {
                (Caller::Agent { .. }, _) => {
                    return Err(Error::Usage(
                        "starting attempts is the platform's: an operator starts yours \
                         (`start TASK --dir D --owner USER` as root or the scoring user)"
                            .into(),
                    ))
                }
                (caller, None) => caller.uid(),
                (_, Some(name)) => {
                    rdbench_core::untrusted_tree::lookup_user(&name)
                        .map_err(|e| Error::Usage(format!("--owner: {e}")))?
                        .uid
                }
            };
            require_absolute(&dir)?;
            let staged =
                attempt::stage_attempt(ctx, &task, &dir, &profile, time_limit, &agent, owner_uid)?;
            let mut served = code(0);
            for rel in &staged.files {
                let path = staged.public_dir.join(rel);
                served
                    .blobs
                    .push(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
                served.files.push(ReplyFile { path: rel.clone() });
            }
            let attempt = staged.publish()?;
            attempt::report_started(ctx, &attempt, &dir);
            Ok(served)
        }
        Request::Score {
            attempt,
            allow_uncalibrated,
            timeout,
            emulate,
        } => {
            let attempt = open_own(ctx, &attempt)?;
            let is_agent = matches!(ctx.caller, Caller::Agent { .. });
            if emulate && is_agent && !service.allow_emulator_for_agents {
                return Err(Error::Usage(
                    "score --emulate is not served to agents: the emulator compiles solution.cu as host code \
                     and would run it as the scorer"
                        .into(),
                ));
            }
            let task = crate::registry::find(&attempt.record.task)?;
            let info = task.info();
            // An agent may shorten the scoring limit, never lengthen it.
            let timeout = match (is_agent, timeout) {
                (true, Some(t)) => Some(t.min(info.score_timeout_s)),
                (_, t) => t,
            };
            conn.reply(
                &ServiceMessage::NeedFiles {
                    dir: attempt.record.dir.clone(),
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
            let mut held = 0u64;
            let mut refused = None;
            let received = conn.receive_reserving::<SubmittedFiles>(Limits::REQUEST, &mut |n| {
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
                // `Held` gives it back.
                match service.admission.reserve(ctx.caller, n) {
                    Ok(()) => {
                        held += n;
                        true
                    }
                    Err(busy) => {
                        refused = Some(busy.into());
                        false
                    }
                }
            });
            // Given back when this command ends, however it ends.
            let _held = Held(service, ctx.caller, held);
            // A refused reservation says which limit was hit, not how the read ended.
            if let Some(e) = refused {
                return Err(e);
            }
            let (files, blobs) =
                received.map_err(|e| Error::Usage(format!("receiving the submission: {e}")))?;
            let backend = if emulate {
                Backend::Emulator
            } else {
                Backend::Cuda
            };
            attempt::score(
                ctx,
                &attempt,
                Submission::Received(files.files, blobs),
                (allow_uncalibrated, timeout, backend),
            )
            .map(code)
        }
        Request::Log { attempt } => attempt::log(ctx, &open_own(ctx, &attempt)?).map(code),
        Request::Status { attempt } => attempt::status(ctx, &open_own(ctx, &attempt)?).map(code),
        Request::Tool {
            attempt,
            name,
            args,
        } => {
            let attempt = open_own(ctx, &attempt)?;
            let _turn = service.tool_turn(ctx.caller, &attempt)?;
            attempt::tool(ctx, &attempt, &name, &args).map(code)
        }
        Request::Finish { attempt } => {
            if matches!(ctx.caller, Caller::Agent { .. }) {
                return Err(Error::Usage(
                    "finishing an attempt is the platform's: it picks the final score, which an \
                     agent of a hidden-score task must not learn"
                        .into(),
                ));
            }
            let summary = attempt::finish(ctx, open_own(ctx, &attempt)?)?;
            Ok(Served {
                summary: serde_json::to_value(&summary).ok(),
                ..code(0)
            })
        }
    }
}

/// Bytes of the caller's receive budget held by one command, given back on drop.
struct Held<'a>(&'a Service, Caller, u64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.admission.release(self.1, self.2);
    }
}

fn require_absolute(dir: &Path) -> Result<()> {
    if dir.is_absolute() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{}: the client sends the folder's absolute path",
            dir.display()
        )))
    }
}

/// The attempt `what` names, for this caller. An agent reaches only the attempts started for
/// it, by id or by its folder; another user's attempt reads exactly like no attempt at all
/// (the same words), so the answer tells it nothing about others. An operator names attempts
/// by id only: a folder's path belongs to the agent, who can rename it and plant a link to
/// another attempt in its place.
fn open_own(ctx: &Context, what: &AttemptRef) -> Result<Attempt> {
    let opened = match what {
        AttemptRef::Id(id) => Attempt::open_id(&ctx.home, id),
        AttemptRef::Dir(dir) => {
            if matches!(ctx.caller, Caller::Operator { .. }) {
                return Err(Error::Usage(format!(
                    "{}: through the scoring service an operator names an attempt by the id `start` \
                     printed (att-...), never by its folder, which its owner controls",
                    dir.display()
                )));
            }
            require_absolute(dir)?;
            Attempt::open_canonical(&ctx.home, dir)
        }
    };
    let nothing_here = || match what {
        AttemptRef::Id(id) => rdbench_core::attempt::no_such_id(id),
        AttemptRef::Dir(dir) => rdbench_core::attempt::no_attempt_here(dir),
    };
    match (ctx.caller, opened) {
        (Caller::Agent { uid }, Ok(a)) if a.record.owner_uid != Some(uid) => Err(nothing_here()),
        (Caller::Agent { .. }, Err(Error::Usage(_))) => Err(nothing_here()),
        (_, opened) => opened,
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
