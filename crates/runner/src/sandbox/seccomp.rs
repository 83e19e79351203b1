//! The sandbox's seccomp filters, compiled with `seccompiler` and handed to bwrap as raw BPF on
//! inherited descriptors (`--add-seccomp-fd`, once per filter).
//!
//! Two filters, because a `seccompiler` filter has one action for every match:
//! - **refused** (`EPERM`): what a benchmark program never needs and what would reach outside
//!   the sandbox or into the kernel's attack surface: tracing and other processes' memory,
//!   every mount call (old and new API), namespaces (`unshare`, `setns`, and `clone` with any
//!   `CLONE_NEW*` flag), BPF, perf events, kexec, kernel keyrings, kernel modules, reboot,
//!   swap, process accounting, file handles (`open_by_handle_at` bypasses paths and so
//!   Landlock), `userfaultfd` and io_uring (its operations are not seen by seccomp at all).
//! - **clone3** (`ENOSYS`): its flags live in a structure in memory that a filter cannot read;
//!   `ENOSYS` makes libc fall back to `clone`, whose flags the first filter checks.
//!
//! On x86_64 the same calls through the x32 ABI (bit 30 set in the number, and x32's own
//! numbers for the calls it defines separately) are refused too, should the kernel have x32.

use std::collections::BTreeMap;
use std::io::{self, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Calls refused outright with `EPERM`.
const REFUSED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
];

/// Every namespace flag `clone` takes: a `clone` with any of them is refused.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The names of the refused calls (for the module's documentation and `doctor`).
pub fn refused_names() -> impl Iterator<Item = &'static str> {
    REFUSED.iter().map(|(name, _)| *name)
}

#[cfg(target_arch = "x86_64")]
fn with_x32(nr: libc::c_long) -> Vec<libc::c_long> {
    const X32: libc::c_long = 0x4000_0000;
    // x32's own numbers for calls whose arguments differ from x86_64's.
    let own = match nr {
        libc::SYS_ptrace => Some(521),
        libc::SYS_kexec_load => Some(528),
        libc::SYS_process_vm_readv => Some(539),
        libc::SYS_process_vm_writev => Some(540),
        _ => None,
    };
    [Some(nr), Some(nr | X32), own.map(|n| n | X32)]
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn with_x32(nr: libc::c_long) -> Vec<libc::c_long> {
    vec![nr]
}

fn arch() -> Result<TargetArch, seccompiler::Error> {
    std::env::consts::ARCH
        .try_into()
        .map_err(seccompiler::Error::Backend)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
) -> Result<BpfProgram, seccompiler::Error> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, arch()?)
        .map_err(seccompiler::Error::Backend)?;
    filter.try_into().map_err(seccompiler::Error::Backend)
}

/// The two filters, compiled: (refused with `EPERM`, `clone3` with `ENOSYS`).
pub fn filters() -> Result<[BpfProgram; 2], seccompiler::Error> {
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(_, nr) in REFUSED {
        for n in with_x32(nr) {
            refused.insert(n, Vec::new());
        }
    }
    // One rule per flag: rules of a call are alternatives, so any flag set matches.
    let namespace_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )
            .map_err(seccompiler::Error::Backend)?;
            SeccompRule::new(vec![cond]).map_err(seccompiler::Error::Backend)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for n in with_x32(libc::SYS_clone) {
        refused.insert(n, namespace_rules.clone());
    }
    let mut clone3 = BTreeMap::new();
    for n in with_x32(libc::SYS_clone3) {
        clone3.insert(n, Vec::new());
    }
    Ok([
        compile(refused, SeccompAction::Errno(libc::EPERM as u32))?,
        compile(clone3, SeccompAction::Errno(libc::ENOSYS as u32))?,
    ])
}

/// The program as the kernel's `struct sock_filter` array, the bytes bwrap reads.
fn to_bytes(program: &BpfProgram) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for insn in program {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    bytes
}

/// A close-on-exec memory file holding `program`, positioned at its start for bwrap to read.
pub fn memfd(program: &BpfProgram) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static name; the descriptor is ours when non-negative.
    let fd = unsafe { libc::memfd_create(c"rdbench-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(&to_bytes(program))?;
    file.rewind()?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile_to_whole_instructions() {
        let [refused, clone3] = filters().unwrap();
        assert!(refused.len() > REFUSED.len());
        assert!(!clone3.is_empty());
        assert_eq!(to_bytes(&refused).len(), refused.len() * 8);
    }
}
