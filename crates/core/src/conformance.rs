//! The conformance kit: what every task must hold to, checked the same way by `rdbench
//! check-task` (with the machine's scorer, its GPU or emulator and the exploit corpus) and by
//! each task crate's own tests (`cargo test -p <task>` runs [`assert_conformant`]).
//!
//! The checks here need nothing but the [`Task`] and folders:
//! - `profiles`: the profile exists, profile names are unique, a `tiny` one exists, and the task
//!   names its submission files;
//! - `prepare-deterministic`: two preparations of an attempt give the same files, byte for byte;
//! - `attempt-folder-clean`: the prepared folder holds no link, no hard-linked file, no file of
//!   the reference solution and no private path;
//! - `solutions-pass-precheck` (crate tests): the starting and reference solutions install and
//!   pass the task's own checks of a submission.
//!
//! Task crates' tests that look into a prepared attempt use [`prepare_attempt`], [`names_in`]
//! and [`files_holding`] too, so every test prepares and inspects a folder the way the kit does.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::task::{profile_of, PrepareRequest, ProfileInfo, Solution, Task};
use crate::{Error, Result};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not applicable here, for the stated reason (counts as no failure).
    Skip,
}

/// One check's name, status and detail.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

/// A check's result: an error is a failure whose detail is the error.
pub type Verdict = Result<(Status, String)>;

pub fn pass(detail: impl Into<String>) -> Verdict {
    Ok((Status::Pass, detail.into()))
}

pub fn fail(detail: impl Into<String>) -> Verdict {
    Ok((Status::Fail, detail.into()))
}

pub fn skip(detail: impl Into<String>) -> Verdict {
    Ok((Status::Skip, detail.into()))
}

/// The checks run so far, in order.
#[derive(Debug, Default)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    pub fn push(&mut self, check: impl Into<String>, verdict: Verdict) {
        let (status, detail) = verdict.unwrap_or_else(|e| (Status::Fail, e.to_string()));
        self.0.push(Check {
            check: check.into(),
            status,
            detail,
        });
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.0.iter().filter(|c| c.status == Status::Fail)
    }
}

/// Where the checks work: the installation's cache (prepared data, held-out sets), a scratch
/// folder, and the private paths an attempt folder must never name.
pub struct Site<'a> {
    pub cache_dir: &'a Path,
    pub root: &'a Path,
    pub private_paths: Vec<String>,
}

/// The checks that need no scorer: `profiles`, `prepare-deterministic`, `attempt-folder-clean`.
pub fn static_checks(task: &dyn Task, profile: &str, site: &Site) -> Checks {
    let mut checks = Checks::default();
    checks.push("profiles", profiles(task, profile));
    let Ok(profile) = profile_of(task, profile) else {
        return checks;
    };
    let profile = &profile;
    checks.push(
        "prepare-deterministic",
        deterministic_preparation(task, profile, site),
    );
    checks.push(
        "attempt-folder-clean",
        clean_attempt_folder(task, profile, site),
    );
    checks
}

/// For a task crate's tests: every check of this module on `profile`, with the installation's
/// cache at `cache_dir` (a test that has already prepared one passes it, so nothing is trained
/// twice); panics naming each failed check.
pub fn assert_conformant(task: &dyn Task, profile: &str, cache_dir: &Path) {
    let root = tempfile::tempdir().expect("a scratch folder");
    let site = Site {
        cache_dir,
        root: root.path(),
        private_paths: vec![cache_dir.display().to_string()],
    };
    let mut checks = static_checks(task, profile, &site);
    checks.push(
        "solutions-pass-precheck",
        profile_of(task, profile).and_then(|p| solutions_pass_precheck(task, &p, &site)),
    );
    let failed: Vec<String> = checks
        .failed()
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    assert!(
        failed.is_empty(),
        "{} ({profile}) fails the conformance kit:\n{}",
        task.info().name,
        failed.join("\n")
    );
}

/// For a task crate's tests: [`assert_conformant`] on every task of the crate, with a fresh
/// cache (for tasks whose preparation is cheap).
pub fn assert_all_conformant(tasks: Vec<Box<dyn Task>>, profile: &str) {
    let cache = tempfile::tempdir().expect("a cache folder");
    for task in tasks {
        assert_conformant(task.as_ref(), profile, cache.path());
    }
}

/// `profiles`.
pub fn profiles(task: &dyn Task, profile: &str) -> Verdict {
    let info = task.info();
    info.profile(profile)?;
    let mut names: Vec<&str> = info.profiles.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    names.dedup();
    if names.len() != info.profiles.len() {
        return fail("two profiles share a name");
    }
    if !names.contains(&"tiny") {
        return fail("no `tiny` profile (every task has one for CI and laptops)");
    }
    if info.submission_files.is_empty() {
        return fail("the task names no submission files");
    }
    pass(format!("profiles: {}", names.join(", ")))
}

/// `prepare-deterministic`: two attempts prepared under `root/prep-a` and `root/prep-b`.
pub fn deterministic_preparation(task: &dyn Task, profile: &ProfileInfo, site: &Site) -> Verdict {
    let a = prepare(task, profile, site, "prep-a")?;
    let b = prepare(task, profile, site, "prep-b")?;
    let (fa, fb) = (files_under(&a), files_under(&b));
    if fa != fb {
        return fail(format!("different file lists: {fa:?} vs {fb:?}"));
    }
    for f in &fa {
        if digest(&a.join(f))? != digest(&b.join(f))? {
            return fail(format!("{} differs between two preparations", f.display()));
        }
    }
    pass(format!("{} files, identical", fa.len()))
}

/// `attempt-folder-clean`, on the attempt [`deterministic_preparation`] made (prepared here if
/// it was not).
pub fn clean_attempt_folder(task: &dyn Task, profile: &ProfileInfo, site: &Site) -> Verdict {
    use std::os::unix::fs::MetadataExt;
    let attempt = site.root.join("prep-a/attempt");
    if !attempt.exists() {
        prepare(task, profile, site, "prep-a")?;
    }
    let start = install(task, Solution::Starting, profile, site)?;
    let reference = install(task, Solution::Reference, profile, site)?;
    let start_digests = digests(&start)?;
    let secret_digests: Vec<String> = digests(&reference)?
        .into_iter()
        .filter(|d| !start_digests.contains(d))
        .collect();
    let files = files_under(&attempt);
    for f in &files {
        let p = attempt.join(f);
        let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
        if meta.file_type().is_symlink() {
            return fail(format!("{} is a symbolic link", f.display()));
        }
        if meta.nlink() > 1 {
            return fail(format!("{} has {} hard links", f.display(), meta.nlink()));
        }
        if secret_digests.contains(&digest(&p)?) {
            return fail(format!(
                "{} is a file of the reference solution",
                f.display()
            ));
        }
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let text = String::from_utf8_lossy(&bytes);
        if let Some(path) = site
            .private_paths
            .iter()
            .find(|s| text.contains(s.as_str()))
        {
            return fail(format!("{} names the private path {path}", f.display()));
        }
    }
    pass(format!(
        "{} files: no links, no reference file, no private path",
        files.len()
    ))
}

/// `solutions-pass-precheck`: the starting and reference solutions pass the task's own checks
/// of a submission (they are scored by `check-task`, which has the scorer).
pub fn solutions_pass_precheck(task: &dyn Task, profile: &ProfileInfo, site: &Site) -> Verdict {
    for solution in [Solution::Starting, Solution::Reference] {
        let dir = install(task, solution, profile, site)?;
        let req = crate::task::ScoreRequest {
            profile: profile.clone(),
            submission_dir: dir.clone(),
            private_dir: site.root.join("private"),
            cache_dir: site.cache_dir.to_path_buf(),
            samples_path: site.root.join("samples.json"),
            seed: 1,
            execution: Default::default(),
        };
        if let Some((kind, reason)) = task.precheck(&req)? {
            return fail(format!(
                "the {} solution fails the precheck ({kind}): {reason}",
                solution.as_str()
            ));
        }
    }
    pass("start and reference pass the precheck")
}

/// The solution installed under `root/<solution>` (once).
fn install(
    task: &dyn Task,
    solution: Solution,
    profile: &ProfileInfo,
    site: &Site,
) -> Result<PathBuf> {
    let dir = site.root.join(solution.as_str());
    if !dir.exists() {
        task.install_solution(solution, profile, site.cache_dir, &dir)?;
    }
    Ok(dir)
}

fn prepare(task: &dyn Task, profile: &ProfileInfo, site: &Site, name: &str) -> Result<PathBuf> {
    prepare_attempt(task, profile, &site.root.join(name), site.cache_dir)
}

/// An attempt of `profile` prepared at `root/attempt` (its private folder `root/private`) from
/// the installation's cache at `cache_dir`; the attempt folder is returned. Shared by the
/// checks here and by task crates' tests that look into a prepared attempt.
pub fn prepare_attempt(
    task: &dyn Task,
    profile: &ProfileInfo,
    root: &Path,
    cache_dir: &Path,
) -> Result<PathBuf> {
    let dir = root.join("attempt");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    task.prepare(&PrepareRequest {
        profile: profile.clone(),
        attempt_dir: dir.clone(),
        private_dir: root.join("private"),
        cache_dir: cache_dir.to_path_buf(),
    })?;
    Ok(dir)
}

/// The names of what `dir` holds (files and folders, not below), sorted: what tests compare
/// a prepared folder against.
pub fn names_in(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names = entries
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<String>>>()
        .map_err(|e| Error::io(dir, e))?;
    names.sort();
    Ok(names)
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(_) => out.push(p.strip_prefix(dir).unwrap_or(&p).to_path_buf()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The files under `dir` (relative, sorted) whose bytes contain `needle`: a test's check that
/// no file of an attempt carries a secret.
pub fn files_holding(dir: &Path, needle: &[u8]) -> Result<Vec<PathBuf>> {
    let mut holding = Vec::new();
    for f in files_under(dir) {
        let path = dir.join(&f);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if needle.is_empty() || bytes.windows(needle.len()).any(|w| w == needle) {
            holding.push(f);
        }
    }
    Ok(holding)
}

fn digest(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn digests(dir: &Path) -> Result<Vec<String>> {
    files_under(dir)
        .iter()
        .map(|f| digest(&dir.join(f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::task::{
        Direction, Execution, InvalidKind, ProfileInfo, ScoreOutcome, ScoreRequest, SubmissionFile,
        SubmissionKind, TaskInfo,
    };

    /// A task that breaks the rules it is told to: prepares differently each time, or hands
    /// the agent the reference.
    struct Careless {
        leaks_reference: bool,
        preparations: AtomicU32,
    }

    impl Task for Careless {
        fn info(&self) -> TaskInfo {
            TaskInfo {
                name: "careless".into(),
                family: "careless".into(),
                title: String::new(),
                summary: String::new(),
                raw_score: String::new(),
                direction: Direction::LowerIsBetter,
                submission: SubmissionKind::Artifact,
                submission_files: vec![SubmissionFile::new("answer.txt", 64)],
                profiles: vec![ProfileInfo {
                    name: "tiny".into(),
                    description: String::new(),
                    needs_gpu: false,
                }],
                score_hidden: false,
                hardware_independent: true,
                default_time_limit_minutes: 1,
                score_timeout_s: 1,
                human_minutes: None,
                tools: Vec::new(),
            }
        }
        fn prepare(&self, req: &PrepareRequest) -> Result<()> {
            let n = self.preparations.fetch_add(1, Ordering::SeqCst);
            let text = if self.leaks_reference {
                "42".to_string()
            } else {
                format!("guess {n}")
            };
            std::fs::write(req.attempt_dir.join("answer.txt"), text).map_err(|e| Error::io("", e))
        }
        fn install_solution(
            &self,
            s: Solution,
            _: &ProfileInfo,
            _: &Path,
            dir: &Path,
        ) -> Result<()> {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let text = if s == Solution::Reference { "42" } else { "0" };
            std::fs::write(dir.join("answer.txt"), text).map_err(|e| Error::io(dir, e))
        }
        fn precheck(&self, _: &ScoreRequest) -> Result<Option<(InvalidKind, String)>> {
            Ok(None)
        }
        fn check_environment(&self, _: &ProfileInfo, _: Execution) -> Result<()> {
            Ok(())
        }
        fn score(&self, _: &ScoreRequest) -> Result<ScoreOutcome> {
            Ok(ScoreOutcome::invalid(
                InvalidKind::BadArtifact,
                "never scored",
            ))
        }
    }

    fn failed_checks(task: &Careless) -> Vec<String> {
        let root = tempfile::tempdir().unwrap();
        let site = Site {
            cache_dir: &root.path().join("cache"),
            root: root.path(),
            private_paths: Vec::new(),
        };
        static_checks(task, "tiny", &site)
            .failed()
            .map(|c| c.check.clone())
            .collect()
    }

    #[test]
    fn a_task_that_prepares_differently_or_leaks_its_reference_fails() {
        let drifting = Careless {
            leaks_reference: false,
            preparations: AtomicU32::new(0),
        };
        assert_eq!(failed_checks(&drifting), ["prepare-deterministic"]);
        let leaking = Careless {
            leaks_reference: true,
            preparations: AtomicU32::new(0),
        };
        assert_eq!(failed_checks(&leaking), ["attempt-folder-clean"]);
    }

    #[test]
    fn names_and_files_holding_a_secret_are_listed_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        for (name, text) in [
            ("b/deep.txt", "has 5eed1e in it"),
            ("c.txt", "5eed1e"),
            ("a.txt", "nothing"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        assert_eq!(names_in(dir.path()).unwrap(), ["a.txt", "b", "c.txt"]);
        assert_eq!(
            files_holding(dir.path(), b"5eed1e").unwrap(),
            [PathBuf::from("b/deep.txt"), PathBuf::from("c.txt")]
        );
        assert!(names_in(&dir.path().join("none")).is_err());
    }
}
