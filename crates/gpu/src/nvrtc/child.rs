//! NVRTC in a child process under [`CompileLimits`]: the parent side ([`compile`]) and the
//! child's entry point ([`child_main`]).
//!
//! Framing, one request and one reply, both bounded:
//! - stdin: one JSON [`Request`] (at most [`MAX_REQUEST_BYTES`]);
//! - stdout: one JSON [`Header`] on a line, then exactly `image_len` bytes of image. The child
//!   moves its stdout aside before compiling, so nothing NVRTC might print lands in the frame.
//!
//! Before compiling, the child restricts itself with Landlock ([`super::sandbox`]) to reading
//! NVRTC's own library folder, and starts with an environment of only `PATH` and
//! `LD_LIBRARY_PATH`: an include that got past the source rules finds nothing to read. On a
//! kernel without Landlock the child moves into an empty mount namespace instead; where
//! neither works it says so ([`Sandbox::Unavailable`], a warning in the scorer's log) and the
//! compile goes on, guarded by the source rules alone. A sandbox that could not be completed
//! fails the compile as an environment error.
//!
//! A child that went over a limit (out of memory inside NVRTC, killed at the wall clock or by
//! `RLIMIT_CPU`, died by a signal, produced an oversized answer) becomes
//! [`GpuError::ResourceLimit`]; a child that could not be started or broke the protocol is
//! [`GpuError::CompileChild`], an environment error.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::sandbox::{restrict_nvrtc_child, Sandbox};
use super::{compile_uncached, is_out_of_memory, Output};
use crate::child_limits::{cap_log, gib, kill_group, CompileLimits};
use crate::GpuError;

/// Largest request: a submission's source is at most 1 MiB, plus name and flags.
const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Largest reply header line (the log is capped well below it, JSON escaping included).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest image accepted from the child.
pub const MAX_IMAGE_BYTES: u64 = 128 << 20;
/// Stack of the compiling thread in the child: a compiler parses recursively.
const COMPILE_STACK_BYTES: usize = 256 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    source: String,
    name: String,
    flags: Vec<String>,
    output: Output,
    max_log_bytes: usize,
    /// The libnvrtc the parent loaded: the child loads the same file directly instead of
    /// searching again (the search asks python3 for its site-packages, ~150 ms).
    library: Option<std::path::PathBuf>,
}

/// The child's reply line: how the compile ended, and under which sandbox.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    reply: Reply,
    /// `None` when the child stopped before compiling (a bad request).
    sandbox: Option<Sandbox>,
}

/// Variables the compile child keeps: the library search path NVRTC's dependencies may need.
/// The rest of the scorer's environment (which the red team read through
/// `/proc/self/environ`) stays out of the process that compiles an agent's source.
const KEPT_ENV: [&str; 2] = ["PATH", "LD_LIBRARY_PATH"];

/// How a compile in the child ended, as the child reports it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Compiled {
        log: String,
        image_len: u64,
    },
    /// NVRTC rejected the source; `log` is its log.
    Failed {
        log: String,
    },
    /// NVRTC ran out of memory (under the child's address-space limit).
    OutOfMemory {
        log: String,
    },
    /// The child could not compile at all (NVRTC not loadable, a bad request).
    Environment {
        message: String,
    },
}

/// Compiles in a child `exe args...` (which must run [`child_main`]) under `limits`.
pub(super) fn compile(
    exe: &Path,
    args: &[std::ffi::OsString],
    limits: &CompileLimits,
    source: &str,
    name: &str,
    flags: &[String],
    output: Output,
) -> Result<(Vec<u8>, String), GpuError> {
    use std::process::{Command, Stdio};
    let request = serde_json::to_vec(&Request {
        source: source.into(),
        name: name.into(),
        flags: flags.to_vec(),
        output,
        max_log_bytes: limits.max_log_bytes,
        library: crate::probe::probe().libnvrtc.path.clone(),
    })
    .map_err(|e| GpuError::CompileChild(format!("encoding the request: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.env_clear();
    for var in KEPT_ENV {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limits.apply(&mut cmd);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| GpuError::CompileChild(format!("starting {}: {e}", exe.display())))?;
    let pid = child.id();
    let (mut stdin, stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    // Each pipe on its own thread, so that no full pipe can stall the child or this side.
    std::thread::spawn(move || {
        // A child that died early makes this fail with EPIPE; its exit status says why.
        let _ = stdin.write_all(&request);
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let cap = MAX_HEADER_BYTES as u64 + MAX_IMAGE_BYTES + 1;
        let read = stdout.take(cap).read_to_end(&mut out);
        let _ = tx.send(read.map(|_| out));
    });
    let max_log = limits.max_log_bytes;
    let stderr_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr).take(max_log as u64).read_to_end(&mut kept);
        // Drain the rest unkept, so a chatty child never blocks on a full pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        cap_log(String::from_utf8_lossy(&kept).into_owned(), max_log)
    });

    let deadline = started + limits.wall;
    let stdout = rx.recv_timeout(limits.wall);
    let timed_out = stdout.is_err() || !wait_until(pid, deadline);
    if timed_out {
        // The child is not reaped yet (only this function reaps it): its group id is its own.
        kill_group(pid);
    }
    let (status, usage) = wait4(pid)
        .map_err(|e| GpuError::CompileChild(format!("waiting for the compile child: {e}")))?;
    let elapsed = started.elapsed();
    let peak = usage.ru_maxrss.max(0) as u64 * 1024;
    tracing::debug!(
        "NVRTC child for {name}: {:.3} s, peak RSS {}, status {status:#x}",
        elapsed.as_secs_f64(),
        gib(peak)
    );
    let stderr = stderr_reader.join().unwrap_or_default();
    let over = |limit: String, detail: String| GpuError::ResourceLimit {
        name: name.into(),
        limit,
        detail,
    };
    if timed_out {
        return Err(over(
            format!("{} s wall clock", limits.wall.as_secs()),
            format!(
                "the compiler was still running after {} s (peak memory {}) and was killed",
                limits.wall.as_secs(),
                gib(peak)
            ),
        ));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let limit = if sig == libc::SIGXCPU || sig == libc::SIGKILL {
            format!("{} s CPU", limits.cpu.as_secs())
        } else {
            format!("{} address space", gib(limits.address_space))
        };
        return Err(over(
            limit,
            format!(
                "the compiler died by signal {sig} ({}) after {:.1} s at peak memory {}{}",
                signal_name(sig),
                elapsed.as_secs_f64(),
                gib(peak),
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!("; its stderr:\n{stderr}")
                }
            ),
        ));
    }
    let out = match stdout {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(GpuError::CompileChild(format!("reading its reply: {e}"))),
        Err(_) => unreachable!("a missed reply is a timeout, handled above"),
    };
    let code = libc::WEXITSTATUS(status);
    let newline = out[..out.len().min(MAX_HEADER_BYTES)]
        .iter()
        .position(|&b| b == b'\n');
    let Some(newline) = newline else {
        return Err(GpuError::CompileChild(format!(
            "exit code {code} without a reply{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!("; its stderr:\n{stderr}")
            }
        )));
    };
    let Header { reply, sandbox } = serde_json::from_slice(&out[..newline])
        .map_err(|e| GpuError::CompileChild(format!("its reply: {e}")))?;
    if let Some(Sandbox::Unavailable { why }) = &sandbox {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "NVRTC compiles without a sandbox ({why}): only the source rules keep a submission from reading files"
            )
        });
    }
    let compile_err = |log: String| GpuError::Compile {
        name: name.into(),
        options: flags.join(" "),
        log,
    };
    match reply {
        Reply::Compiled { log, image_len } => {
            let image = &out[newline + 1..];
            if image_len > MAX_IMAGE_BYTES || image.len() as u64 > MAX_IMAGE_BYTES {
                return Err(over(
                    format!("{} image", gib(MAX_IMAGE_BYTES)),
                    format!("the compiled image is larger than {MAX_IMAGE_BYTES} bytes"),
                ));
            }
            if image.len() as u64 != image_len {
                return Err(GpuError::CompileChild(format!(
                    "its reply announced {image_len} image bytes and carried {}",
                    image.len()
                )));
            }
            Ok((image.to_vec(), log))
        }
        Reply::Failed { log } => Err(compile_err(log)),
        Reply::OutOfMemory { log } => Err(over(
            format!("{} address space", gib(limits.address_space)),
            format!(
                "NVRTC ran out of memory after {:.1} s:\n{log}",
                elapsed.as_secs_f64()
            ),
        )),
        Reply::Environment { message } => Err(GpuError::CompileChild(message)),
    }
}

/// Polls (without reaping) until `pid` has exited or `deadline` passes; true if it exited.
/// The reply's end of file means the child is exiting, so this normally returns at once.
fn wait_until(pid: u32, deadline: Instant) -> bool {
    loop {
        // SAFETY: waitid with WNOWAIT only inspects the state of our own child.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set by waitid (zero while the child still runs).
        if rc != 0 || unsafe { info.si_pid() } != 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps `pid`, with its resource usage (peak RSS for the messages and measurements).
fn wait4(pid: u32) -> std::io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: wait4 writes the status and the usage of our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc >= 0 {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

/// The child's side: reads a request on stdin, compiles it in this process, writes the reply
/// on stdout; returns the exit code (0 when a reply was written). The `rdbench` binary runs
/// this for its hidden `__nvrtc` subcommand.
pub fn child_main() -> i32 {
    // Like the scoring worker: no other process of this user may read or write this one's
    // memory through /proc or ptrace (the image of a trusted harness passes through here).
    // SAFETY: plain prctl call.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // The frame goes to a private copy of stdout; fd 1 itself becomes stderr, so that any
    // print from inside the compiler cannot corrupt the reply.
    // SAFETY: dup/dup2 on the standard descriptors of this process.
    let out_fd = unsafe { libc::dup(1) };
    if out_fd < 0 || unsafe { libc::dup2(2, 1) } < 0 {
        eprintln!("rdbench __nvrtc: cannot set up stdout");
        return 3;
    }
    // SAFETY: `out_fd` was just duplicated and is owned by nothing else.
    let mut out = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(out_fd) };
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut input);
    let request = match read {
        Err(e) => Err(format!("reading the request: {e}")),
        Ok(_) if input.len() as u64 > MAX_REQUEST_BYTES => {
            Err(format!("request over {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(_) => serde_json::from_slice::<Request>(&input).map_err(|e| format!("the request: {e}")),
    };
    // cudarc's NVRTC calls panic unless the library was found and loaded first. Loaded by the
    // parent's full path, the probe's by-name lookup then finds it by its soname.
    if let Ok(Request {
        library: Some(lib), ..
    }) = &request
    {
        // SAFETY: the library the parent loaded already; its initializers have no
        // preconditions on us.
        if let Ok(lib) = unsafe { libloading::Library::new(lib) } {
            std::mem::forget(lib);
        }
    }
    let request = request.and_then(|r| {
        crate::probe::require_nvrtc()
            .map(|_| r)
            .map_err(|e| e.to_string())
    });
    // The sandbox, on this (still the only) thread, so the compile thread inherits it.
    let mut sandbox = None;
    let request = request.and_then(|r| {
        let lib = r
            .library
            .clone()
            .or_else(|| crate::probe::probe().libnvrtc.path.clone())
            .ok_or_else(|| "the compile child does not know where libnvrtc is".to_string())?;
        let status = restrict_nvrtc_child(&lib).map_err(|e| e.to_string())?;
        sandbox = Some(status);
        Ok(r)
    });
    let (reply, image) = match request {
        Err(message) => (Reply::Environment { message }, Vec::new()),
        Ok(req) => {
            let worker = std::thread::Builder::new()
                .name("nvrtc".into())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn(move || {
                    let result = compile_uncached(&req.source, &req.name, &req.flags, req.output);
                    (result, req.max_log_bytes)
                });
            match worker.map(|h| h.join()) {
                Err(e) => (
                    Reply::Environment {
                        message: format!("starting the compile thread: {e}"),
                    },
                    Vec::new(),
                ),
                // A panic inside the compile (not NVRTC's own failures, which are values).
                Ok(Err(_)) => (
                    Reply::Environment {
                        message: "the compile thread panicked".into(),
                    },
                    Vec::new(),
                ),
                Ok(Ok((result, max_log))) => match result {
                    Ok((image, log)) => (
                        Reply::Compiled {
                            log: cap_log(log, max_log),
                            image_len: image.len() as u64,
                        },
                        image,
                    ),
                    Err(GpuError::Compile { log, .. }) if is_out_of_memory(&log) => (
                        Reply::OutOfMemory {
                            log: cap_log(log, max_log),
                        },
                        Vec::new(),
                    ),
                    Err(GpuError::Compile { log, .. }) => (
                        Reply::Failed {
                            log: cap_log(log, max_log),
                        },
                        Vec::new(),
                    ),
                    Err(other) => (
                        Reply::Environment {
                            message: other.to_string(),
                        },
                        Vec::new(),
                    ),
                },
            }
        }
    };
    let code = match reply {
        Reply::Environment { .. } => 3,
        _ => 0,
    };
    let mut frame = serde_json::to_vec(&Header { reply, sandbox }).expect("a reply serializes");
    frame.push(b'\n');
    frame.extend_from_slice(&image);
    match out.write_all(&frame).and_then(|_| out.flush()) {
        Ok(()) => code,
        Err(e) => {
            eprintln!("rdbench __nvrtc: writing the reply: {e}");
            3
        }
    }
}
