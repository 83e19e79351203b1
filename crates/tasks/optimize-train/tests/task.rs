//! optimize-train's own pieces, without running PyTorch: the contract agrees with `train.toml`
//! and rdbench-lm's model, inputs are deterministic in their seed and differ between seeds, the
//! solutions are complete, and the check refuses what is not the reference's weights.

use std::collections::BTreeMap;

use rdbench_core::task::{InvalidKind, Solution};
use rdbench_program::{ProgramTask, Verdict};
use rdbench_task_optimize_train::{spec, train_config, OptimizeTrain, WEIGHTS};

#[test]
fn the_config_is_rdbench_lms_model_and_the_data_fits_it() {
    let (cfg, seq_len) = train_config().unwrap();
    cfg.validate().unwrap();
    assert_eq!(seq_len, cfg.ctx + 1);
    let s = spec("tiny").unwrap();
    assert_eq!(s.corpus.vocab, cfg.vocab);
    assert!(spec("full").is_err() && spec("huge").is_err());
    let c = OptimizeTrain.contract("tiny").unwrap();
    assert_eq!(c.outputs[0].path, WEIGHTS);
    assert!(c.outputs[0].max_bytes > cfg.data_bytes());
}

#[test]
fn inputs_are_deterministic_per_seed_and_differ_between_seeds() {
    let read = |seed| {
        let d = tempfile::tempdir().unwrap();
        OptimizeTrain.make_input("tiny", seed, d.path()).unwrap();
        std::fs::read_to_string(d.path().join("train.jsonl")).unwrap()
    };
    let a = read(1);
    assert_eq!(a, read(1));
    assert_ne!(a, read(2));
    let (cfg, seq_len) = train_config().unwrap();
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(lines.len(), spec("tiny").unwrap().train_seq);
    let row: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let ids = row["ids"].as_array().unwrap();
    assert_eq!(ids.len(), seq_len);
    assert!(ids.iter().all(|v| v.as_u64().unwrap() < cfg.vocab as u64));
}

#[test]
fn both_solutions_have_every_file_their_train_sh_runs() {
    for which in [Solution::Starting, Solution::Reference] {
        let d = tempfile::tempdir().unwrap();
        OptimizeTrain
            .write_solution(which, "tiny", d.path())
            .unwrap();
        let sh = std::fs::read_to_string(d.path().join("train.sh")).unwrap();
        for word in sh.split_whitespace().filter(|w| w.ends_with(".py")) {
            assert!(d.path().join(word).is_file(), "{which:?}: {word} missing");
        }
        assert!(d.path().join("model.py").is_file() && d.path().join("train.toml").is_file());
    }
    assert!(OptimizeTrain
        .write_solution(
            Solution::Fastest,
            "tiny",
            tempfile::tempdir().unwrap().path()
        )
        .is_err());
    let tasks = rdbench_task_optimize_train::tasks();
    assert_eq!(tasks[0].info().name, "optimize-train");
    assert_eq!(tasks[0].info().submission_files[0].name, "solution");
}

/// A weights file of rdbench-lm's model from `seed`'s initialization, each tensor passed
/// through `edit` with its name.
fn weights_edited(
    seed: u64,
    edit: impl Fn(&str, candle_core::Tensor) -> candle_core::Tensor,
) -> Vec<u8> {
    let (cfg, _) = train_config().unwrap();
    let model = rdbench_lm::Gpt::new(cfg, seed).unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.safetensors");
    let tensors: BTreeMap<String, candle_core::Tensor> = model
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let v = edit(&k, v);
            (k, v)
        })
        .collect();
    rdbench_lm::save_tensors(&tensors, &p).unwrap();
    std::fs::read(p).unwrap()
}

fn weights(seed: u64, scale: f32) -> Vec<u8> {
    weights_edited(seed, |_, v| (v * scale as f64).unwrap())
}

#[test]
fn the_check_takes_the_reference_and_refuses_others() {
    let check = |got: Vec<u8>| {
        let expected = [(WEIGHTS.to_string(), weights(1, 1.0))].into();
        let got = [(WEIGHTS.to_string(), got)].into();
        OptimizeTrain.check("tiny", 5, &expected, &got).unwrap()
    };
    assert!(matches!(check(weights(1, 1.0)), Verdict::Valid { .. }));
    // The key biases do not change what the model computes (softmax cancels them), so weights
    // far from the reference's there, as AdamW's noise leaves them, are the same function.
    let (cfg, _) = train_config().unwrap();
    let key_biases_moved = weights_edited(1, |name, v| {
        if !name.ends_with("attn.qkv.bias") {
            return v;
        }
        let d = cfg.d_model;
        let shift: Vec<f32> = (0..3 * d)
            .map(|i| if (d..2 * d).contains(&i) { 0.5 } else { 0.0 })
            .collect();
        let shift = candle_core::Tensor::new(shift, v.device()).unwrap();
        (v + shift).unwrap()
    });
    match check(key_biases_moved) {
        Verdict::Valid { details, .. } => {
            assert!(details["kl"].as_f64().unwrap() < 1e-9, "{details}");
            assert!(details["distance"].as_f64().unwrap() > 1.0, "{details}");
        }
        v => panic!("{v:?}"),
    }
    // Perturbing a few weights of an untrained model, or another initialization.
    for other in [weights(1, 1.01), weights(2, 1.0)] {
        match check(other) {
            Verdict::Invalid { kind, reason, .. } => {
                assert_eq!(kind, InvalidKind::WrongOutput);
                assert!(reason.contains("KL divergence"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
    }
    match check(b"not weights".to_vec()) {
        Verdict::Invalid { kind, .. } => assert_eq!(kind, InvalidKind::BadArtifact),
        v => panic!("{v:?}"),
    }
}
