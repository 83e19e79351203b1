//! What the agent runs must not carry a reference solution: no line of any file under
//! `reference_solutions/` that the starting material lacks appears in `rdbench-client`.
//! The full `rdbench` binary (the scorer's) is the positive control: it does carry them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Lines long enough to be distinctive, from text files under `dir`.
fn lines_under(dir: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .map(|l| l.trim().to_string())
                .filter(|l| l.len() >= 40)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_client_binary_holds_no_reference_solution() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let public: BTreeSet<String> = lines_under(&repo.join("kernels"))
        .into_iter()
        .chain(lines_under(&repo.join("crates/tasks")))
        .collect();
    let secret: Vec<String> = lines_under(&repo.join("reference_solutions"))
        .into_iter()
        .filter(|l| !public.contains(l))
        .collect();
    assert!(
        secret.len() > 20,
        "too few distinctive reference lines: {}",
        secret.len()
    );
    let client = PathBuf::from(env!("CARGO_BIN_EXE_rdbench-client"));
    // As text (invalid bytes replaced), so the search is the standard library's fast one.
    let text = String::from_utf8_lossy(&std::fs::read(&client).unwrap()).into_owned();
    let found: Vec<&String> = secret
        .iter()
        .filter(|l| text.contains(l.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "rdbench-client holds reference lines: {found:#?}"
    );
    // The control: the scorer's own binary, where the workspace built it, does hold them, so
    // the search above would have found them.
    let scorer = client.with_file_name("rdbench");
    if let Ok(bytes) = std::fs::read(&scorer) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            secret.iter().any(|l| text.contains(l.as_str())),
            "control failed: {} holds no reference line",
            scorer.display()
        );
    }
}
