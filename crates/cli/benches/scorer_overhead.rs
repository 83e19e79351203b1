//! The scorer's own overhead, measured on the pieces that run on every `score` call besides
//! the kernel's timed samples:
//!
//! - `precheck/cold`: parse `launch.toml`, check signatures, resolve every correctness size,
//!   and compile `solution.cu` with NVRTC into an empty cache (the first score of a new source);
//! - `precheck/cached`: the same with the NVRTC result cached (a re-score of an unchanged file);
//! - `worker_round_trip`: start the `rdbench __worker` child, let it report on its reply
//!   descriptor, and read the reply back (process start, dynamic loading, exit);
//! - `monitor_start_stop`: the sampler thread with its timeline file (the /proc fallback here);
//! - `score_log_append`: one locked, fsynced JSONL append.
//!
//! On a GPU machine the worker also pays for context creation, module loading and the
//! correctness runs; `scripts/gpu-check.sh` reports those from real score calls (wall time
//! minus timed samples).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rdbench_core::home::Home;
use rdbench_core::score_log::{ScoreEntry, ScoreLog};
use rdbench_core::secret::InstallationKey;
use rdbench_core::task::{profile_of, ScoreRequest, Task};
use rdbench_gpu::kernel_task::{write_solution, KernelTaskAdapter};
use rdbench_task_prefix_sum::{PrefixSum, REFERENCE};

fn request(task: &dyn Task, dir: &Path, cache: &Path) -> ScoreRequest {
    ScoreRequest {
        profile: profile_of(task, "full").unwrap(),
        submission_dir: dir.into(),
        private_dir: dir.join("private"),
        cache_dir: cache.into(),
        samples_path: dir.join("samples.json"),
        seed: 1,
        execution: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let sub = work.path().join("submission");
    write_solution(&REFERENCE, &sub).unwrap();
    let task = KernelTaskAdapter::new(PrefixSum);
    let nvrtc = rdbench_gpu::probe::require_nvrtc().is_ok();
    if !nvrtc {
        eprintln!("NVRTC not installed: precheck benchmarks measure parsing only");
    }

    let mut group = c.benchmark_group("precheck");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("cold", |b| {
        b.iter(|| {
            let cache = tempfile::tempdir().unwrap();
            assert!(task
                .precheck(&request(&task, &sub, cache.path()))
                .unwrap()
                .is_none());
        })
    });
    let cache = work.path().join("cache");
    task.precheck(&request(&task, &sub, &cache)).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            assert!(task
                .precheck(&request(&task, &sub, &cache))
                .unwrap()
                .is_none())
        })
    });
    group.finish();

    let exe = env!("CARGO_BIN_EXE_rdbench");
    let mut group = c.benchmark_group("process");
    group.sample_size(20);
    group.bench_function("worker_round_trip", |b| {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let result = work.path().join("result.json");
        b.iter(|| {
            let reply = std::fs::File::create(&result).unwrap();
            let fd = reply.as_raw_fd();
            let mut cmd = Command::new(exe);
            cmd.args(["__worker", "--task", "prefix-sum"])
                .stdin(std::process::Stdio::null());
            // SAFETY: dup2 or fcntl only, between fork and exec: the reply descriptor as fd 3.
            unsafe {
                cmd.pre_exec(move || {
                    let rc = if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, 3)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let status = cmd.status().unwrap();
            // An empty request is reported on the reply descriptor, exit code 3.
            assert_eq!(status.code(), Some(3));
            assert!(std::fs::read(&result).unwrap().starts_with(b"{"));
        })
    });
    group.bench_function("monitor_start_stop", |b| {
        let path = work.path().join("timeline.jsonl");
        b.iter(|| {
            let h =
                rdbench_gpu::monitor::start(rdbench_gpu::monitor::MonitorConfig::default(), &path)
                    .unwrap();
            h.stop().unwrap()
        })
    });
    group.finish();

    let key = InstallationKey::load_or_create(&Home::new(work.path().join("home"))).unwrap();
    let log = ScoreLog::new(work.path().join("log.jsonl"), &key, "bench");
    let entry = ScoreEntry {
        timestamp: chrono::Utc::now(),
        task: "prefix-sum".into(),
        profile: "full".into(),
        valid: true,
        raw: Some(0.5),
        normalized: Some(0.9),
        reason: None,
        kind: None,
        headline: Some("1.6000 ms ± 0.30 % (40 samples)".into()),
        unscored: false,
        submission_sha256: "0".repeat(64),
        device: None,
        calibration: Some([1.5, 0.4]),
        wall_s: 3.0,
        details: serde_json::json!({ "median_ms": 1.6, "samples": 40 }),
        monitor: None,
        samples_file: None,
        timeline_file: None,
        late: false,
        key: None,
    };
    c.bench_function("score_log_append", |b| {
        b.iter(|| log.append(&entry).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
