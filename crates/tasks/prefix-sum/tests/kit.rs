//! prefix-sum through the kit's real scoring routine, one body per device: on the CPU emulator
//! always (correctness of every shipped solution at the emulator sizes, never a score), and on
//! the GPU where there is one (the tiny profile, timed and validated).

use rdbench_core::task::{Backend, ScoreOutcome, ScoreRequest};
use rdbench_gpu::backend::KernelBackend;
use rdbench_gpu::bench::{score, BenchRequest, StoppingRule};
use rdbench_gpu::kernel_task::{write_solution, KernelTask, KernelTaskAdapter};
use rdbench_task_prefix_sum::{PrefixSum, FASTEST, REFERENCE, STARTING};

fn shipped_solutions_are_correct<B: KernelBackend>(dev: &B) {
    let adapter = KernelTaskAdapter::new(PrefixSum);
    let profile = adapter.profile("tiny").unwrap();
    let backend = dev.info().backend;
    let work = tempfile::tempdir().unwrap();
    for (name, files) in [
        ("start", STARTING),
        ("reference", REFERENCE),
        ("fastest", FASTEST),
    ] {
        let dir = work.path().join(name);
        write_solution(&files, &dir).unwrap();
        let req = ScoreRequest {
            profile: "tiny".into(),
            submission_dir: dir.clone(),
            private_dir: work.path().join("private"),
            cache_dir: work.path().join("cache"),
            samples_path: work.path().join(format!("{name}-samples.json")),
            seed: 0x5eed,
            backend,
        };
        let br = BenchRequest {
            req: &req,
            cases: adapter.cases(&profile, backend),
            rule: StoppingRule {
                max_time_s: 3.0,
                ..StoppingRule::default()
            },
        };
        let outcome = score(dev, &PrefixSum, &br).unwrap();
        match (backend, &outcome) {
            (Backend::Emulator, ScoreOutcome::Unscored { details, .. }) => {
                let cases = details["correctness_cases"].as_u64().unwrap() as usize;
                assert_eq!(
                    cases,
                    profile.emulator_cases.len() * PrefixSum.distributions().len()
                );
            }
            (Backend::Cuda, ScoreOutcome::Valid { raw, details, .. }) => {
                assert!(raw.is_finite(), "{name}: {details}");
                assert!(req.samples_path.is_file(), "{name}: samples saved");
                assert!(
                    details["share_of_speed_of_light"].as_f64().unwrap() <= 1.0,
                    "{details}"
                );
            }
            (_, other) => panic!("{name} on {backend:?}: {other:?}"),
        }
    }
}

rdbench_gpu::backend_test!(
    every_shipped_solution_is_correct,
    shipped_solutions_are_correct
);
