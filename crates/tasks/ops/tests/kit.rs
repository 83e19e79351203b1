//! The ops family through the kit's real scoring routine, one body per device: on the CPU
//! emulator always (correctness of every shipped solution of every op at the emulator sizes,
//! never a score), and on the GPU where there is one (the tiny profile, timed and validated).

use rdbench_gpu::backend::KernelBackend;
use rdbench_gpu::testing::assert_shipped_solutions_correct;
use rdbench_task_ops::{attention, gemm, matmul, norm, softmax};

fn shipped_solutions_are_correct<B: KernelBackend>(dev: &B) {
    assert_shipped_solutions_correct(dev, softmax::Softmax);
    assert_shipped_solutions_correct(dev, matmul::task());
    assert_shipped_solutions_correct(dev, norm::Norm::Rms);
    assert_shipped_solutions_correct(dev, norm::Norm::Layer);
    assert_shipped_solutions_correct(dev, gemm::task());
    assert_shipped_solutions_correct(dev, attention::Attention);
}

rdbench_gpu::backend_test!(
    every_shipped_solution_is_correct,
    shipped_solutions_are_correct
);

/// The timed half of the routine with several timed sizes, on the emulator with a wall-clock
/// timer (CPU times: this checks the routine's bookkeeping, not any kernel's speed): each size
/// is timed on its own, the raw score is ln of the geometric mean of their medians, the
/// details carry every size, and the samples file holds each size's samples.
#[test]
fn several_timed_sizes_are_each_timed_and_combined() {
    use rdbench_core::task::{profile_of, Execution, ScoreOutcome, ScoreRequest};
    use rdbench_gpu::bench::{samples::SavedSamples, score, StoppingRule};
    use rdbench_gpu::kernel_task::{write_solution, KernelTask, KernelTaskAdapter};

    let Some(dev) = rdbench_gpu::testing::emu_or_skip("several_timed_sizes")
        .and_then(|_| rdbench_gpu::backend::emu::EmuBackend::with_wall_clock().ok())
    else {
        return;
    };
    let adapter = KernelTaskAdapter::new(softmax::Softmax);
    let profile = adapter.profile("tiny").unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("start");
    write_solution(&softmax::Softmax.sources().solutions.start, &dir).unwrap();
    let req = ScoreRequest {
        profile: profile_of(&adapter, "tiny").unwrap(),
        submission_dir: dir,
        private_dir: work.path().join("private"),
        cache_dir: work.path().join("cache"),
        samples_path: work.path().join("samples.json"),
        seed: 0x5eed,
        execution: Execution::Emulated,
    };
    let mut br = adapter.bench_request(
        &req,
        &profile,
        StoppingRule {
            warmup_s: 0.0,
            min_samples: 4,
            max_rel_noise: 1.0,
            min_time_s: 0.0,
            max_time_s: 5.0,
        },
    );
    // Two emulator sizes, not in the order of the cases: the order of `timed` is kept.
    let n = br.cases.len();
    br.timed = vec![br.cases[n - 1].clone(), br.cases[n - 3].clone()];
    let ScoreOutcome::Valid {
        raw,
        headline,
        details,
    } = score(&dev, &softmax::Softmax, &br).unwrap()
    else {
        panic!("the start is correct and the wall clock times it");
    };
    let shapes = details["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 2, "{details}");
    let medians: Vec<f64> = shapes
        .iter()
        .map(|s| s["median_ms"].as_f64().unwrap())
        .collect();
    for (shape, want) in shapes.iter().zip(&br.timed) {
        assert_eq!(shape["vars"], serde_json::to_value(want).unwrap());
        assert!(shape["samples"].as_u64().unwrap() >= 4, "{shape}");
        assert!(shape["warmup_runs"].as_u64().unwrap() >= 2, "{shape}");
    }
    let geo = (medians[0].ln() + medians[1].ln()) / 2.0;
    assert!((raw - geo).abs() < 1e-12, "raw {raw}, medians {medians:?}");
    assert!((details["median_ms"].as_f64().unwrap() - geo.exp()).abs() < 1e-9);
    assert!(headline.contains("over 2 sizes"), "{headline}");
    let saved = SavedSamples::read(&req.samples_path).unwrap();
    assert_eq!(saved.shapes.len(), 2);
    for (s, m) in saved.shapes.iter().zip(&medians) {
        assert_eq!(s.stats.median_ms, *m);
        assert!(s.samples.iter().all(|x| x.kept && x.ms > 0.0));
    }
}
