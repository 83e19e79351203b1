//! NVRTC in a resource-limited child, end to end: this test binary is its own child
//! (`nvrtc_child __nvrtc` runs `child_main`), so the real framing, limits and error mapping
//! are exercised without the `rdbench` binary. Skipped (passing) without NVRTC.
//!
//! Measures and prints the added latency of a compile through the child, and what the
//! template bomb costs with and without a limit.

use std::time::{Duration, Instant};

use rdbench_core::outcome::InvalidKind;
use rdbench_gpu::nvrtc::{compile_with, CompileLimits, CompileOptions, Isolation};
use rdbench_gpu::GpuError;

const GOOD: &str = r#"extern "C" __global__ void add_one(int* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += 1;
}"#;

/// 2^depth distinct instantiations: memory grows exponentially with `depth` (2^16 take about
/// 1.3 GB in NVRTC, 2^18 about 5 GB).
fn template_bomb(depth: u32) -> String {
    format!(
        "template <int N, int M> struct F {{ enum {{ v = F<N - 1, 2 * M>::v + F<N - 1, 2 * M + 1>::v }}; }};\n\
         template <int M> struct F<0, M> {{ enum {{ v = 1 }}; }};\n\
         extern \"C\" __global__ void k(int* y) {{ y[0] = F<{depth}, 0>::v; }}\n"
    )
}

fn child(limits: CompileLimits) -> Isolation {
    Isolation::Child {
        exe: std::env::current_exe().unwrap(),
        args: vec!["__nvrtc".into()],
        limits,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__nvrtc") {
        std::process::exit(rdbench_gpu::nvrtc::child_main());
    }
    // `cargo test -- --list` and filters: this binary has one test, named after itself.
    if args.iter().any(|a| a == "--list") {
        println!("nvrtc_child: test");
        return;
    }
    if let Err(e) = rdbench_gpu::probe::require_nvrtc() {
        println!("nvrtc_child: skipped, NVRTC not installed ({e})");
        return;
    }
    let tests: [(&str, fn()); 4] = [
        (
            "same_image_as_in_process_and_small_latency",
            same_image_and_latency,
        ),
        ("compile_errors_keep_their_log_and_kind", compile_errors),
        (
            "template_bomb_is_a_resource_limit",
            template_bomb_is_a_resource_limit,
        ),
        ("a_slow_compile_is_killed_at_the_wall_clock", wall_clock),
    ];
    for (name, test) in tests {
        print!("test {name} ... ");
        test();
        println!("ok");
    }
    println!("test result: ok. {} passed", tests.len());
}

fn same_image_and_latency() {
    let opts = CompileOptions::cubin(90);
    let iso = child(CompileLimits::default());
    // Warm both paths once (library loading, page cache), then time a few compiles each.
    let inproc = compile_with(GOOD, "good.cu", &opts, &Isolation::InProcess).unwrap();
    let isolated = compile_with(GOOD, "good.cu", &opts, &iso).unwrap();
    assert_eq!(
        inproc.image, isolated.image,
        "the child compiles the same CUBIN"
    );
    assert!(!isolated.cached);
    let time = |iso: &Isolation| {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            compile_with(GOOD, "good.cu", &opts, iso).unwrap();
            best = best.min(t.elapsed());
        }
        best
    };
    let (a, b) = (time(&Isolation::InProcess), time(&iso));
    print!(
        "[in-process {:.1} ms, child {:.1} ms, added {:.1} ms] ",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        (b.as_secs_f64() - a.as_secs_f64()) * 1e3
    );
    // Starting a child and loading libnvrtc in it costs about 30 ms (debug build, measured).
    assert!(
        b < a + Duration::from_millis(500),
        "child {b:?} vs in-process {a:?}"
    );
}

fn compile_errors() {
    let iso = child(CompileLimits {
        max_log_bytes: 200,
        ..CompileLimits::default()
    });
    // Many errors: a long log, cut at the limit, saying so.
    let bad: String = (0..200)
        .map(|i| format!("__device__ int f{i}() {{ return undefined_{i}; }}\n"))
        .collect();
    match compile_with(&bad, "bad.cu", &CompileOptions::cubin(80), &iso) {
        Err(e @ GpuError::Compile { .. }) => {
            assert_eq!(e.invalid_kind(), Some(InvalidKind::Compile));
            let GpuError::Compile { name, log, .. } = e else {
                unreachable!()
            };
            assert_eq!(name, "bad.cu");
            assert!(
                log.contains("bad.cu") && log.contains("undefined_0"),
                "{log}"
            );
            assert!(log.contains("[log cut:"), "{log}");
            assert!(log.len() < 300, "{} bytes", log.len());
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

fn template_bomb_is_a_resource_limit() {
    // 2^16 instantiations need about 1.3 GB; under a 768 MiB address space NVRTC gives up.
    let limits = CompileLimits {
        address_space: 768 << 20,
        ..CompileLimits::default()
    };
    let t = Instant::now();
    match compile_with(
        &template_bomb(16),
        "bomb.cu",
        &CompileOptions::cubin(90),
        &child(limits),
    ) {
        Err(e @ GpuError::ResourceLimit { .. }) => {
            assert_eq!(e.invalid_kind(), Some(InvalidKind::ResourceLimit));
            let text = e.to_string();
            assert!(text.contains("0.8 GiB address space"), "{text}");
            assert!(text.contains("out of memory"), "{text}");
        }
        other => panic!("expected a resource limit, got {other:?}"),
    }
    print!(
        "[bomb under 768 MiB stopped in {:.1} s] ",
        t.elapsed().as_secs_f64()
    );
}

fn wall_clock() {
    let limits = CompileLimits {
        wall: Duration::from_secs(2),
        ..CompileLimits::default()
    };
    let t = Instant::now();
    match compile_with(
        &template_bomb(17),
        "slow.cu",
        &CompileOptions::cubin(90),
        &child(limits),
    ) {
        Err(GpuError::ResourceLimit { limit, detail, .. }) => {
            assert_eq!(limit, "2 s wall clock");
            assert!(detail.contains("killed"), "{detail}");
        }
        other => panic!("expected the wall clock, got {other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "killed at the limit, not later: {took:?}"
    );
}
