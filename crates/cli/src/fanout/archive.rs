//! A submission given as a `.tar` archive: unpacked into the job's scratch folder before the
//! scorer reads it as it reads any submission folder (bounded, no links). The archive is
//! untrusted too, so the unpacking admits only what a submission folder may hold: regular files
//! and folders at relative paths of normal components. Anything else (a symbolic or hard link,
//! a device, a FIFO, an absolute path, `..`), more than [`MAX_ENTRIES`] entries or more than
//! [`MAX_BYTES`] in all is refused, naming the archive and the entry, before it is written.
//! (The scorer then applies the task's own per-file limits.) Only plain, uncompressed `tar`.

use std::path::{Component, Path, PathBuf};

use rdbench_core::{Error, Result};

/// Most entries an archive may hold (a program task's tree caps its files far lower).
pub const MAX_ENTRIES: usize = 20_000;
/// Most bytes of file contents an archive may hold, in all.
pub const MAX_BYTES: u64 = 2 << 30;

/// Whether `path` names an archive submission (by its extension).
pub fn is_archive(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tar")
}

/// Unpacks the archive at `archive` into `into` (made; must not exist), under the limits above.
pub fn unpack(archive: &Path, into: &Path) -> Result<PathBuf> {
    let refuse = |entry: &str, why: &str| {
        Error::Usage(format!(
            "{}: entry {entry:?}: {why}; a submission archive holds only regular files and \
             folders at relative paths",
            archive.display()
        ))
    };
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    std::fs::create_dir(into).map_err(|e| Error::io(into, e))?;
    let mut tar = tar::Archive::new(file);
    let (mut entries, mut bytes) = (0usize, 0u64);
    for entry in tar.entries().map_err(|e| Error::io(archive, e))? {
        let mut entry = entry.map_err(|e| Error::io(archive, e))?;
        let name = entry
            .path()
            .map_err(|e| Error::io(archive, e))?
            .into_owned();
        let shown = name.display().to_string();
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(refuse(&shown, &format!("more than {MAX_ENTRIES} entries")));
        }
        if name.as_os_str().is_empty()
            || !name
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(refuse(&shown, "not a relative path of plain names"));
        }
        let target = into.join(&name);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(&shown, &format!("{kind:?} is not a regular file")));
        }
        bytes = bytes.saturating_add(entry.size());
        if bytes > MAX_BYTES {
            return Err(refuse(
                &shown,
                &format!("more than {MAX_BYTES} bytes in all"),
            ));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // A new file: an entry naming one already unpacked is refused, not written through.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|_| refuse(&shown, "given twice, or under a file"))?;
        // The entry's reader ends at its declared size.
        std::io::copy(&mut entry, &mut out).map_err(|e| Error::io(&target, e))?;
        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&target, e))?;
        }
    }
    Ok(into.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, build: impl FnOnce(&mut tar::Builder<std::fs::File>)) -> PathBuf {
        let path = dir.join("sub.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        build(&mut b);
        b.finish().unwrap();
        path
    }

    fn file(b: &mut tar::Builder<std::fs::File>, name: &str, body: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, body).unwrap();
    }

    #[test]
    fn plain_files_and_folders_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let tar = archive(dir.path(), |b| {
            file(b, "program.json", b"{}");
            file(b, "solution/train.py", b"print(1)");
        });
        let out = unpack(&tar, &dir.path().join("out")).unwrap();
        assert_eq!(std::fs::read(out.join("program.json")).unwrap(), b"{}");
        assert_eq!(
            std::fs::read(out.join("solution/train.py")).unwrap(),
            b"print(1)"
        );
    }

    #[test]
    fn links_escapes_and_repeats_are_refused_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let link = archive(dir.path(), |b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "program.json", "/etc/passwd")
                .unwrap();
        });
        let e = unpack(&link, &dir.path().join("a"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"program.json\"") && e.contains("not a regular file"),
            "{e}"
        );
        for (i, name) in ["../x", "/abs"].into_iter().enumerate() {
            let tar = archive(dir.path(), |b| {
                // The builder refuses such names itself: write the header's name raw.
                let mut h = tar::Header::new_gnu();
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_size(1);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            });
            let e = unpack(&tar, &dir.path().join(format!("o{i}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a relative path"), "{name}: {e}");
        }
        let twice = archive(dir.path(), |b| {
            file(b, "a", b"1");
            file(b, "a", b"2");
        });
        let e = unpack(&twice, &dir.path().join("t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }
}
