//! The launch plan's types: element and scalar types, task buffers, limits, the plan as written
//! ([`LaunchPlan`] and its specs), the plan resolved to plain numbers ([`ResolvedPlan`]), and
//! [`PlanError`]. Parsing, checking and resolving live in the sibling modules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::expr::Expr;

/// Element type of a buffer (task buffer or scratch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElemType {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    /// bfloat16: the top half of an f32 (8 exponent bits, 7 stored mantissa bits); device code
    /// sees it as `unsigned short` bits (NVRTC's pip package ships no `cuda_bf16.h`).
    Bf16,
}

impl ElemType {
    /// All element types, in the order of their names in the docs.
    pub const ALL: [ElemType; 11] = [
        ElemType::I8,
        ElemType::U8,
        ElemType::I16,
        ElemType::U16,
        ElemType::I32,
        ElemType::U32,
        ElemType::I64,
        ElemType::U64,
        ElemType::F32,
        ElemType::F64,
        ElemType::Bf16,
    ];

    /// Size of one element in bytes.
    pub fn size_bytes(self) -> u64 {
        match self {
            ElemType::I8 | ElemType::U8 => 1,
            ElemType::I16 | ElemType::U16 | ElemType::Bf16 => 2,
            ElemType::I32 | ElemType::U32 | ElemType::F32 => 4,
            ElemType::I64 | ElemType::U64 | ElemType::F64 => 8,
        }
    }

    /// The type's name in `launch.toml` (`"i32"`, `"f32"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ElemType::I8 => "i8",
            ElemType::U8 => "u8",
            ElemType::I16 => "i16",
            ElemType::U16 => "u16",
            ElemType::I32 => "i32",
            ElemType::U32 => "u32",
            ElemType::I64 => "i64",
            ElemType::U64 => "u64",
            ElemType::F32 => "f32",
            ElemType::F64 => "f64",
            ElemType::Bf16 => "bf16",
        }
    }

    /// The type named `name` (exact, lowercase), if any.
    pub fn from_name(name: &str) -> Option<ElemType> {
        ElemType::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Type of a scalar kernel argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalarType {
    I32,
    U32,
    I64,
    U64,
}

impl ScalarType {
    /// All scalar types.
    pub const ALL: [ScalarType; 4] = [
        ScalarType::I32,
        ScalarType::U32,
        ScalarType::I64,
        ScalarType::U64,
    ];

    /// Size in bytes.
    pub fn size_bytes(self) -> u64 {
        match self {
            ScalarType::I32 | ScalarType::U32 => 4,
            ScalarType::I64 | ScalarType::U64 => 8,
        }
    }

    /// The type's name in `launch.toml` (`"i32"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::I32 => "i32",
            ScalarType::U32 => "u32",
            ScalarType::I64 => "i64",
            ScalarType::U64 => "u64",
        }
    }

    /// The type named `name` (exact, lowercase), if any.
    pub fn from_name(name: &str) -> Option<ScalarType> {
        ScalarType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// A CUDA C++ spelling of the type, for messages.
    pub fn c_name(self) -> &'static str {
        match self {
            ScalarType::I32 => "int",
            ScalarType::U32 => "unsigned int",
            ScalarType::I64 => "long long",
            ScalarType::U64 => "unsigned long long",
        }
    }

    /// The values the type holds; `resolve` checks scalar arguments against it.
    pub(super) fn range(self) -> (i128, i128) {
        match self {
            ScalarType::I32 => (i32::MIN as i128, i32::MAX as i128),
            ScalarType::U32 => (0, u32::MAX as i128),
            ScalarType::I64 => (i64::MIN as i128, i64::MAX as i128),
            ScalarType::U64 => (0, u64::MAX as i128),
        }
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A buffer the task provides (e.g. `input`, `output`), passed to kernels by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferSpec {
    pub name: String,
    pub elem: ElemType,
    /// `false` for inputs. A read-only buffer may still be passed to a non-`const` pointer
    /// parameter; the scorer checks after the run that it is unmodified.
    pub writable: bool,
}

impl BufferSpec {
    /// A buffer spec.
    pub fn new(name: impl Into<String>, elem: ElemType, writable: bool) -> BufferSpec {
        BufferSpec {
            name: name.into(),
            elem,
            writable,
        }
    }
}

/// Limits a plan must respect; tasks may override any field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimits {
    /// Most `[[launch]]` entries (default 64).
    pub max_launches: usize,
    /// Most `[[scratch]]` entries (default 16).
    pub max_scratch_buffers: usize,
    /// Largest grid dimension, x y z (default 2^31-1, 65535, 65535).
    pub max_grid: [u32; 3],
    /// Largest block dimension, x y z (default 1024, 1024, 64).
    pub max_block: [u32; 3],
    /// Most threads per block, x*y*z (default 1024).
    pub max_threads_per_block: u32,
    /// Most dynamic shared memory per launch, bytes (default 232448 = 227 KiB, Hopper's
    /// opt-in maximum; the device may allow less).
    pub max_shared_mem_bytes: u32,
    /// Largest single scratch buffer, bytes (default 4 GiB).
    pub max_scratch_bytes: u64,
    /// Largest total of all scratch buffers, bytes (default 4 GiB).
    pub max_total_scratch_bytes: u64,
}

impl Default for PlanLimits {
    fn default() -> PlanLimits {
        PlanLimits {
            max_launches: 64,
            max_scratch_buffers: 16,
            max_grid: [i32::MAX as u32, 65535, 65535],
            max_block: [1024, 1024, 64],
            max_threads_per_block: 1024,
            max_shared_mem_bytes: 232_448,
            max_scratch_bytes: 4 << 30,
            max_total_scratch_bytes: 4 << 30,
        }
    }
}

/// A scratch buffer as written in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchSpec {
    pub name: String,
    pub elem: ElemType,
    /// Number of elements.
    pub len: Expr,
    /// `init = "zero"` (the default) rather than `"none"`.
    pub zero_init: bool,
}

/// One argument of a launch as written in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgSpec {
    /// A buffer (task buffer or scratch), passed as a device pointer.
    Buffer(String),
    /// `TYPE: EXPR`, a scalar passed by value.
    Scalar { ty: ScalarType, value: Expr },
}

/// One `[[launch]]` as written in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub kernel: String,
    /// 1 to 3 expressions (x, y, z); missing ones are 1.
    pub grid: Vec<Expr>,
    /// 1 to 3 expressions (x, y, z); missing ones are 1.
    pub block: Vec<Expr>,
    /// Dynamic shared memory in bytes.
    pub shared_mem: Expr,
    pub args: Vec<ArgSpec>,
}

/// A parsed `launch.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    /// The file the plan came from (used in every error message).
    pub path: PathBuf,
    pub constants: BTreeMap<String, i64>,
    pub scratch: Vec<ScratchSpec>,
    pub launches: Vec<LaunchSpec>,
}

impl LaunchPlan {
    /// The kernel names launched, in launch order, without repeats.
    pub fn kernel_names(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.launches
            .iter()
            .map(|l| l.kernel.as_str())
            .filter(|k| seen.insert(*k))
            .collect()
    }
}

/// A scratch buffer with its size known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedScratch {
    pub name: String,
    pub elem: ElemType,
    /// Number of elements (>= 1).
    pub len: u64,
    /// Zero it inside the timed region, before the first launch.
    pub zero_init: bool,
}

impl ResolvedScratch {
    /// Size in bytes (`len * elem.size_bytes()`, checked against the limits at resolve time).
    pub fn bytes(&self) -> u64 {
        self.len.saturating_mul(self.elem.size_bytes())
    }
}

/// A resolved kernel argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolvedArg {
    /// The device pointer of this buffer (task buffer or scratch).
    Buffer(String),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
}

/// A launch with all numbers known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedLaunch {
    pub kernel: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_mem_bytes: u32,
    pub args: Vec<ResolvedArg>,
}

impl ResolvedLaunch {
    /// Threads per block (`block.x * block.y * block.z`).
    pub fn threads_per_block(&self) -> u64 {
        self.block.iter().map(|&d| d as u64).product()
    }
}

/// A plan resolved for one binding of the task variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPlan {
    pub scratch: Vec<ResolvedScratch>,
    pub launches: Vec<ResolvedLaunch>,
}

impl ResolvedPlan {
    /// Total bytes of all scratch buffers.
    pub fn total_scratch_bytes(&self) -> u64 {
        self.scratch
            .iter()
            .map(|s| s.bytes())
            .fold(0u64, |a, b| a.saturating_add(b))
    }
}

/// An error in a launch plan. The message starts with the file path, then the location in the
/// plan, then what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("{}: cannot read the launch plan: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has unknown keys or values of the wrong TOML type. The
    /// message is the TOML parser's, with line and column.
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    /// The plan is well-formed TOML but wrong: `location` is e.g. `launch[1] (kernel "scan"): grid.x`.
    #[error("{}: {location}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        location: String,
        message: String,
    },
}

impl PlanError {
    /// The plan file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PlanError::Io { path, .. }
            | PlanError::Toml { path, .. }
            | PlanError::Invalid { path, .. } => path,
        }
    }
}
