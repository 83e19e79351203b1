//! The interpreter: the only forward pass a submission has.
//!
//! [`MlmModel::forward`] evaluates a checked [`Graph`] node by node with one candle operation
//! (or a fixed composition of indexing operations) per op of the language. Nothing here looks at
//! values to decide what to compute: every shape was fixed by [`crate::graph::parse`], so the
//! same code runs for scoring and, through candle's autograd, for training.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::graph::{einsum_letters, Graph, Init, Limits, Op};

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
        let last_use = last_uses(&graph);
        Ok(MlmModel {
            graph,
            limits,
            weights,
            last_use,
            device: device.clone(),
        })
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
        let last_use = last_uses(&graph);
        Ok(MlmModel {
            graph,
            limits,
            weights,
            last_use,
            device: device.clone(),
        })
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
    pub fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        if seq != self.limits.seq {
            candle_core::bail!(
                "expected sequences of {} tokens, got {seq}",
                self.limits.seq
            );
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.graph.nodes.len() + 1];
        values[0] = Some(tokens.to_dtype(DType::U32)?.to_device(&self.device)?);
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let get = |j: usize| -> &Tensor {
                values[node.inputs[j]]
                    .as_ref()
                    .expect("inputs are computed before they are read and freed after")
            };
            let out = match &node.op {
                Op::Weight { .. } => self.weights[&node.name].as_tensor().clone(),
                Op::Embedding => {
                    let (ids, table) = (get(0), get(1));
                    let mut shape = ids.dims().to_vec();
                    shape.push(table.dim(1)?);
                    table.index_select(&ids.flatten_all()?, 0)?.reshape(shape)?
                }
                Op::Linear => {
                    let y = get(0).broadcast_matmul(&get(1).t()?)?;
                    match node.inputs.get(2) {
                        Some(_) => y.broadcast_add(get(2))?,
                        None => y,
                    }
                }
                Op::Matmul => matmul(get(0), get(1))?,
                Op::Einsum(spec) => {
                    let letters = einsum_letters(spec);
                    let a = einsum_expand(get(0), &spec.a, &letters)?;
                    let b = einsum_expand(get(1), &spec.b, &letters)?;
                    let mut p = a.broadcast_mul(&b)?;
                    // Summed letters are the trailing axes.
                    for axis in (spec.out.len()..letters.len()).rev() {
                        p = p.sum(axis)?;
                    }
                    p
                }
                Op::Add => get(0).broadcast_add(get(1))?,
                Op::Mul { scale: Some(s) } => (get(0) * *s)?,
                Op::Mul { scale: None } => get(0).broadcast_mul(get(1))?,
                Op::Relu => get(0).relu()?,
                Op::Sum { axis, keepdim } => {
                    if *keepdim {
                        get(0).sum_keepdim(*axis)?
                    } else {
                        get(0).sum(*axis)?
                    }
                }
                Op::Gather { axis } => get(0).contiguous()?.gather(&get(1).contiguous()?, *axis)?,
                Op::Select { axis, index } => get(0).narrow(*axis, *index, 1)?.squeeze(*axis)?,
                Op::Slice {
                    axis,
                    start,
                    end,
                    step,
                } => {
                    if *step == 1 {
                        get(0).narrow(*axis, *start, end - start)?
                    } else {
                        let idx: Vec<u32> =
                            (*start..*end).step_by(*step).map(|i| i as u32).collect();
                        let n = idx.len();
                        get(0).index_select(&Tensor::from_vec(idx, n, &self.device)?, *axis)?
                    }
                }
                Op::Reshape { .. } => get(0).reshape(node.ty.concrete(batch))?,
                Op::Permute { dims } => get(0).permute(dims.as_slice())?.contiguous()?,
                Op::Unsqueeze { axis } => get(0).unsqueeze(*axis)?,
                Op::Concat { axis } => {
                    let parts: Vec<&Tensor> = (0..node.inputs.len()).map(get).collect();
                    Tensor::cat(&parts, *axis)?
                }
                Op::Window {
                    axis,
                    size,
                    stride,
                    pad_before,
                    pad_after,
                } => window(get(0), *axis, *size, *stride, *pad_before, *pad_after)?,
            };
            let want = node.ty.concrete(batch);
            if out.dims() != want.as_slice() {
                candle_core::bail!(
                    "internal error: node {:?} computed {:?}, its checked shape is {want:?}",
                    node.name,
                    out.dims()
                );
            }
            values[i + 1] = Some(out);
            for &v in &node.inputs {
                if self.last_use[v] == i + 1 {
                    values[v] = None;
                }
            }
        }
        Ok(values[self.graph.output]
            .take()
            .expect("the output is never freed"))
    }
}

/// Batched matrix product with broadcast leading axes (shapes checked by the graph).
fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra == 2 && rb == 2 {
        return a.matmul(b);
    }
    let la = &a.dims()[..ra - 2];
    let lb = &b.dims()[..rb - 2];
    let n = la.len().max(lb.len());
    let mut lead = Vec::with_capacity(n);
    for i in 0..n {
        let x = (i + la.len()).checked_sub(n).map(|j| la[j]).unwrap_or(1);
        let y = (i + lb.len()).checked_sub(n).map(|j| lb[j]).unwrap_or(1);
        lead.push(x.max(y));
    }
    let full = |t: &Tensor, r: usize| -> candle_core::Result<Tensor> {
        let mut shape = lead.clone();
        shape.extend_from_slice(&t.dims()[r - 2..]);
        t.broadcast_as(shape)?.contiguous()
    };
    full(a, ra)?.matmul(&full(b, rb)?)
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
) -> candle_core::Result<Tensor> {
    let padded = x.pad_with_zeros(axis, pad_before, pad_after)?;
    let count = (padded.dim(axis)? - size) / stride + 1;
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
    split.permute(order.as_slice())?.contiguous()
}
