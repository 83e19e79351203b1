//! The task through its public API: the formula on the shipped sweep (pinned start and
//! reference, the maximum only at the optimum width, the budget limits), bad files, the
//! unshipped `full` profile, and the agent's trainer binary.

use std::path::Path;
use std::process::Command;

use rdbench_core::task::{profile_of, Execution, InvalidKind, ScoreOutcome, Solution, Task};
use rdbench_core::Error;
use rdbench_reference_scaling_law::REFERENCE;
use rdbench_task_scaling_law::answer::Answer;
use rdbench_task_scaling_law::{
    evaluate, profile, reference_answer, starting_answer, surface, EXPERIMENT_LOG,
};

fn tiny() -> profile::Spec {
    profile::tiny()
}

fn steps_for(spec: &profile::Spec, n_embd: u64, fraction: f64) -> u64 {
    (fraction * spec.budget / spec.flops_per_iter(n_embd as f64)).floor() as u64
}

fn score(a: Answer) -> Option<f64> {
    let spec = tiny();
    evaluate(&spec, &surface(&spec).unwrap(), &a)
        .ok()
        .map(|e| e.score)
}

/// The documented numbers of docs/scaling-law.md.
const START_SCORE: f64 = 0.13068;
const REFERENCE_SCORE: f64 = 0.84511;

#[test]
fn start_and_reference_score_as_documented() {
    let spec = tiny();
    let s = score(starting_answer(&spec)).unwrap();
    let ra = reference_answer(REFERENCE, &spec).unwrap().answer;
    let r = score(ra).unwrap();
    assert!(
        (s - START_SCORE).abs() < 5e-4,
        "start {s}, reference {r} ({ra:?})"
    );
    assert!((r - REFERENCE_SCORE).abs() < 5e-4, "reference {r} ({ra:?})");
    assert!(r > s + 0.05, "the reference beats the start clearly");
    let task = rdbench_task_scaling_law::task(REFERENCE);
    let cal = task
        .shipped_calibration(&profile_of(&task, "tiny").unwrap())
        .unwrap();
    assert_eq!((cal.start, cal.reference), (s, r));
}

#[test]
fn the_maximum_is_reached_only_at_the_optimal_width() {
    let spec = tiny();
    let surf = surface(&spec).unwrap();
    let opt = surf.optimum();
    let widths = surf.widths().to_vec();
    let at = |w: u64| {
        let iters = steps_for(&spec, w, 1.0);
        let l = surf.loss(w, iters).unwrap();
        score(Answer {
            n_embd: w,
            max_iters: iters,
            loss_prediction: l,
        })
        .unwrap()
    };
    // Exactly at the optimum, with a perfect prediction: the maximum (one step short of the
    // budget costs next to nothing).
    assert!((at(opt.n_embd as u64) - 1.0).abs() < 2e-3);
    let mut best = (0, f64::MIN);
    for lo in widths[0]..=*widths.last().unwrap() {
        let s = at(lo as u64);
        assert!(s <= 1.0 + 1e-9, "width {lo} scores {s} > 1");
        if s > best.1 {
            best = (lo, s);
        }
    }
    assert_eq!(
        best.0, opt.n_embd,
        "the best width on the budget is the optimum"
    );
    // The original's defect: there, any width at the right step count scores the maximum.
    // Here a width two grid steps from the optimum, on the same budget, scores clearly less.
    let j = widths.iter().position(|&w| w == opt.n_embd).unwrap();
    let far = if j >= 2 { widths[j - 2] } else { widths[j + 2] };
    assert!(
        at(far as u64) < 1.0 - 0.02,
        "width {far}: {}",
        at(far as u64)
    );
    // And the optimum's step count with half the width is a quarter of the compute.
    let iters = steps_for(&spec, opt.n_embd as u64, 1.0) + 1;
    let half = (opt.n_embd / 2).max(widths[0]) as u64;
    let l = surf.loss(half, iters).unwrap();
    let s = score(Answer {
        n_embd: half,
        max_iters: iters,
        loss_prediction: l,
    })
    .unwrap();
    assert!(
        s < 1.0 - 0.02,
        "half width at the optimum's steps scores {s}"
    );
}

#[test]
fn the_formula_is_the_documented_one() {
    let spec = tiny();
    let surf = surface(&spec).unwrap();
    let w = 24;
    let iters = steps_for(&spec, w, 0.7);
    let l = surf.loss(w, iters).unwrap();
    let ev = evaluate(
        &spec,
        &surf,
        &Answer {
            n_embd: w,
            max_iters: iters,
            loss_prediction: l + 0.3,
        },
    )
    .unwrap();
    let want = 1.0 - ((l - surf.optimum().loss) + 0.3);
    assert!((ev.score - want).abs() < 1e-12);
    // A prediction below the true loss costs the same as one above it.
    let below = evaluate(
        &spec,
        &surf,
        &Answer {
            n_embd: w,
            max_iters: iters,
            loss_prediction: l - 0.3,
        },
    )
    .unwrap();
    assert!((below.score - ev.score).abs() < 1e-12);
}

#[test]
fn budget_limits_and_the_swept_range() {
    let spec = tiny();
    let surf = surface(&spec).unwrap();
    let w = 32;
    let full = steps_for(&spec, w, 1.0);
    // Up to 1.1 x the budget is valid, and counts as the budget.
    let over = steps_for(&spec, w, 1.09);
    assert_eq!(surf.loss(w, over).unwrap(), surf.loss(w, full + 1).unwrap());
    assert!(surf.loss(w, steps_for(&spec, w, 1.11)).is_err());
    assert!(surf.loss(w, u64::MAX).is_err());
    // Below the lowest swept budget, and outside the swept widths: invalid.
    assert!(surf.loss(w, steps_for(&spec, w, 0.2)).is_err());
    let widths = surf.widths();
    let (lo, hi) = (widths[0] as u64, *widths.last().unwrap() as u64);
    assert!(surf.loss(lo - 1, steps_for(&spec, lo - 1, 1.0)).is_err());
    assert!(surf.loss(hi + 1, steps_for(&spec, hi + 1, 1.0)).is_err());
    assert!(surf.loss(u64::MAX, 1).is_err());
    // Grid points are reproduced exactly, and between them the surface is between them.
    let row = surf.budget_row().to_vec();
    let (a, b) = (widths[2], widths[3]);
    let la = surf
        .loss(a as u64, steps_for(&spec, a as u64, 1.0) + 1)
        .unwrap();
    assert!((la - row[2]).abs() < 1e-12);
    let mid = ((a as f64 * b as f64).sqrt()).round() as u64;
    let lm = surf.loss(mid, steps_for(&spec, mid, 1.0) + 1).unwrap();
    assert!(lm >= row[2].min(row[3]) - 1e-12 && lm <= row[2].max(row[3]) + 1e-12);
}

fn outcome(dir: &Path) -> ScoreOutcome {
    rdbench_task_scaling_law::task(REFERENCE)
        .task()
        .score_dir(&tiny(), dir, &dir.join("private"))
        .unwrap()
}

#[test]
fn files_that_are_not_plain_answers_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kind = |d: &Path| outcome(d).invalid_kind();
    assert_eq!(kind(d), Some(InvalidKind::MissingFile));
    // A link to a good answer.
    let good = d.join("good.json");
    std::fs::write(
        &good,
        r#"{"n_embd": 32, "max_iters": 100, "loss_prediction": 4}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(&good, d.join("answer.json")).unwrap();
    assert_eq!(kind(d), Some(InvalidKind::MissingFile));
    std::fs::remove_file(d.join("answer.json")).unwrap();
    // A FIFO nobody writes: refused without blocking.
    let c = std::ffi::CString::new(d.join("answer.json").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o600) }, 0);
    assert_eq!(kind(d), Some(InvalidKind::MissingFile));
    std::fs::remove_file(d.join("answer.json")).unwrap();
    // A directory.
    std::fs::create_dir(d.join("answer.json")).unwrap();
    assert_eq!(kind(d), Some(InvalidKind::MissingFile));
    std::fs::remove_dir(d.join("answer.json")).unwrap();
    // 1 GiB (sparse): refused by its size, never read.
    let f = std::fs::File::create(d.join("answer.json")).unwrap();
    f.set_len(1 << 30).unwrap();
    assert_eq!(kind(d), Some(InvalidKind::TooLarge));
}

extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

fn tool(private: &Path, words: &[&str]) -> rdbench_core::Result<rdbench_core::task::ToolReply> {
    let (name, args) = words.split_first().unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let task = rdbench_task_scaling_law::task(REFERENCE);
    task.run_tool(&rdbench_core::task::ToolRequest {
        profile: profile_of(&task, "tiny")?,
        name: name.to_string(),
        args: rdbench_core::task::ToolRequest::parse_args(&args)?,
        private_dir: private.into(),
        cache_dir: private.join("cache"),
    })
}

/// Experiments run through the served tool are logged by the scorer in the attempt's private
/// folder and reported with every score; the agent's folder plays no part, and the report
/// never changes the score.
#[test]
fn tool_runs_are_logged_scorer_side_and_reported() {
    let task = rdbench_task_scaling_law::task(REFERENCE);
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    task.install_solution(
        Solution::Starting,
        &profile_of(&task, "tiny").unwrap(),
        dir.path(),
        dir.path(),
    )
    .unwrap();
    let raw = |o: ScoreOutcome| match o {
        ScoreOutcome::Valid { raw, details, .. } => (raw, details["experiment_log"].clone()),
        o => panic!("{o:?}"),
    };
    let (plain, log) = raw(outcome(dir.path()));
    assert_eq!(log["runs"], 0);
    // A log the agent writes into its own folder is neither read nor reported.
    let forged = r#"{"n_embd":96,"max_iters":999999,"seed":0,"flops":1e20,"loss":1.0,"floor":3.6,"train_seconds":1.0}"#;
    std::fs::write(dir.path().join(EXPERIMENT_LOG), forged).unwrap();
    assert_eq!(raw(outcome(dir.path())).1["runs"], 0);
    let reply = tool(&private, &["train", "n_embd=8", "max_iters=20", "seed=3"]).unwrap();
    assert!(reply.text.contains("validation_loss"), "{}", reply.text);
    assert_eq!(reply.value["n_embd"], 8);
    let (with_log, log) = raw(outcome(dir.path()));
    assert_eq!(plain, with_log);
    assert_eq!(log["runs"], 1);
    assert_eq!(log["unparsed_lines"], 0);
    // Refused before training, and not logged: over the limit, bad or unknown arguments, other
    // tools.
    let spec = tiny();
    let over = steps_for(&spec, 32, 1.0 / spec.experiment_ratio) + 1;
    for words in [
        vec![
            "train".to_string(),
            "n_embd=32".into(),
            format!("max_iters={over}"),
        ],
        vec!["train".into(), "n_embd=8".into()],
        vec!["train".into(), "n_embd=eight".into(), "max_iters=1".into()],
        vec![
            "train".into(),
            "n_embd=8".into(),
            "max_iters=1".into(),
            "lr=1".into(),
        ],
        vec![
            "train".into(),
            "n_embd=8".into(),
            "n_embd=8".into(),
            "max_iters=1".into(),
        ],
        vec!["sweep".into()],
    ] {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let err = tool(&private, &words).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{words:?}: {err}");
    }
    assert_eq!(raw(outcome(dir.path())).1["runs"], 1);
}

#[test]
fn the_full_profile_without_a_sweep_is_an_environment_error() {
    let task = rdbench_task_scaling_law::task(REFERENCE);
    let full = profile_of(&task, "full").unwrap();
    match task.check_environment(&full, Execution::Measured) {
        Err(Error::Environment(m)) => assert!(m.contains("has not been measured"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(task.shipped_calibration(&full).is_none());
    let dir = tempfile::tempdir().unwrap();
    task.install_solution(Solution::Starting, &full, dir.path(), dir.path())
        .unwrap();
    assert!(matches!(
        task.task()
            .score_dir(&profile::full(), dir.path(), dir.path()),
        Err(Error::Environment(_))
    ));
}

#[test]
fn instructions_render_with_the_profile_numbers() {
    let spec = tiny();
    let text = rdbench_task_scaling_law::instructions(&spec).unwrap();
    assert!(text.contains("1.0e11 training FLOPs"), "{text}");
    assert!(text.contains("2.0e9 FLOPs"), "{text}");
    assert!(!text.contains("{{"));
    assert!(rdbench_task_scaling_law::instructions(&profile::full()).is_ok());
}

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rdbench-scaling-law"))
}

#[test]
fn the_trainer_refuses_experiments_over_budget_over_50_and_logs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(EXPERIMENT_LOG);
    let run = |w: &str, iters: &str| {
        trainer()
            .args(["train", "--n-embd", w, "--max-iters", iters, "--log"])
            .arg(&log)
            .env("RAYON_NUM_THREADS", "1")
            .output()
            .unwrap()
    };
    let out = run("32", "100000");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("above the experiment limit"), "{err}");
    assert!(!log.exists(), "a refused run is not trained and not logged");
    let out = run("33", "10");
    assert_eq!(
        out.status.code(),
        Some(2),
        "odd widths do not split into 2 heads"
    );
    let out = run("8", "5");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("validation_loss"));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 1);
    let logged: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(logged["n_embd"], 8);
    assert_eq!(logged["max_iters"], 5);
    assert!(logged["loss"].as_f64().unwrap().is_finite());
}

/// The trainer is the agent's; the ground truth must not be in it.
#[test]
fn the_trainer_binary_holds_no_ground_truth() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_rdbench-scaling-law")).unwrap();
    let sweep = include_str!("../sweeps/tiny.json");
    for needle in ["\"provenance\": {", "\"grid\": ["] {
        assert!(
            sweep.contains(needle),
            "the needle {needle:?} is in the sweep"
        );
        let found = bin.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            !found,
            "the trainer binary contains {needle:?} of the sweep"
        );
    }
}

/// The shipped sweep was measured by the trainer the agent's experiments run: a change to what
/// training computes (`rdbench_lm::TRAINING_VERSION`) requires measuring the sweep again.
#[test]
fn the_shipped_sweep_was_measured_by_the_current_trainer() {
    let sweep = rdbench_task_scaling_law::sweep("tiny").unwrap().unwrap();
    assert_eq!(
        sweep.provenance.training_version,
        rdbench_lm::TRAINING_VERSION,
        "rerun examples/scaling_law_sweep.rs for tiny"
    );
}
