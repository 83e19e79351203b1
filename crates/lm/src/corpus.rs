//! A synthetic corpus with an exactly known loss floor.
//!
//! The text comes from a hidden Markov model ([`Hmm`]): `states` hidden states, each with
//! `successors` allowed next states (sparse transitions, weights drawn from a flat Dirichlet), and
//! a Zipf-distributed emission over the whole vocabulary whose rank order is a per-state random
//! permutation. Every token has non-zero probability in every state, so every loss is finite.
//!
//! Sequences are independent: each starts in a state drawn from the uniform initial distribution
//! and runs for `seq_len` tokens. The Bayes-optimal predictor of token `t` given tokens `0..t` of
//! the same sequence is the HMM's own predictive distribution, computed exactly by the forward
//! algorithm ([`Hmm::sequence_nll`]). The mean of that negative log-likelihood over the positions
//! a language model is scored on is the **floor**: no predictor can beat it in expectation.
//!
//! The HMM's structure (transitions and emissions) is fixed by `structure_seed`; a split (train,
//! held-out) is a set of sequences sampled with its own `sample_seed`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{LmError, Result};

/// The public shape of the corpus HMM; its structure seed is part of the hidden instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusShape {
    pub states: usize,
    pub vocab: usize,
    pub successors: usize,
    pub zipf_exponent: f64,
}

impl CorpusShape {
    /// The HMM of this shape whose structure (transitions, emission orders) is `structure_seed`'s.
    pub fn with_structure_seed(&self, structure_seed: u64) -> HmmConfig {
        HmmConfig {
            states: self.states,
            vocab: self.vocab,
            successors: self.successors,
            zipf_exponent: self.zipf_exponent,
            structure_seed,
        }
    }
}

/// Hyper-parameters of the corpus HMM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HmmConfig {
    /// Number of hidden states.
    pub states: usize,
    /// Vocabulary size (at most 65,536: tokens are stored as `u16`).
    pub vocab: usize,
    /// Allowed next states per state (sparse transitions).
    pub successors: usize,
    /// Zipf exponent of each state's emission distribution: `p(rank r) ∝ (r + 1)^-exponent`.
    pub zipf_exponent: f64,
    /// Seed of the structure (transitions, emission permutations).
    pub structure_seed: u64,
}

/// A hidden Markov model over `u16` tokens with sparse transitions and Zipf emissions.
#[derive(Debug, Clone)]
pub struct Hmm {
    cfg: HmmConfig,
    /// `succ[s * k + j]`: the j-th allowed successor of state `s`.
    succ: Vec<u32>,
    /// `succ_p[s * k + j]`: its probability.
    succ_p: Vec<f64>,
    /// `rank[s * vocab + v]`: the rank of token `v` in state `s`'s emission.
    rank: Vec<u32>,
    /// `perm[s * vocab + r]`: the token of rank `r` in state `s`.
    perm: Vec<u16>,
    /// Zipf probabilities by rank (shared by all states).
    zipf: Vec<f64>,
    /// Cumulative Zipf probabilities by rank (for sampling).
    zipf_cdf: Vec<f64>,
}

impl Hmm {
    /// Builds the HMM deterministically from its configuration.
    pub fn new(cfg: HmmConfig) -> Result<Self> {
        if cfg.states == 0 || cfg.vocab < 2 || cfg.vocab > 65_536 {
            return Err(LmError::Config(format!(
                "HMM needs at least 1 state and a vocabulary of 2..=65536 tokens, got {} states, vocab {}",
                cfg.states, cfg.vocab
            )));
        }
        if cfg.successors == 0 || cfg.successors > cfg.states {
            return Err(LmError::Config(format!(
                "HMM successors must be in 1..={} (the number of states), got {}",
                cfg.states, cfg.successors
            )));
        }
        if !(cfg.zipf_exponent.is_finite() && cfg.zipf_exponent >= 0.0) {
            return Err(LmError::Config(format!(
                "bad Zipf exponent {}",
                cfg.zipf_exponent
            )));
        }
        let (s_n, v_n, k) = (cfg.states, cfg.vocab, cfg.successors);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.structure_seed);
        let mut succ = Vec::with_capacity(s_n * k);
        let mut succ_p = Vec::with_capacity(s_n * k);
        let mut all: Vec<u32> = (0..s_n as u32).collect();
        for _ in 0..s_n {
            // k distinct successors: partial Fisher-Yates.
            for j in 0..k {
                let i = rng.gen_range(j..s_n);
                all.swap(j, i);
            }
            // Flat Dirichlet weights: normalized exponentials.
            let w: Vec<f64> = (0..k).map(|_| -(1.0 - rng.gen::<f64>()).ln()).collect();
            let total: f64 = w.iter().sum();
            for j in 0..k {
                succ.push(all[j]);
                succ_p.push(w[j] / total);
            }
        }
        let mut rank = vec![0u32; s_n * v_n];
        let mut perm = vec![0u16; s_n * v_n];
        let mut p: Vec<u16> = (0..v_n).map(|v| v as u16).collect();
        for s in 0..s_n {
            for i in (1..v_n).rev() {
                let j = rng.gen_range(0..=i);
                p.swap(i, j);
            }
            for (r, &tok) in p.iter().enumerate() {
                perm[s * v_n + r] = tok;
                rank[s * v_n + tok as usize] = r as u32;
            }
        }
        let raw: Vec<f64> = (0..v_n)
            .map(|r| ((r + 1) as f64).powf(-cfg.zipf_exponent))
            .collect();
        let z: f64 = raw.iter().sum();
        let zipf: Vec<f64> = raw.iter().map(|x| x / z).collect();
        let mut zipf_cdf = Vec::with_capacity(v_n);
        let mut acc = 0.0;
        for &q in &zipf {
            acc += q;
            zipf_cdf.push(acc);
        }
        Ok(Hmm {
            cfg,
            succ,
            succ_p,
            rank,
            perm,
            zipf,
            zipf_cdf,
        })
    }

    pub fn config(&self) -> &HmmConfig {
        &self.cfg
    }

    /// Initial state distribution (uniform).
    pub fn initial(&self, _state: usize) -> f64 {
        1.0 / self.cfg.states as f64
    }

    /// Transition probability from `from` to `to` (zero unless `to` is a successor of `from`).
    pub fn transition(&self, from: usize, to: usize) -> f64 {
        let k = self.cfg.successors;
        (0..k)
            .filter(|&j| self.succ[from * k + j] as usize == to)
            .map(|j| self.succ_p[from * k + j])
            .sum()
    }

    /// Emission probability of token `v` in state `s`.
    pub fn emission(&self, s: usize, v: usize) -> f64 {
        self.zipf[self.rank[s * self.cfg.vocab + v] as usize]
    }

    /// Samples `n_seq` independent sequences of `seq_len` tokens, flattened row-major.
    pub fn sample(&self, sample_seed: u64, n_seq: usize, seq_len: usize) -> Vec<u16> {
        let mut rng = ChaCha8Rng::seed_from_u64(sample_seed);
        let (s_n, v_n, k) = (self.cfg.states, self.cfg.vocab, self.cfg.successors);
        let mut out = Vec::with_capacity(n_seq * seq_len);
        for _ in 0..n_seq {
            let mut s = rng.gen_range(0..s_n);
            for t in 0..seq_len {
                if t > 0 {
                    let u: f64 = rng.gen();
                    let mut acc = 0.0;
                    let mut next = self.succ[s * k + k - 1];
                    for j in 0..k {
                        acc += self.succ_p[s * k + j];
                        if u < acc {
                            next = self.succ[s * k + j];
                            break;
                        }
                    }
                    s = next as usize;
                }
                let u: f64 = rng.gen::<f64>() * self.zipf_cdf[v_n - 1];
                let r = self.zipf_cdf.partition_point(|&c| c <= u).min(v_n - 1);
                out.push(self.perm[s * v_n + r]);
            }
        }
        out
    }

    /// Exact `-ln p(x_t | x_0..t)` for every position `t` of one sequence (forward algorithm,
    /// normalized at every step). Position 0 is conditioned on nothing.
    pub fn sequence_nll(&self, seq: &[u16]) -> Vec<f64> {
        let (s_n, v_n, k) = (self.cfg.states, self.cfg.vocab, self.cfg.successors);
        let mut pred = vec![1.0 / s_n as f64; s_n];
        let mut next = vec![0.0; s_n];
        let mut out = Vec::with_capacity(seq.len());
        for &x in seq {
            let x = x as usize;
            let mut p = 0.0;
            for (s, q) in pred.iter_mut().enumerate() {
                *q *= self.zipf[self.rank[s * v_n + x] as usize];
                p += *q;
            }
            out.push(-p.ln());
            next.iter_mut().for_each(|q| *q = 0.0);
            let inv = 1.0 / p;
            for s in 0..s_n {
                let post = pred[s] * inv;
                if post == 0.0 {
                    continue;
                }
                for j in 0..k {
                    next[self.succ[s * k + j] as usize] += post * self.succ_p[s * k + j];
                }
            }
            std::mem::swap(&mut pred, &mut next);
        }
        out
    }

    /// Exact `-ln p(x_t | every unmasked token of the sequence)` for each masked position `t`
    /// (`masked[t]`), in order: forward-backward with the masked positions as missing
    /// observations (their emission factor is 1), normalized at every step.
    ///
    /// This is the Bayes-optimal loss of a masked-language model that predicts each masked
    /// position separately from the unmasked ones: the expected cross-entropy of any per-position
    /// prediction is at least that of the true conditional marginal.
    pub fn masked_nll(&self, seq: &[u16], masked: &[bool]) -> Vec<f64> {
        assert_eq!(seq.len(), masked.len(), "one mask flag per token");
        let (s_n, v_n, k) = (self.cfg.states, self.cfg.vocab, self.cfg.successors);
        let n = seq.len();
        if n == 0 {
            return Vec::new();
        }
        let emit = |s: usize, t: usize| -> f64 {
            if masked[t] {
                1.0
            } else {
                self.zipf[self.rank[s * v_n + seq[t] as usize] as usize]
            }
        };
        // alpha[t]: p(state_t | observations 0..=t), each row normalized.
        let mut alpha = vec![0.0; n * s_n];
        let mut prior = vec![1.0 / s_n as f64; s_n];
        for t in 0..n {
            let row = &mut alpha[t * s_n..(t + 1) * s_n];
            let mut z = 0.0;
            for s in 0..s_n {
                row[s] = prior[s] * emit(s, t);
                z += row[s];
            }
            row.iter_mut().for_each(|a| *a /= z);
            prior.iter_mut().for_each(|q| *q = 0.0);
            for s in 0..s_n {
                let a = row[s];
                if a == 0.0 {
                    continue;
                }
                for j in 0..k {
                    prior[self.succ[s * k + j] as usize] += a * self.succ_p[s * k + j];
                }
            }
        }
        // beta: p(observations t+1.. | state_t), rescaled to sum to one (the scale cancels in
        // the posterior, which is normalized per position).
        let mut beta = vec![1.0 / s_n as f64; s_n];
        let mut out = Vec::new();
        for t in (0..n).rev() {
            if masked[t] {
                let row = &alpha[t * s_n..(t + 1) * s_n];
                let (mut num, mut den) = (0.0, 0.0);
                for s in 0..s_n {
                    let post = row[s] * beta[s];
                    den += post;
                    num += post * self.zipf[self.rank[s * v_n + seq[t] as usize] as usize];
                }
                out.push(-(num / den).ln());
            }
            if t == 0 {
                break;
            }
            // beta_{t-1}(s) = sum_j A(s, j) e_j(x_t) beta_t(j)
            let mut prev = vec![0.0; s_n];
            let mut z = 0.0;
            for (s, p) in prev.iter_mut().enumerate() {
                let mut acc = 0.0;
                for j in 0..k {
                    let to = self.succ[s * k + j] as usize;
                    acc += self.succ_p[s * k + j] * emit(to, t) * beta[to];
                }
                *p = acc;
                z += acc;
            }
            prev.iter_mut().for_each(|b| *b /= z);
            beta = prev;
        }
        out.reverse();
        out
    }

    /// The masked floor: mean of [`Hmm::masked_nll`] over every masked position of every
    /// sequence (`masks` row-major like `tokens`), with the number of masked positions.
    pub fn masked_floor(&self, tokens: &[u16], masks: &[bool], seq_len: usize) -> (f64, usize) {
        assert_eq!(tokens.len(), masks.len(), "one mask flag per token");
        let (mut total, mut n) = (0.0, 0usize);
        for (seq, mask) in tokens
            .chunks_exact(seq_len)
            .zip(masks.chunks_exact(seq_len))
        {
            let nll = self.masked_nll(seq, mask);
            n += nll.len();
            total += nll.iter().sum::<f64>();
        }
        (total / n.max(1) as f64, n)
    }

    /// The floor: mean exact Bayes-optimal loss over positions `1..seq_len` of every sequence
    /// (the positions a language model with context `seq_len - 1` is scored on).
    pub fn floor(&self, tokens: &[u16], seq_len: usize) -> f64 {
        let mut total = 0.0;
        let mut n = 0usize;
        for seq in tokens.chunks_exact(seq_len) {
            let nll = self.sequence_nll(seq);
            total += nll[1..].iter().sum::<f64>();
            n += seq_len - 1;
        }
        total / n.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Hmm {
        Hmm::new(HmmConfig {
            states: 4,
            vocab: 5,
            successors: 2,
            zipf_exponent: 1.0,
            structure_seed: 7,
        })
        .unwrap()
    }

    /// `p(seq)` by summing over every hidden path.
    fn brute_prob(h: &Hmm, seq: &[u16]) -> f64 {
        brute_joint(h, seq, &vec![false; seq.len()], None)
    }

    #[test]
    fn forward_matches_brute_force_on_short_sequences() {
        let h = small();
        for seed in 0..20 {
            let seq = h.sample(seed, 1, 6);
            let nll = h.sequence_nll(&seq);
            for t in 0..seq.len() {
                let num = brute_prob(&h, &seq[..=t]);
                let den = if t == 0 {
                    1.0
                } else {
                    brute_prob(&h, &seq[..t])
                };
                let want = -(num / den).ln();
                assert!(
                    (nll[t] - want).abs() < 1e-10,
                    "seed {seed} t {t}: {} vs {want}",
                    nll[t]
                );
            }
        }
    }

    /// `p(the unmasked tokens of seq, and token t too if given)` by summing over every hidden
    /// path: an independent check of forward-backward with missing observations.
    fn brute_joint(h: &Hmm, seq: &[u16], masked: &[bool], also: Option<usize>) -> f64 {
        let s_n = h.config().states;
        let n = seq.len();
        let seen = |t: usize| !masked[t] || also == Some(t);
        let mut total = 0.0;
        let mut path = vec![0usize; n];
        loop {
            let mut p = h.initial(path[0]);
            for t in 0..n {
                if t > 0 {
                    p *= h.transition(path[t - 1], path[t]);
                }
                if seen(t) {
                    p *= h.emission(path[t], seq[t] as usize);
                }
            }
            total += p;
            let mut i = 0;
            loop {
                if i == n {
                    return total;
                }
                path[i] += 1;
                if path[i] < s_n {
                    break;
                }
                path[i] = 0;
                i += 1;
            }
        }
    }

    #[test]
    fn masked_posteriors_match_brute_force_on_short_sequences() {
        let h = small();
        let mut checked = 0;
        for seed in 0..30u64 {
            let seq = h.sample(seed, 1, 7);
            // The seed's low bits pick the mask: none, single positions, runs, nearly all.
            let masked: Vec<bool> = (0..7).map(|t| (seed >> (t % 5)) & 1 == 1).collect();
            let nll = h.masked_nll(&seq, &masked);
            let positions: Vec<usize> = (0..7).filter(|&t| masked[t]).collect();
            assert_eq!(nll.len(), positions.len());
            let den = brute_joint(&h, &seq, &masked, None);
            for (&t, &got) in positions.iter().zip(&nll) {
                let want = -(brute_joint(&h, &seq, &masked, Some(t)) / den).ln();
                assert!(
                    (got - want).abs() < 1e-10,
                    "seed {seed} t {t}: {got} vs {want}"
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked}");
        // Everything masked: each position's prediction is its prior marginal.
        let seq = h.sample(99, 1, 5);
        let all = vec![true; 5];
        for (t, got) in h.masked_nll(&seq, &all).into_iter().enumerate() {
            let want = -(brute_joint(&h, &seq, &all, Some(t))).ln();
            assert!((got - want).abs() < 1e-10, "t {t}: {got} vs {want}");
        }
    }

    #[test]
    fn seeing_both_sides_beats_seeing_the_left_only() {
        // The masked floor of a position with unmasked neighbours on both sides is below the
        // causal floor (left context only) on average: the right context carries information.
        let h = Hmm::new(HmmConfig {
            states: 8,
            vocab: 16,
            successors: 2,
            zipf_exponent: 1.5,
            structure_seed: 4,
        })
        .unwrap();
        let toks = h.sample(5, 2000, 9);
        let mut masked = vec![false; 9];
        masked[4] = true;
        let (mut both, mut left) = (0.0, 0.0);
        for seq in toks.chunks_exact(9) {
            both += h.masked_nll(seq, &masked)[0];
            left += h.sequence_nll(&seq[..5])[4];
        }
        assert!(both < left - 0.05 * 2000.0, "{both} vs {left}");
        let masks: Vec<bool> = (0..toks.len()).map(|i| i % 9 == 4).collect();
        let (floor, n) = h.masked_floor(&toks, &masks, 9);
        assert_eq!(n, 2000);
        assert!((floor - both / 2000.0).abs() < 1e-12);
    }

    #[test]
    fn probabilities_are_normalized() {
        let h = small();
        for s in 0..4 {
            let e: f64 = (0..5).map(|v| h.emission(s, v)).sum();
            assert!((e - 1.0).abs() < 1e-12);
            let t: f64 = (0..4).map(|to| h.transition(s, to)).sum();
            assert!((t - 1.0).abs() < 1e-12);
        }
        // The predictive distribution after any prefix sums to one.
        let seq = h.sample(3, 1, 4);
        for t in 0..4 {
            let total: f64 = (0..5u16)
                .map(|v| {
                    let mut s = seq[..t].to_vec();
                    s.push(v);
                    (-h.sequence_nll(&s)[t]).exp()
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-12, "t {t}: {total}");
        }
    }

    #[test]
    fn sampling_matches_the_model() {
        // The mean exact NLL of sampled data approaches the entropy it is sampled from: compare
        // the first-token NLL with the entropy of the uniform mixture of emissions.
        let h = Hmm::new(HmmConfig {
            states: 8,
            vocab: 16,
            successors: 3,
            zipf_exponent: 1.1,
            structure_seed: 1,
        })
        .unwrap();
        let toks = h.sample(11, 40_000, 1);
        let mean: f64 =
            toks.iter().map(|&x| h.sequence_nll(&[x])[0]).sum::<f64>() / toks.len() as f64;
        let mix: Vec<f64> = (0..16)
            .map(|v| (0..8).map(|s| h.emission(s, v)).sum::<f64>() / 8.0)
            .collect();
        let entropy: f64 = mix.iter().map(|p| -p * p.ln()).sum();
        assert!((mean - entropy).abs() < 0.02, "{mean} vs {entropy}");
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let h = small();
        assert_eq!(h.sample(1, 3, 10), h.sample(1, 3, 10));
        assert_ne!(h.sample(1, 3, 10), h.sample(2, 3, 10));
        let h2 = small();
        assert_eq!(
            h.sequence_nll(&h.sample(5, 1, 9)),
            h2.sequence_nll(&h.sample(5, 1, 9))
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let base = HmmConfig {
            states: 4,
            vocab: 5,
            successors: 2,
            zipf_exponent: 1.0,
            structure_seed: 0,
        };
        assert!(Hmm::new(HmmConfig {
            successors: 5,
            ..base.clone()
        })
        .is_err());
        assert!(Hmm::new(HmmConfig {
            vocab: 70_000,
            ..base.clone()
        })
        .is_err());
        assert!(Hmm::new(HmmConfig {
            zipf_exponent: f64::NAN,
            ..base
        })
        .is_err());
    }
}
