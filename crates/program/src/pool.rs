//! The secret inputs of one installation: K per profile, each with the reference program's
//! outputs for it.
//!
//! Entry `i` of `<cache>/<task>/<profile>/pool/` is made from the seed
//! `TaskSecret::derive("rdbench program pool v1", profile, "input i")` of the installation's
//! secret (`<cache>/<task>/instance.secret`, made once from OS randomness): nothing in an
//! attempt, in rdbench's source or in another installation tells what the data is. Its folder
//! holds `input/` (what the program reads) and `expected/` (the reference program's outputs,
//! written by running it in the same sandbox), published by a rename under a lock, so a
//! concurrent first use builds each entry once and never sees half of one. A scoring call
//! draws entry `seed % K` with its own fresh secret seed (and builds it if no call has yet):
//! the agent cannot know which data its run will get, and no output of an earlier run can
//! stand for this one's.

use std::path::{Path, PathBuf};

use rdbench_core::task_secret::TaskSecret;
use rdbench_core::{Error, Result};

const DOMAIN: &[u8] = b"rdbench program pool v1";

/// The pool of one task and profile.
#[derive(Debug, Clone)]
pub struct Pool {
    root: PathBuf,
    size: usize,
}

/// One entry's folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: usize,
    pub input: PathBuf,
    pub expected: PathBuf,
}

impl Pool {
    /// The pool of `task` on `profile` in the cache `cache_dir`, `size` entries.
    pub fn new(cache_dir: &Path, task: &str, profile: &str, size: usize) -> Pool {
        Pool {
            root: cache_dir.join(task).join(profile).join("pool"),
            size: size.max(1),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn entry(&self, index: usize) -> Entry {
        let dir = self.root.join(index.to_string());
        Entry {
            index,
            input: dir.join("input"),
            expected: dir.join("expected"),
        }
    }

    /// The entry a scoring call with secret seed `seed` gets.
    pub fn draw(&self, seed: u64) -> Entry {
        self.entry((seed % self.size as u64) as usize)
    }

    /// The secret seed of entry `index`'s input.
    pub fn seed(cache_dir: &Path, task: &str, profile: &str, index: usize) -> Result<u64> {
        let secret = TaskSecret::load_or_create(cache_dir, task)?;
        Ok(secret.derive(DOMAIN, profile, &format!("input {index}")))
    }

    pub fn is_complete(&self) -> bool {
        (0..self.size).all(|i| self.entry(i).expected.is_dir())
    }

    /// Builds every missing entry with `make(index, input, expected)`, which writes the two
    /// folders it is given (temporary ones, published when it returns `Ok`).
    pub fn ensure(&self, make: impl Fn(usize, &Path, &Path) -> Result<()>) -> Result<()> {
        (0..self.size).try_for_each(|i| self.ensure_entry(i, &make).map(|_| ()))
    }

    /// Entry `index`, built first with `make` if it is missing (as [`Self::ensure`] does).
    pub fn ensure_entry(
        &self,
        index: usize,
        make: impl Fn(usize, &Path, &Path) -> Result<()>,
    ) -> Result<Entry> {
        let entry = self.entry(index);
        let dir = self.root.join(index.to_string());
        rdbench_core::fsutil::build_once(
            &self.root,
            &format!("{index}"),
            || entry.expected.is_dir(),
            || {
                let tmp = self
                    .root
                    .join(format!(".{index}.tmp-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                let (input, expected) = (tmp.join("input"), tmp.join("expected"));
                for d in [&input, &expected] {
                    rdbench_core::fsutil::create_private_dir_all(d)?;
                }
                let made = make(index, &input, &expected);
                if let Err(e) = made {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(e);
                }
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))
            },
        )?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_built_once_and_drawn_by_seed() {
        let cache = tempfile::tempdir().unwrap();
        let pool = Pool::new(cache.path(), "t", "tiny", 3);
        assert!(!pool.is_complete());
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let make = |i: usize, input: &Path, expected: &Path| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::fs::write(input.join("x"), i.to_string()).unwrap();
            std::fs::write(expected.join("y"), "ref").unwrap();
            Ok(())
        };
        pool.ensure(make).unwrap();
        pool.ensure(make).unwrap();
        assert_eq!(calls.into_inner(), 3);
        assert!(pool.is_complete());
        assert_eq!(pool.draw(7).index, 1);
        assert_eq!(
            std::fs::read_to_string(pool.draw(5).input.join("x")).unwrap(),
            "2"
        );
        // A failed build publishes nothing.
        let other = Pool::new(cache.path(), "u", "tiny", 1);
        assert!(other
            .ensure(|_, _, _| Err(Error::Internal("no".into())))
            .is_err());
        assert!(!other.is_complete());
    }

    #[test]
    fn seeds_are_secret_per_installation_and_distinct_per_entry() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let s = |c: &Path, i| Pool::seed(c, "t", "tiny", i).unwrap();
        assert_eq!(s(a.path(), 0), s(a.path(), 0));
        assert_ne!(s(a.path(), 0), s(a.path(), 1));
        assert_ne!(s(a.path(), 0), s(b.path(), 0));
    }
}
