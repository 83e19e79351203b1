//! Cheap checks of the task's description, secrets and corruption.

use rdbench_core::task::Task;
use rdbench_lm::Gpt;
use rdbench_task_fix_embedding::{instructions, prep, profile, FixEmbedding};

#[test]
fn info_and_instructions_are_complete() {
    let task = FixEmbedding::default();
    let info = task.info();
    assert_eq!(info.name, "fix-embedding");
    assert!(info.hardware_independent);
    assert_eq!(info.submission_files, vec!["fixed_model.safetensors".to_string()]);
    for p in ["tiny", "full"] {
        assert!(info.profile(p).is_ok());
        let text = instructions(&task.spec(p).unwrap());
        assert!(!text.contains("{{"), "unfilled placeholder in {p} instructions");
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
    let (t, f) = (profile::tiny(), profile::full());
    assert_ne!(prep::heldout_seed(s1, &t), prep::heldout_seed(s1, &f));
    // Held-out data never comes from a public seed.
    for spec in [t, f] {
        let h = prep::heldout_seed(s1, &spec);
        assert!(![spec.train_corpus_seed, spec.private_corpus_seed].contains(&h));
    }
}

#[test]
fn corruption_permutes_whole_rows() {
    let spec = profile::tiny();
    let m = Gpt::new(spec.model.clone(), 3).unwrap();
    let c = prep::corrupt(&m, spec.permutation_seed).unwrap();
    let rows = |g: &Gpt| -> Vec<Vec<u32>> {
        let v = g.param("wte").as_tensor().to_vec2::<f32>().unwrap();
        v.into_iter().map(|r| r.into_iter().map(f32::to_bits).collect()).collect()
    };
    let (a, b) = (rows(&m), rows(&c));
    assert_ne!(a, b);
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb, "the corrupted rows are not a permutation of the original rows");
    let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(moved > a.len() * 9 / 10, "only {moved} rows moved");
    // Nothing else changed.
    for (k, v) in m.tensors() {
        if k != "wte" {
            let d = (v - &c.tensors()[&k]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(d, 0.0, "{k} changed");
        }
    }
}
