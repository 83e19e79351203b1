//! The kit end to end on a toy program task (shell programs that upper-case their input),
//! through the real sandbox: start and reference score, and the generic cheats fail: a cached
//! output, reading the scorer's files, an output written after the program returned (a
//! process left behind), an output that is a link out of the folder, a hang, a link in the
//! tree. Runs as root (each run as its own uid) or unprivileged; skipped, saying why, where no
//! sandbox can run.

use std::path::Path;
use std::time::Duration;

use rdbench_core::task::{
    profile_of, Direction, Execution, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome,
    ScoreRequest, Solution, Task, TaskInfo,
};
use rdbench_core::{Error, Result};
use rdbench_program::{
    Contract, OutputFile, Outputs, ProgramAdapter, ProgramTask, SandboxEnv, TreeLimits, Verdict,
};
use rdbench_runner::sandbox::{use_shim, Shim};

/// The program a case uses, by name.
struct Toy {
    program: &'static str,
}

const REFERENCE: &str = "mkdir -p out && tr a-z A-Z < data/in.txt > out/result.txt\n";
const START: &str = "sleep 0.5\nmkdir -p out && tr a-z A-Z < data/in.txt > out/result.txt\n";

impl ProgramTask for Toy {
    fn info(&self) -> TaskInfo {
        TaskInfo {
            name: "toy".into(),
            family: "toy".into(),
            title: "toy".into(),
            summary: "upper-cases its input".into(),
            raw_score: "ln(seconds)".into(),
            direction: Direction::LowerIsBetter,
            submission: rdbench_core::task::SubmissionKind::Program,
            submission_files: vec![],
            profiles: vec![ProfileInfo {
                name: "tiny".into(),
                description: "one input".into(),
                needs_gpu: false,
            }],
            score_hidden: false,
            hardware_independent: false,
            default_time_limit_minutes: 10,
            score_timeout_s: 60,
            human_minutes: None,
            tools: vec![],
        }
    }
    fn tree_limits(&self) -> TreeLimits {
        TreeLimits {
            max_files: 10,
            max_bytes: 10_000,
            max_depth: 3,
        }
    }
    fn write_solution(&self, which: Solution, _profile: &str, dir: &Path) -> Result<()> {
        let text = match which {
            Solution::Reference => REFERENCE,
            _ => self.program,
        };
        std::fs::write(dir.join("run.sh"), text).map_err(|e| Error::io(dir, e))
    }
    fn instructions(&self, _profile: &str) -> Result<String> {
        Ok("upper-case data/in.txt into out/result.txt\n".into())
    }
    fn contract(&self, _profile: &str) -> Result<Contract> {
        Ok(Contract {
            command: vec!["sh".into(), "run.sh".into()],
            input_dir: "data".into(),
            outputs: vec![OutputFile {
                path: "out/result.txt".into(),
                max_bytes: 1000,
            }],
            deadline: Duration::from_secs(5),
            pool_size: 2,
            file_size: 1 << 20,
            tmp_size: 1 << 20,
            processes: 64,
        })
    }
    fn sandbox_env(&self, _profile: &str) -> Result<SandboxEnv> {
        Ok(SandboxEnv::default())
    }
    fn make_input(&self, _profile: &str, seed: u64, dir: &Path) -> Result<()> {
        std::fs::write(dir.join("in.txt"), format!("input {seed:x}\n"))
            .map_err(|e| Error::io(dir, e))
    }
    fn check(&self, _p: &str, _seed: u64, expected: &Outputs, got: &Outputs) -> Result<Verdict> {
        Ok(if expected == got {
            Verdict::Valid {
                headline: "same output".into(),
                details: serde_json::Value::Null,
            }
        } else {
            Verdict::Invalid {
                kind: InvalidKind::WrongOutput,
                reason: "not the reference's output".into(),
                details: serde_json::Value::Null,
            }
        })
    }
    fn example_seed(&self, _profile: &str) -> u64 {
        0xe4a3
    }
}

struct Setup {
    home: tempfile::TempDir,
}

fn setup() -> Option<Setup> {
    use_shim(Shim {
        program: env!("CARGO_BIN_EXE_program-test-shim").into(),
        args: Vec::new(),
    });
    let caps = rdbench_runner::sandbox::capabilities();
    if let Some(why) = caps.why_not {
        println!("skipped: no sandbox here: {why}");
        return None;
    }
    Some(Setup {
        home: tempfile::tempdir().unwrap(),
    })
}

/// Scores `program` as the submission (after `prepare`, which builds the pool).
fn score(s: &Setup, program: &str, extra: impl Fn(&Path)) -> ScoreOutcome {
    let task = ProgramAdapter(Toy {
        program: Box::leak(program.to_string().into_boxed_str()),
    });
    let tiny = profile_of(&task, "tiny").unwrap();
    task.check_environment(&tiny, Execution::Measured).unwrap();
    let attempt = s.home.path().join(format!("attempt-{}", rand_name()));
    let private = s.home.path().join("private");
    let cache = s.home.path().join("cache");
    task.prepare(&PrepareRequest {
        profile: tiny.clone(),
        attempt_dir: attempt.clone(),
        private_dir: private.clone(),
        cache_dir: cache.clone(),
    })
    .unwrap();
    extra(&attempt.join("solution"));
    let req = ScoreRequest {
        profile: tiny,
        submission_dir: attempt.clone(),
        private_dir: private,
        cache_dir: cache,
        samples_path: s.home.path().join("samples.json"),
        seed: 1,
        execution: Execution::Measured,
    };
    if let Some((kind, reason)) = task.precheck(&req).unwrap() {
        return ScoreOutcome::invalid(kind, reason);
    }
    task.score(&req).unwrap()
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn raw(o: &ScoreOutcome) -> f64 {
    match o {
        ScoreOutcome::Valid { raw, .. } => *raw,
        other => panic!("expected a valid score: {other:?}"),
    }
}

fn kind(o: &ScoreOutcome) -> InvalidKind {
    o.invalid_kind()
        .unwrap_or_else(|| panic!("expected an invalid entry: {o:?}"))
}

#[test]
fn start_and_reference_score_and_the_start_is_slower() {
    let Some(s) = setup() else { return };
    let start = raw(&score(&s, START, |_| {}));
    let reference = raw(&score(&s, REFERENCE, |_| {}));
    assert!(
        start.exp() > reference.exp() + 0.4,
        "start {start}, reference {reference}"
    );
}

#[test]
fn generic_cheats_fail() {
    let Some(s) = setup() else { return };
    // The output of the example input, kept and copied: another input is drawn.
    let cached = score(
        &s,
        "mkdir -p out && cp cached.txt out/result.txt\n",
        |sol| {
            let example = std::fs::read_to_string(sol.join("data/in.txt")).unwrap();
            std::fs::write(sol.join("cached.txt"), example.to_uppercase()).unwrap();
        },
    );
    assert_eq!(kind(&cached), InvalidKind::WrongOutput);
    // The pool's expected outputs are not reachable from inside.
    let cache = s
        .home
        .path()
        .join("cache/toy/tiny/pool/1/expected/out/result.txt");
    let peek = score(
        &s,
        &format!(
            "mkdir -p out && cat {} > out/result.txt; exit 0\n",
            cache.display()
        ),
        |_| {},
    );
    assert_eq!(kind(&peek), InvalidKind::WrongOutput);
    // Returning at once and writing from a process left behind: the run ends with the
    // program, and so does the writer.
    let late = score(
        &s,
        "(sleep 1; mkdir -p out; tr a-z A-Z < data/in.txt > out/result.txt) &\nexit 0\n",
        |_| {},
    );
    assert_eq!(kind(&late), InvalidKind::MissingFile);
    // The output is a link to a file of the scorer's: never followed.
    let link = score(
        &s,
        &format!("mkdir -p out && ln -s {} out/result.txt\n", cache.display()),
        |_| {},
    );
    assert_eq!(kind(&link), InvalidKind::BadArtifact);
    let dir_link = score(
        &s,
        &format!("ln -s {} out\n", cache.parent().unwrap().display()),
        |_| {},
    );
    assert_eq!(kind(&dir_link), InvalidKind::BadArtifact);
    // Writing outside the folder fails; the run's failure is its exit, without its output.
    let outside = score(
        &s,
        &format!("echo x > {}/planted\n", s.home.path().display()),
        |_| {},
    );
    assert_eq!(kind(&outside), InvalidKind::Crash);
    assert!(!s.home.path().join("planted").exists());
    let hang = score(&s, "sleep 60\n", |_| {});
    assert_eq!(kind(&hang), InvalidKind::Timeout);
    // A link in the submitted tree: refused before anything runs, as the service's snapshot does.
    let linked_tree = score(&s, REFERENCE, |sol| {
        std::os::unix::fs::symlink("/etc/passwd", sol.join("passwd")).unwrap();
    });
    assert_eq!(kind(&linked_tree), InvalidKind::RuleViolation);
    let big_tree = score(&s, REFERENCE, |sol| {
        std::fs::write(sol.join("big"), vec![b'x'; 20_000]).unwrap();
    });
    assert_eq!(kind(&big_tree), InvalidKind::TooLarge);
}
