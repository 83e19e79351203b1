//! The installation key: 32 random bytes that authenticate rdbench's own records.
//!
//! It lives at `<home>/secret/installation.key` (folder 0700, file 0600) and is created once, on
//! first use, from the OS's randomness. Several processes may race to create it: each writes a
//! complete key to a temporary file and publishes it with a no-overwrite rename (or link), so
//! exactly one wins and the others read the winner's key; nobody ever sees half a key.
//!
//! A damaged key (wrong length, a link, not a regular file) is an error naming the file. It is
//! never regenerated: a new key would turn every score log it authenticated into forgeries.
//!
//! Purposes never share the raw key: each derives its own with [`InstallationKey::derive`]
//! (HMAC-SHA256 of a label), so a key leaked from one use tells nothing about another.
//!
//! The key protects only as well as the home's permissions: where the agent runs as the same
//! user as the scorer it can read the key, and what the key authenticates then only detects
//! accidents, not a determined forger.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::fsutil::{create_private_dir_all, read_untrusted, UntrustedReadError};
use crate::home::Home;
use crate::{Error, Result};

/// Length of the installation key, bytes.
pub const KEY_LEN: usize = 32;

/// File name of the key under [`Home::secret_dir`].
pub const KEY_FILE: &str = "installation.key";

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// This installation's secret key. `Debug` names its file, never its bytes.
#[derive(Clone)]
pub struct InstallationKey {
    bytes: [u8; KEY_LEN],
    path: PathBuf,
}

impl std::fmt::Debug for InstallationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationKey")
            .field("path", &self.path)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl InstallationKey {
    /// The key file of `home`.
    pub fn path_in(home: &Home) -> PathBuf {
        home.secret_dir().join(KEY_FILE)
    }

    /// Loads the key of `home`, creating it if there is none yet. Safe when several processes
    /// do this at once: they all end up with the same key.
    pub fn load_or_create(home: &Home) -> Result<InstallationKey> {
        let dir = home.secret_dir();
        check_secret_dir(&dir, true)?;
        let path = dir.join(KEY_FILE);
        if let Some(key) = read_key(&path)? {
            return Ok(key);
        }
        let mut bytes = [0u8; KEY_LEN];
        getrandom::getrandom(&mut bytes).map_err(|e| {
            Error::Environment(format!(
                "no OS randomness to create {}: {e}",
                path.display()
            ))
        })?;
        // A complete key is written under a temporary name, then published without
        // overwriting: a racing creator either wins or finds the winner's whole key.
        let mut tmp = tempfile::Builder::new()
            .prefix(".installation.key.")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        {
            use std::io::Write;
            use std::os::unix::fs::PermissionsExt;
            let file = tmp.as_file_mut();
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(&path, e))?;
            file.write_all(&bytes).map_err(|e| Error::io(&path, e))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        match tmp.persist_noclobber(&path) {
            Ok(_) => {
                // Make the new name durable before anything is authenticated with the key.
                if let Ok(d) = std::fs::File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(InstallationKey { bytes, path })
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => read_key(&path)?
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "{} vanished right after another process created it",
                        path.display()
                    ))
                }),
            Err(e) => Err(Error::io(&path, e.error)),
        }
    }

    /// Loads the key of `home`; a missing key is an error (use where records it authenticated
    /// already exist, so a lost key is reported instead of silently replaced).
    pub fn load(home: &Home) -> Result<InstallationKey> {
        let dir = home.secret_dir();
        check_secret_dir(&dir, false)?;
        let path = dir.join(KEY_FILE);
        read_key(&path)?.ok_or_else(|| {
            Error::Environment(format!(
                "{}: the installation key is missing, so the records it authenticated cannot be \
                 verified; restore it from a backup (a new key would make every score log read \
                 as forged)",
                path.display()
            ))
        })
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key for one purpose: HMAC-SHA256(installation key, `label`). Labels name the
    /// purpose and a version, e.g. `"score-log/v1"`.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        hmac_sha256(&self.bytes, label.as_bytes())
    }

    /// A key from given bytes, for tests of code that takes a key.
    #[doc(hidden)]
    pub fn from_bytes_for_tests(bytes: [u8; KEY_LEN]) -> InstallationKey {
        InstallationKey {
            bytes,
            path: PathBuf::from("<test key>"),
        }
    }
}

/// The secret folder must be a real folder, not a link someone planted to read the key.
fn check_secret_dir(dir: &Path, create: bool) -> Result<()> {
    if create {
        create_private_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::bad_input(
            dir,
            "the secret folder is a symbolic link; it must be a real folder (0700)",
        )),
        Ok(meta) if !meta.is_dir() => {
            Err(Error::bad_input(dir, "the secret folder is not a folder"))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Reads the key at `path`: `None` when there is none, an error naming the file when it is
/// damaged.
fn read_key(path: &Path) -> Result<Option<InstallationKey>> {
    let damaged = |what: String| {
        Error::bad_input(
            path,
            format!(
                "damaged installation key: {what}; it is not regenerated (that would make every \
                 score log it authenticated read as forged): restore it from a backup"
            ),
        )
    };
    // Reading one byte more than a key tells a long file from a key.
    match read_untrusted(path, KEY_LEN as u64) {
        Ok(bytes) if bytes.len() == KEY_LEN => Ok(Some(InstallationKey {
            bytes: bytes.try_into().expect("length checked"),
            path: path.to_path_buf(),
        })),
        Ok(bytes) => Err(damaged(format!(
            "{} bytes, expected {KEY_LEN}",
            bytes.len()
        ))),
        Err(UntrustedReadError::NotFound) => Ok(None),
        Err(UntrustedReadError::TooLarge { size, .. }) => {
            Err(damaged(format!("{size} bytes, expected {KEY_LEN}")))
        }
        Err(e @ UntrustedReadError::NotARegularFile(_)) => Err(damaged(e.to_string())),
        Err(UntrustedReadError::Io(e)) => Err(Error::io(path, std::io::Error::other(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_once_private_and_stable() {
        let home_dir = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let a = InstallationKey::load_or_create(&home).unwrap();
        let b = InstallationKey::load_or_create(&home).unwrap();
        let c = InstallationKey::load(&home).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes, c.bytes);
        assert_ne!(a.bytes, [0u8; KEY_LEN]);
        assert_eq!(a.path(), home.secret_dir().join(KEY_FILE));
        assert_eq!(mode(&home.secret_dir()), 0o700);
        assert_eq!(mode(a.path()), 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(home.secret_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEY_FILE]);
        // Two installations have different keys.
        let other_dir = tempfile::tempdir().unwrap();
        let other = InstallationKey::load_or_create(&Home::new(other_dir.path())).unwrap();
        assert_ne!(a.bytes, other.bytes);
    }

    #[test]
    fn eight_concurrent_creators_get_one_key() {
        for _ in 0..5 {
            let home_dir = tempfile::tempdir().unwrap();
            let home = Home::new(home_dir.path());
            let barrier = std::sync::Barrier::new(8);
            let keys: Vec<[u8; KEY_LEN]> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            InstallationKey::load_or_create(&home).unwrap().bytes
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let on_disk = std::fs::read(InstallationKey::path_in(&home)).unwrap();
            for k in &keys {
                assert_eq!(&k[..], &on_disk[..], "every creator uses the published key");
            }
            assert_eq!(std::fs::read_dir(home.secret_dir()).unwrap().count(), 1);
        }
    }

    #[test]
    fn derive_is_hmac_of_the_label() {
        let key = InstallationKey::from_bytes_for_tests([7u8; KEY_LEN]);
        assert_eq!(key.derive("score-log/v1"), key.derive("score-log/v1"));
        assert_ne!(key.derive("score-log/v1"), key.derive("score-log/v2"));
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let key = InstallationKey::from_bytes_for_tests([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn damaged_keys_are_errors_naming_the_file_and_never_replaced() {
        let home_dir = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let path = InstallationKey::path_in(&home);
        create_private_dir_all(&home.secret_dir()).unwrap();
        let target = home_dir.path().join("elsewhere");
        std::fs::write(&target, [1u8; KEY_LEN]).unwrap();
        let cases: [(&str, &dyn Fn()); 5] = [
            ("short", &|| std::fs::write(&path, [1u8; 31]).unwrap()),
            ("long", &|| std::fs::write(&path, [1u8; 33]).unwrap()),
            ("empty", &|| std::fs::write(&path, []).unwrap()),
            ("symlink", &|| {
                std::os::unix::fs::symlink(&target, &path).unwrap()
            }),
            ("directory", &|| std::fs::create_dir(&path).unwrap()),
        ];
        for (what, make) in cases {
            make();
            for result in [
                InstallationKey::load_or_create(&home),
                InstallationKey::load(&home),
            ] {
                let err = result.unwrap_err().to_string();
                assert!(err.contains(&path.display().to_string()), "{what}: {err}");
                assert!(err.contains("damaged installation key"), "{what}: {err}");
            }
            // Still the damaged thing: not regenerated.
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(
                meta.len() != KEY_LEN as u64 || meta.file_type().is_symlink(),
                "{what}"
            );
            if meta.is_dir() {
                std::fs::remove_dir(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }

    #[test]
    fn a_missing_key_is_an_error_for_load_and_a_linked_secret_dir_is_refused() {
        let home_dir = tempfile::tempdir().unwrap();
        let home = Home::new(home_dir.path());
        let err = InstallationKey::load(&home).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        assert!(
            !InstallationKey::path_in(&home).exists(),
            "load never creates"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), home.secret_dir()).unwrap();
        let err = InstallationKey::load_or_create(&home)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
