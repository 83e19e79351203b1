//! Every command the documentation shows is run on a fresh home: the README's usage table (the
//! commands of its first column, and the `rdbench ...` examples of its second) and each task's
//! `INSTRUCTIONS.md` as `start` renders it for the tiny profile (lines of code blocks and inline
//! code that begin with `rdbench`). The commands are read from the files themselves, so a
//! change of the documentation is tested without an edit here: placeholders (`A`, `D`, `T`,
//! `<task>`, `<this folder>`, `DIR`, ...) get real values, each optional `[...]` group runs once
//! beside the bare command, and each alternative `a|b` once. An unknown placeholder fails the
//! test until the walk is taught its value. What cannot run here is in [`SKIPPED`], each with
//! its reason, and an entry that no longer matches a documented command fails the test too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::{has_gpu, rdbench_bin, repo, text, Env};

/// Where a documented command is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    Readme,
    Instructions,
}

/// Documented commands not run here, exactly as the documentation writes them (after `[...]`
/// groups are dropped or taken), where, and why.
const SKIPPED: &[(&str, Doc, &str)] = &[
    (
        "rdbench serve --socket S",
        Doc::Readme,
        "the service runs until stopped; tests/protected.rs runs it as its own scoring user",
    ),
    (
        "rdbench-client ...",
        Doc::Readme,
        "the service's client; tests/protected.rs runs it as an agent's user",
    ),
    (
        "rdbench calibrate",
        Doc::Readme,
        "calibrates every task (restricted-mlm alone takes 4 min in a debug build); \
         `calibrate --task T ...` runs",
    ),
    (
        "rdbench monitor D",
        Doc::Readme,
        "runs until Ctrl-C; `monitor D --duration S` runs",
    ),
    (
        "rdbench cycle",
        Doc::Readme,
        "every task, minutes; cycle_runs_and_says_what_it_skipped runs it for one",
    ),
    (
        "rdbench tool A NAME",
        Doc::Readme,
        "the syntax; the same row's example (`rdbench tool A train ...`) runs",
    ),
    (
        "rdbench tool A NAME K=V ...",
        Doc::Readme,
        "the syntax; the same row's example (`rdbench tool A train ...`) runs",
    ),
    (
        "rdbench score-job --manifest M --index N --results DIR",
        Doc::Readme,
        "needs a manifest of submissions; tests/fanout.rs runs it (and tests/slurm.rs on Slurm)",
    ),
    (
        "rdbench fanout slurm M --results DIR",
        Doc::Readme,
        "needs a manifest of submissions; tests/fanout.rs and tests/slurm.rs run it",
    ),
    (
        "rdbench fanout k8s M --results DIR --image I --pvc C",
        Doc::Readme,
        "needs a manifest of submissions; tests/fanout.rs runs it and validates the Job",
    ),
    (
        "rdbench serve-llm --gguf PATH --listen ADDR",
        Doc::Readme,
        "serves until stopped; tests/serve_llm.rs runs it on the real GGUF with the OpenAI client",
    ),
    (
        "rdbench llm-proxy --upstream URL --model NAME --unix-socket S",
        Doc::Readme,
        "serves until stopped; tests/llm_proxy.rs runs it on a socket and stops it",
    ),
    (
        "rdbench-client score .",
        Doc::Instructions,
        "the service's client; tests/protected.rs runs it as an agent's user",
    ),
    (
        "rdbench tool DIR train",
        Doc::Instructions,
        "prose naming the tool; the code block above it, with the arguments, runs",
    ),
    (
        "rdbench tool DIR complete problem=K",
        Doc::Instructions,
        "trains the task's code model first (minutes); tests/protected.rs runs it as the agent, \
         through the service",
    ),
    (
        "rdbench tool DIR judge pairs=JSON",
        Doc::Instructions,
        "a valid prompt is one installation's secret language; tests/protected.rs runs the judge \
         as the agent, through the service, and the task's tests run it to its cap",
    ),
    (
        "rdbench score",
        Doc::Instructions,
        "prose naming the command; every task's `rdbench score <this folder>` runs",
    ),
];

/// Fails if an entry of [`SKIPPED`] for `doc` matched no documented command.
fn assert_skips_still_documented(doc: Doc, seen: &BTreeSet<&'static str>) {
    for (key, _, _) in SKIPPED.iter().filter(|(_, d, _)| *d == doc) {
        assert!(
            seen.contains(key),
            "SKIPPED lists `{key}`, which the documentation ({doc:?}) no longer shows: drop it"
        );
    }
}

/// Documented commands whose exit code here is not 0, by a word they contain, and why.
const NOT_ZERO: &[(&str, i32, &str)] = &[(
    "--owner",
    2,
    "same-user mode refuses --owner: it starts an agent's attempt through the service",
)];

/// The task the README's commands run on: scored on any machine, exactly, in seconds.
const TASK: &str = "tree-traversal";
/// The task of the README's `tool` example and the kernel task of `score --emulate`.
const TOOL_TASK: &str = "scaling-law";
const KERNEL_TASK: &str = "prefix-sum";

/// One documented command: where it was read, and its words as written.
#[derive(Debug, Clone)]
struct Documented {
    source: String,
    words: Vec<String>,
}

impl Documented {
    fn written(&self) -> String {
        self.words.join(" ")
    }
}

/// An attempt the walk started: its id and folder.
#[derive(Debug, Clone)]
struct Started {
    id: String,
    dir: PathBuf,
}

/// The state of one walk: the environment, its attempts, the files `--out` wrote.
struct Walk<'a> {
    env: &'a Env,
    main: Started,
    tool: Started,
    kernel: Started,
    fresh: usize,
    summaries: Vec<PathBuf>,
    skipped_seen: BTreeSet<&'static str>,
    ran: Vec<String>,
}

/// The cells of a Markdown table row (`\|` inside a cell is a literal bar).
fn cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = row.trim().trim_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The inline code spans of `text`.
fn spans(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().to_string())
        .collect()
}

/// The words of a command; a `<placeholder with spaces>` is one word.
fn words(command: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for w in command.split_whitespace() {
        if open {
            let last = out.last_mut().unwrap();
            last.push(' ');
            last.push_str(w);
        } else {
            out.push(w.to_string());
        }
        open = out
            .last()
            .is_some_and(|l| l.starts_with('<') && !l.ends_with('>'));
    }
    out
}

/// Whether `span` is a command of rdbench's programs.
fn is_command(span: &str) -> bool {
    span == "rdbench" || span.starts_with("rdbench ") || span.starts_with("rdbench-")
}

/// The README's usage table: its first column's commands (`info <task>` after `rdbench list`
/// is rdbench's too) and its second column's `rdbench ...` examples.
fn readme_commands(readme: &str) -> Vec<Documented> {
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| command |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!table.is_empty(), "README has no usage table");
    let mut out = Vec::new();
    for row in table {
        let cells = cells(row);
        let mut program = String::from("rdbench");
        for span in spans(&cells[0]) {
            let mut words = words(&span);
            if is_command(&span) {
                program = words[0].clone();
            } else {
                words.insert(0, program.clone());
            }
            out.push(Documented {
                source: format!("README usage table: {}", cells[0]),
                words,
            });
        }
        for span in cells.get(1).map(|c| spans(c)).unwrap_or_default() {
            if is_command(&span) {
                out.push(Documented {
                    source: format!("README usage table, example: {span}"),
                    words: words(&span),
                });
            }
        }
    }
    out
}

/// The commands of an `INSTRUCTIONS.md`: code-block lines and inline code that begin with
/// `rdbench`, a code line's `# comment` dropped.
fn instruction_commands(task: &str, instructions: &str) -> Vec<Documented> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in instructions.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let found: Vec<String> = if in_code {
            let code = line.split(" #").next().unwrap_or("").trim();
            vec![code.to_string()]
        } else {
            spans(line)
        };
        for command in found.into_iter().filter(|c| is_command(c)) {
            out.push(Documented {
                source: format!("{task}'s INSTRUCTIONS.md (tiny)"),
                words: words(&command),
            });
        }
    }
    out
}

/// One word of a command, or an optional group of words.
#[derive(Debug, Clone)]
enum Part {
    Word(String),
    Optional(Vec<String>),
}

fn parts(words: &[String]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut group: Option<Vec<String>> = None;
    for w in words {
        match &mut group {
            None if w.starts_with('[') => {
                let inner = w.trim_start_matches('[');
                if let Some(whole) = inner.strip_suffix(']') {
                    parts.push(Part::Optional(vec![whole.to_string()]));
                } else {
                    group = Some(vec![inner.to_string()]);
                }
            }
            None => parts.push(Part::Word(w.clone())),
            Some(g) => {
                if let Some(last) = w.strip_suffix(']') {
                    g.push(last.to_string());
                    parts.push(Part::Optional(group.take().unwrap()));
                } else {
                    g.push(w.clone());
                }
            }
        }
    }
    assert!(group.is_none(), "an unclosed [ in {words:?}");
    parts
}

/// Each alternative of `a|b` words, one at a time (a word without a bar is its only one).
fn alternatives(words: &[String]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    for w in words {
        let choices: Vec<&str> = w.split('|').collect();
        out = out
            .into_iter()
            .flat_map(|prefix| {
                choices.iter().map(move |c| {
                    let mut next = prefix.clone();
                    next.push(c.to_string());
                    next
                })
            })
            .collect();
    }
    out
}

/// The commands a documented command stands for: bare (every `[...]` group dropped), then
/// with its groups taken one more at a time, in order (`calibrate [--task T] [--profile P]`:
/// bare, `--task T`, `--task T --profile P`); each with every alternative of its `a|b` words.
fn variants(words: &[String]) -> Vec<Vec<String>> {
    let parts = parts(words);
    let groups = parts
        .iter()
        .filter(|p| matches!(p, Part::Optional(_)))
        .count();
    let taking = |n: usize| -> Vec<String> {
        let mut seen = 0;
        parts
            .iter()
            .flat_map(|p| match p {
                Part::Word(w) => vec![w.clone()],
                Part::Optional(g) => {
                    seen += 1;
                    if seen <= n {
                        g.clone()
                    } else {
                        Vec::new()
                    }
                }
            })
            .collect()
    };
    (0..=groups)
        .flat_map(|n| alternatives(&taking(n)))
        .collect()
}

/// Whether `word` stands for a value (`A`, `FILES...`, `<task>`, `MIN`); `3`, `--runs` and
/// `train` do not.
fn is_placeholder(word: &str) -> bool {
    (word.starts_with('<') && word.ends_with('>'))
        || (word.chars().any(|c| c.is_ascii_uppercase())
            && word
                .trim_end_matches("...")
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
}

impl Walk<'_> {
    fn fresh(&mut self, what: &str) -> PathBuf {
        self.fresh += 1;
        self.env
            .work
            .path()
            .join(format!("walk-{}-{what}", self.fresh))
    }

    /// The attempt a command runs on: `tool` needs the task with tools, `--emulate` a kernel
    /// task, everything else runs on [`TASK`].
    fn attempt_for(&self, words: &[String]) -> &Started {
        if words.iter().any(|w| w == "--emulate") {
            &self.kernel
        } else if words.get(1).map(String::as_str) == Some("tool") {
            &self.tool
        } else {
            &self.main
        }
    }

    /// The value of `word` in `words` (`before` is the word in front of it): one word, or
    /// several for `FILES...`.
    fn value(&mut self, words: &[String], before: &str, word: &str) -> Vec<String> {
        let attempt = self.attempt_for(words).clone();
        let one = match (before, word) {
            ("--dir", "D") => self.fresh("dir").display().to_string(),
            // `export task-standard`: paths of the task environment it writes into the family.
            ("--out", "D") => self.fresh("export").display().to_string(),
            ("--service-socket", "S") => "/run/rdbench/score.sock".to_string(),
            ("--agent-user", "U") => "agent".to_string(),
            ("--attempt-dir", "A") => "/home/agent/attempt".to_string(),
            (_, "D" | "DIR" | "<this folder>") => attempt.dir.display().to_string(),
            (_, "A") => attempt.id,
            (_, "T" | "<task>") => TASK.to_string(),
            ("--profile", "P") => "tiny".to_string(),
            ("--time-limit", "MIN") => "30".to_string(),
            ("--agent", "NAME") => "documented-commands".to_string(),
            ("--owner", "USER") => "root".to_string(),
            ("--duration", "S") => "0.5".to_string(),
            ("--out", "F") => {
                let f = self.fresh("summary.json");
                self.summaries.push(f.clone());
                f.display().to_string()
            }
            (_, "CASE") => first_exploit_case(TASK),
            (_, "FILES...") => {
                assert!(
                    !self.summaries.is_empty(),
                    "the table runs `aggregate` before any `finish --out F` wrote a summary"
                );
                // The time horizon needs two runs of an agent: a second attempt, finished.
                let second = self.fresh("second");
                let out = self
                    .env
                    .rdbench(&["--json", "start", TASK, "--dir", s(&second)]);
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                let summary = self.fresh("second.json");
                let out = self
                    .env
                    .rdbench(&["finish", s(&second), "--out", s(&summary)]);
                assert_eq!(out.status.code(), Some(0), "{}", text(&out));
                self.summaries.push(summary);
                return self
                    .summaries
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
            }
            _ => panic!(
                "{word:?} (after {before:?}) in `{}` has no value in this walk: teach \
                 Walk::value what it stands for",
                words.join(" ")
            ),
        };
        vec![one]
    }

    /// `words` with every placeholder replaced; `exploit:CASE` is a word and a placeholder.
    fn substitute(&mut self, words: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let before = if i == 0 { "" } else { words[i - 1].as_str() };
            match w.split_once(':') {
                Some((head, tail)) if is_placeholder(tail) && !is_placeholder(head) => {
                    let values = self.value(words, before, tail);
                    out.extend(values.iter().map(|v| format!("{head}:{v}")));
                }
                _ if is_placeholder(w) => out.extend(self.value(words, before, w)),
                _ => out.push(w.clone()),
            }
        }
        out
    }

    /// Runs every variant of `command`, expecting `expected` (0 unless [`NOT_ZERO`] says
    /// otherwise) for each; `cwd` is where a documented `.` points.
    fn run(&mut self, command: &Documented, cwd: &Path, expected: i32) {
        for variant in variants(&command.words) {
            let written = variant.join(" ");
            if let Some((key, _, _)) = SKIPPED.iter().find(|(k, _, _)| *k == written) {
                self.skipped_seen.insert(key);
                continue;
            }
            let expected = NOT_ZERO
                .iter()
                .find(|(word, _, _)| variant.iter().any(|w| w == word))
                .map_or(expected, |(_, code, _)| *code);
            let words = self.substitute(&variant);
            let out = self.exec(&words, cwd);
            assert_eq!(
                out.status.code(),
                Some(expected),
                "`{written}` from {} ran as {words:?}: {}",
                command.source,
                text(&out)
            );
            self.ran.push(written);
        }
    }

    fn exec(&self, words: &[String], cwd: &Path) -> Output {
        let program = match words[0].as_str() {
            "rdbench" => rdbench_bin(),
            other => {
                let beside = rdbench_bin().with_file_name(other);
                assert!(
                    beside.is_file(),
                    "{} is not built beside rdbench: run `cargo build --workspace` (a \
                     workspace test run builds it)",
                    beside.display()
                );
                beside
            }
        };
        self.env
            .program(&program)
            .args(&words[1..])
            .current_dir(cwd)
            .output()
            .expect("the documented program runs")
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first case (by name) of `task`'s exploit corpus.
fn first_exploit_case(task: &str) -> String {
    let mut cases: Vec<String> = std::fs::read_dir(repo().join("tests/exploits").join(task))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("expect.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases.into_iter().next().expect("an exploit case")
}

/// Starts `task` at tiny on a fresh folder: plainly where this installation can score it, else
/// (the plain start refused with exit 3) with `--allow-unscorable`. Returns the attempt and
/// the exit code its `score` documents here: 0, or 3 (environment: no GPU, no calibration).
fn start(env: &Env, task: &str, dir: &Path) -> (Started, i32) {
    let plain = env.rdbench(&["--json", "start", task, "--dir", s(dir)]);
    let (out, score_code) = match plain.status.code() {
        Some(0) => (plain, 0),
        Some(3) => {
            assert!(!dir.exists(), "a refused start leaves no folder");
            let args = [
                "--json",
                "start",
                task,
                "--dir",
                s(dir),
                "--allow-unscorable",
            ];
            (env.rdbench(&args), 3)
        }
        _ => panic!("start {task}: {}", text(&plain)),
    };
    assert_eq!(out.status.code(), Some(0), "start {task}: {}", text(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["profile"], "tiny", "the default profile");
    let started = Started {
        id: record["id"].as_str().unwrap().to_string(),
        dir: dir.to_path_buf(),
    };
    (started, score_code)
}

/// The README's usage table, every command and example, on a fresh home.
#[test]
fn every_command_of_the_readme_runs() {
    let env = Env::new();
    let (main, code) = start(&env, TASK, &env.work.path().join("main"));
    assert_eq!(code, 0, "{TASK} is scored on any machine");
    let (tool, _) = start(&env, TOOL_TASK, &env.work.path().join("tool"));
    let (kernel, _) = start(&env, KERNEL_TASK, &env.work.path().join("kernel"));
    let mut walk = Walk {
        env: &env,
        main,
        tool,
        kernel,
        fresh: 0,
        summaries: Vec::new(),
        skipped_seen: BTreeSet::new(),
        ran: Vec::new(),
    };
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    let emulator = rdbench_gpu::backend::emu::EmuBackend::new().is_ok();
    let cwd = env.work.path().to_path_buf();
    for command in &commands {
        // The emulator needs a host C++ compiler; without one it is an environment error.
        let expected = if command.written().contains("--emulate") && !emulator {
            3
        } else {
            0
        };
        walk.run(command, &cwd, expected);
    }
    let ran = walk.ran.clone();
    for must in [
        "rdbench list",
        "rdbench start <task> --dir D",
        "rdbench score A",
        "rdbench finish A --out F",
        "rdbench check-task T",
        "rdbench install-solution T reference --dir D",
    ] {
        assert!(ran.iter().any(|r| r == must), "`{must}` not run: {ran:#?}");
    }
    assert!(
        ran.iter().any(|r| r.starts_with("rdbench tool A ")),
        "the table's tool example ran: {ran:#?}"
    );
    assert_skips_still_documented(Doc::Readme, &walk.skipped_seen);
    eprintln!("ran {} README commands:\n{}", ran.len(), ran.join("\n"));
}

/// Every task's instructions, as `start` renders them for the tiny profile, run in the
/// attempt's folder. On a profile this installation cannot score (no GPU, no calibration in
/// the test's fresh home) a documented `score` exits 3, as the README's exit codes say;
/// everything else exits 0.
#[test]
fn every_command_of_the_instructions_runs() {
    let env = Env::new();
    let out = env.rdbench(&["--json", "list"]);
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let placeholder = Started {
        id: String::new(),
        dir: PathBuf::new(),
    };
    let mut walk = Walk {
        env: &env,
        main: placeholder.clone(),
        tool: placeholder.clone(),
        kernel: placeholder,
        fresh: 0,
        summaries: Vec::new(),
        skipped_seen: BTreeSet::new(),
        ran: Vec::new(),
    };
    let gpu = has_gpu();
    for t in tasks.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let (attempt, score_code) = start(&env, name, &env.work.path().join(name));
        if !gpu && t["profiles"][0]["needs_gpu"] == true {
            assert_eq!(score_code, 3, "{name} tiny needs a GPU");
        }
        let instructions = std::fs::read_to_string(attempt.dir.join("INSTRUCTIONS.md")).unwrap();
        let commands = instruction_commands(name, &instructions);
        assert!(
            !commands.is_empty(),
            "{name}'s instructions show no rdbench command"
        );
        (walk.main, walk.tool, walk.kernel) = (attempt.clone(), attempt.clone(), attempt.clone());
        for command in &commands {
            let is_score = command.words.get(1).map(String::as_str) == Some("score");
            let expected = if is_score { score_code } else { 0 };
            walk.run(command, &attempt.dir, expected);
        }
    }
    assert_skips_still_documented(Doc::Instructions, &walk.skipped_seen);
    eprintln!(
        "ran {} instruction commands:\n{}",
        walk.ran.len(),
        walk.ran.join("\n")
    );
}

/// The parsing itself: table cells with escaped bars, optional groups, alternatives.
#[test]
fn documented_syntax_is_expanded() {
    assert_eq!(
        cells("| `a [--p tiny\\|full]` | what |"),
        ["`a [--p tiny|full]`", "what"]
    );
    let start: Vec<String> = "rdbench start <task> --dir D [--profile tiny|full] [--agent NAME]"
        .split_whitespace()
        .map(String::from)
        .collect();
    let all: Vec<String> = variants(&start).iter().map(|v| v.join(" ")).collect();
    assert_eq!(
        all,
        [
            "rdbench start <task> --dir D",
            "rdbench start <task> --dir D --profile tiny",
            "rdbench start <task> --dir D --profile full",
            "rdbench start <task> --dir D --profile tiny --agent NAME",
            "rdbench start <task> --dir D --profile full --agent NAME",
        ]
    );
    let install: Vec<String> = ["install", "T", "start|exploit:CASE", "FILES..."]
        .map(String::from)
        .to_vec();
    assert_eq!(variants(&install).len(), 2);
    assert!(is_placeholder("FILES...") && is_placeholder("<task>") && is_placeholder("A"));
    assert!(!is_placeholder("3") && !is_placeholder("train") && !is_placeholder("--runs"));
    let readme = "x\n| command | what |\n|---|---|\n| `rdbench list` / `info <task>` | the \
                  tasks (e.g. `rdbench info t`) |\n\nafter";
    let found: Vec<String> = readme_commands(readme)
        .iter()
        .map(Documented::written)
        .collect();
    assert_eq!(
        found,
        ["rdbench list", "rdbench info <task>", "rdbench info t"]
    );
    let instructions =
        "Run `rdbench score .` now.\n```\nrdbench tool DIR train n=1   # note\nplain\n```\n";
    let found: Vec<String> = instruction_commands("t", instructions)
        .iter()
        .map(Documented::written)
        .collect();
    assert_eq!(found, ["rdbench score .", "rdbench tool DIR train n=1"]);
    assert_eq!(
        words("score <this folder> x"),
        ["score", "<this folder>", "x"]
    );
}
