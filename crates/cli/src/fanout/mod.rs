//! `rdbench fanout`: scoring many submissions on a scheduler the operator already runs. A
//! [`manifest`] lists the jobs; `fanout slurm` writes an `sbatch` array script ([`slurm`]),
//! `fanout k8s` a Kubernetes Indexed Job ([`k8s`]); each array element or pod runs
//! `rdbench score-job --manifest M --index N --results DIR` (`commands/score_job.rs`), which
//! scores job `N` once and writes `DIR/N.json`; `rdbench aggregate DIR` reads them all.
//!
//! Both schedulers get the same command line ([`score_job_command`]). `score-job` exits 1 for
//! an invalid submission, which is a result, not a failed job: the generated wrappers turn it
//! into success, so only 2 (usage: retrying cannot help) and 3 (environment: a retry may) are
//! failures the scheduler sees.

pub mod archive;
pub mod k8s;
pub mod manifest;
pub mod slurm;

use std::path::{Path, PathBuf};

use rdbench_core::{Error, Result};

use crate::commands::Context;
use manifest::Manifest;

/// `rdbench fanout`.
#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    #[command(subcommand)]
    pub target: Target,
}

#[derive(clap::Subcommand, Debug)]
pub enum Target {
    /// An sbatch array script: one array element per manifest job.
    Slurm(slurm::SlurmArgs),
    /// A Kubernetes Indexed Job (JSON, which kubectl reads as it reads YAML): one completion
    /// index per manifest job.
    K8s(k8s::K8sArgs),
}

/// Options both schedulers share.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// The manifest: JSON lines, the first `{"rdbench_manifest": 1}`, then one job per line:
    /// `{"task": T, "profile": P, "submission": FOLDER, "seed": N, "agent": A, "label": L}`
    /// (profile, seed, agent and label optional; a relative FOLDER is relative to the
    /// manifest's folder).
    pub manifest: PathBuf,
    /// The results folder, as the jobs see it: `INDEX.json` per job.
    #[arg(long)]
    pub results: PathBuf,
    /// At most this many jobs at once (sbatch's `%K`, the Job's parallelism) [default: all].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_running: Option<u32>,
    /// GPUs per job, for manifests with a GPU profile (a CPU-only manifest asks for none).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub gpus_per_job: u32,
    /// CPUs per job.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: Option<u32>,
    /// Memory per job, GiB.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub mem: Option<u32>,
    /// Write here instead of stdout (replaced atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Common {
    /// GPUs each job asks for: none for a CPU-only manifest, so it is submittable where no
    /// GPU exists.
    fn gpus(&self, manifest: &Manifest) -> Option<u32> {
        manifest.needs_gpu.then_some(self.gpus_per_job)
    }
}

/// Runs `fanout`.
pub fn run(ctx: &Context, args: &FanoutArgs, home: Option<&Path>) -> Result<i32> {
    let (common, text, manifest) = match &args.target {
        Target::Slurm(a) => {
            let manifest = Manifest::load(&a.common.manifest)?;
            let text = slurm::script(a, &manifest, home)?.render();
            // Each element's log goes there: slurmd fails a job whose log it cannot open.
            rdbench_core::fsutil::create_private_dir_all(&a.common.results)?;
            (&a.common, text, manifest)
        }
        Target::K8s(a) => {
            let manifest = Manifest::load(&a.common.manifest)?;
            let text = k8s::job_json(a, &manifest)?;
            (&a.common, text, manifest)
        }
    };
    match &common.out {
        None if ctx.json => ctx.out.json(&serde_json::json!({
            "text": text, "jobs": manifest.jobs.len(), "needs_gpu": manifest.needs_gpu,
        })),
        None => print!("{text}"),
        Some(out) => {
            rdbench_core::fsutil::atomic_write(out, text.as_bytes())?;
            let what = format!(
                "{} jobs{}",
                manifest.jobs.len(),
                if manifest.needs_gpu {
                    ", GPU"
                } else {
                    ", CPU only"
                }
            );
            if ctx.json {
                ctx.out.json(&serde_json::json!({
                    "written": out, "jobs": manifest.jobs.len(), "needs_gpu": manifest.needs_gpu,
                }));
            } else {
                say!(ctx, "wrote {} ({what})", out.display());
            }
        }
    }
    Ok(0)
}

/// The words of `rdbench score-job` for one job; `index` is the scheduler's variable, left to
/// the shell (`"$VAR"`), every other word quoted.
pub fn score_job_command(
    rdbench: &Path,
    home: Option<&Path>,
    manifest: &Path,
    results: &Path,
    index_var: &str,
) -> Result<String> {
    let mut words: Vec<String> = vec![path_word(rdbench)?];
    if let Some(home) = home {
        words.extend(["--home".into(), path_word(home)?]);
    }
    words.extend([
        "score-job".into(),
        "--manifest".into(),
        path_word(manifest)?,
        "--results".into(),
        path_word(results)?,
        "--index".into(),
        format!("\"${index_var}\""),
    ]);
    Ok(words.join(" "))
}

/// `command`, with an invalid submission's exit code 1 (a result was written) turned into 0.
pub fn invalid_is_done(command: &str) -> String {
    format!("{command}; code=$?; if [ \"$code\" -eq 1 ]; then exit 0; fi; exit \"$code\"")
}

/// A path as one shell word (a path that cannot be one, with a NUL, is a usage error).
fn path_word(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| {
        Error::Usage(format!(
            "{}: not UTF-8, cannot be put in a job script",
            path.display()
        ))
    })?;
    shlex::try_quote(text)
        .map(|q| q.into_owned())
        .map_err(|e| Error::Usage(format!("{text}: {e}")))
}

/// This binary, as the jobs run it: the cluster sees it at the same path (a shared folder).
fn this_binary() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| Error::Environment(format!("this binary's path: {e}")))
}

/// `path` made absolute against the current folder (jobs start elsewhere).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}
