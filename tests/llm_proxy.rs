//! `rdbench llm-proxy` as an operator runs it: the real binary on a Unix socket in front of an
//! upstream that does not answer. What it serves itself (`/v1/models`), what it refuses
//! without asking upstream (another model), what an unreachable upstream looks like from the
//! agent's side (a fixed 502 naming no address), the private call log, and a clean stop on
//! SIGTERM with the usage printed.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Env;

/// One HTTP/1.1 exchange over the socket: the status line's code and the body.
fn http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

#[test]
fn llm_proxy_serves_refuses_and_stops_cleanly() {
    let env = Env::new();
    let socket = env.work.path().join("model.sock");
    let log = env.work.path().join("calls.jsonl");
    // Port 1 on loopback: nothing listens, so every forwarded call fails to connect.
    let upstream = "http://127.0.0.1:1/v1";
    let mut child = env
        .command(&[
            "llm-proxy",
            "--upstream",
            upstream,
            "--model",
            "tiny-coder",
            "--unix-socket",
            socket.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no socket after 30 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("llm-proxy exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (code, body) = http(&socket, "GET", "/v1/models", "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"tiny-coder\""), "{body}");

    let chat = |model: &str| {
        format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":8}}"#
        )
    };
    let (code, body) = http(&socket, "POST", "/v1/chat/completions", &chat("gpt-4o"));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("model_not_found"), "{body}");

    let (code, body) = http(&socket, "POST", "/v1/chat/completions", &chat("tiny-coder"));
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("upstream_error"), "{body}");
    assert!(
        !body.contains("127.0.0.1") && !body.contains(":1/"),
        "the reply names the upstream: {body}"
    );

    // SAFETY: a signal to the child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("requests"), "{stdout}");
    assert!(!socket.exists(), "the socket outlived the proxy");

    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the call log is readable by others");
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(!lines.contains("127.0.0.1"), "{lines}");
}
