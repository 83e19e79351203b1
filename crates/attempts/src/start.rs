//! `start`: the task prepares into the home's private staging folder, never into the agent's
//! folder, so the scorer writes nothing where the agent could have planted a link, and a
//! killed `start` leaves no attempt. The [`crate::Peer`] then puts the starting files into the
//! agent's folder (this process in same-user mode, the client through the service).

use std::path::{Path, PathBuf};

use rdbench_core::attempt::{Attempt, StagedAttempt};
use rdbench_core::task::{profile_of, Execution, PrepareRequest, ProfileInfo, Task};
use rdbench_core::{Error, Result};

use crate::context::{refused, Caller, Ctx, OwnerFlag, Peer};
use crate::score::{calibrate_command, no_calibration, readiness, Readiness};

/// What `start` was asked for.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub task: &'a str,
    /// The folder as the command names it (shown back in the report).
    pub dir: &'a Path,
    pub profile: &'a str,
    pub time_limit: Option<f64>,
    pub agent: &'a str,
    pub owner: Option<&'a str>,
    /// Start even though this installation cannot score the profile.
    pub allow_unscorable: bool,
}

/// `start`, whole: the caller's rights, the owner, the folder, staging, the starting files,
/// publishing and the report.
pub fn start(ctx: &Ctx, peer: &mut dyn Peer, req: &StartRequest) -> Result<i32> {
    refused(ctx.rights.start)?;
    let owner_uid = match (req.owner, ctx.rights.owner_flag) {
        (None, _) => ctx.caller.uid(),
        (Some(_), OwnerFlag::Refused(why)) => return Err(Error::Usage(why.into())),
        (Some(name), OwnerFlag::LookedUp) => {
            rdbench_core::untrusted_tree::lookup_user(name)
                .map_err(|e| Error::Usage(format!("--owner: {e}")))?
                .uid
        }
    };
    // A typo in the task or profile, and a profile this installation cannot score, are
    // refused before a folder is made or an attempt recorded.
    let task = ctx.host.task(req.task)?;
    let profile = profile_of(task.as_ref(), req.profile)?;
    if !req.allow_unscorable {
        refuse_unscorable(ctx, task.as_ref(), &profile)?;
    }
    let folder = peer.attempt_folder(req.dir)?;
    let staged = stage(ctx, req, &folder.path, owner_uid).inspect_err(|_| {
        if folder.created {
            let _ = rdbench_core::untrusted_tree::remove_empty_dir(&folder.path);
        }
    })?;
    peer.starting_files(&folder.path, &staged.public_dir, &staged.files)?;
    let attempt = staged.publish()?;
    report_started(ctx, &attempt, req.dir);
    Ok(0)
}

/// Why this installation cannot score `profile` of `task`, and the operator's command that
/// would make it scorable where there is one; `None` where it can score it. It cannot where
/// the task's environment check fails (no GPU for a GPU profile, no ground-truth sweep), or
/// where no calibration normalizes its scores on this device: `score` would refuse every run
/// (or log raw scores only with `--allow-uncalibrated`) and `finish` would give no final score.
fn unscorable(
    ctx: &Ctx,
    task: &dyn Task,
    profile: &ProfileInfo,
) -> Result<Option<(String, Option<String>)>> {
    let name = task.info().name;
    match readiness(ctx, task, profile, Execution::Measured) {
        Err(Error::Environment(why)) => Ok(Some((why, None))),
        Err(e) => Err(e),
        Ok(Readiness {
            fp: Some(fp),
            calibration: None,
        }) => Ok(Some((
            no_calibration(&name, &profile.name, &fp),
            Some(calibrate_command(&name, &profile.name)),
        ))),
        Ok(_) => Ok(None),
    }
}

/// Refuses (exit code 3, one line) a profile this installation cannot score, naming why, the
/// task's other profiles that it can score, and the operator's command where one helps.
fn refuse_unscorable(ctx: &Ctx, task: &dyn Task, profile: &ProfileInfo) -> Result<()> {
    let Some((why, fix)) = unscorable(ctx, task, profile)? else {
        return Ok(());
    };
    let info = task.info();
    let mut line = format!(
        "{}/{} cannot be scored on this installation: {}",
        info.name,
        profile.name,
        why.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    if let Some(fix) = fix {
        line.push_str(&format!("; the operator runs {fix} first"));
    }
    let mut scorable = Vec::new();
    for other in info.profiles.iter().filter(|p| *p != profile) {
        if unscorable(ctx, task, other)?.is_none() {
            scorable.push(format!("--profile {}", other.name));
        }
    }
    if !scorable.is_empty() {
        line.push_str(&format!("; {} can be scored here", scorable.join(" or ")));
    }
    Err(Error::Environment(line))
}

/// A prepared, not yet visible attempt: its starting files in `public_dir` (inside the
/// staging folder, private), for the caller to put into the agent's folder.
pub struct Staged {
    staged: StagedAttempt,
    pub public_dir: PathBuf,
    /// The starting files, relative to `public_dir`.
    pub files: Vec<String>,
}

impl Staged {
    /// Makes the attempt visible; the staged copy of the starting files goes.
    pub fn publish(self) -> Result<Attempt> {
        let _ = std::fs::remove_dir_all(&self.public_dir);
        self.staged.publish()
    }
}

/// `start`, up to the point where the starting files exist, for the attempt on the canonical
/// folder `canonical_dir` owned by `owner_uid`.
pub fn stage(
    ctx: &Ctx,
    req: &StartRequest,
    canonical_dir: &Path,
    owner_uid: u32,
) -> Result<Staged> {
    let task = ctx.host.task(req.task)?;
    let info = task.info();
    let profile = info.profile(req.profile)?.clone();
    check_agent_name(req.agent)?;
    if let Some(t) = req.time_limit {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::Usage(format!(
                "--time-limit must be a positive number of minutes, not {t}"
            )));
        }
    }
    let limit = req
        .time_limit
        .unwrap_or(info.default_time_limit_minutes as f64);
    let staged = Attempt::stage(
        ctx.home,
        &info.name,
        req.profile,
        req.agent,
        canonical_dir,
        Some(limit),
        Some(owner_uid),
    )?;
    let public_dir = staged.attempt.private_dir.join("public");
    let prepared = rdbench_core::fsutil::create_private_dir_all(&public_dir).and_then(|_| {
        task.prepare(&PrepareRequest {
            profile,
            attempt_dir: public_dir.clone(),
            private_dir: staged.attempt.task_private_dir(),
            cache_dir: ctx.home.cache_dir(),
        })
    });
    let files = prepared.and_then(|_| list_files(&public_dir));
    match files {
        Ok(files) => Ok(Staged {
            staged,
            public_dir,
            files,
        }),
        Err(e) => {
            staged.abandon();
            Err(e)
        }
    }
}

/// Longest `--agent` name: it is stored in the record and every summary.
const MAX_AGENT_NAME: usize = 128;

/// `--agent` is a label for reports: short and printable.
pub fn check_agent_name(agent: &str) -> Result<()> {
    if !rdbench_core::template::is_short_label(agent, MAX_AGENT_NAME) {
        return Err(Error::Usage(format!(
            "--agent must be 1 to {MAX_AGENT_NAME} printable characters"
        )));
    }
    Ok(())
}

/// The regular files under `root`, relative and `/`-separated, sorted.
fn list_files(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                let rel = entry.path();
                let rel = rel.strip_prefix(root).unwrap_or(&rel);
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What `start` prints: the record with `--json`, else where the attempt is and how to score.
pub fn report_started(ctx: &Ctx, attempt: &Attempt, given_dir: &Path) {
    if ctx.json {
        ctx.out.json(&attempt.record);
    } else {
        // Through the service the attempt is someone else's, who scores with the client.
        let scorer = match ctx.caller {
            Caller::Local => "rdbench",
            Caller::Agent { .. } | Caller::Operator { .. } => "rdbench-client",
        };
        say!(
            ctx,
            "started {} ({}) as {} in {} — read INSTRUCTIONS.md there; score with `{scorer} score {}`",
            attempt.record.task,
            attempt.record.profile,
            attempt.record.id,
            attempt.record.dir.display(),
            given_dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Fixture;

    /// Nested starting files are listed relative and sorted; folders are not files.
    #[test]
    fn starting_files_are_listed_relative_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("z.txt"), "").unwrap();
        std::fs::write(dir.path().join("b/c/a.cu"), "").unwrap();
        std::fs::write(dir.path().join("a.md"), "").unwrap();
        assert_eq!(
            list_files(dir.path()).unwrap(),
            ["a.md", "b/c/a.cu", "z.txt"]
        );
    }

    #[test]
    fn agent_names_are_short_and_printable() {
        assert!(check_agent_name("claude-4 (run 3)").is_ok());
        for bad in ["".to_string(), "a\u{1b}[2J".into(), "x".repeat(129)] {
            assert!(
                matches!(check_agent_name(&bad), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
    }

    /// What the home holds besides its index: the attempts recorded.
    fn attempts_recorded(f: &Fixture) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(f.home.attempts_dir())
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name())
                    .filter(|name| name != "by-dir")
                    .collect()
            })
            .unwrap_or_default()
    }

    fn request<'a>(dir: &'a Path, profile: &'a str) -> StartRequest<'a> {
        StartRequest {
            task: "fake",
            dir,
            profile,
            time_limit: None,
            agent: "a",
            owner: None,
            allow_unscorable: false,
        }
    }

    fn environment_text(result: Result<i32>) -> String {
        match result {
            Err(Error::Environment(text)) => text,
            other => panic!("expected an environment error, got {other:?}"),
        }
    }

    /// A profile whose environment check fails is refused in one line naming why and the
    /// profiles this installation can score, before a folder or an attempt exists; the
    /// operator's `--allow-unscorable` starts it anyway.
    #[test]
    fn a_profile_that_cannot_be_scored_is_refused_before_anything_is_written() {
        let f = Fixture::new();
        let ctx = f.ctx(crate::Caller::Local);
        let dir = f.folder("att");
        let text = environment_text(start(
            &ctx,
            &mut crate::LocalPeer,
            &request(&dir, crate::testing::GPU_PROFILE),
        ));
        assert_eq!(
            text,
            format!(
                "fake/gpu cannot be scored on this installation: {}; \
                 --profile tiny or --profile broken can be scored here",
                crate::testing::NO_GPU
            )
        );
        assert!(!dir.exists(), "no folder made");
        assert!(attempts_recorded(&f).is_empty());

        let mut anyway = request(&dir, crate::testing::GPU_PROFILE);
        anyway.allow_unscorable = true;
        assert_eq!(start(&ctx, &mut crate::LocalPeer, &anyway).unwrap(), 0);
        assert_eq!(attempts_recorded(&f).len(), 1);
    }

    /// Without a calibration nothing a start leads to can be normalized: refused, naming
    /// the operator's `calibrate` command, also for the operator through the service (whose
    /// client is never asked for the folder).
    #[test]
    fn an_uncalibrated_profile_is_refused_with_the_operators_command() {
        let f = Fixture::new();
        f.host.uncalibrated.set(true);
        let dir = f.folder("att");
        let text = environment_text(start(
            &f.ctx(crate::Caller::Local),
            &mut crate::LocalPeer,
            &request(&dir, "tiny"),
        ));
        assert!(
            text.starts_with("fake/tiny cannot be scored on this installation: no calibration"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "; the operator runs `rdbench calibrate --task fake --profile tiny` first"
            ),
            "no other profile is scorable either: {text}"
        );
        assert!(!text.contains('\n'));
        assert!(!dir.exists());

        let mut peer = crate::testing::RemotePeer::default();
        let operator = f.ctx(crate::Caller::Operator { uid: 0 });
        std::fs::create_dir(&dir).unwrap();
        let served = environment_text(start(&operator, &mut peer, &request(&dir, "tiny")));
        assert_eq!(served, text, "the same line through the service");
        assert_eq!(peer.folders_asked, 0);
        assert!(attempts_recorded(&f).is_empty());
    }

    /// A start whose task fails to prepare leaves no attempt and no staging folder behind.
    #[test]
    fn a_failed_preparation_leaves_nothing() {
        let f = Fixture::new();
        let ctx = f.ctx(crate::Caller::Local);
        let dir = f.folder("att");
        std::fs::create_dir_all(&dir).unwrap();
        let req = StartRequest {
            task: "fake",
            dir: &dir,
            profile: crate::testing::BROKEN_PROFILE,
            time_limit: None,
            agent: "a",
            owner: None,
            allow_unscorable: false,
        };
        let e = stage(&ctx, &req, &dir, 0).err().unwrap();
        assert!(e.to_string().contains("cannot prepare"), "{e}");
        let left: Vec<_> = std::fs::read_dir(f.home.attempts_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|name| name != "by-dir")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
