//! The reference forward both checks of rdbench's llama compare against: candle-transformers'
//! `quantized_llama`. Shared by `gguf`'s unit tests (random models) and `tests/smollm2.rs` (the
//! real file); a test-only file, since candle-transformers is a dev-dependency.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

/// candle's logits for `tokens` fed at `position` (its cache holds what came before).
pub fn candle_logits(model: &mut ModelWeights, tokens: &[u32], position: usize) -> Vec<f32> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&input, position).unwrap();
    logits
        .squeeze(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}
