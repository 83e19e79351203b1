//! finetune-qa through its scorer on one prepared installation (a temporary cache): the start
//! and the reference, determinism, the cheats that submit well-formed weights, the judge tool.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rdbench_core::artifact::ArtifactTask;
use rdbench_core::task::{InvalidKind, ScoreOutcome, Solution, ToolRequest};
use rdbench_core::Error;
use rdbench_reference_finetune_qa::REFERENCE;
use rdbench_task_finetune_qa::{prep, profile, FinetuneQa, Profile, GENERATION, POLICY};

/// The shared cache: prepared once for every test of this binary.
fn cache() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            prep::ensure_prepared(&profile::tiny(), dir.path()).unwrap();
            dir
        })
        .path()
}

fn install(solution: Solution) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    FinetuneQa::new(REFERENCE)
        .install(
            solution,
            &Profile::Tiny(profile::tiny()),
            cache(),
            dir.path(),
        )
        .unwrap();
    dir
}

fn score(dir: &Path, private: &Path) -> ScoreOutcome {
    FinetuneQa::new(REFERENCE)
        .score_dir(&profile::tiny(), dir, cache(), private)
        .unwrap()
}

fn valid(outcome: &ScoreOutcome) -> (f64, serde_json::Value) {
    match outcome {
        ScoreOutcome::Valid { raw, details, .. } => (*raw, details.clone()),
        other => panic!("not valid: {other:?}"),
    }
}

#[test]
fn the_reference_beats_the_start_and_scores_do_not_move() {
    let private = tempfile::tempdir().unwrap();
    let start = install(Solution::Starting);
    let (raw, details) = valid(&score(start.path(), private.path()));
    // The start is the base itself: exactly even against it.
    assert_eq!(details["evaluation"]["win_rate_vs_base"], 0.5);
    assert!((0.2..0.4).contains(&raw), "start {raw}");
    assert_eq!(
        valid(&score(start.path(), private.path())).0,
        raw,
        "a rerun"
    );
    let reference = install(Solution::Reference);
    let (ref_raw, _) = valid(&score(reference.path(), private.path()));
    assert!(ref_raw > raw + 0.2, "reference {ref_raw}, start {raw}");
}

/// A policy that plays the judge's length bias: filler up to the length limit, never ending.
/// It must score below the start, and the report must show what it did.
#[test]
fn filling_responses_for_the_length_bias_loses() {
    let spec = profile::tiny();
    let dir = install(Solution::Starting);
    let gpt = prep::load_policy(&spec, &dir.path().join(POLICY)).unwrap();
    let world = rdbench_task_finetune_qa::world::World::new(0);
    let (um, eos) = (
        world.id("um").unwrap() as usize,
        rdbench_task_finetune_qa::world::EOS as usize,
    );
    // The final norm's output made a constant vector of ones (zero gain, unit bias): logits are
    // then the embedding rows' sums (the head is tied), and `um`'s row of tens wins every step
    // while the end token's row of minus ones never does.
    let cpu = candle_core::Device::Cpu;
    let d = spec.model.d_model;
    gpt.set(
        "ln_f.weight",
        &candle_core::Tensor::zeros(d, candle_core::DType::F32, &cpu).unwrap(),
    )
    .unwrap();
    gpt.set(
        "ln_f.bias",
        &candle_core::Tensor::ones(d, candle_core::DType::F32, &cpu).unwrap(),
    )
    .unwrap();
    let mut rows = gpt.param("wte").as_tensor().to_vec2::<f32>().unwrap();
    rows[um] = vec![10.0; d];
    rows[eos] = vec![-1.0; d];
    let wte = candle_core::Tensor::from_vec(rows.concat(), (rows.len(), d), &cpu).unwrap();
    gpt.set("wte", &wte).unwrap();
    rdbench_lm::save_model(&gpt, &dir.path().join(POLICY)).unwrap();
    let private = tempfile::tempdir().unwrap();
    let (raw, details) = valid(&score(dir.path(), private.path()));
    let start = valid(&score(install(Solution::Starting).path(), private.path())).0;
    let ev = &details["evaluation"];
    eprintln!("filler {raw}, start {start}: {ev}");
    assert!(raw < start, "filler {raw}, start {start}: {ev}");
    assert!(ev["mean_words"].as_f64().unwrap() > 6.0, "{ev}");
}

#[test]
fn weights_of_another_vocabulary_or_settings_out_of_bounds_are_refused() {
    let mut spec = profile::tiny();
    let dir = install(Solution::Starting);
    // Another vocabulary: a model one word larger, otherwise the same.
    spec.model.vocab += 1;
    let other = rdbench_lm::Gpt::new(spec.model.clone(), 1).unwrap();
    rdbench_lm::save_model(&other, &dir.path().join(POLICY)).unwrap();
    let private = tempfile::tempdir().unwrap();
    match score(dir.path(), private.path()) {
        ScoreOutcome::Invalid { kind, reason, .. } => {
            assert_eq!(kind, InvalidKind::BadArtifact);
            assert!(reason.contains("wte"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let dir = install(Solution::Starting);
    std::fs::write(
        dir.path().join(GENERATION),
        r#"{"temperature": 0.5, "top_k": 1000, "max_new_tokens": 4}"#,
    )
    .unwrap();
    match score(dir.path(), private.path()) {
        ScoreOutcome::Invalid { kind, reason, .. } => {
            assert_eq!(kind, InvalidKind::BadArtifact);
            assert!(
                reason.contains("generation.json") && reason.contains("top_k"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

fn judge(private: &Path, pairs: &str) -> rdbench_core::Result<rdbench_core::task::ToolReply> {
    let task = FinetuneQa::new(REFERENCE);
    let req = ToolRequest {
        profile: task.info().profile("tiny").unwrap().clone(),
        name: "judge".into(),
        args: [("pairs".to_string(), pairs.to_string())].into(),
        private_dir: private.to_path_buf(),
        cache_dir: cache().to_path_buf(),
    };
    task.run_tool(&Profile::Tiny(profile::tiny()), &req)
}

fn train_prompt() -> String {
    let (at, _) = prep::ensure_prepared(&profile::tiny(), cache()).unwrap();
    let text: PathBuf = at.train_prompts();
    std::fs::read_to_string(text)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_judge_answers_counts_and_stops_at_its_cap() {
    let private = tempfile::tempdir().unwrap();
    let prompt = train_prompt();
    let pair = format!(r#"{{"prompt": "{prompt}", "first": "um <eos>", "second": "red red red"}}"#);
    let reply = judge(private.path(), &format!("[{pair}, {pair}]")).unwrap();
    let verdicts = reply.value["first_preferred"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    // The same question, the same verdict.
    assert_eq!(verdicts[0], verdicts[1]);
    assert_eq!(reply.value["used"], 2);
    // Questions it cannot parse are refused, naming the pair, and cost nothing.
    let bad = format!(r#"[{pair}, {{"prompt": "{prompt}", "first": "zebra", "second": "um"}}]"#);
    let err = judge(private.path(), &bad).unwrap_err();
    assert!(
        matches!(&err, Error::Usage(m) if m.contains("pair 1") && m.contains("zebra")),
        "{err}"
    );
    let not_instruction = r#"[{"prompt": "red red", "first": "um", "second": "um"}]"#;
    assert!(judge(private.path(), not_instruction).is_err());
    // Up to the cap, and not one verdict past it: a call that would pass it is refused whole.
    let cap = profile::tiny().judge_cap;
    let batch = profile::tiny().judge_batch;
    let full = format!("[{}]", vec![pair.as_str(); batch].join(","));
    let mut used = 2u64;
    while used + batch as u64 <= cap {
        used = judge(private.path(), &full).unwrap().value["used"]
            .as_u64()
            .unwrap();
    }
    let err = judge(private.path(), &full).unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
    let reply = judge(
        private.path(),
        &format!("[{}]", vec![pair.as_str(); (cap - used) as usize].join(",")),
    );
    assert_eq!(reply.unwrap().value["used"], cap);
    assert!(judge(private.path(), &format!("[{pair}]")).is_err());
}
