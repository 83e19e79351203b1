//! Measures what the check's thresholds must separate: runs the reference, the start and
//! variants of the reference in the sandbox on one dataset and prints each one's time, mean KL
//! divergence of the reference's held-out predictions from its own, weight distance (sum over
//! tensors of the Frobenius norm of the difference), largest weight difference and held-out
//! loss.
//!
//! `cargo build -p rdbench-runner --bin rdbench-sandbox-shim && cargo run --release -p
//! rdbench-task-optimize-train --example threshold [SEED [DIR]]`
//! (with DIR it only writes the dataset of SEED into DIR, to train on it by hand)

use rdbench_core::task::Solution;
use rdbench_program::tensors::Tensors;
use rdbench_program::tree::{read_tree, TreeFile};
use rdbench_program::{ProgramAdapter, ProgramTask};
use rdbench_task_optimize_train::{OptimizeTrain, WEIGHTS};

fn tree(which: Solution) -> Vec<TreeFile> {
    let dir = tempfile::tempdir().unwrap();
    OptimizeTrain
        .write_solution(which, "tiny", dir.path())
        .unwrap();
    read_tree(dir.path(), &OptimizeTrain.tree_limits()).unwrap()
}

/// `files` with `from` replaced by `to` in the file `name`.
fn edit(mut files: Vec<TreeFile>, name: &str, from: &str, to: &str) -> Vec<TreeFile> {
    let f = files.iter_mut().find(|f| f.path == name).unwrap();
    let text = String::from_utf8(f.bytes.clone()).unwrap();
    assert!(text.contains(from), "{name} has no {from:?}");
    f.bytes = text.replacen(from, to, 1).into_bytes();
    files
}

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(7);
    let task = ProgramAdapter(OptimizeTrain);
    let input = tempfile::tempdir().unwrap();
    OptimizeTrain
        .make_input("tiny", seed, input.path())
        .unwrap();
    if let Some(dir) = std::env::args().nth(2) {
        OptimizeTrain
            .make_input("tiny", seed, dir.as_ref())
            .unwrap();
        return;
    }
    let reference = tree(Solution::Reference);
    let variants: Vec<(&str, Vec<TreeFile>)> = vec![
        ("reference", reference.clone()),
        ("reference again", reference.clone()),
        (
            "reference, 1 thread",
            edit(
                reference.clone(),
                "train.py",
                "torch.manual_seed(",
                "torch.set_num_threads(1)\ntorch.manual_seed(",
            ),
        ),
        (
            "reference, written-out attention",
            edit(reference.clone(), "train.py", "attention=\"fused\"", "attention=\"naive\""),
        ),
        ("start", tree(Solution::Starting)),
        (
            "reference, the last step skipped",
            edit(
                reference.clone(),
                "train.py",
                "for step in range(t[\"steps\"]):",
                "for step in range(t[\"steps\"] - 1):",
            ),
        ),
        (
            "reference, 90 % of the steps",
            edit(
                reference.clone(),
                "train.py",
                "for step in range(t[\"steps\"]):",
                "for step in range(t[\"steps\"] * 9 // 10):",
            ),
        ),
        (
            "reference, 90 % of the data",
            edit(
                reference.clone(),
                "train.py",
                "tokens = read_jsonl(a.data, t[\"seq_len\"])",
                "tokens = read_jsonl(a.data, t[\"seq_len\"])\ntokens = tokens[: tokens.shape[0] * 9 // 10]",
            ),
        ),
    ];
    let mut base: Option<Tensors> = None;
    for (name, files) in variants {
        let r = task.run_tree("tiny", &files, input.path()).unwrap();
        let out = r
            .outputs
            .unwrap_or_else(|e| panic!("{name}: {e:?} ({}): {}", r.ran.exit, r.ran.stderr));
        let w = Tensors::parse(&out[WEIGHTS]).unwrap();
        let (d, max) = match &base {
            Some(b) => {
                let d = w.distance(b).unwrap();
                (d.sum_frobenius, d.max_abs)
            }
            None => (0.0, 0.0),
        };
        let verdict = OptimizeTrain.check(
            "tiny",
            seed,
            &[(WEIGHTS.to_string(), base_bytes(&base, &out))].into(),
            &out,
        );
        let (kl, loss) = match verdict {
            Ok(rdbench_program::Verdict::Valid { details, .. })
            | Ok(rdbench_program::Verdict::Invalid { details, .. }) => {
                (details["kl"].clone(), details["heldout_loss"].clone())
            }
            Err(e) => (serde_json::json!(e.to_string()), serde_json::Value::Null),
        };
        println!(
            "{name:36} {:7.2} s  KL = {kl}  D = {d:.3e}  max|diff| = {max:.2e}  held-out loss {loss}",
            r.ran.wall.as_secs_f64()
        );
        if base.is_none() {
            base = Some(w);
            std::fs::write("/tmp/optimize-train-reference.safetensors", &out[WEIGHTS]).unwrap();
        }
    }
}

/// The reference's bytes once known (the first run compares with itself).
fn base_bytes(base: &Option<Tensors>, out: &rdbench_program::Outputs) -> Vec<u8> {
    match base {
        Some(_) => std::fs::read("/tmp/optimize-train-reference.safetensors").unwrap(),
        None => out[WEIGHTS].clone(),
    }
}
