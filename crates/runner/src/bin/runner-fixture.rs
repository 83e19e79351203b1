//! A real child for the runner's tests.
//!
//! - As a worker (no arguments): answers `{"echo": "..."}` with the same text, its own
//!   dumpable flag and whether the reply descriptor is close-on-exec; `{"exit": N}` replies and
//!   exits with N; `{"abort": null}` replies, then aborts.
//! - `supervise DEADLINE_MS SCRIPT`: runs `/bin/sh -c SCRIPT` under the runner (so a test can
//!   run a supervisor as another user, or kill it) and prints the outcome, one `key=value` a
//!   line, then the script's stdout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    Echo(String),
    Exit(i32),
    Abort(()),
}

#[derive(Serialize)]
struct Reply {
    echo: String,
    dumpable: i32,
    reply_fd_cloexec: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "supervise" {
        std::process::exit(supervise(&args[2], &args[3]));
    }
    let served = rdbench_runner::worker::serve(|request: Request| {
        // SAFETY: plain prctl and fcntl queries.
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        // SAFETY: as above.
        let flags = unsafe { libc::fcntl(rdbench_runner::worker::REPLY_FD, libc::F_GETFD) };
        let reply = |echo: String| Reply {
            echo,
            dumpable,
            reply_fd_cloexec: flags >= 0 && flags & libc::FD_CLOEXEC != 0,
        };
        match request {
            Request::Echo(s) => (reply(s), 0),
            Request::Exit(code) => (reply(String::new()), code),
            Request::Abort(()) => (reply(String::new()), -1),
        }
    });
    match served {
        // The reply is written: now die by a signal, as a crash after the reply would.
        Ok(-1) => std::process::abort(),
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("runner-fixture: {e}");
            std::process::exit(3)
        }
    }
}

fn supervise(deadline_ms: &str, script: &str) -> i32 {
    let Ok(ms) = deadline_ms.parse::<u64>() else {
        eprintln!("runner-fixture: a deadline in ms, not {deadline_ms}");
        return 2;
    };
    let run = rdbench_runner::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdout(rdbench_runner::Output::Capture { tail: 1 << 16 })
        .deadline(Duration::from_millis(ms))
        .run();
    match run {
        Ok(o) => {
            println!("exit={:?}", o.exit);
            println!("containment={:?}", o.containment);
            println!("leaked={}", o.leaked);
            print!("{}", o.stdout.text());
            0
        }
        Err(e) => {
            eprintln!("runner-fixture: {e}");
            3
        }
    }
}
