//! Cheap checks of the task's description, secrets and corruption.

use rdbench_core::task::Task;
use rdbench_lm::{ops::max_abs_diff, Gpt};
use rdbench_task_fix_embedding::instance::{Instance, Secret};
use rdbench_task_fix_embedding::{instructions, prep, profile};

#[test]
fn info_and_instructions_are_complete() {
    let task = rdbench_task_fix_embedding::task();
    let info = task.info();
    assert_eq!(info.name, "fix-embedding");
    assert!(info.hardware_independent);
    assert_eq!(
        info.submission_names(),
        vec!["fixed_model.safetensors".to_string()]
    );
    // The limit admits the full model and little more.
    let full = task.profile("full").unwrap().model.data_bytes();
    let limit = info.submission_files[0].max_bytes;
    assert!(
        limit > full && limit < full + (2 << 20),
        "{limit} vs {full}"
    );
    for p in ["tiny", "full"] {
        assert!(info.profile(p).is_ok());
        let text = instructions(&task.profile(p).unwrap()).unwrap();
        assert!(
            !text.contains("{{"),
            "unfilled placeholder in {p} instructions"
        );
        assert!(text.contains("rdbench score") && text.contains("fixed_model.safetensors"));
        assert!(text.contains("cheating"));
    }
}

#[test]
fn the_secret_is_made_once_differs_between_installations_and_is_never_remade() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let s1 = Secret::load_or_create(a.path()).unwrap();
    assert_eq!(Secret::load_or_create(a.path()).unwrap(), s1);
    assert_ne!(Secret::load_or_create(b.path()).unwrap(), s1);
    let path = Secret::path(b.path());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim().len(), 64, "256 bits as hex: {text:?}");
    assert!(!format!("{s1:?}").contains(
        std::fs::read_to_string(Secret::path(a.path()))
            .unwrap()
            .trim()
    ));
    // A damaged secret is an environment error naming the file, never silently replaced: the
    // old 64-bit format, a truncated file, non-hex text.
    let not_hex = "z".repeat(64);
    for damaged in ["0123456789abcdef\n", &text[..40], &not_hex] {
        std::fs::write(&path, damaged).unwrap();
        match Secret::load_or_create(b.path()) {
            Err(rdbench_core::Error::Environment(m)) => {
                assert!(m.contains(&path.display().to_string()), "{m}")
            }
            other => panic!("{damaged:?}: {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
    }
}

/// HMAC-SHA256 over the documented label, checked against Python's `hmac` module: a change to
/// the derivation would silently give every installation a new instance.
#[test]
fn seeds_derive_by_hmac_sha256_of_the_documented_label() {
    let zero = Secret::from_bytes([0; 32]);
    assert_eq!(zero.derive("tiny", "permutation"), 0x67e1_9f15_c0b4_e3ec);
    let mut bytes = [0u8; 32];
    bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    assert_eq!(
        Secret::from_bytes(bytes).derive("full", "hmm-structure"),
        0xbcac_abb4_85e1_a91a
    );
}

/// Every hidden parameter is its own draw, per profile and per secret, and none is one of the
/// seeds the public profiles used to carry.
#[test]
fn every_hidden_parameter_is_an_independent_secret_draw() {
    let old_public = [
        0x7155_0001u64,
        0x7155_0002,
        0x7155_0003,
        0x7155_0004,
        0x7155_0005,
        0x7155_0006,
        0x7155_0007,
        0x7155_0008,
        0xf011_0001,
        0xf011_0002,
        0xf011_0003,
        0xf011_0004,
        0xf011_0005,
        0xf011_0006,
        0xf011_0007,
        0xf011_0008,
    ];
    let seeds = |i: &Instance| {
        vec![
            i.hmm.structure_seed,
            i.private_corpus_seed,
            i.train_corpus_seed,
            i.heldout_seed,
            i.model_init_seed,
            i.model_train_seed,
            i.small_init_seed,
            i.small_train_seed,
            i.permutation_seed,
        ]
    };
    let (s1, s2) = (Secret::from_bytes([1; 32]), Secret::from_bytes([2; 32]));
    let mut all = vec![];
    let mut ids = vec![];
    for secret in [&s1, &s2] {
        for spec in [profile::tiny(), profile::full()] {
            let inst = Instance::derive(&spec, secret);
            assert_eq!(inst, Instance::derive(&spec, secret), "not deterministic");
            assert_eq!(
                inst.hmm,
                spec.hmm.with_structure_seed(inst.hmm.structure_seed)
            );
            ids.push(inst.id());
            all.extend(seeds(&inst));
        }
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "two parameters share a seed");
    assert!(all.iter().all(|s| !old_public.contains(s)));
    ids.dedup();
    assert_eq!(ids.len(), 4);
    // The id changes with any parameter, so a hand-made instance never reuses another's files.
    let inst = Instance::derive(&profile::tiny(), &s1);
    let other = Instance {
        permutation_seed: inst.permutation_seed ^ 1,
        ..inst.clone()
    };
    assert_ne!(inst.id(), other.id());
}

/// Each cached product is keyed by what it depends on: retuning the attempt's corpus or the
/// reference never retrains the models (half an hour for `full`), a change to the models'
/// training does retrain them, and another instance never shares a folder.
#[test]
fn cache_keys_follow_dependencies() {
    let base = profile::full();
    let keys = |s: &profile::Spec| (s.models_key(), s.attempt_key());
    let (m0, a0) = keys(&base);

    let mut s = base.clone();
    s.train_corpus_seqs /= 2;
    s.reference.finetune.steps += 1;
    s.eval_batch += 1;
    s.threads = Some(1);
    s.heldout_seqs += 1;
    let (m, a) = keys(&s);
    assert_eq!(m, m0);
    assert_ne!(a, a0);

    let mut s = base.clone();
    s.model_train.lr *= 2.0;
    let (m, a) = keys(&s);
    assert_ne!(m, m0);
    assert_eq!(a, a0);

    let mut s = base.clone();
    s.hmm.successors += 1;
    assert_ne!(s.models_key(), m0);
    assert_ne!(profile::tiny().models_key(), m0);

    let cache = std::path::Path::new("/cache");
    let i1 = Instance::derive(&base, &Secret::from_bytes([1; 32]));
    let i2 = Instance::derive(&base, &Secret::from_bytes([2; 32]));
    let (p1, p2) = (
        prep::Prepared::locate(cache, &base, &i1),
        prep::Prepared::locate(cache, &base, &i2),
    );
    assert_ne!(p1.models, p2.models);
    assert!(p1.attempt.starts_with(&p1.models));
}

#[test]
fn corruption_permutes_whole_rows_and_only_its_seed_undoes_it() {
    let spec = profile::tiny();
    let m = Gpt::new(spec.model.clone(), 3).unwrap();
    let seed = Instance::derive(&spec, &Secret::from_bytes([3; 32])).permutation_seed;
    let c = prep::corrupt(&m, seed).unwrap();
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
    // The seed undoes it bit for bit; another seed (such as a formerly public one) does not.
    assert_eq!(rows(&prep::uncorrupt(&c, seed).unwrap()), a);
    let wrong = rows(&prep::uncorrupt(&c, 0x7155_0008).unwrap());
    let right = a.iter().zip(&wrong).filter(|(x, y)| x == y).count();
    assert!(
        right < a.len() / 10,
        "{right} rows restored by a wrong seed"
    );
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
    let short = profile::Schedule {
        steps: 5,
        batch_size: 4,
        warmup_steps: 1,
        ..s.model_train.clone()
    };
    s.model_train = short.clone();
    s.small_train = short.clone();
    s.reference.adapter = short.with_seed(s.reference.adapter.seed);
    s.reference.finetune = short.with_seed(s.reference.finetune.seed);
    s
}

/// The regression test of cheat (c) and its converse: the same secret prepares bit-identical
/// files (a copy of the secret is a copy of the instance), another secret other files.
#[test]
fn concurrent_preparations_train_once_and_only_the_same_secret_agrees() {
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
    let inst = Instance::load(&spec, cache.path()).unwrap();
    let at = prep::Prepared::locate(cache.path(), &spec, &inst);
    // Only finished files are left (no temporary files).
    for dir in [&at.models, &at.attempt] {
        let names = rdbench_core::conformance::names_in(dir).unwrap();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }
    let files = |at: &prep::Prepared| {
        [
            at.train_tokens(),
            at.original(),
            at.small(),
            at.corrupted(),
            at.reference(),
        ]
        .map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    };
    let mine = files(&at);

    let copy = tempfile::tempdir().unwrap();
    let secret = Secret::path(copy.path());
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::copy(Secret::path(cache.path()), &secret).unwrap();
    prep::ensure_reference(&spec, copy.path()).unwrap();
    let same = prep::Prepared::locate(copy.path(), &spec, &inst);
    assert_eq!(same.models.file_name(), at.models.file_name());
    for (k, (a, b)) in mine.iter().zip(files(&same)).enumerate() {
        assert!(a == &b, "file {k} differs under the same secret");
    }

    let other = tempfile::tempdir().unwrap();
    prep::ensure_reference(&spec, other.path()).unwrap();
    let theirs = Instance::load(&spec, other.path()).unwrap();
    let oat = prep::Prepared::locate(other.path(), &spec, &theirs);
    assert_ne!(oat.models.file_name(), at.models.file_name());
    for (k, (a, b)) in mine.iter().zip(files(&oat)).enumerate() {
        assert!(a != &b, "file {k} is the same under another secret");
    }
}
