//! `ops-attention`: causal self-attention forward with bf16 inputs and output, head dimension
//! 64, f32 softmax and accumulation: `bh` (batch x heads) independent sequences of length `s`.
//! Harness: `kernels/ops-attention/harness.cu` (one thread per query row, everything in double).

use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    Checked, Compare, HArg, Harness, HostOutputs, KernelInfo, KernelProfile, KernelSources,
    KernelTask, TaskBuffer, Vars,
};
use rdbench_gpu::plan::ElemType;
use rdbench_gpu::GpuResult;

use crate::common::{self, Dist, Gen};

/// The starting solution (one thread per query row, a naive two-pass softmax) and the
/// reference (flash-attention's schedule: 64-query tiles, keys and values through shared
/// memory, scores and P v on bf16 tensor cores through `mma.sync`, online softmax).
pub const SOURCES: KernelSources = op_sources!("ops-attention");

/// The head dimension (GPT-2's and GPT-NeoX's).
pub const HEAD_DIM: u64 = 64;

/// The distributions of `q` and `k`, in the order of the `dist` index the kit passes. `v` is
/// always [`Dist::Positive`]: outputs are then weighted means of values in [0, 1), never a
/// cancellation near zero, so bf16 rounding of the probabilities errs by at most 2^-9 of the
/// output (inside the relative tolerance) while a missing key, a wrong mask or a low-precision
/// accumulation shows.
pub const DISTS: [Dist; 2] = [Dist::Uniform, Dist::Large];

const Q_SALT: u64 = 0;
const K_SALT: u64 = 1;
const V_SALT: u64 = 2;

/// Multiply-adds the CPU oracle does at most per check (query rows sampled evenly above that;
/// the device comparison checks every element).
const ORACLE_BUDGET: u64 = 1 << 25;

fn bh_s(v: &Vars) -> (i64, i64) {
    (v["bh"], v["s"])
}

/// Output row `i` of one head, in f64, from that head's `q`, `k` and `v` (`s x 64` each).
pub fn attention_row(q: &[f32], k: &[f32], v: &[f32], i: usize) -> Vec<f64> {
    let d = HEAD_DIM as usize;
    let qi = &q[i * d..(i + 1) * d];
    let scores: Vec<f64> = (0..=i)
        .map(|j| {
            let kj = &k[j * d..(j + 1) * d];
            qi.iter()
                .zip(kj)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                / 8.0
        })
        .collect();
    let max = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let p: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = p.iter().sum();
    (0..d)
        .map(|c| {
            p.iter()
                .enumerate()
                .map(|(j, pj)| pj * v[j * d + c] as f64)
                .sum::<f64>()
                / sum
        })
        .collect()
}

/// The task.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attention;

impl KernelTask for Attention {
    fn info(&self) -> KernelInfo {
        common::info(
            "ops-attention",
            "Optimize a Kernel: causal attention forward (bf16)",
            "Write the fastest correct CUDA kernels for causal self-attention forward (bf16 \
             q, k, v and output, head dimension 64, f32 softmax and accumulation).",
            300,
        )
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        common::tiny_and_full(
            ["bh", "s"],
            (
                &[[16, 1024], [64, 256]],
                "GPT-2 medium's 16 heads at its 1,024 context, and 4 sequences of 256; quick runs",
            ),
            // Llama-2-7B's 32 heads at its 4,096 context (69 GFLOP causal) and 8 sequences of
            // GPT-2 medium's 16 heads at 1,024 (17 GFLOP). The mma.sync reference perhaps
            // reaches 50-150 TFLOP/s on an H100, so about 0.5-1.5 ms and 0.1-0.4 ms
            // (estimates, not measured).
            (
                &[[32, 4096], [128, 1024]],
                "Llama-2-7B's 32 heads at 4,096 positions and 8 x 16 heads at 1,024; about \
                 0.1-1.5 ms each for the reference on an H100, estimated",
            ),
            // s = 1, tails of every tile, then GPT-2 small (12 heads) at its 1,024 context, and
            // longer prefills.
            &[
                [1, 1],
                [2, 17],
                [3, 64],
                [1, 130],
                [2, 513],
                [12, 1024],
                [4, 2048],
                [1, 4097],
            ],
            &[[1, 1], [2, 17], [1, 64], [2, 130]],
        )
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        common::buffers(ElemType::Bf16, &["q", "k", "v"], &["o"])
    }

    fn elements(&self, _buffer: &str, vars: &Vars) -> u64 {
        let (bh, s) = bh_s(vars);
        bh as u64 * s as u64 * HEAD_DIM
    }

    fn distributions(&self) -> &'static [&'static str] {
        &["uniform", "large"]
    }

    fn sources(&self) -> KernelSources {
        SOURCES
    }

    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult {
        let count = self.elements("q", vars) as i64;
        let (row, bf16) = (HEAD_DIM as i64, ElemType::Bf16);
        common::launch_generate(h, "q", bf16, count, row, seed, Q_SALT, DISTS[dist])?;
        common::launch_generate(h, "k", bf16, count, row, seed, K_SALT, DISTS[dist])?;
        common::launch_generate(h, "v", bf16, count, row, seed, V_SALT, Dist::Positive)
    }

    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult {
        let (bh, s) = bh_s(vars);
        h.launch(
            "ops_attention_expected",
            Dims::grid_stride(bh * s),
            &[
                HArg::Buffer("q"),
                HArg::Buffer("k"),
                HArg::Buffer("v"),
                HArg::Buffer("expected.o"),
                HArg::I64(bh),
                HArg::I64(s),
            ],
        )
    }

    fn compare(&self, _output: &str, _vars: &Vars) -> Compare {
        common::BF16_TOLERANCE
    }

    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked {
        let (bh, s) = bh_s(vars);
        let (bh, s, d) = (bh as u64, s as u64, HEAD_DIM);
        let count = bh * s * d;
        let gen = |salt, dist| Gen::new(seed, salt, count, d, dist).in_bf16();
        let (q, k, v) = (
            gen(Q_SALT, DISTS[dist]),
            gen(K_SALT, DISTS[dist]),
            gen(V_SALT, Dist::Positive),
        );
        // Query rows in (head, position) order; the cost of a row is bounded by 2 s d.
        let rows = common::rows_to_check(bh * s, 2 * s * d, ORACLE_BUDGET);
        let head_values = |g: &Gen, head: u64| -> Vec<f32> {
            (head * s..(head + 1) * s).flat_map(|r| g.row(r)).collect()
        };
        let mut cached: Option<(u64, [Vec<f32>; 3])> = None;
        common::check_rows(
            "o",
            ElemType::Bf16,
            outputs,
            bh * s,
            d,
            &rows,
            common::BF16_TOLERANCE,
            |r| {
                let (head, i) = (r / s, (r % s) as usize);
                if cached.as_ref().map(|c| c.0) != Some(head) {
                    let all = [&q, &k, &v].map(|g| head_values(g, head));
                    cached = Some((head, all));
                }
                let [qh, kh, vh] = &cached.as_ref().expect("just filled").1;
                attention_row(qh, kh, vh, i)
            },
        )
    }

    /// Read q, k and v once, write o once; causal scores and weighted sums: 2 x (s^2 / 2) x 64
    /// multiply-adds per head.
    fn work(&self, vars: &Vars) -> Work {
        let (bh, s) = bh_s(vars);
        let (bh, s, d) = (bh as f64, s as f64, HEAD_DIM as f64);
        let e = bh * s * d;
        Work {
            bytes_read: 2.0 * 3.0 * e,
            bytes_written: 2.0 * e,
            ops: 2.0 * bh * s * s * d,
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        let bf16 = common::bf16_instructions();
        common::instructions(
            include_str!("attention.md"),
            &[("BF16", bf16.as_str())],
            profile,
            &DISTS,
            ElemType::Bf16,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdbench_gpu::kernel_task::{bf16_to_f32, f32_to_bf16};

    fn unit(d: usize, at: usize, x: f32) -> Vec<f32> {
        let mut v = vec![0.0; d];
        v[at] = x;
        v
    }

    #[test]
    fn worked_example() {
        let d = HEAD_DIM as usize;
        // q1 . k0 = 0 and q1 . k1 / 8 = ln 3: weights 1/4 and 3/4.
        let q = [unit(d, 0, 1.0), unit(d, 0, 8.0 * 3f32.ln())].concat();
        let k = [unit(d, 1, 1.0), unit(d, 0, 1.0)].concat();
        let v = [vec![0.2; d], vec![0.6; d]].concat();
        let o0 = attention_row(&q, &k, &v, 0);
        assert!(
            o0.iter().all(|x| (x - 0.2).abs() < 1e-7),
            "row 0 sees key 0 only"
        );
        let o1 = attention_row(&q, &k, &v, 1);
        assert!(o1.iter().all(|x| (x - 0.5).abs() < 1e-6), "{o1:?}");
        // Scores of thousands stay finite (one-hot).
        let q = [unit(d, 0, 100.0), unit(d, 0, 100.0)].concat();
        let k = [unit(d, 0, -100.0), unit(d, 0, 100.0)].concat();
        let o1 = attention_row(&q, &k, &v, 1);
        assert!(o1.iter().all(|x| (x - 0.6).abs() < 1e-7), "{o1:?}");
    }

    fn vars(bh: i64, s: i64) -> Vars {
        common::sizes(["bh", "s"], &[[bh, s]]).remove(0)
    }

    /// The exact outputs for seed 2 (dist 0), rounded to f32.
    fn good(bh: u64, s: u64) -> Vec<f32> {
        let d = HEAD_DIM;
        let g = |salt, dist| Gen::new(2, salt, bh * s * d, d, dist).in_bf16();
        let (q, k, v) = (
            g(Q_SALT, Dist::Uniform),
            g(K_SALT, Dist::Uniform),
            g(V_SALT, Dist::Positive),
        );
        (0..bh)
            .flat_map(|h| {
                let part = |g: &Gen| (h * s * d..(h + 1) * s * d).map(|i| g.value(i)).collect();
                let (qh, kh, vh): (Vec<f32>, Vec<f32>, Vec<f32>) = (part(&q), part(&k), part(&v));
                (0..s as usize)
                    .flat_map(move |i| attention_row(&qh, &kh, &vh, i))
                    .map(|x| x as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn oracle_accepts_right_and_rejects_off_nan_inf_and_short() {
        let (bh, s) = (2, 9);
        let ok = good(bh, s);
        let out = |v: &[f32]| common::host_outputs_bf16("o", v);
        let v = vars(bh as i64, s as i64);
        assert_eq!(Attention.oracle(&v, 2, 0, &out(&ok)), Ok(()));
        let mut bad = ok.clone();
        bad[700] *= 1.02;
        assert_eq!(
            Attention.oracle(&v, 2, 0, &out(&bad)).unwrap_err().index,
            700
        );
        for poison in [f32::NAN, f32::INFINITY] {
            let mut bad = ok.clone();
            bad[1000] = poison;
            assert_eq!(
                Attention.oracle(&v, 2, 0, &out(&bad)).unwrap_err().index,
                1000
            );
        }
        assert!(Attention.oracle(&v, 2, 0, &out(&ok[..1151])).is_err());
    }

    #[test]
    fn oracle_rejects_a_missing_mask_and_admits_bf16_probabilities() {
        let (s, d) = (40u64, HEAD_DIM);
        let v = vars(1, s as i64);
        let g = |salt, dist| Gen::new(2, salt, s * d, d, dist).in_bf16().all(s * d);
        let (q, k, vv) = (
            g(Q_SALT, Dist::Uniform),
            g(K_SALT, Dist::Uniform),
            g(V_SALT, Dist::Positive),
        );
        // Every query attending to every key (no causal mask): row i uses keys past i.
        let unmasked: Vec<f32> = (0..s as usize)
            .flat_map(|i| {
                let mut qq = q.clone();
                qq[(s as usize - 1) * 64..].copy_from_slice(&q[i * 64..(i + 1) * 64]);
                attention_row(&qq, &k, &vv, s as usize - 1)
            })
            .map(|x| x as f32)
            .collect();
        let out = |x: &[f32]| common::host_outputs_bf16("o", x);
        assert!(Attention.oracle(&v, 2, 0, &out(&unmasked)).is_err());
        // Probabilities rounded to bf16 before the weighted sum: inside the tolerance.
        let rounded: Vec<f32> = (0..s as usize)
            .flat_map(|i| {
                let exact = attention_row(&q, &k, &vv, i);
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..64)
                            .map(|c| q[i * 64 + c] as f64 * k[j * 64 + c] as f64)
                            .sum::<f64>()
                            / 8.0
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let p: Vec<f32> = e
                    .iter()
                    .map(|x| bf16_to_f32(f32_to_bf16(*x as f32)))
                    .collect();
                assert_eq!(exact.len(), 64);
                (0..64)
                    .map(|c| (0..=i).map(|j| p[j] * vv[j * 64 + c]).sum::<f32>() / sum as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(Attention.oracle(&v, 2, 0, &out(&rounded)), Ok(()));
    }

    #[test]
    fn oracle_is_cheap_at_every_profile() {
        for p in Attention.profiles() {
            for (bh, s) in p.timed.iter().map(bh_s) {
                let rows =
                    common::rows_to_check((bh * s) as u64, 2 * s as u64 * HEAD_DIM, ORACLE_BUDGET);
                assert!(
                    rows.len() as u64 * 2 * s as u64 * HEAD_DIM <= 1 << 25,
                    "{}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for text in common::rendered_instructions(&Attention) {
            assert!(text.contains("7.8125e-3") && text.contains("[0, 1)"));
        }
    }
}
