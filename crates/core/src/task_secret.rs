//! Per-task instance secrets, for artifact tasks whose problem instance (data distribution,
//! held-out split, hidden seeds) must not be reproducible from rdbench's public source.
//!
//! A [`TaskSecret`] is 256 bits of OS randomness kept at `<cache>/<task>/instance.secret` (never
//! in an attempt folder), made once per installation under a lock so concurrent first uses
//! agree. Each hidden parameter is `HMAC-SHA256(secret, domain 0 profile 0 parameter)`, its first
//! 8 bytes little-endian ([`TaskSecret::derive`]): seeds of one installation say nothing about
//! its secret or about each other, and the task's domain label versions the derivation.
//!
//! A damaged file is an error naming it, never silently replaced: a new secret is a new problem,
//! and every score logged before would stop being comparable.

use std::path::{Path, PathBuf};

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::secret::HmacSha256;
use crate::{fsutil, Error, Result};

/// The secret's file name under `<cache>/<task>/`.
pub const SECRET_FILE: &str = "instance.secret";

/// One task's installation secret. `Debug` shows a hash, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskSecret([u8; 32]);

impl std::fmt::Debug for TaskSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(sha256 {})", &self.fingerprint()[..16])
    }
}

impl TaskSecret {
    /// A secret with the given bytes (tests and tools; installations use
    /// [`TaskSecret::load_or_create`]).
    pub fn from_bytes(bytes: [u8; 32]) -> TaskSecret {
        TaskSecret(bytes)
    }

    /// Where the secret of `task` in the cache `cache_dir` lives.
    pub fn path(cache_dir: &Path, task: &str) -> PathBuf {
        cache_dir.join(task).join(SECRET_FILE)
    }

    /// The installation's secret for `task`: read from the cache, or made once from OS
    /// randomness (under a lock, so concurrent first uses agree).
    pub fn load_or_create(cache_dir: &Path, task: &str) -> Result<TaskSecret> {
        let path = TaskSecret::path(cache_dir, task);
        if let Some(s) = TaskSecret::read(&path, task)? {
            return Ok(s);
        }
        let _lock = fsutil::lock_exclusive(&path)?;
        if let Some(s) = TaskSecret::read(&path, task)? {
            return Ok(s);
        }
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| {
            Error::Environment(format!(
                "no OS randomness to create {}: {e}",
                path.display()
            ))
        })?;
        // atomic_write's temporary file is created 0600, in a 0700 folder.
        fsutil::atomic_write(&path, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        Ok(TaskSecret(bytes))
    }

    /// Reads the secret at `path`: `None` if there is none yet.
    fn read(path: &Path, task: &str) -> Result<Option<TaskSecret>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let damaged = || {
            Error::Environment(format!(
                "{}: damaged {task} instance secret (expected 64 hex digits); restore it, or delete \
                 it and the cache folders beside it to make a new instance (new models and data: scores \
                 logged before are then not comparable, and calibrations must be measured again)",
                path.display()
            ))
        };
        let digits = text.trim();
        if digits.len() != 64 {
            return Err(damaged());
        }
        let bytes = hex::decode(digits).map_err(|_| damaged())?;
        Ok(Some(TaskSecret(bytes.try_into().map_err(|_| damaged())?)))
    }

    /// The seed of `parameter` in `profile` under the derivation `domain` (see the module
    /// overview).
    pub fn derive(&self, domain: &[u8], profile: &str, parameter: &str) -> u64 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key");
        mac.update(domain);
        mac.update(&[0]);
        mac.update(profile.as_bytes());
        mac.update(&[0]);
        mac.update(parameter.as_bytes());
        let out = mac.finalize().into_bytes();
        u64::from_le_bytes(out[..8].try_into().expect("SHA-256 gives 32 bytes"))
    }

    /// SHA-256 of the secret in hex: names it in messages without revealing it.
    fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_per_task_and_cache_and_damage_is_an_error() {
        let a = tempfile::tempdir().unwrap();
        let s1 = TaskSecret::load_or_create(a.path(), "t1").unwrap();
        assert_eq!(TaskSecret::load_or_create(a.path(), "t1").unwrap(), s1);
        assert_ne!(TaskSecret::load_or_create(a.path(), "t2").unwrap(), s1);
        let path = TaskSecret::path(a.path(), "t1");
        std::fs::write(&path, "abc").unwrap();
        let err = TaskSecret::load_or_create(a.path(), "t1").unwrap_err();
        assert!(
            err.to_string().contains("damaged t1 instance secret"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc");
    }

    #[test]
    fn derive_separates_domains_profiles_and_parameters() {
        let s = TaskSecret::from_bytes([5; 32]);
        let base = s.derive(b"d", "tiny", "x");
        assert_eq!(base, s.derive(b"d", "tiny", "x"));
        assert_ne!(base, s.derive(b"e", "tiny", "x"));
        assert_ne!(base, s.derive(b"d", "full", "x"));
        assert_ne!(base, s.derive(b"d", "tiny", "y"));
        assert!(!format!("{s:?}").contains("0505"));
    }
}

/// Names a task's instance in cache paths: 16 hex digits of SHA-256 over the task's `domain` and
/// every parameter of the instance, so a changed secret (or a hand-made instance) never reuses
/// another instance's files, and the name reveals nothing usable (one-way).
pub fn instance_id(domain: &[u8], instance: &impl serde::Serialize) -> String {
    let json = serde_json::to_vec(instance).expect("an instance serializes");
    let mut h = Sha256::new();
    h.update(domain);
    h.update(b"\0cache id\0");
    h.update(&json);
    hex::encode(h.finalize())[..16].to_string()
}
