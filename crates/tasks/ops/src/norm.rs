//! `ops-rmsnorm` and `ops-layernorm`: row normalizations of an `m x n` bf16 matrix (`m` tokens,
//! hidden size `n`) with f32 statistics, one task each, sharing one implementation ([`Norm`])
//! because they differ only in the statistics, the bias and the epsilon. Harnesses:
//! `kernels/ops-rmsnorm/harness.cu` and `kernels/ops-layernorm/harness.cu` (one warp per row,
//! everything in double).

use rdbench_gpu::backend::Dims;
use rdbench_gpu::bench::Work;
use rdbench_gpu::kernel_task::{
    Checked, Compare, HArg, Harness, HostOutputs, KernelInfo, KernelProfile, KernelSources,
    KernelTask, TaskBuffer, Vars,
};
use rdbench_gpu::plan::ElemType;
use rdbench_gpu::GpuResult;

use crate::common::{self, Dist, Gen};

/// Starting solutions: one thread per row, serial passes. References: one block per row,
/// 16-byte loads, a block reduction.
pub const RMS_SOURCES: KernelSources = op_sources!("ops-rmsnorm");
pub const LAYER_SOURCES: KernelSources = op_sources!("ops-layernorm");

/// The distributions of `x`, in the order of the `dist` index the kit passes (`weight` and
/// `bias` are always uniform in [-1, 1)). No constant row: a LayerNorm of a constant row
/// divides a rounding error of the mean by sqrt(eps), which no f32 kernel can match to bf16.
pub const DISTS: [Dist; 2] = [Dist::Uniform, Dist::Large];

/// Salts of the buffers (the generator tells buffers apart by salt).
const X_SALT: u64 = 0;
const WEIGHT_SALT: u64 = 1;
const BIAS_SALT: u64 = 2;

/// Elements the CPU oracle recomputes at most per check (rows sampled evenly above that).
const ORACLE_BUDGET: u64 = 1 << 22;

/// Which normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// `x / sqrt(mean(x^2) + 1e-6) * weight` (Llama's RMSNorm).
    Rms,
    /// `(x - mean) / sqrt(var + 1e-5) * weight + bias` (`torch.nn.LayerNorm`).
    Layer,
}

fn mn(v: &Vars) -> (i64, i64) {
    (v["m"], v["n"])
}

impl Norm {
    /// The epsilon added to the mean square (Llama's) or to the variance (PyTorch's default).
    pub fn eps(self) -> f64 {
        match self {
            Norm::Rms => 1e-6,
            Norm::Layer => 1e-5,
        }
    }

    fn op(self) -> &'static str {
        match self {
            Norm::Rms => "rmsnorm",
            Norm::Layer => "layernorm",
        }
    }

    fn inputs(self) -> &'static [&'static str] {
        match self {
            Norm::Rms => &["input", "weight"],
            Norm::Layer => &["input", "weight", "bias"],
        }
    }

    /// Row `x` normalized, in f64, with `weight` and (LayerNorm) `bias`.
    pub fn row(self, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let n = x.len() as f64;
        let x64 = x.iter().map(|&v| v as f64);
        let (shift, scale) = match self {
            Norm::Rms => (
                0.0,
                1.0 / (x64.map(|v| v * v).sum::<f64>() / n + self.eps()).sqrt(),
            ),
            Norm::Layer => {
                let mean = x64.sum::<f64>() / n;
                let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                (mean, 1.0 / (var + self.eps()).sqrt())
            }
        };
        x.iter()
            .zip(weight)
            .enumerate()
            .map(|(j, (&v, &w))| {
                let b = bias.get(j).map_or(0.0, |&b| b as f64);
                (v as f64 - shift) * scale * w as f64 + b
            })
            .collect()
    }
}

impl KernelTask for Norm {
    fn info(&self) -> KernelInfo {
        match self {
            Norm::Rms => common::info(
                "ops-rmsnorm",
                "Optimize a Kernel: RMSNorm forward (bf16)",
                "Write the fastest correct CUDA kernels for RMSNorm of every row of an m x n bf16 \
                 matrix (f32 statistics, bf16 weight and output).",
                180,
            ),
            Norm::Layer => common::info(
                "ops-layernorm",
                "Optimize a Kernel: LayerNorm forward (bf16)",
                "Write the fastest correct CUDA kernels for LayerNorm of every row of an m x n \
                 bf16 matrix (f32 statistics, bf16 weight, bias and output).",
                180,
            ),
        }
    }

    fn profiles(&self) -> Vec<KernelProfile> {
        common::tiny_and_full(
            ["m", "n"],
            (
                &[[4096, 4096], [8192, 768]],
                "Llama-2-7B's hidden size at 4,096 tokens and GPT-2 small's at 8,192; quick runs",
            ),
            // 256 MiB, 256 MiB and 96 MiB in, as much out: about 0.16, 0.16 and 0.06 ms at an
            // H100's 3.35 TB/s for a reference that reads its input about once from DRAM
            // (estimates, not measured).
            (
                &[[16_384, 8192], [32_768, 4096], [65_536, 768]],
                "the hidden sizes of Llama-3-70B at 16,384 tokens, Llama-2-7B at 32,768 and \
                 GPT-2 small at 65,536; about 0.1-0.2 ms each for the reference on an H100, \
                 estimated",
            ),
            // Hidden sizes of real models: 768 (GPT-2 small, BERT-base), 1024 (BERT-large),
            // 4096 (Llama-2-7B, Llama-3-8B), 5120 (Llama-2-13B), 8192 (Llama-3-70B); then tails.
            &[
                [1, 1],
                [3, 33],
                [17, 257],
                [31, 768],
                [128, 1024],
                [8, 5120],
                [4, 8192],
                [257, 4099],
                [2, 50_001],
            ],
            // Tails of every block and vector width, m = 1 and n = 1, both load paths (n a
            // multiple of 8 or not), at sizes the emulator runs in seconds.
            &[[1, 1], [3, 33], [17, 257], [2, 2056], [9, 1000]],
        )
    }

    fn buffers(&self) -> Vec<TaskBuffer> {
        common::buffers(ElemType::Bf16, self.inputs(), &["output"])
    }

    fn elements(&self, buffer: &str, vars: &Vars) -> u64 {
        let (m, n) = mn(vars);
        (match buffer {
            "weight" | "bias" => n,
            _ => m * n,
        }) as u64
    }

    fn distributions(&self) -> &'static [&'static str] {
        &["uniform", "large"]
    }

    fn sources(&self) -> KernelSources {
        match self {
            Norm::Rms => RMS_SOURCES,
            Norm::Layer => LAYER_SOURCES,
        }
    }

    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult {
        let (m, n) = mn(vars);
        let bf16 = ElemType::Bf16;
        common::launch_generate(h, "input", bf16, m * n, n, seed, X_SALT, DISTS[dist])?;
        common::launch_generate(h, "weight", bf16, n, n, seed, WEIGHT_SALT, Dist::Uniform)?;
        if *self == Norm::Layer {
            common::launch_generate(h, "bias", bf16, n, n, seed, BIAS_SALT, Dist::Uniform)?;
        }
        Ok(())
    }

    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult {
        let (m, n) = mn(vars);
        let kernel = format!("ops_{}_expected", self.op());
        let mut args: Vec<HArg> = self.inputs().iter().map(|b| HArg::Buffer(b)).collect();
        args.extend([HArg::Buffer("expected.output"), HArg::I64(m), HArg::I64(n)]);
        h.launch(&kernel, Dims::linear(m as u32, 32), &args)
    }

    fn compare(&self, _output: &str, _vars: &Vars) -> Compare {
        common::BF16_TOLERANCE
    }

    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked {
        let (m, n) = mn(vars);
        let (m, n) = (m as u64, n as u64);
        let x = Gen::new(seed, X_SALT, m * n, n, DISTS[dist]).in_bf16();
        let vector = |salt| Gen::new(seed, salt, n, n, Dist::Uniform).in_bf16().all(n);
        let weight = vector(WEIGHT_SALT);
        let bias = match self {
            Norm::Rms => Vec::new(),
            Norm::Layer => vector(BIAS_SALT),
        };
        let rows = common::rows_to_check(m, n, ORACLE_BUDGET);
        common::check_rows(
            "output",
            ElemType::Bf16,
            outputs,
            m,
            n,
            &rows,
            common::BF16_TOLERANCE,
            |r| self.row(&x.row(r), &weight, &bias),
        )
    }

    /// Read x, weight (and bias) once, write y once; per element about four operations
    /// (square-accumulate and scale) for RMSNorm, six for LayerNorm.
    fn work(&self, vars: &Vars) -> Work {
        let (m, n) = mn(vars);
        let (e, vectors) = ((m * n) as f64, (self.inputs().len() - 1) as f64 * n as f64);
        Work {
            bytes_read: 2.0 * (e + vectors),
            bytes_written: 2.0 * e,
            ops: e * if *self == Norm::Rms { 4.0 } else { 6.0 },
        }
    }

    fn instructions(&self, profile: &KernelProfile) -> String {
        let text = match self {
            Norm::Rms => include_str!("rmsnorm.md"),
            Norm::Layer => include_str!("layernorm.md"),
        };
        let eps = format!("{:e}", self.eps());
        let bf16 = common::bf16_instructions();
        common::instructions(
            text,
            &[("EPS", eps.as_str()), ("BF16", bf16.as_str())],
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

    #[test]
    fn worked_examples() {
        // The instructions' examples.
        common::assert_close(
            &Norm::Rms.row(&[3.0, 4.0], &[1.0, 2.0], &[]),
            &[0.8485, 2.2627],
            1e-4,
        );
        let y = Norm::Rms.row(&[3.0, 4.0], &[1.0, 2.0], &[]);
        assert_eq!(bf16_to_f32(f32_to_bf16(y[0] as f32)), 0.847_656_25);
        assert_eq!(bf16_to_f32(f32_to_bf16(y[1] as f32)), 2.265_625);
        common::assert_close(
            &Norm::Layer.row(&[1.0, 2.0, 3.0, 4.0], &[1.0; 4], &[0.0; 4]),
            &[-1.3416, -0.4472, 0.4472, 1.3416],
            1e-4,
        );
        // Weight scales and bias shifts each column.
        let y = Norm::Layer.row(&[1.0, 3.0], &[2.0, -1.0], &[0.5, 0.25]);
        common::assert_close(&y, &[-2.0 + 0.5, -1.0 + 0.25], 1e-4);
        // A constant row: RMSNorm gives sign * weight (nearly), LayerNorm the bias.
        common::assert_close(&Norm::Rms.row(&[-2.0; 3], &[1.0; 3], &[]), &[-1.0; 3], 1e-4);
        common::assert_close(
            &Norm::Layer.row(&[7.0; 3], &[1.0; 3], &[0.1; 3]),
            &[0.1; 3],
            1e-4,
        );
    }

    /// Runs the oracle on `values` (rounded to bf16) at m x n with seed 5 and dist 0.
    fn oracle(norm: Norm, m: i64, n: i64, values: &[f32]) -> Checked {
        let vars = common::sizes(["m", "n"], &[[m, n]]).remove(0);
        norm.oracle(&vars, 5, 0, &common::host_outputs_bf16("output", values))
    }

    /// What a correct f32 kernel writes: the exact rows rounded to f32.
    fn good_output(norm: Norm, m: u64, n: u64) -> Vec<f32> {
        let x = Gen::new(5, X_SALT, m * n, n, Dist::Uniform).in_bf16();
        let w = Gen::new(5, WEIGHT_SALT, n, n, Dist::Uniform)
            .in_bf16()
            .all(n);
        let b = Gen::new(5, BIAS_SALT, n, n, Dist::Uniform).in_bf16().all(n);
        let b = if norm == Norm::Rms { Vec::new() } else { b };
        (0..m)
            .flat_map(|r| norm.row(&x.row(r), &w, &b))
            .map(|v| v as f32)
            .collect()
    }

    #[test]
    fn oracle_accepts_right_and_rejects_off_nan_inf_and_short() {
        for norm in [Norm::Rms, Norm::Layer] {
            let (m, n) = (6, 40);
            let good = good_output(norm, m, n);
            assert_eq!(oracle(norm, m as i64, n as i64, &good), Ok(()), "{norm:?}");
            // Off by more than the tolerance (2 %, beyond rtol 2^-7 and a rounding).
            let i = good
                .iter()
                .position(|v| v.abs() > 0.25)
                .expect("some output is not small");
            let mut bad = good.clone();
            bad[i] *= 1.02;
            assert_eq!(oracle(norm, 6, 40, &bad).unwrap_err().index, i as u64);
            for poison in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut bad = good.clone();
                bad[201] = poison;
                assert_eq!(
                    oracle(norm, 6, 40, &bad).unwrap_err().index,
                    201,
                    "{poison}"
                );
            }
            assert!(oracle(norm, 6, 40, &good[..239]).is_err());
        }
    }

    #[test]
    fn oracle_rejects_bf16_statistics() {
        // The sum of squares accumulated in bf16 stagnates once it is large: the output is
        // a few percent off, far outside the tolerance.
        let (m, n) = (2u64, 4096u64);
        let x = Gen::new(5, X_SALT, m * n, n, Dist::Uniform).in_bf16();
        let w = Gen::new(5, WEIGHT_SALT, n, n, Dist::Uniform)
            .in_bf16()
            .all(n);
        let round = |v: f32| bf16_to_f32(f32_to_bf16(v));
        let bad: Vec<f32> = (0..m)
            .flat_map(|r| {
                let row = x.row(r);
                let ss = row.iter().fold(0f32, |s, &v| round(s + v * v));
                let scale = 1.0 / (ss / n as f32 + 1e-6).sqrt();
                row.iter()
                    .zip(&w)
                    .map(|(&v, &g)| v * scale * g)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(oracle(Norm::Rms, m as i64, n as i64, &bad).is_err());
    }

    #[test]
    fn layernorm_oracle_rejects_a_missing_mean() {
        // RMSNorm submitted for LayerNorm: the Large inputs' rows have a mean far from 0.
        let vars = common::sizes(["m", "n"], &[[4, 300]]).remove(0);
        let x = Gen::new(8, X_SALT, 1200, 300, Dist::Large).in_bf16();
        let w = Gen::new(8, WEIGHT_SALT, 300, 300, Dist::Uniform)
            .in_bf16()
            .all(300);
        let b = Gen::new(8, BIAS_SALT, 300, 300, Dist::Uniform)
            .in_bf16()
            .all(300);
        let rms: Vec<f32> = (0..4)
            .flat_map(|r| {
                let y = Norm::Rms.row(&x.row(r), &w, &[]);
                y.into_iter().zip(&b).map(|(v, &bb)| (v + bb as f64) as f32)
            })
            .collect();
        let out = common::host_outputs_bf16("output", &rms);
        assert!(Norm::Layer.oracle(&vars, 8, 1, &out).is_err());
    }

    #[test]
    fn oracle_is_cheap_at_every_profile() {
        for norm in [Norm::Rms, Norm::Layer] {
            for p in norm.profiles() {
                for (m, n) in p.timed.iter().map(mn) {
                    let rows = common::rows_to_check(m as u64, n as u64, ORACLE_BUDGET);
                    assert!(rows.len() as i64 * n <= 1 << 22, "{norm:?} {}", p.name);
                }
            }
        }
    }

    #[test]
    fn instructions_render_for_every_profile() {
        for norm in [Norm::Rms, Norm::Layer] {
            for text in common::rendered_instructions(&norm) {
                assert!(
                    text.contains("7.8125e-3") && text.contains("1e-5"),
                    "{text}"
                );
                assert!(text.contains(&format!("{:e}", norm.eps())));
            }
        }
    }
}
