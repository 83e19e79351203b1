//! A compiler child that can open no file of value: a Landlock ruleset that allows reading
//! (and mapping as code) only the folders the compiler itself needs.
//!
//! Why, when [`crate::source_rules`] already refuses every include: that check is a tokenizer
//! that must agree with two compilers on every corner of the C++ translation phases; a miss
//! would let NVRTC read a file for the agent and quote it in the log the agent reads (the
//! service's `/proc/self/environ`, its installation key). Under this ruleset the compiler
//! cannot open such a file even if the source asked it to, so the tokenizer is no longer the
//! only thing between the agent and the scorer's files.
//!
//! - **NVRTC child** ([`restrict_nvrtc_child`]): NVRTC `dlopen`s `libnvrtc-builtins` from
//!   its own folder lazily, at the first compile. It is loaded eagerly here (with `libcuda`,
//!   which NVRTC looks for too, when present), and then the process may read only that
//!   folder. Network access (TCP/UDP) and signals or abstract sockets outside the process are
//!   refused too, as far as the kernel's Landlock version allows.
//! - **Emulator's host compiler** ([`PreparedRuleset`]): the driver, `cc1plus`, `as` and `ld`
//!   need the system's toolchain folders and the build folder; the ruleset is made before the
//!   fork and applied between fork and exec with two raw system calls.
//!
//! Landlock hides file *contents*, not existence (`stat` is not mediated): a probe such as
//! `__has_include` is refused by the source rules alone. Without Landlock (a kernel before
//! 5.13, or one built without it) the status says [`Sandbox::Unavailable`] and the caller
//! records it; the compile itself runs the same way, and the source rules still hold.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

/// The Landlock version whose rights are requested; a kernel with an older one enforces the
/// subset it knows (every version mediates reading files).
const TARGET_ABI: ABI = ABI::V6;

/// Whether a compiler child ran sandboxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "sandbox", rename_all = "snake_case")]
pub enum Sandbox {
    /// Landlock enforced: the process reads only the allowed folders.
    Landlock {
        /// `false` when the kernel knows an older Landlock than requested (reading is
        /// mediated by every version; newer rights such as networking may be missing).
        full: bool,
    },
    /// No sandbox: why (the source rules still apply).
    Unavailable { why: String },
}

impl Sandbox {
    #[cfg(test)]
    pub fn is_enforced(&self) -> bool {
        matches!(self, Sandbox::Landlock { .. })
    }
}

/// Why a sandbox could not be set up where the kernel supports one.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("opening {path} for the compiler's sandbox: {source}")]
    Path {
        path: PathBuf,
        source: landlock::PathFdError,
    },
    #[error("building the compiler's Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
}

/// Rights over the allowed folders: read files and list folders, map libraries (execute is
/// for `execve`; mapping needs only read, execute is added for the emulator's toolchain).
fn read_rights() -> landlock::BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute
}

/// A ruleset that handles every filesystem and network right of [`TARGET_ABI`] and the
/// scopes, allowing `read` folders to be read and `write` folders to be written as well.
/// Paths that do not exist are skipped (a toolchain without `/lib64`); a path may be a file.
fn build(read: &[&Path], write: &[&Path]) -> Result<RulesetCreated, SandboxError> {
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))?
        .handle_access(AccessNet::from_all(TARGET_ABI))?
        .scope(Scope::from_all(TARGET_ABI))?
        .create()?;
    let rules = read
        .iter()
        .map(|p| (*p, read_rights()))
        .chain(write.iter().map(|p| (*p, AccessFs::from_all(TARGET_ABI))));
    for (path, rights) in rules {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        // A single file (`/dev/null`, `/etc/ld.so.cache`) takes only file rights.
        let rights = if meta.is_dir() {
            rights
        } else {
            rights & AccessFs::from_file(TARGET_ABI)
        };
        let fd = PathFd::new(path).map_err(|source| SandboxError::Path {
            path: path.into(),
            source,
        })?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, rights))?;
    }
    Ok(ruleset)
}

/// Restricts the calling thread (and every thread and child it starts from now on) to
/// reading `read` and reading and writing `write`.
pub fn restrict_self(read: &[&Path], write: &[&Path]) -> Result<Sandbox, SandboxError> {
    let status = build(read, write)?.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Sandbox::Landlock { full: true },
        RulesetStatus::PartiallyEnforced => Sandbox::Landlock { full: false },
        RulesetStatus::NotEnforced => Sandbox::Unavailable {
            why: format!("Landlock is not available ({:?})", status.landlock),
        },
    })
}

/// Before NVRTC compiles anything in this (child) process: loads what NVRTC would load
/// lazily from `libnvrtc`'s folder, then restricts the process to reading that folder.
/// Call on the main thread before any other thread starts.
pub fn restrict_nvrtc_child(libnvrtc: &Path) -> Result<Sandbox, SandboxError> {
    let dir = libnvrtc.parent().unwrap_or(Path::new("/"));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("libnvrtc-builtins.so") {
                preload(&entry.path());
            }
        }
    }
    // NVRTC also looks for the driver while compiling; loaded here, it is found by name.
    preload(Path::new("libcuda.so.1"));
    restrict_self(&[dir], &[])
}

/// Loads a library for good, ignoring failure (a missing one is looked for and not found
/// later, as without the sandbox).
fn preload(path: &Path) {
    // SAFETY: NVRTC's own builtins and the driver library, which NVRTC loads itself.
    if let Ok(lib) = unsafe { libloading::Library::new(path) } {
        std::mem::forget(lib);
    }
}

/// The kernel's Landlock version (0 or negative without Landlock).
fn kernel_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no ruleset and writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        ) as i64
    }
}

/// A ruleset made before a fork, applied in the child between fork and exec, where only
/// async-signal-safe calls are allowed (so no allocation: two raw system calls).
#[derive(Debug)]
pub struct PreparedRuleset {
    /// `None` where the kernel has no Landlock.
    fd: Option<OwnedFd>,
}

impl PreparedRuleset {
    pub fn new(read: &[&Path], write: &[&Path]) -> Result<PreparedRuleset, SandboxError> {
        let fd: Option<OwnedFd> = build(read, write)?.into();
        Ok(PreparedRuleset { fd })
    }

    pub fn sandbox(&self) -> Sandbox {
        match self.fd {
            Some(_) => Sandbox::Landlock {
                full: kernel_abi() >= TARGET_ABI as i64,
            },
            None => Sandbox::Unavailable {
                why: "Landlock is not available".into(),
            },
        }
    }

    /// Applies the ruleset to the calling process. Async-signal-safe: for `pre_exec`.
    pub fn apply_in_child(&self) -> std::io::Result<()> {
        let Some(fd) = &self.fd else {
            return Ok(());
        };
        // SAFETY: prctl and landlock_restrict_self on a ruleset fd this process owns.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in a re-run of this test binary that plays the sandboxed child.
    const CHILD_ENV: &str = "RDBENCH_SANDBOX_TEST_CHILD";

    /// Runs the test `name` of this binary again as a child with `vars`, returning its output.
    fn rerun(name: &str, vars: &[(&str, &Path)]) -> String {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "the child failed:\n{text}");
        text
    }

    fn outcome(path: &Path) -> String {
        match std::fs::read(path) {
            Ok(_) => "read".into(),
            Err(e) => format!("{:?}", e.kind()),
        }
    }

    #[test]
    fn a_restricted_process_reads_only_the_allowed_folders() {
        if let Some(allowed) =
            std::env::var_os("ALLOWED").filter(|_| std::env::var_os(CHILD_ENV).is_some())
        {
            let allowed = PathBuf::from(allowed);
            let secret = PathBuf::from(std::env::var_os("SECRET").unwrap());
            let status = restrict_self(&[&allowed], &[]).unwrap();
            println!("STATUS {status:?}");
            for (what, path) in [
                ("allowed", allowed.join("ok.txt")),
                ("secret", secret),
                ("environ", PathBuf::from("/proc/self/environ")),
                ("passwd", PathBuf::from("/etc/passwd")),
            ] {
                println!("OPEN {what} {}", outcome(&path));
            }
            // A thread started afterwards is restricted too (NVRTC compiles on one).
            let later = std::thread::spawn(|| outcome(Path::new("/etc/passwd")))
                .join()
                .unwrap();
            println!("OPEN thread {later}");
            return;
        }
        let allowed = tempfile::tempdir().unwrap();
        std::fs::write(allowed.path().join("ok.txt"), "fine").unwrap();
        let other = tempfile::tempdir().unwrap();
        let secret = other.path().join("key");
        std::fs::write(&secret, "the installation key").unwrap();
        let out = rerun(
            "nvrtc::sandbox::tests::a_restricted_process_reads_only_the_allowed_folders",
            &[("ALLOWED", allowed.path()), ("SECRET", &secret)],
        );
        if out.contains("STATUS Unavailable") {
            return eprintln!("skipped: no Landlock on this kernel\n{out}");
        }
        assert!(out.contains("STATUS Landlock"), "{out}");
        assert!(out.contains("OPEN allowed read"), "{out}");
        for what in ["secret", "environ", "passwd", "thread"] {
            assert!(
                out.contains(&format!("OPEN {what} PermissionDenied")),
                "{what}: {out}"
            );
        }
    }

    #[test]
    fn a_prepared_ruleset_restricts_an_execed_program() {
        let allowed = tempfile::tempdir().unwrap();
        std::fs::write(allowed.path().join("ok.txt"), "fine").unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("key"), "the installation key").unwrap();
        let system: Vec<&Path> = ["/bin", "/usr", "/lib", "/lib64", "/etc/ld.so.cache"]
            .iter()
            .map(Path::new)
            .chain([allowed.path()])
            .collect();
        let ruleset = PreparedRuleset::new(&system, &[]).unwrap();
        if !ruleset.sandbox().is_enforced() {
            return eprintln!("skipped: no Landlock on this kernel");
        }
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(format!(
            "cat {}/ok.txt; echo; cat {}/key || echo denied",
            allowed.path().display(),
            other.path().display()
        ));
        use std::os::unix::process::CommandExt;
        // SAFETY: apply_in_child makes only async-signal-safe system calls.
        unsafe { cmd.pre_exec(move || ruleset.apply_in_child()) };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, "fine\ndenied\n", "{text}");
    }

    /// NVRTC itself, restricted: a source that includes a file outside the allowed folder
    /// (here bypassing the source rules) cannot read it, and normal sources still compile.
    #[test]
    fn nvrtc_in_the_sandbox_compiles_but_cannot_open_files() {
        use crate::nvrtc::{compile_uncached, Output};
        use crate::GpuError;
        if std::env::var_os(CHILD_ENV).is_some() {
            let Some(secret) = std::env::var_os("SECRET") else {
                return;
            };
            let lib = crate::probe::probe().libnvrtc.path.clone().unwrap();
            let status = restrict_nvrtc_child(&lib).unwrap();
            println!("STATUS {status:?}");
            let flags = ["--gpu-architecture=sm_80".to_string()];
            let good = "extern \"C\" __global__ void k(int* x) { x[0] = 1; }\n";
            match compile_uncached(good, "good.cu", &flags, Output::Cubin) {
                Ok((image, _)) => println!("GOOD {}", image.len()),
                Err(e) => println!("GOOD failed: {e}"),
            }
            let bad = format!(
                "#include \"{}\"\nextern \"C\" __global__ void k(int* x) {{ x[0] = 1; }}\n",
                secret.to_string_lossy()
            );
            match compile_uncached(&bad, "bad.cu", &flags, Output::Cubin) {
                Ok(_) => println!("BAD compiled"),
                Err(e) => println!("BAD {e}"),
            }
            return;
        }
        if crate::probe::require_nvrtc().is_err() {
            return eprintln!("skipped: NVRTC not installed");
        }
        let other = tempfile::tempdir().unwrap();
        let secret = other.path().join("key.h");
        std::fs::write(&secret, "this_is_the_installation_key_4f2a;\n").unwrap();
        let out = rerun(
            "nvrtc::sandbox::tests::nvrtc_in_the_sandbox_compiles_but_cannot_open_files",
            &[("SECRET", &secret)],
        );
        eprintln!("{out}");
        if out.contains("STATUS Unavailable") {
            return eprintln!("skipped: no Landlock on this kernel");
        }
        // Unrestricted, the same source is read: NVRTC opens the file (its lines are then
        // filtered out of the log), so the sandbox is what made the difference below.
        let bad = format!(
            "#include \"{}\"\nextern \"C\" __global__ void k(int* x) {{ x[0] = 1; }}\n",
            secret.display()
        );
        let flags = ["--gpu-architecture=sm_80".to_string()];
        match compile_uncached(&bad, "bad.cu", &flags, Output::Cubin) {
            Err(GpuError::Compile { log, .. }) => {
                assert!(!log.contains("cannot open source file"), "{log}");
                assert!(!log.contains("4f2a"), "filtered: {log}");
                assert!(log.contains("removed"), "{log}");
            }
            other => panic!("{other:?}"),
        }
        assert!(out.contains("GOOD "), "{out}");
        assert!(!out.contains("GOOD failed"), "{out}");
        assert!(out.contains("BAD "), "{out}");
        assert!(!out.contains("BAD compiled"), "{out}");
        assert!(
            out.contains("cannot open source file"),
            "NVRTC could not open it: {out}"
        );
        assert!(!out.contains("4f2a"), "the file's content leaked: {out}");
    }
}
