//! Measures a profile on a fixed test secret: floors, the start's and the reference's losses and
//! their training and scoring times. `cargo run --release --example restricted_mlm_sizing -- tiny`
use std::time::Instant;

use candle_core::Device;
use rdbench_lm::{Hmm, TokenSet};
use rdbench_reference_restricted_mlm as reference;
use rdbench_task_restricted_mlm::{graph, interp::MlmModel, mlm, profile, start};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "tiny".into());
    let which = std::env::args().nth(2).unwrap_or_else(|| "both".into());
    let spec = profile::by_name(&name).expect("profile");
    let hmm = Hmm::new(spec.hmm.with_structure_seed(11)).unwrap();
    let seq = spec.limits.seq;
    let train = TokenSet::new(hmm.sample(1, spec.train_seqs, seq), seq).unwrap();
    let held = TokenSet::new(hmm.sample(2, spec.heldout_seqs, seq), seq).unwrap();
    let masks = mlm::mask_pattern(3, held.tokens.len());
    let t = Instant::now();
    let (floor, n) = hmm.masked_floor(&held.tokens, &masks, seq);
    println!(
        "masked floor {floor:.4} over {n} masked positions ({:.2} s)",
        t.elapsed().as_secs_f64()
    );
    println!("causal floor {:.4}", hmm.floor(&held.tokens, seq));
    let dev = Device::Cpu;
    let run = |label: &str, text: String, tc: &rdbench_lm::TrainConfig, seed: u64| {
        let g = graph::parse(&text, &spec.limits).unwrap();
        println!(
            "{label}: {} params, {} flops/token",
            g.params, g.flops_per_token
        );
        let m = MlmModel::init(g, spec.limits.clone(), seed, &dev).unwrap();
        let r = mlm::train(&m, &train, tc, label).unwrap();
        let t = Instant::now();
        let (loss, _) = mlm::eval_masked_loss(&m, &held, &masks, spec.eval_batch).unwrap();
        println!(
            "{label}: trained {:.1} s (final train loss {:.4}); held-out loss {loss:.4}, raw {:.4}, scored in {:.1} s",
            r.seconds,
            r.final_train_loss,
            (loss - floor).ln(),
            t.elapsed().as_secs_f64()
        );
    };
    if which != "ref" {
        run(
            "start",
            start::graph(&spec.limits, spec.start.shape),
            &spec.start.train,
            spec.start.init_seed,
        );
    }
    if which != "start" {
        run(
            "reference",
            reference::graph(&spec.limits, &spec.reference),
            &spec.reference.train,
            spec.reference.init_seed,
        );
    }
}
