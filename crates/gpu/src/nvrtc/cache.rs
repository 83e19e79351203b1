//! The NVRTC cache, authenticated: an entry is trusted only if this cache wrote it.
//!
//! An entry's file name is its key (a hash of the source, the options and the NVRTC version),
//! which anyone can compute. A bare image under that name would therefore be a way in: plant a
//! CUBIN under the key of a source that does not even compile (`#error`) and that source
//! "compiles"; plant one under a harness kernel's key and the trusted checks run the agent's
//! code. So each entry carries `sha256(image)` and `HMAC-SHA256(secret, key || sha256(image))`,
//! where the secret is 32 random bytes in a file this cache creates once (`0600`, refused
//! unless it is a regular file of this user that nobody else can read). An entry that fails
//! the check is a cache miss, logged at warn: the source is compiled again and the entry
//! overwritten.
//!
//! This keeps out whoever cannot read the secret. In the protected deployment the whole home
//! belongs to the scoring user; an agent running as the scorer's own user can read the secret
//! and is not kept out (nor from anything else in the home).
//!
//! Entry layout: [`MAGIC`], 32 bytes of `sha256(image)`, 32 bytes of tag, then the image.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// First bytes of every entry (and the format version).
const MAGIC: &[u8] = b"rdbench-nvrtc-cache-v1\n";
/// File holding the cache's secret, in the cache folder.
pub const SECRET_FILE: &str = "cache-secret";
const SECRET_BYTES: usize = 32;
/// Largest entry read back: a CUBIN beyond this is not something this kit produces.
const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// One cache folder with its secret.
pub struct Cache {
    dir: PathBuf,
    secret: [u8; SECRET_BYTES],
}

impl Cache {
    /// Opens (creating when needed) the cache in `dir` and its secret.
    pub fn open(dir: &Path) -> Result<Cache, String> {
        rdbench_core::fsutil::create_private_dir_all(dir).map_err(|e| e.to_string())?;
        let secret = read_or_create_secret(&dir.join(SECRET_FILE))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            secret,
        })
    }

    /// The file of entry `key` (a hex digest) with extension `ext`.
    pub fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }

    fn tag(&self, key: &str, digest: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        mac.update(key.as_bytes());
        mac.update(&[0]);
        mac.update(digest);
        mac
    }

    /// The image of entry `key`, if there is one this cache wrote for this key. Anything else
    /// under the name (a bare CUBIN, an entry copied from another key, a truncated file) is a
    /// miss, logged at warn.
    pub fn get(&self, key: &str, ext: &str) -> Option<Vec<u8>> {
        use rdbench_core::fsutil::{read_untrusted, UntrustedReadError};
        let path = self.path(key, ext);
        let bytes = match read_untrusted(&path, MAX_ENTRY_BYTES) {
            Ok(b) => b,
            Err(UntrustedReadError::NotFound) => return None,
            Err(e) => {
                tracing::warn!("NVRTC cache entry {} not used: {e}", path.display());
                return None;
            }
        };
        match self.verify(key, &bytes) {
            Ok(()) => Some(bytes[MAGIC.len() + 64..].to_vec()),
            Err(why) => {
                tracing::warn!(
                    "NVRTC cache entry {} not used ({why}): not written by this cache; compiling again",
                    path.display()
                );
                None
            }
        }
    }

    fn verify(&self, key: &str, bytes: &[u8]) -> Result<(), &'static str> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("no cache header")?;
        if rest.len() < 64 {
            return Err("truncated header");
        }
        let (digest, rest) = rest.split_at(32);
        let (tag, image) = rest.split_at(32);
        if Sha256::digest(image).as_slice() != digest {
            return Err("the image does not match its hash");
        }
        self.tag(key, digest)
            .verify_slice(tag)
            .map_err(|_| "bad authentication tag")
    }

    /// Stores `image` as entry `key`, replacing what is there.
    pub fn put(&self, key: &str, ext: &str, image: &[u8]) -> Result<(), String> {
        let digest = Sha256::digest(image);
        let tag = self.tag(key, &digest).finalize().into_bytes();
        let mut entry = Vec::with_capacity(MAGIC.len() + 64 + image.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&digest);
        entry.extend_from_slice(&tag);
        entry.extend_from_slice(image);
        rdbench_core::fsutil::atomic_write(&self.path(key, ext), &entry).map_err(|e| e.to_string())
    }
}

/// Reads the secret at `path`, or creates it (random, 0600) if there is none. A secret that
/// others could have read or written is refused: a cache keyed by it would be forgeable.
fn read_or_create_secret(path: &Path) -> Result<[u8; SECRET_BYTES], String> {
    match read_secret(path) {
        Ok(s) => return Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cache secret {}: {e}", path.display())),
    }
    let mut secret = [0u8; SECRET_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |e: std::io::Error| format!("creating the cache secret {}: {e}", path.display());
    // Written whole under a temporary name, then linked into place: link(2) never replaces,
    // so of two scorers creating it at once one wins and both use the winner's secret.
    let mut tmp = tempfile::Builder::new()
        .prefix(".cache-secret")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(&secret).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_secret(path).map_err(|e| format!("cache secret {}: {e}", path.display()))
        }
        Err(e) => Err(io(e)),
    }
}

fn read_secret(path: &Path) -> std::io::Result<[u8; SECRET_BYTES]> {
    use std::io::{Error, ErrorKind, Read};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "refused: must be a regular file of uid {uid} with mode 0600 (it is mode {:o}, uid {})",
                meta.mode() & 0o7777,
                meta.uid()
            ),
        ));
    }
    let mut secret = [0u8; SECRET_BYTES];
    let mut extra = [0u8; 1];
    file.read_exact(&mut secret)?;
    if file.read(&mut extra)? != 0 {
        return Err(Error::new(ErrorKind::InvalidData, "longer than 32 bytes"));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_foreign_files_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.get("k1", "cubin"), None, "empty cache");
        cache.put("k1", "cubin", b"\x7fELF image one").unwrap();
        assert_eq!(
            cache.get("k1", "cubin").as_deref(),
            Some(&b"\x7fELF image one"[..])
        );

        // A bare image under the predictable name is not trusted.
        std::fs::write(cache.path("k2", "cubin"), b"\x7fELF planted").unwrap();
        assert_eq!(cache.get("k2", "cubin"), None);
        // Nor a valid entry of another key copied under this one.
        std::fs::copy(cache.path("k1", "cubin"), cache.path("k2", "cubin")).unwrap();
        assert_eq!(cache.get("k2", "cubin"), None);
        // Nor an entry whose image was changed after it was written.
        let mut bytes = std::fs::read(cache.path("k1", "cubin")).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(cache.path("k1", "cubin"), &bytes).unwrap();
        assert_eq!(cache.get("k1", "cubin"), None);
        // A header forged without the secret fails its tag.
        let image = b"\x7fELF forged";
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&Sha256::digest(image));
        forged.extend_from_slice(&[0u8; 32]);
        forged.extend_from_slice(image);
        std::fs::write(cache.path("k3", "cubin"), &forged).unwrap();
        assert_eq!(cache.get("k3", "cubin"), None);
    }

    #[test]
    fn the_secret_is_private_stable_and_refused_when_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Cache::open(dir.path()).unwrap();
        let path = dir.path().join(SECRET_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        first.put("k", "ptx", b"ptx text").unwrap();
        // A second opener (another scorer process) uses the same secret.
        let second = Cache::open(dir.path()).unwrap();
        assert_eq!(second.get("k", "ptx").as_deref(), Some(&b"ptx text"[..]));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Cache::open(dir.path())
            .err()
            .expect("a readable secret is refused");
        assert!(err.contains("mode 644"), "{err}");

        // A link in place of the secret is refused, not followed.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(Cache::open(dir.path()).is_err());
    }
}
