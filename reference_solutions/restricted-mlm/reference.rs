//! The reference solution of `restricted-mlm`: RE-Bench's recipe, a residual 1-D convolution
//! network built from the allowed ops. Each block takes a window of `kernel` positions around
//! every position (zero padded, the `as_strided` view of the original), mixes it with one linear
//! layer, applies ReLU, scales the branch by a constant (there is no normalization layer, so the
//! residual stream is kept in range by the scale) and adds it to the stream.
//!
//! It is trained by the shipped trainer (AdamW on masked-token loss), with the settings of the
//! profile (`rdbench_task_restricted_mlm::profile::ReferenceConfig`). It is the crate
//! `rdbench-reference-restricted-mlm` in `reference_solutions/` (never copied into an attempt);
//! it builds its graph with the task crate's `GraphText`, so the task crate cannot depend on it:
//! the registry hands [`REFERENCE`] to `rdbench_task_restricted_mlm::tasks`, and the scorer's
//! cycle and calibration run exactly this.

use rdbench_task_restricted_mlm::build::GraphText;
use rdbench_task_restricted_mlm::graph::Limits;
use rdbench_task_restricted_mlm::profile::ReferenceConfig;
use rdbench_task_restricted_mlm::Reference;

/// The reference, as the task takes it.
pub const REFERENCE: Reference = graph;

/// The reference graph's `model.toml`.
pub fn graph(limits: &Limits, cfg: &ReferenceConfig) -> String {
    let (v, d, k) = (limits.vocab, cfg.width, cfg.kernel);
    let mut g = GraphText::new("logits");
    g.weight("embed", &[v + 1, d])
        .node("x0", "embedding", &["tokens", "embed"], &[]);
    let mut x = "x0".to_string();
    for b in 0..cfg.blocks {
        let p = |s: &str| format!("b{b}.{s}");
        g.node(
            &p("win"),
            "window",
            &[&x],
            &[
                ("axis", "1".into()),
                ("size", k.to_string()),
                ("pad_before", (k / 2).to_string()),
                ("pad_after", (k - 1 - k / 2).to_string()),
            ],
        )
        .node(
            &p("flat"),
            "reshape",
            &[&p("win")],
            &[("shape", format!("[\"batch\", \"seq\", {}]", d * k))],
        )
        .weight(&p("w"), &[d, d * k])
        .weight(&p("bias"), &[d])
        .node(&p("mix"), "linear", &[&p("flat"), &p("w"), &p("bias")], &[])
        .node(&p("act"), "relu", &[&p("mix")], &[])
        .node(
            &p("branch"),
            "mul",
            &[&p("act")],
            &[("scale", format!("{:?}", cfg.branch_scale))],
        )
        .node(&p("out"), "add", &[&x, &p("branch")], &[]);
        x = p("out");
    }
    g.weight("head.w", &[v, d]).weight("head.b", &[v]).node(
        "logits",
        "linear",
        &[&x, "head.w", "head.b"],
        &[],
    );
    g.text(&format!(
        "Reference solution: a residual convolution network, {} blocks of width {d}, windows of {k}.",
        cfg.blocks
    ))
}
