//! Starving the protected scoring service (issue 20, class 6), end to end: the agent, as its
//! own user, speaks to the socket from small Python scripts (trickling bytes, holding idle
//! connections, announcing large uploads and then stalling) while the test, as root, is the
//! operator. The operator must be served promptly throughout, the agent refused only when its
//! own cap is hit (and told which), and a trickled message cut at its deadline.
//!
//! The caps and deadlines themselves are unit-tested in `commands/admission.rs` and
//! `client/src/wire.rs`; here the deployment shows them holding against a real socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use rdbench_client::proto::{
    Envelope, FileState, Request, SubmittedFile, SubmittedFiles, PROTOCOL_VERSION,
};
use rdbench_core::attempt::AttemptRef;

use super::protected::{code, Deployment, AGENT_USER};
use super::text;

/// Framing helpers every script shares: a message is "RDB1", a u32 header length, the JSON
/// header, a u32 blob count, then (u64 length, bytes) per blob.
const PY_COMMON: &str = r#"
import json, select, socket, struct, sys, time

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s

def read_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += chunk
    return b

def read_message(s):
    assert read_exact(s, 4) == b"RDB1"
    (n,) = struct.unpack("<I", read_exact(s, 4))
    header = json.loads(read_exact(s, n))
    (count,) = struct.unpack("<I", read_exact(s, 4))
    for _ in range(count):
        (m,) = struct.unpack("<Q", read_exact(s, 8))
        read_exact(s, m)
    return header

def frame_head(header_json, blob_count):
    return b"RDB1" + struct.pack("<I", len(header_json)) + header_json + struct.pack("<I", blob_count)
"#;

/// The framed first message of a command.
fn envelope(request: Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    rdbench_client::wire::write_message(
        &mut bytes,
        &Envelope {
            protocol: PROTOCOL_VERSION,
            json: false,
            request,
        },
        &[],
    )
    .unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Python script run as the agent, its stdout piped for the test to follow line by line.
fn agent_python(d: &Deployment, script: &str, args: &[&str]) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(format!("{PY_COMMON}\n{script}"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&d.agent_dir)
        .uid(d.uid)
        .gid(d.gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs as the agent")
}

/// The next JSON line the script prints (it prints nothing else on stdout).
fn next_json(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> serde_json::Value {
    let line = lines
        .next()
        .expect("the agent's script printed a line")
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn finish(mut child: Child) {
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the agent's script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The operator's own command through the socket, timed.
fn operator(
    d: &Deployment,
    socket: &std::path::Path,
    args: &[&str],
) -> (std::process::Output, f64) {
    let start = Instant::now();
    let out = Command::new(&d.bin)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the operator's command runs");
    (out, start.elapsed().as_secs_f64())
}

/// Eight connections (the agent's cap) trickle a header one byte a second; a ninth gets a busy
/// answer naming that cap; sixty more idle ones flood the accept loop. The operator is served
/// meanwhile, and each trickling connection ends at its 10 s header deadline, not later.
#[test]
fn trickling_and_idle_connections_hold_only_the_agents_own_slots_and_end_at_their_deadline() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("starve-conn");
    let sock = service.socket.to_str().unwrap();
    let script = r#"
path, env = sys.argv[1], bytes.fromhex(sys.argv[2])
trickling, started = [], []
for i in range(8):
    s = connect(path)
    # A 1,000-byte header is announced; it will come one space a second.
    s.sendall(b"RDB1" + struct.pack("<I", 1000))
    trickling.append(s)
    started.append(time.monotonic())
ninth = connect(path)
ninth.sendall(env)
print(json.dumps({"ninth": read_message(ninth)}), flush=True)
flood = []
for i in range(60):
    try:
        flood.append(connect(path))
    except OSError as e:
        break
print(json.dumps({"flood": len(flood)}), flush=True)
ended, replies = [None] * 8, [""] * 8
last_byte = time.monotonic()
while any(e is None for e in ended) and time.monotonic() - started[0] < 40:
    alive = [s for i, s in enumerate(trickling) if ended[i] is None]
    readable, _, _ = select.select(alive, [], [], 0.05)
    for s in readable:
        i = trickling.index(s)
        ended[i] = time.monotonic() - started[i]
        try:
            replies[i] = json.dumps(read_message(s))
        except Exception as e:
            replies[i] = "no reply: %r" % e
    if time.monotonic() - last_byte >= 1:
        last_byte = time.monotonic()
        for i, s in enumerate(trickling):
            if ended[i] is None:
                try:
                    s.send(b" ")
                except OSError:
                    pass
print(json.dumps({"lifetimes": ended, "replies": replies}), flush=True)
"#;
    let child = agent_python(&d, script, &[sock, &hex(&envelope(Request::List))]);
    let mut child = child;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    // The ninth connection of the same agent is refused, and told it is its own cap.
    let ninth = next_json(&mut lines);
    let stderr = ninth["ninth"]["stderr"].as_str().unwrap_or_default();
    assert_eq!(ninth["ninth"]["code"], 3, "{ninth}");
    assert!(
        stderr.contains("busy: this user has 8 connections open"),
        "{ninth}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let flood = next_json(&mut lines);
    assert_eq!(flood["flood"], 60, "{flood}");

    // Meanwhile (the trickling connections live 10 s) the operator is served at once.
    for args in [&["list"][..], &["info", "prefix-sum"]] {
        let (out, took) = operator(&d, &service.socket, args);
        assert_eq!(code(&out), Some(0), "{args:?}: {}", text(&out));
        eprintln!("operator {args:?} served in {took:.2} s while the agent held its connections");
        assert!(took < 8.0, "{args:?} took {took:.1} s");
    }

    // Each trickling connection ended at its header deadline (10 s from its first byte),
    // though it sent a byte every second, and was told so.
    let done = next_json(&mut lines);
    eprintln!("trickling connections: {done}");
    for (i, lifetime) in done["lifetimes"].as_array().unwrap().iter().enumerate() {
        let lifetime = lifetime
            .as_f64()
            .unwrap_or_else(|| panic!("connection {i} was never cut: {done}"));
        assert!(
            (9.5..13.0).contains(&lifetime),
            "connection {i} lived {lifetime:.1} s: {done}"
        );
        let reply = done["replies"][i].as_str().unwrap();
        assert!(reply.contains("deadline of 10.0 s"), "{reply}");
    }
    finish(child);

    // The agent's slots came back: it is served again (its list is not refused).
    let (out, _) = operator(&d, &service.socket, &["list"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    let script = r#"
s = connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
print(json.dumps(read_message(s)), flush=True)
"#;
    let mut child = agent_python(&d, script, &[sock, &hex(&envelope(Request::List))]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let reply = next_json(&mut lines);
    assert_eq!(reply["code"], 0, "{reply}");
    finish(child);
}

/// Three uploads of restricted-mlm's largest weights file, announced and then stalled, hold the
/// agent's whole receive budget (1.25 GiB); a fourth is refused naming that budget, while the
/// operator's own score goes through. The budget comes back when the uploads end.
#[test]
fn stalled_uploads_hold_only_the_agents_own_budget_and_the_operator_still_scores() {
    let Some(d) = Deployment::new() else { return };
    let service = d.serve("starve-bytes");
    let sock = service.socket.to_str().unwrap();
    // The platform starts an attempt for the agent, and one of its own.
    let start = |task: &str, dir: &std::path::Path, owner: Option<&str>| -> String {
        // restricted-mlm has no calibration in the test's home (its scores here are raw).
        let mut args = vec![
            "--json",
            "start",
            task,
            "--profile",
            "tiny",
            "--allow-unscorable",
        ];
        if let Some(owner) = owner {
            args.extend(["--owner", owner]);
        }
        args.extend(["--dir", dir.to_str().unwrap()]);
        let (out, _) = operator(&d, &service.socket, &args);
        assert_eq!(code(&out), Some(0), "start {task}: {}", text(&out));
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        record["id"].as_str().unwrap().to_string()
    };
    let theirs = start("restricted-mlm", &d.agent_dir.join("mlm"), Some(AGENT_USER));
    let ours = start("tree-traversal", &d.root.join("operator-tt"), None);

    let score = envelope(Request::Score {
        attempt: AttemptRef::Id(theirs),
        allow_uncalibrated: true,
        timeout: None,
        emulate: false,
        key: None,
    });
    let files = serde_json::to_vec(&SubmittedFiles {
        files: ["model.toml", "weights.safetensors"]
            .map(|name| SubmittedFile {
                name: name.into(),
                state: FileState::Present,
                executable: false,
            })
            .to_vec(),
    })
    .unwrap();
    let script = r#"
path, env, files = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
def upload(weights):
    s = connect(path)
    s.sendall(env)
    read_message(s)
    # model.toml whole, then the weights' length and its first byte only.
    s.sendall(frame_head(files, 2) + struct.pack("<Q", 4) + b"x=1\n" + struct.pack("<Q", weights) + b"\0")
    return s
# The service says how large the weights may be.
probe = connect(path)
probe.sendall(env)
need = read_message(probe)
probe.close()
weights = [f["max_bytes"] for f in need["files"] if f["name"] == "weights.safetensors"][0]
held = [upload(weights) for _ in range(3)]
fourth = upload(weights)
print(json.dumps({"weights": weights, "fourth": read_message(fourth)}), flush=True)
sys.stdin.read()
for s in held:
    s.close()
time.sleep(1)
# With the budget back, a whole (small, wrong) submission is scored, not refused.
s = connect(path)
s.sendall(env)
read_message(s)
s.sendall(frame_head(files, 2) + struct.pack("<Q", 4) + b"x=1\n" + struct.pack("<Q", 4) + b"\0\0\0\0")
print(json.dumps({"after": read_message(s)}), flush=True)
"#;
    let mut child = agent_python(&d, script, &[sock, &hex(&score), &hex(&files)]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = next_json(&mut lines);
    eprintln!("uploads: {held}");
    let weights = held["weights"].as_u64().unwrap();
    // Three fit in 1.25 GiB, four do not: the test means what it says.
    assert!(3 * weights <= 5 << 28 && 4 * weights > 5 << 28, "{held}");
    let stderr = held["fourth"]["stderr"].as_str().unwrap_or_default();
    assert_eq!(held["fourth"]["code"], 3, "{held}");
    assert!(
        stderr
            .contains("busy: this user's uploads in progress hold its receive budget of 1.25 GiB"),
        "{held}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");

    // The operator scores its own attempt while the agent's uploads stall.
    let (out, took) = operator(&d, &service.socket, &["score", &ours]);
    assert_eq!(code(&out), Some(0), "operator's score: {}", text(&out));
    eprintln!("operator's score served in {took:.2} s while the agent held its budget");

    child.stdin.take().unwrap().write_all(b"done").unwrap();
    let after = next_json(&mut lines);
    let reply = &after["after"];
    assert!(
        !reply["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("busy"),
        "{after}"
    );
    assert_eq!(reply["code"], 1, "an invalid entry, not a refusal: {after}");
    finish(child);
}
