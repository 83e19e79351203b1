//! `fanout slurm`: an `sbatch` array script, one array element per manifest job, each running
//! `rdbench score-job ... --index "$SLURM_ARRAY_TASK_ID"`.
//!
//! The script is built as a typed value ([`SbatchScript`]: the directives as fields) and
//! rendered in one function. It is the project's own small builder: no maintained crate
//! models sbatch directives, and the script is a handful of `#SBATCH` lines and one command;
//! typed fields keep a value out of the wrong directive, and rendering in one place quotes
//! every word and refuses a value that would end its line.

use std::path::{Path, PathBuf};

use rdbench_core::{Error, Result};

use super::manifest::Manifest;
use super::{absolute, invalid_is_done, score_job_command, this_binary, Common};

/// `rdbench fanout slurm`.
#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub common: Common,
    /// The partition to submit to [default: the cluster's].
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per job, minutes [default: the partition's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub time: Option<u32>,
    /// The rdbench binary the jobs run (a path every node sees) [default: this binary].
    #[arg(long)]
    pub rdbench: Option<PathBuf>,
}

/// An sbatch array script: its directives and the one command each element runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SbatchScript {
    pub job_name: String,
    /// `--array=0-(jobs-1)`, with `%max_running` where given.
    pub jobs: usize,
    pub max_running: Option<u32>,
    pub partition: Option<String>,
    pub time_minutes: Option<u32>,
    /// `--gres=gpu:N`; none for a CPU-only manifest.
    pub gpus: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub mem_gib: Option<u32>,
    /// `--output`: each element's log (`%A` the array's id, `%a` the index).
    pub output: String,
    /// The shell command line each element runs.
    pub command: String,
}

impl SbatchScript {
    /// The script's text.
    pub fn render(&self) -> String {
        let mut array = format!("0-{}", self.jobs - 1);
        if let Some(k) = self.max_running {
            array.push_str(&format!("%{k}"));
        }
        let mut directives = vec![
            format!("--job-name={}", self.job_name),
            format!("--array={array}"),
            "--ntasks=1".to_string(),
            format!("--output={}", self.output),
        ];
        let optional = [
            self.partition.as_ref().map(|p| format!("--partition={p}")),
            self.time_minutes.map(|t| format!("--time={t}")),
            self.gpus.map(|g| format!("--gres=gpu:{g}")),
            self.cpus_per_task.map(|c| format!("--cpus-per-task={c}")),
            self.mem_gib.map(|m| format!("--mem={m}G")),
        ];
        directives.extend(optional.into_iter().flatten());
        let mut text = String::from("#!/bin/bash\n");
        text.push_str("# Written by `rdbench fanout slurm`: one array element per manifest job.\n");
        for d in directives {
            text.push_str(&format!("#SBATCH {d}\n"));
        }
        text.push_str(
            "# score-job exits 1 for an invalid submission, whose result it wrote: a done job.\n",
        );
        text.push_str(&invalid_is_done(&self.command));
        text.push('\n');
        text
    }
}

/// The script for `manifest`.
pub fn script(args: &SlurmArgs, manifest: &Manifest, home: Option<&Path>) -> Result<SbatchScript> {
    let common = &args.common;
    if let Some(p) = &args.partition {
        directive_value("--partition", p)?;
    }
    let results = absolute(&common.results)?;
    let rdbench = match &args.rdbench {
        Some(p) => absolute(p)?,
        None => this_binary()?,
    };
    let home = home.map(absolute).transpose()?;
    let output = directive_value(
        "--results",
        &results.join("slurm-%A_%a.out").display().to_string(),
    )?;
    let name = manifest
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(SbatchScript {
        job_name: directive_value("the manifest's name", &format!("rdbench-{name}"))?,
        jobs: manifest.jobs.len(),
        max_running: common.max_running,
        partition: args.partition.clone(),
        time_minutes: args.time,
        gpus: common.gpus(manifest),
        cpus_per_task: common.cpus,
        mem_gib: common.mem,
        output,
        command: score_job_command(
            &rdbench,
            home.as_deref(),
            &absolute(&common.manifest)?,
            &results,
            "SLURM_ARRAY_TASK_ID",
        )?,
    })
}

/// A directive's value: sbatch reads `#SBATCH` lines word by word, so a value with white
/// space or a quote would be cut or end its line.
fn directive_value(what: &str, value: &str) -> Result<String> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || "'\"#\\".contains(c))
    {
        return Err(Error::Usage(format!(
            "{what}: {value:?} cannot be an #SBATCH value (no spaces, quotes or '#')"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SbatchScript {
        SbatchScript {
            job_name: "rdbench-m".into(),
            jobs: 3,
            max_running: Some(2),
            partition: Some("gpu".into()),
            time_minutes: Some(30),
            gpus: Some(1),
            cpus_per_task: Some(4),
            mem_gib: Some(16),
            output: "/r/slurm-%A_%a.out".into(),
            command: "/bin/rdbench score-job --index \"$SLURM_ARRAY_TASK_ID\"".into(),
        }
    }

    #[test]
    fn renders_every_directive_and_the_command() {
        let text = example().render();
        for line in [
            "#!/bin/bash\n",
            "#SBATCH --array=0-2%2\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --time=30\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --mem=16G\n",
            "#SBATCH --output=/r/slurm-%A_%a.out\n",
            "/bin/rdbench score-job --index \"$SLURM_ARRAY_TASK_ID\"; code=$?;",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn a_cpu_script_asks_for_no_gpu_and_no_options_it_was_not_given() {
        let text = SbatchScript {
            max_running: None,
            partition: None,
            time_minutes: None,
            gpus: None,
            cpus_per_task: None,
            mem_gib: None,
            ..example()
        }
        .render();
        assert!(text.contains("#SBATCH --array=0-2\n"), "{text}");
        for absent in ["gres", "partition", "--time", "cpus-per-task", "--mem"] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn values_that_would_break_a_directive_are_refused() {
        for bad in ["", "a b", "a\nb", "a#b", "a'b"] {
            assert!(directive_value("--partition", bad).is_err(), "{bad:?}");
        }
        assert!(directive_value("--partition", "gpu-a100").is_ok());
    }
}
