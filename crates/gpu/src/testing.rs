//! Test support, candle's way: one test body per device. [`backend_test!`](crate::backend_test)
//! turns `fn body<B: KernelBackend>(dev: &B)` into `<name>_emu`, run on the CPU emulator
//! always, and `<name>_cuda`, run on the GPU where there is one. With `RDBENCH_REQUIRE_GPU=1`
//! (as `scripts/gpu-check.sh` sets it) a missing GPU fails the CUDA variant instead of
//! skipping it, so a green run on a GPU machine cannot hide a skipped GPU test.

use rdbench_core::task::{profile_of, ScoreOutcome, ScoreRequest};

use crate::backend::cuda::CudaBackend;
use crate::backend::emu::EmuBackend;
use crate::backend::{BackendKind, KernelBackend};
use crate::bench::{score, StoppingRule};
use crate::kernel_task::{write_solution, KernelTask, KernelTaskAdapter};

/// Whether GPU tests must run (`RDBENCH_REQUIRE_GPU=1`).
pub fn gpu_required() -> bool {
    std::env::var("RDBENCH_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU, or `None` with a message; panics instead when a GPU is required.
pub fn cuda_or_skip(test: &str) -> Option<CudaBackend> {
    match CudaBackend::open(0) {
        Ok(dev) => Some(dev),
        Err(e) if gpu_required() => panic!("{test}: RDBENCH_REQUIRE_GPU=1 but no GPU: {e}"),
        Err(e) => {
            eprintln!("skipped {test} on CUDA: {e}");
            None
        }
    }
}

/// The emulator, or `None` with a message when there is no host C++ compiler (CI has one).
pub fn emu_or_skip(test: &str) -> Option<EmuBackend> {
    match EmuBackend::new() {
        Ok(dev) => Some(dev),
        Err(e) if std::env::var_os("CI").is_some() => panic!("{test}: {e}"),
        Err(e) => {
            eprintln!("skipped {test} on the emulator: {e}");
            None
        }
    }
}

/// Scores every shipped solution of `task` (start, reference, fastest) at its tiny profile
/// through the kit's real routine on `dev`, and asserts what that backend can show: on the
/// emulator, correct on every correctness case (never a score); on a GPU, a finite raw score,
/// saved samples and a share of speed of light of at most 1.
pub fn assert_shipped_solutions_correct<B: KernelBackend, T: KernelTask + Clone>(dev: &B, task: T) {
    let adapter = KernelTaskAdapter::new(task.clone());
    let profile = adapter
        .profile("tiny")
        .expect("every task has a tiny profile");
    let backend = dev.info().backend;
    let name = task.info().name;
    let work = tempfile::tempdir().expect("a temporary folder");
    let s = task.sources().solutions;
    let solutions = [
        ("start", Some(s.start)),
        ("reference", Some(s.reference)),
        ("fastest", s.fastest),
    ];
    for (which, files) in solutions.into_iter().filter_map(|(w, f)| f.map(|f| (w, f))) {
        let dir = work.path().join(which);
        write_solution(&files, &dir).expect("solution written");
        let req = ScoreRequest {
            profile: profile_of(&adapter, "tiny").expect("every task has a tiny profile"),
            submission_dir: dir,
            private_dir: work.path().join("private"),
            cache_dir: work.path().join("cache"),
            samples_path: work.path().join(format!("{which}-samples.json")),
            seed: 0x5eed,
            execution: backend.execution(),
        };
        let rule = StoppingRule {
            max_time_s: 3.0,
            ..StoppingRule::default()
        };
        let br = adapter.bench_request(&req, &profile, rule);
        match (backend, score(dev, &task, &br).expect("scoring runs")) {
            (BackendKind::Emulator, ScoreOutcome::Unscored { details, .. }) => {
                let cases = details["correctness_cases"].as_u64().unwrap_or(0) as usize;
                assert_eq!(
                    cases,
                    profile.emulator_cases.len() * task.distributions().len(),
                    "{name} {which}"
                );
            }
            (BackendKind::Cuda, ScoreOutcome::Valid { raw, details, .. }) => {
                assert!(raw.is_finite(), "{name} {which}: {details}");
                assert!(req.samples_path.is_file(), "{name} {which}: samples saved");
                let shapes = details["shapes"].as_array().expect("per-size details");
                assert_eq!(shapes.len(), profile.timed.len(), "{name} {which}");
                // What calibration and the score's report read: the kit's details as core's
                // typed timing.
                let timing = rdbench_core::outcome::Timing::of(&details);
                assert!(
                    timing.median_ms.is_some_and(|ms| ms > 0.0),
                    "{name} {which}"
                );
                assert_eq!(timing.shapes.len(), profile.timed.len(), "{name} {which}");
                for shape in shapes {
                    let share = shape["share_of_speed_of_light"].as_f64().unwrap_or(0.0);
                    assert!(share <= 1.0, "{name} {which}: {details}");
                }
            }
            (_, other) => panic!("{name} {which} on {backend:?}: {other:?}"),
        }
    }
}

/// `backend_test!(name, body)`: `name_emu` and `name_cuda` running `body(&dev)`.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn emu() {
                if let Some(dev) = $crate::testing::emu_or_skip(concat!(stringify!($name), "_emu"))
                {
                    super::$body(&dev);
                }
            }
            #[test]
            fn cuda() {
                if let Some(dev) =
                    $crate::testing::cuda_or_skip(concat!(stringify!($name), "_cuda"))
                {
                    super::$body(&dev);
                }
            }
        }
    };
}
