//! The simulator against the original take-home's Python one, on the same machine in one run:
//! the 147,734-cycle scalar baseline at the original size. `cargo bench -p rdbench-vliw`.
//!
//! Prints a table (median and fastest of each) and the ratio, and saves the raw samples to
//! `target/bench-samples/vliw-simulator.json`. The Python side runs only where the original's
//! copy is (`../shared/reference-data/perf-takehome-5452f74` or `$RDBENCH_TAKEHOME_DIR`): its
//! own `Machine` with the scoring settings, timed around `run()` alone, on the same program
//! file the Rust side runs (and, for reference, on the program its own builder makes).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use rdbench_vliw::problem::{Input, Params};
use rdbench_vliw::program::Program;

#[path = "../tests/common/mod.rs"]
mod common;
use common::takehome_dir;

const RUST_RUNS: usize = 50;
const PYTHON_RUNS: usize = 5;
const PARSE_RUNS: usize = 7;

const PYTHON: &str = r#"
import json, random, sys, time
sys.path.insert(0, sys.argv[1])
from problem import Machine, DebugInfo, Tree, Input, build_mem_image, N_CORES
import perf_takehome
runs = int(sys.argv[3])
ours = json.load(open(sys.argv[2]))["bundles"]
kb = perf_takehome.KernelBuilder()
kb.build_kernel(10, 2047, 256, 16)
out = {}
for name, program in (("same_program", ours), ("own_builder", kb.instrs)):
    times = []
    for i in range(runs):
        random.seed(i)
        forest = Tree.generate(10)
        inp = Input.generate(forest, 256, 16)
        mem = build_mem_image(forest, inp)
        m = Machine(mem, program, DebugInfo(scratch_map={}), n_cores=N_CORES)
        m.enable_pause = False
        m.enable_debug = False
        t = time.perf_counter()
        m.run()
        times.append(time.perf_counter() - t)
        assert m.cycle == 147734, m.cycle
    out[name] = times
print(json.dumps(out))
"#;

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn main() {
    let params = Params::original();
    let program = rdbench_vliw::baseline::baseline(&params).expect("the baseline builds");
    let json = program.to_json();
    let mut parse = Vec::new();
    let mut parsed = Program::default();
    for _ in 0..PARSE_RUNS {
        let t = Instant::now();
        parsed = Program::parse(json.as_bytes()).expect("own file parses");
        parse.push(t.elapsed().as_secs_f64());
    }
    let input = Input::generate(&params, 1);
    let image = input.memory_image(&params);
    let mut rust = Vec::with_capacity(RUST_RUNS);
    for _ in 0..RUST_RUNS {
        let mut mem = image.clone();
        let t = Instant::now();
        let stats = rdbench_vliw::machine::run(&parsed, &mut mem, 10_000_000).expect("runs");
        rust.push(t.elapsed().as_secs_f64());
        assert_eq!(stats.cycles, 147_734);
    }
    let mut python: Option<serde_json::Value> = None;
    if let Some(dir) = takehome_dir() {
        let file =
            std::env::temp_dir().join(format!("rdbench-vliw-bench-{}.json", std::process::id()));
        std::fs::write(&file, &json).expect("temp file");
        let out = Command::new("python3")
            .arg("-c")
            .arg(PYTHON)
            .arg(&dir)
            .arg(&file)
            .arg(PYTHON_RUNS.to_string())
            .output();
        let _ = std::fs::remove_file(&file);
        match out {
            Ok(o) if o.status.success() => python = serde_json::from_slice(&o.stdout).ok(),
            Ok(o) => eprintln!(
                "the Python side failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("python3 does not run: {e}"),
        }
    } else {
        eprintln!("the original take-home's copy is not here: Rust side only");
    }
    println!("simulating the 147,734-cycle scalar baseline (original size), one run each:\n");
    println!("| simulator | runs | median | fastest |");
    println!("|---|---:|---:|---:|");
    let ms = |s: f64| format!("{:.3} ms", s * 1e3);
    println!(
        "| rdbench-vliw (Rust) | {RUST_RUNS} | {} | {} |",
        ms(median(&rust)),
        ms(min(&rust))
    );
    let get = |name: &str| -> Option<Vec<f64>> {
        python
            .as_ref()
            .and_then(|p| serde_json::from_value(p[name].clone()).ok())
    };
    let same = get("same_program");
    if let Some(s) = &same {
        println!(
            "| original (Python), same program file | {PYTHON_RUNS} | {} | {} |",
            ms(median(s)),
            ms(min(s))
        );
    }
    if let Some(s) = get("own_builder") {
        println!(
            "| original (Python), its own builder's program | {PYTHON_RUNS} | {} | {} |",
            ms(median(&s)),
            ms(min(&s))
        );
    }
    println!(
        "\nparsing program.json ({} bytes, {PARSE_RUNS} runs): median {}, fastest {}",
        json.len(),
        ms(median(&parse)),
        ms(min(&parse))
    );
    if let Some(s) = &same {
        println!(
            "ratio (median Python / median Rust, same program): {:.0}x",
            median(s) / median(&rust)
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-samples");
    let _ = std::fs::create_dir_all(&dir);
    let samples = serde_json::json!({
        "what": "seconds per run of the 147,734-cycle baseline",
        "rust": rust,
        "rust_parse_seconds": parse,
        "python": python,
    });
    let path = dir.join("vliw-simulator.json");
    let _ = std::fs::write(
        &path,
        serde_json::to_vec_pretty(&samples).unwrap_or_default(),
    );
    println!("raw samples: {}", path.display());
}
