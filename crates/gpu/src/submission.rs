//! Kernel submissions (`solution.cu` + `launch.toml`): loaded, checked without a GPU, and
//! compile-checked with NVRTC when it is present. Shared by every kernel task, so that a task
//! crate only names its buffers and problem sizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::nvrtc::{self, CompileOptions};
use crate::plan::{
    parse_kernel_signatures, BufferSpec, KernelSignature, LaunchPlan, PlanError, PlanLimits,
    ResolvedPlan,
};
use crate::{GpuError, GpuResult};

/// The device code file of a kernel submission.
pub const SOURCE_FILE: &str = "solution.cu";
/// The launch plan file of a kernel submission.
pub const PLAN_FILE: &str = "launch.toml";
/// Longest an NVRTC compile of a submission may take in the checks.
pub const COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Largest accepted file of a submission, bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Why a kernel submission is invalid. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("{}: missing (a kernel submission is {SOURCE_FILE} plus {PLAN_FILE})", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{}: {why}", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("{}:{line}: {what}", path.display())]
    Rule {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Compile(GpuError),
}

impl SubmissionError {
    /// The kind of invalid entry this error makes.
    pub fn invalid_kind(&self) -> rdbench_core::outcome::InvalidKind {
        use rdbench_core::outcome::InvalidKind;
        match self {
            SubmissionError::Missing { .. } => InvalidKind::MissingFile,
            SubmissionError::TooLarge { .. } => InvalidKind::TooLarge,
            SubmissionError::NotText { .. } => InvalidKind::NotText,
            SubmissionError::Unreadable { .. } => InvalidKind::MissingFile,
            SubmissionError::Rule { .. } => InvalidKind::RuleViolation,
            SubmissionError::Plan(_) => InvalidKind::Plan,
            // A compile that hit a resource limit is `resource_limit`, the rest `compile`.
            SubmissionError::Compile(e) => e.invalid_kind().unwrap_or(InvalidKind::Compile),
        }
    }
}

/// A loaded submission.
#[derive(Debug, Clone)]
pub struct KernelSubmission {
    pub dir: PathBuf,
    pub source: String,
    pub plan: LaunchPlan,
    pub signatures: Vec<KernelSignature>,
}

/// Result of an NVRTC compile check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileCheck {
    /// Compiled for every listed architecture.
    Compiled { archs: Vec<u32> },
    /// NVRTC is not installed here; nothing was compiled.
    Skipped { reason: String },
}

fn read_text(path: &Path) -> Result<String, SubmissionError> {
    use rdbench_core::fsutil::{read_untrusted, UntrustedReadError as E};
    let bytes = read_untrusted(path, MAX_FILE_BYTES).map_err(|e| match e {
        E::TooLarge { size, .. } => SubmissionError::TooLarge {
            path: path.into(),
            size,
        },
        E::NotFound => SubmissionError::Missing { path: path.into() },
        other => SubmissionError::Unreadable {
            path: path.into(),
            why: other.to_string(),
        },
    })?;
    String::from_utf8(bytes).map_err(|_| SubmissionError::NotText { path: path.into() })
}

impl KernelSubmission {
    /// Reads and parses `dir/solution.cu` and `dir/launch.toml`, and checks the plan's kernels
    /// and arguments against the signatures declared in the source.
    pub fn load(dir: &Path, buffers: &[BufferSpec]) -> Result<Self, SubmissionError> {
        let source_path = dir.join(SOURCE_FILE);
        let plan_path = dir.join(PLAN_FILE);
        let source = read_text(&source_path)?;
        crate::source_rules::check(&source).map_err(|v| SubmissionError::Rule {
            path: source_path.clone(),
            line: v.line,
            what: v.what,
        })?;
        let plan_text = read_text(&plan_path)?;
        let plan = LaunchPlan::parse(&plan_text, &plan_path)?;
        let signatures = parse_kernel_signatures(&source);
        plan.check_against(&signatures, buffers)?;
        Ok(KernelSubmission {
            dir: dir.into(),
            source,
            plan,
            signatures,
        })
    }

    /// Resolves the plan for problem size `n` (tasks with the single size variable `n`).
    pub fn resolve(
        &self,
        n: i64,
        buffers: &[BufferSpec],
        limits: &PlanLimits,
    ) -> Result<ResolvedPlan, SubmissionError> {
        self.resolve_vars(&BTreeMap::from([("n".to_string(), n)]), buffers, limits)
    }

    /// Resolves the plan for the size variables `vars` (`n`, or `m`, `n`, `k`...).
    pub fn resolve_vars(
        &self,
        vars: &BTreeMap<String, i64>,
        buffers: &[BufferSpec],
        limits: &PlanLimits,
    ) -> Result<ResolvedPlan, SubmissionError> {
        Ok(self.plan.resolve(vars, buffers, limits)?)
    }

    /// Resolves the plan for every size the scorer will run, so a size error surfaces before
    /// any GPU work.
    pub fn check_sizes(
        &self,
        sizes: &[i64],
        buffers: &[BufferSpec],
        limits: &PlanLimits,
    ) -> Result<(), SubmissionError> {
        for &n in sizes {
            self.resolve(n, buffers, limits)?;
        }
        Ok(())
    }

    /// Compiles the source with NVRTC for each architecture, when NVRTC is installed, where
    /// [`nvrtc::isolation`] says. In a limited child, the child's limits stop a template bomb
    /// (`resource_limit`). In this process, a compile that outlasts [`COMPILE_TIMEOUT`] is an
    /// invalid submission; it is left running on its thread, which dies with the short-lived
    /// scoring process.
    pub fn compile_check(
        &self,
        archs: &[u32],
        cache_dir: Option<&Path>,
    ) -> Result<CompileCheck, SubmissionError> {
        if let Err(e) = crate::probe::require_nvrtc() {
            return Ok(CompileCheck::Skipped {
                reason: e.to_string(),
            });
        }
        let name = self.dir.join(SOURCE_FILE).display().to_string();
        for &arch in archs {
            let mut opts = CompileOptions::cubin(arch);
            opts.cache_dir = cache_dir.map(Path::to_path_buf);
            let result = if nvrtc::isolation().is_child() {
                nvrtc::compile(&self.source, &name, &opts).map(|_| ())
            } else {
                compile_on_thread(&self.source, &name, opts)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.is_submission_fault() => return Err(SubmissionError::Compile(e)),
                // The machine's problem (the compile child would not run): not the
                // submission's; the worker's own compile reports it as an environment error.
                Err(e) => {
                    return Ok(CompileCheck::Skipped {
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(CompileCheck::Compiled {
            archs: archs.to_vec(),
        })
    }
}

/// An in-process compile on a thread with room for the compiler's recursion, abandoned after
/// [`COMPILE_TIMEOUT`].
fn compile_on_thread(source: &str, name: &str, opts: CompileOptions) -> GpuResult {
    let (source, file, arch) = (source.to_string(), name.to_string(), opts.arch);
    let (tx, rx) = std::sync::mpsc::channel();
    // A compiler parses recursively: give it room (virtual; only what it touches is
    // committed), besides the nesting limit the source rules already enforce.
    std::thread::Builder::new()
        .name("nvrtc-check".into())
        .stack_size(256 << 20)
        .spawn(move || {
            let _ = tx.send(nvrtc::compile(&source, &file, &opts).map(|_| ()));
        })
        .map_err(|e| GpuError::NoNvrtc(format!("starting the compile thread: {e}")))?;
    rx.recv_timeout(COMPILE_TIMEOUT).unwrap_or_else(|_| {
        Err(GpuError::Compile {
            name: name.to_string(),
            options: format!("sm_{arch}"),
            log: format!(
                "compilation took longer than {} s and was abandoned",
                COMPILE_TIMEOUT.as_secs()
            ),
        })
    })
}
