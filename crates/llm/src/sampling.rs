//! Choosing the next token: greedy at temperature 0, else nucleus (top-p) sampling from the
//! tempered softmax, with a random stream per (seed, choice index) so that a request with a
//! seed is reproducible and its `n` choices differ.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a token is drawn from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy (argmax).
    pub temperature: f64,
    /// Smallest set of most likely tokens whose probability reaches this (1 = all).
    pub top_p: f64,
}

/// One choice's sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// Choice `index` of a request with `seed`: its own ChaCha stream of that seed.
    pub fn new(params: SamplingParams, seed: u64, index: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index as u64);
        Sampler { params, rng }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        // In f64: at low temperatures the scaled logits span hundreds of nats.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l as f64 - max) / self.params.temperature).exp()))
            .filter(|&(_, p)| p > 0.0)
            .collect();
        let total: f64 = probs.iter().map(|&(_, p)| p).sum();
        let mut kept = probs.len();
        if self.params.top_p < 1.0 {
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut cumulative = 0.0;
            kept = 0;
            for &(_, p) in &probs {
                cumulative += p;
                kept += 1;
                if cumulative >= self.params.top_p * total {
                    break;
                }
            }
        }
        let kept = &probs[..kept.max(1)];
        let mass: f64 = kept.iter().map(|&(_, p)| p).sum();
        let mut u = self.rng.gen::<f64>() * mass;
        for &(token, p) in kept {
            if u < p {
                return token;
            }
            u -= p;
        }
        kept[kept.len() - 1].0
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f64, top_p: f64, seed: u64, index: usize) -> Sampler {
        Sampler::new(SamplingParams { temperature, top_p }, seed, index)
    }

    fn draws(s: &mut Sampler, logits: &[f32], k: usize) -> Vec<u32> {
        (0..k).map(|_| s.sample(logits)).collect()
    }

    #[test]
    fn temperature_zero_is_argmax() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        assert_eq!(draws(&mut sampler(0.0, 1.0, 1, 0), &logits, 5), [1; 5]);
        assert_eq!(argmax(&[1.0, 1.0]), 0);
    }

    #[test]
    fn same_seed_same_draws_other_index_other_draws() {
        let logits = [0.0f32; 50];
        let a = draws(&mut sampler(1.0, 1.0, 7, 0), &logits, 20);
        assert_eq!(a, draws(&mut sampler(1.0, 1.0, 7, 0), &logits, 20));
        assert_ne!(a, draws(&mut sampler(1.0, 1.0, 7, 1), &logits, 20));
        assert_ne!(a, draws(&mut sampler(1.0, 1.0, 8, 0), &logits, 20));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let got = draws(&mut sampler(1.0, 0.8, 3, 0), &logits, 2000);
        assert!(got.iter().all(|&t| t < 2), "{got:?}");
        let first = got.iter().filter(|&&t| t == 0).count() as f64 / 2000.0;
        // Renormalized within the nucleus: 0.64 / 0.88 = 0.73.
        assert!((first - 0.73).abs() < 0.05, "{first}");
        // A tiny top_p is greedy.
        assert!(draws(&mut sampler(1.0, 1e-9, 3, 0), &logits, 50)
            .iter()
            .all(|&t| t == 0));
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let logits = [1.0f32, 0.0];
        let share = |t| {
            let got = draws(&mut sampler(t, 1.0, 5, 0), &logits, 4000);
            got.iter().filter(|&&x| x == 0).count() as f64 / 4000.0
        };
        // softmax([1, 0] / T)[0]: T=1 0.73, T=0.25 0.98, T=2 0.62.
        assert!((share(1.0) - 0.731).abs() < 0.03);
        assert!(share(0.25) > 0.96);
        assert!((share(2.0) - 0.622).abs() < 0.03);
    }
}
