//! A llama forward pass of rdbench's own over candle's quantized matrix kernels, with KV caches
//! the caller owns, so that several sequences decode as one batch.
//!
//! Why not candle-transformers' `quantized_llama`: its KV cache is private to the model value,
//! one batch row per value, so the `n` choices of one request (prefilled once, at batch 1) could
//! only decode one after the other, each step reading every weight once per choice. Here a
//! sequence's cache is a plain value ([`KvCache`]); one [`Llama::forward`] takes any number of
//! sequences, each with its new tokens, and runs every weight matrix once over all their rows
//! (Q4_1 and Q8_0 on [`crate::kernels`], the other quantizations on candle's
//! `k_quants::matmul`; both read a block of weights once for several rows and split the
//! weight rows over candle's thread pool). Attention, norms and rotary
//! embeddings are plain loops over f32 rows: next to the matrix products they cost little, and
//! loops avoid a tensor operation's fixed cost, paid per sequence and layer in a batched decode.
//!
//! The arithmetic is llama's as llama.cpp and candle compute it from a GGUF: RMS norm, rotary
//! embeddings on adjacent pairs (GGUF llama weights are permuted for that), grouped-query
//! attention, SwiGLU; activations are quantized to the weights' dot-product type before each
//! product, as ggml does. Checked against `quantized_llama` on the same files (tests).

use candle_core::quantized::k_quants::{
    self, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    GgmlType,
};
use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

use crate::kernels::{self, SharedOut, WeightBlock};
use crate::LlmError;

/// Longest sequence served: the KV cache of one sequence of SmolLM2-135M at this length is
/// 190 MB in f32, and a request may run 16 of them.
pub const MAX_CONTEXT: usize = 4096;

/// Fewest (row, head) pairs whose attention is split over the thread pool: one decoding
/// sequence's heads are done faster on one thread than the pool wakes (measured on SmolLM2).
const ATTENTION_ITEMS_PER_POOL: usize = 32;

/// The shapes of a llama model, from its GGUF's `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub context: usize,
}

/// A weight matrix in its file's quantization: `rows` outputs, each a dot product over `cols`
/// inputs.
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    blocks: Box<dyn QuantBlocks>,
}

/// One quantization's blocks, row-major, behind the two operations the forward needs.
trait QuantBlocks: Send + Sync {
    /// `out[m × n] = lhs[m × k] · selfᵀ` (self is n rows of k).
    fn matmul(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        out: &mut [f32],
    ) -> candle_core::Result<()>;
    /// Row `row` (of `cols` values) as f32: an embedding lookup.
    fn row(&self, row: usize, cols: usize, out: &mut [f32]);
}

/// Blocks run by candle's kernels.
struct Blocks<T>(Vec<T>);

/// Blocks run by [`kernels`] (Q4_1, Q8_0).
struct OwnBlocks<W>(Vec<W>);

impl<W: WeightBlock> QuantBlocks for OwnBlocks<W> {
    fn matmul(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        kernels::matmul(&self.0, mkn, lhs, out);
        Ok(())
    }

    fn row(&self, row: usize, cols: usize, out: &mut [f32]) {
        let per_row = cols / kernels::BLOCK;
        for (block, out) in self.0[row * per_row..(row + 1) * per_row]
            .iter()
            .zip(out.chunks_exact_mut(kernels::BLOCK))
        {
            block.to_f32(out);
        }
    }
}

impl<T: GgmlType> QuantBlocks for Blocks<T> {
    fn matmul(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f32],
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        k_quants::matmul::<T>(mkn, lhs, &self.0, out)
    }

    fn row(&self, row: usize, cols: usize, out: &mut [f32]) {
        let per_row = cols / T::BLCK_SIZE;
        T::to_float(&self.0[row * per_row..(row + 1) * per_row], out);
    }
}

impl QuantMatrix {
    /// The matrix of a 2-D tensor (GGUF's `[cols, rows]`, candle's shape `(rows, cols)`).
    pub fn new(tensor: &QTensor) -> Result<Self, String> {
        Self::stacked(std::slice::from_ref(tensor))
    }

    /// The rows of `tensors` one after the other, as one matrix (they share a quantization and
    /// a row length).
    pub fn stacked(tensors: &[QTensor]) -> Result<Self, String> {
        let first = tensors.first().ok_or("no tensor")?;
        let dtype = first.dtype();
        let mut rows = 0;
        let mut cols = None;
        let mut bytes = Vec::new();
        for tensor in tensors {
            let (r, c) = tensor
                .shape()
                .dims2()
                .map_err(|_| format!("shape {:?}, not a matrix", tensor.shape()))?;
            if tensor.dtype() != dtype || cols.is_some_and(|cols| cols != c) {
                return Err("stacked matrices differ in quantization or row length".into());
            }
            rows += r;
            cols = Some(c);
            bytes.extend_from_slice(&tensor.data().map_err(|e| e.to_string())?);
        }
        let cols = cols.unwrap_or(0);
        if cols % dtype.block_size() != 0 {
            return Err(format!(
                "rows of {cols} values, not whole {dtype:?} blocks of {}",
                dtype.block_size()
            ));
        }
        let blocks: Box<dyn QuantBlocks> = match dtype {
            GgmlDType::F32 => Box::new(Blocks(copy_blocks::<f32>(&bytes)?)),
            GgmlDType::F16 => Box::new(Blocks(copy_blocks::<f16>(&bytes)?)),
            GgmlDType::Q4_0 => Box::new(Blocks(copy_blocks::<BlockQ4_0>(&bytes)?)),
            GgmlDType::Q4_1 => Box::new(OwnBlocks(copy_blocks::<kernels::BlockQ4_1>(&bytes)?)),
            GgmlDType::Q5_0 => Box::new(Blocks(copy_blocks::<BlockQ5_0>(&bytes)?)),
            GgmlDType::Q5_1 => Box::new(Blocks(copy_blocks::<BlockQ5_1>(&bytes)?)),
            GgmlDType::Q8_0 => Box::new(OwnBlocks(copy_blocks::<kernels::BlockQ8_0>(&bytes)?)),
            GgmlDType::Q2K => Box::new(Blocks(copy_blocks::<BlockQ2K>(&bytes)?)),
            GgmlDType::Q3K => Box::new(Blocks(copy_blocks::<BlockQ3K>(&bytes)?)),
            GgmlDType::Q4K => Box::new(Blocks(copy_blocks::<BlockQ4K>(&bytes)?)),
            GgmlDType::Q5K => Box::new(Blocks(copy_blocks::<BlockQ5K>(&bytes)?)),
            GgmlDType::Q6K => Box::new(Blocks(copy_blocks::<BlockQ6K>(&bytes)?)),
            other => return Err(format!("weights in {other:?}, which is not served")),
        };
        Ok(QuantMatrix { rows, cols, blocks })
    }

    /// `out[m × rows] = lhs[m × cols] · selfᵀ`.
    fn matmul(&self, lhs: &[f32], m: usize, out: &mut Vec<f32>) -> Result<(), LlmError> {
        out.clear();
        out.resize(m * self.rows, 0.0);
        self.blocks.matmul((m, self.cols, self.rows), lhs, out)?;
        Ok(())
    }
}

/// Matrices applied to one input (a block's query, key and value; its gate and up): stacked
/// into one matrix where their quantizations agree, so the input is quantized once and the
/// thread pool woken once; one product each otherwise (GGUFs often keep values in another
/// quantization than queries and keys).
pub enum Projections {
    Stacked {
        matrix: QuantMatrix,
        widths: Vec<usize>,
    },
    Separate(Vec<QuantMatrix>),
}

impl Projections {
    pub fn new(tensors: &[QTensor]) -> Result<Self, String> {
        let widths = tensors
            .iter()
            .map(|t| t.shape().dims().first().copied().unwrap_or(0))
            .collect();
        // Stacking refuses matrices that differ in quantization (or row length: then
        // `Llama::validate` names the misshapen one).
        if let Ok(matrix) = QuantMatrix::stacked(tensors) {
            return Ok(Projections::Stacked { matrix, widths });
        }
        Ok(Projections::Separate(
            tensors
                .iter()
                .map(QuantMatrix::new)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// (rows, cols) of each matrix.
    fn shapes(&self) -> Vec<(usize, usize)> {
        match self {
            Projections::Stacked { matrix, widths } => {
                widths.iter().map(|&w| (w, matrix.cols)).collect()
            }
            Projections::Separate(ms) => ms.iter().map(|m| (m.rows, m.cols)).collect(),
        }
    }

    /// `outs[i] = x · matrix_iᵀ` for `m` rows of `x`.
    fn apply(
        &self,
        x: &[f32],
        m: usize,
        outs: &mut [&mut Vec<f32>],
        stacked: &mut Vec<f32>,
    ) -> Result<(), LlmError> {
        match self {
            Projections::Separate(ms) => {
                for (matrix, out) in ms.iter().zip(outs.iter_mut()) {
                    matrix.matmul(x, m, out)?;
                }
            }
            Projections::Stacked { matrix, widths } => {
                matrix.matmul(x, m, stacked)?;
                let mut offset = 0;
                for (&width, out) in widths.iter().zip(outs.iter_mut()) {
                    out.clear();
                    for row in stacked.chunks_exact(matrix.rows) {
                        out.extend_from_slice(&row[offset..offset + width]);
                    }
                    offset += width;
                }
            }
        }
        Ok(())
    }
}

/// A GGML block type whose bytes can be copied from a file: `#[repr(C)]`, plain numbers only.
trait PlainBlock: Sized {
    fn zeroed() -> Self;
}

impl<T: GgmlType> PlainBlock for T {
    fn zeroed() -> Self {
        T::zeros()
    }
}

impl PlainBlock for kernels::BlockQ4_1 {
    fn zeroed() -> Self {
        Self::default()
    }
}

impl PlainBlock for kernels::BlockQ8_0 {
    fn zeroed() -> Self {
        Self::default()
    }
}

/// `bytes` (a tensor's storage) as its blocks.
fn copy_blocks<T: PlainBlock + Clone>(bytes: &[u8]) -> Result<Vec<T>, String> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(format!("{} bytes, not whole blocks of {size}", bytes.len()));
    }
    let mut blocks = vec![T::zeroed(); bytes.len() / size];
    // SAFETY: candle's GGML block types, f32, f16 and `kernels`' blocks are `#[repr(C)]` plain
    // numbers, every byte pattern of which is a valid value, and `blocks` spans exactly
    // `bytes.len()` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), blocks.as_mut_ptr().cast(), bytes.len());
    }
    Ok(blocks)
}

/// One transformer block's weights.
pub struct LlamaLayer {
    pub attn_norm: Vec<f32>,
    /// Query, key and value.
    pub qkv: Projections,
    pub wo: QuantMatrix,
    pub ffn_norm: Vec<f32>,
    /// Gate and up.
    pub gate_up: Projections,
    pub down: QuantMatrix,
}

/// A llama model's weights.
pub struct Llama {
    pub config: LlamaConfig,
    pub embeddings: QuantMatrix,
    pub layers: Vec<LlamaLayer>,
    pub norm: Vec<f32>,
    /// The output projection; `None`: tied to the embeddings.
    pub output: Option<QuantMatrix>,
}

/// One sequence's keys and values, per layer `[position][kv head][head dim]`, so a new
/// position is an append.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Working buffers of one forward call.
#[derive(Default)]
struct Scratch {
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attended: Vec<f32>,
    projected: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    stacked: Vec<f32>,
}

impl Llama {
    /// Checks that the weights' shapes agree with the configuration.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.config;
        let q_dim = c.heads * c.head_dim;
        let kv_dim = c.kv_heads * c.head_dim;
        if c.heads == 0
            || c.kv_heads == 0
            || !c.heads.is_multiple_of(c.kv_heads)
            || !c.head_dim.is_multiple_of(2)
        {
            return Err(format!(
                "{} heads over {} key/value heads of {} values",
                c.heads, c.kv_heads, c.head_dim
            ));
        }
        let expect = |name: &str, m: &QuantMatrix, rows: usize, cols: usize| {
            if (m.rows, m.cols) == (rows, cols) {
                Ok(())
            } else {
                Err(format!(
                    "{name} is {}x{}, expected {rows}x{cols}",
                    m.rows, m.cols
                ))
            }
        };
        let vocab = self.embeddings.rows;
        expect("token_embd", &self.embeddings, vocab, c.dim)?;
        if let Some(output) = &self.output {
            expect("output", output, vocab, c.dim)?;
        }
        if self.norm.len() != c.dim {
            return Err(format!("output_norm has {} values", self.norm.len()));
        }
        let hidden = self.layers.first().map_or(0, |l| l.down.cols);
        for (i, l) in self.layers.iter().enumerate() {
            let name = |w: &str| format!("blk.{i}.{w}");
            let shapes = |what: &str, got: Vec<(usize, usize)>, want: Vec<(usize, usize)>| {
                if got == want {
                    Ok(())
                } else {
                    Err(format!("blk.{i}'s {what} are {got:?}, expected {want:?}"))
                }
            };
            shapes(
                "attn_q, attn_k and attn_v",
                l.qkv.shapes(),
                vec![(q_dim, c.dim), (kv_dim, c.dim), (kv_dim, c.dim)],
            )?;
            expect(&name("attn_output"), &l.wo, c.dim, q_dim)?;
            shapes(
                "ffn_gate and ffn_up",
                l.gate_up.shapes(),
                vec![(hidden, c.dim), (hidden, c.dim)],
            )?;
            expect(&name("ffn_down"), &l.down, c.dim, hidden)?;
            if l.attn_norm.len() != c.dim || l.ffn_norm.len() != c.dim {
                return Err(format!("blk.{i}'s norms are not {} values", c.dim));
            }
        }
        if self.layers.len() != c.layers {
            return Err(format!(
                "{} blocks, expected {}",
                self.layers.len(),
                c.layers
            ));
        }
        Ok(())
    }

    /// Size of the vocabulary (rows of the embedding table).
    pub fn vocab(&self) -> usize {
        self.embeddings.rows
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            keys: vec![Vec::new(); self.config.layers],
            values: vec![Vec::new(); self.config.layers],
            len: 0,
        }
    }

    /// Feeds `tokens[i]` (one or more tokens) to the sequence of `caches[i]`, for every `i`
    /// together, and returns each sequence's next-token logits (after its last new token).
    pub fn forward(
        &self,
        caches: &mut [KvCache],
        tokens: &[&[u32]],
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        assert_eq!(caches.len(), tokens.len(), "one token list per cache");
        let c = &self.config;
        let (dim, hd) = (c.dim, c.head_dim);
        let kv_dim = c.kv_heads * hd;
        // Each row: its sequence and position.
        let mut rows = Vec::new();
        for (seq, (cache, new)) in caches.iter().zip(tokens).enumerate() {
            if new.is_empty() {
                return Err(LlmError::Model("a sequence was given no token".into()));
            }
            let end = cache.len + new.len();
            if end > c.context {
                return Err(LlmError::PromptTooLong {
                    prompt: end,
                    context: c.context,
                });
            }
            rows.extend((cache.len..end).map(|pos| (seq, pos)));
        }
        let m = rows.len();
        let vocab = self.vocab();
        let mut x = vec![0.0f32; m * dim];
        for (row, &token) in x
            .chunks_exact_mut(dim)
            .zip(tokens.iter().flat_map(|t| t.iter()))
        {
            if token as usize >= vocab {
                return Err(LlmError::Model(format!(
                    "token {token} outside the vocabulary of {vocab}"
                )));
            }
            self.embeddings.blocks.row(token as usize, dim, row);
        }
        let rope = RotaryTable::new(&rows, hd, c.rope_base);
        let mut s = Scratch::default();
        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut s.normed);
            layer.qkv.apply(
                &s.normed,
                m,
                &mut [&mut s.q, &mut s.k, &mut s.v],
                &mut s.stacked,
            )?;
            rope.apply(&mut s.q, c.heads);
            rope.apply(&mut s.k, c.kv_heads);
            for (r, &(seq, _)) in rows.iter().enumerate() {
                caches[seq].keys[l].extend_from_slice(&s.k[r * kv_dim..(r + 1) * kv_dim]);
                caches[seq].values[l].extend_from_slice(&s.v[r * kv_dim..(r + 1) * kv_dim]);
            }
            s.attended.clear();
            s.attended.resize(m * c.heads * hd, 0.0);
            let attended = SharedOut::new(&mut s.attended);
            let caches: &[KvCache] = caches;
            // One item per (row, query head).
            kernels::parallel_for(m * c.heads, ATTENTION_ITEMS_PER_POOL, |items| {
                let mut scores = Vec::new();
                for item in items {
                    let (r, h) = (item / c.heads, item % c.heads);
                    let (seq, pos) = rows[r];
                    let start = (r * c.heads + h) * hd;
                    // SAFETY: item's head of its row, inside `attended`, written by this
                    // worker alone (items are split between workers).
                    let out = unsafe { attended.slice(start, hd) };
                    attend_head(
                        c,
                        h,
                        &s.q[start..start + hd],
                        &caches[seq].keys[l],
                        &caches[seq].values[l],
                        pos + 1,
                        &mut scores,
                        out,
                    );
                }
            });
            layer.wo.matmul(&s.attended, m, &mut s.projected)?;
            add(&mut x, &s.projected);
            rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut s.normed);
            layer
                .gate_up
                .apply(&s.normed, m, &mut [&mut s.gate, &mut s.up], &mut s.stacked)?;
            for (g, u) in s.gate.iter_mut().zip(&s.up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            layer.down.matmul(&s.gate, m, &mut s.projected)?;
            add(&mut x, &s.projected);
        }
        for (cache, new) in caches.iter_mut().zip(tokens) {
            cache.len += new.len();
        }
        // Logits only for each sequence's last row: a prompt's other rows need none.
        let mut last = Vec::with_capacity(tokens.len() * dim);
        let mut end = 0;
        for new in tokens {
            end += new.len();
            last.extend_from_slice(&x[(end - 1) * dim..end * dim]);
        }
        rms_norm(&last, &self.norm, c.rms_eps, &mut s.normed);
        let output = self.output.as_ref().unwrap_or(&self.embeddings);
        output.matmul(&s.normed, tokens.len(), &mut s.projected)?;
        Ok(s.projected
            .chunks_exact(vocab)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// `out = x / rms(x) * weight`, row by row (rows of `weight.len()`).
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    out.resize(x.len(), 0.0);
    let dim = weight.len();
    for (row, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Cosines and sines of each row's position, `[row][pair]`, for rotary embeddings on adjacent
/// pairs `(2i, 2i+1)` with frequency `base^(-2i/head_dim)`.
struct RotaryTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RotaryTable {
    fn new(rows: &[(usize, usize)], head_dim: usize, base: f32) -> Self {
        let half = head_dim / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(rows.len() * half);
        let mut sin = Vec::with_capacity(rows.len() * half);
        for &(_, pos) in rows {
            for f in &freqs {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RotaryTable { cos, sin, half }
    }

    /// Rotates every head of every row of `x` (rows of `heads` heads).
    fn apply(&self, x: &mut [f32], heads: usize) {
        let hd = 2 * self.half;
        for (r, row) in x.chunks_exact_mut(heads * hd).enumerate() {
            let cos = &self.cos[r * self.half..(r + 1) * self.half];
            let sin = &self.sin[r * self.half..(r + 1) * self.half];
            for head in row.chunks_exact_mut(hd) {
                for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                    let (a, b) = (pair[0], pair[1]);
                    pair[0] = a * cos[i] - b * sin[i];
                    pair[1] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// Attention of query head `h` of one row over the first `len` positions of its sequence.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    c: &LlamaConfig,
    h: usize,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    len: usize,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = c.head_dim;
    let kv_dim = c.kv_heads * hd;
    let kv = (h / (c.heads / c.kv_heads)) * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    scores.clear();
    scores.extend((0..len).map(|t| {
        let start = t * kv_dim + kv;
        kernels::dot(q, &keys[start..start + hd]) * scale
    }));
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    out.fill(0.0);
    for (t, p) in scores.iter().enumerate() {
        let start = t * kv_dim + kv;
        let weight = p / total;
        for (o, v) in out.iter_mut().zip(&values[start..start + hd]) {
            *o += weight * v;
        }
    }
}
