//! The starting solution: RE-Bench's simple MLP (embedding, flatten the whole sequence, two
//! linear + ReLU layers, a linear layer to every position's logits).

use crate::build::GraphText;
use crate::graph::Limits;

/// Widths of the starting MLP.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlpShape {
    pub embed: usize,
    pub hidden: usize,
}

/// The starting graph's `model.toml`.
pub fn graph(limits: &Limits, shape: MlpShape) -> String {
    let (s, v, e, h) = (limits.seq, limits.vocab, shape.embed, shape.hidden);
    let mut g = GraphText::new("logits");
    g.weight("embed", &[v + 1, e])
        .node("x", "embedding", &["tokens", "embed"], &[])
        .node(
            "flat",
            "reshape",
            &["x"],
            &[("shape", format!("[\"batch\", {}]", s * e))],
        )
        .weight("w1", &[h, s * e])
        .weight("b1", &[h])
        .node("h1", "linear", &["flat", "w1", "b1"], &[])
        .node("a1", "relu", &["h1"], &[])
        .weight("w2", &[h, h])
        .weight("b2", &[h])
        .node("h2", "linear", &["a1", "w2", "b2"], &[])
        .node("a2", "relu", &["h2"], &[])
        .weight("w3", &[s * v, h])
        .weight("b3", &[s * v])
        .node("out", "linear", &["a2", "w3", "b3"], &[])
        .node(
            "logits",
            "reshape",
            &["out"],
            &[("shape", format!("[\"batch\", \"seq\", {v}]"))],
        );
    g.text(&format!(
        "Starting solution: embedding ({e}), the whole sequence flattened, two linear + relu layers \
         ({h}),\na linear layer to the logits of every position."
    ))
}
