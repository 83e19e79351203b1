//! What this machine offers the sandbox: bwrap, user namespaces, Landlock, seccomp, a
//! delegated cgroup v2, the shim; and so whether a sandbox can run here.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{LimitsBy, Shim};

/// The sandbox's requirements and optional layers on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// bwrap's path and `--version` line, when found.
    pub bwrap: Option<Bwrap>,
    /// Whether an unprivileged process (this one, or `nobody` when this process is root) can
    /// make a user namespace, which bwrap needs.
    pub user_namespaces: bool,
    /// The kernel's Landlock ABI version (0: none; the sandbox then runs without it).
    pub landlock_abi: u32,
    /// Whether seccomp filters can be installed.
    pub seccomp: bool,
    /// The cgroup v2 hierarchy: delegated to this process or not.
    pub cgroup: Cgroup,
    /// Which limits a sandboxed run gets.
    pub limits: LimitsBy,
    /// The shim the sandbox runs first, when found.
    pub shim: Option<PathBuf>,
    /// Whether a sandbox can run here.
    pub can_run: bool,
    /// Why not, in one line, when `can_run` is false.
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bwrap {
    pub path: PathBuf,
    pub version: String,
}

/// Whether this process could put a sandboxed run into its own cgroup v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Cgroup {
    /// A cgroup v2 folder this process may write, with the memory and pids controllers.
    Delegated {
        path: PathBuf,
    },
    NotDelegated {
        why: String,
    },
}

/// Probes the machine (once per process: user namespaces take a fork to try); the shim is
/// looked for on every call, since [`super::use_shim`] may name it later.
pub fn capabilities() -> Capabilities {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    let mut caps = CAPS.get_or_init(probe).clone();
    match Shim::locate() {
        Ok(shim) => caps.shim = Some(shim.program),
        Err(e) => {
            caps.why_not.get_or_insert(e.to_string());
        }
    }
    caps.can_run = caps.why_not.is_none();
    caps
}

fn probe() -> Capabilities {
    let bwrap = find_bwrap().map(|path| {
        let version = std::process::Command::new(&path)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Bwrap { path, version }
    });
    let user_namespaces = user_namespace_probe();
    // SAFETY: landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION only asks the ABI.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    // SAFETY: a plain query.
    let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
    let why_not = missing(bwrap.is_some(), &user_namespaces, seccomp);
    Capabilities {
        bwrap,
        user_namespaces: user_namespaces.is_ok(),
        landlock_abi: abi.max(0) as u32,
        seccomp,
        cgroup: cgroup(),
        // A delegated cgroup is detected but not used yet: the run's limits are rlimits.
        limits: LimitsBy::Rlimits,
        shim: None,
        can_run: why_not.is_none(),
        why_not,
    }
}

/// The first requirement this machine lacks, in words.
fn missing(bwrap: bool, user_namespaces: &io::Result<()>, seccomp: bool) -> Option<String> {
    if !bwrap {
        Some("bwrap (bubblewrap) is not installed".to_string())
    } else if let Err(e) = user_namespaces {
        Some(format!("user namespaces are not usable: {e}"))
    } else if !seccomp {
        Some("the kernel has no seccomp".to_string())
    } else {
        None
    }
}

/// `/usr/bin/bwrap`, else the first `bwrap` on the `PATH`.
pub(crate) fn find_bwrap() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/bwrap");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("bwrap"))
        .find(|p| p.is_file())
}

/// Tries what bwrap will do: an unprivileged process making a user namespace (as `nobody`
/// when this process is root, since the sandbox never runs as root).
fn user_namespace_probe() -> io::Result<()> {
    let mut cmd = std::process::Command::new("/bin/true");
    // SAFETY: only raw system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::geteuid() == 0 {
                let nobody = 65534;
                if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setresgid, nobody, nobody, nobody) != 0
                    || libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("the probe {status}")))
    }
}

/// This process's cgroup v2 folder, delegated when it has the memory and pids controllers and
/// this process may create a child group in it.
fn cgroup() -> Cgroup {
    let not = |why: String| Cgroup::NotDelegated { why };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return not("/proc/self/mountinfo is not readable".into());
    };
    // Fields: id parent major:minor root mount-point options ... - fstype source super-options.
    let Some(mount) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split_whitespace().nth(4))?
    }) else {
        return not("no cgroup v2 hierarchy is mounted".into());
    };
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.to_string()))
        })
        .unwrap_or_else(|| "/".into());
    let dir = match own.trim_start_matches('/') {
        "" => PathBuf::from(mount),
        sub => Path::new(mount).join(sub),
    };
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let missing: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
        .collect();
    if !missing.is_empty() {
        return not(format!(
            "the cgroup v2 folder {} has no {} controller (available: {})",
            dir.display(),
            missing.join(" or "),
            if controllers.trim().is_empty() {
                "none"
            } else {
                controllers.trim()
            }
        ));
    }
    let writable = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        // SAFETY: access on a valid C string.
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0);
    if writable {
        Cgroup::Delegated { path: dir }
    } else {
        not(format!(
            "the cgroup v2 folder {} is not writable by this process",
            dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_missing_requirement_is_named() {
        let denied = || Err(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(missing(true, &Ok(()), true), None);
        let why = missing(false, &denied(), false).unwrap();
        assert!(why.contains("bwrap"), "{why}");
        let why = missing(true, &denied(), true).unwrap();
        assert!(
            why.contains("user namespaces") && why.contains("not permitted"),
            "{why}"
        );
        assert!(missing(true, &Ok(()), false).unwrap().contains("seccomp"));
    }

    #[test]
    fn this_machine_is_probed_without_panicking() {
        let caps = capabilities();
        assert_eq!(caps.can_run, caps.why_not.is_none());
        let text = serde_json::to_string(&caps).unwrap();
        assert_eq!(serde_json::from_str::<Capabilities>(&text).unwrap(), caps);
    }
}
