//! Training loss over steps for a settings variant (tuning aid):
//! `cargo run -p rdbench-code-model --example train_probe -- STEPS BATCH LR D LAYERS CTX`.
use rdbench_code_model::corpus::{documents, pack};
use rdbench_code_model::tokenizer::Vocab;
use rdbench_code_model::Settings;
use rdbench_lm::{Gpt, GptConfig, GptTrainer, TokenSet, TrainConfig};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let p = |i: usize| a[i].parse::<f64>().unwrap();
    let (steps, batch, lr, d, layers, ctx) = (
        p(0) as usize,
        p(1) as usize,
        p(2),
        p(3) as usize,
        p(4) as usize,
        p(5) as usize,
    );
    let s = Settings::default();
    let v = Vocab::build();
    let docs: Vec<Vec<u32>> = documents(1, 4000, &s.mixture)
        .iter()
        .map(|d| d.tokens(&v))
        .collect();
    let data = TokenSet::new(pack(&docs, ctx + 1), ctx + 1).unwrap();
    let cfg = GptConfig {
        vocab: v.len(),
        ctx,
        d_model: d,
        n_layer: layers,
        n_head: 4,
        d_ff: 4 * d,
        ln_eps: 1e-5,
    };
    let gpt = Gpt::new(cfg, 1).unwrap();
    let tc = TrainConfig::cosine(steps, batch, lr, 20, 2);
    let t = std::time::Instant::now();
    rdbench_lm::with_threads(Some(1), || {
        let mut tr = GptTrainer::new(&gpt, &tc).unwrap();
        let mut acc = 0.0;
        for step in 0..steps {
            acc += tr.step(step, &data).unwrap();
            if (step + 1) % 25 == 0 {
                println!(
                    "step {} loss {:.3} ({:.0} s)",
                    step + 1,
                    acc / 25.0,
                    t.elapsed().as_secs_f64()
                );
                acc = 0.0;
            }
        }
    });
}
