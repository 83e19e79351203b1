//! Times the forward and backward pass of one training step (profiling aid).
use std::time::Instant;

use rdbench_lm::*;

fn main() -> Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().unwrap())
        .collect();
    let (d, layers, ctx, batch, vocab) = (a[0], a[1], a[2], a[3], a[4]);
    let cfg = GptConfig {
        vocab,
        ctx,
        d_model: d,
        n_layer: layers,
        n_head: 4,
        d_ff: 4 * d,
        ln_eps: 1e-5,
    };
    let model = Gpt::new(cfg, 1)?;
    let toks: Vec<u16> = (0..batch * (ctx + 1))
        .map(|i| ((i * 7919) % vocab) as u16)
        .collect();
    let data = TokenSet::new(toks, ctx + 1)?;
    let rows: Vec<usize> = (0..batch).collect();
    let b = data.batch(&rows)?;
    for _ in 0..3 {
        let t = Instant::now();
        let loss = model.loss(&b)?;
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let g = loss.backward()?;
        let bw = t.elapsed().as_secs_f64();
        println!(
            "fwd {:.1} ms bwd {:.1} ms ({} grads)",
            f * 1e3,
            bw * 1e3,
            model
                .vars()
                .iter()
                .filter(|v| g.get(v.as_tensor()).is_some())
                .count()
        );
    }
    Ok(())
}
