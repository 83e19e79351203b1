//! What the differential tests and the benchmark share: where the original take-home's copy is.

use std::path::PathBuf;

/// The original's folder (`../shared/reference-data/perf-takehome-5452f74` beside the
/// repository, or `$RDBENCH_TAKEHOME_DIR`), if it is there.
pub fn takehome_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RDBENCH_TAKEHOME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/reference-data/perf-takehome-5452f74")
        });
    dir.join("problem.py").is_file().then_some(dir)
}
