//! GPT-2 checkpoints in Hugging Face's layout, read into (and written from) rdbench's GPT.
//!
//! rdbench's [`Gpt`] is GPT-2's architecture (pre-norm blocks, learned positions, a head tied
//! to the token embeddings, GELU's tanh form, biases everywhere); only the names differ, and
//! Hugging Face stores each block's four matrices as `Conv1D` weights, `[in, out]`, where
//! rdbench stores `[out, in]`. So an operator's `gpt2` safetensors and an agent's fine-tune of
//! it (`save_pretrained` of a `GPT2LMHeadModel`, or of its `transformer`) load here as a [`Gpt`]
//! and run on [`crate::infer::Engine`] with nothing else to write.
//!
//! What a file may hold, and what [`load`] checks (never trusting the file: size before
//! reading, then every name, dtype, shape and value):
//! - the parameters, each name optionally under `transformer.`: `wte.weight`, `wpe.weight`,
//!   `h.{i}.ln_1`, `.attn.c_attn`, `.attn.c_proj`, `.ln_2`, `.mlp.c_fc`, `.mlp.c_proj` (weight
//!   and bias each), `ln_f`; all `F32`, all finite;
//! - optionally the buffers older checkpoints carry (`h.{i}.attn.bias`, the causal mask, and
//!   `h.{i}.attn.masked_bias`) and `lm_head.weight`: checked for shape and read no further (the
//!   mask is what the forward does anyway; the head is tied to `wte`, as `GPT2LMHeadModel` ties
//!   it on load);
//! - nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::io::{checked_tensor, read_bounded, LoadError, LoadErrorKind, HEADER_ALLOWANCE};
use crate::model::{Gpt, GptConfig};
use crate::{LmError, Result};

/// The prefix `GPT2LMHeadModel.save_pretrained` puts before every name of the base model.
const PREFIX: &str = "transformer.";

/// A model's architecture from Hugging Face's `config.json` for GPT-2 (`n_embd`, `n_layer`,
/// `n_head`, `n_positions`, `vocab_size`, optional `n_inner` and `layer_norm_epsilon`), with
/// one clear line for a config of another architecture.
pub fn config_from_json(bytes: &[u8]) -> Result<GptConfig> {
    #[derive(serde::Deserialize)]
    struct HfConfig {
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
        n_positions: usize,
        vocab_size: usize,
        #[serde(default)]
        n_inner: Option<usize>,
        #[serde(default = "default_eps")]
        layer_norm_epsilon: f64,
        #[serde(default = "default_activation")]
        activation_function: String,
    }
    fn default_eps() -> f64 {
        1e-5
    }
    fn default_activation() -> String {
        "gelu_new".into()
    }
    let c: HfConfig = serde_json::from_slice(bytes)
        .map_err(|e| LmError::Config(format!("not a GPT-2 config.json: {e}")))?;
    if c.activation_function != "gelu_new" {
        return Err(LmError::Config(format!(
            "activation_function {:?}: rdbench's GPT computes GELU's tanh form (\"gelu_new\") only",
            c.activation_function
        )));
    }
    let cfg = GptConfig {
        vocab: c.vocab_size,
        ctx: c.n_positions,
        d_model: c.n_embd,
        n_layer: c.n_layer,
        n_head: c.n_head,
        d_ff: c.n_inner.unwrap_or(4 * c.n_embd),
        ln_eps: c.layer_norm_epsilon,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Hugging Face's `config.json` for `cfg` (what [`config_from_json`] reads back).
pub fn config_json(cfg: &GptConfig) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_positions": cfg.ctx,
        "n_ctx": cfg.ctx,
        "n_inner": cfg.d_ff,
        "vocab_size": cfg.vocab,
        "layer_norm_epsilon": cfg.ln_eps,
        "tie_word_embeddings": true,
    })
}

/// How one Hugging Face tensor maps onto rdbench's.
enum Role {
    /// rdbench's parameter of that name; `transpose`: a `Conv1D` weight, `[in, out]` here.
    Param { name: String, transpose: bool },
    /// Accepted and not used (the causal mask, the tied head).
    Ignored,
}

/// Every tensor a file of architecture `cfg` may hold, by its name without prefix: its shape,
/// its role, and whether it is required.
fn layout(cfg: &GptConfig) -> BTreeMap<String, (Vec<usize>, Role, bool)> {
    let (d, f, ctx) = (cfg.d_model, cfg.d_ff, cfg.ctx);
    let param = |ours: &str, shape: Vec<usize>, transpose: bool| {
        let name = ours.to_string();
        (shape, Role::Param { name, transpose }, true)
    };
    let mut m = BTreeMap::new();
    m.insert("wte.weight".into(), param("wte", vec![cfg.vocab, d], false));
    m.insert("wpe.weight".into(), param("wpe", vec![ctx, d], false));
    for i in 0..cfg.n_layer {
        for (hf, ours, shape, transpose) in [
            ("ln_1.weight", "ln1.weight", vec![d], false),
            ("ln_1.bias", "ln1.bias", vec![d], false),
            (
                "attn.c_attn.weight",
                "attn.qkv.weight",
                vec![d, 3 * d],
                true,
            ),
            ("attn.c_attn.bias", "attn.qkv.bias", vec![3 * d], false),
            ("attn.c_proj.weight", "attn.proj.weight", vec![d, d], true),
            ("attn.c_proj.bias", "attn.proj.bias", vec![d], false),
            ("ln_2.weight", "ln2.weight", vec![d], false),
            ("ln_2.bias", "ln2.bias", vec![d], false),
            ("mlp.c_fc.weight", "mlp.fc.weight", vec![d, f], true),
            ("mlp.c_fc.bias", "mlp.fc.bias", vec![f], false),
            ("mlp.c_proj.weight", "mlp.proj.weight", vec![f, d], true),
            ("mlp.c_proj.bias", "mlp.proj.bias", vec![d], false),
        ] {
            let ours = format!("blocks.{i}.{ours}");
            m.insert(format!("h.{i}.{hf}"), param(&ours, shape, transpose));
        }
        let mask = (vec![1, 1, ctx, ctx], Role::Ignored, false);
        m.insert(format!("h.{i}.attn.bias"), mask);
        m.insert(
            format!("h.{i}.attn.masked_bias"),
            (vec![], Role::Ignored, false),
        );
    }
    m.insert("ln_f.weight".into(), param("ln_f.weight", vec![d], false));
    m.insert("ln_f.bias".into(), param("ln_f.bias", vec![d], false));
    let head = (vec![cfg.vocab, d], Role::Ignored, false);
    m.insert("lm_head.weight".into(), head);
    m
}

/// Largest file of architecture `cfg` that [`load`] reads: every tensor it may hold, and the
/// header's allowance.
pub fn max_file_bytes(cfg: &GptConfig) -> u64 {
    layout(cfg)
        .values()
        .map(|(shape, _, _)| shape.iter().product::<usize>() as u64 * 4)
        .sum::<u64>()
        + HEADER_ALLOWANCE
}

/// Loads the Hugging Face GPT-2 checkpoint at `path` as a model of architecture `cfg`,
/// checking everything (see the module docs); any other file is a [`LoadError`] naming it and
/// the first thing wrong.
pub fn load(path: &Path, cfg: &GptConfig) -> std::result::Result<Gpt, LoadError> {
    load_bytes(path, &read_bounded(path, max_file_bytes(cfg))?, cfg)
}

/// [`load`] on a file's bytes already read (within [`max_file_bytes`]); `path` names it in
/// errors.
pub fn load_bytes(
    path: &Path,
    bytes: &[u8],
    cfg: &GptConfig,
) -> std::result::Result<Gpt, LoadError> {
    let err = |kind| LoadError {
        path: path.to_path_buf(),
        kind,
    };
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| err(LoadErrorKind::NotSafetensors(e.to_string())))?;
    let expected = layout(cfg);
    let mut found: BTreeMap<&str, &str> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for full in st.names() {
        let bare = full.strip_prefix(PREFIX).unwrap_or(full);
        if !expected.contains_key(bare) {
            unexpected.push(full.to_string());
        } else if let Some(other) = found.insert(bare, full) {
            // The same tensor with and without the prefix: which one counts is ambiguous.
            unexpected.extend([other.to_string(), full.to_string()]);
        }
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(err(LoadErrorKind::UnexpectedTensors(unexpected)));
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|(name, (_, _, required))| *required && !found.contains_key(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(err(LoadErrorKind::MissingTensors(missing)));
    }
    let mut tensors = BTreeMap::new();
    for (bare, full) in found {
        let (shape, role, _) = &expected[bare];
        let view = st
            .tensor(full)
            .map_err(|e| err(LoadErrorKind::NotSafetensors(e.to_string())))?;
        let Role::Param { name, transpose } = role else {
            if view.shape() != shape.as_slice() {
                return Err(err(LoadErrorKind::WrongShape {
                    name: full.to_string(),
                    got: view.shape().to_vec(),
                    want: shape.clone(),
                }));
            }
            continue;
        };
        let t = checked_tensor(path, full, &view, shape, &Device::Cpu)?;
        let t = if *transpose {
            t.t().and_then(|t| t.contiguous())
        } else {
            Ok(t)
        }
        .map_err(|e| err(LoadErrorKind::Io(e.to_string())))?;
        tensors.insert(name.clone(), t);
    }
    Gpt::from_tensors(cfg.clone(), tensors).map_err(|e| err(LoadErrorKind::Io(e.to_string())))
}

/// `gpt`'s parameters under Hugging Face's names (without prefix) and layout, the buffers
/// left out: what [`save`] writes and `GPT2LMHeadModel.from_pretrained` reads.
pub fn hf_tensors(gpt: &Gpt) -> Result<BTreeMap<String, Tensor>> {
    let ours = gpt.tensors();
    let mut out = BTreeMap::new();
    for (hf, (_, role, _)) in layout(gpt.config()) {
        if let Role::Param { name, transpose } = role {
            let t = &ours[&name];
            let t = if transpose {
                t.t()?.contiguous()?
            } else {
                t.clone()
            };
            out.insert(hf, t);
        }
    }
    Ok(out)
}

/// Saves `gpt` as a Hugging Face GPT-2 checkpoint at `path`, atomically.
pub fn save(gpt: &Gpt, path: &Path) -> Result<()> {
    crate::io::save_tensors(&hf_tensors(gpt)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GptConfig {
        GptConfig {
            vocab: 11,
            ctx: 8,
            d_model: 12,
            n_layer: 2,
            n_head: 3,
            d_ff: 20,
            ln_eps: 1e-5,
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_conv1d_weights_are_transposed() {
        let cfg = small();
        let gpt = Gpt::new(cfg.clone(), 7).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        save(&gpt, &path).unwrap();
        let hf = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(hf["h.1.mlp.c_fc.weight"].dims(), &[12, 20]);
        let ours = gpt.param("blocks.1.mlp.fc.weight").as_tensor();
        let (a, b) = (
            ours.get(3)
                .unwrap()
                .get(5)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            hf["h.1.mlp.c_fc.weight"]
                .get(5)
                .unwrap()
                .get(3)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        assert_eq!(a, b);
        let back = load(&path, &cfg).unwrap();
        for (name, t) in gpt.tensors() {
            let diff = (t - back.param(&name).as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(diff, 0.0, "{name}");
        }
        let json = serde_json::to_vec(&config_json(&cfg)).unwrap();
        assert_eq!(config_from_json(&json).unwrap(), cfg);
    }

    #[test]
    fn prefixed_names_and_buffers_load_and_anything_else_is_named() {
        let cfg = small();
        let gpt = Gpt::new(cfg.clone(), 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let with = |extra: &[(&str, Tensor)], prefix: &str| {
            let mut t: BTreeMap<String, Tensor> = hf_tensors(&gpt)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v))
                .collect();
            for (k, v) in extra {
                t.insert(k.to_string(), v.clone());
            }
            crate::io::save_tensors(&t, &path).unwrap();
            load(&path, &cfg)
        };
        let mask = Tensor::ones((1, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let head = Tensor::zeros((11, 12), candle_core::DType::F32, &Device::Cpu).unwrap();
        with(
            &[
                ("transformer.h.0.attn.bias", mask.clone()),
                ("lm_head.weight", head),
            ],
            PREFIX,
        )
        .unwrap();
        let e = with(&[("h.0.attn.bias", mask.reshape((8, 8)).unwrap())], "").unwrap_err();
        assert!(
            e.to_string().contains("h.0.attn.bias has shape [8, 8]"),
            "{e}"
        );
        let e = with(&[("score.weight", mask.clone())], "").unwrap_err();
        assert!(e.to_string().contains("unexpected tensors"), "{e}");
        assert!(e.to_string().contains("score.weight"), "{e}");
        let e = with(
            &[(
                "transformer.wte.weight",
                gpt.param("wte").as_tensor().clone(),
            )],
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("transformer.wte.weight"), "{e}");
        let mut partial = hf_tensors(&gpt).unwrap();
        partial.remove("h.1.ln_2.bias");
        crate::io::save_tensors(&partial, &path).unwrap();
        let e = load(&path, &cfg).unwrap_err();
        assert!(
            e.to_string().contains("missing tensors: h.1.ln_2.bias"),
            "{e}"
        );
    }

    #[test]
    fn configs_of_other_architectures_are_refused_in_one_line() {
        let e = config_from_json(br#"{"n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 4, "vocab_size": 5, "activation_function": "relu"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("relu"), "{e}");
        assert!(config_from_json(br#"{"hidden_size": 8}"#).is_err());
    }
}
