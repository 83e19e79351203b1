//! The ops family through the kit's real scoring routine, one body per device: on the CPU
//! emulator always (correctness of every shipped solution of every op at the emulator sizes,
//! never a score), and on the GPU where there is one (the tiny profile, timed and validated).

use rdbench_core::task::{Backend, ScoreOutcome, ScoreRequest};
use rdbench_gpu::backend::KernelBackend;
use rdbench_gpu::bench::{score, BenchRequest, StoppingRule};
use rdbench_gpu::kernel_task::{write_solution, KernelFiles, KernelTask, KernelTaskAdapter};
use rdbench_task_ops::{matmul, softmax};

fn solutions_are_correct<B: KernelBackend, T: KernelTask + Clone>(
    dev: &B,
    task: T,
    solutions: [(&str, KernelFiles); 2],
) {
    let adapter = KernelTaskAdapter::new(task.clone());
    let profile = adapter.profile("tiny").unwrap();
    let backend = dev.info().backend;
    let work = tempfile::tempdir().unwrap();
    for (name, files) in solutions {
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
        let outcome = score(dev, &task, &br).unwrap();
        let task_name = task.info().name;
        match (backend, &outcome) {
            (Backend::Emulator, ScoreOutcome::Unscored { details, .. }) => {
                let cases = details["correctness_cases"].as_u64().unwrap() as usize;
                assert_eq!(
                    cases,
                    profile.emulator_cases.len() * task.distributions().len()
                );
            }
            (Backend::Cuda, ScoreOutcome::Valid { raw, details, .. }) => {
                assert!(raw.is_finite(), "{task_name} {name}: {details}");
                assert!(req.samples_path.is_file(), "{name}: samples saved");
                assert!(
                    details["share_of_speed_of_light"].as_f64().unwrap() <= 1.0,
                    "{details}"
                );
            }
            (_, other) => panic!("{task_name} {name} on {backend:?}: {other:?}"),
        }
    }
}

fn shipped_solutions_are_correct<B: KernelBackend>(dev: &B) {
    solutions_are_correct(
        dev,
        softmax::Softmax,
        [
            ("start", softmax::STARTING),
            ("reference", softmax::REFERENCE),
        ],
    );
    solutions_are_correct(
        dev,
        matmul::Matmul,
        [
            ("start", matmul::STARTING),
            ("reference", matmul::REFERENCE),
        ],
    );
}

rdbench_gpu::backend_test!(
    every_shipped_solution_is_correct,
    shipped_solutions_are_correct
);
