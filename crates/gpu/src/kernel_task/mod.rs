//! The contract of a kernel task: what a task crate writes ([`KernelTask`]) and what the kit
//! does with it ([`KernelTaskAdapter`], which implements [`Task`](rdbench_core::task::Task)
//! for every kernel task, and [`crate::bench`], the one scoring routine).
//!
//! A kernel task declares its buffers and element types, its size variables per profile
//! (`n`, or `m, n, k`), its correctness cases (sizes x input distributions), trusted harness
//! kernels that generate inputs and compute expected outputs on the device, how outputs are
//! compared (exact, or a tolerance; NaN never matches), a CPU oracle, the least work a correct
//! plan must do (for the speed-of-light floor), and its raw score. Everything else (loading
//! and checking the submission, compiling, poisoning, flushing, timing, validating every
//! output, the stopping rule, saved samples, classifying failures) is the kit's, identical for
//! every kernel task.

mod adapter;
mod files;

use std::collections::BTreeMap;

pub use adapter::{
    write_solution, KernelTaskAdapter, LAUNCH_PLAN_DOC, PRECHECK_ARCH, TARGET_ARCHS,
};
pub use files::prelude_chain_holds;
use rdbench_core::task::TaskInfo;

use crate::backend::Dims;
use crate::bench::analysis::Work;
use crate::plan::{ElemType, PlanLimits};
use crate::GpuResult;

/// Values of a task's size variables (`n`, or `m`, `n`, `k`).
pub type Vars = BTreeMap<String, i64>;

/// Vars from pairs.
pub fn vars(pairs: &[(&str, i64)]) -> Vars {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Whether a buffer is read or written by the submission's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Generated fresh before every run; must be unmodified after it.
    Input,
    /// Poisoned before every run; compared with the expected output after it.
    Output,
}

/// One buffer the plan sees by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBuffer {
    pub name: &'static str,
    pub elem: ElemType,
    pub role: Role,
}

/// A problem size of a profile: the variables, and how the case is named in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelProfile {
    pub name: &'static str,
    pub description: String,
    /// The timed sizes, at least one: each is timed on its own (warm-up, samples, stopping
    /// rule) and the raw score combines their medians ([`KernelTask::raw_score`]).
    pub timed: Vec<Vars>,
    /// Correctness sizes, checked before timing (the timed sizes are added if absent).
    pub cases: Vec<Vars>,
    /// Correctness sizes on the CPU emulator (small: the emulator runs a thread per fiber);
    /// the largest also gets a few untimed samples through the timing routine.
    pub emulator_cases: Vec<Vars>,
}

/// What a kernel task says of itself. The adapter adds what every kernel task shares: a kernel
/// submission (`solution.cu`, `launch.toml`), lower is better, scores that hold only on the
/// device that measured them, visible scores, no tools, and the profiles.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    /// Short machine name, e.g. `prefix-sum`: also its folder in every tree ([`crate::kernel_solutions`]).
    pub name: &'static str,
    /// Family for aggregation (tasks of one family share weight in the time horizon).
    pub family: &'static str,
    pub title: &'static str,
    /// One paragraph for `rdbench info`.
    pub summary: String,
    /// What the raw score is, in words, for a task that changes [`KernelTask::raw_score`]
    /// [default: the kit's words for its rule, by how many sizes the profiles time].
    pub raw_score: Option<&'static str>,
    /// Minutes of one attempt [default: RE-Bench's 8 hours].
    pub default_time_limit_minutes: u32,
    /// Wall-clock limit of one scoring run, seconds [default: 180].
    pub score_timeout_s: u64,
    /// Estimated human time, minutes (METR's time horizon), if known.
    pub human_minutes: Option<f64>,
}

impl KernelInfo {
    /// The kit's [`KernelTask::raw_score`] in words: for profiles that each time one size, and
    /// for profiles that time several.
    pub const RAW_SCORE_ONE_SIZE: &'static str = "ln(median milliseconds of the whole launch plan)";
    pub const RAW_SCORE_SIZES: &'static str = "ln(geometric mean over the timed sizes of the \
                                               median milliseconds of the whole launch plan)";

    /// A task's description with the kit's defaults for the rest.
    pub fn new(
        name: &'static str,
        family: &'static str,
        title: &'static str,
        summary: impl Into<String>,
    ) -> Self {
        KernelInfo {
            name,
            family,
            title,
            summary: summary.into(),
            raw_score: None,
            default_time_limit_minutes: 480,
            score_timeout_s: 180,
            human_minutes: None,
        }
    }

    /// The task's [`TaskInfo`], without its profiles and files (the adapter adds them);
    /// `one_size`: every profile times one size.
    pub fn task_info(self, one_size: bool) -> TaskInfo {
        let kit_words = if one_size {
            Self::RAW_SCORE_ONE_SIZE
        } else {
            Self::RAW_SCORE_SIZES
        };
        TaskInfo {
            name: self.name.into(),
            family: self.family.into(),
            title: self.title.into(),
            summary: self.summary,
            raw_score: self.raw_score.unwrap_or(kit_words).into(),
            direction: rdbench_core::task::Direction::LowerIsBetter,
            submission: rdbench_core::task::SubmissionKind::Kernel,
            submission_files: Vec::new(),
            profiles: Vec::new(),
            score_hidden: false,
            hardware_independent: false,
            default_time_limit_minutes: self.default_time_limit_minutes,
            score_timeout_s: self.score_timeout_s,
            human_minutes: self.human_minutes,
            tools: Vec::new(),
        }
    }
}

/// A task's embedded files: its shipped solutions and its trusted harness
/// ([`crate::kernel_sources`] finds them by the task's name).
#[derive(Debug, Clone, Copy)]
pub struct KernelSources {
    pub solutions: KernelSolutions,
    pub harness: HarnessSource,
}

/// The poison word of an output of type `elem` when the task chooses none: a quiet NaN for a
/// float (it never compares equal, so it is never a right answer) and a value in
/// [2^30, 2^31) for an integer (a task whose right answers can be that large chooses its own).
pub fn default_poison(elem: ElemType, output: &str, seed: u64) -> u32 {
    let bits = poison_bits(seed, output);
    match elem {
        ElemType::Bf16 => 0x7FC0 | (bits & 0x3F),
        ElemType::F32 | ElemType::F64 => 0x7FC0_0000 | (bits & 0x003F_FFFF),
        _ => 0x4000_0000 | (bits & 0x3FFF_FFFF),
    }
}

/// A kernel submission's two files, as text.
#[derive(Debug, Clone, Copy)]
pub struct KernelFiles {
    pub source: &'static str,
    pub plan: &'static str,
}

/// The solutions that ship with a task.
#[derive(Debug, Clone, Copy)]
pub struct KernelSolutions {
    /// What the agent starts from (normalized score 0).
    pub start: KernelFiles,
    /// The reference (normalized score 1).
    pub reference: KernelFiles,
    /// The fastest version the authors could write, if any (reported, not calibrated).
    pub fastest: Option<KernelFiles>,
}

/// A task's trusted device code.
#[derive(Debug, Clone, Copy)]
pub struct HarnessSource {
    /// Repository path, for messages (`kernels/prefix-sum/harness.cu`).
    pub name: &'static str,
    pub source: &'static str,
}

/// How an output is compared with its expected value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compare {
    /// Bit for bit (integers; floats that must be reproduced exactly).
    Exact,
    /// `|got - expected| <= atol + rtol * |expected|` for `f32` and `bf16` outputs (a bf16
    /// compared as the f32 it stands for); NaN never matches.
    Tolerance { rtol: f32, atol: f32 },
}

/// One argument of a harness launch: buffers by name, so the kit can bind them.
#[derive(Debug, Clone, Copy)]
pub enum HArg<'a> {
    Buffer(&'a str),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
}

/// What a task's `generate` and `expected` launch through: the task's harness kernels,
/// checked against their parsed signatures, with buffers bound by name. Names: the task's
/// buffers (`input`, `output`...), `expected.<output>` for each output, and the task's
/// harness scratch.
pub trait Harness {
    fn launch(&mut self, kernel: &str, dims: Dims, args: &[HArg<'_>]) -> GpuResult;
}

/// What a CPU check of outputs finds: nothing wrong, or the first wrong element.
pub type Checked = Result<(), Mismatch>;

/// The first wrong element found by the CPU oracle.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub output: String,
    pub index: u64,
    pub expected: String,
    /// `None` when the output is shorter than expected.
    pub got: Option<String>,
}

/// Outputs copied to the host, by buffer name.
pub struct HostOutputs {
    pub(crate) outputs: BTreeMap<String, Vec<u8>>,
}

impl HostOutputs {
    /// Outputs from their bytes, by buffer name (what the routine downloads; for a task's
    /// unit tests of its oracle).
    pub fn new(outputs: BTreeMap<String, Vec<u8>>) -> Self {
        HostOutputs { outputs }
    }

    pub fn bytes(&self, name: &str) -> &[u8] {
        self.outputs.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn i32s(&self, name: &str) -> Vec<i32> {
        self.bytes(name)
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn i64s(&self, name: &str) -> Vec<i64> {
        self.bytes(name)
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    pub fn u16s(&self, name: &str) -> Vec<u16> {
        self.bytes(name)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// A bf16 buffer's elements as the f32s they stand for.
    pub fn bf16s(&self, name: &str) -> Vec<f32> {
        self.u16s(name).into_iter().map(bf16_to_f32).collect()
    }

    pub fn f32s(&self, name: &str) -> Vec<f32> {
        self.bytes(name)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Bits for a poison word from a run's seed and the output's name: a hash, so that a plan
/// reading its poisoned output before writing it learns nothing about the seed (from which
/// the inputs of the run, and of the samples after it, are drawn).
pub fn poison_bits(seed: u64, output: &str) -> u32 {
    let tag = output.bytes().fold(0x706f_6973_6f6e_u64, |h, b| {
        h.wrapping_mul(0x100_0000_01b3) ^ b as u64
    });
    (rdbench_core::rng::splitmix64(seed ^ tag) >> 32) as u32
}

/// The f32 a bfloat16 stands for (exact: bf16 is the top half of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// `x` rounded to the nearest bfloat16, ties to even (NaN stays NaN), as device code rounds it.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16; // quiet, sign kept
    }
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// Formats element `i` of a buffer of `elem`s for a message.
pub fn format_element(bytes: &[u8], elem: ElemType, i: u64) -> Option<String> {
    let size = elem.size_bytes() as usize;
    let at = (i as usize).checked_mul(size)?;
    let b = bytes.get(at..at + size)?;
    Some(match elem {
        ElemType::I8 => (b[0] as i8).to_string(),
        ElemType::U8 => b[0].to_string(),
        ElemType::I16 => i16::from_le_bytes([b[0], b[1]]).to_string(),
        ElemType::U16 => u16::from_le_bytes([b[0], b[1]]).to_string(),
        ElemType::I32 => i32::from_le_bytes(b.try_into().ok()?).to_string(),
        ElemType::U32 => u32::from_le_bytes(b.try_into().ok()?).to_string(),
        ElemType::I64 => i64::from_le_bytes(b.try_into().ok()?).to_string(),
        ElemType::U64 => u64::from_le_bytes(b.try_into().ok()?).to_string(),
        ElemType::F32 => format!("{:e}", f32::from_le_bytes(b.try_into().ok()?)),
        ElemType::F64 => format!("{:e}", f64::from_le_bytes(b.try_into().ok()?)),
        ElemType::Bf16 => format!("{:e}", bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
    })
}

/// A kernel task. Implement this; [`KernelTaskAdapter`] makes it a [`Task`](rdbench_core::task::Task).
pub trait KernelTask: Send + Sync + 'static {
    /// Name, family, title, summary and limits ([`KernelInfo::new`] has the defaults).
    fn info(&self) -> KernelInfo;

    fn profiles(&self) -> Vec<KernelProfile>;

    fn buffers(&self) -> Vec<TaskBuffer>;

    /// Elements of `buffer` at size `vars`.
    fn elements(&self, buffer: &str, vars: &Vars) -> u64;

    /// Names of the input distributions; `generate` gets the index.
    fn distributions(&self) -> &'static [&'static str];

    /// The shipped solutions and the harness (`kernel_sources!("<task>")`).
    fn sources(&self) -> KernelSources;

    /// Scratch buffers the harness kernels need at size `vars`: (name, bytes).
    fn harness_scratch(&self, _vars: &Vars) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Writes every input buffer from `seed` with distribution `dist`, on the device.
    fn generate(&self, h: &mut dyn Harness, vars: &Vars, seed: u64, dist: usize) -> GpuResult;

    /// Writes `expected.<output>` for every output from the inputs, on the device.
    fn expected(&self, h: &mut dyn Harness, vars: &Vars) -> GpuResult;

    /// How `output` is compared at size `vars` (a tolerance may scale with a size, such as
    /// the length of a dot product).
    fn compare(&self, _output: &str, _vars: &Vars) -> Compare {
        Compare::Exact
    }

    /// The 32-bit word every output is filled with before a run: derived from the run's
    /// secret seed so a plan cannot predict it, and never a right answer. A 2-byte output
    /// (`bf16`, `u16`, `i16`) is filled with the word's low 16 bits. The default is
    /// [`default_poison`] for the output's element type.
    fn poison_word(&self, output: &str, seed: u64) -> u32 {
        let elem = self
            .buffers()
            .into_iter()
            .find(|b| b.name == output)
            .map_or(ElemType::U32, |b| b.elem);
        default_poison(elem, output, seed)
    }

    /// The CPU oracle: regenerates the inputs from `seed` on the host and checks `outputs`.
    fn oracle(&self, vars: &Vars, seed: u64, dist: usize, outputs: &HostOutputs) -> Checked;

    /// Correctness cases whose largest buffer has at most this many elements also get the
    /// CPU oracle (timed runs get it on two samples whatever the size).
    fn oracle_max_elements(&self) -> u64 {
        1 << 21
    }

    /// The least work a correct plan does at `vars`.
    fn work(&self, vars: &Vars) -> Work;

    /// The raw score from the median sample time of each timed size, in the profile's order:
    /// by default ln of their geometric mean (the mean of their logs), so that every size
    /// weighs the same whatever its time, and one size is ln(median). Lower is better.
    fn raw_score(&self, medians_ms: &[f64]) -> f64 {
        crate::bench::analysis::ln_geometric_mean(medians_ms)
    }

    /// The instructions for an attempt at `profile`.
    fn instructions(&self, profile: &KernelProfile) -> String;

    fn plan_limits(&self) -> PlanLimits {
        PlanLimits::default()
    }

    /// Runs and times the task's CPU baseline at size `vars` (inputs generated untimed), if
    /// the task has one; see [`rdbench_core::task::CpuBaseline`]. Only for profiles with one
    /// timed size: the speed-up is the baseline over that size's median.
    fn cpu_baseline(&self, _vars: &Vars) -> Option<rdbench_core::task::CpuBaseline> {
        None
    }
}

#[cfg(test)]
mod bf16_tests {
    use super::{default_poison, ElemType};

    #[test]
    fn the_default_poison_is_nan_for_floats_and_large_for_integers() {
        for seed in [0u64, 1, u64::MAX, 0xdead_beef, 1 << 41] {
            assert!(f32::from_bits(default_poison(ElemType::F32, "y", seed)).is_nan());
            let low = default_poison(ElemType::Bf16, "y", seed) & 0xFFFF;
            assert!(super::bf16_to_f32(low as u16).is_nan());
            let int = default_poison(ElemType::I32, "y", seed) as i32;
            assert!((1 << 30..i32::MAX).contains(&int), "{int}");
        }
        // The word depends on the seed and on the output's name.
        let words = [
            default_poison(ElemType::F32, "y", 0),
            default_poison(ElemType::F32, "y", 0xabc << 20),
            default_poison(ElemType::F32, "z", 0),
        ];
        assert!(words[0] != words[1] && words[0] != words[2], "{words:?}");
    }

    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one (1).
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 0x3f81);
        assert_eq!(f32_to_bf16(-2.5), 0xc020);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80, "rounds up to infinity");
        assert_eq!(
            format_element(&[0x80, 0x3f], ElemType::Bf16, 0).unwrap(),
            "1e0"
        );
    }
}
