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
//! 5.13, or one built without it) the NVRTC child falls back to [`restrict_by_namespace`]: a
//! new user and mount namespace whose root is an empty tmpfs holding only NVRTC's folder,
//! read-only (which hides existence too). Where that is not possible either (no unprivileged
//! user namespaces), the status says [`Sandbox::Unavailable`] and the caller records it; the
//! compile runs the same way, and the source rules still hold. The emulator's host compile
//! has no such fallback: its toolchain is spread over the system.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{Access, AccessFs, RulesetCreated, RulesetCreatedAttr, RulesetStatus};
use serde::{Deserialize, Serialize};

use rdbench_runner::landlock_rules::{deny_all, path_rule, TARGET_ABI};

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
    /// Without Landlock: a new user and mount namespace whose root is an empty tmpfs that
    /// holds only the allowed folder, read-only (no `/proc`, no home, no `/etc`).
    Namespace,
    /// No sandbox: why (the source rules still apply).
    Unavailable { why: String },
}

impl Sandbox {
    #[cfg(test)]
    pub fn is_enforced(&self) -> bool {
        matches!(self, Sandbox::Landlock { .. } | Sandbox::Namespace)
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
    #[error("moving the compiler into an empty mount namespace: {0}")]
    Namespace(NamespaceError),
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
    let mut ruleset = deny_all()?;
    let rules = read
        .iter()
        .map(|p| (*p, read_rights()))
        .chain(write.iter().map(|p| (*p, AccessFs::from_all(TARGET_ABI))));
    for (path, rights) in rules {
        let Some(rule) = path_rule(path, rights) else {
            continue;
        };
        let rule = rule.map_err(|source| SandboxError::Path {
            path: path.into(),
            source,
        })?;
        ruleset = ruleset.add_rule(rule)?;
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
    let dir = preload_nvrtc(libnvrtc);
    match restrict_self(&[dir], &[])? {
        Sandbox::Unavailable { why } => match restrict_by_namespace(dir) {
            Ok(()) => Ok(Sandbox::Namespace),
            Err(e) if e.entered => Err(SandboxError::Namespace(e)),
            Err(e) => Ok(Sandbox::Unavailable {
                why: format!("{why}; an empty mount namespace could not be made either: {e}"),
            }),
        },
        enforced => Ok(enforced),
    }
}

/// Loads what NVRTC would load lazily while compiling; returns `libnvrtc`'s folder.
fn preload_nvrtc(libnvrtc: &Path) -> &Path {
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
    dir
}

/// The fallback without Landlock: moves this process into a new user and mount namespace
/// whose root is an empty tmpfs holding only `dir`, bind-mounted read-only at its own path.
/// Needs a single-threaded caller (a user namespace requires it) and unprivileged user
/// namespaces. An error with `entered: false` left the process as it was; with `entered:
/// true` the process is half-way (its view of the files changed) and must not compile.
pub fn restrict_by_namespace(dir: &Path) -> Result<(), NamespaceError> {
    // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let dir = dir
        .canonicalize()
        .map_err(|e| NamespaceError::new(false, e))?;
    // SAFETY: unshare affects only this process.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        return Err(NamespaceError::new(false, std::io::Error::last_os_error()));
    }
    enter_empty_root(&dir, uid, gid).map_err(|e| NamespaceError::new(true, e))
}

/// Why [`restrict_by_namespace`] failed, and whether the process had entered the namespace.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", if *.entered { " (after entering the namespace)" } else { "" })]
pub struct NamespaceError {
    pub entered: bool,
    pub source: std::io::Error,
}

impl NamespaceError {
    fn new(entered: bool, source: std::io::Error) -> Self {
        NamespaceError { entered, source }
    }
}

/// Inside a fresh user and mount namespace: maps this user to itself, then pivots to an
/// empty tmpfs root holding only `dir`, read-only.
fn enter_empty_root(dir: &Path, uid: libc::uid_t, gid: libc::gid_t) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let os = |step: &str, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            let e = std::io::Error::last_os_error();
            Err(std::io::Error::new(e.kind(), format!("{step}: {e}")))
        }
    };
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("a NUL in a path"))
    };
    // Without a mapping, files created in the namespace would belong to no one (EOVERFLOW).
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    std::fs::write("/proc/self/setgroups", "deny\n")?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    let new_root = Path::new("/tmp");
    let inside = new_root.join(dir.strip_prefix("/").unwrap_or(dir));
    let (root, old, target) = (c(new_root)?, c(&new_root.join("old"))?, c(&inside)?);
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY (every block below): plain system calls on NUL-terminated paths that outlive them.
    unsafe {
        // Nothing done here propagates back to the scorer's mount namespace.
        let private = libc::MS_REC | libc::MS_PRIVATE;
        let rc = libc::mount(none, c"/".as_ptr(), none, private, std::ptr::null());
        os("making / private", rc)?;
    }
    // Opened in the new namespace (a mount of another namespace cannot be bound), before
    // /tmp is covered (the folder may live under /tmp).
    let held = std::fs::File::open(dir)?;
    let source = c(Path::new(&format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&held)
    )))?;
    unsafe {
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        let opts = c"size=1m,mode=0755";
        let rc = libc::mount(
            c"rdbench".as_ptr(),
            root.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            opts.as_ptr().cast(),
        );
        os("mounting the tmpfs", rc)?;
    }
    std::fs::create_dir_all(&inside)?;
    std::fs::create_dir_all(new_root.join("old"))?;
    unsafe {
        let bind = libc::MS_BIND | libc::MS_REC;
        let rc = libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            none,
            bind,
            std::ptr::null(),
        );
        os("binding the folder", rc)?;
        let ro =
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        let rc = libc::mount(none, target.as_ptr(), none, ro, std::ptr::null());
        os("making it read-only", rc)?;
        let rc = libc::syscall(libc::SYS_pivot_root, root.as_ptr(), old.as_ptr()) as libc::c_int;
        os("pivot_root", rc)?;
        os("chdir", libc::chdir(c"/".as_ptr()))?;
        os(
            "detaching the old root",
            libc::umount2(c"/old".as_ptr(), libc::MNT_DETACH),
        )?;
        os("removing /old", libc::rmdir(c"/old".as_ptr()))?;
        os(
            "no_new_privs",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        )?;
    }
    drop(held);
    Ok(())
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
        use rdbench_runner::{Exit, Output};
        let mut cmd = rdbench_runner::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .stdout(Output::Capture { tail: 1 << 20 })
            .stderr(Output::Capture { tail: 1 << 20 })
            .deadline(std::time::Duration::from_secs(300));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.run().unwrap();
        let text = format!("{}{}", out.stdout.text(), out.stderr.text());
        assert_eq!(out.exit, Exit::Exited(0), "the child failed:\n{text}");
        text
    }

    /// An allowed folder holding `ok.txt` ("fine"), and in another folder the secret a
    /// restricted process must not read.
    struct Folders {
        allowed: tempfile::TempDir,
        _other: tempfile::TempDir,
        secret: PathBuf,
    }

    impl Folders {
        fn new() -> Folders {
            let allowed = tempfile::tempdir().unwrap();
            std::fs::write(allowed.path().join("ok.txt"), "fine").unwrap();
            let other = tempfile::tempdir().unwrap();
            let secret = other.path().join("key");
            std::fs::write(&secret, "the installation key").unwrap();
            Folders {
                allowed,
                _other: other,
                secret,
            }
        }
    }

    /// What opening each probe gives, one `OPEN <what> <outcome>` line each, for the parent.
    fn opens(allowed: &Path, secret: &Path) -> String {
        [
            ("allowed", allowed.join("ok.txt")),
            ("secret", secret.to_path_buf()),
            ("environ", PathBuf::from("/proc/self/environ")),
            ("passwd", PathBuf::from("/etc/passwd")),
        ]
        .iter()
        .map(|(what, path)| format!("OPEN {what} {}\n", outcome(path)))
        .collect()
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
            print!("{}", opens(&allowed, &secret));
            // A thread started afterwards is restricted too (NVRTC compiles on one).
            let later = std::thread::spawn(|| outcome(Path::new("/etc/passwd")))
                .join()
                .unwrap();
            println!("OPEN thread {later}");
            return;
        }
        let folders = Folders::new();
        let (allowed, secret) = (&folders.allowed, &folders.secret);
        let out = rerun(
            "nvrtc::sandbox::tests::a_restricted_process_reads_only_the_allowed_folders",
            &[("ALLOWED", allowed.path()), ("SECRET", secret)],
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
    fn the_namespace_fallback_shows_only_the_allowed_folder() {
        if std::env::var_os(CHILD_ENV).is_some() {
            let Some(allowed) = std::env::var_os("NS_ALLOWED") else {
                return;
            };
            let allowed = PathBuf::from(allowed);
            let secret = PathBuf::from(std::env::var_os("SECRET").unwrap());
            let nvrtc = crate::probe::require_nvrtc().is_ok();
            let nvrtc_dir = crate::probe::probe()
                .libnvrtc
                .path
                .as_deref()
                .filter(|_| nvrtc)
                .map(|lib| preload_nvrtc(lib).to_path_buf());
            // A user namespace needs a single-threaded process, and libtest runs this on a
            // thread of its own: fork (which keeps only this thread) and report from there.
            let report = move || {
                let mut out = String::new();
                // The fallback shows one folder: the allowed one, or NVRTC's when there is one.
                let shown = nvrtc_dir.clone().unwrap_or_else(|| allowed.clone());
                match restrict_by_namespace(&shown) {
                    Err(e) => out += &format!("STATUS unavailable {e}\n"),
                    Ok(()) => out += "STATUS namespace\n",
                }
                if nvrtc_dir.is_some() {
                    use crate::nvrtc::{compile_uncached, Output};
                    let flags = ["--gpu-architecture=sm_80".to_string()];
                    let good = "extern \"C\" __global__ void k(int* x) { x[0] = 1; }\n";
                    match compile_uncached(good, "good.cu", &flags, Output::Cubin) {
                        Ok((image, _)) => out += &format!("NVRTC good {}\n", image.len()),
                        Err(e) => out += &format!("NVRTC good failed: {e}\n"),
                    }
                    let bad = format!("#include \"{}\"\n", secret.display());
                    match compile_uncached(&bad, "bad.cu", &flags, Output::Cubin) {
                        Ok(_) => out += "NVRTC bad compiled\n",
                        Err(e) => out += &format!("NVRTC bad {e}\n"),
                    }
                } else {
                    out += "NVRTC absent\n";
                }
                out += &opens(&allowed, &secret);
                let write = std::fs::write(allowed.join("new.txt"), "x").is_ok();
                out + &format!("WRITE allowed {write}\n")
            };
            // SAFETY: this re-run of the binary runs this one test; libtest's main thread
            // only waits for it, so no other thread holds a lock at the fork.
            let deadline = Some(std::time::Duration::from_secs(120));
            match unsafe { rdbench_runner::fork_call(report, None, deadline) } {
                Ok(text) => print!("{text}"),
                Err(e) => println!("FORK failed: {e}"),
            }
            return;
        }
        let folders = Folders::new();
        let (allowed, secret) = (&folders.allowed, &folders.secret);
        let out = rerun(
            "nvrtc::sandbox::tests::the_namespace_fallback_shows_only_the_allowed_folder",
            &[("NS_ALLOWED", allowed.path()), ("SECRET", secret)],
        );
        eprintln!("{out}");
        if out.contains("STATUS unavailable") {
            return eprintln!("skipped: no user namespaces here");
        }
        assert!(out.contains("STATUS namespace"), "{out}");
        if out.contains("NVRTC absent") {
            assert!(out.contains("OPEN allowed read"), "{out}");
            assert!(out.contains("WRITE allowed false"), "read-only: {out}");
        } else {
            // NVRTC's folder was the one shown: it compiles, and the secret is not there.
            assert!(out.contains("NVRTC good "), "{out}");
            assert!(!out.contains("NVRTC good failed"), "{out}");
            assert!(out.contains("cannot open source file"), "{out}");
            assert!(!out.contains("installation key"), "{out}");
            assert!(out.contains("OPEN allowed NotFound"), "{out}");
        }
        for what in ["secret", "environ", "passwd"] {
            assert!(
                out.contains(&format!("OPEN {what} NotFound")),
                "{what}: {out}"
            );
        }
    }

    #[test]
    fn a_prepared_ruleset_restricts_an_execed_program() {
        let folders = Folders::new();
        let allowed = &folders.allowed;
        let system: Vec<&Path> = ["/bin", "/usr", "/lib", "/lib64", "/etc/ld.so.cache"]
            .iter()
            .map(Path::new)
            .chain([allowed.path()])
            .collect();
        let ruleset = PreparedRuleset::new(&system, &[]).unwrap();
        if !ruleset.sandbox().is_enforced() {
            return eprintln!("skipped: no Landlock on this kernel");
        }
        let mut cmd = rdbench_runner::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "cat {}/ok.txt; echo; cat {} || echo denied",
                allowed.path().display(),
                folders.secret.display()
            ))
            .stdout(rdbench_runner::Output::Capture { tail: 4096 });
        // SAFETY: apply_in_child makes only system calls.
        unsafe { cmd.pre_exec(move || ruleset.apply_in_child()) };
        let out = cmd.run().unwrap();
        assert_eq!(out.stdout.text(), "fine\ndenied\n");
        // A step that fails stops the spawn with its OS error: nothing runs unrestricted.
        let mut cmd = rdbench_runner::Command::new("true");
        // SAFETY: returns an error, nothing else.
        unsafe { cmd.pre_exec(|| Err(std::io::Error::from_raw_os_error(libc::EPERM))) };
        match cmd.run() {
            Err(rdbench_runner::Error::Spawn { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EPERM))
            }
            other => panic!("{other:?}"),
        }
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
            let started = std::time::Instant::now();
            let status = restrict_nvrtc_child(&lib).unwrap();
            let took = started.elapsed().as_secs_f64() * 1e3;
            println!("STATUS {status:?} (preloading and restricting took {took:.1} ms)");
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
