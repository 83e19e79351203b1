//! The CPU emulator backend: runs kernel tasks' `.cu` files on the host through
//! `kernels/tools/cuda_emu.h`, so the real Rust scoring pipeline (plan resolution, the
//! correctness matrix, poisoning, per-sample validation, the run-stage exploit cases) is
//! exercised on machines without a GPU.
//!
//! How: [`EmuBackend::compile`] parses the source's `extern "C" __global__` signatures, writes a
//! wrapper that includes the emulator header and the source and defines one `extern "C"`
//! launcher per kernel (arguments unpacked from a `void**` array by the kernel's own parameter
//! types, deduced by the C++ compiler), builds it with the host compiler (`$CXX`, else `g++`)
//! into a shared object, and `dlopen`s it. Buffers are anonymous shared mappings whose data
//! ends exactly at a `PROT_NONE` guard page, so a write past the end of a buffer faults (the
//! worker dies and the entry is invalid) instead of landing in a neighbour.
//!
//! What it cannot do, plainly: time anything (an emulated run is correct or invalid, never a
//! score); model memory ordering, real concurrency or races (threads are fibers switched at
//! barriers and warp collectives, blocks run one after another); 2-D or 3-D grids and blocks,
//! blocks that are not a multiple of 32 threads, dynamic shared memory, partial-mask warp
//! collectives. A compiled `.cu` is host code (static initializers, system calls), so this
//! backend is for the project's own kernels and its exploit corpus, run inside the scoring
//! worker: never for an untrusted submission.
//!
//! **Why the service still refuses it to agents, with the sandbox there.** The module is
//! `dlopen`ed into the scoring worker, which is the `rdbench` binary: that binary holds every
//! reference solution (`install-solution`), which is why `serve` refuses to run from a copy
//! other users can read. So the worker cannot move into the agent's sandbox, and the module
//! cannot run in the worker without running as the scorer. What would make it safe: a small
//! launch host that holds no secret (its own binary, readable by agents), run by the worker in
//! `rdbench_runner`'s sandbox as the agent's user, which `dlopen`s only the module and runs
//! launches on buffers the worker shares with it (`memfd`s passed over a Unix socket, mapped
//! with the same guard pages on both sides); the worker keeps generating inputs, poisoning and
//! checking outputs, so a module that forges anything can only fail its own checks. A fault
//! ends the host, and the launch is an invalid entry, as a fault of the in-process module ends
//! the worker today. Not built yet: until it is, `serve --allow-emulator-for-agents` runs
//! agents' code as the scorer and says so when the service starts.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdbench_runner::{Exit, Output};

use sha2::{Digest, Sha256};

use super::{Arg, BackendInfo, CompileReport, Dims, KernelBackend};
use crate::compile_limits::CompileLimits;
use crate::compile_log::{cap_log, filter_log, filter_log_tail};
use crate::nvrtc::sandbox::{PreparedRuleset, Sandbox};
use crate::plan::{parse_kernel_signatures, KernelSignature};
use crate::{GpuError, GpuResult};

/// The emulator header, compiled into the binary so it needs no checkout at run time.
pub const EMU_HEADER: &str = include_str!("../../../../kernels/tools/cuda_emu.h");

/// Limits of the host compile of one emulated module: NVRTC's address space, a longer wall
/// clock (the emulator header is heavy C++), 16 KiB of log.
fn host_compile_limits() -> CompileLimits {
    let wall = Duration::from_secs(180);
    CompileLimits {
        wall,
        cpu: wall + Duration::from_secs(15),
        max_log_bytes: 16 * 1024,
        ..Default::default()
    }
}

/// The end of the host compiler's stderr kept, before [`filter_log_tail`] and the cap: far
/// more than the submission's own diagnostics need, and bounded whatever the compiler prints.
const HOST_STDERR_TAIL: usize = 4 << 20;

/// `$CXX --version` answers well within this on any machine; a compiler that does not is
/// taken for one that does not run.
const VERSION_DEADLINE: Duration = Duration::from_secs(30);

const BACKEND: &str = "emulator";

type Launcher = unsafe extern "C" fn(u32, u32, *mut *mut c_void);

/// The CPU emulator as a kernel backend.
pub struct EmuBackend {
    compiler: String,
    /// The first line of `$CXX --version`, asked once: part of every module's cache key.
    version: String,
    /// Compiled modules when no cache is given; made on first use (a scorer compiling into
    /// the cache never makes one, so none is left behind by a process that exits without
    /// dropping it), removed on drop.
    scratch: std::sync::OnceLock<tempfile::TempDir>,
    /// Whether samples are timed by the host's wall clock ([`EmuBackend::with_wall_clock`]).
    wall_clock: bool,
}

/// Times a sample by the host's wall clock: the emulator runs the plan synchronously, so the
/// window is the whole emulated plan (CPU time, nothing to do with a GPU's).
pub struct WallClockTimer {
    started: Option<std::time::Instant>,
    ms: Option<f64>,
}

impl super::SampleTimer for WallClockTimer {
    fn start(&mut self) -> GpuResult {
        self.started = Some(std::time::Instant::now());
        self.ms = None;
        Ok(())
    }

    fn stop(&mut self) -> GpuResult {
        self.ms = self.started.map(|t| t.elapsed().as_secs_f64() * 1e3);
        Ok(())
    }

    fn elapsed_ms(&mut self) -> Result<super::TimedWindow, GpuError> {
        self.ms
            .map(|ms| super::TimedWindow {
                ms,
                latency_hidden: false,
            })
            .ok_or_else(|| GpuError::Signature {
                kernel: "wall-clock timer".into(),
                message: "read before a start and a stop".into(),
            })
    }
}

/// A loaded emulated module.
pub struct EmuModule {
    lib: Arc<libloading::Library>,
    signatures: Vec<KernelSignature>,
}

/// One kernel's launcher.
pub struct EmuFunction {
    name: String,
    launcher: Launcher,
    _lib: Arc<libloading::Library>,
}

/// Host memory standing in for device memory, with a guard page right after the data.
pub struct EmuBuffer {
    base: *mut u8,
    map_len: usize,
    data: *mut u8,
    len: usize,
}

impl Drop for EmuBuffer {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` is exactly the mapping made in `alloc`.
        unsafe { libc::munmap(self.base as *mut c_void, self.map_len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl EmuBackend {
    /// The scratch folder for modules compiled without a cache, made on first use.
    fn scratch_dir(&self) -> Result<&Path, GpuError> {
        if let Some(dir) = self.scratch.get() {
            return Ok(dir.path());
        }
        let made = tempfile::Builder::new()
            .prefix("rdbench-emu-")
            .tempdir()
            .map_err(|e| GpuError::Io {
                path: std::env::temp_dir(),
                source: e,
            })?;
        // Another thread may have won; its folder is used and ours is dropped (removed).
        Ok(self.scratch.get_or_init(|| made).path())
    }

    /// The emulator with the host compiler `$CXX` (default `g++`); an environment error when
    /// that compiler does not run.
    pub fn new() -> Result<Self, GpuError> {
        let compiler = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
        let Some(version) = compiler_version(&compiler) else {
            return Err(GpuError::NoDriver(format!(
                "the CPU emulator needs a host C++ compiler: `{compiler} --version` did not run (set CXX)"
            )));
        };
        Ok(EmuBackend {
            compiler,
            version,
            scratch: std::sync::OnceLock::new(),
            wall_clock: false,
        })
    }

    /// The emulator with a wall-clock sample timer, so that the timed half of the scoring
    /// routine (warm-up, samples, stopping rule, per-size statistics, the raw score, saved
    /// samples) runs in CI without a GPU. Its times are the CPU's and say nothing about a
    /// GPU's: the scorer never builds one ([`crate::kernel_task::KernelTaskAdapter`] uses
    /// [`EmuBackend::new`]); it exists for tests of the routine.
    pub fn with_wall_clock() -> Result<Self, GpuError> {
        Ok(EmuBackend {
            wall_clock: true,
            ..EmuBackend::new()?
        })
    }

    /// The shared object for `source`, built unless the cache has it.
    fn build(
        &self,
        source: &str,
        name: &str,
        signatures: &[KernelSignature],
        cache: Option<&Path>,
    ) -> Result<(PathBuf, bool), GpuError> {
        let wrapper = wrapper_source(signatures);
        let version = &self.version;
        let key = {
            let mut h = Sha256::new();
            for part in [EMU_HEADER, source, &wrapper, version] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            hex::encode(&h.finalize()[..16])
        };
        let dir = match cache {
            Some(cache) => cache.join(&key),
            None => self.scratch_dir()?.join(&key),
        };
        let so = dir.join("module.so");
        if so.is_file() {
            return Ok((so, true));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| GpuError::Io { path, source: e }
        };
        // Random, not the pid: every scoring worker is pid 2 in its own PID namespace, and two
        // of them may build the same module into one cache at once.
        let build_dir = dir.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&build_dir).map_err(io(&build_dir))?;
        for (file, text) in [
            ("cuda_emu.h", EMU_HEADER),
            ("solution.cu", source),
            ("wrapper.cpp", wrapper.as_str()),
        ] {
            let p = build_dir.join(file);
            std::fs::write(&p, text).map_err(io(&p))?;
        }
        let out = build_dir.join("module.so");
        // The same limits as NVRTC's child: the source's templates could exhaust memory here
        // as well. Through the runner: its deadline and namespace stop cc1plus and `as` too,
        // not only the driver.
        let limits = host_compile_limits();
        let mut cmd = limits.command(&self.compiler, HOST_STDERR_TAIL);
        // And the same kind of sandbox: the toolchain reads only the system's toolchain
        // folders and writes only the build folder (its temporary files go there too).
        let ruleset = host_compile_ruleset(&self.compiler, &build_dir)?;
        if let Sandbox::Unavailable { why } = ruleset.sandbox() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!("the emulator's host compiler runs without a sandbox ({why})")
            });
        }
        // SAFETY: apply_in_child makes only system calls on the ruleset made above.
        unsafe { cmd.pre_exec(move || ruleset.apply_in_child()) };
        cmd.env("TMPDIR", &build_dir)
            .args([
                "-std=c++17",
                "-O1",
                "-shared",
                "-fPIC",
                "-fvisibility=hidden",
                "-w",
            ])
            .arg("-I")
            .arg(&build_dir)
            .arg("-o")
            .arg(&out)
            .arg(build_dir.join("wrapper.cpp"));
        let what = format!("the host compile ({}, CPU emulator)", self.compiler);
        let outcome = cmd.run();
        let failed = |e| {
            let _ = std::fs::remove_dir_all(&build_dir);
            Err(e)
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                return failed(GpuError::NoDriver(format!(
                    "running {}: {e}",
                    self.compiler
                )))
            }
        };
        if outcome.exit == Exit::Exited(0) {
            return publish(&build_dir, &dir, so);
        }
        let mut log = outcome.stderr.text();
        // The wrapper's paths are the kit's, not the agent's: show the submission's name.
        log = log.replace(&build_dir.join("solution.cu").display().to_string(), name);
        // Only what the compiler says about the submission itself (not the wrapper, the
        // header or a system file it quotes) comes back, whatever the ending.
        let log = if outcome.stderr.complete() {
            filter_log(&log, name)
        } else {
            filter_log_tail(&log, name)
        };
        let log = cap_log(log, limits.max_log_bytes);
        if let Some(e) = limits.ended_at_a_limit(name, &what, &outcome, &log) {
            return failed(e);
        }
        // A SIGKILL that was neither the deadline nor the CPU limit: the kernel's OOM killer,
        // stopping what this source made the compiler do.
        if outcome.exit == Exit::Signaled(libc::SIGKILL) {
            return failed(GpuError::ResourceLimit {
                name: name.into(),
                limit: limits.describe(),
                detail: format!("{what}: {}\n{log}", outcome.exit),
            });
        }
        failed(GpuError::Compile {
            name: name.into(),
            options: format!("{} (CPU emulator)", self.compiler),
            log,
        })
    }
}

/// Publishes a finished build folder as `dir` (holding `so`), atomically: a concurrent build
/// of the same key either wins or finds ours.
fn publish(build_dir: &Path, dir: &Path, so: PathBuf) -> Result<(PathBuf, bool), GpuError> {
    if std::fs::rename(build_dir, dir).is_err() {
        let _ = std::fs::remove_dir_all(build_dir);
        if !so.is_file() {
            return Err(GpuError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other("could not publish the emulated module"),
            });
        }
    }
    Ok((so, false))
}

/// The first line of `compiler --version` (or the compiler's name when it prints none), or
/// `None` when it does not run and exit 0 within [`VERSION_DEADLINE`].
fn compiler_version(compiler: &str) -> Option<String> {
    let outcome = rdbench_runner::Command::new(compiler)
        .arg("--version")
        .stdout(Output::Capture { tail: 4096 })
        .deadline(VERSION_DEADLINE)
        .run()
        .ok()?;
    (outcome.exit == Exit::Exited(0)).then(|| {
        let text = outcome.stdout.text();
        text.lines()
            .next()
            .map_or_else(|| compiler.to_string(), str::to_string)
    })
}

/// The Landlock ruleset of a host compile with `compiler` in `build_dir`: read (and run) the
/// system's toolchain folders and the compiler's own installation, read and write the build
/// folder and `/dev/null`; nothing else (no home folder, no `/proc`, no scorer secrets).
fn host_compile_ruleset(compiler: &str, build_dir: &Path) -> Result<PreparedRuleset, GpuError> {
    let mut read: Vec<PathBuf> = [
        "/usr",
        "/bin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/etc/ld.so.cache",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    // A compiler installed elsewhere (`CXX=/opt/gcc-13/bin/g++`): its installation prefix.
    let found = if compiler.contains('/') {
        Some(PathBuf::from(compiler))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(compiler))
                .find(|p| p.is_file())
        })
    };
    if let Some(exe) = found.and_then(|p| p.canonicalize().ok()) {
        let bin = exe.parent().map(Path::to_path_buf);
        let prefix = bin.as_deref().and_then(Path::parent);
        match prefix {
            Some(prefix) if prefix != Path::new("/") => read.push(prefix.into()),
            _ => read.extend(bin),
        }
    }
    let read: Vec<&Path> = read.iter().map(PathBuf::as_path).collect();
    PreparedRuleset::new(&read, &[build_dir, Path::new("/dev/null")])
        .map_err(|e| GpuError::NoDriver(format!("the host compiler's sandbox: {e}")))
}

/// The C++ wrapper: the emulator header, the source, and one launcher per kernel.
fn wrapper_source(signatures: &[KernelSignature]) -> String {
    let mut w = String::from(
        "// Generated by rdbench's emulator backend.\n\
         #include \"cuda_emu.h\"\n\
         #include <cstddef>\n\
         #include <type_traits>\n\
         #include <utility>\n\
         #include \"solution.cu\"\n\
         namespace rdbench_emu_gen {\n\
         template <class... P, std::size_t... I>\n\
         void call(void (*k)(P...), unsigned g, unsigned b, void** a, std::index_sequence<I...>)\n\
         {\n\
         \x20   emu::launch(k, g, b, *static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(a[I])...);\n\
         }\n\
         template <class... P> void call(void (*k)(P...), unsigned g, unsigned b, void** a)\n\
         {\n\
         \x20   call(k, g, b, a, std::index_sequence_for<P...>{});\n\
         }\n\
         } // namespace rdbench_emu_gen\n",
    );
    for s in signatures {
        w.push_str(&format!(
            "extern \"C\" __attribute__((visibility(\"default\"))) void rdbench_emu_launch__{0}(unsigned g, unsigned b, void** a)\n{{\n    rdbench_emu_gen::call(&{0}, g, b, a);\n}}\n",
            s.name
        ));
    }
    w
}

/// One argument's bytes, kept alive for the call.
enum Slot {
    Ptr(*mut c_void),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
}

impl Slot {
    fn as_ptr(&mut self) -> *mut c_void {
        match self {
            Slot::Ptr(p) => p as *mut *mut c_void as *mut c_void,
            Slot::I32(v) => v as *mut i32 as *mut c_void,
            Slot::U32(v) => v as *mut u32 as *mut c_void,
            Slot::I64(v) => v as *mut i64 as *mut c_void,
            Slot::U64(v) => v as *mut u64 as *mut c_void,
            Slot::F32(v) => v as *mut f32 as *mut c_void,
        }
    }
}

impl KernelBackend for EmuBackend {
    type Buffer = EmuBuffer;
    type Module = EmuModule;
    type Function = EmuFunction;
    type Timer = WallClockTimer;

    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: super::BackendKind::Emulator,
            name: if self.wall_clock {
                "CPU emulator (kernels/tools/cuda_emu.h), wall-clock timer (tests only)".into()
            } else {
                "CPU emulator (kernels/tools/cuda_emu.h)".into()
            },
            timed: self.wall_clock,
            peaks: None,
            l2_bytes: 0,
            compiler: self.version.clone(),
        }
    }

    fn compile(
        &self,
        source: &str,
        name: &str,
        cache: Option<&Path>,
    ) -> Result<(EmuModule, CompileReport), GpuError> {
        let signatures = parse_kernel_signatures(source);
        let (so, cached) = self.build(source, name, &signatures, cache)?;
        // SAFETY: loading a shared object runs its initializers: the project's own kernels
        // and exploit corpus only, inside the scoring worker (see the module docs).
        let lib = unsafe { libloading::Library::new(&so) }.map_err(|e| GpuError::Load {
            name: name.into(),
            message: format!("dlopen of the emulated module: {e}"),
        })?;
        Ok((
            EmuModule {
                lib: Arc::new(lib),
                signatures,
            },
            CompileReport {
                compiler: self.version.clone(),
                cached,
            },
        ))
    }

    fn function(&self, module: &EmuModule, name: &str) -> Result<EmuFunction, GpuError> {
        if !module.signatures.iter().any(|s| s.name == name) {
            return Err(GpuError::Load {
                name: format!("kernel {name:?}"),
                message: "not found in the module".into(),
            });
        }
        let symbol = format!("rdbench_emu_launch__{name}\0");
        // SAFETY: the symbol was generated by `wrapper_source` with exactly this type.
        let launcher: Launcher = unsafe {
            *module
                .lib
                .get::<Launcher>(symbol.as_bytes())
                .map_err(|e| GpuError::Load {
                    name: format!("kernel {name:?}"),
                    message: format!("no launcher in the emulated module: {e}"),
                })?
        };
        Ok(EmuFunction {
            name: name.into(),
            launcher,
            _lib: module.lib.clone(),
        })
    }

    fn static_shared_bytes(&self, _f: &EmuFunction) -> u32 {
        0
    }

    fn num_regs(&self, _f: &EmuFunction) -> Option<i32> {
        None
    }

    fn prepare_launch(&self, _f: &EmuFunction, kernel: &str, dims: &Dims) -> GpuResult {
        let unsupported = |what: String| {
            Err(GpuError::Unsupported {
                backend: BACKEND,
                what: format!("kernel {kernel:?}: {what}"),
            })
        };
        if dims.grid[1] != 1 || dims.grid[2] != 1 || dims.block[1] != 1 || dims.block[2] != 1 {
            return unsupported(format!(
                "only 1-D grids and blocks are emulated (grid {:?}, block {:?})",
                dims.grid, dims.block
            ));
        }
        let b = dims.block[0];
        if b == 0 || !b.is_multiple_of(32) || b > 1024 {
            return unsupported(format!(
                "blocks of {b} threads: the emulator needs a multiple of 32, at most 1024"
            ));
        }
        if dims.grid[0] == 0 {
            return Err(GpuError::rejected(kernel, "a grid of 0 blocks"));
        }
        if dims.shared_mem_bytes > 0 {
            return unsupported("dynamic shared memory is not emulated".into());
        }
        Ok(())
    }

    fn alloc(&self, bytes: usize) -> Result<EmuBuffer, GpuError> {
        let page = page_size();
        let len = bytes.max(1);
        // 16-byte granules keep int4 loads aligned; data ends at the guard page.
        let span = len.div_ceil(16) * 16;
        let data_pages = span.div_ceil(page) * page;
        let map_len = page + data_pages + page;
        // SAFETY: a fresh anonymous mapping; shared so that forked block processes (the
        // emulator's launch_concurrent) would see the same memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(GpuError::Driver {
                call: format!("mmap({map_len} bytes) for an emulated buffer"),
                code: None,
                message: std::io::Error::last_os_error().to_string(),
            });
        }
        let base = base as *mut u8;
        // SAFETY: both guard ranges lie inside the mapping just made.
        unsafe {
            libc::mprotect(base as *mut c_void, page, libc::PROT_NONE);
            libc::mprotect(
                base.add(page + data_pages) as *mut c_void,
                page,
                libc::PROT_NONE,
            );
        }
        // SAFETY: page + data_pages - span >= page, inside the writable part.
        let data = unsafe { base.add(page + data_pages - span) };
        Ok(EmuBuffer {
            base,
            map_len,
            data,
            len,
        })
    }

    fn len_bytes(&self, buf: &EmuBuffer) -> usize {
        buf.len
    }

    fn fill_bytes(&self, buf: &mut EmuBuffer, byte: u8) -> GpuResult {
        // SAFETY: `data` addresses `len` writable bytes owned by `buf`.
        unsafe { std::ptr::write_bytes(buf.data, byte, buf.len) };
        Ok(())
    }

    fn upload(&self, data: &[u8], buf: &mut EmuBuffer) -> GpuResult {
        if data.len() > buf.len {
            return Err(GpuError::Signature {
                kernel: "upload".into(),
                message: format!("{} bytes into a buffer of {}", data.len(), buf.len),
            });
        }
        // SAFETY: bounds checked above; the regions cannot overlap (host slice vs mapping).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.data, data.len()) };
        Ok(())
    }

    fn download(&self, buf: &EmuBuffer) -> Result<Vec<u8>, GpuError> {
        // SAFETY: `data` addresses `len` readable bytes owned by `buf`.
        Ok(unsafe { std::slice::from_raw_parts(buf.data, buf.len) }.to_vec())
    }

    unsafe fn launch(&self, f: &EmuFunction, dims: Dims, args: &[Arg<'_, EmuBuffer>]) -> GpuResult {
        self.prepare_launch(f, &f.name, &dims)?;
        let mut slots: Vec<Slot> = args
            .iter()
            .map(|a| match a {
                Arg::Buffer(b) => Slot::Ptr(b.data as *mut c_void),
                Arg::I32(v) => Slot::I32(*v),
                Arg::U32(v) => Slot::U32(*v),
                Arg::I64(v) => Slot::I64(*v),
                Arg::U64(v) => Slot::U64(*v),
                Arg::F32(v) => Slot::F32(*v),
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = slots.iter_mut().map(Slot::as_ptr).collect();
        // SAFETY: the launcher unpacks exactly the kernel's parameters from `ptrs`, each
        // pointing at a live slot of the right type (the caller's contract).
        unsafe { (f.launcher)(dims.grid[0], dims.block[0], ptrs.as_mut_ptr()) };
        Ok(())
    }

    fn synchronize(&self) -> GpuResult {
        Ok(())
    }

    fn timer(&self) -> Result<Option<WallClockTimer>, GpuError> {
        Ok(self.wall_clock.then_some(WallClockTimer {
            started: None,
            ms: None,
        }))
    }

    fn flush_caches(&self) -> GpuResult {
        Ok(())
    }

    fn clocks(&self) -> Option<crate::monitor::ClockReader> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CheckedKernel;

    const SAXPY: &str = r#"
extern "C" __global__ void axpy(const int* x, int* y, long long n, int a)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}
extern "C" __global__ void block_sum(const int* x, long long n, unsigned long long* out)
{
    __shared__ int s[256];
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? x[i] : 0;
    __syncthreads();
    if (threadIdx.x == 0) {
        long long t = 0;
        for (int k = 0; k < 256; ++k) t += s[k];
        atomicAdd(out, (unsigned long long)t);
    }
}
"#;

    fn i32s(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn emulated_kernels_compute_and_launches_are_checked() {
        let Ok(emu) = EmuBackend::new() else {
            eprintln!("skipped: no host C++ compiler");
            return;
        };
        let (module, _) = emu.compile(SAXPY, "saxpy.cu", None).unwrap();
        let sigs = parse_kernel_signatures(SAXPY);
        let axpy = CheckedKernel::new(&emu, &module, &sigs, "axpy").unwrap();
        let n = 1000usize;
        let xs: Vec<i32> = (0..n as i32).collect();
        let mut x = emu.alloc(n * 4).unwrap();
        let mut y = emu.alloc(n * 4).unwrap();
        emu.upload(&i32s(&xs), &mut x).unwrap();
        emu.fill_bytes(&mut y, 0).unwrap();
        axpy.launch(
            &emu,
            Dims::linear(4, 256),
            &[
                Arg::Buffer(&x),
                Arg::Buffer(&y),
                Arg::I64(n as i64),
                Arg::I32(3),
            ],
        )
        .unwrap();
        let got = emu.download(&y).unwrap();
        assert_eq!(&got[..8], &i32s(&[0, 3]));
        assert_eq!(&got[4 * 999..], &i32s(&[2997]));
        // A wrong argument kind is caught before the launch.
        let err = axpy
            .launch(
                &emu,
                Dims::linear(4, 256),
                &[Arg::Buffer(&x), Arg::Buffer(&y), Arg::I32(1), Arg::I32(3)],
            )
            .unwrap_err();
        assert!(matches!(err, GpuError::Signature { .. }), "{err}");
        let sum = CheckedKernel::new(&emu, &module, &sigs, "block_sum").unwrap();
        let mut out = emu.alloc(8).unwrap();
        emu.fill_bytes(&mut out, 0).unwrap();
        sum.launch(
            &emu,
            Dims::linear(4, 256),
            &[Arg::Buffer(&x), Arg::I64(n as i64), Arg::Buffer(&out)],
        )
        .unwrap();
        let total = u64::from_le_bytes(emu.download(&out).unwrap().try_into().unwrap());
        assert_eq!(total, (n as u64 - 1) * n as u64 / 2);
        // Shapes the emulator cannot run are the submission's launch problem, not a crash.
        let e = emu
            .prepare_launch(&axpy.function, "axpy", &Dims::linear(1, 48))
            .unwrap_err();
        assert!(e.is_submission_fault(), "{e}");
    }

    #[test]
    fn the_host_compile_cannot_read_files_outside_its_sandbox() {
        let Ok(emu) = EmuBackend::new() else {
            return eprintln!("skipped: no host C++ compiler");
        };
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("key.h");
        std::fs::write(&secret, "int key_4f2a = 1;\n").unwrap();
        // The source rules would refuse this; the backend compiles it to show the sandbox.
        let src = format!(
            "#include \"{}\"\nextern \"C\" __global__ void k(int* y) {{ y[0] = key_4f2a; }}\n",
            secret.display()
        );
        let ruleset = host_compile_ruleset(&emu.compiler, secret_dir.path()).unwrap();
        if !ruleset.sandbox().is_enforced() {
            return eprintln!("skipped: no Landlock on this kernel");
        }
        match emu.compile(&src, "solution.cu", None) {
            Err(GpuError::Compile { log, .. }) => {
                assert!(log.contains("Permission denied"), "{log}");
                assert!(!log.contains("key_4f2a = 1"), "{log}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("the host compiler read {}", secret.display()),
        }
    }

    #[test]
    fn compile_errors_carry_the_log_and_the_submission_name() {
        let Ok(emu) = EmuBackend::new() else {
            eprintln!("skipped: no host C++ compiler");
            return;
        };
        let bad = "extern \"C\" __global__ void k(int* y) { y[0] = undefined_thing; }";
        match emu.compile(bad, "attempt/solution.cu", None) {
            Err(GpuError::Compile { name, log, .. }) => {
                assert_eq!(name, "attempt/solution.cu");
                assert!(log.contains("undefined_thing"), "{log}");
                assert!(log.contains("attempt/solution.cu"), "{log}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("compiled"),
        }
    }

    #[test]
    fn buffers_end_at_a_guard_page() {
        let Ok(emu) = EmuBackend::new() else {
            return;
        };
        let b = emu.alloc(4096 * 3).unwrap();
        let end = b.data as usize + b.len.div_ceil(16) * 16;
        assert_eq!(end % page_size(), 0, "data ends at a page boundary");
        assert_eq!(b.data as usize % 16, 0, "16-byte aligned");
    }
}
