//! A small writer of `model.toml` text, for the shipped graphs and the tests: each call appends
//! one `[[node]]` table.

use std::fmt::Write;

use crate::graph::FORMAT;

/// `model.toml` text under construction.
#[derive(Debug, Clone)]
pub struct GraphText {
    output: String,
    body: String,
}

impl GraphText {
    /// A graph whose logits are the node `output`.
    pub fn new(output: &str) -> GraphText {
        GraphText {
            output: output.to_string(),
            body: String::new(),
        }
    }

    /// Appends a node: `attrs` are `key = value` TOML fragments (values already in TOML syntax).
    pub fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        attrs: &[(&str, String)],
    ) -> &mut Self {
        let inputs: Vec<String> = inputs.iter().map(|i| format!("{i:?}")).collect();
        let _ = writeln!(self.body, "\n[[node]]\nname = {name:?}\nop = {op:?}");
        if !inputs.is_empty() {
            let _ = writeln!(self.body, "inputs = [{}]", inputs.join(", "));
        }
        for (k, v) in attrs {
            let _ = writeln!(self.body, "{k} = {v}");
        }
        self
    }

    /// Appends a trainable weight of `shape`.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.node(name, "weight", &[], &[("shape", format!("{shape:?}"))])
    }

    /// The file's text.
    pub fn text(&self, comment: &str) -> String {
        let mut out = String::new();
        for line in comment.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "format = {FORMAT:?}\noutput = {:?}", self.output);
        out.push_str(&self.body);
        out
    }
}
