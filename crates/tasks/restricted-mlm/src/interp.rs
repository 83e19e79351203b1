//! The interpreter: the only forward pass a submission has.
//!
//! [`MlmModel::forward`] evaluates a checked [`Graph`] node by node with one candle operation
//! (or a fixed composition of indexing operations) per op of the language. Nothing here looks at
//! values to decide what to compute: every shape was fixed by [`crate::graph::parse`], so the
//! same code runs for scoring and, through candle's autograd, for training.
//!
//! The checker is trusted, but not blindly: [`MlmModel::forward_checked`] bounds every tensor an
//! op is about to allocate (from the real shapes of its inputs, before allocating) by the
//! profile's cap on one value times the batch, checks every result against its checked shape,
//! and reports any failure inside a node as a [`NodeError`] naming it. A node error is a defect
//! of the submission's graph (the scorer logs it as an invalid entry), never an internal error;
//! only failures outside the graph (the device, the token batch) are [`ForwardError::Device`].

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::graph::{einsum_letters, Graph, Init, Limits, Op};

/// A node of the submission's graph that could not be evaluated as checked: a result whose
/// shape differs from the checked one, an allocation over the bound, or an operation candle
/// refused. The submission's fault, reported as an invalid entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    /// Position of the node in the file (as in the checker's messages).
    pub index: usize,
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} ({:?}) failed at evaluation: {}",
            self.index, self.name, self.message
        )
    }
}

impl std::error::Error for NodeError {}

/// Why a forward pass failed.
#[derive(Debug)]
pub enum ForwardError {
    /// A node of the graph: the submission's fault.
    Node(NodeError),
    /// Anything outside the graph (the tokens, the device, the loss): the scorer's.
    Device(candle_core::Error),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Node(e) => e.fmt(f),
            ForwardError::Device(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ForwardError {}

impl From<candle_core::Error> for ForwardError {
    fn from(e: candle_core::Error) -> Self {
        ForwardError::Device(e)
    }
}

/// Why one op failed inside [`MlmModel::forward_checked`] (before it names the node).
enum OpError {
    /// The op would allocate more than the bound.
    Bound(String),
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        OpError::Candle(e)
    }
}

/// Refuses an allocation of `elements` elements over `bound` before it happens.
fn guard(elements: u128, bound: u128, what: &str) -> Result<(), OpError> {
    if elements > bound {
        return Err(OpError::Bound(format!(
            "{what} would hold {elements} elements, over the bound of {bound} for this batch \
             (the profile's cap on one value times the sequences in the batch)"
        )));
    }
    Ok(())
}

fn count(dims: &[usize]) -> u128 {
    dims.iter().map(|&d| d as u128).product()
}

/// A graph with its weights on a device.
#[derive(Debug, Clone)]
pub struct MlmModel {
    graph: Graph,
    limits: Limits,
    /// One variable per weight node (constants too; the trainer leaves those alone).
    weights: BTreeMap<String, Var>,
    /// For each value, the last node that reads it (so values are freed early).
    last_use: Vec<usize>,
    device: Device,
}

fn last_uses(graph: &Graph) -> Vec<usize> {
    let mut last = vec![0usize; graph.nodes.len() + 1];
    for (i, n) in graph.nodes.iter().enumerate() {
        for &v in &n.inputs {
            last[v] = i + 1;
        }
    }
    last[graph.output] = usize::MAX;
    last
}

impl MlmModel {
    /// The model of `graph` with `weights` (whichever way they were made) on `device`.
    fn with_weights(
        graph: Graph,
        limits: Limits,
        weights: BTreeMap<String, Var>,
        device: &Device,
    ) -> Self {
        let last_use = last_uses(&graph);
        MlmModel {
            graph,
            limits,
            weights,
            last_use,
            device: device.clone(),
        }
    }

    /// The graph with weights from the trainer's initialization (`init` of each weight node),
    /// drawn from `seed`.
    pub fn init(
        graph: Graph,
        limits: Limits,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut weights = BTreeMap::new();
        for w in graph.weights() {
            let n: usize = w.shape.iter().product();
            let data: Vec<f32> = match w.init {
                Init::Fill(x) => vec![x as f32; n],
                Init::Normal => {
                    let std = 1.0 / (*w.shape.last().expect("rank >= 1") as f64).sqrt();
                    (0..n)
                        .map(|_| {
                            // Box-Muller from two uniforms.
                            let u1: f64 = 1.0 - rng.gen::<f64>();
                            let u2: f64 = rng.gen();
                            let z =
                                (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                            (z * std) as f32
                        })
                        .collect()
                }
            };
            let t = Tensor::from_vec(data, w.shape.as_slice(), device)?;
            weights.insert(w.name.clone(), Var::from_tensor(&t)?);
        }
        Ok(MlmModel::with_weights(graph, limits, weights, device))
    }

    /// The graph with weights read from the safetensors file at `path`, checked by
    /// [`rdbench_lm::load_checked`]: exactly the graph's weights, `F32`, declared shapes, finite.
    pub fn load(
        graph: Graph,
        limits: Limits,
        path: &Path,
        device: &Device,
    ) -> Result<Self, rdbench_lm::LoadError> {
        let expected: Vec<(String, Vec<usize>)> = graph
            .weights()
            .into_iter()
            .map(|w| (w.name, w.shape))
            .collect();
        let tensors = rdbench_lm::load_checked(path, &expected, device)?;
        let weights = tensors
            .into_iter()
            .map(|(k, t)| Var::from_tensor(&t).map(|v| (k, v)))
            .collect::<candle_core::Result<_>>()
            .map_err(|e| rdbench_lm::LoadError {
                path: path.to_path_buf(),
                kind: rdbench_lm::LoadErrorKind::Io(e.to_string()),
            })?;
        Ok(MlmModel::with_weights(graph, limits, weights, device))
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The variables the trainer updates (weights not marked `trainable = false`).
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.graph
            .weights()
            .into_iter()
            .filter(|w| w.trainable)
            .map(|w| self.weights[&w.name].clone())
            .collect()
    }

    /// Every weight by name (for saving).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.weights
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (`u32`, each in `0..=vocab`).
    /// For training: every failure is a candle error (see [`MlmModel::forward_checked`]).
    pub fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_checked(tokens).map_err(|e| match e {
            ForwardError::Device(e) => e,
            ForwardError::Node(e) => candle_core::Error::Msg(e.to_string()),
        })
    }

    /// [`MlmModel::forward`], telling a failure of a node of the graph (the submission's
    /// fault) from any other.
    pub fn forward_checked(&self, tokens: &Tensor) -> Result<Tensor, ForwardError> {
        let (batch, seq) = tokens.dims2()?;
        if seq != self.limits.seq {
            return Err(ForwardError::Device(candle_core::Error::Msg(format!(
                "expected sequences of {} tokens, got {seq}",
                self.limits.seq
            ))));
        }
        // Every value the checker admitted has at most `max_value_elements` per sequence, so no
        // op of a checked graph allocates more than this; one that would is refused first.
        let bound = (self.limits.max_value_elements as u128).saturating_mul(batch.max(1) as u128);
        let mut values: Vec<Option<Tensor>> = vec![None; self.graph.nodes.len() + 1];
        values[0] = Some(tokens.to_dtype(DType::U32)?.to_device(&self.device)?);
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let inputs: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&v| values[v].as_ref())
                .collect::<Option<_>>()
                .ok_or_else(|| node_error(i, &node.name, "an input was freed before use".into()))?;
            let want = node.ty.concrete(batch);
            let out = self.op(node, &inputs, bound).map_err(|e| {
                let message = match e {
                    OpError::Bound(m) => m,
                    OpError::Candle(e) => e.to_string(),
                };
                node_error(i, &node.name, message)
            })?;
            if out.dims() != want.as_slice() {
                return Err(node_error(
                    i,
                    &node.name,
                    format!(
                        "computed a value of shape {:?}; its checked shape is {want:?}",
                        out.dims()
                    ),
                ));
            }
            values[i + 1] = Some(out);
            for &v in &node.inputs {
                if self.last_use[v] == i + 1 {
                    values[v] = None;
                }
            }
        }
        values[self.graph.output].take().ok_or_else(|| {
            ForwardError::Device(candle_core::Error::Msg("the output was freed".into()))
        })
    }

    /// One node's value from its inputs, every allocation bounded by `bound` elements first.
    fn op(&self, node: &crate::graph::Node, x: &[&Tensor], bound: u128) -> Result<Tensor, OpError> {
        let arg = |j: usize| -> Result<&Tensor, OpError> {
            x.get(j).copied().ok_or_else(|| {
                OpError::Candle(candle_core::Error::Msg(format!("input {j} is missing")))
            })
        };
        let out = match &node.op {
            Op::Weight { .. } => self
                .weights
                .get(&node.name)
                .ok_or_else(|| {
                    OpError::Candle(candle_core::Error::Msg("the weight was not loaded".into()))
                })?
                .as_tensor()
                .clone(),
            Op::Embedding => {
                let (ids, table) = (arg(0)?, arg(1)?);
                let mut shape = ids.dims().to_vec();
                shape.push(table.dim(1)?);
                guard(count(&shape), bound, "the embedding")?;
                table.index_select(&ids.flatten_all()?, 0)?.reshape(shape)?
            }
            Op::Linear => {
                // Contiguous rows let candle fold the leading axes into one product instead of
                // copying the weight once per row block (and refusing strided layouts).
                let (a, w) = (arg(0)?.contiguous()?, arg(1)?);
                let mut shape = a.dims().to_vec();
                if let Some(last) = shape.last_mut() {
                    *last = w.dim(0)?;
                }
                guard(count(&shape), bound, "the product")?;
                let y = a.broadcast_matmul(&w.t()?)?;
                match x.get(2) {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                }
            }
            Op::Matmul => matmul(arg(0)?, arg(1)?, bound)?,
            Op::Einsum(spec) => {
                let letters = einsum_letters(spec);
                let a = einsum_expand(arg(0)?, &spec.a, &letters)?;
                let b = einsum_expand(arg(1)?, &spec.b, &letters)?;
                // The product over every letter is formed before the sum: bound it first.
                let full: Vec<usize> = a
                    .dims()
                    .iter()
                    .zip(b.dims())
                    .map(|(&p, &q)| p.max(q))
                    .collect();
                guard(
                    count(&full),
                    bound,
                    "the einsum's product over every letter",
                )?;
                let mut p = a.broadcast_mul(&b)?;
                // Summed letters are the trailing axes.
                for axis in (spec.out.len()..letters.len()).rev() {
                    p = p.sum(axis)?;
                }
                p
            }
            Op::Add | Op::Mul { scale: None } => {
                let (a, b) = (arg(0)?, arg(1)?);
                let shape = a
                    .shape()
                    .broadcast_shape_binary_op(b.shape(), "broadcast")?;
                guard(count(shape.dims()), bound, "the result")?;
                if matches!(node.op, Op::Add) {
                    a.broadcast_add(b)?
                } else {
                    a.broadcast_mul(b)?
                }
            }
            Op::Mul { scale: Some(s) } => (arg(0)? * *s)?,
            Op::Relu => arg(0)?.relu()?,
            Op::Sum { axis, keepdim } => {
                if *keepdim {
                    arg(0)?.sum_keepdim(*axis)?
                } else {
                    arg(0)?.sum(*axis)?
                }
            }
            Op::Gather { axis } => {
                let (t, idx) = (arg(0)?, arg(1)?);
                guard(count(idx.dims()), bound, "the gathered value")?;
                t.contiguous()?.gather(&idx.contiguous()?, *axis)?
            }
            Op::Select { axis, index } => arg(0)?.narrow(*axis, *index, 1)?.squeeze(*axis)?,
            Op::Slice {
                axis,
                start,
                end,
                step,
            } => {
                let t = arg(0)?;
                if *step == 1 {
                    t.narrow(*axis, *start, end - start)?
                } else {
                    let idx: Vec<u32> = (*start..*end).step_by(*step).map(|i| i as u32).collect();
                    let n = idx.len();
                    t.index_select(&Tensor::from_vec(idx, n, &self.device)?, *axis)?
                }
            }
            Op::Reshape { .. } => {
                let t = arg(0)?;
                // The target's batch entry is the input's first axis when it has one.
                let b = if node.ty.batched() { t.dim(0)? } else { 1 };
                let shape = node.ty.concrete(b);
                if count(&shape) != count(t.dims()) {
                    return Err(OpError::Candle(candle_core::Error::Msg(format!(
                        "cannot reshape {:?} into {shape:?}: the sizes differ",
                        t.dims()
                    ))));
                }
                t.reshape(shape)?
            }
            Op::Permute { dims } => arg(0)?.permute(dims.as_slice())?.contiguous()?,
            Op::Unsqueeze { axis } => arg(0)?.unsqueeze(*axis)?,
            Op::Concat { axis } => {
                let total: u128 = x.iter().map(|t| count(t.dims())).sum();
                guard(total, bound, "the joined value")?;
                Tensor::cat(x, *axis)?
            }
            Op::Window {
                axis,
                size,
                stride,
                pad_before,
                pad_after,
            } => window(
                arg(0)?,
                *axis,
                *size,
                *stride,
                *pad_before,
                *pad_after,
                bound,
            )?,
        };
        Ok(out)
    }
}

fn node_error(index: usize, name: &str, message: String) -> ForwardError {
    ForwardError::Node(NodeError {
        index,
        name: name.to_string(),
        message,
    })
}

/// Batched matrix product with broadcast leading axes (shapes checked by the graph). A plain
/// matrix (no leading axes but size 1) is never copied per batch: with `b` plain, `a`'s leading
/// axes fold into its rows; with `a` plain, the product is computed transposed. Only when both
/// have leading axes are the operands broadcast and copied, each copy bounded first.
fn matmul(a: &Tensor, b: &Tensor, bound: u128) -> Result<Tensor, OpError> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 2 || rb < 2 {
        return Err(OpError::Candle(candle_core::Error::Msg(format!(
            "matmul of {:?} and {:?}: both need 2 axes",
            a.dims(),
            b.dims()
        ))));
    }
    let (la, lb) = (&a.dims()[..ra - 2], &b.dims()[..rb - 2]);
    let (m, k, n) = (a.dims()[ra - 2], a.dims()[ra - 1], b.dims()[rb - 1]);
    let width = la.len().max(lb.len());
    let mut lead = Vec::with_capacity(width);
    for i in 0..width {
        let x = (i + la.len())
            .checked_sub(width)
            .map(|j| la[j])
            .unwrap_or(1);
        let y = (i + lb.len())
            .checked_sub(width)
            .map(|j| lb[j])
            .unwrap_or(1);
        lead.push(x.max(y));
    }
    let mut out_shape = lead.clone();
    out_shape.extend([m, n]);
    guard(count(&out_shape), bound, "the product")?;
    let plain = |l: &[usize]| l.iter().all(|&d| d == 1);
    let y = if plain(lb) {
        // [rows * m, k] @ [k, n]: `a`'s leading axes are the output's (up to size-1 axes).
        let a2 = a.contiguous()?.reshape((count(la) as usize * m, k))?;
        a2.matmul(&b.contiguous()?.reshape((k, n))?)?
    } else if plain(la) {
        // (b^T a^T)^T: [rows * n, k] @ [k, m], then back to [.., m, n].
        let bt = b.transpose(rb - 2, rb - 1)?.contiguous()?;
        let bt = bt.reshape((count(lb) as usize * n, k))?;
        let at = a.contiguous()?.reshape((m, k))?.t()?.contiguous()?;
        let mut shape: Vec<usize> = lb.to_vec();
        shape.extend([n, m]);
        let r = bt.matmul(&at)?.reshape(shape)?;
        let last = r.rank() - 1;
        r.transpose(last - 1, last)?.contiguous()?
    } else {
        let full = |t: &Tensor, r: usize| -> Result<Tensor, OpError> {
            let mut shape = lead.clone();
            shape.extend_from_slice(&t.dims()[r - 2..]);
            if t.dims() != shape.as_slice() {
                guard(count(&shape), bound, "a broadcast operand")?;
            }
            Ok(t.broadcast_as(shape)?.contiguous()?)
        };
        full(a, ra)?.matmul(&full(b, rb)?)?
    };
    Ok(y.reshape(out_shape)?)
}

/// `t` (axes named by `own`) permuted into the order of `letters` with size-1 axes for the
/// letters it lacks.
fn einsum_expand(t: &Tensor, own: &[char], letters: &[char]) -> candle_core::Result<Tensor> {
    let order: Vec<usize> = letters
        .iter()
        .filter_map(|c| own.iter().position(|o| o == c))
        .collect();
    let mut x = t.permute(order.as_slice())?;
    for (i, c) in letters.iter().enumerate() {
        if !own.contains(c) {
            x = x.unsqueeze(i)?;
        }
    }
    Ok(x)
}

/// Sliding windows along `axis` with zero padding; the window axis is appended last.
fn window(
    x: &Tensor,
    axis: usize,
    size: usize,
    stride: usize,
    pad_before: usize,
    pad_after: usize,
    bound: u128,
) -> Result<Tensor, OpError> {
    let len = x.dim(axis)? + pad_before + pad_after;
    if size == 0 || stride == 0 || size > len {
        return Err(OpError::Candle(candle_core::Error::Msg(format!(
            "windows of {size} with stride {stride} do not fit an axis of {len}"
        ))));
    }
    let count = (len - size) / stride + 1;
    guard(
        self::count(x.dims()) / x.dim(axis)?.max(1) as u128 * (count * size) as u128,
        bound,
        "the windows",
    )?;
    let padded = x.pad_with_zeros(axis, pad_before, pad_after)?;
    let idx: Vec<u32> = (0..count)
        .flat_map(|o| (0..size).map(move |j| (o * stride + j) as u32))
        .collect();
    let n = idx.len();
    let picked = padded.index_select(&Tensor::from_vec(idx, n, x.device())?, axis)?;
    let mut shape = x.dims().to_vec();
    shape[axis] = count;
    shape.insert(axis + 1, size);
    let split = picked.reshape(shape.as_slice())?;
    let rank = shape.len();
    let mut order: Vec<usize> = (0..rank).filter(|&d| d != axis + 1).collect();
    order.push(axis + 1);
    Ok(split.permute(order.as_slice())?.contiguous()?)
}
