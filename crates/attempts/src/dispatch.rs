//! The one dispatcher of the attempt commands, for same-user mode and the scoring service
//! alike: one arm per command. What a caller may do is read from its [`crate::Rights`]; where
//! files come from and go is its [`Peer`]'s.

use rdbench_client::AttemptCommand;
use rdbench_core::attempt::{no_attempt_here, no_such_id, Attempt, AttemptRef};
use rdbench_core::{Error, Result};

use crate::context::{refused, Ctx, Folders, Peer};
use crate::score::ScoreOptions;
use crate::start::StartRequest;
use crate::{review, score, start};

/// Runs `command` for `ctx.caller`; returns the exit code (0 done, 1 an invalid submission).
pub fn dispatch(ctx: &Ctx, peer: &mut dyn Peer, command: AttemptCommand) -> Result<i32> {
    match command {
        AttemptCommand::List => ctx.host.list(),
        AttemptCommand::Info { task } => ctx.host.info(&task),
        AttemptCommand::Start {
            task,
            dir,
            profile,
            time_limit,
            agent,
            owner,
            allow_unscorable,
        } => start::start(
            ctx,
            peer,
            &StartRequest {
                task: &task,
                dir: &dir,
                profile: &profile,
                time_limit,
                agent: &agent,
                owner: owner.as_deref(),
                allow_unscorable,
            },
        ),
        AttemptCommand::Score {
            attempt,
            allow_uncalibrated,
            timeout,
            emulate,
            key,
        } => score::score(
            ctx,
            peer,
            &open(ctx, &attempt)?,
            ScoreOptions {
                allow_uncalibrated,
                timeout,
                emulate,
                key,
            },
        ),
        AttemptCommand::Tool {
            attempt,
            name,
            args,
        } => {
            let attempt = open(ctx, &attempt)?;
            peer.tool_turn(&attempt, &mut || ctx.host.tool(&attempt, &name, &args))
        }
        AttemptCommand::Status { attempt } => review::status(ctx, &open(ctx, &attempt)?),
        AttemptCommand::Log { attempt } => review::log(ctx, &open(ctx, &attempt)?),
        AttemptCommand::Finish { attempt, out } => {
            refused(ctx.rights.finish)?;
            let summary = review::finish(ctx, open(ctx, &attempt)?)?;
            peer.summary(out.as_deref(), &summary)?;
            Ok(0)
        }
    }
}

/// The attempt `what` names, for this caller. Through the service an agent reaches only the
/// attempts started for it, by id or by its canonical folder; another user's attempt reads
/// exactly like no attempt at all (the same words), so the answer tells it nothing about
/// others. An operator names attempts by id only there: a folder's path belongs to the agent,
/// who can rename it and plant a link to another attempt in its place.
pub fn open(ctx: &Ctx, what: &AttemptRef) -> Result<Attempt> {
    let opened = match (what, ctx.rights.folders) {
        (AttemptRef::Id(id), _) => Attempt::open_id(ctx.home, id),
        (AttemptRef::Dir(dir), Folders::Resolved) => Attempt::open(ctx.home, dir),
        (AttemptRef::Dir(dir), Folders::Canonical) => {
            require_absolute(dir)?;
            Attempt::open_canonical(ctx.home, dir)
        }
        (AttemptRef::Dir(dir), Folders::Refused) => {
            return Err(Error::Usage(format!(
                "{}: through the scoring service an operator names an attempt by the id `start` \
                 printed (att-...), never by its folder, which its owner controls",
                dir.display()
            )))
        }
    };
    let Some(uid) = ctx.rights.own_attempts_of else {
        return opened;
    };
    let nothing_here = || match what {
        AttemptRef::Id(id) => no_such_id(id),
        AttemptRef::Dir(dir) => no_attempt_here(dir),
    };
    match opened {
        Ok(a) if a.record.owner_uid != Some(uid) => Err(nothing_here()),
        Err(Error::Usage(_)) => Err(nothing_here()),
        opened => opened,
    }
}

/// A folder the client sent: always the absolute path it resolved.
pub fn require_absolute(dir: &std::path::Path) -> Result<()> {
    if dir.is_absolute() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{}: the client sends the folder's absolute path",
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rdbench_client::proto::{FileState, Refusal};
    use rdbench_core::summary::AttemptSummary;

    use super::*;
    use crate::context::{AGENT_EMULATOR, AGENT_FINISH, AGENT_START, LOCAL_OWNER};
    use crate::testing::{Fixture, RemotePeer, SCORE_TIMEOUT_S, SOLUTION};
    use crate::{Caller, LocalPeer};

    const AGENT: Caller = Caller::Agent { uid: 4242 };
    const OPERATOR: Caller = Caller::Operator { uid: 0 };

    fn start_command(dir: &std::path::Path) -> AttemptCommand {
        AttemptCommand::Start {
            task: "fake".into(),
            dir: dir.into(),
            profile: "tiny".into(),
            time_limit: None,
            agent: "tester".into(),
            owner: None,
            allow_unscorable: false,
        }
    }

    fn by_id(attempt: &Attempt) -> AttemptRef {
        AttemptRef::Id(attempt.record.id.clone())
    }

    fn score(attempt: AttemptRef) -> AttemptCommand {
        AttemptCommand::Score {
            attempt,
            allow_uncalibrated: false,
            timeout: None,
            emulate: false,
            key: None,
        }
    }

    /// [`score`] with `--emulate`.
    fn emulated_score(attempt: AttemptRef) -> AttemptCommand {
        let mut command = score(attempt);
        if let AttemptCommand::Score { emulate, .. } = &mut command {
            *emulate = true;
        }
        command
    }

    fn usage_text(result: Result<i32>) -> String {
        match result {
            Err(Error::Usage(text)) => text,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    /// An attempt on a new folder `name`, started in same-user mode, and given to `owner_uid`
    /// (as the service's operator would with `--owner`).
    fn attempt_of(f: &Fixture, name: &str, owner_uid: u32) -> Attempt {
        let dir = f.folder(name);
        let code = dispatch(&f.ctx(Caller::Local), &mut LocalPeer, start_command(&dir)).unwrap();
        assert_eq!(code, 0);
        let mut attempt = Attempt::open(&f.home, &dir).unwrap();
        attempt.record.owner_uid = Some(owner_uid);
        attempt.save().unwrap();
        f.out.take();
        attempt
    }

    /// Same-user mode, the whole life: start writes the starting files into a folder it
    /// makes, score reads the folder and logs a calibrated entry, log and status show it,
    /// finish seals and writes `--out`.
    #[test]
    fn same_user_mode_runs_an_attempt_end_to_end() {
        let f = Fixture::new();
        let ctx = f.ctx(Caller::Local);
        let dir = f.folder("nested/att");
        assert_eq!(
            dispatch(&ctx, &mut LocalPeer, start_command(&dir)).unwrap(),
            0
        );
        let (said, _) = f.out.take();
        assert!(said.starts_with("started fake (tiny) as att-"), "{said}");
        assert!(said.contains(&format!("score with `rdbench score {}`", dir.display())));
        assert_eq!(
            std::fs::read_to_string(dir.join(SOLUTION)).unwrap(),
            "start"
        );
        assert!(dir.join("INSTRUCTIONS.md").is_file());

        // 10 bytes: 10 ms, between the calibration's 100 ms start and 10 ms reference.
        std::fs::write(dir.join(SOLUTION), "0123456789").unwrap();
        let folder = AttemptRef::Dir(dir.clone());
        assert_eq!(
            dispatch(&ctx, &mut LocalPeer, score(folder.clone())).unwrap(),
            0
        );
        let (said, _) = f.out.take();
        assert_eq!(said, "score 1.0000 (raw 2.3026: 10 ms)\n");
        {
            let calls = f.host.calls.borrow();
            let (run, seen) = &calls.runs[0];
            assert_eq!(seen, "0123456789");
            assert_eq!(run.timeout.as_secs(), SCORE_TIMEOUT_S);
            // The worker scored a snapshot in the private area, gone afterwards.
            assert!(!run.request.submission_dir.starts_with(&dir));
            assert!(!run.request.submission_dir.exists());
        }

        assert_eq!(
            dispatch(
                &ctx,
                &mut LocalPeer,
                AttemptCommand::Log {
                    attempt: folder.clone()
                }
            )
            .unwrap(),
            0
        );
        let (said, _) = f.out.take();
        assert!(
            said.contains("10 ms") && said.ends_with("chain: intact\n"),
            "{said}"
        );

        let status = AttemptCommand::Status {
            attempt: folder.clone(),
        };
        assert_eq!(dispatch(&ctx, &mut LocalPeer, status).unwrap(), 0);
        let (said, _) = f.out.take();
        assert!(said.contains("entries: 1 counted (1 valid)"), "{said}");
        assert!(said.contains("best:    1.0000 (raw 2.3026)"), "{said}");

        let out = f.folder("summary.json");
        let finish = AttemptCommand::Finish {
            attempt: folder,
            out: Some(out.clone()),
        };
        assert_eq!(dispatch(&ctx, &mut LocalPeer, finish).unwrap(), 0);
        let summary: AttemptSummary =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!((summary.score, summary.entries), (Some(1.0), 1));
        assert_eq!(summary.agent, "tester");
    }

    /// A same-user start that fails after making its folder removes it; one that fails on a
    /// typo makes none; `--owner` is refused before anything happens.
    #[test]
    fn a_failed_local_start_leaves_no_folder() {
        let f = Fixture::new();
        let ctx = f.ctx(Caller::Local);
        let dir = f.folder("att");
        let mut bad_agent = start_command(&dir);
        if let AttemptCommand::Start { agent, .. } = &mut bad_agent {
            *agent = String::new();
        }
        assert!(usage_text(dispatch(&ctx, &mut LocalPeer, bad_agent)).contains("--agent"));
        assert!(!dir.exists(), "the folder it made is gone");

        let mut typo = start_command(&dir);
        if let AttemptCommand::Start { task, .. } = &mut typo {
            *task = "fakr".into();
        }
        assert!(usage_text(dispatch(&ctx, &mut LocalPeer, typo)).contains("unknown task"));
        assert!(!dir.exists());

        let mut owned = start_command(&dir);
        if let AttemptCommand::Start { owner, .. } = &mut owned {
            *owner = Some("root".into());
        }
        assert_eq!(
            usage_text(dispatch(&ctx, &mut LocalPeer, owned)),
            LOCAL_OWNER
        );
        assert!(!dir.exists());
    }

    /// Agents cannot start or finish: refused before the client is asked for anything, and a
    /// refused finish seals nothing.
    #[test]
    fn agents_cannot_start_or_finish() {
        let f = Fixture::new();
        let mut peer = RemotePeer::default();
        let agent = f.ctx(AGENT);
        let dir = f.folder("att");
        assert_eq!(
            usage_text(dispatch(&agent, &mut peer, start_command(&dir))),
            AGENT_START
        );
        assert_eq!(peer.folders_asked, 0);

        let attempt = attempt_of(&f, "mine", 4242);
        let finish = AttemptCommand::Finish {
            attempt: by_id(&attempt),
            out: None,
        };
        assert_eq!(
            usage_text(dispatch(&agent, &mut peer, finish)),
            AGENT_FINISH
        );
        assert!(peer.summary.is_none());
        let read = attempt.score_log().read_verified().unwrap();
        assert!(read.seal.is_none(), "a refused finish seals nothing");
    }

    /// Through the service the operator starts (the client made the folder and takes the
    /// files as bytes), names the attempt by id only, and finishes it (the summary goes back
    /// in the reply).
    #[test]
    fn operators_start_and_finish_by_id_only() {
        let f = Fixture::new();
        let mut peer = RemotePeer::default();
        let operator = f.ctx(OPERATOR);
        let dir = f.folder("att");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            dispatch(&operator, &mut peer, start_command(&dir)).unwrap(),
            0
        );
        let names: Vec<&str> = peer
            .starting_files
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["INSTRUCTIONS.md", SOLUTION]);
        assert_eq!(peer.starting_files[1].1, b"start");
        assert!(
            !dir.join(SOLUTION).exists(),
            "the service writes nothing into the agent's folder"
        );
        let (said, _) = f.out.take();
        assert!(
            said.contains(&format!(
                "score with `rdbench-client score {}`",
                dir.display()
            )),
            "the agent scores through its client: {said}"
        );

        let text = usage_text(dispatch(
            &operator,
            &mut peer,
            score(AttemptRef::Dir(dir.clone())),
        ));
        assert!(
            text.contains("an operator names an attempt by the id"),
            "{text}"
        );
        assert_eq!(peer.submissions_asked, 0);

        let attempt = Attempt::open(&f.home, &dir).unwrap();
        let finish = AttemptCommand::Finish {
            attempt: by_id(&attempt),
            out: Some(PathBuf::from("/never/written")),
        };
        assert_eq!(dispatch(&operator, &mut peer, finish).unwrap(), 0);
        assert_eq!(peer.summary.unwrap().attempt_id, attempt.record.id);
        assert!(!std::path::Path::new("/never/written").exists());
    }

    /// `start --owner` through the service: the attempt belongs to that user, and a user
    /// who does not exist is a usage error naming the flag.
    #[test]
    fn the_owner_flag_gives_the_attempt_to_that_user() {
        let f = Fixture::new();
        let mut peer = RemotePeer::default();
        let operator = f.ctx(Caller::Operator { uid: 77 });
        let dir = f.folder("att");
        std::fs::create_dir_all(&dir).unwrap();
        let mut owned = start_command(&dir);
        if let AttemptCommand::Start { owner, .. } = &mut owned {
            *owner = Some("root".into());
        }
        assert_eq!(dispatch(&operator, &mut peer, owned.clone()).unwrap(), 0);
        assert_eq!(
            Attempt::open(&f.home, &dir).unwrap().record.owner_uid,
            Some(0)
        );
        if let AttemptCommand::Start { owner, dir: d, .. } = &mut owned {
            *owner = Some("no-such-user-rdbench".into());
            *d = f.folder("other");
        }
        let text = usage_text(dispatch(&operator, &mut peer, owned));
        assert!(text.starts_with("--owner: "), "{text}");
    }

    /// An agent reaches its own attempts by id or canonical folder; another user's attempt
    /// reads exactly like no attempt at all.
    #[test]
    fn another_users_attempt_reads_as_none() {
        let f = Fixture::new();
        let mut peer = RemotePeer::default();
        let agent = f.ctx(AGENT);
        let mine = attempt_of(&f, "mine", 4242);
        let theirs = attempt_of(&f, "theirs", 5000);
        let log = |attempt| AttemptCommand::Log { attempt };

        assert_eq!(dispatch(&agent, &mut peer, log(by_id(&mine))).unwrap(), 0);
        let canonical = AttemptRef::Dir(mine.record.dir.clone());
        assert_eq!(dispatch(&agent, &mut peer, log(canonical)).unwrap(), 0);

        let id = theirs.record.id.clone();
        let text = usage_text(dispatch(&agent, &mut peer, log(by_id(&theirs))));
        assert_eq!(text, usage_text(Err(no_such_id(&id))));
        let absent = "att-00000000000000000000000000000000";
        let text_absent = usage_text(dispatch(
            &agent,
            &mut peer,
            log(AttemptRef::Id(absent.into())),
        ));
        assert_eq!(text_absent, usage_text(Err(no_such_id(absent))));

        let folder = theirs.record.dir.clone();
        let text = usage_text(dispatch(
            &agent,
            &mut peer,
            log(AttemptRef::Dir(folder.clone())),
        ));
        assert_eq!(text, usage_text(Err(no_attempt_here(&folder))));
        let relative = usage_text(dispatch(
            &agent,
            &mut peer,
            log(AttemptRef::Dir("mine".into())),
        ));
        assert!(relative.contains("absolute path"), "{relative}");
    }

    /// An agent's score: the emulator refused (before its files are asked for), the scoring
    /// limit only shortened, the submission taken from the client.
    #[test]
    fn an_agents_score_keeps_the_agents_limits() {
        let f = Fixture::new();
        let agent = f.ctx(AGENT);
        let attempt = attempt_of(&f, "mine", 4242);
        let mut peer = RemotePeer {
            solution: Some(FileState::Present),
            solution_bytes: b"12345".to_vec(),
            ..RemotePeer::default()
        };
        let emulated = emulated_score(by_id(&attempt));
        assert_eq!(
            usage_text(dispatch(&agent, &mut peer, emulated)),
            AGENT_EMULATOR
        );
        assert_eq!(peer.submissions_asked, 0);

        let longer = AttemptCommand::Score {
            attempt: by_id(&attempt),
            allow_uncalibrated: false,
            timeout: Some(100_000),
            emulate: false,
            key: None,
        };
        assert_eq!(dispatch(&agent, &mut peer, longer.clone()).unwrap(), 0);
        assert_eq!(peer.submissions_asked, 1);
        // The operator's limit stands as given.
        let operator = f.ctx(OPERATOR);
        assert_eq!(dispatch(&operator, &mut peer, longer).unwrap(), 0);
        let calls = f.host.calls.borrow();
        let limits: Vec<u64> = calls
            .runs
            .iter()
            .map(|(r, _)| r.timeout.as_secs())
            .collect();
        assert_eq!(limits, [SCORE_TIMEOUT_S, 100_000]);
        assert_eq!(
            calls.runs[0].1, "12345",
            "the bytes the client sent were scored"
        );
    }

    /// `--emulate` on a task that is not a kernel task is refused: it would score as usual and
    /// log a raw score, which the emulator never gives.
    #[test]
    fn only_kernel_tasks_are_emulated() {
        let f = Fixture::new();
        let attempt = attempt_of(&f, "mine", 0);
        let emulated = emulated_score(by_id(&attempt));
        let text = usage_text(dispatch(&f.ctx(Caller::Local), &mut LocalPeer, emulated));
        assert!(text.contains("for kernel tasks"), "{text}");
        assert!(f.host.calls.borrow().runs.is_empty());
        assert_eq!(
            attempt.score_log().read_verified().unwrap().entries.len(),
            0
        );
    }

    /// A file the client refused is an invalid entry worded by the library from the task's
    /// own file name (exit code 1), and no worker runs.
    #[test]
    fn a_refused_file_is_an_invalid_entry() {
        let f = Fixture::new();
        let attempt = attempt_of(&f, "mine", 4242);
        let mut peer = RemotePeer {
            solution: Some(FileState::Refused {
                cause: Refusal::NotPlain {
                    what: rdbench_core::fsutil::NotRegular::SymbolicLink,
                },
            }),
            ..RemotePeer::default()
        };
        assert_eq!(
            dispatch(&f.ctx(AGENT), &mut peer, score(by_id(&attempt))).unwrap(),
            1
        );
        let (said, _) = f.out.take();
        assert!(said.starts_with("INVALID: "), "{said}");
        assert!(said.contains("symbolic link"), "{said}");
        assert!(said.contains(&attempt.record.dir.join(SOLUTION).display().to_string()));
        assert!(f.host.calls.borrow().runs.is_empty());
        let read = attempt.score_log().read_verified().unwrap();
        assert_eq!(read.entries.len(), 1);
        assert!(!read.entries[0].entry.valid);
    }

    /// A scoring call with a key already logged is answered from the log: the same words and
    /// exit code, no run, no entry; another key scores as usual. An invalid entry's key too.
    #[test]
    fn a_key_already_logged_is_answered_from_the_log() {
        let f = Fixture::new();
        let ctx = f.ctx(Caller::Local);
        let dir = f.folder("att");
        dispatch(&ctx, &mut LocalPeer, start_command(&dir)).unwrap();
        f.out.take();
        let keyed = |key: &str| AttemptCommand::Score {
            attempt: AttemptRef::Dir(dir.clone()),
            allow_uncalibrated: false,
            timeout: None,
            emulate: false,
            key: Some(key.parse().unwrap()),
        };
        let mut said_by_call = Vec::new();
        for (solution, key) in [
            ("0123456789", "call-1"),
            ("bad", "call-1"),
            ("bad", "call-2"),
            ("0123456789", "call-2"),
        ] {
            std::fs::write(dir.join(SOLUTION), solution).unwrap();
            let code = dispatch(&ctx, &mut LocalPeer, keyed(key)).unwrap();
            said_by_call.push((code, f.out.take().0));
        }
        assert_eq!(
            said_by_call[0],
            (0, "score 1.0000 (raw 2.3026: 10 ms)\n".into())
        );
        assert_eq!(said_by_call[1], said_by_call[0], "call-1 again");
        assert_eq!(said_by_call[2].0, 1, "{:?}", said_by_call[2]);
        assert_eq!(said_by_call[3], said_by_call[2], "call-2 again");
        assert_eq!(f.host.calls.borrow().runs.len(), 1, "one worker run");
        let attempt = Attempt::open(&f.home, &dir).unwrap();
        let read = attempt.score_log().read_verified().unwrap();
        let keys: Vec<_> = read
            .entries
            .iter()
            .map(|e| e.entry.key.as_ref().map(|k| k.as_str().to_string()))
            .collect();
        assert_eq!(keys, [Some("call-1".into()), Some("call-2".into())]);
    }

    /// `tool` runs in the peer's turn (the service's queue) and reaches the host's tool with
    /// the attempt opened for the caller; `list` and `info` are the host's.
    #[test]
    fn tools_take_their_turn_and_the_catalog_is_the_hosts() {
        let f = Fixture::new();
        let attempt = attempt_of(&f, "mine", 4242);
        let mut peer = RemotePeer::default();
        let tool = AttemptCommand::Tool {
            attempt: by_id(&attempt),
            name: "train".into(),
            args: vec!["n=1".into()],
        };
        assert_eq!(dispatch(&f.ctx(AGENT), &mut peer, tool).unwrap(), 0);
        assert_eq!(peer.tool_turns, 1);
        assert_eq!(
            f.host.calls.borrow().tools,
            [(
                attempt.record.id.clone(),
                "train".into(),
                vec!["n=1".into()]
            )]
        );
        let ctx = f.ctx(AGENT);
        assert_eq!(dispatch(&ctx, &mut peer, AttemptCommand::List).unwrap(), 40);
        let info = AttemptCommand::Info {
            task: "fake".into(),
        };
        assert_eq!(dispatch(&ctx, &mut peer, info).unwrap(), 41);
    }
}
