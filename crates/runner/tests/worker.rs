//! The worker protocol with real children: the `runner-fixture` binary (the library's own
//! worker side) and `/bin/sh` scripts that misbehave in the ways a worker could.

use std::time::Duration;

use rdbench_runner::worker::{self, Refusal};
use rdbench_runner::{Command, Exit, Output};

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Reply {
    echo: String,
    dumpable: i32,
    reply_fd_cloexec: bool,
}

fn fixture() -> Command<'static> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner-fixture"));
    cmd.stderr(Output::Capture { tail: 4096 })
        .deadline(Duration::from_secs(60));
    cmd
}

/// A shell worker that reads the request, then runs `body` (`$token` holds its token).
fn script(body: &str) -> Command<'static> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            r#"token=$(head -c 60 | sed -n 's/.*"token":"\([0-9a-f]*\)".*/\1/p'); {body}"#
        ))
        .stderr(Output::Capture { tail: 4096 })
        .deadline(Duration::from_secs(60));
    cmd
}

const VALID: &str = r#"{"echo":"forged","dumpable":1,"reply_fd_cloexec":false}"#;

fn call(cmd: &mut Command<'_>, request: serde_json::Value) -> worker::Call<Reply> {
    worker::call(cmd, &request, 1 << 20, &[0, 3]).unwrap()
}

#[test]
fn a_real_worker_replies_with_the_token_non_dumpable() {
    let c = call(&mut fixture(), serde_json::json!({ "echo": "hello" }));
    assert_eq!(
        c.outcome.exit,
        Exit::Exited(0),
        "{}",
        c.outcome.stderr.text()
    );
    let reply = c.reply.unwrap();
    assert_eq!(reply.echo, "hello");
    assert_eq!(reply.dumpable, 0, "the worker made itself non-dumpable");
    assert!(
        reply.reply_fd_cloexec,
        "programs the worker runs cannot write the reply"
    );
    // A shell worker echoing the token is accepted the same way.
    let c = call(
        &mut script(&format!(
            r#"printf '{{"token":"%s","reply":%s}}' "$token" '{VALID}' >&3"#
        )),
        serde_json::json!({}),
    );
    assert_eq!(c.reply.unwrap().echo, "forged");
}

#[test]
fn a_reply_without_the_token_is_refused() {
    let c = call(
        &mut script(&format!(
            r#"printf '{{"token":"0000","reply":%s}}' '{VALID}' >&3"#
        )),
        serde_json::json!({}),
    );
    assert_eq!(c.outcome.exit, Exit::Exited(0));
    assert_eq!(c.reply.unwrap_err(), Refusal::WrongToken);
}

#[test]
fn a_reply_from_a_child_killed_by_a_signal_is_refused() {
    // The library's worker, aborting after a complete reply.
    let c = call(&mut fixture(), serde_json::json!({ "abort": null }));
    assert_eq!(
        c.reply.unwrap_err(),
        Refusal::NotExited(Exit::Signaled(libc::SIGABRT))
    );
    // A shell worker with the right token, killed after replying.
    let c = call(
        &mut script(&format!(
            r#"printf '{{"token":"%s","reply":%s}}' "$token" '{VALID}' >&3; kill -KILL $$"#
        )),
        serde_json::json!({}),
    );
    assert_eq!(
        c.reply.unwrap_err(),
        Refusal::NotExited(Exit::Signaled(libc::SIGKILL))
    );
}

#[test]
fn a_reply_with_an_exit_code_not_accepted_is_refused() {
    let c = call(&mut fixture(), serde_json::json!({ "exit": 3 }));
    assert!(c.reply.is_ok(), "3 is accepted here: {:?}", c.reply);
    let c = call(&mut fixture(), serde_json::json!({ "exit": 5 }));
    assert_eq!(c.reply.unwrap_err(), Refusal::Code(5));
}

#[test]
fn a_hanging_worker_ends_at_the_deadline_with_timed_out() {
    let mut cmd = script("sleep 1000");
    cmd.deadline(Duration::from_millis(300));
    let c = call(&mut cmd, serde_json::json!({}));
    assert_eq!(c.outcome.exit, Exit::TimedOut);
    assert_eq!(c.reply.unwrap_err(), Refusal::NotExited(Exit::TimedOut));
}

#[test]
fn a_reply_that_is_not_exactly_one_document_within_the_cap_is_refused() {
    // More bytes after the document.
    let c = call(
        &mut script(&format!(
            r#"printf '{{"token":"%s","reply":%s}}x' "$token" '{VALID}' >&3"#
        )),
        serde_json::json!({}),
    );
    assert!(
        matches!(c.reply, Err(Refusal::Malformed(_))),
        "{:?}",
        c.reply
    );
    // Nothing at all.
    let c = call(&mut script("exit 0"), serde_json::json!({}));
    assert!(
        matches!(c.reply, Err(Refusal::Malformed(_))),
        "{:?}",
        c.reply
    );
    // Over the cap (the worker is not blocked by it: the rest is read and counted).
    let mut cmd = script("head -c 3000000 /dev/zero >&3");
    let c: worker::Call<Reply> =
        worker::call(&mut cmd, &serde_json::json!({}), 1000, &[0]).unwrap();
    assert_eq!(
        c.reply.unwrap_err(),
        Refusal::TooLong {
            total: 3_000_000,
            cap: 1000
        }
    );
}

#[test]
fn a_worker_not_started_by_the_protocol_says_so() {
    let o = Command::new(env!("CARGO_BIN_EXE_runner-fixture"))
        .stderr(Output::Capture { tail: 4096 })
        .run()
        .unwrap();
    assert_eq!(o.exit, Exit::Exited(3));
    assert!(
        o.stderr.text().contains("not started as a worker"),
        "{}",
        o.stderr.text()
    );
}
