//! rdbench-lm's GPT ([`crate::model`]: pre-norm blocks, learned positions, tied head,
//! GELU tanh) run incrementally in plain `f32` Rust with a KV cache: a prompt runs once, then
//! each decode step feeds one token to each of several sequences, their rows batched through
//! every weight matrix.

use crate::{Gpt, GptConfig};
use candle_core::Tensor;

/// One block's weights (`[out, in]` matrices, row-major).
#[derive(Debug, Clone)]
struct Block {
    ln1_w: Vec<f32>,
    ln1_b: Vec<f32>,
    qkv_w: Vec<f32>,
    qkv_b: Vec<f32>,
    proj_w: Vec<f32>,
    proj_b: Vec<f32>,
    ln2_w: Vec<f32>,
    ln2_b: Vec<f32>,
    fc_w: Vec<f32>,
    fc_b: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
}

/// The weights as plain vectors.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: GptConfig,
    wte: Vec<f32>,
    wpe: Vec<f32>,
    blocks: Vec<Block>,
    lnf_w: Vec<f32>,
    lnf_b: Vec<f32>,
}

/// One sequence's KV cache: per layer, `len` rows of `d` keys and values.
#[derive(Debug, Clone)]
pub struct KvState {
    len: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvState {
    /// Tokens the sequence holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn flat(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `a . b` with eight accumulators (vectorized).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Matrices of at least this many weights (GPT-2 small's, not the tiny tasks') go through
/// `gemm` on candle's threads; smaller ones through the plain loop, whose sums the tiny tasks'
/// measured numbers were made with.
const GEMM_MIN_WEIGHTS: usize = 1 << 18;

/// `out[r] = W x[r] + b` for every row `r` of `x` (`n_in` wide); `W` is `[n_out, n_in]`; no
/// bias: zeros.
fn linear(x: &[f32], n_in: usize, w: &[f32], b: Option<&[f32]>, out: &mut Vec<f32>) {
    let n_out = w.len() / n_in;
    let rows = x.len() / n_in;
    out.clear();
    out.resize(rows * n_out, 0.0);
    if w.len() >= GEMM_MIN_WEIGHTS {
        if let Some(b) = b {
            for row in out.chunks_exact_mut(n_out) {
                row.copy_from_slice(b);
            }
        }
        crate::kernels::gemm_into(
            crate::kernels::Dst::rows(out, n_out),
            crate::kernels::Mat::rows(x, rows, n_in),
            crate::kernels::Mat::rows(w, n_out, n_in).t(),
            true,
            true,
        );
        return;
    }
    let zeros;
    let b = match b {
        Some(b) => b,
        None => {
            zeros = vec![0.0; n_out];
            &zeros
        }
    };
    for (o, wr) in w.chunks_exact(n_in).enumerate() {
        for r in 0..rows {
            out[r * n_out + o] = dot(wr, &x[r * n_in..(r + 1) * n_in]) + b[o];
        }
    }
}

fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut Vec<f32>) {
    let d = w.len();
    out.clear();
    for row in x.chunks_exact(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .zip(w.iter().zip(b))
                .map(|(v, (w, b))| (v - mean) * inv * w + b),
        );
    }
}

fn gelu(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

impl Engine {
    /// The weights of `gpt`, copied out of its tensors.
    pub fn from_gpt(gpt: &Gpt) -> candle_core::Result<Engine> {
        let cfg = gpt.config().clone();
        let p = |n: &str| flat(gpt.param(n).as_tensor());
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let q = |s: &str| p(&format!("blocks.{i}.{s}"));
            blocks.push(Block {
                ln1_w: q("ln1.weight")?,
                ln1_b: q("ln1.bias")?,
                qkv_w: q("attn.qkv.weight")?,
                qkv_b: q("attn.qkv.bias")?,
                proj_w: q("attn.proj.weight")?,
                proj_b: q("attn.proj.bias")?,
                ln2_w: q("ln2.weight")?,
                ln2_b: q("ln2.bias")?,
                fc_w: q("mlp.fc.weight")?,
                fc_b: q("mlp.fc.bias")?,
                out_w: q("mlp.proj.weight")?,
                out_b: q("mlp.proj.bias")?,
            });
        }
        Ok(Engine {
            wte: p("wte")?,
            wpe: p("wpe")?,
            lnf_w: p("ln_f.weight")?,
            lnf_b: p("ln_f.bias")?,
            blocks,
            cfg,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// An empty sequence.
    pub fn empty_state(&self) -> KvState {
        KvState {
            len: 0,
            k: vec![Vec::new(); self.cfg.n_layer],
            v: vec![Vec::new(); self.cfg.n_layer],
        }
    }

    /// Feeds `rows` (sequence index into `states`, token), in order, to their sequences, and
    /// returns the next-token logits after the last row of each sequence that got rows, in the
    /// order of those last rows. Fails (changing nothing) when a sequence would outgrow the
    /// context or a token is outside the vocabulary.
    pub fn forward(
        &self,
        states: &mut [KvState],
        rows: &[(usize, u32)],
    ) -> Result<Vec<Vec<f32>>, String> {
        let GptConfig {
            vocab,
            ctx,
            d_model: d,
            n_head,
            d_ff,
            ln_eps,
            ..
        } = self.cfg;
        let eps = ln_eps as f32;
        let hd = d / n_head;
        // Each row's position.
        let mut added = vec![0usize; states.len()];
        let mut pos = Vec::with_capacity(rows.len());
        for &(s, t) in rows {
            let st = states.get(s).ok_or("a row names no sequence")?;
            if t as usize >= vocab {
                return Err(format!("token {t} is outside the vocabulary of {vocab}"));
            }
            let p = st.len + added[s];
            if p >= ctx {
                return Err(format!(
                    "a sequence would exceed the context of {ctx} tokens"
                ));
            }
            pos.push(p);
            added[s] += 1;
        }
        let n = rows.len();
        let mut x = Vec::with_capacity(n * d);
        for (&(_, t), &p) in rows.iter().zip(&pos) {
            let te = &self.wte[t as usize * d..(t as usize + 1) * d];
            let pe = &self.wpe[p * d..(p + 1) * d];
            x.extend(te.iter().zip(pe).map(|(a, b)| a + b));
        }
        let (mut h, mut qkv, mut y, mut proj, mut f) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let scale = 1.0 / (hd as f32).sqrt();
        for (li, b) in self.blocks.iter().enumerate() {
            layer_norm(&x, &b.ln1_w, &b.ln1_b, eps, &mut h);
            linear(&h, d, &b.qkv_w, Some(&b.qkv_b), &mut qkv);
            for (r, &(s, _)) in rows.iter().enumerate() {
                let row = &qkv[r * 3 * d..(r + 1) * 3 * d];
                states[s].k[li].extend_from_slice(&row[d..2 * d]);
                states[s].v[li].extend_from_slice(&row[2 * d..]);
            }
            y.clear();
            y.resize(n * d, 0.0);
            let states: &[KvState] = states;
            // Rows are independent: each writes its own output row, so splitting them across
            // threads changes no sum.
            crate::kernels::par_rows(&mut y, d, |first, out_rows| {
                let mut scores = Vec::new();
                for (i, out) in out_rows.chunks_exact_mut(d).enumerate() {
                    let r = first + i;
                    let q = &qkv[r * 3 * d..r * 3 * d + d];
                    let state = &states[rows[r].0];
                    let (ks, vs) = (&state.k[li], &state.v[li]);
                    let upto = pos[r] + 1;
                    for hh in 0..n_head {
                        let qh = &q[hh * hd..(hh + 1) * hd];
                        scores.clear();
                        let mut max = f32::NEG_INFINITY;
                        for j in 0..upto {
                            let sc = dot(qh, &ks[j * d + hh * hd..j * d + (hh + 1) * hd]) * scale;
                            max = max.max(sc);
                            scores.push(sc);
                        }
                        let mut sum = 0.0;
                        for sc in scores.iter_mut() {
                            *sc = (*sc - max).exp();
                            sum += *sc;
                        }
                        let out = &mut out[hh * hd..(hh + 1) * hd];
                        for (j, sc) in scores.iter().enumerate() {
                            let w = sc / sum;
                            let vr = &vs[j * d + hh * hd..j * d + (hh + 1) * hd];
                            for (o, v) in out.iter_mut().zip(vr) {
                                *o += w * v;
                            }
                        }
                    }
                }
            });
            linear(&y, d, &b.proj_w, Some(&b.proj_b), &mut proj);
            for (a, p) in x.iter_mut().zip(&proj) {
                *a += p;
            }
            layer_norm(&x, &b.ln2_w, &b.ln2_b, eps, &mut h);
            linear(&h, d, &b.fc_w, Some(&b.fc_b), &mut f);
            crate::kernels::par_chunks_mut(&mut f, crate::kernels::CHUNK, |_, chunk| {
                for v in chunk {
                    *v = gelu(*v);
                }
            });
            linear(&f, d_ff, &b.out_w, Some(&b.out_b), &mut proj);
            for (a, p) in x.iter_mut().zip(&proj) {
                *a += p;
            }
        }
        for (s, &k) in added.iter().enumerate() {
            states[s].len += k;
        }
        // Logits after each sequence's last row only.
        let mut last = Vec::new();
        for (r, &(s, _)) in rows.iter().enumerate() {
            if !rows[r + 1..].iter().any(|&(s2, _)| s2 == s) {
                last.push(r);
            }
        }
        let mut finals = Vec::with_capacity(last.len() * d);
        for &r in &last {
            finals.extend_from_slice(&x[r * d..(r + 1) * d]);
        }
        layer_norm(&finals, &self.lnf_w, &self.lnf_b, eps, &mut h);
        linear(&h, d, &self.wte, None, &mut f);
        Ok(f.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }
}

impl Engine {
    /// The weights back as rdbench-lm's model (for saving, and to check against its forward).
    pub fn to_gpt(&self) -> crate::Result<Gpt> {
        let mut tensors = std::collections::BTreeMap::new();
        let dev = candle_core::Device::Cpu;
        let shapes = self.cfg.param_shapes();
        let mut put = |name: String, data: &[f32]| -> crate::Result<()> {
            let shape = shapes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            tensors.insert(name, Tensor::from_slice(data, shape, &dev)?);
            Ok(())
        };
        put("wte".into(), &self.wte)?;
        put("wpe".into(), &self.wpe)?;
        put("ln_f.weight".into(), &self.lnf_w)?;
        put("ln_f.bias".into(), &self.lnf_b)?;
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            put(format!("{p}.ln1.weight"), &b.ln1_w)?;
            put(format!("{p}.ln1.bias"), &b.ln1_b)?;
            put(format!("{p}.attn.qkv.weight"), &b.qkv_w)?;
            put(format!("{p}.attn.qkv.bias"), &b.qkv_b)?;
            put(format!("{p}.attn.proj.weight"), &b.proj_w)?;
            put(format!("{p}.attn.proj.bias"), &b.proj_b)?;
            put(format!("{p}.ln2.weight"), &b.ln2_w)?;
            put(format!("{p}.ln2.bias"), &b.ln2_b)?;
            put(format!("{p}.mlp.fc.weight"), &b.fc_w)?;
            put(format!("{p}.mlp.fc.bias"), &b.fc_b)?;
            put(format!("{p}.mlp.proj.weight"), &b.out_w)?;
            put(format!("{p}.mlp.proj.bias"), &b.out_b)?;
        }
        Gpt::from_tensors(self.cfg.clone(), tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's logits, fed a sequence as a prompt and then token by token, against the
    /// model's own full-sequence forward; for a model small enough for the plain loop and one
    /// whose matrices go through `gemm`.
    #[test]
    fn the_engine_computes_the_models_logits_with_either_product() {
        for (d_model, d_ff, vocab) in [(32, 64, 40), (256, 1024, 1100)] {
            let cfg = GptConfig {
                vocab,
                ctx: 16,
                d_model,
                n_layer: 2,
                n_head: 4,
                d_ff,
                ln_eps: 1e-5,
            };
            let gpt = Gpt::new(cfg.clone(), 5).unwrap();
            let tokens: Vec<u32> = (0..10).map(|i| (i * 37 % vocab) as u32).collect();
            let idx = Tensor::from_slice(&tokens, (1, 10), &candle_core::Device::Cpu).unwrap();
            let want = gpt.forward(&idx).unwrap().to_vec2::<f32>().unwrap();
            let engine = Engine::from_gpt(&gpt).unwrap();
            let mut states = vec![engine.empty_state()];
            let prompt: Vec<(usize, u32)> = tokens[..6].iter().map(|&t| (0, t)).collect();
            let mut got = engine.forward(&mut states, &prompt).unwrap();
            for &t in &tokens[6..] {
                got.extend(engine.forward(&mut states, &[(0, t)]).unwrap());
            }
            assert_eq!(states[0].len(), 10);
            for (step, row) in got.iter().enumerate() {
                let position = step + 5;
                let worst = row
                    .iter()
                    .zip(&want[position])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-4, "d {d_model}, position {position}: {worst}");
            }
        }
    }
}
