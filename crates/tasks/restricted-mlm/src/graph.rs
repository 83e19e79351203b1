//! The model language: a `model.toml` op graph, parsed strictly and checked completely before
//! any weight is read.
//!
//! A graph is a list of `[[node]]` tables in evaluation order. Each node has a unique `name`, an
//! `op`, `inputs` (names of the graph input `tokens` or of earlier nodes) and the attributes of
//! its op, nothing else. The ops are exactly the operations RE-Bench's restricted-architecture
//! task allows; there is no division, exponential, logarithm, square root, comparison,
//! selection by value, maximum, normalization or trigonometry in the language, so a graph that
//! parses cannot compute one (the interpreter in [`crate::interp`] is the only forward pass).
//!
//! | op | inputs | attributes | result |
//! |---|---|---|---|
//! | `weight` | none | `shape`, `trainable` (default true), `init` (`"normal"` or a number; for the trainer) | a tensor of `weights.safetensors` named like the node; `trainable = false` marks a constant |
//! | `embedding` | ids, table `[rows, d]` | | `ids.shape + [d]` (rows ≥ vocab + 1: ids include the mask id) |
//! | `linear` | x `[..., in]`, w `[out, in]`, optional b `[out]` | | `x @ w^T + b` |
//! | `matmul` | a `[..., m, k]`, b `[..., k, n]` | | batched product, leading dims broadcast |
//! | `einsum` | a, b | `spec` like `"bsd,de->bse"` | product summed over the letters not in the output; the batch axis only as the same first letter of every batched input and of the output |
//! | `add` | a, b | | broadcast sum |
//! | `mul` | a, b, or a alone | `scale` (a number, with one input) | broadcast product, or `a * scale` |
//! | `relu` | x | | `max(x, 0)`, the only nonlinearity |
//! | `sum` | x | `axis`, `keepdim` (default false) | sum over one axis |
//! | `gather` | x, index (token ids) | `axis` | `x` gathered along `axis` |
//! | `select` | x | `axis`, `index` | `x` at one fixed index of `axis` (the axis is dropped) |
//! | `slice` | x | `axis`, `start`, `end`, `step` (default 1) | `x[start:end:step]` along `axis` |
//! | `reshape` | x | `shape` (numbers, `"batch"`, `"seq"`) | same elements, new shape |
//! | `permute` | x | `dims` | axes reordered |
//! | `unsqueeze` | x | `axis` | a new axis of size 1 |
//! | `concat` | two or more | `axis` | joined along `axis` |
//! | `window` | x | `axis`, `size`, `stride` (default 1), `pad_before`, `pad_after` (default 0) | sliding windows with zero padding: `axis` becomes the window count and a last axis of `size` is appended (PyTorch's `unfold`, the `as_strided` view RE-Bench's reference uses) |
//!
//! Shapes: the input `tokens` is `[batch, seq]` (token ids; the mask id is `vocab`), and the
//! node named by `output` must be `[batch, seq, vocab]` logits. `batch` is symbolic and stays the
//! first axis of every value computed from the tokens: no op may move, reduce, slice or join
//! along it, so each sequence's logits depend on that sequence alone and on nothing else in the
//! batch. Every value holds the batch axis first and at most once (checked for every op's
//! result, so the caps, which count elements per sequence, count every axis). `seq` and every
//! other size are numbers fixed by the profile. All of this is decided by explicit rules over
//! ordered maps: the same graph gets the same verdict on every run.
//!
//! Token ids are integers; they may be reshaped, permuted, sliced, selected, unsqueezed and
//! concatenated, and used as the ids of `embedding` or the index of `gather`, but no arithmetic
//! takes them. Every other value is `f32`.
//!
//! Validation rejects, naming the first offending node: unknown or missing fields, duplicate
//! names, inputs that are not defined before use (so cycles cannot be written), nodes or weights
//! never used, shape and type mismatches, axes out of range, and graphs over the profile's
//! [`Limits`] (nodes, parameters, floating-point operations per token, size of any one value and
//! of all values together).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Version tag every `model.toml` carries.
pub const FORMAT: &str = "rdbench-mlm-graph/1";

/// Name of the graph's input.
pub const TOKENS: &str = "tokens";

/// Most axes a value may have.
pub const MAX_RANK: usize = 6;

/// What the profile fixes about every graph: the data's shape and the caps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Limits {
    /// Tokens per sequence (`seq`).
    pub seq: usize,
    /// Vocabulary of the logits; the inputs also hold the mask id `vocab`.
    pub vocab: usize,
    /// Most nodes in a graph.
    pub max_nodes: usize,
    /// Most weight elements (trainable or not) in a graph.
    pub max_params: u64,
    /// Most floating-point operations per input token of one forward pass (multiply-adds count
    /// two; elementwise ops, sums and data movement one per element).
    pub max_flops_per_token: u64,
    /// Most elements of any one value, per sequence.
    pub max_value_elements: u64,
    /// Most elements of all computed values together, per sequence (what training keeps for
    /// the backward pass, and a bound on the scorer's memory).
    pub max_total_elements: u64,
}

/// A dimension: the symbolic batch, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Batch,
    N(usize),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => write!(f, "batch"),
            Dim::N(n) => write!(f, "{n}"),
        }
    }
}

/// What a value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `f32` numbers.
    Float,
    /// Token ids (integers in `0..=vocab`).
    Ids,
}

/// The type of a value: its kind and shape. A value computed from the tokens has
/// `dims[0] == Batch`; a value computed from weights alone has no batch axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ty {
    pub kind: Kind,
    pub dims: Vec<Dim>,
}

impl Ty {
    pub fn batched(&self) -> bool {
        self.dims.first() == Some(&Dim::Batch)
    }

    /// Elements per sequence (the batch axis counts one).
    pub fn elements(&self) -> u64 {
        self.dims
            .iter()
            .map(|d| match d {
                Dim::Batch => 1,
                Dim::N(n) => *n as u64,
            })
            .fold(1u64, |a, b| a.saturating_mul(b))
    }

    /// The shape with `batch` replaced by `batch_size`.
    pub fn concrete(&self, batch_size: usize) -> Vec<usize> {
        self.dims
            .iter()
            .map(|d| match d {
                Dim::Batch => batch_size,
                Dim::N(n) => *n,
            })
            .collect()
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        let kind = match self.kind {
            Kind::Float => "",
            Kind::Ids => "token ids ",
        };
        write!(f, "{kind}[{}]", dims.join(", "))
    }
}

/// One entry of a `reshape` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeEntry {
    Batch,
    N(usize),
}

/// A restricted `einsum`: two operands, one letter per axis, no letter twice in one operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EinsumSpec {
    pub a: Vec<char>,
    pub b: Vec<char>,
    pub out: Vec<char>,
}

/// How the shipped trainer initializes a weight (the scorer ignores it: it reads the weights).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with standard deviation `1 / sqrt(last axis)` (fan-in of a `[out, in]` weight).
    Normal,
    /// Every element `x` (the default of one-axis weights: zero).
    Fill(f64),
}

/// A node's operation with its attributes (inputs are in [`Node::inputs`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Weight {
        shape: Vec<usize>,
        trainable: bool,
        init: Init,
    },
    Embedding,
    Linear,
    Matmul,
    Einsum(EinsumSpec),
    Add,
    Mul {
        scale: Option<f64>,
    },
    Relu,
    Sum {
        axis: usize,
        keepdim: bool,
    },
    Gather {
        axis: usize,
    },
    Select {
        axis: usize,
        index: usize,
    },
    Slice {
        axis: usize,
        start: usize,
        end: usize,
        step: usize,
    },
    Reshape {
        shape: Vec<ShapeEntry>,
    },
    Permute {
        dims: Vec<usize>,
    },
    Unsqueeze {
        axis: usize,
    },
    Concat {
        axis: usize,
    },
    Window {
        axis: usize,
        size: usize,
        stride: usize,
        pad_before: usize,
        pad_after: usize,
    },
}

/// A checked node. Value 0 is the input `tokens`; node `i` produces value `i + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// Values read, by number.
    pub inputs: Vec<usize>,
    pub ty: Ty,
    /// Floating-point operations of this node per sequence.
    pub flops: u64,
}

/// One weight of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub trainable: bool,
    pub init: Init,
}

/// A graph that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// The value holding the logits.
    pub output: usize,
    /// Weight elements in all.
    pub params: u64,
    /// Floating-point operations per input token.
    pub flops_per_token: u64,
}

impl Graph {
    /// The type of value `v`.
    pub fn ty(&self, v: usize, limits: &Limits) -> Ty {
        if v == 0 {
            tokens_ty(limits)
        } else {
            self.nodes[v - 1].ty.clone()
        }
    }

    /// The weights the graph reads, in node order.
    pub fn weights(&self) -> Vec<WeightSpec> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Weight {
                    shape,
                    trainable,
                    init,
                } => Some(WeightSpec {
                    name: n.name.clone(),
                    shape: shape.clone(),
                    trainable: *trainable,
                    init: *init,
                }),
                _ => None,
            })
            .collect()
    }
}

fn tokens_ty(limits: &Limits) -> Ty {
    Ty {
        kind: Kind::Ids,
        dims: vec![Dim::Batch, Dim::N(limits.seq)],
    }
}

/// Why a graph was rejected: the node (number in file order, name) where it was found, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub node: Option<(usize, String)>,
    pub message: String,
    /// Whether the graph is well formed but over one of the profile's [`Limits`].
    pub over_limit: bool,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some((i, name)) => write!(f, "node {i} ({name:?}): {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for GraphError {}

fn graph_err(message: impl Into<String>) -> GraphError {
    GraphError {
        node: None,
        message: message.into(),
        over_limit: false,
    }
}

fn limit_err(message: String) -> GraphError {
    GraphError {
        over_limit: true,
        ..graph_err(message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    format: String,
    output: String,
    #[serde(default)]
    node: Vec<toml::Table>,
}

/// Parses and checks `text` (the contents of a `model.toml`) against `limits`.
pub fn parse(text: &str, limits: &Limits) -> Result<Graph, GraphError> {
    let raw: RawGraph =
        toml::from_str(text).map_err(|e| graph_err(format!("not a valid model file: {e}")))?;
    if raw.format != FORMAT {
        return Err(graph_err(format!(
            "format is {:?}; this scorer reads {FORMAT:?}",
            raw.format
        )));
    }
    if raw.node.is_empty() {
        return Err(graph_err("the graph has no nodes"));
    }
    if raw.node.len() > limits.max_nodes {
        return Err(limit_err(format!(
            "the graph has {} nodes; at most {} are allowed",
            raw.node.len(),
            limits.max_nodes
        )));
    }
    let mut checker = Checker {
        limits,
        names: BTreeMap::new(),
        types: vec![tokens_ty(limits)],
        nodes: Vec::new(),
        over_limit: std::cell::Cell::new(false),
    };
    checker.names.insert(TOKENS.to_string(), 0);
    let all_names: BTreeMap<String, usize> = raw
        .node
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            t.get("name")
                .and_then(|v| v.as_str())
                .map(|n| (n.to_string(), i))
        })
        .collect();
    for (i, table) in raw.node.into_iter().enumerate() {
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_default();
        checker
            .add(table, &all_names)
            .map_err(|message| GraphError {
                node: Some((i, name)),
                message,
                over_limit: checker.over_limit.take(),
            })?;
    }
    let output = *checker.names.get(&raw.output).ok_or_else(|| {
        graph_err(format!(
            "output {:?} is not a node of the graph",
            raw.output
        ))
    })?;
    let want = Ty {
        kind: Kind::Float,
        dims: vec![Dim::Batch, Dim::N(limits.seq), Dim::N(limits.vocab)],
    };
    let at = |v: usize| {
        let n = &checker.nodes[v - 1];
        Some((v - 1, n.name.clone()))
    };
    if output == 0 || checker.types[output] != want {
        return Err(GraphError {
            node: if output == 0 { None } else { at(output) },
            message: format!(
                "the output must be logits {want}, but {:?} is {}",
                raw.output, checker.types[output]
            ),
            over_limit: false,
        });
    }
    // Every value feeds the output: anything else is dead code or an unused weight.
    let mut used = vec![false; checker.types.len()];
    used[output] = true;
    for v in (1..checker.types.len()).rev() {
        if used[v] {
            for &i in &checker.nodes[v - 1].inputs {
                used[i] = true;
            }
        }
    }
    if !used[0] {
        return Err(graph_err("the output does not depend on the tokens"));
    }
    if let Some(v) = (1..used.len()).find(|&v| !used[v]) {
        return Err(GraphError {
            node: at(v),
            message: "never contributes to the output (remove it)".into(),
            over_limit: false,
        });
    }
    let params: u64 = checker
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Weight { .. }))
        .map(|n| n.ty.elements())
        .fold(0u64, |a, b| a.saturating_add(b));
    if params > limits.max_params {
        return Err(limit_err(format!(
            "the graph has {params} weight elements; at most {} are allowed",
            limits.max_params
        )));
    }
    let total: u64 = checker
        .nodes
        .iter()
        .filter(|n| !matches!(n.op, Op::Weight { .. }))
        .map(|n| n.ty.elements())
        .fold(0u64, |a, b| a.saturating_add(b));
    if total > limits.max_total_elements {
        return Err(limit_err(format!(
            "the graph's values hold {total} elements per sequence together; at most {} are allowed",
            limits.max_total_elements
        )));
    }
    let flops: u64 = checker
        .nodes
        .iter()
        .map(|n| n.flops)
        .fold(0u64, |a, b| a.saturating_add(b));
    let flops_per_token = flops.div_ceil(limits.seq as u64);
    if flops_per_token > limits.max_flops_per_token {
        return Err(limit_err(format!(
            "one forward pass takes {flops_per_token} floating-point operations per token; at most {} \
             are allowed",
            limits.max_flops_per_token
        )));
    }
    Ok(Graph {
        nodes: checker.nodes,
        output,
        params,
        flops_per_token,
    })
}

struct Checker<'a> {
    limits: &'a Limits,
    names: BTreeMap<String, usize>,
    types: Vec<Ty>,
    nodes: Vec<Node>,
    /// Set when the last error was a size cap rather than a malformed node.
    over_limit: std::cell::Cell<bool>,
}

/// The attributes of one node, consumed one by one so that leftovers are reported.
struct Attrs(BTreeMap<String, toml::Value>);

impl Attrs {
    fn take(&mut self, key: &str) -> Option<toml::Value> {
        self.0.remove(key)
    }

    fn int(&mut self, key: &str) -> Result<Option<i64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(i)),
            Some(v) => Err(format!("`{key}` must be an integer, not {v}")),
        }
    }

    fn count(&mut self, key: &str, default: Option<usize>) -> Result<usize, String> {
        match (self.int(key)?, default) {
            (Some(i), _) if i >= 0 => Ok(i as usize),
            (Some(i), _) => Err(format!("`{key}` must not be negative, got {i}")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("`{key}` is required")),
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> Result<bool, String> {
        match self.take(key) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(b),
            Some(v) => Err(format!("`{key}` must be true or false, not {v}")),
        }
    }

    fn finish(self, op: &str) -> Result<(), String> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("op {op:?} has no attribute `{k}`")),
        }
    }
}

/// `axis` (negative counts from the end) as an index into a value of `rank` axes
/// (`rank + 1` positions when inserting).
fn axis_of(raw: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let a = if raw < 0 { raw + r } else { raw };
    if a < 0 || a >= r {
        return Err(format!("axis {raw} is out of range for {rank} axes"));
    }
    Ok(a as usize)
}

fn product(dims: &[usize]) -> Result<u64, String> {
    dims.iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .ok_or_else(|| "the shape is too large".to_string())
}

/// Right-aligned broadcasting of two shapes, keeping `batch` on the first axis.
fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let x = (i + a.len()).checked_sub(n).map(|j| a[j]);
        let y = (i + b.len()).checked_sub(n).map(|j| b[j]);
        let d = match (x, y) {
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) if x == y => x,
            (Some(Dim::N(1)), Some(y)) => y,
            (Some(x), Some(Dim::N(1))) => x,
            (Some(x), Some(y)) => {
                return Err(format!(
                    "shapes {} and {} do not broadcast (axis {i}: {x} vs {y})",
                    show(a),
                    show(b)
                ))
            }
            (None, None) => unreachable!("i < max rank"),
        };
        out.push(d);
    }
    if out.iter().skip(1).any(|d| *d == Dim::Batch) {
        return Err(format!(
            "broadcasting {} with {} would move the batch axis off the first axis",
            show(a),
            show(b)
        ));
    }
    Ok(out)
}

fn show(dims: &[Dim]) -> String {
    Ty {
        kind: Kind::Float,
        dims: dims.to_vec(),
    }
    .to_string()
}

fn fixed(d: Dim, what: &str) -> Result<usize, String> {
    match d {
        Dim::N(n) => Ok(n),
        Dim::Batch => Err(format!("{what} cannot be the batch axis")),
    }
}

/// What an op's check gives: the op, its result type and its flops per sequence.
type Checked = Result<(Op, Ty, u64), String>;

/// The inputs of the op being checked: their types, and the op's name for messages.
struct OpInputs<'t> {
    op: &'t str,
    tys: &'t [Ty],
}

impl OpInputs<'_> {
    /// Fails unless the op has `lo` to `hi` inputs.
    fn arity(&self, lo: usize, hi: usize) -> Result<(), String> {
        let (op, tys) = (self.op, self.tys);
        if tys.len() < lo || tys.len() > hi {
            let want = if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo} to {hi}")
            };
            return Err(format!("op {op:?} takes {want} inputs, got {}", tys.len()));
        }
        Ok(())
    }

    /// Fails unless every input holds numbers.
    fn floats(&self) -> Result<(), String> {
        for (i, t) in self.tys.iter().enumerate() {
            if t.kind != Kind::Float {
                return Err(format!(
                    "input {i} holds token ids; arithmetic takes numbers (use `embedding` to \
                     turn ids into numbers)"
                ));
            }
        }
        Ok(())
    }
}

/// A value of numbers with these axes.
fn float(dims: Vec<Dim>) -> Ty {
    Ty {
        kind: Kind::Float,
        dims,
    }
}

/// Axes of a batched value: never the batch axis.
fn data_axis(t: &Ty, raw: i64, what: &str) -> Result<usize, String> {
    let a = axis_of(raw, t.dims.len())?;
    if a == 0 && t.batched() {
        return Err(format!(
            "{what} along axis 0, the batch axis, is not allowed: each sequence is \
             computed on its own"
        ));
    }
    Ok(a)
}

/// The `axis` attribute, which the op requires.
fn required_axis(attrs: &mut Attrs) -> Result<i64, String> {
    attrs
        .int("axis")?
        .ok_or_else(|| "`axis` is required".to_string())
}

impl Checker<'_> {
    fn add(
        &mut self,
        table: toml::Table,
        all_names: &BTreeMap<String, usize>,
    ) -> Result<(), String> {
        let mut attrs = Attrs(table.into_iter().collect());
        let name = match attrs.take("name") {
            Some(toml::Value::String(s)) => s,
            Some(v) => return Err(format!("`name` must be a string, not {v}")),
            None => return Err("`name` is required".into()),
        };
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(
                "names are 1 to 128 characters of letters, digits, `_`, `.` and `-`".into(),
            );
        }
        if self.names.contains_key(&name) {
            return Err(if name == TOKENS {
                "`tokens` is the graph's input; a node cannot take its name".into()
            } else {
                "a node of this name comes earlier".into()
            });
        }
        let op_name = match attrs.take("op") {
            Some(toml::Value::String(s)) => s,
            Some(v) => return Err(format!("`op` must be a string, not {v}")),
            None => return Err("`op` is required".into()),
        };
        let input_names: Vec<String> = match attrs.take("inputs") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    v => Err(format!("`inputs` must list names, not {v}")),
                })
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(format!("`inputs` must be a list of names, not {v}")),
        };
        let mut inputs = Vec::with_capacity(input_names.len());
        for n in &input_names {
            match self.names.get(n) {
                Some(&v) => inputs.push(v),
                None if n == &name => {
                    return Err("reads its own output (a graph cannot have cycles)".into())
                }
                None if all_names.contains_key(n) => {
                    return Err(format!(
                        "input {n:?} is defined later; nodes must come after their inputs, so a \
                         graph cannot have cycles"
                    ))
                }
                None => return Err(format!("input {n:?} is not a node of the graph")),
            }
        }
        let tys: Vec<Ty> = inputs.iter().map(|&v| self.types[v].clone()).collect();
        let (op, ty, flops) = self.check_op(&op_name, &mut attrs, &tys)?;
        attrs.finish(&op_name)?;
        if ty.dims.len() > MAX_RANK {
            return Err(format!("the result {ty} has more than {MAX_RANK} axes"));
        }
        // Weights are capped by the parameter count; everything computed, by this.
        // Every value keeps the batch axis first and at most once, whatever the op: the caps
        // count elements per sequence, which is only right for such values.
        if ty.dims.iter().skip(1).any(|d| *d == Dim::Batch) {
            return Err(format!(
                "the result {ty} carries the batch axis other than once, first: each sequence is \
                 computed on its own"
            ));
        }
        if !matches!(op, Op::Weight { .. }) && ty.elements() > self.limits.max_value_elements {
            self.over_limit.set(true);
            return Err(format!(
                "the result {ty} has {} elements per sequence; at most {} are allowed",
                ty.elements(),
                self.limits.max_value_elements
            ));
        }
        self.names.insert(name.clone(), self.types.len());
        self.types.push(ty.clone());
        self.nodes.push(Node {
            name,
            op,
            inputs,
            ty,
            flops,
        });
        Ok(())
    }

    /// Checks one op's inputs and attributes; returns the op, its result type and its flops per
    /// sequence. Each op has its own `check_*` below.
    fn check_op(&self, op: &str, attrs: &mut Attrs, tys: &[Ty]) -> Checked {
        let ins = OpInputs { op, tys };
        match op {
            "weight" => self.check_weight(&ins, attrs),
            "embedding" => self.check_embedding(&ins),
            "linear" => self.check_linear(&ins),
            "matmul" => self.check_matmul(&ins),
            "einsum" => self.check_einsum(&ins, attrs),
            "add" => self.check_add(&ins),
            "mul" => self.check_mul(&ins, attrs),
            "relu" => self.check_relu(&ins),
            "sum" => self.check_sum(&ins, attrs),
            "gather" => self.check_gather(&ins, attrs),
            "select" => self.check_select(&ins, attrs),
            "slice" => self.check_slice(&ins, attrs),
            "reshape" => self.check_reshape(&ins, attrs),
            "permute" => self.check_permute(&ins, attrs),
            "unsqueeze" => self.check_unsqueeze(&ins, attrs),
            "concat" => self.check_concat(&ins, attrs),
            "window" => self.check_window(&ins, attrs),
            other => Err(format!(
                "there is no op {other:?} (the ops are weight, embedding, linear, matmul, einsum, add, \
                 mul, relu, sum, gather, select, slice, reshape, permute, unsqueeze, concat, window)"
            )),
        }
    }

    /// `weight`: a parameter of the given `shape`, trainable or not, with its `init`.
    fn check_weight(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(0, 0)?;
        let shape = match attrs.take("shape") {
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::Integer(i) if i >= 1 => Ok(i as usize),
                    v => Err(format!(
                        "`shape` entries must be positive integers, not {v}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => return Err(format!("`shape` must be a list, not {v}")),
            None => return Err("`shape` is required".into()),
        };
        if shape.is_empty() || shape.len() > MAX_RANK {
            return Err(format!("a weight has 1 to {MAX_RANK} axes"));
        }
        product(&shape)?;
        let trainable = attrs.boolean("trainable", true)?;
        let init = match attrs.take("init") {
            None if shape.len() == 1 => Init::Fill(0.0),
            None => Init::Normal,
            Some(toml::Value::String(s)) if s == "normal" => Init::Normal,
            Some(toml::Value::Float(f)) if f.is_finite() => Init::Fill(f),
            Some(toml::Value::Integer(i)) => Init::Fill(i as f64),
            Some(v) => return Err(format!("`init` is \"normal\" or a finite number, not {v}")),
        };
        let ty = float(shape.iter().map(|&n| Dim::N(n)).collect());
        Ok((
            Op::Weight {
                shape,
                trainable,
                init,
            },
            ty,
            0,
        ))
    }

    /// `embedding`: rows of a `[rows, width]` table picked by token ids.
    fn check_embedding(&self, ins: &OpInputs) -> Checked {
        ins.arity(2, 2)?;
        let (ids, table) = (&ins.tys[0], &ins.tys[1]);
        if ids.kind != Kind::Ids {
            return Err("input 0 (the ids) must be token ids".into());
        }
        if table.kind != Kind::Float || table.batched() || table.dims.len() != 2 {
            return Err(format!(
                "input 1 (the table) must be a [rows, width] weight, got {table}"
            ));
        }
        let rows = fixed(table.dims[0], "rows")?;
        if rows < self.limits.vocab + 1 {
            return Err(format!(
                "the table has {rows} rows; token ids go up to {} (the mask id), so it needs at \
                 least {}",
                self.limits.vocab,
                self.limits.vocab + 1
            ));
        }
        let mut dims = ids.dims.clone();
        dims.push(table.dims[1]);
        let ty = float(dims);
        let flops = ty.elements();
        Ok((Op::Embedding, ty, flops))
    }

    /// `linear`: `x @ w^T` over the last axis, plus an optional bias.
    fn check_linear(&self, ins: &OpInputs) -> Checked {
        ins.arity(2, 3)?;
        ins.floats()?;
        let (x, w) = (&ins.tys[0], &ins.tys[1]);
        if w.batched() || w.dims.len() != 2 {
            return Err(format!("input 1 (the weight) must be [out, in], got {w}"));
        }
        let (out, inn) = (fixed(w.dims[0], "out")?, fixed(w.dims[1], "in")?);
        if x.dims.last() != Some(&Dim::N(inn)) {
            return Err(format!(
                "input 0 is {x}; its last axis must be the weight's `in` ({inn})"
            ));
        }
        if x.dims.len() < 2 {
            return Err(format!("input 0 is {x}; `linear` needs at least 2 axes"));
        }
        if let Some(b) = ins.tys.get(2) {
            if b.dims != [Dim::N(out)] {
                return Err(format!("input 2 (the bias) must be [{out}], got {b}"));
            }
        }
        let mut dims = x.dims.clone();
        *dims.last_mut().expect("rank >= 1") = Dim::N(out);
        let ty = float(dims);
        let rows = x.elements() / inn as u64;
        let flops = rows
            .saturating_mul(inn as u64)
            .saturating_mul(out as u64)
            .saturating_mul(2)
            .saturating_add(if ins.tys.len() == 3 { ty.elements() } else { 0 });
        Ok((Op::Linear, ty, flops))
    }

    /// `matmul`: a batched matrix product; leading axes broadcast, and a broadcast copy is a
    /// value under the cap.
    fn check_matmul(&self, ins: &OpInputs) -> Checked {
        ins.arity(2, 2)?;
        ins.floats()?;
        let (a, b) = (&ins.tys[0], &ins.tys[1]);
        if a.dims.len() < 2 || b.dims.len() < 2 {
            return Err(format!("both inputs need at least 2 axes, got {a} and {b}"));
        }
        let (ra, rb) = (a.dims.len(), b.dims.len());
        let k = fixed(a.dims[ra - 1], "the contracted axis")?;
        let kb = fixed(b.dims[rb - 2], "the contracted axis")?;
        let n = fixed(b.dims[rb - 1], "the last axis of input 1")?;
        if k != kb {
            return Err(format!(
                "{a} @ {b}: the last axis of input 0 ({k}) must equal the second-last of input 1 ({kb})"
            ));
        }
        let m = a.dims[ra - 2];
        let lead = if m == Dim::Batch {
            if ra != 2 || rb != 2 {
                return Err(format!(
                    "{a} @ {b}: with the batch axis as rows both inputs must have 2 axes"
                ));
            }
            Vec::new()
        } else {
            if b.dims[rb - 2..].contains(&Dim::Batch) {
                return Err(format!(
                    "{a} @ {b}: input 1's matrix axes cannot be the batch axis"
                ));
            }
            broadcast(&a.dims[..ra - 2], &b.dims[..rb - 2])?
        };
        // The interpreter multiplies a plain matrix (no leading axes but size 1) without
        // copying it; otherwise it copies each operand whose leading axes broadcast, and
        // each copy is a value under the cap like any other.
        let plain = |t: &Ty| t.dims[..t.dims.len() - 2].iter().all(|d| *d == Dim::N(1));
        if !plain(a) && !plain(b) {
            for (i, t) in [a, b].into_iter().enumerate() {
                let r = t.dims.len();
                if t.dims[..r - 2] != lead[..] {
                    let mut dims = lead.clone();
                    dims.extend_from_slice(&t.dims[r - 2..]);
                    let copy = float(dims);
                    if copy.elements() > self.limits.max_value_elements {
                        self.over_limit.set(true);
                        return Err(format!(
                            "input {i} ({t}) broadcast to {copy} has {} elements per \
                             sequence; at most {} are allowed",
                            copy.elements(),
                            self.limits.max_value_elements
                        ));
                    }
                }
            }
        }
        let mut dims = lead;
        dims.push(m);
        dims.push(Dim::N(n));
        let ty = float(dims);
        let flops = ty.elements().saturating_mul(2 * k as u64);
        Ok((Op::Matmul, ty, flops))
    }

    /// `einsum`: two operands by a `spec`; the full product over every letter is a value under the
    /// cap.
    fn check_einsum(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(2, 2)?;
        ins.floats()?;
        let spec = match attrs.take("spec") {
            Some(toml::Value::String(s)) => s,
            Some(v) => return Err(format!("`spec` must be a string, not {v}")),
            None => return Err("`spec` is required".into()),
        };
        let spec = parse_einsum(&spec)?;
        let (ty, flops) = einsum_type(&spec, &ins.tys[0], &ins.tys[1])?;
        // The interpreter forms the full product before summing: that is a value too.
        if flops / 2 > self.limits.max_value_elements {
            self.over_limit.set(true);
            return Err(format!(
                "the product over every letter has {} elements per sequence; at most {} are allowed",
                flops / 2,
                self.limits.max_value_elements
            ));
        }
        Ok((Op::Einsum(spec), ty, flops))
    }

    /// `add`: elementwise, broadcasting.
    fn check_add(&self, ins: &OpInputs) -> Checked {
        ins.arity(2, 2)?;
        ins.floats()?;
        let ty = float(broadcast(&ins.tys[0].dims, &ins.tys[1].dims)?);
        let flops = ty.elements();
        Ok((Op::Add, ty, flops))
    }

    /// `mul`: two inputs elementwise (broadcasting), or one input times a finite `scale`.
    fn check_mul(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 2)?;
        ins.floats()?;
        let scale = match attrs.take("scale") {
            None => None,
            Some(toml::Value::Float(f)) => Some(f),
            Some(toml::Value::Integer(i)) => Some(i as f64),
            Some(v) => return Err(format!("`scale` must be a number, not {v}")),
        };
        match (ins.tys.len(), scale) {
            (1, Some(s)) if s.is_finite() => {
                let ty = ins.tys[0].clone();
                let flops = ty.elements();
                Ok((Op::Mul { scale }, ty, flops))
            }
            (1, Some(s)) => Err(format!("`scale` must be finite, got {s}")),
            (2, None) => {
                let ty = float(broadcast(&ins.tys[0].dims, &ins.tys[1].dims)?);
                let flops = ty.elements();
                Ok((Op::Mul { scale: None }, ty, flops))
            }
            _ => Err("`mul` takes two inputs, or one input and `scale`".into()),
        }
    }

    /// `relu`: elementwise.
    fn check_relu(&self, ins: &OpInputs) -> Checked {
        ins.arity(1, 1)?;
        ins.floats()?;
        let ty = ins.tys[0].clone();
        let flops = ty.elements();
        Ok((Op::Relu, ty, flops))
    }

    /// `sum`: along a data `axis`, keeping it as 1 with `keepdim`.
    fn check_sum(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        ins.floats()?;
        let x = &ins.tys[0];
        let axis = data_axis(x, required_axis(attrs)?, "summing")?;
        let keepdim = attrs.boolean("keepdim", false)?;
        let mut dims = x.dims.clone();
        if keepdim {
            dims[axis] = Dim::N(1);
        } else {
            dims.remove(axis);
        }
        let flops = x.elements();
        Ok((Op::Sum { axis, keepdim }, float(dims), flops))
    }

    /// `gather`: numbers picked along a data `axis` by token ids.
    fn check_gather(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(2, 2)?;
        let (x, idx) = (&ins.tys[0], &ins.tys[1]);
        if x.kind != Kind::Float || idx.kind != Kind::Ids {
            return Err("`gather` takes numbers (input 0) and token ids (input 1)".into());
        }
        if x.dims.len() != idx.dims.len() {
            return Err(format!(
                "{x} and the index {idx} must have the same number of axes"
            ));
        }
        let axis = data_axis(x, required_axis(attrs)?, "gathering")?;
        for (i, (a, b)) in x.dims.iter().zip(&idx.dims).enumerate() {
            if i != axis && a != b {
                return Err(format!(
                    "{x} and the index {idx} must agree on every axis but {axis}"
                ));
            }
        }
        let len = fixed(x.dims[axis], "the gathered axis")?;
        if len < self.limits.vocab + 1 {
            return Err(format!(
                "token ids go up to {}, but axis {axis} of {x} has only {len} entries",
                self.limits.vocab
            ));
        }
        let ty = float(idx.dims.clone());
        let flops = ty.elements();
        Ok((Op::Gather { axis }, ty, flops))
    }

    /// `select`: one `index` of a data `axis`, which goes away.
    fn check_select(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        let x = &ins.tys[0];
        let axis = data_axis(x, required_axis(attrs)?, "selecting")?;
        let index = attrs.count("index", None)?;
        let len = fixed(x.dims[axis], "the selected axis")?;
        if index >= len {
            return Err(format!(
                "index {index} is out of range for axis {axis} of {x}"
            ));
        }
        let mut dims = x.dims.clone();
        dims.remove(axis);
        let ty = Ty { kind: x.kind, dims };
        let flops = ty.elements();
        Ok((Op::Select { axis, index }, ty, flops))
    }

    /// `slice`: `start:end:step` of a data `axis`.
    fn check_slice(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        let x = &ins.tys[0];
        let axis = data_axis(x, required_axis(attrs)?, "slicing")?;
        let len = fixed(x.dims[axis], "the sliced axis")?;
        let start = attrs.count("start", Some(0))?;
        let end = attrs.count("end", Some(len))?;
        let step = attrs.count("step", Some(1))?;
        if step == 0 || start >= end || end > len {
            return Err(format!(
                "slice {start}:{end}:{step} of an axis of {len} must satisfy \
                 0 <= start < end <= {len} and step >= 1"
            ));
        }
        let mut dims = x.dims.clone();
        dims[axis] = Dim::N((end - start).div_ceil(step));
        let ty = Ty { kind: x.kind, dims };
        let flops = ty.elements();
        Ok((
            Op::Slice {
                axis,
                start,
                end,
                step,
            },
            ty,
            flops,
        ))
    }

    /// `reshape`: to `shape` (sizes, `"batch"` or `"seq"`), the batch axis kept first.
    fn check_reshape(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        let x = &ins.tys[0];
        let shape = match attrs.take("shape") {
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::Integer(i) if i >= 1 => Ok(ShapeEntry::N(i as usize)),
                    toml::Value::String(s) if s == "batch" => Ok(ShapeEntry::Batch),
                    toml::Value::String(s) if s == "seq" => Ok(ShapeEntry::N(self.limits.seq)),
                    v => Err(format!(
                        "`shape` entries are positive integers, \"batch\" or \"seq\", not {v}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => return Err(format!("`shape` must be a list, not {v}")),
            None => return Err("`shape` is required".into()),
        };
        let batches = shape.iter().filter(|e| **e == ShapeEntry::Batch).count();
        if x.batched() && (batches != 1 || shape[0] != ShapeEntry::Batch) {
            return Err(
                "the input has a batch axis, so the shape must start with \"batch\" and name it once"
                    .into(),
            );
        }
        if !x.batched() && batches != 0 {
            return Err("the input has no batch axis, so the shape cannot name one".into());
        }
        let dims: Vec<Dim> = shape
            .iter()
            .map(|e| match e {
                ShapeEntry::Batch => Dim::Batch,
                ShapeEntry::N(n) => Dim::N(*n),
            })
            .collect();
        let ty = Ty { kind: x.kind, dims };
        let fixed_of = |t: &Ty| {
            product(
                &t.dims
                    .iter()
                    .filter_map(|d| match d {
                        Dim::N(n) => Some(*n),
                        Dim::Batch => None,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        if fixed_of(x)? != fixed_of(&ty)? {
            return Err(format!("cannot reshape {x} into {ty}: the sizes differ"));
        }
        Ok((Op::Reshape { shape }, ty, 0))
    }

    /// `permute`: axes reordered by `dims`, the batch axis kept first.
    fn check_permute(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        let x = &ins.tys[0];
        let dims = match attrs.take("dims") {
            Some(toml::Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    toml::Value::Integer(i) => axis_of(i, x.dims.len()),
                    v => Err(format!("`dims` entries must be integers, not {v}")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => return Err(format!("`dims` must be a list, not {v}")),
            None => return Err("`dims` is required".into()),
        };
        let mut sorted = dims.clone();
        sorted.sort_unstable();
        if sorted != (0..x.dims.len()).collect::<Vec<_>>() {
            return Err(format!(
                "`dims` {dims:?} is not a permutation of the axes of {x}"
            ));
        }
        if x.batched() && dims[0] != 0 {
            return Err("the batch axis must stay first".into());
        }
        let ty = Ty {
            kind: x.kind,
            dims: dims.iter().map(|&d| x.dims[d]).collect(),
        };
        let flops = ty.elements();
        Ok((Op::Permute { dims }, ty, flops))
    }

    /// `unsqueeze`: a new axis of 1 at `axis`, never before the batch axis.
    fn check_unsqueeze(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        let x = &ins.tys[0];
        let axis = axis_of(required_axis(attrs)?, x.dims.len() + 1)?;
        if axis == 0 && x.batched() {
            return Err("a new axis before the batch axis is not allowed".into());
        }
        let mut dims = x.dims.clone();
        dims.insert(axis, Dim::N(1));
        Ok((Op::Unsqueeze { axis }, Ty { kind: x.kind, dims }, 0))
    }

    /// `concat`: 2 to 64 inputs joined along a data `axis`.
    fn check_concat(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(2, 64)?;
        let first = &ins.tys[0];
        let axis = data_axis(first, required_axis(attrs)?, "joining")?;
        let mut total = 0usize;
        for (i, t) in ins.tys.iter().enumerate() {
            let same_elsewhere = t.kind == first.kind
                && t.dims.len() == first.dims.len()
                && t.dims
                    .iter()
                    .zip(&first.dims)
                    .enumerate()
                    .all(|(j, (a, b))| j == axis || a == b);
            if !same_elsewhere {
                return Err(format!(
                    "input {i} is {t}; every input must be like input 0 ({first}) except along axis {axis}"
                ));
            }
            total += fixed(t.dims[axis], "the joined axis")?;
        }
        let mut dims = first.dims.clone();
        dims[axis] = Dim::N(total);
        let ty = Ty {
            kind: first.kind,
            dims,
        };
        let flops = ty.elements();
        Ok((Op::Concat { axis }, ty, flops))
    }

    /// `window`: sliding windows of `size` along a data `axis`, with stride and padding.
    fn check_window(&self, ins: &OpInputs, attrs: &mut Attrs) -> Checked {
        ins.arity(1, 1)?;
        ins.floats()?;
        let x = &ins.tys[0];
        let axis = data_axis(x, required_axis(attrs)?, "windows")?;
        let size = attrs.count("size", None)?;
        let stride = attrs.count("stride", Some(1))?;
        let pad_before = attrs.count("pad_before", Some(0))?;
        let pad_after = attrs.count("pad_after", Some(0))?;
        let len = fixed(x.dims[axis], "the windowed axis")?;
        let padded = len + pad_before + pad_after;
        // A window of padding alone computes nothing, so padding stays below the size.
        if size == 0 || stride == 0 || size > padded || pad_before >= size || pad_after >= size {
            return Err(format!(
                "windows of {size} with stride {stride} and padding {pad_before}+{pad_after} do not fit an axis of {len}"
            ));
        }
        let count = (padded - size) / stride + 1;
        let mut dims = x.dims.clone();
        dims[axis] = Dim::N(count);
        dims.push(Dim::N(size));
        let ty = float(dims);
        let flops = ty.elements();
        Ok((
            Op::Window {
                axis,
                size,
                stride,
                pad_before,
                pad_after,
            },
            ty,
            flops,
        ))
    }
}

/// Parses `"ab,bc->ac"`: lowercase letters, two operands, no letter twice in one operand or in
/// the output, every output letter in an operand.
pub fn parse_einsum(spec: &str) -> Result<EinsumSpec, String> {
    let bad = |why: &str| format!("einsum spec {spec:?}: {why}");
    let (lhs, out) = spec
        .split_once("->")
        .ok_or_else(|| bad("needs `->` and an output"))?;
    let (a, b) = lhs
        .split_once(',')
        .ok_or_else(|| bad("needs exactly two operands"))?;
    let letters = |s: &str| -> Result<Vec<char>, String> {
        let v: Vec<char> = s.trim().chars().collect();
        if v.is_empty() || !v.iter().all(|c| c.is_ascii_lowercase()) {
            return Err(bad("each part is one or more lowercase letters"));
        }
        let mut seen = v.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != v.len() {
            return Err(bad(
                "a letter appears twice in one part (diagonals are not supported)",
            ));
        }
        Ok(v)
    };
    if b.contains(',') {
        return Err(bad("needs exactly two operands"));
    }
    let spec = EinsumSpec {
        a: letters(a)?,
        b: letters(b)?,
        out: letters(out)?,
    };
    if let Some(c) = spec
        .out
        .iter()
        .find(|c| !spec.a.contains(c) && !spec.b.contains(c))
    {
        return Err(bad(&format!("output letter {c} is in no operand")));
    }
    Ok(spec)
}

/// The letters of an einsum in the order its interpreter lays them out: output letters, then
/// the summed ones.
pub fn einsum_letters(spec: &EinsumSpec) -> Vec<char> {
    let mut all = spec.out.clone();
    for c in spec.a.iter().chain(&spec.b) {
        if !all.contains(c) {
            all.push(*c);
        }
    }
    all
}

fn einsum_type(spec: &EinsumSpec, a: &Ty, b: &Ty) -> Result<(Ty, u64), String> {
    if spec.a.len() != a.dims.len() || spec.b.len() != b.dims.len() {
        return Err(format!(
            "the spec's operands have {} and {} letters but the inputs {a} and {b} have {} and {} axes",
            spec.a.len(),
            spec.b.len(),
            a.dims.len(),
            b.dims.len()
        ));
    }
    // An ordered map: every decision below is the same on every run.
    let mut size: BTreeMap<char, Dim> = BTreeMap::new();
    for (letters, ty) in [(&spec.a, a), (&spec.b, b)] {
        for (c, d) in letters.iter().zip(&ty.dims) {
            match size.insert(*c, *d) {
                Some(prev) if prev != *d => {
                    return Err(format!(
                        "letter {c} is {prev} in one operand and {d} in the other"
                    ))
                }
                _ => {}
            }
        }
    }
    // The batch rule, explicitly: a batched input carries the batch axis as its first letter
    // (values keep it first and once); two batched inputs must name it with the same letter;
    // that letter is the output's first. Anything else would pair or sum sequences of the
    // batch with each other, and the caps (which count the batch axis once) would not see it.
    let batch_of = |letters: &[char], ty: &Ty| ty.batched().then(|| letters[0]);
    let batch_letter = match (batch_of(&spec.a, a), batch_of(&spec.b, b)) {
        (Some(x), Some(y)) if x != y => {
            return Err(format!(
                "both inputs carry the batch axis, as letters {x} and {y}; two batched inputs must \
                 name it with the same letter (each sequence is computed on its own)"
            ))
        }
        (Some(x), _) | (None, Some(x)) => Some(x),
        (None, None) => None,
    };
    if let Some((c, _)) = size
        .iter()
        .find(|(c, d)| **d == Dim::Batch && Some(**c) != batch_letter)
    {
        return Err(format!(
            "letter {c} is a second batch axis; an einsum carries the batch axis only as the \
             first letter of its batched inputs and of its output"
        ));
    }
    if let Some(c) = batch_letter {
        if spec.out.first() != Some(&c) {
            return Err(format!(
                "letter {c} is the batch axis; it must be the first output letter (the batch is never summed or moved)"
            ));
        }
    }
    let dims: Vec<Dim> = spec.out.iter().map(|c| size[c]).collect();
    let all = einsum_letters(spec);
    let work = all
        .iter()
        .map(|c| match size[c] {
            Dim::Batch => 1,
            Dim::N(n) => n as u64,
        })
        .fold(1u64, |x, y| x.saturating_mul(y));
    Ok((
        Ty {
            kind: Kind::Float,
            dims,
        },
        work.saturating_mul(2),
    ))
}
