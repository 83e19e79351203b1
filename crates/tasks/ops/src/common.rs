//! What every op of the family shares: the input generator (the harness kernels
//! `ops_generate` / `ops_generate_bf16` of `kernels/harness/ops_generate.cu` and their bit-exact CPU
//! twin [`Gen`]), the comparison of the CPU oracles ([`check_rows`], f32 or bf16 outputs), the
//! bf16 tolerance, the NaN poison word, profiles, task info, buffers and the common half of the
//! instructions.

use rdbench_core::rng::{splitmix64, splitmix64_at, GOLDEN_GAMMA};

use rdbench_core::template::{render, thousands};
use rdbench_gpu::backend::Dims;
use rdbench_gpu::kernel_task::{
    bf16_to_f32, f32_to_bf16, Checked, Compare, HArg, Harness, HostOutputs, KernelInfo,
    KernelProfile, Mismatch, Role, TaskBuffer, Vars,
};
use rdbench_gpu::plan::ElemType;
use rdbench_gpu::GpuResult;

/// An op's files: its solutions and its harness, the splitmix64 hash and the family's shared
/// generator (`kernels/harness/ops_generate.cu`) followed by the op's own
/// `kernels/ops-<op>/harness.cu`.
macro_rules! op_sources {
    ($task:literal) => {
        rdbench_gpu::kernel_sources!(
            $task,
            prelude = [
                "kernels/harness/splitmix64.cu",
                "kernels/harness/ops_generate.cu"
            ]
        )
    };
}

/// The input distributions of the generator (the `dist` argument of `ops_generate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Uniform in [-1, 1), multiples of 2^-23 (exact).
    Uniform = 0,
    /// Uniform in [-100, 100): `exp` overflows f32 above 88.7, so a softmax that does not
    /// subtract the row max overflows.
    Large = 1,
    /// As `Uniform`, except one row (chosen by the seed) is constant.
    ConstantRow = 2,
    /// Uniform in [0, 1), multiples of 2^-24 (exact).
    Positive = 3,
}

impl Dist {
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Large => "large",
            Dist::ConstantRow => "constant-row",
            Dist::Positive => "positive",
        }
    }

    /// How the instructions describe it.
    pub fn describe(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform in [-1, 1)",
            Dist::Large => "uniform in [-100, 100) (exp of an unshifted value overflows f32)",
            Dist::ConstantRow => "uniform in [-1, 1) except one row, which is constant",
            Dist::Positive => "uniform in [0, 1)",
        }
    }
}

const CONST_ROW_KEY: u64 = 0xC0A5_7A27;
/// 2^-23 and 25 * 2^-21: the generator's scales (exact in f32).
const UNIT_SCALE: f32 = 1.192_092_9e-7;
const LARGE_SCALE: f32 = 1.192_092_9e-5;
/// 2^23 and 2^-24: `Positive` shifts the integers to [0, 2^24) (exact in f32) and scales.
const POSITIVE_OFFSET: f32 = 8_388_608.0;
const POSITIVE_SCALE: f32 = 5.960_464_5e-8;

/// The CPU twin of `ops_generate` for one buffer: `count` elements in rows of `row_len`.
#[derive(Debug, Clone, Copy)]
pub struct Gen {
    key: u64,
    row_len: u64,
    const_row: u64,
    dist: Dist,
    /// Values rounded to bf16, as `ops_generate_bf16` stores them.
    bf16: bool,
}

impl Gen {
    pub fn new(seed: u64, salt: u64, count: u64, row_len: u64, dist: Dist) -> Gen {
        let key = seed ^ salt.wrapping_mul(GOLDEN_GAMMA);
        let rows = (count / row_len).max(1);
        Gen {
            key,
            row_len,
            const_row: (splitmix64(key ^ CONST_ROW_KEY) >> 32) % rows,
            dist,
            bf16: false,
        }
    }

    /// The same buffer as `ops_generate_bf16` writes it (every value rounded to bf16).
    pub fn in_bf16(self) -> Gen {
        Gen { bf16: true, ..self }
    }

    fn unit(&self, i: u64) -> f32 {
        let h = splitmix64_at(self.key, i);
        ((h >> 40) as i64 - (1 << 23)) as f32
    }

    /// Element `i`, bit for bit as the device writes it (the f32 a bf16 stands for, for a
    /// bf16 buffer).
    pub fn value(&self, i: u64) -> f32 {
        let v = self.value_f32(i);
        if self.bf16 {
            bf16_to_f32(f32_to_bf16(v))
        } else {
            v
        }
    }

    fn value_f32(&self, i: u64) -> f32 {
        match self.dist {
            Dist::Uniform => self.unit(i) * UNIT_SCALE,
            Dist::Large => self.unit(i) * LARGE_SCALE,
            Dist::ConstantRow => {
                let row = i / self.row_len;
                let at = if row == self.const_row {
                    row * self.row_len
                } else {
                    i
                };
                self.unit(at) * UNIT_SCALE
            }
            Dist::Positive => (self.unit(i) + POSITIVE_OFFSET) * POSITIVE_SCALE,
        }
    }

    /// Row `r` (`row_len` elements).
    pub fn row(&self, r: u64) -> Vec<f32> {
        (r * self.row_len..(r + 1) * self.row_len)
            .map(|i| self.value(i))
            .collect()
    }

    /// The first `count` elements.
    pub fn all(&self, count: u64) -> Vec<f32> {
        (0..count).map(|i| self.value(i)).collect()
    }

    /// The constant row of [`Dist::ConstantRow`].
    pub fn const_row(&self) -> u64 {
        self.const_row
    }
}

/// Launches `ops_generate` (f32) or `ops_generate_bf16` (bf16) into `buffer` (`count` elements
/// in rows of `row_len`).
#[allow(clippy::too_many_arguments)] // the generator's own arguments, named at every call
pub fn launch_generate(
    h: &mut dyn Harness,
    buffer: &str,
    elem: ElemType,
    count: i64,
    row_len: i64,
    seed: u64,
    salt: u64,
    dist: Dist,
) -> GpuResult {
    let kernel = match elem {
        ElemType::Bf16 => "ops_generate_bf16",
        _ => "ops_generate",
    };
    h.launch(
        kernel,
        Dims::grid_stride(count),
        &[
            HArg::Buffer(buffer),
            HArg::I64(count),
            HArg::I64(row_len),
            HArg::U64(seed),
            HArg::U64(salt),
            HArg::I32(dist as i32),
        ],
    )
}

/// The tolerance of every bf16 output. rtol 2^-7 is one bf16 ulp at the bottom of a binade
/// (bf16 keeps 8 significant bits, so an ulp is 2^-8 to 2^-7 of the value): an f32 computation
/// rounded once to bf16 can land one ulp from the correctly rounded value when the exact value
/// is near a rounding midpoint, and that must pass; two roundings through bf16 intermediates, or
/// statistics accumulated in bf16, drift further. atol 1e-5 covers the f32 rounding of outputs
/// that cancel to near zero. This is tighter than `torch.testing`'s bf16 default
/// (rtol 1.6e-2, atol 1e-5) by a factor of two in rtol.
pub const BF16_TOLERANCE: Compare = Compare::Tolerance {
    rtol: 1.0 / 128.0,
    atol: 1e-5,
};

/// The kit's tolerance rule, against an f64 expected value: finite, and
/// `|got - want| <= atol + rtol * |want|`, plus what rounding `want` to `elem` can add (the
/// device compares against `want` rounded to f32 or bf16: at most half an ulp, that is 2^-24 of
/// `|want|` for f32 and 2^-8 for bf16).
pub fn close(want: f64, got: f32, how: Compare, elem: ElemType) -> bool {
    let (rtol, atol) = match how {
        Compare::Tolerance { rtol, atol } => (rtol as f64, atol as f64),
        Compare::Exact => (0.0, 0.0),
    };
    let half_ulp = match elem {
        ElemType::Bf16 => want.abs() / 256.0,
        _ => want.abs() * f32::EPSILON as f64 / 2.0,
    };
    got.is_finite() && (got as f64 - want).abs() <= atol + rtol * (want.abs() + half_ulp) + half_ulp
}

/// At most `budget / cost_per_row` of `rows` rows, evenly spaced, the first and last included:
/// the rows a CPU oracle checks (all of them when they fit the budget).
pub fn rows_to_check(rows: u64, cost_per_row: u64, budget: u64) -> Vec<u64> {
    let fit = (budget / cost_per_row.max(1)).max(2);
    if rows <= fit {
        return (0..rows).collect();
    }
    let mut out: Vec<u64> = (0..fit - 1).map(|i| i * (rows - 1) / (fit - 1)).collect();
    out.push(rows - 1);
    out
}

/// Checks rows `rows` of the buffer `output` of `outputs`, rows of `row_len` values (f32s, or
/// bf16s, as `elem` says), against `want_row(r)` (f64) with `how`; the buffer must hold
/// `total_rows * row_len` elements.
#[allow(clippy::too_many_arguments)] // each named at its call
pub fn check_rows(
    output: &str,
    elem: ElemType,
    outputs: &HostOutputs,
    total_rows: u64,
    row_len: u64,
    rows: &[u64],
    how: Compare,
    mut want_row: impl FnMut(u64) -> Vec<f64>,
) -> Checked {
    let got = output_values(outputs, output, elem);
    let len = (total_rows * row_len) as usize;
    if got.len() < len {
        return Err(Mismatch {
            output: output.into(),
            index: got.len() as u64,
            expected: format!("{len} elements"),
            got: None,
        });
    }
    for &r in rows {
        let want = want_row(r);
        let base = r * row_len;
        for (j, &w) in want.iter().enumerate() {
            let i = base + j as u64;
            let g = got[i as usize];
            if !close(w, g, how, elem) {
                return Err(Mismatch {
                    output: output.into(),
                    index: i,
                    expected: format!("{w:e}"),
                    got: Some(format!("{g:e}")),
                });
            }
        }
    }
    Ok(())
}

/// Host outputs holding one f32 buffer (for the oracles' unit tests).
pub fn host_outputs(name: &str, values: &[f32]) -> HostOutputs {
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    HostOutputs::new([(name.to_string(), bytes)].into_iter().collect())
}

/// Host outputs holding one bf16 buffer, each value rounded to bf16 (for the oracles' tests).
pub fn host_outputs_bf16(name: &str, values: &[f32]) -> HostOutputs {
    let bytes = values
        .iter()
        .flat_map(|v| f32_to_bf16(*v).to_le_bytes())
        .collect();
    HostOutputs::new([(name.to_string(), bytes)].into_iter().collect())
}

/// An output buffer's values as f32s (a bf16 output widened exactly).
pub fn output_values(outputs: &HostOutputs, name: &str, elem: ElemType) -> Vec<f32> {
    match elem {
        ElemType::Bf16 => outputs.bf16s(name),
        _ => outputs.f32s(name),
    }
}

/// Size lists from tuples: `sizes(&["m", "n"], &[[1, 1], [3, 33]])`.
pub fn sizes<const N: usize>(names: [&str; N], list: &[[i64; N]]) -> Vec<Vars> {
    list.iter()
        .map(|v| {
            names
                .iter()
                .zip(v)
                .map(|(k, x)| (k.to_string(), *x))
                .collect()
        })
        .collect()
}

/// `m = 4,096, n = 1,024`.
pub fn describe_vars(v: &Vars) -> String {
    v.iter()
        .map(|(k, x)| format!("{k} = {}", thousands(*x)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Several sizes: `(m = 4,096, n = 1,024), (m = 512, n = 50,257)`.
pub fn describe_sizes(sizes: &[Vars]) -> String {
    sizes
        .iter()
        .map(|v| format!("({})", describe_vars(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A profile timed at each of `timed` (what they are and an estimate of their GPU time in
/// `note`).
pub fn profile(
    name: &'static str,
    timed: Vec<Vars>,
    note: &str,
    cases: Vec<Vars>,
    emulator_cases: Vec<Vars>,
) -> KernelProfile {
    assert!(
        !timed.is_empty(),
        "{name}: a profile times at least one size"
    );
    KernelProfile {
        name,
        description: format!("{}; {note}", describe_sizes(&timed)),
        timed,
        cases,
        emulator_cases,
    }
}

/// The family's two profiles, `tiny` (quick runs) and `full`, each timed at its own sizes and
/// saying what they are (`(sizes, note)`, as [`profile`] takes them), both checking the same
/// correctness cases on a GPU and on the emulator.
pub fn tiny_and_full<const N: usize>(
    names: [&str; N],
    tiny: (&[[i64; N]], &str),
    full: (&[[i64; N]], &str),
    cases: &[[i64; N]],
    emulator_cases: &[[i64; N]],
) -> Vec<KernelProfile> {
    let (cases, emu) = (sizes(names, cases), sizes(names, emulator_cases));
    [("tiny", tiny), ("full", full)]
        .into_iter()
        .map(|(name, (timed, note))| {
            profile(name, sizes(names, timed), note, cases.clone(), emu.clone())
        })
        .collect()
}

/// Buffers of one element type: the inputs, then the outputs.
pub fn buffers(
    elem: ElemType,
    inputs: &[&'static str],
    outputs: &[&'static str],
) -> Vec<TaskBuffer> {
    let with = |role| move |&name| TaskBuffer { name, elem, role };
    inputs
        .iter()
        .map(with(Role::Input))
        .chain(outputs.iter().map(with(Role::Output)))
        .collect()
}

/// The family's task info.
pub fn info(
    name: &'static str,
    title: &'static str,
    summary: &str,
    score_timeout_s: u64,
) -> KernelInfo {
    KernelInfo {
        score_timeout_s,
        human_minutes: Some(240.0),
        ..KernelInfo::new(
            name,
            "ops",
            title,
            format!(
                "{summary} The scorer times the whole launch plan with CUDA events (L2 flushed, \
                 fresh inputs, every output validated within the task's tolerance)."
            ),
        )
    }
}

const COMMON_INSTRUCTIONS: &str = include_str!("common.md");

/// What every bf16 op's instructions say about bf16 buffers and the tolerance.
pub fn bf16_instructions() -> String {
    let Compare::Tolerance { rtol, atol } = BF16_TOLERANCE else {
        unreachable!("a tolerance")
    };
    render(
        include_str!("bf16.md"),
        &[
            ("RTOL", format!("{rtol:e}").as_str()),
            ("ATOL", format!("{atol:e}").as_str()),
        ],
    )
    .expect("the bf16 text and its values agree (tested)")
    .trim_end()
    .to_string()
}

/// What the cheating rules say about precision, by the op's data type: f32 ops must not drop
/// below f32 (tensor cores do); for bf16 ops, bf16 inputs to f32-accumulating tensor cores are
/// the contract and only lower-precision accumulation is out.
fn precision_rule(elem: ElemType) -> &'static str {
    match elem {
        ElemType::Bf16 => {
            "accumulating sums or statistics in lower precision than f32 (bf16 or f16 \
             accumulators; bf16 operands into f32-accumulating tensor cores are the contract)"
        }
        _ => {
            "computing in lower precision than f32 where it exceeds the tolerance (TF32, bf16 \
             or f16 tensor cores do)"
        }
    }
}

/// An op's instructions: its own text (`op_text` rendered with `values` plus `PROFILE` and
/// `SIZES`), then the family's common part (submission, scoring, cheating; its precision rule
/// for data of type `elem`).
pub fn instructions(
    op_text: &str,
    values: &[(&str, &str)],
    profile: &KernelProfile,
    dists: &[Dist],
    elem: ElemType,
) -> String {
    let sizes = describe_sizes(&profile.timed);
    let mut all = values.to_vec();
    all.extend([("PROFILE", profile.name), ("SIZES", sizes.as_str())]);
    let vars = profile.timed[0]
        .keys()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let dists = dists
        .iter()
        .map(|d| format!("{} ({})", d.name(), d.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    let own = render(op_text, &all).expect("an op's instructions and its values agree (tested)");
    let common = render(
        COMMON_INSTRUCTIONS,
        &[
            ("VARS", vars.as_str()),
            ("DISTRIBUTIONS", dists.as_str()),
            ("PRECISION_RULE", precision_rule(elem)),
        ],
    )
    .expect("the common instructions and their values agree (tested)");
    format!("{own}\n{common}")
}

/// For the ops' tests: `task`'s instructions at each of its profiles, each checked to be fully
/// rendered (no `{{` left) and to name every size the profile times.
#[cfg(test)]
pub fn rendered_instructions(task: &impl rdbench_gpu::kernel_task::KernelTask) -> Vec<String> {
    task.profiles()
        .iter()
        .map(|p| {
            let text = task.instructions(p);
            assert!(!text.contains("{{"), "{} {}", task.info().name, p.name);
            for v in &p.timed {
                assert!(text.contains(&describe_vars(v)), "{text}");
            }
            text
        })
        .collect()
}

/// For the ops' tests: `got` equals `want` within `tol`, element by element.
#[cfg(test)]
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < tol, "{got:?} vs {want:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_ranges_and_scales() {
        // Bit-exactness with ops_generate is checked by every scored run: the CPU oracle
        // regenerates the inputs and a mismatch would fail start and reference in check-task.
        let g = Gen::new(0x5eed, 0, 8, 4, Dist::Uniform);
        let v = g.all(8);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)), "{v:?}");
        let big = Gen::new(0x5eed, 0, 1 << 16, 256, Dist::Large).all(1 << 16);
        assert!(big.iter().all(|x| (-100.0..100.0).contains(x)));
        assert!(big.iter().any(|x| *x > 95.0) && big.iter().any(|x| *x < -95.0));
        // Uniform and Large draw the same integers, at two scales.
        let u = Gen::new(7, 3, 64, 8, Dist::Uniform);
        let l = Gen::new(7, 3, 64, 8, Dist::Large);
        for i in 0..64 {
            assert_eq!((u.value(i) / UNIT_SCALE) * LARGE_SCALE, l.value(i));
        }
        assert_ne!(
            Gen::new(7, 0, 64, 8, Dist::Uniform).all(64),
            Gen::new(7, 1, 64, 8, Dist::Uniform).all(64),
            "salts tell buffers apart"
        );
    }

    #[test]
    fn exactly_one_row_is_constant() {
        let g = Gen::new(42, 0, 10 * 33, 33, Dist::ConstantRow);
        let constant: Vec<u64> = (0..10)
            .filter(|&r| g.row(r).windows(2).all(|w| w[0] == w[1]))
            .collect();
        assert_eq!(constant, vec![g.const_row()]);
        assert_eq!(Gen::new(42, 0, 5, 5, Dist::ConstantRow).const_row(), 0);
    }

    #[test]
    fn scales_are_exact() {
        assert_eq!(UNIT_SCALE, 2f32.powi(-23));
        assert_eq!(LARGE_SCALE, 25.0 * 2f32.powi(-21));
        assert_eq!(POSITIVE_OFFSET, 2f32.powi(23));
        assert_eq!(POSITIVE_SCALE, 2f32.powi(-24));
        let p = Gen::new(4, 0, 1 << 14, 64, Dist::Positive).all(1 << 14);
        assert!(p.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(p.iter().any(|x| *x < 0.01) && p.iter().any(|x| *x > 0.99));
    }

    #[test]
    fn rows_to_check_covers_all_or_spreads() {
        assert_eq!(rows_to_check(5, 10, 1000), vec![0, 1, 2, 3, 4]);
        let r = rows_to_check(65_536, 4096, 1 << 22);
        assert_eq!(r.len(), 1024);
        assert_eq!((r[0], *r.last().unwrap()), (0, 65_535));
        assert!(r.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn close_follows_the_kit_rule() {
        let t = Compare::Tolerance {
            rtol: 1e-5,
            atol: 1e-6,
        };
        let f = ElemType::F32;
        assert!(close(1.0, 1.000_005, t, f));
        assert!(!close(1.0, 1.000_1, t, f));
        assert!(!close(0.5, f32::NAN, t, f));
        assert!(!close(0.5, f32::INFINITY, t, f));
        assert!(close(0.0, 5e-7, t, f));
    }

    #[test]
    fn bf16_tolerance_passes_one_ulp_and_nothing_much_beyond() {
        let (t, b) = (BF16_TOLERANCE, ElemType::Bf16);
        // Exact 1.00390625 (a rounding midpoint): either neighbour, 1 or 1 + 2^-7, passes.
        assert!(close(1.003_906_25, 1.0, t, b) && close(1.003_906_25, 1.007_812_5, t, b));
        // At the top of a binade an ulp is 2^-8 of the value: two ulps still pass there ...
        assert!(close(1.99, 1.99 + 2.0 / 128.0, t, b));
        // ... but three do not, and neither does 3 % anywhere.
        assert!(!close(1.99, 1.99 + 3.0 / 128.0, t, b));
        assert!(!close(1.0, 1.03, t, b) && !close(-40.0, -41.2, t, b));
        assert!(!close(0.5, f32::NAN, t, b) && !close(0.5, f32::NEG_INFINITY, t, b));
        assert!(close(0.0, 9e-6, t, b) && !close(0.0, 2e-5, t, b));
    }

    #[test]
    fn cheating_rules_follow_the_data_type() {
        // f32 ops forbid tensor-core precision; bf16 ops forbid only low-precision sums.
        assert!(precision_rule(ElemType::F32).contains("TF32, bf16"));
        let bf16 = precision_rule(ElemType::Bf16);
        assert!(bf16.contains("accumulators") && !bf16.contains("TF32"));
        let p = profile("t", vec![Vars::new()], "x", Vec::new(), Vec::new());
        let text = instructions(
            "{{PROFILE}} {{SIZES}}",
            &[],
            &p,
            &[Dist::Uniform],
            ElemType::Bf16,
        );
        assert!(text.contains(bf16) && !text.contains("{{"), "{text}");
    }

    #[test]
    fn bf16_generator_rounds_the_f32_values() {
        let f = Gen::new(11, 2, 4096, 64, Dist::Large);
        let b = f.in_bf16();
        for i in 0..4096 {
            let (x, y) = (f.value(i), b.value(i));
            assert_eq!(y, bf16_to_f32(f32_to_bf16(x)));
            assert!((x - y).abs() <= x.abs() / 256.0, "{x} {y}");
        }
        assert_ne!(f.all(64), b.all(64), "Large values are not bf16-exact");
    }
}
