//! The task through its `Task` interface: the exploit corpus gives its expected verdicts, bad
//! input is one invalid entry naming the file, the instructions render, the trainer learns, and
//! a prepared attempt holds the start (which scores) and nothing of the held-out split.

use std::path::{Path, PathBuf};

use candle_core::Device;
use rdbench_core::conformance;
use rdbench_core::task::{profile_of, ScoreOutcome, ScoreRequest, Task};
use rdbench_lm::{Hmm, HmmConfig, TokenSet, TrainConfig};
use rdbench_task_restricted_mlm::graph::{self, Limits};
use rdbench_task_restricted_mlm::interp::MlmModel;
use rdbench_task_restricted_mlm::{mlm, profile, start, MODEL_FILE, WEIGHTS_FILE};

fn request(dir: &Path, cache: &Path) -> ScoreRequest {
    ScoreRequest {
        profile: profile_of(
            &rdbench_task_restricted_mlm::task(rdbench_reference_restricted_mlm::REFERENCE),
            "tiny",
        )
        .unwrap(),
        submission_dir: dir.to_path_buf(),
        private_dir: dir.join("private"),
        cache_dir: cache.to_path_buf(),
        samples_path: dir.join("private/samples.json"),
        seed: 1,
        execution: Default::default(),
    }
}

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/exploits/restricted-mlm")
}

#[test]
fn every_exploit_case_gets_its_verdict_before_any_evaluation() {
    let task = rdbench_task_restricted_mlm::task(rdbench_reference_restricted_mlm::REFERENCE);
    let readme = std::fs::read_to_string(corpus_root().join("README.md")).unwrap();
    let mut cases = 0;
    for entry in std::fs::read_dir(corpus_root()).unwrap() {
        let case = entry.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        assert!(readme.contains(&format!("`{name}`")), "README lacks {name}");
        let expect: toml::Table =
            toml::from_str(&std::fs::read_to_string(case.join("expect.toml")).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for f in [MODEL_FILE, WEIGHTS_FILE] {
            if case.join(f).is_file() {
                std::fs::copy(case.join(f), dir.path().join(f)).unwrap();
            }
        }
        // A cache that is never written: nothing is evaluated for an invalid submission.
        let cache = dir.path().join("cache");
        let req = request(dir.path(), &cache);
        let pre = task.precheck(&req).unwrap();
        let (kind, reason) = match task.score(&req).unwrap() {
            ScoreOutcome::Invalid { kind, reason, .. } => (kind, reason),
            other => panic!("{name}: expected invalid, got {other:?}"),
        };
        assert_eq!(
            pre,
            Some((kind, reason.clone())),
            "{name}: precheck and score disagree"
        );
        let kind_name = serde_json::to_value(kind).unwrap();
        assert_eq!(
            kind_name.as_str(),
            expect["kind"].as_str(),
            "{name}: {reason}"
        );
        let want = expect["reason_contains"].as_str().unwrap();
        assert!(reason.contains(want), "{name}: {reason:?} lacks {want:?}");
        assert!(
            reason.contains(MODEL_FILE) || reason.contains(WEIGHTS_FILE),
            "{name}: the reason names no file: {reason}"
        );
        assert!(
            !cache.exists(),
            "{name}: the scorer prepared data for an invalid entry"
        );
        cases += 1;
    }
    assert!(cases >= 20, "{cases} cases");
}

#[test]
fn a_graph_over_the_node_cap_is_refused_from_its_count() {
    let spec = profile::tiny();
    let mut text = start::graph(&spec.limits, spec.start.shape);
    for i in 0..spec.limits.max_nodes {
        text.push_str(&format!(
            "\n[[node]]\nname = \"r{i}\"\nop = \"relu\"\ninputs = [\"x\"]\n"
        ));
    }
    let err = graph::parse(&text, &spec.limits).unwrap_err().to_string();
    assert!(err.contains("nodes; at most 10000 are allowed"), "{err}");
}

#[test]
fn the_shipped_graphs_fit_their_profiles() {
    for spec in [profile::tiny(), profile::full()] {
        for text in [
            start::graph(&spec.limits, spec.start.shape),
            rdbench_reference_restricted_mlm::graph(&spec.limits, &spec.reference),
        ] {
            let g =
                graph::parse(&text, &spec.limits).unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            assert!(g.params <= spec.limits.max_params);
        }
    }
}

#[test]
fn instructions_render_and_state_the_contract() {
    for spec in [profile::tiny(), profile::full()] {
        let text = rdbench_task_restricted_mlm::instructions(&spec).unwrap();
        assert!(!text.contains("{{"), "{text}");
        for needle in [
            "model.toml",
            "weights.safetensors",
            "rdbench score",
            "ln(loss - floor)",
            "cheating",
            "window",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
    }
}

/// The trainer reduces the masked loss of a toy graph on a toy corpus within a second or two.
#[test]
fn the_trainer_learns_a_toy_corpus() {
    let limits = Limits {
        seq: 8,
        vocab: 6,
        max_nodes: 100,
        max_params: 100_000,
        max_flops_per_token: 1_000_000,
        max_value_elements: 100_000,
        max_total_elements: 1_000_000,
    };
    let hmm = Hmm::new(HmmConfig {
        states: 4,
        vocab: 6,
        successors: 2,
        zipf_exponent: 1.5,
        structure_seed: 3,
    })
    .unwrap();
    let train = TokenSet::new(hmm.sample(1, 2000, 8), 8).unwrap();
    let held = TokenSet::new(hmm.sample(2, 300, 8), 8).unwrap();
    let masks = mlm::mask_pattern(5, held.tokens.len());
    let (floor, n) = hmm.masked_floor(&held.tokens, &masks, 8);
    assert!(n > 200);
    let text = start::graph(
        &limits,
        start::MlpShape {
            embed: 4,
            hidden: 32,
        },
    );
    let g = graph::parse(&text, &limits).unwrap();
    let model = MlmModel::init(g, limits.clone(), 7, &Device::Cpu).unwrap();
    let (before, _) = mlm::eval_masked_loss(&model, &held, &masks, 64).unwrap();
    let cfg = TrainConfig {
        steps: 300,
        batch_size: 32,
        lr: 1e-2,
        warmup_steps: 10,
        min_lr_frac: 0.1,
        weight_decay: 0.0,
        seed: 1,
    };
    mlm::train(&model, &train, &cfg, "test").unwrap();
    let (after, _) = mlm::eval_masked_loss(&model, &held, &masks, 64).unwrap();
    // It closes most of the gap to the floor.
    assert!(
        after - floor < 0.5 * (before - floor),
        "{before} -> {after}, floor {floor}"
    );
    // Nothing beats the floor by more than noise on 300 sequences.
    assert!(after > floor - 0.05, "{after} vs floor {floor}");
    // Training on the same masked loss the scorer uses: the eval is the mean over masked
    // positions only (a model that is perfect elsewhere gains nothing).
    assert!(
        (before - (6f64).ln()).abs() < 0.3,
        "an untrained model is near uniform: {before}"
    );
}

/// Prepares a tiny attempt (trains the start once, ~30 s on 2 cores), scores it, checks the
/// attempt folder holds no held-out data and no secret, and runs the conformance kit.
#[test]
fn a_prepared_attempt_scores_its_start_and_holds_nothing_hidden() {
    let task = rdbench_task_restricted_mlm::task(rdbench_reference_restricted_mlm::REFERENCE);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let attempt = conformance::prepare_attempt(
        &task,
        &profile_of(&task, "tiny").unwrap(),
        root.path(),
        &cache,
    )
    .unwrap();
    assert_eq!(
        conformance::names_in(&attempt).unwrap(),
        [
            "INSTRUCTIONS.md",
            "corpus.json",
            "model.toml",
            "train_tokens.bin",
            "weights.safetensors"
        ]
    );
    let secret = std::fs::read_to_string(cache.join("restricted-mlm/instance.secret")).unwrap();
    let holding = conformance::files_holding(&attempt, secret.trim().as_bytes()).unwrap();
    assert!(holding.is_empty(), "{holding:?} hold the secret");
    let spec = profile::tiny();
    let train = TokenSet::read(&attempt.join("train_tokens.bin"), spec.limits.seq).unwrap();
    assert_eq!(train.n_seq(), spec.train_seqs);
    let req = request(&attempt, &cache);
    assert_eq!(task.precheck(&req).unwrap(), None);
    match task.score(&req).unwrap() {
        ScoreOutcome::Valid { raw, details, .. } => {
            let floor = details["floor"].as_f64().unwrap();
            let loss = details["loss"].as_f64().unwrap();
            assert!(loss > floor, "{loss} vs {floor}");
            assert!((raw - (loss - floor).ln()).abs() < 1e-9);
            // The held-out split is independent of the training corpus.
            let inst =
                rdbench_task_restricted_mlm::instance::Instance::load(&spec, &cache).unwrap();
            let (held, _, floor2, _) =
                rdbench_task_restricted_mlm::prep::heldout(&spec, &inst).unwrap();
            assert_eq!(floor, floor2);
            assert_ne!(
                held.tokens[..spec.limits.seq],
                train.tokens[..spec.limits.seq]
            );
        }
        other => panic!("{other:?}"),
    }
    // The conformance kit on this installation (the start is trained by now; the kit trains
    // the reference, about 2 min in a debug build).
    conformance::assert_conformant(&task, "tiny", &cache);
}
