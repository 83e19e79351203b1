//! `launch.toml`: the declarative launch plan of a kernel submission.
//!
//! A kernel submission is `solution.cu` (device code only) plus `launch.toml`, which says which
//! `extern "C" __global__` kernels to launch, in order, with which grid, block, dynamic shared
//! memory and arguments, and which scratch buffers the scorer should allocate. The scorer owns
//! the host side. See `docs/launch-plan.md` for the format reference.
//!
//! Life cycle:
//! 1. [`LaunchPlan::parse`] / [`LaunchPlan::from_file`]: TOML syntax, unknown keys, types,
//!    names, expression syntax. Needs nothing from the task.
//! 2. [`LaunchPlan::check_against`]: kernel names and argument lists against the signatures
//!    read from the CUDA source by [`parse_kernel_signatures`] (no GPU needed).
//! 3. [`LaunchPlan::resolve`]: for one binding of the task variables (e.g. `n`), evaluates
//!    every expression and checks every limit, giving a [`ResolvedPlan`] of plain numbers.
//!
//! Every [`PlanError`] message starts with the file path, then the location in the plan
//! (`launch[1] (kernel "scan"): grid.x`, `scratch "tile_sums": len`, `constants.BLOCK`), then
//! what is wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::expr::{Expr, FUNCTIONS};

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

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
}

impl ElemType {
    /// All element types, in the order of their names in the docs.
    pub const ALL: [ElemType; 10] = [
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
    ];

    /// Size of one element in bytes.
    pub fn size_bytes(self) -> u64 {
        match self {
            ElemType::I8 | ElemType::U8 => 1,
            ElemType::I16 | ElemType::U16 => 2,
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

    fn range(self) -> (i128, i128) {
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

/// The kind of a kernel parameter, as read from the CUDA source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamKind {
    /// `T*` (any single-level pointer or `T x[]`); `is_const` when the pointee is `const`.
    Pointer { is_const: bool },
    /// An integer scalar the plan can pass.
    Scalar(ScalarType),
    /// Anything else (float, struct, `T**`, reference, ...), with its type text. Not checked.
    Other(String),
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::Pointer { is_const: true } => write!(f, "a const pointer"),
            ParamKind::Pointer { is_const: false } => write!(f, "a pointer"),
            ParamKind::Scalar(t) => write!(f, "a scalar {t} (`{}`)", t.c_name()),
            ParamKind::Other(s) => write!(f, "`{s}`"),
        }
    }
}

/// An `extern "C" __global__` kernel found in a CUDA source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSignature {
    pub name: String,
    pub params: Vec<ParamKind>,
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

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(default)]
    constants: BTreeMap<String, toml::Value>,
    #[serde(default)]
    scratch: Vec<RawScratch>,
    #[serde(default)]
    launch: Vec<RawLaunch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScratch {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    len: toml::Value,
    #[serde(default)]
    init: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLaunch {
    kernel: String,
    grid: toml::Value,
    block: toml::Value,
    #[serde(default)]
    shared_mem: Option<toml::Value>,
    #[serde(default)]
    args: Vec<String>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn toml_type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

fn launch_location(index: usize, kernel: &str) -> String {
    format!("launch[{index}] (kernel {kernel:?})")
}

const AXES: [&str; 3] = ["x", "y", "z"];

impl LaunchPlan {
    /// Reads and parses the plan at `path`. A missing or unreadable file is
    /// [`PlanError::Io`] naming the path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<LaunchPlan, PlanError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        LaunchPlan::parse(&text, path)
    }

    /// Parses plan text; `path` is used in error messages (and kept in the plan).
    ///
    /// Checks everything that does not depend on the task: TOML syntax, unknown keys, value
    /// types, identifiers, duplicate names, element and scalar type names, expression syntax,
    /// and that there is at least one launch.
    pub fn parse(text: &str, path: &Path) -> Result<LaunchPlan, PlanError> {
        let path_buf = path.to_path_buf();
        let invalid = |location: String, message: String| PlanError::Invalid {
            path: path_buf.clone(),
            location,
            message,
        };
        let raw: RawPlan = toml::from_str(text).map_err(|e| PlanError::Toml {
            path: path_buf.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;

        // Constants.
        let mut constants = BTreeMap::new();
        for (name, value) in &raw.constants {
            let loc = format!("constants.{name}");
            if !is_identifier(name) {
                return Err(invalid(
                    loc,
                    "a constant's name must be an identifier (letters, digits, `_`, not starting with a digit)".into(),
                ));
            }
            if FUNCTIONS.contains(&name.as_str()) {
                return Err(invalid(
                    loc,
                    format!("`{name}` is the name of a function; choose another name"),
                ));
            }
            match value {
                toml::Value::Integer(v) => {
                    constants.insert(name.clone(), *v);
                }
                other => {
                    let hint = match other {
                        toml::Value::String(_) => {
                            "; constants are plain integers, not expressions (write `BLOCK = 256`, not `BLOCK = \"256\"`)"
                        }
                        toml::Value::Float(_) => "; constants must be whole numbers",
                        _ => "",
                    };
                    return Err(invalid(
                        loc,
                        format!("expected an integer, found {}{hint}", toml_type_name(other)),
                    ));
                }
            }
        }

        // Scratch buffers.
        let mut scratch = Vec::new();
        let mut scratch_names = BTreeSet::new();
        for (i, s) in raw.scratch.iter().enumerate() {
            let loc = if is_identifier(&s.name) {
                format!("scratch {:?}", s.name)
            } else {
                format!("scratch[{i}]")
            };
            if !is_identifier(&s.name) {
                return Err(invalid(
                    format!("{loc}: name"),
                    format!(
                        "{:?} is not an identifier (letters, digits, `_`, not starting with a digit)",
                        s.name
                    ),
                ));
            }
            if !scratch_names.insert(s.name.clone()) {
                return Err(invalid(
                    loc,
                    format!("duplicate scratch buffer name `{}`", s.name),
                ));
            }
            if constants.contains_key(&s.name) {
                return Err(invalid(
                    loc,
                    format!(
                        "scratch buffer `{}` has the name of a constant; rename one of them",
                        s.name
                    ),
                ));
            }
            let elem = ElemType::from_name(&s.ty).ok_or_else(|| {
                invalid(
                    format!("{loc}: type"),
                    format!(
                        "unknown element type {:?}; expected one of {}",
                        s.ty,
                        quote_list(ElemType::ALL.iter().map(|t| t.name()))
                    ),
                )
            })?;
            let len = value_to_expr(&s.len).map_err(|m| invalid(format!("{loc}: len"), m))?;
            let zero_init = match s.init.as_deref() {
                None | Some("zero") => true,
                Some("none") => false,
                Some(other) => {
                    return Err(invalid(
                        format!("{loc}: init"),
                        format!("unknown init {other:?}; expected \"zero\" or \"none\""),
                    ))
                }
            };
            scratch.push(ScratchSpec {
                name: s.name.clone(),
                elem,
                len,
                zero_init,
            });
        }

        // Launches.
        if raw.launch.is_empty() {
            return Err(invalid(
                "launch".into(),
                "the plan has no launches; add at least one [[launch]] table with kernel, grid, block and args".into(),
            ));
        }
        let mut launches = Vec::new();
        for (i, l) in raw.launch.iter().enumerate() {
            let loc = launch_location(i, &l.kernel);
            if !is_identifier(&l.kernel) {
                return Err(invalid(
                    format!("{loc}: kernel"),
                    "the kernel name must be a C identifier (the name of an extern \"C\" __global__ function)".into(),
                ));
            }
            let grid = value_to_dims(&l.grid)
                .map_err(|(sub, m)| invalid(format!("{loc}: grid{sub}"), m))?;
            let block = value_to_dims(&l.block)
                .map_err(|(sub, m)| invalid(format!("{loc}: block{sub}"), m))?;
            let shared_mem = match &l.shared_mem {
                None => Expr::constant(0),
                Some(v) => {
                    value_to_expr(v).map_err(|m| invalid(format!("{loc}: shared_mem"), m))?
                }
            };
            let mut args = Vec::new();
            for (j, a) in l.args.iter().enumerate() {
                let arg = parse_arg(a).map_err(|m| invalid(format!("{loc}: args[{j}]"), m))?;
                args.push(arg);
            }
            launches.push(LaunchSpec {
                kernel: l.kernel.clone(),
                grid,
                block,
                shared_mem,
                args,
            });
        }

        Ok(LaunchPlan {
            path: path_buf,
            constants,
            scratch,
            launches,
        })
    }

    /// The kernel names launched, in launch order, without repeats.
    pub fn kernel_names(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.launches
            .iter()
            .map(|l| l.kernel.as_str())
            .filter(|k| seen.insert(*k))
            .collect()
    }

    fn invalid(&self, location: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            path: self.path.clone(),
            location: location.into(),
            message: message.into(),
        }
    }

    /// Describes a name that is not a buffer, for messages.
    fn not_a_buffer(
        &self,
        name: &str,
        buffers: &[BufferSpec],
        vars: Option<&BTreeMap<String, i64>>,
    ) -> String {
        let mut known: Vec<&str> = buffers.iter().map(|b| b.name.as_str()).collect();
        known.extend(self.scratch.iter().map(|s| s.name.as_str()));
        let mut msg = format!(
            "unknown buffer `{name}`; the buffers are {}",
            quote_list(known)
        );
        let is_var = vars.is_some_and(|v| v.contains_key(name));
        if self.constants.contains_key(name) || is_var {
            let what = if is_var {
                "a task variable"
            } else {
                "a constant"
            };
            msg = format!(
                "`{name}` is {what}, not a buffer; to pass its value write \"i32: {name}\" (or u32/i64/u64)"
            );
        }
        msg
    }

    /// Checks kernel names and argument lists against the kernels found in the CUDA source
    /// (see [`parse_kernel_signatures`]) and buffer names against the task's buffers and the
    /// plan's scratch buffers.
    ///
    /// Errors: unknown kernel (the message lists the kernels found), wrong number of arguments,
    /// a buffer passed to a scalar parameter or a scalar to a pointer parameter, a scalar whose
    /// type differs from the declared one (e.g. `i32` to `long long`, or `i32` to
    /// `unsigned int`). Parameters of kind [`ParamKind::Other`] are not checked. A read-only
    /// task buffer passed to a non-`const` pointer is allowed (the scorer checks that inputs are
    /// unmodified).
    pub fn check_against(
        &self,
        sigs: &[KernelSignature],
        buffers: &[BufferSpec],
    ) -> Result<(), PlanError> {
        let scratch: BTreeSet<&str> = self.scratch.iter().map(|s| s.name.as_str()).collect();
        for b in buffers {
            if scratch.contains(b.name.as_str()) {
                return Err(self.invalid(
                    format!("scratch {:?}", b.name),
                    format!(
                        "`{}` is the name of a task buffer; choose another name",
                        b.name
                    ),
                ));
            }
        }
        for (i, l) in self.launches.iter().enumerate() {
            let loc = launch_location(i, &l.kernel);
            let Some(sig) = sigs.iter().find(|s| s.name == l.kernel) else {
                let msg = if sigs.is_empty() {
                    format!(
                        "unknown kernel `{}`: no extern \"C\" __global__ kernels were found in the CUDA source",
                        l.kernel
                    )
                } else {
                    format!(
                        "unknown kernel `{}`; the extern \"C\" __global__ kernels in the CUDA source are {}",
                        l.kernel,
                        quote_list(sigs.iter().map(|s| s.name.as_str()))
                    )
                };
                return Err(self.invalid(format!("{loc}: kernel"), msg));
            };
            if sig.params.len() != l.args.len() {
                let plural = |n: usize| if n == 1 { "" } else { "s" };
                return Err(self.invalid(
                    format!("{loc}: args"),
                    format!(
                        "kernel {} takes {} parameter{}, launch[{i}] passes {} argument{}",
                        l.kernel,
                        sig.params.len(),
                        plural(sig.params.len()),
                        l.args.len(),
                        plural(l.args.len())
                    ),
                ));
            }
            for (j, (arg, param)) in l.args.iter().zip(&sig.params).enumerate() {
                let aloc = format!("{loc}: args[{j}]");
                match (arg, param) {
                    (_, ParamKind::Other(_)) => {}
                    (ArgSpec::Buffer(name), ParamKind::Pointer { is_const }) => {
                        let task = buffers.iter().find(|b| &b.name == name);
                        if task.is_none() && !scratch.contains(name.as_str()) {
                            return Err(self.invalid(aloc, self.not_a_buffer(name, buffers, None)));
                        }
                        if let Some(b) = task {
                            if !b.writable && !is_const {
                                tracing::debug!(
                                    "{}: {aloc}: read-only buffer `{name}` passed to a non-const pointer parameter",
                                    self.path.display()
                                );
                            }
                        }
                    }
                    (ArgSpec::Buffer(name), ParamKind::Scalar(t)) => {
                        return Err(self.invalid(
                            aloc,
                            format!(
                                "buffer `{name}` is a pointer, but parameter {j} of kernel {} is a scalar {t} (`{}`); pass a value as \"{t}: EXPR\"",
                                l.kernel,
                                t.c_name()
                            ),
                        ))
                    }
                    (ArgSpec::Scalar { ty, .. }, ParamKind::Pointer { .. }) => {
                        return Err(self.invalid(
                            aloc,
                            format!(
                                "a scalar {ty} is passed, but parameter {j} of kernel {} is a pointer; pass a buffer name",
                                l.kernel
                            ),
                        ))
                    }
                    (ArgSpec::Scalar { ty, .. }, ParamKind::Scalar(t)) => {
                        if ty != t {
                            let width = if ty.size_bytes() != t.size_bytes() {
                                format!(
                                    " ({}-bit where the kernel expects {}-bit)",
                                    ty.size_bytes() * 8,
                                    t.size_bytes() * 8
                                )
                            } else {
                                " (same width, different signedness)".to_string()
                            };
                            return Err(self.invalid(
                                aloc,
                                format!(
                                    "a scalar {ty} is passed, but parameter {j} of kernel {} is `{}`{width}; write \"{t}: ...\"",
                                    l.kernel,
                                    t.c_name()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Evaluates every expression with the task variables `vars` (and the plan's constants) and
    /// checks every limit, giving plain numbers to launch.
    ///
    /// Also checks names: constants and scratch buffers may not clash with task variables or
    /// task buffers, expressions may use only variables and constants, and buffer arguments must
    /// name a task buffer or a scratch buffer. Each error message ends with the variable
    /// binding it was found at (e.g. `(with n = 100000000)`).
    pub fn resolve(
        &self,
        vars: &BTreeMap<String, i64>,
        buffers: &[BufferSpec],
        limits: &PlanLimits,
    ) -> Result<ResolvedPlan, PlanError> {
        let at = {
            let parts: Vec<String> = vars.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" (with {})", parts.join(", "))
            }
        };
        let fail =
            |location: String, message: String| self.invalid(location, format!("{message}{at}"));

        if self.launches.is_empty() {
            return Err(fail("launch".into(), "the plan has no launches".into()));
        }
        if self.launches.len() > limits.max_launches {
            return Err(fail(
                "launch".into(),
                format!(
                    "the plan has {} launches; at most {} are allowed",
                    self.launches.len(),
                    limits.max_launches
                ),
            ));
        }
        if self.scratch.len() > limits.max_scratch_buffers {
            return Err(fail(
                "scratch".into(),
                format!(
                    "the plan has {} scratch buffers; at most {} are allowed",
                    self.scratch.len(),
                    limits.max_scratch_buffers
                ),
            ));
        }

        // Name clashes.
        for name in self.constants.keys() {
            if vars.contains_key(name) {
                return Err(fail(
                    format!("constants.{name}"),
                    format!("`{name}` is a task variable; a constant may not redefine it"),
                ));
            }
            if buffers.iter().any(|b| &b.name == name) {
                return Err(fail(
                    format!("constants.{name}"),
                    format!("`{name}` is the name of a task buffer; choose another name"),
                ));
            }
        }
        for s in &self.scratch {
            let loc = format!("scratch {:?}", s.name);
            if buffers.iter().any(|b| b.name == s.name) {
                return Err(fail(
                    loc,
                    format!(
                        "`{}` is the name of a task buffer; choose another name",
                        s.name
                    ),
                ));
            }
            if vars.contains_key(&s.name) {
                return Err(fail(
                    loc,
                    format!(
                        "`{}` is the name of a task variable; choose another name",
                        s.name
                    ),
                ));
            }
        }

        let mut env = vars.clone();
        env.extend(self.constants.iter().map(|(k, v)| (k.clone(), *v)));
        let eval = |e: &Expr, loc: &str| -> Result<i64, PlanError> {
            e.eval(&env)
                .map_err(|err| fail(loc.to_string(), err.to_string()))
        };

        // Scratch.
        let mut scratch = Vec::new();
        let mut total: u64 = 0;
        for s in &self.scratch {
            let loc = format!("scratch {:?}: len", s.name);
            let len = eval(&s.len, &loc)?;
            if len < 1 {
                return Err(fail(
                    loc,
                    format!(
                        "`{}` = {len}; a scratch buffer needs at least 1 element",
                        s.len.source()
                    ),
                ));
            }
            let len = len as u64;
            let bytes = len.checked_mul(s.elem.size_bytes());
            let too_big = match bytes {
                Some(b) => b > limits.max_scratch_bytes,
                None => true,
            };
            if too_big {
                return Err(fail(
                    loc,
                    format!(
                        "`{}` = {len} elements of {} is {} bytes; at most {} bytes are allowed per scratch buffer",
                        s.len.source(),
                        s.elem,
                        bytes.map_or_else(|| "more than 2^64".to_string(), |b| b.to_string()),
                        limits.max_scratch_bytes
                    ),
                ));
            }
            let bytes = bytes.unwrap_or(u64::MAX);
            total = total.saturating_add(bytes);
            if total > limits.max_total_scratch_bytes {
                return Err(fail(
                    format!("scratch {:?}", s.name),
                    format!(
                        "scratch buffers up to this one take {total} bytes; at most {} bytes are allowed in total",
                        limits.max_total_scratch_bytes
                    ),
                ));
            }
            scratch.push(ResolvedScratch {
                name: s.name.clone(),
                elem: s.elem,
                len,
                zero_init: s.zero_init,
            });
        }

        // Launches.
        let mut launches = Vec::new();
        for (i, l) in self.launches.iter().enumerate() {
            let loc = launch_location(i, &l.kernel);
            let dims = |exprs: &[Expr], what: &str, max: [u32; 3]| -> Result<[u32; 3], PlanError> {
                let mut out = [1u32; 3];
                for (axis, e) in exprs.iter().enumerate().take(3) {
                    let dloc = if exprs.len() == 1 {
                        format!("{loc}: {what}")
                    } else {
                        format!("{loc}: {what}.{}", AXES[axis])
                    };
                    let v = eval(e, &dloc)?;
                    let limit = max[axis];
                    if v < 1 || v > limit as i64 {
                        return Err(fail(
                            dloc,
                            format!(
                                "`{}` = {v}; {what}.{} must be in [1, {limit}]",
                                e.source(),
                                AXES[axis]
                            ),
                        ));
                    }
                    out[axis] = v as u32;
                }
                Ok(out)
            };
            let grid = dims(&l.grid, "grid", limits.max_grid)?;
            let block = dims(&l.block, "block", limits.max_block)?;
            let threads: u64 = block.iter().map(|&d| d as u64).product();
            if threads > limits.max_threads_per_block as u64 {
                return Err(fail(
                    format!("{loc}: block"),
                    format!(
                        "{} x {} x {} = {threads} threads per block; at most {} are allowed",
                        block[0], block[1], block[2], limits.max_threads_per_block
                    ),
                ));
            }
            let sloc = format!("{loc}: shared_mem");
            let smem = eval(&l.shared_mem, &sloc)?;
            if smem < 0 || smem > limits.max_shared_mem_bytes as i64 {
                return Err(fail(
                    sloc,
                    format!(
                        "`{}` = {smem} bytes; dynamic shared memory must be in [0, {}]",
                        l.shared_mem.source(),
                        limits.max_shared_mem_bytes
                    ),
                ));
            }
            let mut args = Vec::new();
            for (j, a) in l.args.iter().enumerate() {
                let aloc = format!("{loc}: args[{j}]");
                let arg = match a {
                    ArgSpec::Buffer(name) => {
                        let known = buffers.iter().any(|b| &b.name == name)
                            || self.scratch.iter().any(|s| &s.name == name);
                        if !known {
                            return Err(fail(aloc, self.not_a_buffer(name, buffers, Some(vars))));
                        }
                        ResolvedArg::Buffer(name.clone())
                    }
                    ArgSpec::Scalar { ty, value } => {
                        let v = eval(value, &aloc)?;
                        let (lo, hi) = ty.range();
                        if (v as i128) < lo || (v as i128) > hi {
                            return Err(fail(
                                aloc,
                                format!(
                                    "`{}` = {v} does not fit in {ty} (range {lo} to {hi})",
                                    value.source()
                                ),
                            ));
                        }
                        // In range by the check above, so the conversions cannot fail.
                        match ty {
                            ScalarType::I32 => ResolvedArg::I32(v as i32),
                            ScalarType::U32 => ResolvedArg::U32(v as u32),
                            ScalarType::I64 => ResolvedArg::I64(v),
                            ScalarType::U64 => ResolvedArg::U64(v as u64),
                        }
                    }
                };
                args.push(arg);
            }
            launches.push(ResolvedLaunch {
                kernel: l.kernel.clone(),
                grid,
                block,
                shared_mem_bytes: smem as u32,
                args,
            });
        }
        Ok(ResolvedPlan { scratch, launches })
    }
}

/// A TOML value that is an integer or an expression string.
fn value_to_expr(v: &toml::Value) -> Result<Expr, String> {
    match v {
        toml::Value::Integer(i) => Ok(Expr::constant(*i)),
        toml::Value::String(s) => Expr::parse(s).map_err(|e| e.to_string()),
        other => Err(format!(
            "expected an integer or an expression string, found {}",
            toml_type_name(other)
        )),
    }
}

/// A grid/block value: one integer/expression, or an array of 1 to 3 of them.
/// On error returns the sub-location (`""` or `.y`) and the message.
fn value_to_dims(v: &toml::Value) -> Result<Vec<Expr>, (String, String)> {
    match v {
        toml::Value::Array(items) => {
            if items.is_empty() || items.len() > 3 {
                return Err((
                    String::new(),
                    format!("expected 1 to 3 dimensions [x, y, z], found {}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(axis, item)| value_to_expr(item).map_err(|m| (format!(".{}", AXES[axis]), m)))
                .collect()
        }
        toml::Value::Integer(_) | toml::Value::String(_) => {
            value_to_expr(v).map(|e| vec![e]).map_err(|m| (String::new(), m))
        }
        other => Err((
            String::new(),
            format!(
                "expected an integer, an expression string, or an array of 1 to 3 of them, found {}",
                toml_type_name(other)
            ),
        )),
    }
}

/// `"input"` or `"i32: n"`.
fn parse_arg(a: &str) -> Result<ArgSpec, String> {
    let trimmed = a.trim();
    if let Some((ty, expr)) = trimmed.split_once(':') {
        let ty = ty.trim();
        let Some(st) = ScalarType::from_name(ty) else {
            let hint = if ElemType::from_name(ty).is_some() {
                " (scalar arguments must be integers of 32 or 64 bits)"
            } else {
                ""
            };
            return Err(format!(
                "unknown scalar type {ty:?} in {a:?}; expected one of {}{hint}",
                quote_list(ScalarType::ALL.iter().map(|t| t.name()))
            ));
        };
        let value = Expr::parse(expr.trim()).map_err(|e| format!("in {a:?}: {e}"))?;
        return Ok(ArgSpec::Scalar { ty: st, value });
    }
    if is_identifier(trimmed) {
        return Ok(ArgSpec::Buffer(trimmed.to_string()));
    }
    Err(format!(
        "{a:?} is neither a buffer name nor \"TYPE: EXPR\" (e.g. \"i32: n\", TYPE one of i32, u32, i64, u64)"
    ))
}

// ---------------------------------------------------------------------------------------------
// Kernel signatures from CUDA source
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum CTok {
    Ident(String),
    Str(String),
    Num,
    Punct(char),
}

/// Replaces comments with spaces and drops preprocessor lines (with their `\` continuations).
fn strip_comments_and_directives(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                if b[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i = (i + 2).min(b.len());
            out.push(' ');
            continue;
        }
        if c == '#' && line_start {
            // Preprocessor directive: skip to the end of the logical line.
            while i < b.len() && b[i] != '\n' {
                if b[i] == '\\' && b.get(i + 1) == Some(&'\n') {
                    i += 1;
                } else if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    // A block comment inside a directive may span lines.
                    i += 2;
                    while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            continue;
        }
        if c == '"' || c == '\'' {
            out.push(c);
            i += 1;
            while i < b.len() && b[i] != c && b[i] != '\n' {
                if b[i] == '\\' && i + 1 < b.len() {
                    out.push(b[i]);
                    i += 1;
                }
                out.push(b[i]);
                i += 1;
            }
            if i < b.len() && b[i] == c {
                out.push(c);
                i += 1;
            }
            line_start = false;
            continue;
        }
        if c == '\n' {
            line_start = true;
        } else if !c.is_whitespace() {
            line_start = false;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn tokenize_c(src: &str) -> Vec<CTok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(CTok::Ident(b[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            out.push(CTok::Num);
        } else if c == '"' || c == '\'' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != c && b[i] != '\n' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            let end = i.min(b.len());
            let s: String = b[start.min(end)..end].iter().collect();
            i += 1;
            if c == '"' {
                out.push(CTok::Str(s));
            } else {
                out.push(CTok::Num);
            }
        } else {
            out.push(CTok::Punct(c));
            i += 1;
        }
    }
    out
}

fn is_punct(t: Option<&CTok>, c: char) -> bool {
    matches!(t, Some(CTok::Punct(p)) if *p == c)
}

fn is_ident(t: Option<&CTok>, s: &str) -> bool {
    matches!(t, Some(CTok::Ident(x)) if x == s)
}

/// Index just past the bracket that closes the one at `open` (`(`/`)` or `{`/`}`).
fn skip_balanced(toks: &[CTok], open: usize, o: char, c: char) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < toks.len() {
        if is_punct(toks.get(i), o) {
            depth += 1;
        } else if is_punct(toks.get(i), c) {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    toks.len()
}

/// Finds the `extern "C" __global__` kernel *definitions* in CUDA source: either with
/// `extern "C"` on the definition or inside an `extern "C" { ... }` block. Comments and
/// preprocessor lines are ignored; `__launch_bounds__(...)` and other qualifiers between
/// `__global__` and the name are skipped. Declarations without a body, templates and kernels
/// without C linkage are not returned. A kernel defined twice is returned once.
///
/// Parameter types are classified as pointers (`const` when the pointee is const),
/// integer scalars (`int`, `int32_t` → i32; `unsigned`, `unsigned int`, `uint32_t` → u32;
/// `long long`, `long`, `int64_t`, `ptrdiff_t` → i64; `unsigned long long`, `unsigned long`,
/// `size_t`, `uint64_t` → u64; `long` is 64-bit as on Linux) or [`ParamKind::Other`].
pub fn parse_kernel_signatures(source: &str) -> Vec<KernelSignature> {
    let toks = tokenize_c(&strip_comments_and_directives(source));
    let mut out: Vec<KernelSignature> = Vec::new();
    // One entry per open brace: whether it opened an `extern "C" {` block.
    let mut braces: Vec<bool> = Vec::new();
    let mut stmt_start = 0usize;
    let mut i = 0usize;
    while i < toks.len() {
        let t = &toks[i];
        if is_ident(Some(t), "extern")
            && matches!(toks.get(i + 1), Some(CTok::Str(s)) if s == "C")
            && is_punct(toks.get(i + 2), '{')
        {
            braces.push(true);
            i += 3;
            stmt_start = i;
            continue;
        }
        match t {
            CTok::Punct('{') => {
                braces.push(false);
                i += 1;
                stmt_start = i;
            }
            CTok::Punct('}') => {
                braces.pop();
                i += 1;
                stmt_start = i;
            }
            CTok::Punct(';') => {
                i += 1;
                stmt_start = i;
            }
            CTok::Ident(s) if s == "__global__" => {
                let prefix = &toks[stmt_start..i];
                let extern_c_here = prefix.windows(2).any(|w| {
                    is_ident(w.first(), "extern")
                        && matches!(w.get(1), Some(CTok::Str(s)) if s == "C")
                });
                let templated = prefix.iter().any(|t| is_ident(Some(t), "template"));
                let c_linkage = (extern_c_here || braces.contains(&true)) && !templated;
                match parse_kernel_at(&toks, i + 1) {
                    Some((name, params, next, is_definition)) => {
                        if is_definition && c_linkage && !out.iter().any(|k| k.name == name) {
                            out.push(KernelSignature { name, params });
                        }
                        i = next;
                        stmt_start = i;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// From just after `__global__`: returns (name, params, index after the body or `;`,
/// whether it is a definition).
fn parse_kernel_at(toks: &[CTok], mut j: usize) -> Option<(String, Vec<ParamKind>, usize, bool)> {
    loop {
        match toks.get(j)? {
            CTok::Ident(s)
                if s == "__launch_bounds__" || s == "__attribute__" || s == "__declspec" =>
            {
                if !is_punct(toks.get(j + 1), '(') {
                    return None;
                }
                j = skip_balanced(toks, j + 1, '(', ')');
            }
            CTok::Ident(name) if is_punct(toks.get(j + 1), '(') => {
                let open = j + 1;
                let close = skip_balanced(toks, open, '(', ')');
                let inner = toks.get(open + 1..close.saturating_sub(1)).unwrap_or(&[]);
                let params = parse_params(inner);
                return match toks.get(close) {
                    Some(CTok::Punct('{')) => {
                        let end = skip_balanced(toks, close, '{', '}');
                        Some((name.clone(), params, end, true))
                    }
                    Some(CTok::Punct(';')) => Some((name.clone(), params, close + 1, false)),
                    _ => Some((name.clone(), params, close, false)),
                };
            }
            CTok::Ident(_) | CTok::Punct(':') => j += 1,
            _ => return None,
        }
    }
}

fn parse_params(inner: &[CTok]) -> Vec<ParamKind> {
    // Split on top-level commas.
    let mut parts: Vec<&[CTok]> = Vec::new();
    let mut depth: i32 = 0;
    let mut start = 0;
    for (k, t) in inner.iter().enumerate() {
        match t {
            CTok::Punct('(' | '[' | '{' | '<') => depth += 1,
            CTok::Punct(')' | ']' | '}' | '>') => depth -= 1,
            CTok::Punct(',') if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    if parts.len() == 1
        && (parts[0].is_empty() || (parts[0].len() == 1 && is_ident(parts[0].first(), "void")))
    {
        return Vec::new();
    }
    parts.into_iter().map(classify_param).collect()
}

const IGNORED_QUALIFIERS: &[&str] = &[
    "__restrict__",
    "__restrict",
    "restrict",
    "__grid_constant__",
    "register",
    "struct",
    "__align__",
];

const TYPE_WORDS: &[&str] = &[
    "int",
    "unsigned",
    "signed",
    "long",
    "short",
    "char",
    "float",
    "double",
    "bool",
    "void",
    "size_t",
    "ssize_t",
    "ptrdiff_t",
    "intptr_t",
    "uintptr_t",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "uint",
    "half",
    "__half",
    "__nv_bfloat16",
];

fn classify_param(toks: &[CTok]) -> ParamKind {
    let text = toks
        .iter()
        .map(|t| match t {
            CTok::Ident(s) => s.clone(),
            CTok::Str(s) => format!("{s:?}"),
            CTok::Num => "#".to_string(),
            CTok::Punct(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let stars = toks.iter().filter(|t| is_punct(Some(t), '*')).count();
    let has_array = toks.iter().any(|t| is_punct(Some(t), '['));
    let has_other_punct = toks.iter().any(|t| {
        matches!(t, CTok::Punct(c) if !matches!(c, '*' | ':' | '[' | ']'))
            || matches!(t, CTok::Str(_))
    });
    if has_other_punct || stars + usize::from(has_array) > 1 {
        return ParamKind::Other(text);
    }
    if stars == 1 || has_array {
        // Pointee is const when `const` appears before the `*` (or anywhere, for `T x[]`).
        let before_star = toks
            .iter()
            .take_while(|t| !is_punct(Some(t), '*') && !is_punct(Some(t), '['));
        let is_const = before_star.into_iter().any(|t| is_ident(Some(t), "const"));
        return ParamKind::Pointer { is_const };
    }
    // Scalar: words without qualifiers and without `std::`.
    let mut words: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t {
            CTok::Ident(s) => Some(s.as_str()),
            _ => None,
        })
        .filter(|w| !matches!(*w, "const" | "volatile" | "std") && !IGNORED_QUALIFIERS.contains(w))
        .collect();
    if words.len() >= 2 {
        if let Some(last) = words.last() {
            if !TYPE_WORDS.contains(last) {
                words.pop(); // the parameter's name
            }
        }
    }
    let mut sorted = words.clone();
    sorted.sort_unstable();
    let scalar = match sorted.as_slice() {
        ["int"] | ["signed"] | ["int", "signed"] | ["int32_t"] => Some(ScalarType::I32),
        ["unsigned"] | ["int", "unsigned"] | ["uint32_t"] | ["uint"] => Some(ScalarType::U32),
        ["long", "long"]
        | ["int", "long", "long"]
        | ["long", "long", "signed"]
        | ["int", "long", "long", "signed"]
        | ["long"]
        | ["int", "long"]
        | ["long", "signed"]
        | ["int", "long", "signed"]
        | ["int64_t"]
        | ["ptrdiff_t"]
        | ["ssize_t"]
        | ["intptr_t"] => Some(ScalarType::I64),
        ["long", "long", "unsigned"]
        | ["int", "long", "long", "unsigned"]
        | ["long", "unsigned"]
        | ["int", "long", "unsigned"]
        | ["uint64_t"]
        | ["size_t"]
        | ["uintptr_t"] => Some(ScalarType::U64),
        _ => None,
    };
    match scalar {
        Some(t) => ParamKind::Scalar(t),
        None => ParamKind::Other(text),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[constants]
BLOCK = 256
ITEMS = 16

[[scratch]]
name = "tile_sums"
type = "i32"
len = "ceil_div(n, BLOCK * ITEMS)"
init = "zero"

[[launch]]
kernel = "scan_tiles"
grid = "ceil_div(n, BLOCK * ITEMS)"
block = "BLOCK"
shared_mem = "BLOCK * 4"
args = ["input", "output", "tile_sums", "i32: n"]

[[launch]]
kernel = "add_offsets"
grid = ["ceil_div(n, BLOCK)", 1, "1"]
block = [256]
args = ["output", "tile_sums", "u64: n"]
"#;

    const GOOD_CU: &str = r#"
#include <cstdint>
#define BLOCK 256

// scan each tile
extern "C" __global__ void __launch_bounds__(256)
scan_tiles(const int* __restrict__ input,
           int* __restrict__ output,   /* per-element result */
           int* tile_sums,
           int n)
{
    extern __shared__ int smem[];
    if (threadIdx.x == 0) { tile_sums[blockIdx.x] = 0; }
}

extern "C" __global__ void add_offsets(int *output, const int *tile_sums, unsigned long long n) {
    // nothing
}
"#;

    fn path() -> &'static Path {
        Path::new("sub/launch.toml")
    }

    fn parse(text: &str) -> Result<LaunchPlan, PlanError> {
        LaunchPlan::parse(text, path())
    }

    fn buffers() -> Vec<BufferSpec> {
        vec![
            BufferSpec::new("input", ElemType::I32, false),
            BufferSpec::new("output", ElemType::I32, true),
        ]
    }

    fn n(v: i64) -> BTreeMap<String, i64> {
        [("n".to_string(), v)].into_iter().collect()
    }

    fn resolve(text: &str, nv: i64) -> Result<ResolvedPlan, PlanError> {
        parse(text)?.resolve(&n(nv), &buffers(), &PlanLimits::default())
    }

    fn err_of(text: &str, nv: i64) -> String {
        match resolve(text, nv) {
            Ok(p) => panic!("expected an error, got {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn launch_with(fields: &str) -> String {
        format!("[[launch]]\nkernel = \"k\"\n{fields}\n")
    }

    #[test]
    fn good_plan_resolves_for_several_sizes() {
        let plan = parse(GOOD).unwrap();
        assert_eq!(plan.kernel_names(), vec!["scan_tiles", "add_offsets"]);
        assert_eq!(plan.constants.get("BLOCK"), Some(&256));
        for (nv, tiles, grid2) in [
            (1i64, 1u64, 1u32),
            (1000, 1, 4),
            (100_000_000, 24_415, 390_625),
        ] {
            let r = plan
                .resolve(&n(nv), &buffers(), &PlanLimits::default())
                .unwrap();
            assert_eq!(
                r.scratch,
                vec![ResolvedScratch {
                    name: "tile_sums".into(),
                    elem: ElemType::I32,
                    len: tiles,
                    zero_init: true
                }]
            );
            assert_eq!(r.scratch[0].bytes(), tiles * 4);
            assert_eq!(r.total_scratch_bytes(), tiles * 4);
            assert_eq!(
                r.launches[0],
                ResolvedLaunch {
                    kernel: "scan_tiles".into(),
                    grid: [tiles as u32, 1, 1],
                    block: [256, 1, 1],
                    shared_mem_bytes: 1024,
                    args: vec![
                        ResolvedArg::Buffer("input".into()),
                        ResolvedArg::Buffer("output".into()),
                        ResolvedArg::Buffer("tile_sums".into()),
                        ResolvedArg::I32(nv as i32),
                    ],
                }
            );
            assert_eq!(r.launches[1].grid, [grid2, 1, 1]);
            assert_eq!(r.launches[1].block, [256, 1, 1]);
            assert_eq!(r.launches[1].shared_mem_bytes, 0);
            assert_eq!(r.launches[1].threads_per_block(), 256);
            assert_eq!(r.launches[1].args[2], ResolvedArg::U64(nv as u64));
        }
    }

    #[test]
    fn good_plan_checks_against_its_source() {
        let plan = parse(GOOD).unwrap();
        let sigs = parse_kernel_signatures(GOOD_CU);
        assert_eq!(sigs.len(), 2, "{sigs:?}");
        plan.check_against(&sigs, &buffers()).unwrap();
    }

    #[test]
    fn all_scalar_types_and_3d_dims() {
        let text = launch_with(
            "grid = [2, 3, 4]\nblock = [8, 8, 16]\nshared_mem = 0\nargs = [\"i32: -n\", \"u32: n * 2\", \"i64: -n * n\", \"u64: n * n\"]",
        );
        let r = resolve(&text, 100_000).unwrap();
        let l = &r.launches[0];
        assert_eq!(l.grid, [2, 3, 4]);
        assert_eq!(l.block, [8, 8, 16]);
        assert_eq!(
            l.args,
            vec![
                ResolvedArg::I32(-100_000),
                ResolvedArg::U32(200_000),
                ResolvedArg::I64(-10_000_000_000),
                ResolvedArg::U64(10_000_000_000)
            ]
        );
        assert!(r.scratch.is_empty());
    }

    #[test]
    fn init_none_and_default_zero() {
        let text = format!(
            "[[scratch]]\nname = \"a\"\ntype = \"f64\"\nlen = 10\ninit = \"none\"\n[[scratch]]\nname = \"b\"\ntype = \"u8\"\nlen = \"n\"\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        let r = resolve(&text, 7).unwrap();
        assert!(!r.scratch[0].zero_init);
        assert_eq!(r.scratch[0].bytes(), 80);
        assert!(r.scratch[1].zero_init);
        assert_eq!(r.scratch[1].len, 7);
        assert_eq!(r.total_scratch_bytes(), 87);
    }

    #[test]
    fn not_toml() {
        let e = parse("[[launch]\nkernel = ").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PlanError::Toml { .. }));
        assert!(msg.starts_with("sub/launch.toml: "), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
        assert!(msg.contains("column"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        for (text, key) in [
            ("[[launch]]\nkernel = \"k\"\ngrid = 1\nblok = 1\n", "blok"),
            ("[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\nshared = 4\n", "shared"),
            ("launches = []\n", "launches"),
            (
                "[[scratch]]\nname = \"s\"\ntype = \"i32\"\nlen = 1\nzero = true\n[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\n",
                "zero",
            ),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.starts_with("sub/launch.toml: "), "{msg}");
            assert!(msg.contains(&format!("unknown field `{key}`")), "{msg}");
            assert!(msg.contains("line"), "{msg}");
        }
    }

    #[test]
    fn missing_required_keys() {
        let msg = parse("[[launch]]\nkernel = \"k\"\ngrid = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing field `block`"), "{msg}");
        let msg = parse("[[launch]]\ngrid = 1\nblock = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing field `kernel`"), "{msg}");
    }

    #[test]
    fn zero_launches() {
        for text in ["", "[constants]\nB = 1\n"] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(
                msg.starts_with("sub/launch.toml: launch: the plan has no launches"),
                "{msg}"
            );
        }
    }

    #[test]
    fn constants_must_be_integers() {
        let cases = [
            (
                "B = \"256\"",
                "constants.B: expected an integer, found a string; constants are plain integers",
            ),
            ("B = 2.5", "constants.B: expected an integer, found a float"),
            (
                "B = true",
                "constants.B: expected an integer, found a boolean",
            ),
            (
                "B = [1]",
                "constants.B: expected an integer, found an array",
            ),
            ("\"my const\" = 1", "must be an identifier"),
            ("min = 1", "constants.min: `min` is the name of a function"),
        ];
        for (c, needle) in cases {
            let text = format!("[constants]\n{c}\n{}", launch_with("grid = 1\nblock = 1"));
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.starts_with("sub/launch.toml: constants."), "{msg}");
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn negative_constant_is_fine_but_negative_grid_is_not() {
        let text = format!(
            "[constants]\nB = -4\n{}",
            launch_with("grid = \"B\"\nblock = 32")
        );
        let msg = err_of(&text, 1);
        assert!(
            msg.contains("launch[0] (kernel \"k\"): grid: `B` = -4; grid.x must be in [1, 2147483647] (with n = 1)"),
            "{msg}"
        );
    }

    #[test]
    fn zero_grid() {
        let msg = err_of(&launch_with("grid = \"n / 1024\"\nblock = 256"), 1000);
        assert!(
            msg.starts_with("sub/launch.toml: launch[0] (kernel \"k\"): grid: `n / 1024` = 0"),
            "{msg}"
        );
        assert!(msg.contains("must be in [1, 2147483647]"), "{msg}");
        let msg = err_of(&launch_with("grid = [1, 0]\nblock = 256"), 1000);
        assert!(
            msg.contains("grid.y: `0` = 0; grid.y must be in [1, 65535]"),
            "{msg}"
        );
    }

    #[test]
    fn grid_too_large() {
        let msg = err_of(&launch_with("grid = [1, \"n\"]\nblock = 1"), 70_000);
        assert!(
            msg.contains("grid.y: `n` = 70000; grid.y must be in [1, 65535]"),
            "{msg}"
        );
        let msg = err_of(&launch_with("grid = \"n\"\nblock = 1"), 1 << 31);
        assert!(msg.contains("2147483648"), "{msg}");
        assert!(resolve(&launch_with("grid = \"n\"\nblock = 1"), (1 << 31) - 1).is_ok());
    }

    #[test]
    fn block_limits() {
        let msg = err_of(&launch_with("grid = 1\nblock = 2048"), 1);
        assert!(
            msg.contains("block: `2048` = 2048; block.x must be in [1, 1024]"),
            "{msg}"
        );
        let msg = err_of(&launch_with("grid = 1\nblock = [64, 32]"), 1);
        assert!(
            msg.contains("64 x 32 x 1 = 2048 threads per block; at most 1024"),
            "{msg}"
        );
        let msg = err_of(&launch_with("grid = 1\nblock = [1, 1, 65]"), 1);
        assert!(msg.contains("block.z must be in [1, 64]"), "{msg}");
        let msg = err_of(&launch_with("grid = 1\nblock = 0"), 1);
        assert!(msg.contains("block.x must be in [1, 1024]"), "{msg}");
        assert!(resolve(&launch_with("grid = 1\nblock = [32, 32]"), 1).is_ok());
        let msg = parse(&launch_with("grid = 1\nblock = [1, 2, 3, 4]"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("block: expected 1 to 3 dimensions"), "{msg}");
        let msg = parse(&launch_with("grid = []\nblock = 1"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("grid: expected 1 to 3 dimensions [x, y, z], found 0"),
            "{msg}"
        );
    }

    #[test]
    fn shared_mem_limits() {
        let msg = err_of(
            &launch_with("grid = 1\nblock = 1\nshared_mem = \"n * 1024\""),
            228,
        );
        assert!(msg.contains("shared_mem: `n * 1024` = 233472 bytes; dynamic shared memory must be in [0, 232448]"), "{msg}");
        let msg = err_of(&launch_with("grid = 1\nblock = 1\nshared_mem = -4"), 1);
        assert!(msg.contains("shared_mem: `(-4)` = -4 bytes"), "{msg}");
        let r = resolve(&launch_with("grid = 1\nblock = 1\nshared_mem = 232448"), 1).unwrap();
        assert_eq!(r.launches[0].shared_mem_bytes, 232_448);
    }

    #[test]
    fn overflowing_and_negative_sizes() {
        let text = format!(
            "[[scratch]]\nname = \"s\"\ntype = \"f32\"\nlen = \"n * n * n\"\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        let msg = err_of(&text, 100_000_000);
        assert!(
            msg.starts_with("sub/launch.toml: scratch \"s\": len: "),
            "{msg}"
        );
        assert!(msg.contains("overflows"), "{msg}");
        assert!(msg.contains("(with n = 100000000)"), "{msg}");

        let text = format!(
            "[[scratch]]\nname = \"s\"\ntype = \"f32\"\nlen = \"n - 5\"\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        let msg = err_of(&text, 1);
        assert!(
            msg.contains(
                "scratch \"s\": len: `n - 5` = -4; a scratch buffer needs at least 1 element"
            ),
            "{msg}"
        );

        let text = format!(
            "[[scratch]]\nname = \"s\"\ntype = \"f64\"\nlen = \"n * n\"\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        let msg = err_of(&text, 100_000_000);
        assert!(
            msg.contains("at most 4294967296 bytes are allowed per scratch buffer"),
            "{msg}"
        );

        let msg = err_of(
            &launch_with("grid = 1\nblock = 1\nargs = [\"i32: n * 100\"]"),
            100_000_000,
        );
        assert!(
            msg.contains("args[0]: `n * 100` = 10000000000 does not fit in i32"),
            "{msg}"
        );
        let msg = err_of(&launch_with("grid = 1\nblock = 1\nargs = [\"u64: -n\"]"), 1);
        assert!(msg.contains("does not fit in u64"), "{msg}");
        let msg = err_of(
            &launch_with("grid = 1\nblock = 1\nargs = [\"u32: 5 / (n - 1)\"]"),
            1,
        );
        assert!(msg.contains("division by zero"), "{msg}");
    }

    #[test]
    fn total_scratch_limit() {
        let mut text = String::new();
        for name in ["a", "b", "c"] {
            text.push_str(&format!(
                "[[scratch]]\nname = \"{name}\"\ntype = \"u8\"\nlen = \"n\"\n"
            ));
        }
        text.push_str(&launch_with("grid = 1\nblock = 1"));
        let limits = PlanLimits {
            max_scratch_bytes: 1000,
            max_total_scratch_bytes: 2500,
            ..Default::default()
        };
        let plan = parse(&text).unwrap();
        assert!(plan.resolve(&n(800), &buffers(), &limits).is_ok());
        let msg = plan
            .resolve(&n(900), &buffers(), &limits)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "scratch \"c\": scratch buffers up to this one take 2700 bytes; at most 2500"
            ),
            "{msg}"
        );
        let msg = plan
            .resolve(&n(1001), &buffers(), &limits)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("scratch \"a\": len:"), "{msg}");
    }

    #[test]
    fn unknown_names() {
        let msg = err_of(
            &format!(
                "[constants]\nBLOCK = 256\n{}",
                launch_with("grid = \"ceil_div(n, BLOK)\"\nblock = 1")
            ),
            5,
        );
        assert!(
            msg.contains("grid: unknown name `BLOK`; known names: BLOCK, n"),
            "{msg}"
        );
        assert!(
            msg.contains("(at column 13 of `ceil_div(n, BLOK)`)"),
            "{msg}"
        );

        let msg = err_of(&launch_with("grid = 1\nblock = 1\nargs = [\"inptu\"]"), 5);
        assert!(
            msg.contains("args[0]: unknown buffer `inptu`; the buffers are `input`, `output`"),
            "{msg}"
        );
        let msg = err_of(&launch_with("grid = 1\nblock = 1\nargs = [\"n\"]"), 5);
        assert!(
            msg.contains(
                "`n` is a task variable, not a buffer; to pass its value write \"i32: n\""
            ),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_and_clashing_names() {
        let two = "[[scratch]]\nname = \"s\"\ntype = \"i32\"\nlen = 1\n".repeat(2);
        let msg = parse(&format!("{two}{}", launch_with("grid = 1\nblock = 1")))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("scratch \"s\": duplicate scratch buffer name `s`"),
            "{msg}"
        );

        let clash = format!(
            "[[scratch]]\nname = \"output\"\ntype = \"i32\"\nlen = 1\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        let msg = err_of(&clash, 1);
        assert!(
            msg.contains("scratch \"output\": `output` is the name of a task buffer"),
            "{msg}"
        );
        let plan = parse(&clash).unwrap();
        assert!(plan.check_against(&[], &buffers()).is_err());

        let clash = format!(
            "[[scratch]]\nname = \"n\"\ntype = \"i32\"\nlen = 1\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        assert!(err_of(&clash, 1).contains("`n` is the name of a task variable"));

        let clash = format!("[constants]\nn = 4\n{}", launch_with("grid = 1\nblock = 1"));
        assert!(err_of(&clash, 1).contains("constants.n: `n` is a task variable"));
        let clash = format!(
            "[constants]\ninput = 4\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        assert!(err_of(&clash, 1).contains("constants.input: `input` is the name of a task buffer"));

        let clash = format!(
            "[constants]\ns = 4\n[[scratch]]\nname = \"s\"\ntype = \"i32\"\nlen = 1\n{}",
            launch_with("grid = 1\nblock = 1")
        );
        assert!(parse(&clash)
            .unwrap_err()
            .to_string()
            .contains("has the name of a constant"));
    }

    #[test]
    fn bad_types_and_values() {
        let s = |ty: &str, len: &str, init: &str| {
            format!(
                "[[scratch]]\nname = \"s\"\ntype = {ty}\nlen = {len}\n{init}{}",
                launch_with("grid = 1\nblock = 1")
            )
        };
        let msg = parse(&s("\"float\"", "1", "")).unwrap_err().to_string();
        assert!(
            msg.contains(
                "scratch \"s\": type: unknown element type \"float\"; expected one of `i8`"
            ),
            "{msg}"
        );
        let msg = parse(&s("\"f32\"", "1.5", "")).unwrap_err().to_string();
        assert!(
            msg.contains(
                "scratch \"s\": len: expected an integer or an expression string, found a float"
            ),
            "{msg}"
        );
        let msg = parse(&s("\"f32\"", "1", "init = \"zeros\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("init: unknown init \"zeros\"; expected \"zero\" or \"none\""),
            "{msg}"
        );
        let msg = parse(&s("3", "1", "")).unwrap_err().to_string();
        assert!(
            matches!(parse(&s("3", "1", "")), Err(PlanError::Toml { .. })),
            "{msg}"
        );
        let msg = parse(&format!(
            "[[scratch]]\nname = \"1s\"\ntype = \"i32\"\nlen = 1\n{}",
            launch_with("grid = 1\nblock = 1")
        ))
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("scratch[0]: name: \"1s\" is not an identifier"),
            "{msg}"
        );

        let msg = parse(&launch_with("grid = true\nblock = 1"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("grid: expected an integer, an expression string, or an array"),
            "{msg}"
        );
        let msg = parse(&launch_with("grid = [1, 2.0]\nblock = 1"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("grid.y: expected an integer or an expression string, found a float"),
            "{msg}"
        );
        let msg = parse(&launch_with("grid = \"n +\"\nblock = 1"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("launch[0] (kernel \"k\"): grid: expected an integer, a name, `-` or `(`, found end of expression"), "{msg}");
        let msg = parse("[[launch]]\nkernel = \"my kernel\"\ngrid = 1\nblock = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "launch[0] (kernel \"my kernel\"): kernel: the kernel name must be a C identifier"
            ),
            "{msg}"
        );
    }

    #[test]
    fn bad_args() {
        let a = |arg: &str| {
            parse(&launch_with(&format!(
                "grid = 1\nblock = 1\nargs = [{arg}]"
            )))
            .unwrap_err()
            .to_string()
        };
        let msg = a("\"f32: 1\"");
        assert!(
            msg.contains("args[0]: unknown scalar type \"f32\""),
            "{msg}"
        );
        assert!(msg.contains("must be integers"), "{msg}");
        let msg = a("\"int: n\"");
        assert!(msg.contains("unknown scalar type \"int\" in \"int: n\"; expected one of `i32`, `u32`, `i64`, `u64`"), "{msg}");
        let msg = a("\"i32: \"");
        assert!(
            msg.contains("args[0]: in \"i32: \": expected an expression"),
            "{msg}"
        );
        let msg = a("\"input + 1\"");
        assert!(
            msg.contains("is neither a buffer name nor \"TYPE: EXPR\""),
            "{msg}"
        );
        let msg = a("1");
        assert!(msg.contains("invalid type"), "{msg}");
        let ok = parse(&launch_with(
            "grid = 1\nblock = 1\nargs = [\" input \", \"i64:n\"]",
        ))
        .unwrap();
        assert_eq!(ok.launches[0].args[0], ArgSpec::Buffer("input".into()));
    }

    #[test]
    fn too_many_launches_and_scratch() {
        let mut text = String::new();
        for _ in 0..65 {
            text.push_str(&launch_with("grid = 1\nblock = 1"));
        }
        let msg = err_of(&text, 1);
        assert!(
            msg.contains("launch: the plan has 65 launches; at most 64 are allowed"),
            "{msg}"
        );
        let mut text = String::new();
        for i in 0..17 {
            text.push_str(&format!(
                "[[scratch]]\nname = \"s{i}\"\ntype = \"i32\"\nlen = 1\n"
            ));
        }
        text.push_str(&launch_with("grid = 1\nblock = 1"));
        let msg = err_of(&text, 1);
        assert!(
            msg.contains("scratch: the plan has 17 scratch buffers; at most 16"),
            "{msg}"
        );
        let limits = PlanLimits {
            max_scratch_buffers: 32,
            ..Default::default()
        };
        assert!(parse(&text)
            .unwrap()
            .resolve(&n(1), &buffers(), &limits)
            .is_ok());
    }

    #[test]
    fn from_file_reads_and_names_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("launch.toml");
        std::fs::write(&p, GOOD).unwrap();
        let plan = LaunchPlan::from_file(&p).unwrap();
        assert_eq!(plan.path, p);
        assert_eq!(plan.launches.len(), 2);
        let missing = dir.path().join("nope.toml");
        let e = LaunchPlan::from_file(&missing).unwrap_err();
        assert!(matches!(e, PlanError::Io { .. }));
        assert_eq!(e.path(), missing.as_path());
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: cannot read the launch plan",
                missing.display()
            )),
            "{msg}"
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "grid = ").unwrap();
        assert!(LaunchPlan::from_file(&bad)
            .unwrap_err()
            .to_string()
            .starts_with(&bad.display().to_string()));
    }

    #[test]
    fn every_message_starts_with_path() {
        let bads = [
            "x",
            "",
            "[constants]\nA = 1.5\n[[launch]]\nkernel=\"k\"\ngrid=1\nblock=1\n",
            &launch_with("grid = \"(\"\nblock = 1"),
        ];
        for b in bads {
            let msg = parse(b).unwrap_err().to_string();
            assert!(msg.starts_with("sub/launch.toml: "), "{msg}");
        }
    }

    // ---- check_against ---------------------------------------------------------------------

    fn sigs_from(src: &str) -> Vec<KernelSignature> {
        parse_kernel_signatures(src)
    }

    #[test]
    fn unknown_kernel_lists_kernels() {
        let plan = parse(&launch_with("grid = 1\nblock = 1")).unwrap();
        let msg = plan
            .check_against(&sigs_from(GOOD_CU), &buffers())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("launch[0] (kernel \"k\"): kernel: unknown kernel `k`; the extern \"C\" __global__ kernels in the CUDA source are `scan_tiles`, `add_offsets`"),
            "{msg}"
        );
        let msg = plan.check_against(&[], &buffers()).unwrap_err().to_string();
        assert!(
            msg.contains("no extern \"C\" __global__ kernels were found"),
            "{msg}"
        );
    }

    #[test]
    fn missing_and_extra_arguments() {
        let src = "extern \"C\" __global__ void scan(const int* a, int* b, int* c, int n) {}";
        let mk = |args: &str| {
            parse(&format!(
                "[[launch]]\nkernel = \"scan\"\ngrid = 1\nblock = 1\nargs = [{args}]\n"
            ))
            .unwrap()
        };
        let msg = mk("\"input\", \"output\", \"output\"")
            .check_against(&sigs_from(src), &buffers())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("launch[0] (kernel \"scan\"): args: kernel scan takes 4 parameters, launch[0] passes 3 arguments"), "{msg}");
        let msg = mk("\"input\", \"output\", \"output\", \"i32: n\", \"i32: 1\"")
            .check_against(&sigs_from(src), &buffers())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("takes 4 parameters, launch[0] passes 5 arguments"),
            "{msg}"
        );
        mk("\"input\", \"output\", \"output\", \"i32: n\"")
            .check_against(&sigs_from(src), &buffers())
            .unwrap();
    }

    #[test]
    fn pointer_scalar_mismatches() {
        let src = r#"extern "C" __global__ void k(int* out, long long n, unsigned int m, float scale, float** pp) {}"#;
        let check = |args: &str| {
            parse(&format!(
                "[[launch]]\nkernel = \"k\"\ngrid = 1\nblock = 1\nargs = [{args}]\n"
            ))
            .unwrap()
            .check_against(&sigs_from(src), &buffers())
        };
        check("\"output\", \"i64: n\", \"u32: n\", \"i32: 1\", \"input\"").unwrap();
        let msg = check("\"i64: 0\", \"i64: n\", \"u32: n\", \"i32: 1\", \"input\"")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "args[0]: a scalar i64 is passed, but parameter 0 of kernel k is a pointer"
            ),
            "{msg}"
        );
        let msg = check("\"output\", \"input\", \"u32: n\", \"i32: 1\", \"input\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("args[1]: buffer `input` is a pointer, but parameter 1 of kernel k is a scalar i64 (`long long`)"), "{msg}");
        let msg = check("\"output\", \"i32: n\", \"u32: n\", \"i32: 1\", \"input\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("args[1]: a scalar i32 is passed, but parameter 1 of kernel k is `long long` (32-bit where the kernel expects 64-bit)"), "{msg}");
        let msg = check("\"output\", \"i64: n\", \"i32: n\", \"i32: 1\", \"input\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("same width, different signedness"), "{msg}");
        let msg = check("\"outptu\", \"i64: n\", \"u32: n\", \"i32: 1\", \"input\"")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("args[0]: unknown buffer `outptu`"), "{msg}");
    }

    #[test]
    fn read_only_buffer_to_non_const_pointer_is_allowed() {
        let src = r#"extern "C" __global__ void k(int* a, const int* b) {}"#;
        let plan = parse(&launch_with(
            "grid = 1\nblock = 1\nargs = [\"input\", \"output\"]",
        ))
        .unwrap();
        plan.check_against(&sigs_from(src), &buffers()).unwrap();
    }

    // ---- signature parsing -----------------------------------------------------------------

    #[test]
    fn signatures_of_realistic_kernels() {
        let src = r#"
#include <cuda_fp16.h>
#include <stdint.h>
#define TILE 16 \
    /* continued */
// extern "C" __global__ void commented_out(int x) {}
/* extern "C" __global__ void also_commented(int x) {} */

template <int B> __device__ int helper(int x) { return x * B; }

__global__ void not_c_linkage(int* x) {}

extern "C" __global__ void decl_only(int* x);

extern "C"
__global__
void
__launch_bounds__(256, 2)
multi_line(
    const float* __restrict__ in,   // comment, with a comma
    float* __restrict__ out,
    const int n,
    long long m,
    unsigned int u,
    size_t sz,
    int64_t a, uint32_t b, uint64_t c, int32_t d,
    unsigned long long ull,
    unsigned u2,
    long l,
    float alpha,
    const half* h,
    float const* cp,
    int* const pc,
    int arr[],
    std::size_t ssz,
    const __grid_constant__ Params p)
{
    const char* s = "extern \"C\" __global__ void in_string(int x) {}";
    if (n > 0) { out[0] = in[0]; }
}

extern "C" {
__global__ void in_block_a(int *x, int n) { }
__global__ void __launch_bounds__(128) in_block_b(void) { }
static __device__ int dev(int y) { return y; }
}

extern "C" __global__ void no_params() { }
extern "C" __global__ void multi_line(int* x) { } // duplicate definition: first one wins
"#;
        let sigs = parse_kernel_signatures(src);
        let names: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["multi_line", "in_block_a", "in_block_b", "no_params"]
        );
        use ParamKind::*;
        use ScalarType::*;
        let p = &sigs[0].params;
        assert_eq!(p.len(), 20, "{p:?}");
        assert_eq!(p[0], Pointer { is_const: true });
        assert_eq!(p[1], Pointer { is_const: false });
        assert_eq!(p[2], Scalar(I32));
        assert_eq!(p[3], Scalar(I64));
        assert_eq!(p[4], Scalar(U32));
        assert_eq!(p[5], Scalar(U64));
        assert_eq!(
            &p[6..10],
            &[Scalar(I64), Scalar(U32), Scalar(U64), Scalar(I32)]
        );
        assert_eq!(p[10], Scalar(U64));
        assert_eq!(p[11], Scalar(U32));
        assert_eq!(p[12], Scalar(I64));
        assert!(
            matches!(&p[13], Other(t) if t == "float alpha"),
            "{:?}",
            p[13]
        );
        assert_eq!(p[14], Pointer { is_const: true });
        assert_eq!(p[15], Pointer { is_const: true });
        assert_eq!(p[16], Pointer { is_const: false });
        assert_eq!(p[17], Pointer { is_const: false });
        assert_eq!(p[18], Scalar(U64));
        assert!(matches!(&p[19], Other(_)), "{:?}", p[19]);
        assert_eq!(
            sigs[1].params,
            vec![Pointer { is_const: false }, Scalar(I32)]
        );
        assert!(sigs[2].params.is_empty());
        assert!(sigs[3].params.is_empty());
    }

    #[test]
    fn signature_parsing_edge_cases() {
        assert!(parse_kernel_signatures("").is_empty());
        assert!(parse_kernel_signatures("extern \"C\" __global__").is_empty());
        assert!(parse_kernel_signatures("extern \"C\" __global__ void k(int a").is_empty());
        assert!(parse_kernel_signatures("/* unterminated").is_empty());
        assert!(parse_kernel_signatures("\"unterminated").is_empty());
        assert!(parse_kernel_signatures("}}}} extern \"C\" { {{").is_empty());
        let sigs =
            parse_kernel_signatures("extern \"C\" __global__ void k(unsigned, long long) {}");
        assert_eq!(
            sigs[0].params,
            vec![
                ParamKind::Scalar(ScalarType::U32),
                ParamKind::Scalar(ScalarType::I64)
            ]
        );
        let sigs = parse_kernel_signatures("extern \"C\" __global__ void k(int x, float* y) {");
        assert_eq!(sigs.len(), 1);
        let sigs =
            parse_kernel_signatures("extern \"C\" __global__ void k(int x, void (*fp)(int)) {}");
        assert!(matches!(sigs[0].params[1], ParamKind::Other(_)));
        let sigs = parse_kernel_signatures(
            "namespace ns { extern \"C\" __global__ void inner(const double *__restrict__ p) {} }",
        );
        assert_eq!(sigs[0].name, "inner");
        assert_eq!(sigs[0].params, vec![ParamKind::Pointer { is_const: true }]);
    }

    #[test]
    fn docs_example_resolves_as_documented() {
        let doc = include_str!("../../../docs/launch-plan.md");
        let block = |fence: &str| -> String {
            let start = doc.find(fence).map(|i| i + fence.len()).unwrap_or(0);
            let len = doc[start..].find("```").unwrap_or(0);
            doc[start..start + len].to_string()
        };
        let plan = parse(&block("```toml\n")).unwrap();
        let sigs = parse_kernel_signatures(&block("```cuda\n"));
        plan.check_against(&sigs, &buffers()).unwrap();
        let r = plan
            .resolve(&n(100_000_000), &buffers(), &PlanLimits::default())
            .unwrap();
        assert_eq!(r.scratch[0].len, 24_415);
        assert_eq!(r.scratch[0].bytes(), 97_660);
        assert_eq!(r.launches[0].grid, [24_415, 1, 1]);
        assert_eq!(r.launches[0].shared_mem_bytes, 1024);
        assert_eq!(r.launches[1].args[2], ResolvedArg::I64(100_000_000));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_plan_text_never_panics(s in "[\\[\\]a-z0-9_=\" \n,:*+-]{0,80}") {
            if let Ok(plan) = LaunchPlan::parse(&s, Path::new("p.toml")) {
                let _ = plan.resolve(&n(3), &buffers(), &PlanLimits::default());
                let _ = plan.check_against(&parse_kernel_signatures(GOOD_CU), &buffers());
            }
        }

        #[test]
        fn arbitrary_cuda_text_never_panics(s in "[a-z_ \n(){};,*/\"'#\\\\]{0,120}") {
            let _ = parse_kernel_signatures(&s);
            let _ = parse_kernel_signatures(&format!("extern \"C\" __global__ void k({s}) {{}}"));
        }
    }
}
