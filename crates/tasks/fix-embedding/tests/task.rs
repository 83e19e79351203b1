//! Cheap checks of the task's description, secrets and corruption.

use rdbench_core::task::Task;
use rdbench_lm::{model::max_abs_diff, Gpt};
use rdbench_task_fix_embedding::{instructions, prep, profile, FixEmbedding};

#[test]
fn info_and_instructions_are_complete() {
    let task = FixEmbedding::default();
    let info = task.info();
    assert_eq!(info.name, "fix-embedding");
    assert!(info.hardware_independent);
    assert_eq!(
        info.submission_files,
        vec!["fixed_model.safetensors".to_string()]
    );
    for p in ["tiny", "full"] {
        assert!(info.profile(p).is_ok());
        let text = instructions(&task.spec(p).unwrap());
        assert!(
            !text.contains("{{"),
            "unfilled placeholder in {p} instructions"
        );
        assert!(text.contains("rdbench score") && text.contains("fixed_model.safetensors"));
        assert!(text.contains("cheating"));
    }
}

#[test]
fn heldout_secret_is_made_once_and_differs_between_installations() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let s1 = prep::heldout_secret(a.path()).unwrap();
    assert_eq!(prep::heldout_secret(a.path()).unwrap(), s1);
    assert_ne!(prep::heldout_secret(b.path()).unwrap(), s1);
    // A damaged secret is an environment error, never silently replaced.
    std::fs::write(b.path().join("fix-embedding/heldout.secret"), "not hex").unwrap();
    assert!(matches!(
        prep::heldout_secret(b.path()),
        Err(rdbench_core::Error::Environment(_))
    ));
    let (t, f) = (profile::tiny(), profile::full());
    assert_ne!(prep::heldout_seed(s1, &t), prep::heldout_seed(s1, &f));
    // Held-out data never comes from a public seed.
    for spec in [t, f] {
        let h = prep::heldout_seed(s1, &spec);
        assert!(![spec.train_corpus_seed, spec.private_corpus_seed].contains(&h));
    }
}

/// Each cached product is keyed by what it depends on: retuning the attempt's corpus or the
/// reference never retrains the models (hours for `full`) or moves the held-out split, and a
/// change to the models' training does retrain them.
#[test]
fn cache_keys_follow_dependencies() {
    let base = profile::full();
    let keys = |s: &profile::Spec| (s.models_key(), s.attempt_key(), s.heldout_key());
    let (m0, a0, h0) = keys(&base);

    let mut s = base.clone();
    s.train_corpus_seqs /= 2;
    s.reference.finetune.steps += 1;
    s.eval_batch += 1;
    s.threads = Some(1);
    let (m, a, h) = keys(&s);
    assert_eq!((&m, &h), (&m0, &h0));
    assert_ne!(a, a0);

    let mut s = base.clone();
    s.model_train.lr *= 2.0;
    let (m, a, h) = keys(&s);
    assert_ne!(m, m0);
    assert_eq!((&a, &h), (&a0, &h0));

    let mut s = base.clone();
    s.heldout_seqs += 1;
    let (m, a, h) = keys(&s);
    assert_eq!((&m, &a), (&m0, &a0));
    assert_ne!(h, h0);
    assert_ne!(profile::tiny().models_key(), m0);
}

#[test]
fn corruption_permutes_whole_rows() {
    let spec = profile::tiny();
    let m = Gpt::new(spec.model.clone(), 3).unwrap();
    let c = prep::corrupt(&m, spec.permutation_seed).unwrap();
    let rows = |g: &Gpt| -> Vec<Vec<u32>> {
        let v = g.param("wte").as_tensor().to_vec2::<f32>().unwrap();
        v.into_iter()
            .map(|r| r.into_iter().map(f32::to_bits).collect())
            .collect()
    };
    let (a, b) = (rows(&m), rows(&c));
    assert_ne!(a, b);
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    assert_eq!(
        sa, sb,
        "the corrupted rows are not a permutation of the original rows"
    );
    let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(moved > a.len() * 9 / 10, "only {moved} rows moved");
    // Nothing else changed.
    for (k, v) in m.tensors() {
        if k != "wte" {
            let d = max_abs_diff(&v, &c.tensors()[&k]).unwrap();
            assert_eq!(d, 0.0, "{k} changed");
        }
    }
}

/// A spec small enough to prepare in well under a second.
fn micro() -> profile::Spec {
    let mut s = profile::tiny();
    s.name = "micro".into();
    s.hmm.states = 4;
    s.hmm.vocab = 16;
    for m in [&mut s.model, &mut s.small] {
        m.vocab = 16;
        m.ctx = 8;
    }
    s.model.d_model = 16;
    s.model.d_ff = 32;
    s.model.n_layer = 1;
    s.small.d_model = 8;
    s.private_corpus_seqs = 64;
    s.train_corpus_seqs = 32;
    s.heldout_seqs = 16;
    for t in [
        &mut s.model_train,
        &mut s.small_train,
        &mut s.reference.adapter,
        &mut s.reference.finetune,
    ] {
        t.steps = 5;
        t.batch_size = 4;
        t.warmup_steps = 1;
    }
    s
}

#[test]
fn concurrent_preparations_train_once_and_agree() {
    let cache = tempfile::tempdir().unwrap();
    let spec = micro();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (spec, cache) = (spec.clone(), cache.path().to_path_buf());
            std::thread::spawn(move || prep::ensure_reference(&spec, &cache).unwrap())
        })
        .collect();
    let paths: Vec<_> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(paths.iter().all(|p| p == &paths[0]));
    let at = prep::Prepared::locate(cache.path(), &spec);
    // Only finished files are left (no temporary files), and a second cache prepares the same bytes.
    for dir in [&at.models, &at.attempt] {
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }
    let other = tempfile::tempdir().unwrap();
    prep::ensure_reference(&spec, other.path()).unwrap();
    let oat = prep::Prepared::locate(other.path(), &spec);
    for (a, b) in [
        (at.train_tokens(), oat.train_tokens()),
        (at.original(), oat.original()),
        (at.small(), oat.small()),
        (at.corrupted(), oat.corrupted()),
        (at.reference(), oat.reference()),
    ] {
        let f = a.display();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{f} differs"
        );
    }
}
