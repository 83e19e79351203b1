//! The scorer's own Rust evaluator: compile one submitted source file and run a problem's
//! tests, each step in a fresh sandbox, never in the scaffold's process (RE-Bench's evaluator
//! was imported into it, and was monkey-patched to always succeed).
//!
//! **Compile** ([`Evaluator::compile`]): a source of at most [`EvalLimits::source_bytes`] (a
//! larger one, or one with a NUL byte, is refused unread: not compiled), written as
//! `/work/solution.rs` into a fresh work folder, compiled with
//! `rustc --edition 2021 -O --crate-type bin` (std only: no `-L`, no `--extern`, no
//! `RUSTC_BOOTSTRAP`, so `#![feature]` and crates other than the sysroot's stable ones fail)
//! in the runner's sandbox ([`rdbench_runner::sandbox`]: bwrap's namespaces, no network,
//! seccomp, Landlock) under a deadline of 10 s, an address-space limit and a process limit,
//! as a user of its own when the scorer is root. The sandbox sees only the system folders
//! (`/usr`, `/lib`...: the linker), the toolchain read-only at [`TOOLCHAIN_INSIDE`] and the
//! work folder: no problem file, no `/etc` beyond the loader's cache, no home, so an
//! `include_str!` of a secret path finds nothing.
//!
//! **Toolchain** ([`Toolchain`]): the sysroot of `rustc` on the scorer's `PATH` (or
//! `$RDBENCH_RUSTC`). bwrap runs as the sandbox's user and must reach the folder it binds; a
//! rustup sysroot under a private `/root` is not reachable, so [`Toolchain::for_sandbox`]
//! stages the parts rustc needs (`bin/rustc`, `lib/*`, `lib/rustlib/<host>/`) into a cache
//! folder of the scorer's, hard-linked where the file system allows (no copy of the ~330 MB),
//! published by a rename.
//!
//! **Run** ([`Evaluator::evaluate`]): every test in its own sandbox (no state between tests):
//! an empty work folder the program cannot write (it belongs to the scorer, mode 0555), the
//! binary read-only at [`SOLUTION_INSIDE`], stdin fed from the test's input, a 1 MiB `/tmp`,
//! no network, 2 s of wall time over the whole process tree (the PID namespace ends every
//! process the program started), memory and process limits, stdout kept up to 1 MiB (more is a
//! failure, not a truncation). The output passes when `stdout.trim() == expected.trim()`
//! (METR compared `strip()`ped strings).
//!
//! **Result** ([`Evaluation`]) has METR's fields: `compiled`, `crashed` (a test exited
//! non-zero or by a signal), `timed_out`, a bounded `stderr`, the passed fraction of the
//! public, private and generated tests, the failed indices (in the order public, private,
//! generated) and `succeeded` (every test passed). Errors ([`EvalError`]) are the scorer's
//! own (no sandbox, no toolchain), never the submission's.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdbench_program::run::{run_user, WorkDir};
use rdbench_runner::sandbox::{Bind, Sandbox, User, WORK_DIR};
use rdbench_runner::{Command, Exit, Limits, Outcome, Output};
use serde::{Deserialize, Serialize};

use crate::problems::TestGroups;

/// Where the toolchain's sysroot is inside the compile sandbox.
pub const TOOLCHAIN_INSIDE: &str = "/opt/rust";
/// Where the compiled program is inside a test's sandbox.
pub const SOLUTION_INSIDE: &str = "/opt/solution";
const SOURCE_NAME: &str = "solution.rs";
const BINARY_NAME: &str = "solution";
/// Largest file the compiler may write (the binary, its temporary objects), bytes.
const COMPILE_FILE_BYTES: u64 = 256 << 20;

/// The evaluator's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalLimits {
    /// Largest source accepted, bytes.
    pub source_bytes: usize,
    /// Wall-clock limit of rustc (with the linker), over its whole process tree.
    pub compile_deadline: Duration,
    /// Address space of each compiler process, bytes.
    pub compile_address_space: u64,
    /// Processes and threads of the compile's user.
    pub compile_processes: u64,
    /// Wall-clock limit of one test.
    pub test_deadline: Duration,
    /// Address space of each process of a test, bytes.
    pub test_address_space: u64,
    /// Processes and threads of a test's user.
    pub test_processes: u64,
    /// Most stdout a test may print, bytes: more fails the test.
    pub output_bytes: usize,
    /// Bytes of stderr kept in [`Evaluation::stderr`] (compiler's and tests').
    pub stderr_bytes: usize,
    /// Size of a test's `/tmp`, and the largest file it may write, bytes.
    pub test_tmp_bytes: u64,
}

impl Default for EvalLimits {
    fn default() -> EvalLimits {
        EvalLimits {
            source_bytes: 64 << 10,
            compile_deadline: Duration::from_secs(10),
            compile_address_space: 4 << 30,
            compile_processes: 64,
            test_deadline: Duration::from_secs(2),
            test_address_space: 1 << 30,
            test_processes: 16,
            output_bytes: 1 << 20,
            stderr_bytes: 4 << 10,
            test_tmp_bytes: 1 << 20,
        }
    }
}

/// The scorer's failures (never a submission's).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("running {what}: {source}")]
    Run {
        what: String,
        #[source]
        source: rdbench_runner::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the Rust toolchain: {0}")]
    Toolchain(String),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EvalError {
    let path = path.to_path_buf();
    move |source| EvalError::Io { what, path, source }
}

/// A Rust toolchain: its sysroot, host triple and version line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub sysroot: PathBuf,
    pub host: String,
    pub version: String,
}

impl Toolchain {
    /// The toolchain of `$RDBENCH_RUSTC`, else of `rustc` on the `PATH`.
    pub fn locate() -> Result<Toolchain, EvalError> {
        let rustc = std::env::var_os("RDBENCH_RUSTC").unwrap_or_else(|| "rustc".into());
        let sysroot = ask_rustc(&rustc, &["--print", "sysroot"])?;
        let verbose = ask_rustc(&rustc, &["-vV"])?;
        let field = |name: &str| {
            verbose
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| EvalError::Toolchain(format!("`rustc -vV` has no {name}")))
        };
        Ok(Toolchain {
            sysroot: PathBuf::from(sysroot.trim()),
            host: field("host:")?,
            version: field("release:")?,
        })
    }

    /// Whether every user may reach the sysroot (each folder above it searchable by others),
    /// so the sandbox can bind it as it is.
    pub fn reachable_by_others(&self) -> bool {
        self.sysroot
            .ancestors()
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    }

    /// This toolchain, or a staged copy of what rustc needs under `cache` (a folder of the
    /// scorer's, created searchable by others) when the sysroot is not reachable by others.
    pub fn for_sandbox(&self, cache: &Path) -> Result<Toolchain, EvalError> {
        if self.reachable_by_others() {
            return Ok(self.clone());
        }
        ensure_private_cache(cache)?;
        let staged = cache.join(format!("rust-{}-{}", self.version, self.host));
        if !staged.exists() {
            let partial = cache.join(format!(".rust-staging-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&partial);
            let rustlib = Path::new("lib/rustlib").join(&self.host);
            for part in [Path::new("bin/rustc"), Path::new("lib"), &rustlib] {
                link_tree(
                    &self.sysroot.join(part),
                    &partial.join(part),
                    part == Path::new("lib"),
                )?;
            }
            // Folders made above the linked files got the process's umask (a scorer's is 077).
            open_folders(&partial)?;
            // Another process may have published the same toolchain meanwhile: either copy is
            // the same, and the loser's is removed.
            if std::fs::rename(&partial, &staged).is_err() {
                let _ = std::fs::remove_dir_all(&partial);
            }
        }
        let meta = std::fs::symlink_metadata(&staged)
            .map_err(io_error("the staged toolchain", &staged))?;
        if meta.uid() != rdbench_core::fsutil::effective_uid() || !meta.is_dir() {
            return Err(EvalError::Toolchain(format!(
                "{} is not a folder of this user's",
                staged.display()
            )));
        }
        // Staged by an earlier version under a private umask: open it now.
        if meta.permissions().mode() & 0o777 != 0o755 {
            open_folders(&staged)?;
        }
        Ok(Toolchain {
            sysroot: staged,
            ..self.clone()
        })
    }
}

fn ask_rustc(rustc: &OsStr, args: &[&str]) -> Result<String, EvalError> {
    let mut cmd = Command::new(rustc);
    cmd.args(args)
        .stdout(Output::Capture { tail: 64 << 10 })
        .stderr(Output::Capture { tail: 4 << 10 })
        .deadline(Duration::from_secs(60));
    let what = format!("{} {}", rustc.to_string_lossy(), args.join(" "));
    let o = cmd.run().map_err(|source| EvalError::Run {
        what: what.clone(),
        source,
    })?;
    if o.exit != Exit::Exited(0) {
        return Err(EvalError::Toolchain(format!(
            "{what} {}: {}",
            o.exit,
            o.stderr.text()
        )));
    }
    Ok(o.stdout.text())
}

/// Makes `cache` if needed and checks that it is this user's and writable by no one else (so
/// no one can swap the staged compiler), and searchable by others (bwrap runs as the sandbox's
/// user).
fn ensure_private_cache(cache: &Path) -> Result<(), EvalError> {
    match std::fs::create_dir(cache) {
        Ok(()) => std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o755))
            .map_err(io_error("the toolchain cache", cache))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("the toolchain cache", cache)(e)),
    }
    let meta = std::fs::symlink_metadata(cache).map_err(io_error("the toolchain cache", cache))?;
    let mode = meta.permissions().mode();
    if !meta.is_dir() || meta.uid() != rdbench_core::fsutil::effective_uid() || mode & 0o022 != 0 {
        return Err(EvalError::Toolchain(format!(
            "the cache {} must be a folder of this user's that no one else can write (mode {mode:o})",
            cache.display()
        )));
    }
    Ok(())
}

/// Makes every folder of the tree at `dir` readable and searchable by all (mode 0755).
fn open_folders(dir: &Path) -> Result<(), EvalError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_error("staging", dir))?;
    for entry in std::fs::read_dir(dir).map_err(io_error("staging", dir))? {
        let entry = entry.map_err(io_error("staging", dir))?;
        if entry
            .file_type()
            .map_err(io_error("staging", dir))?
            .is_dir()
        {
            open_folders(&entry.path())?;
        }
    }
    Ok(())
}

/// Recreates `from` at `to`: folders made readable by all, files hard-linked (copied where a
/// link is refused), symbolic links as they are. With `shallow`, a folder's subfolders are
/// skipped (the sysroot's `lib` holds `rustlib` for every target; only the host's is taken).
fn link_tree(from: &Path, to: &Path, shallow: bool) -> Result<(), EvalError> {
    let meta = std::fs::symlink_metadata(from).map_err(io_error("the sysroot's", from))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("staging", parent))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(io_error("the sysroot's link", from))?;
        std::os::unix::fs::symlink(target, to).map_err(io_error("staging the link", to))
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(io_error("staging", to))?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
            .map_err(io_error("staging", to))?;
        for entry in std::fs::read_dir(from).map_err(io_error("the sysroot's", from))? {
            let entry = entry.map_err(io_error("the sysroot's", from))?;
            let is_dir = entry
                .file_type()
                .map_err(io_error("the sysroot's", from))?
                .is_dir();
            if !(shallow && is_dir) {
                link_tree(&entry.path(), &to.join(entry.file_name()), false)?;
            }
        }
        Ok(())
    } else {
        std::fs::hard_link(from, to)
            .or_else(|_| std::fs::copy(from, to).map(drop))
            .map_err(io_error("staging the file", to))
    }
}

/// What the evaluator reports for one source and problem: METR's fields, and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub compiled: bool,
    pub crashed: bool,
    pub timed_out: bool,
    /// The compiler's stderr, or the first failing test's (the tail, bounded).
    pub stderr: String,
    pub frac_public_tests_passed: f64,
    pub frac_private_tests_passed: f64,
    pub frac_generated_tests_passed: f64,
    /// Failed tests, indexed over public, then private, then generated tests.
    pub failed_test_idxs: Vec<usize>,
    pub succeeded: bool,
    /// Wall time of the compile, seconds.
    pub compile_seconds: f64,
    /// Wall time of all test runs, seconds.
    pub tests_seconds: f64,
}

/// A compiled program, in a folder of the scorer's that test sandboxes bind read-only.
pub struct Compiled {
    dir: tempfile::TempDir,
}

impl Drop for Compiled {
    fn drop(&mut self) {
        // The folder was made read-only for the tests: an unprivileged scorer could not remove
        // the binary from it (TempDir's drop, after this) without its write right back.
        let _ = std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o700));
    }
}

/// How one compile ended.
pub enum CompileOutcome {
    Compiled(Compiled),
    /// Refused unread, or rustc failed (its stderr's tail, or why it was refused).
    Failed {
        stderr: String,
    },
}

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    WrongAnswer,
    Crashed,
    TimedOut,
}

/// Compiles and tests Rust sources with one toolchain and one set of limits.
#[derive(Debug, Clone)]
pub struct Evaluator {
    toolchain: Toolchain,
    limits: EvalLimits,
}

impl Evaluator {
    /// An evaluator with `toolchain` (as [`Toolchain::for_sandbox`] gives it).
    pub fn new(toolchain: Toolchain, limits: EvalLimits) -> Evaluator {
        Evaluator { toolchain, limits }
    }

    pub fn limits(&self) -> &EvalLimits {
        &self.limits
    }

    /// Compiles `source` and runs all of `problem`'s tests.
    pub fn evaluate(
        &self,
        source: &str,
        problem: &impl TestGroups,
    ) -> Result<Evaluation, EvalError> {
        let started = Instant::now();
        let compiled = self.compile(source)?;
        let compile_seconds = started.elapsed().as_secs_f64();
        let groups = problem.test_groups().map(|t| t.len());
        let total: usize = groups.iter().sum();
        let compiled = match compiled {
            CompileOutcome::Compiled(c) => c,
            CompileOutcome::Failed { stderr } => {
                return Ok(Evaluation {
                    compiled: false,
                    crashed: false,
                    timed_out: false,
                    stderr,
                    frac_public_tests_passed: 0.0,
                    frac_private_tests_passed: 0.0,
                    frac_generated_tests_passed: 0.0,
                    failed_test_idxs: (0..total).collect(),
                    succeeded: false,
                    compile_seconds,
                    tests_seconds: 0.0,
                })
            }
        };
        let started = Instant::now();
        let mut verdicts = Vec::with_capacity(total);
        let mut stderr = String::new();
        for (input, expected) in problem.all_tests() {
            let (verdict, test_stderr) = self.run_test(&compiled, input, expected)?;
            if verdict != Verdict::Passed && stderr.is_empty() {
                stderr = test_stderr;
            }
            verdicts.push(verdict);
        }
        let tests_seconds = started.elapsed().as_secs_f64();
        let mut fractions = [0.0; 3];
        let mut start = 0;
        for (fraction, &len) in fractions.iter_mut().zip(&groups) {
            let passed = verdicts[start..start + len]
                .iter()
                .filter(|&&v| v == Verdict::Passed)
                .count();
            // An empty group has nothing to fail.
            *fraction = if len == 0 {
                1.0
            } else {
                passed as f64 / len as f64
            };
            start += len;
        }
        let failed_test_idxs: Vec<usize> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != Verdict::Passed)
            .map(|(i, _)| i)
            .collect();
        Ok(Evaluation {
            compiled: true,
            crashed: verdicts.contains(&Verdict::Crashed),
            timed_out: verdicts.contains(&Verdict::TimedOut),
            stderr,
            frac_public_tests_passed: fractions[0],
            frac_private_tests_passed: fractions[1],
            frac_generated_tests_passed: fractions[2],
            succeeded: failed_test_idxs.is_empty(),
            failed_test_idxs,
            compile_seconds,
            tests_seconds,
        })
    }

    /// Compiles `source` in the compile sandbox.
    pub fn compile(&self, source: &str) -> Result<CompileOutcome, EvalError> {
        if source.len() > self.limits.source_bytes {
            return Ok(CompileOutcome::Failed {
                stderr: format!(
                    "refused: the source has {} bytes, more than the limit of {}",
                    source.len(),
                    self.limits.source_bytes
                ),
            });
        }
        if source.contains('\0') {
            return Ok(CompileOutcome::Failed {
                stderr: "refused: the source holds a NUL byte".into(),
            });
        }
        let user = run_user();
        let work = WorkDir::new(user).map_err(io_error("a work folder", &std::env::temp_dir()))?;
        let source_path = work.path().join(SOURCE_NAME);
        std::fs::write(&source_path, source).map_err(io_error("writing", &source_path))?;
        work.give_to_user()
            .map_err(io_error("handing over", work.path()))?;

        let mut sandbox = self.sandbox(work.path(), user);
        sandbox
            .read_only
            .push(Bind::new(&self.toolchain.sysroot, TOOLCHAIN_INSIDE));
        sandbox.env.insert(
            "PATH".into(),
            format!("{TOOLCHAIN_INSIDE}/bin:/usr/bin:/bin"),
        );
        let mut cmd = Command::new("rustc");
        cmd.args(["--edition", "2021", "-O", "--crate-type", "bin", "-o"])
            .arg(format!("{WORK_DIR}/{BINARY_NAME}"))
            .arg(format!("{WORK_DIR}/{SOURCE_NAME}"))
            .stdout(Output::Null)
            .stderr(Output::Capture {
                tail: self.limits.stderr_bytes,
            })
            .limits(Limits {
                address_space: Some(self.limits.compile_address_space),
                file_size: Some(COMPILE_FILE_BYTES),
                processes: Some(self.limits.compile_processes),
                ..Limits::default()
            })
            .deadline(self.limits.compile_deadline)
            .sandbox(sandbox);
        let o = run("rustc", &mut cmd)?;
        let binary = work.path().join(BINARY_NAME);
        if o.exit != Exit::Exited(0) {
            let why = match o.exit {
                Exit::TimedOut => format!(
                    "compilation exceeded its {} s deadline\n",
                    self.limits.compile_deadline.as_secs_f64()
                ),
                other => format!("rustc {other}\n"),
            };
            return Ok(CompileOutcome::Failed {
                stderr: why + &o.stderr.text(),
            });
        }
        // The binary moves to a folder of the scorer's that every test's user may read and
        // none may write; the compile's folder (the compile user's) goes.
        let dir = tempfile::Builder::new()
            .prefix("rdbench-solution-")
            .tempdir()
            .map_err(io_error("a solution folder", &std::env::temp_dir()))?;
        let kept = dir.path().join(BINARY_NAME);
        std::fs::copy(&binary, &kept).map_err(io_error("copying the binary", &binary))?;
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o555))
            .map_err(io_error("the binary", &kept))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555))
            .map_err(io_error("the solution folder", dir.path()))?;
        Ok(CompileOutcome::Compiled(Compiled { dir }))
    }

    /// Runs `compiled` on one input in a fresh sandbox.
    fn run_test(
        &self,
        compiled: &Compiled,
        input: &str,
        expected: &str,
    ) -> Result<(Verdict, String), EvalError> {
        let user = run_user();
        let work = WorkDir::new(user).map_err(io_error("a work folder", &std::env::temp_dir()))?;
        // Not handed to the user: the program may enter its folder, not write in it.
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o555))
            .map_err(io_error("the work folder", work.path()))?;
        let mut sandbox = self.sandbox(work.path(), user);
        sandbox.tmp_size = self.limits.test_tmp_bytes;
        sandbox
            .read_only
            .push(Bind::new(compiled.dir.path(), SOLUTION_INSIDE));
        let mut cmd = Command::new(format!("{SOLUTION_INSIDE}/{BINARY_NAME}"));
        cmd.stdin_bytes(input.as_bytes().to_vec())
            .stdout(Output::Capture {
                tail: self.limits.output_bytes,
            })
            .stderr(Output::Capture {
                tail: self.limits.stderr_bytes,
            })
            .limits(Limits {
                address_space: Some(self.limits.test_address_space),
                file_size: Some(self.limits.test_tmp_bytes),
                processes: Some(self.limits.test_processes),
                open_files: Some(64),
                ..Limits::default()
            })
            .deadline(self.limits.test_deadline)
            .sandbox(sandbox);
        let o = run("a test", &mut cmd)?;
        let verdict = match o.exit {
            Exit::TimedOut => Verdict::TimedOut,
            Exit::Exited(0) if !o.stdout.complete() => Verdict::WrongAnswer,
            Exit::Exited(0) if o.stdout.text().trim() == expected.trim() => Verdict::Passed,
            Exit::Exited(0) => Verdict::WrongAnswer,
            _ => Verdict::Crashed,
        };
        let stderr = match verdict {
            Verdict::Passed => String::new(),
            Verdict::WrongAnswer if !o.stdout.complete() => format!(
                "the output exceeded {} bytes\n{}",
                self.limits.output_bytes,
                o.stderr.text()
            ),
            _ => format!("{}\n{}", o.exit, o.stderr.text()),
        };
        Ok((verdict, stderr))
    }

    /// The sandbox both steps share: the system's folders, the work folder, nothing else.
    fn sandbox(&self, work: &Path, user: Option<User>) -> Sandbox {
        let mut sandbox = Sandbox::new(work);
        sandbox.user = user;
        sandbox
    }
}

fn run(what: &str, cmd: &mut Command<'_>) -> Result<Outcome, EvalError> {
    cmd.run().map_err(|source| EvalError::Run {
        what: what.to_string(),
        source,
    })
}
