//! Every kind of bad submission is an invalid entry with a reason naming the file; the scorer
//! never errors or panics on it. None of these needs a prepared cache: the model file is checked
//! before anything else is read.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rdbench_core::task::{profile_of, Execution, ScoreOutcome, ScoreRequest, Task};
use rdbench_lm::{io::save_tensors, Gpt};
use rdbench_task_fix_embedding::SUBMISSION;

fn request(dir: &Path) -> ScoreRequest {
    ScoreRequest {
        profile: profile_of(&rdbench_task_fix_embedding::task(), "tiny").unwrap(),
        submission_dir: dir.to_path_buf(),
        private_dir: dir.join("private"),
        cache_dir: dir.join("cache"),
        samples_path: dir.join("private/samples.json"),
        seed: 1,
        execution: Default::default(),
    }
}

/// Scores `dir` and returns the invalid reason (fails the test on a valid outcome or an error).
fn invalid_reason(task: &dyn rdbench_core::task::Task, dir: &Path) -> String {
    let req = request(dir);
    let pre = task.precheck(&req).expect("precheck must not error");
    let (kind, reason) = match task.score(&req).expect("score must not error") {
        ScoreOutcome::Invalid { kind, reason, .. } => (kind, reason),
        other => panic!("expected invalid, got {other:?}"),
    };
    assert_eq!(
        pre,
        Some((kind, reason.clone())),
        "precheck and score disagree"
    );
    assert!(
        reason.contains(SUBMISSION),
        "reason does not name the file: {reason}"
    );
    reason
}

#[test]
fn every_bad_submission_is_invalid_with_a_clear_reason() {
    let task = rdbench_task_fix_embedding::task();
    let cfg = task.profile("tiny").unwrap().model;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SUBMISSION);
    let good = Gpt::new(cfg.clone(), 1).unwrap().tensors();

    let r = invalid_reason(&task, dir.path());
    assert!(r.contains("not found"), "{r}");

    std::fs::write(&path, b"PK\x03\x04 a zip file, not safetensors").unwrap();
    let r = invalid_reason(&task, dir.path());
    assert!(r.contains("not a valid safetensors"), "{r}");

    let mut t = good.clone();
    let v = t.remove("blocks.0.attn.qkv.weight").unwrap();
    t.insert("blocks.0.attn.c_attn.weight".into(), v);
    save_tensors(&t, &path).unwrap();
    let r = invalid_reason(&task, dir.path());
    assert!(
        r.contains("missing tensors: blocks.0.attn.qkv.weight"),
        "{r}"
    );

    let mut t = good.clone();
    t.insert("lm_head.weight".into(), good["wte"].clone());
    save_tensors(&t, &path).unwrap();
    let r = invalid_reason(&task, dir.path());
    assert!(
        r.contains("unexpected tensors") && r.contains("lm_head.weight"),
        "{r}"
    );

    let mut t = good.clone();
    t.insert(
        "wte".into(),
        Tensor::zeros((cfg.vocab, cfg.d_model + 1), DType::F32, &Device::Cpu).unwrap(),
    );
    save_tensors(&t, &path).unwrap();
    let r = invalid_reason(&task, dir.path());
    assert!(r.contains("tensor wte has shape"), "{r}");

    let mut t = good.clone();
    t.insert("wpe".into(), good["wpe"].to_dtype(DType::BF16).unwrap());
    save_tensors(&t, &path).unwrap();
    let r = invalid_reason(&task, dir.path());
    assert!(r.contains("tensor wpe has dtype BF16"), "{r}");

    for bad in [f32::NAN, f32::NEG_INFINITY] {
        let mut t = good.clone();
        let mut v = good["ln_f.weight"].to_vec1::<f32>().unwrap();
        v[0] = bad;
        v[5] = bad;
        t.insert(
            "ln_f.weight".into(),
            Tensor::from_vec(v, cfg.d_model, &Device::Cpu).unwrap(),
        );
        save_tensors(&t, &path).unwrap();
        let r = invalid_reason(&task, dir.path());
        assert!(
            r.contains("ln_f.weight has 2 NaN or infinite values"),
            "{r}"
        );
    }

    // Many gigabytes (sparse, so the test is cheap): refused from the size alone.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(20 << 30).unwrap();
    drop(f);
    let t = std::time::Instant::now();
    let r = invalid_reason(&task, dir.path());
    assert!(r.contains("21474836480 bytes"), "{r}");
    assert!(t.elapsed().as_secs_f64() < 5.0);

    // A folder in place of the file.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let r = invalid_reason(&task, dir.path());
    assert!(r.contains("not a regular file"), "{r}");
}

#[test]
fn unknown_profiles_are_usage_errors() {
    let task = rdbench_task_fix_embedding::task();
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        profile_of(&task, "huge"),
        Err(rdbench_core::Error::Usage(_))
    ));
    // A record the task never listed (only a hand-made request could carry one) is refused
    // by the task too.
    let mut req = request(dir.path());
    req.profile.name = "huge".into();
    assert!(matches!(
        task.score(&req),
        Err(rdbench_core::Error::Usage(_))
    ));
    assert!(matches!(
        task.check_environment(&req.profile, Execution::Measured),
        Err(rdbench_core::Error::Usage(_))
    ));
    for name in ["tiny", "full"] {
        let profile = profile_of(&task, name).unwrap();
        assert!(task
            .check_environment(&profile, Execution::Measured)
            .is_ok());
    }
}
