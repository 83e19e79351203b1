//! The whole tiny cycle, as `rdbench cycle` runs it (prepare an attempt, score the starting
//! solution, install and score the reference), and the regression tests of the cheats of rdbench
//! issue 10 (part 5), scored by the real scorer against that installation:
//!
//! - (a) invert the permutation with the seed tiny's spec used to publish: scores as a random
//!   permutation does, i.e. as the start;
//! - (b) build a second installation (same binary, its own cache, so its own secret) and submit
//!   its original model: its data distribution is another HMM, so the model is no better than
//!   the start. (The HMM is secret, not public: with a shared HMM the second
//!   installation's original scores about as the first's, above the reference; measured by the
//!   `fix_embedding_instances` example and recorded in `docs/fix-embedding.md`.)
//!
//! (c), bit-identical preparation under the same secret and different files under another, is
//! `tests/task.rs` (`concurrent_preparations_train_once_and_only_the_same_secret_agrees`).
//!
//! Two installations are prepared on two threads at once (three models each, the reference in the
//! first only): about a minute in a release build on 2 cores, a few minutes in the test profile.

use std::path::{Path, PathBuf};

use rdbench_core::conformance;
use rdbench_core::task::{profile_of, ScoreOutcome, ScoreRequest, Solution, Task};
use rdbench_lm::{save_model, Gpt};
use rdbench_task_fix_embedding::instance::{Instance, Secret};
use rdbench_task_fix_embedding::{evaluate, prep, SUBMISSION};

/// The permutation seed of tiny's public spec before the instance was derived from the secret.
const OLD_TINY_PERMUTATION_SEED: u64 = 0x7155_0008;

/// Highest normalized score a cheat may get. The start is 0 by definition; `fix_embedding_instances
/// tiny 6` measured an installation's original under five other random permutations at
/// -0.025..0.030, the five other installations' originals and references at -0.034..0.019, and
/// the old-seed inversion at -0.008; every cheat that works scores about 1 (the original 1.02 to
/// 1.11, an installation sharing the HMM 1.02).
const CHEAT_CEILING: f64 = 0.1;

/// The raw score of the submission in `dir`, scored against the installation at `cache`.
fn raw(task: &dyn rdbench_core::task::Task, dir: &Path, cache: &Path) -> f64 {
    let req = ScoreRequest {
        profile: profile_of(task, "tiny").unwrap(),
        submission_dir: dir.to_path_buf(),
        private_dir: dir.join("private"),
        cache_dir: cache.to_path_buf(),
        samples_path: dir.join("private/samples.json"),
        seed: 7,
        execution: Default::default(),
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

/// `file` as the submission of a fresh folder under `root`.
fn submission(root: &Path, name: &str, file: &Path) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(file, dir.join(SUBMISSION)).unwrap();
    dir
}

/// `model` as the submission of a fresh folder under `root`.
fn model_submission(root: &Path, name: &str, model: &Gpt) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    save_model(model, &dir.join(SUBMISSION)).unwrap();
    dir
}

/// Writes a fixed installation secret (`word` repeated to 64 hex digits) into `cache`.
fn pin_secret(cache: &std::path::Path, word: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = Secret::path(cache);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("{}\n", word.repeat(64 / word.len()))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn tiny_cycle_scores_start_0_and_reference_1_and_no_public_seed_cheat_works() {
    let task = rdbench_task_fix_embedding::task();
    let spec = task.profile("tiny").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");

    // Both installations' secrets are fixed, so the sizing checks below are deterministic (a
    // fresh random instance lets the reference beat the original now and then: B measured
    // 94.3-97.6 % of the gap closed over six secrets, and CI once saw more than 100 %; and
    // another installation's original scored 0.895 at home once, against the 0.9 asked).
    pin_secret(&cache, "5eed");
    let theirs = tmp.path().join("their-cache");
    pin_secret(&theirs, "7e11");
    // The agent's own installation, prepared meanwhile on another thread.
    let their_prep = {
        let (spec, theirs) = (spec.clone(), theirs.clone());
        std::thread::spawn(move || prep::ensure_prepared(&spec, &theirs).unwrap())
    };
    let tiny = profile_of(&task, "tiny").unwrap();
    let attempt = conformance::prepare_attempt(&task, &tiny, tmp.path(), &cache).unwrap();

    // The attempt gets the models, the corpus, configs and instructions; nothing held out.
    assert_eq!(
        conformance::names_in(&attempt).unwrap(),
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
    let secret = std::fs::read_to_string(Secret::path(&cache)).unwrap();
    let prefix = &secret.as_bytes()[..16];
    let holding = conformance::files_holding(&attempt, prefix).unwrap();
    assert!(holding.is_empty(), "{holding:?} hold the secret");

    // The starting submission is the corrupted model.
    let start = raw(&task, &attempt, &cache);
    let start_dir = tmp.path().join("start");
    task.install_solution(Solution::Starting, &tiny, &cache, &start_dir)
        .unwrap();
    assert_eq!(raw(&task, &start_dir, &cache), start);

    let ref_dir = tmp.path().join("reference");
    task.install_solution(Solution::Reference, &tiny, &cache, &ref_dir)
        .unwrap();
    let reference = raw(&task, &ref_dir, &cache);

    // The original (uncorrupted) model: the reference closes at least 90 % of the gap.
    let inst = Instance::load(&spec, &cache).unwrap();
    let at = prep::Prepared::locate(&cache, &spec, &inst);
    let original = raw(
        &task,
        &submission(tmp.path(), "original", &at.original()),
        &cache,
    );
    let closed = (start - reference) / (start - original);
    eprintln!("raw: start {start:.4}, reference {reference:.4}, original {original:.4}; the reference closes {closed:.3} of the gap");
    assert!(closed >= 0.9, "reference closes only {closed:.3} of the gap (start {start}, ref {reference}, original {original})");
    assert!(
        closed < 1.0,
        "the reference ({reference}) is better than the original model ({original}): the task is mis-sized"
    );
    // Normalized with this installation's own start and reference, as `rdbench calibrate`
    // measures them (nothing is shipped: the instance, hence the raw scores, is per installation).
    assert!(["tiny", "full"].iter().all(|p| task
        .shipped_calibration(&profile_of(&task, p).unwrap())
        .is_none()));
    let norm = |r: f64| (r - start) / (reference - start);

    // Another held-out split of the same instance gives nearly the same raw scores.
    let other_split = Instance {
        heldout_seed: 0xd1ff_e4e7,
        ..inst.clone()
    };
    for (name, r) in [(at.corrupted(), start), (at.reference(), reference)] {
        let m = prep::load_prepared(&name, &spec.model).unwrap();
        let other = evaluate(&spec, &other_split, &m).unwrap().raw;
        assert!(
            (other - r).abs() < 0.02 * (start - reference),
            "{}: {r} vs {other}",
            name.display()
        );
    }

    // (a) Undo the permutation with the formerly public seed: one more random permutation.
    let corrupted =
        prep::load_prepared(&attempt.join("corrupted_model.safetensors"), &spec.model).unwrap();
    let guessed = prep::uncorrupt(&corrupted, OLD_TINY_PERMUTATION_SEED).unwrap();
    let cheat_a = norm(raw(
        &task,
        &model_submission(tmp.path(), "old-seed", &guessed),
        &cache,
    ));
    assert!(
        cheat_a < CHEAT_CEILING,
        "inverting the old public permutation scores {cheat_a:.3} normalized"
    );
    // The same inversion with the seed the agent cannot know recovers the original exactly
    // (so the check above would catch a public seed).
    let known = prep::uncorrupt(&corrupted, inst.permutation_seed).unwrap();
    let known_dir = model_submission(tmp.path(), "known-seed", &known);
    assert_eq!(
        std::fs::read(known_dir.join(SUBMISSION)).unwrap(),
        std::fs::read(at.original()).unwrap()
    );

    // (b) The original of the agent's own installation. (Its reference, trained from that
    // original, is no better: -0.016..0.019 over five installations in `fix_embedding_instances`;
    // not trained here, to keep the test at one reference run.)
    let their_at = their_prep.join().unwrap();
    assert_ne!(their_at.models, at.models);
    let dir = submission(tmp.path(), "their-original", &their_at.original());
    let theirs_here = norm(raw(&task, &dir, &cache));
    assert!(
        theirs_here < CHEAT_CEILING,
        "another installation's original scores {theirs_here:.3} normalized here"
    );
    // At home the same file is a good model: the gap is the instance, not the file. (Its
    // score there is normalized with this installation's anchors, which only approximate that
    // instance's own: 0.878 with the pinned secrets, 0.895 and above 0.9 with random ones.)
    let theirs_there = norm(raw(&task, &dir, &theirs));
    assert!(
        theirs_there > 0.8,
        "another installation's original scores only {theirs_there:.3} there"
    );

    // The conformance kit, on this installation (its models are trained by now).
    conformance::assert_conformant(&task, "tiny", &cache);
}
