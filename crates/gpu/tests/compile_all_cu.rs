//! Compiles every `.cu` file in the repository with NVRTC for sm_80 and sm_90, as the scorer
//! would: harness kernels, starting and reference solutions, and the exploit corpus (whose
//! `expect.toml` says `stage = "compile"` must fail to compile; every other file must compile).
//! A file whose first line is `// rdbench-prelude: <repo path>` is compiled after that file,
//! itself read the same way (at most [`PRELUDE_DEPTH`] deep, no loops).
//!
//! Without NVRTC the test is skipped with a message, except under CI (`CI` set), where a
//! missing NVRTC is a failure: the README's test command installs it.

use std::path::{Path, PathBuf};

use rdbench_gpu::nvrtc::{compile, CompileOptions};
use rdbench_gpu::GpuError;

fn cu_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if name.starts_with('.') || name.starts_with("target") {
                continue;
            }
            cu_files(&p, out);
        } else if name.ends_with(".cu") {
            out.push(p);
        }
    }
}

const PRELUDE_DEPTH: usize = 8;

/// The text a file is compiled from: one whose first line is `// rdbench-prelude: <repo path>`
/// is compiled after that file's own text, as its task crate concatenates the chain (trusted
/// code that harnesses share). `chain`: the files that led here.
fn source_of(root: &Path, cu: &Path, chain: &[PathBuf]) -> String {
    let canonical = cu
        .canonicalize()
        .unwrap_or_else(|e| panic!("{} (the prelude of {chain:?}): {e}", cu.display()));
    assert!(
        !chain.contains(&canonical) && chain.len() < PRELUDE_DEPTH,
        "prelude chain loops or is deeper than {PRELUDE_DEPTH}: {chain:?} then {}",
        cu.display()
    );
    let text = std::fs::read_to_string(cu).unwrap_or_else(|e| panic!("{}: {e}", cu.display()));
    let first = text.lines().next().unwrap_or_default();
    match first.strip_prefix("// rdbench-prelude: ") {
        Some(prelude) => {
            let chain = [chain, &[canonical]].concat();
            let pre = source_of(root, &root.join(prelude.trim()), &chain);
            format!("{pre}\n{text}")
        }
        None => text,
    }
}

fn expect_line(cu: &Path, line: &str) -> bool {
    let expect = cu.with_file_name("expect.toml");
    std::fs::read_to_string(expect).is_ok_and(|t| t.lines().any(|l| l.replace(' ', "") == line))
}

fn must_fail(cu: &Path) -> bool {
    expect_line(cu, "stage=\"compile\"")
}

/// Cases the source rules refuse before any compiler runs (an `#include` of a host header):
/// whether NVRTC would compile them does not matter.
fn refused_before_compiling(cu: &Path) -> bool {
    expect_line(cu, "kind=\"rule_violation\"")
}

#[test]
fn every_cu_in_the_repository_compiles_for_sm80_and_sm90() {
    if let Err(e) = rdbench_gpu::probe::require_nvrtc() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have NVRTC (pip install nvidia-cuda-nvrtc): {e}"
        );
        eprintln!("skipped: {e}");
        return;
    }
    let root = std::env::var_os("RDBENCH_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let mut files = Vec::new();
    cu_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "found only {} .cu files under {}",
        files.len(),
        root.display()
    );
    let mut failures = Vec::new();
    for cu in files.iter().filter(|cu| !refused_before_compiling(cu)) {
        for arch in [80, 90] {
            let source = source_of(&root, cu, &[]);
            let result = compile(
                &source,
                &cu.display().to_string(),
                &CompileOptions::cubin(arch),
            );
            match (must_fail(cu), result) {
                (false, Ok(c)) => assert!(!c.image.is_empty()),
                (true, Err(GpuError::Compile { .. })) => {}
                (false, Err(e)) => failures.push(format!("{} (sm_{arch}): {e}", cu.display())),
                (true, Ok(_)) => failures.push(format!(
                    "{} (sm_{arch}) compiled but its expect.toml says it must not",
                    cu.display()
                )),
                (true, Err(e)) => failures.push(format!(
                    "{} (sm_{arch}): unexpected error {e}",
                    cu.display()
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "compiled {} .cu files for sm_80 and sm_90 with NVRTC {}",
        files.len(),
        rdbench_gpu::probe::nvrtc_version().unwrap_or_default()
    );
}
