//! NVRTC in a child process under [`CompileLimits`]: the parent side ([`compile`]) and the
//! child's entry point ([`child_main`]).
//!
//! The child runs through [`rdbench_runner`] as a worker ([`rdbench_runner::worker`]): the
//! [`Request`] goes to its stdin with a fresh token, the [`Header`] (with the image, in hex)
//! comes back on the inherited reply descriptor, and is accepted only from a child that
//! exited by itself with [`CODE_REPLIED`] or [`CODE_ENVIRONMENT`] and carries the token. The
//! runner gives it the limits (address space, CPU, no core dumps) and the wall clock as its
//! deadline, its own process group and PID namespace (nothing it starts outlives the
//! compile), and a parent-death signal; it captures stderr and reaps it with its rusage.
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

use std::path::Path;

use rdbench_runner::worker::{self, Refusal};
use rdbench_runner::Exit;
use serde::{Deserialize, Serialize};

use super::sandbox::{restrict_nvrtc_child, Sandbox};
use super::{compile_uncached, is_out_of_memory, Output};
use crate::compile_limits::{gib, output_suffix, stderr_text, CompileLimits};
use crate::compile_log::cap_log;
use crate::GpuError;

/// Largest image accepted from the child.
pub const MAX_IMAGE_BYTES: u64 = 128 << 20;
/// Largest reply: the image in hex, and the log (capped well below this) with the token.
const MAX_REPLY_BYTES: usize = 2 * MAX_IMAGE_BYTES as usize + (1 << 20);
/// Stack of the compiling thread in the child: a compiler parses recursively.
const COMPILE_STACK_BYTES: usize = 256 << 20;
/// The child's exit code with a reply about the compile.
const CODE_REPLIED: i32 = 0;
/// The child's exit code with a reply saying it could not compile at all.
const CODE_ENVIRONMENT: i32 = 3;
/// The child's exit code when the protocol itself failed (no reply).
const CODE_PROTOCOL: i32 = 2;

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

/// The child's reply: how the compile ended, and under which sandbox.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    reply: Reply,
    /// `None` when the child stopped before compiling (NVRTC not loadable).
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
        /// The image, in hex (the reply is one JSON document).
        image: String,
    },
    /// NVRTC rejected the source; `log` is its log.
    Failed { log: String },
    /// NVRTC ran out of memory (under the child's address-space limit).
    OutOfMemory { log: String },
    /// The child could not compile at all (NVRTC not loadable, no sandbox).
    Environment { message: String },
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
    let request = Request {
        source: source.into(),
        name: name.into(),
        flags: flags.to_vec(),
        output,
        max_log_bytes: limits.max_log_bytes,
        library: crate::probe::probe().libnvrtc.path.clone(),
    };
    let mut cmd = limits.command(exe, limits.max_log_bytes);
    cmd.args(args).env_clear();
    for var in KEPT_ENV {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    let call = worker::call::<_, Header>(
        &mut cmd,
        &request,
        MAX_REPLY_BYTES,
        &[CODE_REPLIED, CODE_ENVIRONMENT],
    )
    .map_err(|e| GpuError::CompileChild(format!("running {}: {e}", exe.display())))?;
    let outcome = &call.outcome;
    tracing::debug!(
        "NVRTC child for {name}: {:.3} s, peak RSS {}, {}",
        outcome.wall.as_secs_f64(),
        gib(outcome.usage.peak_rss),
        outcome.exit
    );
    // The child's stderr is not the compiler's log (that comes in the reply, filtered): it
    // may be shown as it is.
    let stderr = stderr_text(outcome);
    if let Some(e) = limits.ended_at_a_limit(name, "the compiler", outcome, &stderr) {
        return Err(e);
    }
    if let Exit::Signaled(sig) = outcome.exit {
        // Not the runner's kill and not at the CPU limit: the kernel's (the OOM killer's
        // SIGKILL) or the compiler's own crash, both what this source made it do.
        return Err(GpuError::ResourceLimit {
            name: name.into(),
            limit: format!("{} address space", gib(limits.address_space)),
            detail: format!(
                "the compiler died by signal {sig} after {:.1} s at peak memory {}{}",
                outcome.wall.as_secs_f64(),
                gib(outcome.usage.peak_rss),
                output_suffix(&stderr)
            ),
        });
    }
    let too_large = || GpuError::ResourceLimit {
        name: name.into(),
        limit: format!("{} image", gib(MAX_IMAGE_BYTES)),
        detail: format!("the compiled image is larger than {MAX_IMAGE_BYTES} bytes"),
    };
    let Header { reply, sandbox } = call.reply.map_err(|refusal| match refusal {
        Refusal::TooLong { .. } => too_large(),
        other => GpuError::CompileChild(format!("{other}{}", output_suffix(&stderr))),
    })?;
    if let Some(Sandbox::Unavailable { why }) = &sandbox {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "NVRTC compiles without a sandbox ({why}): only the source rules keep a submission from reading files"
            )
        });
    }
    match reply {
        Reply::Compiled { log, image } => {
            let image = hex::decode(image)
                .map_err(|e| GpuError::CompileChild(format!("its image is not hex: {e}")))?;
            if image.len() as u64 > MAX_IMAGE_BYTES {
                return Err(too_large());
            }
            Ok((image, log))
        }
        Reply::Failed { log } => Err(GpuError::Compile {
            name: name.into(),
            options: flags.join(" "),
            log,
        }),
        Reply::OutOfMemory { log } => Err(GpuError::ResourceLimit {
            name: name.into(),
            limit: format!("{} address space", gib(limits.address_space)),
            detail: format!(
                "NVRTC ran out of memory after {:.1} s:\n{log}",
                outcome.wall.as_secs_f64()
            ),
        }),
        Reply::Environment { message } => Err(GpuError::CompileChild(message)),
    }
}

/// The child's side: serves one request as a worker (request on stdin, reply on the reply
/// descriptor), compiling in this process; returns the exit code. The `rdbench` binary runs
/// this for its hidden `__nvrtc` subcommand.
pub fn child_main() -> i32 {
    // `serve` makes this process non-dumpable first, like the scoring worker: no other
    // process of this user may read or write its memory through /proc or ptrace (the image
    // of a trusted harness passes through here).
    match worker::serve(|request: Request| {
        let reply = serve(request);
        let code = match reply.reply {
            Reply::Environment { .. } => CODE_ENVIRONMENT,
            _ => CODE_REPLIED,
        };
        (reply, code)
    }) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rdbench __nvrtc: {e}");
            CODE_PROTOCOL
        }
    }
}

/// Loads NVRTC, enters the sandbox and compiles `req` on a thread with a large stack.
fn serve(req: Request) -> Header {
    let environment = |message: String, sandbox| Header {
        reply: Reply::Environment { message },
        sandbox,
    };
    // cudarc's NVRTC calls panic unless the library was found and loaded first. Loaded by the
    // parent's full path, the probe's by-name lookup then finds it by its soname.
    if let Some(lib) = &req.library {
        // SAFETY: the library the parent loaded already; its initializers have no
        // preconditions on us.
        if let Ok(lib) = unsafe { libloading::Library::new(lib) } {
            std::mem::forget(lib);
        }
    }
    if let Err(e) = crate::probe::require_nvrtc() {
        return environment(e.to_string(), None);
    }
    let Some(lib) = req
        .library
        .clone()
        .or_else(|| crate::probe::probe().libnvrtc.path.clone())
    else {
        return environment(
            "the compile child does not know where libnvrtc is".into(),
            None,
        );
    };
    // The sandbox, on this (still the only) thread, so the compile thread inherits it.
    let sandbox = match restrict_nvrtc_child(&lib) {
        Ok(status) => status,
        Err(e) => return environment(e.to_string(), None),
    };
    let max_log = req.max_log_bytes;
    let worker = std::thread::Builder::new()
        .name("nvrtc".into())
        .stack_size(COMPILE_STACK_BYTES)
        .spawn(move || compile_uncached(&req.source, &req.name, &req.flags, req.output));
    let reply = match worker.map(|h| h.join()) {
        Err(e) => Reply::Environment {
            message: format!("starting the compile thread: {e}"),
        },
        // A panic inside the compile (not NVRTC's own failures, which are values).
        Ok(Err(_)) => Reply::Environment {
            message: "the compile thread panicked".into(),
        },
        Ok(Ok(Ok((image, log)))) => Reply::Compiled {
            log: cap_log(log, max_log),
            image: hex::encode(image),
        },
        Ok(Ok(Err(GpuError::Compile { log, .. }))) if is_out_of_memory(&log) => {
            Reply::OutOfMemory {
                log: cap_log(log, max_log),
            }
        }
        Ok(Ok(Err(GpuError::Compile { log, .. }))) => Reply::Failed {
            log: cap_log(log, max_log),
        },
        Ok(Ok(Err(other))) => Reply::Environment {
            message: other.to_string(),
        },
    };
    Header {
        reply,
        sandbox: Some(sandbox),
    }
}
