//! `rdbench serve-llm` on the real SmolLM2 GGUF, answering the OpenAI Python client
//! (tests/serve_llm_client.py): greedy determinism, `n = 2`, `usage`, a stop string, and the
//! API's 404 and 400 errors. The GGUF and the `openai` package come from `scripts/test.sh`
//! (`scripts/fetch-smollm2.sh`); without them the test says so in one line and passes, except
//! under CI. Short prompts and a few tokens: a debug build without AVX2 runs the model ~25x
//! slower than the release binary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{repo, text, Env};

const MODEL: &str = "smollm2-test";

/// The fetched GGUF and a Python with `openai`; `None` (said in one line) where either is
/// missing, outside CI.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let gguf = repo().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let python = repo().join(".venv/bin/python3");
    let has_openai = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    let found = gguf.is_file() && has_openai;
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI fetches the GGUF and installs openai into .venv (scripts/test.sh); missing"
    );
    if !found {
        eprintln!(
            "skipped: no .cache/models/SmolLM2 GGUF or no openai in .venv (scripts/test.sh \
             fetches them)"
        );
    }
    found.then_some((gguf, python))
}

/// The server process, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve-llm` on a free TCP port for the model `--gguf PATH` or `--code-model DIR`
/// (`flag`); returns it with its base URL, read from its line "serving `MODEL` on http://...".
fn start(env: &Env, flag: &str, model: &PathBuf) -> (Server, String) {
    // One thread: candle's worker threads spin at each barrier, and on a busy 2-core CI machine
    // two of them were 10x slower than one (docs/serve-llm.md, "Speed").
    let mut child = env
        .command(&["serve-llm", "--listen", "127.0.0.1:0", "--threads", "1"])
        .args(["--model-name", MODEL, flag])
        .arg(model)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("rdbench serve-llm starts");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve-llm printed its address before exiting")
            .unwrap();
        eprintln!("{line}");
        if let Some(at) = line.find(" on http://") {
            let rest = &line[at + 4..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining its stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(|l| eprintln!("{}", l.unwrap_or_default())));
    (server, url)
}

#[test]
fn serve_llm_answers_the_openai_client() {
    let Some((gguf, python)) = prerequisites() else {
        return;
    };
    let env = Env::new();
    let (_server, url) = start(&env, "--gguf", &gguf);
    assert_client_contract(&python, &url, None);
}

/// The tiny code model of codecontests-scaffold behind the same API: a small one trained here
/// (seconds), saved as a model folder, served with `--code-model`.
#[test]
fn serve_llm_serves_the_tiny_code_model_to_the_openai_client() {
    let Some((_, python)) = prerequisites() else {
        return;
    };
    let env = Env::new();
    let dir = env.work.path().join("code-model");
    rdbench_code_model::train(5, &rdbench_code_model::Settings::tiny())
        .unwrap()
        .save(&dir)
        .unwrap();
    let (_server, url) = start(&env, "--code-model", &dir);
    let problem = "Solve this problem in Rust:\n\nGiven n integers, find the smallest of them.";
    assert_client_contract(&python, &url, Some(problem));
}

/// tests/serve_llm_client.py's requests and checks against the server at `url` (`prompt`: the
/// question, for a model that only writes programs).
fn assert_client_contract(python: &PathBuf, url: &str, prompt: Option<&str>) {
    let started = std::time::Instant::now();
    let out = Command::new(python)
        .arg(repo().join("tests/serve_llm_client.py"))
        .arg(format!("{url}/v1"))
        .arg(MODEL)
        .args(prompt)
        .output()
        .unwrap();
    eprintln!(
        "the client's requests took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "{}", text(&out));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    eprintln!("{seen}");
    assert_eq!(seen["n2"].as_array().unwrap().len(), 2);
}

#[test]
fn serve_llm_refuses_bad_flags_before_loading() {
    let env = Env::new();
    for args in [
        &[
            "serve-llm",
            "--gguf",
            "/nonexistent.gguf",
            "--listen",
            "127.0.0.1:0",
        ][..],
        &["serve-llm", "--gguf", "/dev/null", "--listen", "nowhere"],
        &["serve-llm", "--gguf", "/dev/null"],
    ] {
        let out = env.rdbench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    // A file that is not a GGUF is the caller's bad input (exit 2), named in the error.
    let not_gguf = env.work.path().join("model.gguf");
    std::fs::write(&not_gguf, b"not a model").unwrap();
    let out = env.rdbench(&[
        "serve-llm",
        "--listen",
        "127.0.0.1:0",
        "--gguf",
        not_gguf.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("model.gguf"), "{}", text(&out));
}
