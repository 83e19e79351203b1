//! The whole tiny cycle, as `rdbench cycle` runs it: prepare an attempt, score the starting
//! solution, install and score the reference. Trains three models: about two minutes in a release
//! build on 2 cores.

use rdbench_core::task::{PrepareRequest, ScoreOutcome, ScoreRequest, Solution, Task};
use rdbench_task_fix_embedding::{evaluate, prep, FixEmbedding, SUBMISSION};

fn raw(task: &FixEmbedding, dir: &std::path::Path, cache: &std::path::Path) -> f64 {
    let req = ScoreRequest {
        profile: "tiny".into(),
        submission_dir: dir.to_path_buf(),
        private_dir: dir.join("private"),
        cache_dir: cache.to_path_buf(),
        samples_path: dir.join("private/samples.json"),
        seed: 7,
        backend: Default::default(),
    };
    assert_eq!(task.precheck(&req).unwrap(), None);
    match task.score(&req).unwrap() {
        ScoreOutcome::Valid { raw, details, .. } => {
            assert!(details["loss"].as_f64().unwrap() > details["floor"].as_f64().unwrap());
            raw
        }
        other => panic!("not a score: {other:?}"),
    }
}

#[test]
fn tiny_cycle_scores_start_0_and_reference_1() {
    let task = FixEmbedding::default();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let attempt = tmp.path().join("attempt");
    task.prepare(&PrepareRequest {
        profile: "tiny".into(),
        attempt_dir: attempt.clone(),
        private_dir: tmp.path().join("private"),
        cache_dir: cache.clone(),
    })
    .unwrap();

    // The attempt gets the models, the corpus, configs and instructions; nothing held out.
    let mut names: Vec<String> = std::fs::read_dir(&attempt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "INSTRUCTIONS.md",
            "corpus.json",
            "corrupted_model.safetensors",
            "fixed_model.safetensors",
            "model_config.json",
            "small_model.safetensors",
            "small_model_config.json",
            "train_tokens.bin"
        ]
    );
    let secret = format!("{:016x}", prep::heldout_secret(&cache).unwrap());
    for n in &names {
        let bytes = std::fs::read(attempt.join(n)).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{n} holds the secret"
        );
    }

    // The starting submission is the corrupted model.
    let start = raw(&task, &attempt, &cache);
    let start_dir = tmp.path().join("start");
    task.install_solution(Solution::Starting, "tiny", &cache, &start_dir)
        .unwrap();
    assert_eq!(raw(&task, &start_dir, &cache), start);

    let ref_dir = tmp.path().join("reference");
    task.install_solution(Solution::Reference, "tiny", &cache, &ref_dir)
        .unwrap();
    let reference = raw(&task, &ref_dir, &cache);

    // The original (uncorrupted) model: the reference closes at least 90 % of the gap.
    let spec = task.spec("tiny").unwrap();
    let at = prep::Prepared::locate(&cache, &spec);
    let orig_dir = tmp.path().join("original");
    std::fs::create_dir_all(&orig_dir).unwrap();
    std::fs::copy(at.original(), orig_dir.join(SUBMISSION)).unwrap();
    let original = raw(&task, &orig_dir, &cache);
    let closed = (start - reference) / (start - original);
    assert!(closed >= 0.9, "reference closes only {closed:.3} of the gap (start {start}, ref {reference}, original {original})");
    assert!(
        closed < 1.0,
        "the reference is better than the original model: the task is mis-sized"
    );

    // Shipped calibration holds here: start and reference normalize to 0 and 1 within 0.05.
    let cal = task
        .shipped_calibration("tiny")
        .expect("tiny has shipped calibration");
    let norm = |r: f64| (r - cal.start) / (cal.reference - cal.start);
    assert!(
        norm(start).abs() < 0.05,
        "start normalizes to {}",
        norm(start)
    );
    assert!(
        (norm(reference) - 1.0).abs() < 0.05,
        "reference normalizes to {}",
        norm(reference)
    );

    // Another held-out split (another installation) gives nearly the same raw scores.
    for (name, r) in [(at.corrupted(), start), (at.reference(), reference)] {
        let m = prep::load_prepared(&name, &spec.model).unwrap();
        let other = evaluate(&spec, &m, 0xd1ff_e4e7).unwrap().raw;
        assert!(
            (other - r).abs() < 0.02 * (cal.start - cal.reference),
            "{}: {r} vs {other}",
            name.display()
        );
    }
}
