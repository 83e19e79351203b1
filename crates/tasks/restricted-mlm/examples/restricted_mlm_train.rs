//! The shipped trainer: trains any valid `model.toml` on a token file with AdamW on masked-token
//! loss (fresh random masks every batch) and saves `weights.safetensors`.
//!
//! ```text
//! cargo run --release -p rdbench-task-restricted-mlm --example restricted_mlm_train -- \
//!     --profile tiny --model model.toml --tokens train_tokens.bin --steps 1000 --lr 3e-3 \
//!     [--batch 32] [--warmup 50] [--seed 1] [--init weights.safetensors] --out weights.safetensors
//! ```
//!
//! Without `--init`, weights start from each weight node's `init`; with it, from that file
//! (which must hold exactly the graph's weights), so constants and earlier training carry over.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Device;
use rdbench_lm::{TokenSet, TrainConfig};
use rdbench_task_restricted_mlm::{graph, interp::MlmModel, mlm, profile};

fn main() {
    if let Err(e) = run() {
        eprintln!("restricted_mlm_train: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags: HashMap<String, String> = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let key = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {k:?}"))?;
        let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
        flags.insert(key.to_string(), v.clone());
    }
    let get = |k: &str, d: Option<&str>| -> Result<String, String> {
        flags
            .get(k)
            .cloned()
            .or(d.map(str::to_string))
            .ok_or_else(|| format!("--{k} is required"))
    };
    let num = |k: &str, d: &str| -> Result<f64, String> {
        get(k, Some(d))?
            .parse::<f64>()
            .map_err(|e| format!("--{k}: {e}"))
    };
    let spec = profile::by_name(&get("profile", Some("tiny"))?).ok_or("unknown --profile")?;
    let model_path = PathBuf::from(get("model", Some("model.toml"))?);
    let text = std::fs::read_to_string(&model_path)
        .map_err(|e| format!("{}: {e}", model_path.display()))?;
    let g =
        graph::parse(&text, &spec.limits).map_err(|e| format!("{}: {e}", model_path.display()))?;
    eprintln!(
        "{}: {} weight elements, {} flops per token",
        model_path.display(),
        g.params,
        g.flops_per_token
    );
    let dev = Device::Cpu;
    let model = match flags.get("init") {
        Some(p) => {
            MlmModel::load(g, spec.limits.clone(), p.as_ref(), &dev).map_err(|e| e.to_string())?
        }
        None => MlmModel::init(g, spec.limits.clone(), num("seed", "1")? as u64, &dev)
            .map_err(|e| e.to_string())?,
    };
    let tokens = PathBuf::from(get("tokens", Some("train_tokens.bin"))?);
    let data = TokenSet::read(&tokens, spec.limits.seq).map_err(|e| e.to_string())?;
    let cfg = TrainConfig {
        steps: num("steps", "1000")? as usize,
        batch_size: num("batch", "32")? as usize,
        lr: num("lr", "3e-3")?,
        warmup_steps: num("warmup", "50")? as usize,
        min_lr_frac: 0.1,
        weight_decay: num("weight-decay", "0")?,
        seed: num("seed", "1")? as u64,
    };
    let report = mlm::train(&model, &data, &cfg, "training").map_err(|e| e.to_string())?;
    let out = PathBuf::from(get("out", Some("weights.safetensors"))?);
    rdbench_lm::save_tensors(&model.tensors(), &out).map_err(|e| e.to_string())?;
    eprintln!(
        "trained {} steps in {:.1} s, final training loss {:.4}; saved {}",
        report.steps,
        report.seconds,
        report.final_train_loss,
        out.display()
    );
    Ok(())
}
