//! One run of a program in the sandbox, timed from the parent.
//!
//! The solution's copy lives in a fresh work folder ([`WorkDir`]) under the system's temporary
//! folder (bwrap, running as the sandbox's user, must be able to reach it; the scorer's home is
//! private to the scorer), owned by the run's user and closed to everyone else. A scorer that
//! runs as root gives every run a uid of its own ([`run_user`]), so the per-user process limit
//! counts that run alone; an unprivileged scorer (the protected service's scoring user) runs
//! the program as itself, inside the sandbox's user namespace.
//!
//! The time is the runner's wall clock from the spawn to the reap of the sandbox's init,
//! which exits only after the program did: the PID namespace kills every process the program
//! left, so the time covers the whole tree and nothing can keep writing the outputs after it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdbench_runner::sandbox::{Sandbox, User};
use rdbench_runner::{Command, Exit, Limits, Output, Usage};

use crate::{Contract, SandboxEnv};

/// Bytes of the program's stdout and stderr kept (the tail).
pub const OUTPUT_TAIL: usize = 16 << 10;

/// A fresh work folder for one run, removed on drop.
pub struct WorkDir {
    dir: tempfile::TempDir,
    user: Option<User>,
}

/// The user a run is given: when the scorer is root, a uid no account uses, drawn at random
/// from 400 million above the system's (1.6e9 to 2.0e9), never root; otherwise none (the
/// scorer's own).
///
/// Random, not counted: the scorer's workers each run in a PID namespace of their own, where
/// their pid is 1 or 2, so a uid made from the pid was the same in every worker, and two runs
/// scored at once (two attempts on one service, tests in parallel) shared a uid: each counted
/// against the other's process limit (bwrap then failed with EAGAIN), and each could reach
/// the other's work folder. Two runs at once draw the same uid with probability about 1 in 400
/// million.
pub fn run_user() -> Option<User> {
    if rdbench_core::fsutil::effective_uid() != 0 {
        return None;
    }
    let uid = 1_600_000_000 + random_u32() % 400_000_000;
    Some(User { uid, gid: uid })
}

/// Four bytes of the kernel's random source (the time's nanoseconds where it cannot be read).
fn random_u32() -> u32 {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (std::process::id() << 16)),
    }
}

impl WorkDir {
    /// A new, empty work folder for `user`.
    pub fn new(user: Option<User>) -> std::io::Result<WorkDir> {
        let dir = tempfile::Builder::new()
            .prefix("rdbench-run-")
            .tempdir_in(std::env::temp_dir())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(WorkDir { dir, user })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Hands everything in the folder to the run's user (after the scorer wrote it).
    pub fn give_to_user(&self) -> std::io::Result<()> {
        let Some(u) = self.user else { return Ok(()) };
        chown_tree(self.dir.path(), u)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // A program may have left folders without write or search rights: restore them so
        // the removal (by TempDir's drop, after this) reaches everything.
        make_removable(self.dir.path());
    }
}

fn chown_tree(path: &Path, u: User) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), u)?;
        }
    }
    Ok(())
}

fn make_removable(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                make_removable(&e.path());
            }
        }
    }
}

/// How a run ended, as the scorer reports it.
#[derive(Debug, Clone)]
pub struct Ran {
    pub exit: Exit,
    /// Spawn to reap of the whole sandbox, measured by the parent.
    pub wall: Duration,
    pub usage: Usage,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn succeeded(&self) -> bool {
        self.exit == Exit::Exited(0)
    }
}

/// The sandbox for `work` under `env`'s binds and variables.
pub fn sandbox_for(
    work: &Path,
    contract: &Contract,
    env: &SandboxEnv,
    user: Option<User>,
) -> Sandbox {
    let mut sb = Sandbox::new(work);
    sb.read_only.extend(env.binds.iter().cloned());
    sb.env.extend(env.env.clone());
    sb.tmp_size = contract.tmp_size;
    sb.user = user;
    sb.gpu = env.gpu;
    sb
}

/// Runs the contract's command in `work` (already holding the solution and its input) in the
/// sandbox, under the contract's deadline and limits.
pub fn run_in_sandbox(
    work: &WorkDir,
    contract: &Contract,
    env: &SandboxEnv,
) -> Result<Ran, rdbench_runner::Error> {
    let Some((program, args)) = contract.command.split_first() else {
        return Err(rdbench_runner::Error::Nul);
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdout(Output::Capture { tail: OUTPUT_TAIL })
        .stderr(Output::Capture { tail: OUTPUT_TAIL })
        .limits(Limits {
            file_size: Some(contract.file_size),
            processes: Some(contract.processes),
            ..Limits::default()
        })
        .deadline(contract.deadline)
        .sandbox(sandbox_for(work.path(), contract, env, work.user));
    let o = cmd.run()?;
    Ok(Ran {
        exit: o.exit,
        wall: o.wall,
        usage: o.usage,
        stdout: o.stdout.text(),
        stderr: o.stderr.text(),
    })
}

/// Where the solution's copy goes in a work folder: the folder itself.
pub fn solution_in(work: &WorkDir) -> PathBuf {
    work.path().to_path_buf()
}

#[cfg(test)]
mod user_tests {
    use super::*;

    /// Uids are drawn, not derived from the pid (which is 1 or 2 in every worker's PID
    /// namespace): a hundred draws are distinct (a repeat: about 1 in 80,000) and in the range.
    #[test]
    fn run_users_are_distinct_draws_in_their_range() {
        if rdbench_core::fsutil::effective_uid() != 0 {
            assert_eq!(run_user(), None);
            return;
        }
        let uids: std::collections::BTreeSet<u32> =
            (0..100).map(|_| run_user().unwrap().uid).collect();
        assert_eq!(uids.len(), 100);
        assert!(uids
            .iter()
            .all(|u| (1_600_000_000..2_000_000_000).contains(u)));
    }
}
