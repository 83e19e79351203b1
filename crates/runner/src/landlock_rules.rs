//! The Landlock pieces every self-restricting child of rdbench shares (the sandbox's shim, the
//! NVRTC child, the emulator's host compile): one target version, a ruleset that handles every
//! right of it, and the rule for one path.

use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    PathFdError, Ruleset, RulesetAttr, RulesetCreated, RulesetError, Scope, ABI,
};

/// The Landlock version whose rights are handled; a kernel with an older one enforces the
/// subset it knows (every version mediates reading files).
pub const TARGET_ABI: ABI = ABI::V6;

/// A ruleset that handles every filesystem and network right of [`TARGET_ABI`] and scopes
/// signals and abstract Unix sockets to the restricted processes: whatever no rule allows
/// afterwards is refused.
pub fn deny_all() -> Result<RulesetCreated, RulesetError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TARGET_ABI))?
        .handle_access(AccessNet::from_all(TARGET_ABI))?
        .scope(Scope::from_all(TARGET_ABI))?
        .create()
}

/// The rule allowing `rights` beneath `path`, narrowed to a file's rights where `path` is a
/// file (`/etc/ld.so.cache`, a device node); `None` where nothing is at `path` (a toolchain
/// without `/lib64`).
pub fn path_rule(
    path: &Path,
    rights: BitFlags<AccessFs>,
) -> Option<Result<PathBeneath<PathFd>, PathFdError>> {
    let is_dir = std::fs::metadata(path).ok()?.is_dir();
    let rights = rights_for(is_dir, rights);
    Some(PathFd::new(path).map(|fd| PathBeneath::new(fd, rights)))
}

/// `rights` as a rule beneath a folder (`is_dir`) or on a file may hold them: Landlock refuses
/// a folder's rights (listing, making entries) on a file.
fn rights_for(is_dir: bool, rights: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    if is_dir {
        rights
    } else {
        rights & AccessFs::from_file(TARGET_ABI)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_only_file_rights_and_a_missing_path_no_rule() {
        let all = AccessFs::from_all(TARGET_ABI);
        assert_eq!(rights_for(true, all), all);
        let on_a_file = rights_for(false, all);
        assert!(on_a_file.contains(AccessFs::ReadFile) && on_a_file.contains(AccessFs::WriteFile));
        assert!(!on_a_file.contains(AccessFs::ReadDir) && !on_a_file.contains(AccessFs::MakeReg));
        assert!(path_rule(Path::new("/no/such/path/here"), all).is_none());
        assert!(
            path_rule(Path::new("/etc/hostname"), AccessFs::from_all(TARGET_ABI))
                .unwrap()
                .is_ok()
        );
        assert!(
            path_rule(Path::new("/etc"), AccessFs::from_read(TARGET_ABI))
                .unwrap()
                .is_ok()
        );
    }
}
