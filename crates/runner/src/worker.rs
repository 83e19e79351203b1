//! The worker protocol: a parent runs a child (usually its own binary) to do one piece of
//! work in another process, and trusts the answer only as far as the protocol makes it.
//!
//! - The request goes to the child's stdin as one JSON document `{"token", "request"}`, with a
//!   fresh random 128-bit token; stdin is then closed. Nothing is left at a path another
//!   process could write.
//! - The reply comes back on an inherited pipe, descriptor [`REPLY_FD`] (not stdout, which
//!   the work's libraries may print to), as one JSON document `{"token", "reply"}` and
//!   nothing else, at most the caller's cap.
//! - It is accepted only from a child that exited by itself with one of the caller's codes
//!   (a child killed by a signal, at a limit or at the deadline may have been interrupted
//!   anywhere, its reply included) and only with the request's token (a reply without it was
//!   not written by the worker that read this request).
//! - The worker side ([`serve`]) makes itself non-dumpable before it reads anything: other
//!   processes of the same user can then neither read its memory (the token, a seed) through
//!   `/proc` or ptrace nor open its descriptors through `/proc/<pid>/fd`. It marks the reply
//!   descriptor close-on-exec, so programs it runs in turn cannot write to it.
//!
//! The child runs under the runner's lifecycle ([`crate::Command`]): its deadline, limits and
//! containment are the caller's to set.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, RawFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Child, Command, Exit, Outcome};

/// The child's descriptor for the reply.
pub const REPLY_FD: RawFd = 3;
/// Largest request a worker reads.
pub const MAX_REQUEST_BYTES: u64 = 8 << 20;

#[derive(Serialize)]
struct RequestOut<'a, T> {
    token: &'a str,
    request: &'a T,
}

#[derive(Deserialize)]
struct RequestIn<T> {
    token: String,
    request: T,
}

#[derive(Serialize)]
struct ReplyOut<'a, T> {
    token: &'a str,
    reply: &'a T,
}

#[derive(Deserialize)]
struct ReplyIn<T> {
    token: String,
    reply: T,
}

/// Why a reply was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the worker did not exit by itself ({0})")]
    NotExited(Exit),
    #[error("the worker exited with code {0}, not one that goes with a reply")]
    Code(i32),
    #[error("the reply was longer than {cap} bytes ({total})")]
    TooLong { total: u64, cap: usize },
    #[error("the reply is not one well-formed document: {0}")]
    Malformed(String),
    #[error("the reply does not carry the request's token")]
    WrongToken,
}

/// A finished call: the run, and the reply or why it was refused.
#[derive(Debug)]
pub struct Call<Rep> {
    pub outcome: Outcome,
    pub reply: Result<Rep, Refusal>,
}

/// Why a call could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Run(#[from] crate::Error),
    #[error("encoding the worker's request: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("drawing the request's token: {0}")]
    Token(#[source] io::Error),
}

/// A started call: the worker runs; [`Pending::finish`] waits for it and judges the reply.
pub struct Pending<'a> {
    child: Child<'a>,
    token: String,
    cap: usize,
}

/// Starts `cmd` as a worker for `request`, with replies up to `max_reply` bytes. `cmd`'s
/// stdin and descriptor [`REPLY_FD`] are the protocol's.
pub fn start<'a, Req: Serialize>(
    cmd: &mut Command<'a>,
    request: &Req,
    max_reply: usize,
) -> Result<Pending<'a>, CallError> {
    let token = random_token().map_err(CallError::Token)?;
    let mut bytes = serde_json::to_vec(&RequestOut {
        token: &token,
        request,
    })
    .map_err(CallError::Encode)?;
    bytes.push(b'\n');
    cmd.stdin_bytes(bytes);
    // One byte over the cap is enough to know it was exceeded.
    cmd.capture_fd(REPLY_FD, max_reply.saturating_add(1));
    let child = cmd.spawn()?;
    Ok(Pending {
        child,
        token,
        cap: max_reply,
    })
}

/// [`start`] and [`Pending::finish`] at once.
pub fn call<Req: Serialize, Rep: DeserializeOwned>(
    cmd: &mut Command<'_>,
    request: &Req,
    max_reply: usize,
    accepted_codes: &[i32],
) -> Result<Call<Rep>, CallError> {
    start(cmd, request, max_reply)?.finish(accepted_codes)
}

impl Pending<'_> {
    /// The running worker (its pid, for a monitor).
    pub fn child(&self) -> &Child<'_> {
        &self.child
    }

    /// Waits for the worker and accepts its reply only from an exit with one of
    /// `accepted_codes`, whole, and carrying the token.
    pub fn finish<Rep: DeserializeOwned>(
        self,
        accepted_codes: &[i32],
    ) -> Result<Call<Rep>, CallError> {
        let outcome = self.child.wait()?;
        let empty = crate::Captured::default();
        let bytes = outcome
            .fds
            .iter()
            .find(|(fd, _)| *fd == REPLY_FD)
            .map_or(&empty, |(_, c)| c);
        let reply = match outcome.exit {
            Exit::Exited(code) if accepted_codes.contains(&code) => {
                judge(bytes, self.cap, &self.token)
            }
            Exit::Exited(code) => Err(Refusal::Code(code)),
            other => Err(Refusal::NotExited(other)),
        };
        Ok(Call { outcome, reply })
    }
}

fn judge<Rep: DeserializeOwned>(
    bytes: &crate::Captured,
    cap: usize,
    token: &str,
) -> Result<Rep, Refusal> {
    if bytes.total > cap as u64 {
        return Err(Refusal::TooLong {
            total: bytes.total,
            cap,
        });
    }
    let reply: ReplyIn<Rep> =
        serde_json::from_slice(&bytes.tail).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if reply.token != token {
        return Err(Refusal::WrongToken);
    }
    Ok(reply.reply)
}

/// 128 random bits from the kernel, in hex.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut got = 0;
    while got < bytes.len() {
        // SAFETY: getrandom fills the unfilled part of a live buffer.
        let n = unsafe { libc::getrandom(bytes[got..].as_mut_ptr().cast(), bytes.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a worker could not serve its request.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("making the worker non-dumpable: {0}")]
    Dumpable(#[source] io::Error),
    #[error("descriptor {REPLY_FD} is not open: not started as a worker ({0})")]
    NoReplyDescriptor(#[source] io::Error),
    #[error("reading the request: {0}")]
    Read(#[source] io::Error),
    #[error("the request is longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("the request: {0}")]
    Request(#[source] serde_json::Error),
    #[error("encoding the reply: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("writing the reply: {0}")]
    Write(#[source] io::Error),
}

/// The worker's side: non-dumpable first, then reads the request from stdin, calls `handle`,
/// writes the reply with the token to [`REPLY_FD`] and returns `handle`'s exit code (the
/// caller exits with it; the parent accepts the reply only with a code it expects).
pub fn serve<Req: DeserializeOwned, Rep: Serialize>(
    handle: impl FnOnce(Req) -> (Rep, i32),
) -> Result<i32, ServeError> {
    // First: exec reset the flag, and until it is cleared another process of this user may
    // read this one's memory or open its descriptors through /proc.
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(ServeError::Dumpable(io::Error::last_os_error()));
    }
    // The reply descriptor stays this process's own: close-on-exec for whatever it runs.
    // SAFETY: fcntl on a descriptor number; failure means it is not open.
    if unsafe { libc::fcntl(REPLY_FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(ServeError::NoReplyDescriptor(io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is open (checked above) and nothing else in this process owns it.
    let mut reply_pipe = unsafe { std::fs::File::from_raw_fd(REPLY_FD) };
    let mut input = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut input)
        .map_err(ServeError::Read)?;
    if input.len() as u64 > MAX_REQUEST_BYTES {
        return Err(ServeError::TooLong);
    }
    let RequestIn { token, request } =
        serde_json::from_slice::<RequestIn<Req>>(&input).map_err(ServeError::Request)?;
    let (reply, code) = handle(request);
    let bytes = serde_json::to_vec(&ReplyOut {
        token: &token,
        reply: &reply,
    })
    .map_err(ServeError::Encode)?;
    reply_pipe.write_all(&bytes).map_err(ServeError::Write)?;
    Ok(code)
}
