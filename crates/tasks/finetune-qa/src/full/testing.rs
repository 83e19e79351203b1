//! An operator's inputs for `full`, made up, for the tests of the profile here and of the
//! binary: GPT-2-architecture checkpoints small enough to score in a second (random weights;
//! the reference is a policy that ends every response at once), a byte-level tokenizer with
//! GPT-2's `<|endoftext|>`, Alpaca records whose outputs must never reach the attempt
//! (`SECRET-ANSWER-…`), and the TOML file that names them with their hashes.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rdbench_core::{Error, Result};
use rdbench_lm::{hf_gpt2, Gpt, GptConfig};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The made-up GPT-2's architecture: 257 tokens (256 bytes and the end token), context 128.
pub fn architecture() -> GptConfig {
    GptConfig {
        vocab: 257,
        ctx: 128,
        d_model: 32,
        n_layer: 2,
        n_head: 2,
        d_ff: 64,
        ln_eps: 1e-5,
    }
}

/// The end token's id in [`write_tokenizer`]'s vocabulary.
pub const END_TOKEN: usize = 256;

/// Held-out instructions of the made-up set.
pub const HELDOUT: [&str; 3] = ["Say hi.", "Add 2 and 2.", "Name a fruit."];

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// GPT-2's byte-level pre-tokenizer and decoder over the 256 byte symbols, no merges, and
/// `<|endoftext|>` as token [`END_TOKEN`].
pub fn write_tokenizer(path: &Path) -> Result<()> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut symbols: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    symbols.sort();
    let mut vocab: tokenizers::models::bpe::Vocab = symbols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    vocab.insert("<|endoftext|>".into(), END_TOKEN as u32);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .map_err(internal)?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer
        .add_special_tokens(vec![tokenizers::AddedToken::from("<|endoftext|>", true)])
        .map_err(internal)?;
    tokenizer.save(path, false).map_err(internal)
}

/// `base` changed to end every response at once: its final norm outputs a constant that only
/// the end token's embedding reads.
pub fn ends_at_once(base: &Gpt) -> Result<Gpt> {
    let cfg = base.config().clone();
    let d = cfg.d_model;
    let mut tensors = base.tensors();
    let mut wte = tensors["wte"]
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(internal)?;
    for t in 0..cfg.vocab {
        wte[t * d] = if t == END_TOKEN { 10.0 } else { 0.0 };
    }
    let mut bias = vec![0f32; d];
    bias[0] = 10.0;
    let dev = Device::Cpu;
    let tensor = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &dev).map_err(internal);
    tensors.insert("wte".into(), tensor(wte, &[cfg.vocab, d])?);
    tensors.insert(
        "ln_f.weight".into(),
        Tensor::zeros(d, DType::F32, &dev).map_err(internal)?,
    );
    tensors.insert("ln_f.bias".into(), tensor(bias, &[d])?);
    Gpt::from_tensors(cfg, tensors).map_err(internal)
}

/// `{ path = …, sha256 = … }` for the file at `path`.
fn recorded(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!(
        "{{ path = {:?}, sha256 = \"{:x}\" }}",
        path,
        Sha256::digest(bytes)
    ))
}

/// Writes the operator's files into `dir` and the TOML naming them (the judge at `base_url`,
/// the key `sk-judge-secret` in a 0600 file, a cap of 3 verdicts, one generation thread, the
/// template `Q: {prompt}\nA:`), and returns the TOML's path.
pub fn write_operator_inputs(dir: &Path, base_url: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cfg = architecture();
    let base = Gpt::new(cfg.clone(), 1).map_err(internal)?;
    let save = |gpt: &Gpt, name: &str| hf_gpt2::save(gpt, &dir.join(name)).map_err(internal);
    save(&base, "base.safetensors")?;
    save(
        &Gpt::new(cfg.clone(), 2).map_err(internal)?,
        "sft.safetensors",
    )?;
    save(&ends_at_once(&base)?, "reference.safetensors")?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    };
    write("config.json", hf_gpt2::config_json(&cfg).to_string())?;
    write_tokenizer(&dir.join("tokenizer.json"))?;
    let records = |items: &[(&str, &str)]| -> String {
        items
            .iter()
            .map(|(i, o)| json!({"instruction": i, "input": "", "output": o}).to_string() + "\n")
            .collect()
    };
    write(
        "train.jsonl",
        records(&[
            ("Name a color.", "SECRET-ANSWER-1"),
            ("Count to 3.", "SECRET-ANSWER-2"),
        ]),
    )?;
    write(
        "heldout.jsonl",
        records(&HELDOUT.map(|p| (p, "SECRET-ANSWER-3"))),
    )?;
    let key = dir.join("key");
    write("key", "sk-judge-secret\n".into())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&key, e))?;
    let file = |name: &str| recorded(&dir.join(name));
    let config = format!(
        "model_config = {}\ntokenizer = {}\nbase_model = {}\nsft_model = {}\n\
         reference_model = {}\ntrain_prompts = {}\nheldout_prompts = {}\n\
         prompt_template = \"Q: {{prompt}}\\nA:\"\nbase_url = {base_url:?}\n\
         model = \"judge-model\"\nkey_file = {key:?}\nattempt_budget_tokens = 100000\n\
         judge_verdict_cap = 3\nconcurrency = 2\nthreads = 1\n",
        file("config.json")?,
        file("tokenizer.json")?,
        file("base.safetensors")?,
        file("sft.safetensors")?,
        file("reference.safetensors")?,
        file("train.jsonl")?,
        file("heldout.jsonl")?,
    );
    write("full.toml", config)?;
    Ok(dir.join("full.toml"))
}

/// What the fake judge of the tests answers for a request: `m` always (`shorter` false: pure
/// position bias), or the label of the shorter output, as a sentence for `m` (`shorter`
/// true).
pub fn judge_reply(body: &serde_json::Value, shorter: bool) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    let output = |label: &str, next: &str| -> usize {
        let Some(start) = user.find(label).map(|s| s + label.len()) else {
            return 0;
        };
        let end = user[start..].find(next).map_or(user.len(), |e| e + start);
        user[start..end].chars().count()
    };
    let first = output("## Output of model m\n\n", "\n\n## Output of model M");
    let second = output("## Output of model M\n\n", "\n\nAnswer with");
    match (shorter, first <= second) {
        (false, _) => "m",
        (true, true) => "The better model is m.",
        (true, false) => "M",
    }
    .to_string()
}
