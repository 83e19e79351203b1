//! Times the `full` profile's scoring pieces on this CPU without training (scoring cost does not
//! depend on the weights' values): the exact masked floor of the whole held-out split, and the
//! start's and the reference's forward passes over `N` held-out sequences (default 64).
//! `cargo run --release --example restricted_mlm_full_timing -- [N]`
use std::time::Instant;

use candle_core::Device;
use rdbench_lm::{Hmm, TokenSet};
use rdbench_reference_restricted_mlm as reference;
use rdbench_task_restricted_mlm::{graph, interp::MlmModel, mlm, profile, start};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(64);
    let spec = profile::full();
    let seq = spec.limits.seq;
    let hmm = Hmm::new(spec.hmm.with_structure_seed(5)).unwrap();
    let t = Instant::now();
    let held = TokenSet::new(hmm.sample(6, spec.heldout_seqs, seq), seq).unwrap();
    let masks = mlm::mask_pattern(7, held.tokens.len());
    let (floor, count) = hmm.masked_floor(&held.tokens, &masks, seq);
    println!(
        "full: sampled {} held-out sequences and their masked floor {floor:.4} ({count} positions) in {:.1} s",
        spec.heldout_seqs,
        t.elapsed().as_secs_f64()
    );
    let part = held.head(n);
    for (label, text) in [
        ("start", start::graph(&spec.limits, spec.start.shape)),
        ("reference", reference::graph(&spec.limits, &spec.reference)),
    ] {
        let g = graph::parse(&text, &spec.limits).unwrap();
        let (params, flops) = (g.params, g.flops_per_token);
        let m = MlmModel::init(g, spec.limits.clone(), 1, &Device::Cpu).unwrap();
        let t = Instant::now();
        mlm::eval_masked_loss(&m, &part, &masks[..n * seq], spec.eval_batch).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!(
            "{label}: {params} weights, {flops} flops/token; {n} sequences scored in {s:.2} s \
             ({:.0} s for all {} at that rate)",
            s * spec.heldout_seqs as f64 / n as f64,
            spec.heldout_seqs
        );
    }
}
