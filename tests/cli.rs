//! End-to-end tests of the `rdbench` binary: each runs the real executable in a temporary
//! home and attempt folder. GPU-only paths are exercised up to the point where a machine
//! without a GPU must stop (exit code 3); on a GPU machine the same tests go further.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod documented_commands;
mod fanout;
mod finetune_qa_full;
mod inspect_eval;
mod llm_proxy;
mod protected;
mod protected_starvation;
mod serve_llm;
mod slurm;
mod task_standard;

/// The binary under test (`RDBENCH_BIN` lets the prebuilt test binary run on another machine).
fn rdbench_bin() -> PathBuf {
    std::env::var_os("RDBENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rdbench")))
}

struct Env {
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    /// The commands' temporary folder ($TMPDIR), to show nothing is left there.
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn rdbench(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("rdbench runs")
    }

    /// `rdbench args` in this environment, not yet started.
    fn command(&self, args: &[&str]) -> Command {
        // RDBENCH_BIN / RDBENCH_REPO let the prebuilt test binary run on another machine
        // (the GPU check carries binaries built here).
        let mut command = self.program(&rdbench_bin());
        command.args(args);
        command
    }

    /// `program` (rdbench or one of the helpers built beside it) in this environment.
    fn program(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            // A home rdbench makes itself, so its own mode is rdbench's doing.
            .env("RDBENCH_HOME", self.home.path().join("home"))
            .env("TMPDIR", self.tmp.path())
            .env(
                "RDBENCH_SHIPPED_CALIBRATION",
                self.home.path().join("no-shipped"),
            );
        command
    }

    fn attempt(&self, name: &str, task: &str, profile: &str) -> PathBuf {
        self.start(name, &["start", task, "--profile", profile])
    }

    /// As [`Env::attempt`], for a profile this installation may be unable to score (a kernel
    /// task without a GPU, or without a calibration in the test's home): for the tests of the
    /// scorer's checks before the environment's, and of the emulator.
    fn attempt_anyway(&self, name: &str, task: &str, profile: &str) -> PathBuf {
        self.start(
            name,
            &["start", task, "--profile", profile, "--allow-unscorable"],
        )
    }

    fn start(&self, name: &str, args: &[&str]) -> PathBuf {
        let dir = self.work.path().join(name);
        let mut args = args.to_vec();
        args.extend(["--dir", dir.to_str().unwrap()]);
        let out = self.rdbench(&args);
        assert_eq!(out.status.code(), Some(0), "start: {}", text(&out));
        dir
    }

    fn log(&self, dir: &Path) -> Vec<serde_json::Value> {
        let out = self.rdbench(&["--json", "log", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "log: {}", text(&out));
        let log: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("log --json is JSON");
        assert!(log["chain"]["intact"].is_boolean(), "{log}");
        log["entries"]
            .as_array()
            .expect("log --json has entries")
            .clone()
    }
}

/// Every folder and file under `root` (links not followed) is private to its user.
fn assert_private(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(
                mode & 0o077,
                0,
                "{} is mode {mode:o}",
                entry.path().display()
            );
            seen += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    let mode = std::fs::metadata(root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", root.display());
    assert!(seen > 0, "nothing under {}", root.display());
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn repo() -> PathBuf {
    std::env::var_os("RDBENCH_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Whether this machine has a GPU; with `RDBENCH_REQUIRE_GPU=1` (the GPU check) a missing
/// GPU fails the test instead of sending it down its no-GPU branch.
fn has_gpu() -> bool {
    let present = rdbench_gpu::device::device_count().is_ok();
    assert!(
        present || !rdbench_gpu::testing::gpu_required(),
        "RDBENCH_REQUIRE_GPU=1 but no GPU"
    );
    present
}

#[test]
fn list_info_and_doctor_work_everywhere() {
    let env = Env::new();
    let out = env.rdbench(&["--json", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tasks
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "prefix-sum"));
    let out = env.rdbench(&["info", "prefix-sum"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ln(median milliseconds"));
    let out = env.rdbench(&["--json", "doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let libcuda_found = doc["libcuda"]["found"]
        .as_bool()
        .expect("doctor reports whether libcuda was found");
    assert!(
        doc["cpu"]["name"].as_str().is_some_and(|n| !n.is_empty()),
        "doctor names the CPU: {doc}"
    );
    if has_gpu() {
        assert!(libcuda_found, "a GPU machine has libcuda: {doc}");
        assert!(
            !doc["gpus"].as_array().unwrap().is_empty(),
            "doctor lists the GPUs: {doc}"
        );
    } else {
        let out = env.rdbench(&["doctor"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("no NVIDIA driver found"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let env = Env::new();
    let out = env.rdbench(&["info", "no-such-task"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("prefix-sum"),
        "lists the tasks: {}",
        text(&out)
    );
    let dir = env.work.path().join("a");
    let out = env.rdbench(&[
        "start",
        "prefix-sum",
        "--dir",
        dir.to_str().unwrap(),
        "--profile",
        "huge",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tiny"),
        "{}",
        text(&out)
    );
    assert!(!dir.exists(), "a failed start leaves no folder behind");
    let out = env.rdbench(&["start", "no-such-task", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.exists(), "a failed start leaves no folder behind");
    let out = env.rdbench(&["score", env.work.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rdbench start"),
        "{}",
        text(&out)
    );
    let out = env.rdbench(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    // With --json the error is a JSON document on stdout as well.
    let out = env.rdbench(&["--json", "info", "no-such-task"]);
    assert_eq!(out.status.code(), Some(2));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(err["exit_code"], 2);
    assert!(
        err["error"].as_str().unwrap().contains("no-such-task"),
        "{err}"
    );
}

#[test]
fn start_copies_the_starting_solution_and_keeps_the_log_outside() {
    let env = Env::new();
    let dir = env.attempt_anyway("a", "prefix-sum", "tiny");
    for f in [
        "solution.cu",
        "launch.toml",
        "INSTRUCTIONS.md",
        "LAUNCH_PLAN.md",
    ] {
        assert!(dir.join(f).is_file(), "{f} copied");
    }
    let all: Vec<String> = walk(&dir);
    assert!(
        all.iter()
            .all(|p| !p.contains("score_log") && !p.contains("reference")),
        "{all:?}"
    );
    let instructions = std::fs::read_to_string(dir.join("INSTRUCTIONS.md")).unwrap();
    assert!(
        instructions.contains("4,000,037"),
        "the profile's n is in the instructions"
    );
    // A second start on the same folder is refused.
    let out = env.rdbench(&[
        "start",
        "prefix-sum",
        "--allow-unscorable",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn score_without_gpu_exits_3_and_logs_nothing() {
    if has_gpu() {
        eprintln!("skipped: this machine has a GPU");
        return;
    }
    let env = Env::new();
    let dir = env.attempt_anyway("a", "prefix-sum", "tiny");
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no NVIDIA driver found"),
        "{}",
        text(&out)
    );
    assert!(
        env.log(&dir).is_empty(),
        "an environment error is not the submission's fault"
    );
}

/// The conformance kit over the whole registry: every task passes `rdbench check-task` at its
/// tiny profile (profiles, deterministic preparation, a clean attempt folder, every `.cu`
/// compiling, start and reference, and its exploit corpus: kernel tasks through the real
/// scorer on the CPU emulator when there is no GPU). A new task is covered without an edit.
#[test]
fn every_registered_task_passes_check_task() {
    let env = Env::new();
    let out = env.rdbench(&["--json", "list"]);
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in tasks.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let out = env.rdbench(&["--json", "check-task", name, "--profile", "tiny"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{name}: check-task --json is JSON: {}", text(&out)));
        let checks = report["checks"].as_array().unwrap();
        let failed: Vec<&serde_json::Value> =
            checks.iter().filter(|c| c["status"] == "fail").collect();
        assert!(failed.is_empty(), "{name}: {failed:#?}");
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let exploits: Vec<&serde_json::Value> = checks
            .iter()
            .filter(|c| c["check"].as_str().unwrap().starts_with("exploit:"))
            .collect();
        assert!(!exploits.is_empty(), "{name} has an exploit corpus");
        // Every case runs somewhere in CI: kernel tasks' run-stage cases on the emulator.
        if std::env::var_os("CI").is_some() {
            let skipped: Vec<_> = exploits
                .iter()
                .filter(|c| {
                    c["status"] == "skip"
                        && !c["detail"].as_str().unwrap().contains("nondeterministic")
                })
                .collect();
            assert!(
                skipped.is_empty(),
                "{name}: cases skipped in CI: {skipped:#?}"
            );
        }
    }
}

/// An emulated run is logged as correct and never becomes a score; a wrong submission on the
/// emulator is an invalid entry of the same kind as on a GPU.
#[test]
fn emulated_scores_are_correctness_only() {
    if rdbench_gpu::backend::emu::EmuBackend::new().is_err() {
        eprintln!("skipped: no host C++ compiler for the emulator");
        return;
    }
    let env = Env::new();
    let dir = env.attempt_anyway("a", "prefix-sum", "tiny");
    let out = env.rdbench(&["--json", "score", dir.to_str().unwrap(), "--emulate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "left in the temporary folder: {left:?}");
    // The emulator's module cache and the attempt's samples are private too.
    assert_private(&env.home.path().join("home"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never gives a score"),
        "the emulator says what it is: {}",
        text(&out)
    );
    let wrong =
        std::fs::read_to_string(repo().join("tests/exploits/prefix-sum/wrong/solution.cu.diff"))
            .unwrap();
    let start = std::fs::read_to_string(dir.join("solution.cu")).unwrap();
    let patched = diffy::apply(&start, &diffy::Patch::from_str(&wrong).unwrap()).unwrap();
    std::fs::write(dir.join("solution.cu"), patched).unwrap();
    let out = env.rdbench(&["--json", "score", dir.to_str().unwrap(), "--emulate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = env.log(&dir);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["valid"], true);
    assert_eq!(log[0]["unscored"], true);
    assert!(
        log[0]["raw"].is_null() && log[0]["normalized"].is_null(),
        "{}",
        log[0]
    );
    assert_eq!(log[1]["kind"], "wrong_output", "{}", log[1]);
    let out = env.rdbench(&["--json", "finish", dir.to_str().unwrap()]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["score"].is_null(),
        "no score from an emulated run: {summary}"
    );
}

#[test]
fn bad_files_are_invalid_entries_naming_the_file() {
    let env = Env::new();
    let cases: [(&str, &str, &[u8], &str); 4] = [
        ("not-toml", "launch.toml", b"this is = = not toml [", "plan"),
        ("empty-plan", "launch.toml", b"", "plan"),
        ("missing-plan", "launch.toml", b"<delete>", "missing_file"),
        (
            "binary-source",
            "solution.cu",
            &[0xff, 0xfe, 0x00, 0x01],
            "not_text",
        ),
    ];
    for (name, file, content, kind) in cases {
        let dir = env.attempt_anyway(name, "prefix-sum", "tiny");
        if content == b"<delete>" {
            std::fs::remove_file(dir.join(file)).unwrap();
        } else {
            std::fs::write(dir.join(file), content).unwrap();
        }
        let out = env.rdbench(&["score", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let log = env.log(&dir);
        assert_eq!(log.len(), 1, "{name}");
        let reason = log[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains(file),
            "{name}: reason names {file}: {reason}"
        );
        assert_eq!(log[0]["kind"], kind, "{name}");
    }
}

/// Submission files are snapshotted untrusted: a link (to a secret, or to /dev/zero) or a FIFO
/// is one invalid entry naming the file, at once; the reasons name the attempt's own files,
/// never the private snapshot.
#[test]
fn links_and_fifos_are_refused_and_reasons_name_the_attempts_files() {
    let env = Env::new();
    let dir = env.attempt_anyway("a", "prefix-sum", "tiny");
    let secret = env.work.path().join("secret.txt");
    std::fs::write(&secret, "canary-7f3a9c").unwrap();
    std::fs::remove_file(dir.join("launch.toml")).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("launch.toml")).unwrap();
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::fs::remove_file(dir.join("launch.toml")).unwrap();
    let c = std::ffi::CString::new(dir.join("launch.toml").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let started = std::time::Instant::now();
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        started.elapsed().as_secs() < 30,
        "a FIFO does not hang the scorer"
    );
    std::fs::remove_file(dir.join("launch.toml")).unwrap();
    std::fs::write(dir.join("launch.toml"), "not = = toml").unwrap();
    let out = env.rdbench(&["--json", "score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = env.log(&dir);
    assert_eq!(log.len(), 3);
    for (entry, kind) in log.iter().zip(["rule_violation", "rule_violation", "plan"]) {
        let reason = entry["reason"].as_str().unwrap();
        assert_eq!(entry["kind"], kind, "{entry}");
        assert!(
            reason.contains(&dir.join("launch.toml").display().to_string()),
            "{reason}"
        );
        assert!(
            !reason.contains("canary") && !reason.contains("snapshots"),
            "{reason}"
        );
    }
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !all.contains(env.home.path().to_str().unwrap()),
        "no private path shown: {all}"
    );
}

#[test]
fn finish_writes_a_summary_and_log_survives_a_torn_line() {
    let env = Env::new();
    let dir = env.attempt_anyway("a", "prefix-sum", "tiny");
    std::fs::write(
        dir.join("launch.toml"),
        b"[[launch]]\nkernel = \"nope\"\ngrid = 1\nblock = 1\nargs = []\n",
    )
    .unwrap();
    assert_eq!(
        env.rdbench(&["score", dir.to_str().unwrap()]).status.code(),
        Some(1)
    );
    // Simulate a scorer killed mid-write: half a JSON line at the end of the log.
    let private = walk(env.home.path())
        .into_iter()
        .find(|p| p.ends_with("score_log.jsonl"))
        .expect("a score log");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&private)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"timestamp\":\"2026-11-").unwrap();
    drop(f);
    assert_eq!(
        env.rdbench(&["score", dir.to_str().unwrap()]).status.code(),
        Some(1)
    );
    let log = env.log(&dir);
    assert_eq!(
        log.len(),
        2,
        "both whole entries are read past the torn line"
    );
    let summary_path = env.work.path().join("summary.json");
    let out = env.rdbench(&[
        "--json",
        "finish",
        dir.to_str().unwrap(),
        "--out",
        summary_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["schema"], "rdbench.attempt-summary/1");
    assert_eq!(summary["entries"], 2);
    assert_eq!(summary["valid_entries"], 0);
    assert!(summary["score"].is_null());
    assert_eq!(summary["task"], "prefix-sum");
    // The text says there is no final score rather than printing blanks.
    let out = env.rdbench(&["finish", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no final score"), "{}", text(&out));
}

/// `cycle` prints a header, then one line per task as it finishes (through a pipe too), each
/// within 120 characters, saying what ran and what was skipped and why; the raw scores' units
/// follow. Its length is a fixed few lines plus one per task and a unit line or two per raw
/// unit: the whole registry must fit 40 lines.
#[test]
fn cycle_runs_and_says_what_it_skipped() {
    use std::io::BufRead;
    let env = Env::new();
    // tree-traversal first: it finishes in well under a second, prefix-sum takes seconds (the
    // emulator without a GPU, calibration and timing with one).
    let mut child = env
        .command(&["cycle", "--task", "tree-traversal", "--task", "prefix-sum"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rdbench runs");
    let mut stderr = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let mut lines = Vec::new();
    let mut still_running_after_first_task = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("tree-traversal ") {
            still_running_after_first_task = Some(child.try_wait().unwrap().is_none());
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let stderr = drain.join().unwrap();
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}\n{stderr}");
    assert_eq!(
        still_running_after_first_task,
        Some(true),
        "tree-traversal's line comes while prefix-sum still runs: {all}"
    );
    for line in &lines {
        assert!(line.chars().count() <= 120, "over 120 characters: {line}");
    }
    let line_of = |task: &str| {
        let found: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{task} ")))
            .collect();
        assert_eq!(found.len(), 1, "one line for {task}: {all}");
        found[0].clone()
    };
    // Columns: task, start, ref, raw start, →, raw ref, wall, result.
    let scores = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        (words[1].parse::<f64>(), words[2].parse::<f64>())
    };
    let traversal = line_of("tree-traversal");
    assert_eq!(scores(&traversal), (Ok(0.0), Ok(1.0)), "{traversal}");
    assert!(traversal.ends_with("scored"), "{traversal}");
    assert!(
        all.contains("tree-traversal: ln(simulated cycles)"),
        "the raw unit: {all}"
    );
    let prefix = line_of("prefix-sum");
    if has_gpu() {
        let (Ok(start), Ok(reference)) = scores(&prefix) else {
            panic!("prefix-sum scored: {prefix}")
        };
        assert!(
            start.abs() < 0.05 && (reference - 1.0).abs() < 0.05,
            "{prefix}"
        );
    } else {
        assert!(prefix.contains("skipped timing (no GPU)"), "{prefix}");
        assert!(prefix.contains("ran checks"), "{prefix}");
        if rdbench_gpu::backend::emu::EmuBackend::new().is_ok() {
            assert!(
                prefix.contains("emulator") && !prefix.contains("skipped emulator"),
                "without a GPU the cycle runs both solutions on the emulator: {prefix}"
            );
        }
    }
    // The whole registry: this output's other lines, one per task, and at most two per
    // distinct raw unit (a unit's line wraps once at most).
    let out = env.rdbench(&["--json", "list"]);
    let tasks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut units: Vec<&str> = tasks
        .iter()
        .map(|t| t["raw_score"].as_str().unwrap())
        .collect();
    units.sort();
    units.dedup();
    let whole = lines.len() - 2 + tasks.len() + 2 * units.len();
    assert!(
        whole <= 40,
        "{whole} lines for {} tasks: {all}",
        tasks.len()
    );

    // --json: every row, its details and the raw unit.
    let out = env.rdbench(&["--json", "cycle", "--task", "tree-traversal"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["status"], "scored", "{row}");
    assert_eq!(row["reference_score"], 1.0, "{row}");
    assert!(
        row["raw_unit"]
            .as_str()
            .unwrap()
            .starts_with("ln(simulated cycles)"),
        "{row}"
    );
    assert!(row["calibration"].as_str().is_some(), "{row}");
}

/// Same-user mode says it protects nothing in one short line before anything else, errors
/// included, and points at the README's section.
#[test]
fn same_user_mode_warns_in_one_short_line() {
    let env = Env::new();
    let out = env.rdbench(&["status", env.work.path().join("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("rdbench: unprotected mode")
            && first.contains("README, \"Protected scoring\"")
            && first.chars().count() < 100,
        "{first}"
    );
    assert!(
        stderr.lines().nth(1).is_some_and(|l| l.contains("none")),
        "the error follows: {stderr}"
    );
}

/// The tree-traversal task needs no GPU: the whole attempt runs here, and its scores are exact.
#[test]
fn tree_traversal_starts_scores_and_finishes_on_a_cpu_with_exact_anchors() {
    let env = Env::new();
    let dir = env.attempt("tt", "tree-traversal", "tiny");
    for file in [
        "program.json",
        "build_program.py",
        "params.json",
        "INSTRUCTIONS.md",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = env.rdbench(&[
        "install-solution",
        "tree-traversal",
        "reference",
        "--dir",
        dir.to_str().unwrap(),
        "--profile",
        "tiny",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = env.log(&dir);
    let scores: Vec<f64> = log
        .iter()
        .map(|e| e["normalized"].as_f64().unwrap())
        .collect();
    assert_eq!(scores, vec![0.0, 1.0], "exact: no timing noise");
    // `status`, by folder in text and by id in JSON, tells the best so far and the time left.
    let out = env.rdbench(&["status", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("best:    1.0000"), "{}", text(&out));
    assert!(text(&out).contains("min left"), "{}", text(&out));
    let id = text(&out)
        .split_whitespace()
        .find(|w| w.starts_with("att-"))
        .unwrap()
        .to_string();
    let out = env.rdbench(&["--json", "status", &id]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (status["entries"].clone(), status["valid_entries"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(
        log[1]["details"]["cycles_per_input"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    // A wrong program is one invalid entry naming the first wrong walker.
    std::fs::write(
        dir.join("program.json"),
        "{\"format\": \"rdbench-vliw/1\", \"bundles\": []}",
    )
    .unwrap();
    let out = env.rdbench(&["score", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("walker 0"), "{}", text(&out));
    // The log numbers its entries 1, 2, 3 and says an invalid one does not count.
    let out = env.rdbench(&["log", dir.to_str().unwrap()]);
    let rows: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 3, "{}", text(&out));
    for (n, row) in rows.iter().enumerate() {
        assert!(row.starts_with(&format!("{} ", n + 1)), "{row}");
    }
    assert!(rows[2].contains("no: invalid"), "{}", rows[2]);
    let out = env.rdbench(&["--json", "finish", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["score"], 1.0);
    assert_eq!(summary["valid_entries"], 2);
    // The home (made by this test's first command) holds nothing other users can read.
    assert_private(&env.home.path().join("home"));
    // After finish the JSON log says the chain is intact and sealed.
    let out = env.rdbench(&["--json", "log", dir.to_str().unwrap()]);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["chain"]["intact"], true, "{log}");
    assert!(log["chain"]["sealed_at"].is_string(), "{log}");
}

#[test]
fn monitor_records_a_timeline_for_a_short_duration() {
    let env = Env::new();
    let dir = env.attempt_anyway("a", "prefix-sum", "tiny");
    let out = env.rdbench(&[
        "--json",
        "monitor",
        dir.to_str().unwrap(),
        "--interval-ms",
        "50",
        "--duration",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["summary"]["samples"].as_u64().unwrap() >= 3, "{v}");
    assert!(Path::new(v["timeline"].as_str().unwrap()).is_file());
    if !has_gpu() {
        assert_eq!(v["summary"]["source"], "proc");
    }
}

#[test]
fn aggregate_reads_runs_and_rejects_bad_lines() {
    let env = Env::new();
    let runs = env.work.path().join("runs.jsonl");
    let mut lines = Vec::new();
    for agent in ["a", "b"] {
        for (t, minutes) in [("t1", 2.0), ("t2", 30.0), ("t3", 240.0), ("t4", 900.0)] {
            for r in 0..4 {
                let skill = if agent == "a" { 60.0 } else { 10.0 };
                let score = if minutes < skill * (1.0 + r as f64 / 4.0) {
                    1.0
                } else {
                    0.0
                };
                lines.push(serde_json::json!({
                    "run_id": format!("{agent}-{t}-{r}"), "task_id": format!("fam_{t}/main"), "task_family": format!("fam_{t}"),
                    "alias": agent, "score": score, "time_limit": 1800, "human_minutes": minutes,
                }).to_string());
            }
        }
    }
    std::fs::write(&runs, lines.join("\n")).unwrap();
    let out_dir = env.work.path().join("agg");
    let out = env.rdbench(&[
        "--json",
        "aggregate",
        runs.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--bootstrap",
        "50",
        "--budget-bootstrap",
        "50",
        "--plots",
        "none",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("aggregate --json is JSON");
    assert!(report.to_string().contains("\"a\""), "{report}");
    std::fs::write(&runs, format!("{}\n{{\"run_id\": \"x\", \"alias\": \"a\", \"task_id\": \"t\", \"task_family\": \"f\", \"score\": 1, \"human_minutes\": \"ten\"}}\n", lines[0])).unwrap();
    let out = env.rdbench(&["aggregate", runs.to_str().unwrap(), "--no-files"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runs.jsonl:2") && err.contains("human_minutes"),
        "names file, line and field: {err}"
    );
    assert!(
        err.starts_with("rdbench: "),
        "as every command says it: {err}"
    );
    // With --json the error is a JSON document on stdout, as for every command.
    let out = env.rdbench(&["--json", "aggregate", runs.to_str().unwrap(), "--no-files"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert_eq!(err["exit_code"], 2, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("human_minutes"),
        "{err}"
    );
}

/// scaling-law's score is hidden from the agent: `score` says only that the answer was
/// recorded (or why it is invalid), `log` shows no number, and `finish` counts the last valid
/// entry.
#[test]
fn scaling_law_records_hidden_scores_and_counts_the_last_valid() {
    let env = Env::new();
    let dir = env.attempt("a", "scaling-law", "tiny");
    let d = dir.to_str().unwrap();
    let out = env.rdbench(&["--json", "score", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&String> = shown.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["hidden", "reason", "valid"], "{shown}");
    let out = env.rdbench(&["score", d]);
    let said = text(&out);
    assert!(said.lines().any(|l| l.trim() == "recorded"), "{said}");
    assert!(!said.contains("0.36"), "{said}");
    // Experiments go through the scorer, which keeps their record out of the agent's folder.
    let out = env.rdbench(&["tool", d, "train", "n_embd=8", "max_iters=20"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("validation_loss"), "{}", text(&out));
    assert!(!dir.join("experiments.jsonl").exists());
    let logs: Vec<_> = walk(env.home.path())
        .into_iter()
        .filter(|p| p.ends_with("task/experiments.jsonl"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(
        std::fs::read_to_string(&logs[0]).unwrap().lines().count(),
        1
    );
    let out = env.rdbench(&["tool", d, "train", "n_embd=8", "max_iters=999999"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("experiment limit"), "{}", text(&out));
    // A malformed answer is one invalid entry with its reason.
    std::fs::write(dir.join("answer.json"), r#"{"n_embd": 24, "n_embd": 24}"#).unwrap();
    let out = env.rdbench(&["score", d]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("duplicate field"), "{}", text(&out));
    // The last valid answer: the optimum width, its steps, a perfect-ish prediction.
    std::fs::write(
        dir.join("answer.json"),
        r#"{"n_embd": 24, "max_iters": 1177, "loss_prediction": 4.1118}"#,
    )
    .unwrap();
    assert_eq!(env.rdbench(&["score", d]).status.code(), Some(0));
    // A later malformed answer is recorded as invalid but does not replace the good one.
    std::fs::write(dir.join("answer.json"), "{").unwrap();
    assert_eq!(env.rdbench(&["score", d]).status.code(), Some(1));
    let log = env.log(&dir);
    assert_eq!(log.len(), 5);
    assert!(log
        .iter()
        .all(|e| e["raw"].is_null() && e["normalized"].is_null()));
    let summary_path = env.work.path().join("summary.json");
    let out = env.rdbench(&["finish", d, "--out", summary_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["selection"], "last");
    assert!(summary["raw"].as_f64().unwrap() > 0.99, "{summary}");
}

/// The attempts this environment's home has recorded.
fn attempts_recorded(home: &Path) -> Vec<String> {
    std::fs::read_dir(home.join("attempts"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("att-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The one line of `out`'s stderr that says `what`.
fn line_saying(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(what)).collect();
    assert_eq!(lines.len(), 1, "one line says {what:?}: {}", text(out));
    lines[0].to_string()
}

/// One default profile, tiny, for every command that takes `--profile`, and each `--help`
/// says so. `start` refuses a profile this installation cannot score before it writes
/// anything: exit 3, one line naming why, the profile it can score and the operator's command.
/// `install-solution` into an attempt's folder installs for the attempt's own profile.
#[test]
fn one_default_profile_and_start_refuses_what_cannot_be_scored() {
    let env = Env::new();
    let home = env.home.path().join("home");
    for command in [
        "start",
        "calibrate",
        "check-task",
        "install-solution",
        "cycle",
    ] {
        let out = env.rdbench(&[command, "--help"]);
        assert!(
            text(&out).contains("Every command defaults to tiny"),
            "{command} --help: {}",
            text(&out)
        );
    }
    let dir = env.work.path().join("refused");
    let d = dir.to_str().unwrap();

    // No ground-truth sweep for scaling-law's full profile: tiny is named instead.
    let out = env.rdbench(&["start", "scaling-law", "--profile", "full", "--dir", d]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let line = line_saying(&out, "cannot be scored");
    assert!(
        line.starts_with("rdbench: scaling-law/full cannot be scored"),
        "{line}"
    );
    assert!(line.contains("no ground-truth sweep"), "{line}");
    assert!(
        line.ends_with("; --profile tiny can be scored here"),
        "{line}"
    );

    // No calibration of fix-embedding in this home (the default profile, tiny): the operator's
    // command, and no other profile to offer.
    let out = env.rdbench(&["--json", "start", "fix-embedding", "--dir", d]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let line = line_saying(&out, "cannot be scored");
    assert!(
        line.contains("no calibration of fix-embedding/tiny")
            && line.ends_with(
                "; the operator runs `rdbench calibrate --task fix-embedding --profile tiny` first"
            ),
        "{line}"
    );
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert_eq!(err["exit_code"], 3, "{err}");

    // A kernel task: no GPU here, or (with one) no calibration in this home.
    let out = env.rdbench(&["start", "prefix-sum", "--dir", d]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    line_saying(&out, "prefix-sum/tiny cannot be scored");
    assert!(!dir.exists(), "a refused start leaves no folder");
    assert!(attempts_recorded(&home).is_empty(), "nor an attempt");

    // The default is tiny; a command given the attempt uses its profile.
    let out = env.rdbench(&["--json", "start", "tree-traversal", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["profile"], "tiny");
    let full = env.attempt("full", "tree-traversal", "full");
    let f = full.to_str().unwrap();
    let out = env.rdbench(&[
        "install-solution",
        "tree-traversal",
        "reference",
        "--dir",
        f,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = env.rdbench(&["--json", "score", f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (entry["profile"].as_str(), entry["normalized"].as_f64()),
        (Some("full"), Some(1.0)),
        "the full reference, installed without naming the profile: {entry}"
    );
    let args = [
        "install-solution",
        "tree-traversal",
        "start",
        "--dir",
        f,
        "--profile",
        "tiny",
    ];
    let out = env.rdbench(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("profile full"), "{}", text(&out));
}

/// Through the service the operator's start of a profile the service cannot score is refused
/// the same way: exit 3, the one line, no folder left in the agent's place, no attempt.
#[test]
fn the_service_refuses_to_start_what_it_cannot_score() {
    let Some(d) = protected::Deployment::new() else {
        return;
    };
    let service = d.serve("unscorable");
    let dir = d.agent_dir.join("uncalibrated");
    let args = [
        "start",
        "fix-embedding",
        "--owner",
        protected::AGENT_USER,
        "--dir",
        dir.to_str().unwrap(),
    ];
    let out = d.operator(&service, &args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let line = line_saying(&out, "cannot be scored");
    assert!(
        line.contains("`rdbench calibrate --task fix-embedding --profile tiny`"),
        "{line}"
    );
    assert!(!dir.exists(), "the client removed the folder it made");
    assert!(attempts_recorded(&d.home).is_empty());
}

/// README's aggregation example runs from a clone as written: its line, with the shell's glob
/// expanded, on the summaries in docs/examples/aggregate (which make.sh made with the binary).
#[test]
fn readme_aggregation_example_runs() {
    let env = Env::new();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let prefix = "cargo run --release --bin rdbench -- ";
    let line = readme
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(" aggregate "))
        .expect("README shows an aggregation example");
    let out_dir = env.work.path().join("example");
    let mut args: Vec<String> = Vec::new();
    let mut words = line[prefix.len()..].split_whitespace();
    while let Some(word) = words.next() {
        if word == "--out" {
            words.next();
            args.extend(["--out".into(), out_dir.display().to_string()]);
        } else if let Some(folder) = word.strip_suffix("/*.json") {
            let mut files: Vec<String> = std::fs::read_dir(repo().join(folder))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .map(|p| p.display().to_string())
                .collect();
            files.sort();
            assert!(files.len() >= 3, "summaries in {folder}: {files:?}");
            args.extend(files);
        } else {
            args.push(word.into());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.rdbench(&args);
    assert_eq!(out.status.code(), Some(0), "{line}\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("12 runs, 3 agents"), "{stdout}");
    for agent in ["start-only", "reference", "partial"] {
        assert!(stdout.contains(agent), "{agent}: {stdout}");
    }
    for file in ["report.json", "horizon_fits.png", "horizon_p50.png"] {
        assert!(out_dir.join(file).is_file(), "{file} written");
    }
}

/// `doctor`'s text is short lines, each library name tried at most once (the full detail is
/// in `--json`), and the sandbox's section is there.
#[test]
fn doctor_prints_short_lines_and_each_name_once() {
    let env = Env::new();
    let out = env.rdbench(&["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() <= 30, "{stdout}");
    for line in &lines {
        assert!(line.chars().count() <= 120, "over 120 characters: {line}");
    }
    let mut names: Vec<&str> = stdout
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter(|w| w.starts_with("lib") && w.contains(".so"))
        .collect();
    let all = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all, "a library named twice: {stdout}");
    assert!(stdout.contains("\nsandbox "), "{stdout}");
}
