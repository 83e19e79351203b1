//! `rdbench export task-standard TASK --out DIR`: a METR Task Standard family for one rdbench
//! task, so that Vivaria, METR's Inspect bridge or any Task Standard driver can run an agent on
//! it while rdbench's protected service keeps the scoring.
//!
//! The family is a folder `DIR/rdbench_<task>/` holding
//! - `rdbench_<task>.py`: the module a driver imports. Its `TaskFamily` is made by
//!   `rdbench_task_standard.family_class` from the family's spec, `rdbench_family.json`, written
//!   from the typed [`FamilySpec`]: one Task Standard task per profile of the rdbench task;
//! - `rdbench_task_standard.py`: the runtime every exported family shares (this folder's
//!   `rdbench_task_standard.py`, the project's own code: it maps the Task Standard's methods onto
//!   `rdbench-client` calls);
//! - `manifest.yaml`: each task's resources (GPU, CPUs, memory) and scoring settings, from the
//!   typed [`Manifest`].
//!
//! Who runs what: a driver runs the family's methods as root, so they are the *platform*. `start`
//! asks the service to start an attempt owned by the agent's user and keeps its id in a file only
//! root can read; `intermediate_score` scores that attempt by id; `aggregate_scores` and `score`
//! finish it (rdbench's own log and seal decide the final score, not the driver's copy of the
//! scores). Nothing of rdbench's scorer, home or reference solutions is in the family: the agent
//! can read the family's files and learns only the socket's path and the agent's user name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use rdbench_core::task::TaskInfo;
use rdbench_core::{Error, Result};

use super::Context;

/// The runtime module every exported family imports.
const RUNTIME: &str = include_str!("rdbench_task_standard.py");
const RUNTIME_NAME: &str = "rdbench_task_standard.py";
/// The family's [`FamilySpec`], beside its module.
const SPEC_NAME: &str = "rdbench_family.json";
/// The Task Standard version the families declare (their methods and manifest follow it).
const STANDARD_VERSION: &str = "0.5.0";

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// A METR Task Standard family for one task: one Task Standard task per profile, its
    /// methods calling the protected scoring service through `rdbench-client`.
    TaskStandard(TaskStandardArgs),
}

#[derive(Debug, Args)]
pub struct TaskStandardArgs {
    /// The rdbench task (`rdbench list`).
    pub task: String,
    /// The family is written to OUT/rdbench_<task>/ (made, or an earlier export replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these profiles [default: all of the task's].
    #[arg(long)]
    pub profile: Vec<String>,
    /// The scoring service's socket in the task environment.
    #[arg(long, default_value = "/run/rdbench/score.sock")]
    pub service_socket: PathBuf,
    /// The client in the task environment.
    #[arg(long, default_value = "/usr/local/bin/rdbench-client")]
    pub client: PathBuf,
    /// The agent's Unix user (the attempt's owner).
    #[arg(long, default_value = "agent")]
    pub agent_user: String,
    /// The attempt's folder in the task environment (made by the service's `start`).
    #[arg(long, default_value = "/home/agent/attempt")]
    pub attempt_dir: PathBuf,
    /// Where `start` keeps the attempt's id, readable by root only.
    #[arg(long, default_value = "/root/.rdbench-task-standard")]
    pub state_dir: PathBuf,
    /// CPUs each task asks for in the manifest.
    #[arg(long, default_value_t = 4)]
    pub cpus: u32,
    /// Memory each task asks for in the manifest, GB.
    #[arg(long, default_value_t = 16)]
    pub memory_gb: u32,
    /// The GPU model a GPU profile asks for in the manifest.
    #[arg(long, default_value = "h100")]
    pub gpu_model: String,
}

/// What the runtime module needs to know of the family: written into `rdbench_<task>.py` as
/// JSON.
#[derive(Debug, Serialize)]
pub struct FamilySpec {
    pub standard_version: &'static str,
    pub rdbench_task: String,
    pub client: PathBuf,
    pub socket: PathBuf,
    pub agent_user: String,
    pub attempt_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Whether the task hides scores from the agent (intermediate scores then carry none).
    pub score_hidden: bool,
    /// The task's limit for one scoring run, seconds (the client's wait is this and the
    /// service's queue).
    pub score_timeout_s: u64,
    pub tasks: BTreeMap<String, FamilyTask>,
}

/// One Task Standard task: one profile of the rdbench task.
#[derive(Debug, Serialize)]
pub struct FamilyTask {
    pub profile: String,
    pub needs_gpu: bool,
    pub time_limit_minutes: u32,
    pub instructions: String,
}

/// `manifest.yaml`, as the Task Standard reads it.
#[derive(Debug, Serialize)]
pub struct Manifest {
    pub tasks: BTreeMap<String, ManifestTask>,
}

#[derive(Debug, Serialize)]
pub struct ManifestTask {
    pub version: String,
    pub resources: Resources,
    pub scoring: ScoringSettings,
}

#[derive(Debug, Serialize)]
pub struct Resources {
    pub cpus: u32,
    pub memory_gb: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuSpec>,
}

#[derive(Debug, Serialize)]
pub struct GpuSpec {
    pub count_range: [u32; 2],
    pub model: String,
}

#[derive(Debug, Serialize)]
pub struct ScoringSettings {
    /// Whether the driver may show intermediate scores to the agent (never for hidden-score
    /// tasks).
    pub visible_to_agent: bool,
    /// Score a run that ended on a usage limit too: the attempt's best entry stands.
    pub score_on_usage_limits: bool,
    pub intermediate: bool,
}

pub fn run(ctx: &Context, command: &ExportCommand) -> Result<i32> {
    match command {
        ExportCommand::TaskStandard(args) => task_standard(ctx, args),
    }
}

/// The family's folder and module name: `rdbench_` and the task's name in snake case (the
/// standard asks for snake case).
pub fn family_name(task: &str) -> String {
    format!("rdbench_{}", task.replace('-', "_"))
}

fn task_standard(ctx: &Context, args: &TaskStandardArgs) -> Result<i32> {
    let task = crate::registry::find(&args.task)?;
    let info = task.info();
    let profiles = chosen_profiles(&info, &args.profile)?;
    if args.agent_user.is_empty()
        || !args
            .agent_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(Error::Usage(format!(
            "--agent-user {:?}: a Unix user name (letters, digits, '_', '-', '.')",
            args.agent_user
        )));
    }
    for (flag, path) in [
        ("--service-socket", &args.service_socket),
        ("--client", &args.client),
        ("--attempt-dir", &args.attempt_dir),
        ("--state-dir", &args.state_dir),
    ] {
        if !path.is_absolute() {
            return Err(Error::Usage(format!(
                "{flag} {}: a path in the task environment must be absolute",
                path.display()
            )));
        }
    }
    let name = family_name(&info.name);
    let dir = args.out.join(&name);
    // Exporting again replaces an earlier export (its spec file says it is one); any other
    // folder of that name is someone else's.
    if dir.exists() && !dir.join(SPEC_NAME).is_file() {
        return Err(Error::Usage(format!(
            "{}: already exists and is not an exported family; export into another folder",
            dir.display()
        )));
    }
    let spec = family_spec(&info, args, &profiles);
    let manifest = manifest(&info, args, &profiles);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write(
        &dir.join(format!("{name}.py")),
        &family_module(&name, &info.name),
    )?;
    write(&dir.join(SPEC_NAME), &to_json(&spec)?)?;
    write(&dir.join(RUNTIME_NAME), RUNTIME)?;
    write(&dir.join("manifest.yaml"), &manifest_yaml(&manifest)?)?;
    if ctx.json {
        crate::output::json(&serde_json::json!({
            "family": name,
            "dir": dir,
            "tasks": spec.tasks.keys().collect::<Vec<_>>(),
        }));
    } else {
        say!(
            ctx,
            "wrote the Task Standard family {name} ({} task(s): {}) to {}",
            spec.tasks.len(),
            spec.tasks.keys().cloned().collect::<Vec<_>>().join(", "),
            dir.display()
        );
    }
    Ok(0)
}

fn chosen_profiles<'a>(
    info: &'a TaskInfo,
    wanted: &[String],
) -> Result<Vec<&'a rdbench_core::task::ProfileInfo>> {
    if wanted.is_empty() {
        return Ok(info.profiles.iter().collect());
    }
    wanted.iter().map(|p| info.profile(p)).collect()
}

fn family_spec(
    info: &TaskInfo,
    args: &TaskStandardArgs,
    profiles: &[&rdbench_core::task::ProfileInfo],
) -> FamilySpec {
    let tasks = profiles
        .iter()
        .map(|p| {
            let family_task = FamilyTask {
                profile: p.name.clone(),
                needs_gpu: p.needs_gpu,
                time_limit_minutes: info.default_time_limit_minutes,
                instructions: instructions(info, p, args),
            };
            (p.name.clone(), family_task)
        })
        .collect();
    FamilySpec {
        standard_version: STANDARD_VERSION,
        rdbench_task: info.name.clone(),
        client: args.client.clone(),
        socket: args.service_socket.clone(),
        agent_user: args.agent_user.clone(),
        attempt_dir: args.attempt_dir.clone(),
        state_dir: args.state_dir.clone(),
        score_hidden: info.score_hidden,
        score_timeout_s: info.score_timeout_s,
        tasks,
    }
}

/// What the driver shows the agent before the attempt exists: where the attempt will be and
/// how to score it. The attempt's own `INSTRUCTIONS.md`, written by `start`, has the details.
fn instructions(
    info: &TaskInfo,
    profile: &rdbench_core::task::ProfileInfo,
    args: &TaskStandardArgs,
) -> String {
    let dir = args.attempt_dir.display();
    let client = args.client.display();
    let socket = args.service_socket.display();
    let scores = if info.score_hidden {
        "This task hides its scores: `score` records each submission and tells you only \
         whether it was valid; the last valid one counts."
    } else {
        "The best valid score counts."
    };
    format!(
        "# {title} (rdbench task `{task}`, profile `{profile}`)\n\n{summary}\n\n\
         Your attempt's folder is `{dir}`. Read `{dir}/INSTRUCTIONS.md` first: it says what to \
         change and what the scorer checks. You have {minutes} minutes.\n\n\
         Score your current submission as often as you like with\n\n    \
         {client} --socket {socket} score {dir}\n\n\
         and read your scores with `{client} --socket {socket} log {dir}`. {scores} The scorer \
         runs as its own user; nothing in your folder can change how it scores.\n",
        title = info.title,
        task = info.name,
        profile = profile.name,
        summary = info.summary,
        minutes = info.default_time_limit_minutes,
    )
}

fn manifest(
    info: &TaskInfo,
    args: &TaskStandardArgs,
    profiles: &[&rdbench_core::task::ProfileInfo],
) -> Manifest {
    let tasks = profiles
        .iter()
        .map(|p| {
            let gpu = p.needs_gpu.then(|| GpuSpec {
                count_range: [1, 1],
                model: args.gpu_model.clone(),
            });
            let task = ManifestTask {
                version: format!("rdbench {} {}", env!("CARGO_PKG_VERSION"), info.name),
                resources: Resources {
                    cpus: args.cpus,
                    memory_gb: args.memory_gb,
                    gpu,
                },
                scoring: ScoringSettings {
                    visible_to_agent: !info.score_hidden,
                    score_on_usage_limits: true,
                    intermediate: true,
                },
            };
            (p.name.clone(), task)
        })
        .collect();
    Manifest { tasks }
}

/// The family's module: it reads the spec beside it and makes the class.
fn family_module(name: &str, task: &str) -> String {
    format!(
        "\"\"\"METR Task Standard family {name}: rdbench's task `{task}`, scored by rdbench's \
         protected service.\n\nWritten by `rdbench export task-standard {task}` (rdbench {version}) \
         with {SPEC_NAME}; export again rather than edit.\n\"\"\"\n\n\
         import json\nimport pathlib\n\n\
         from rdbench_task_standard import family_class\n\n\
         SPEC = json.loads(pathlib.Path(__file__).with_name(\"{SPEC_NAME}\").read_text(encoding=\"utf-8\"))\n\n\
         TaskFamily = family_class(SPEC)\n",
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// YAML is a superset of JSON: the manifest is written in YAML's flow style (JSON), which every
/// YAML reader takes, with no YAML writer to depend on.
fn manifest_yaml(manifest: &Manifest) -> Result<String> {
    Ok(format!(
        "# METR Task Standard manifest, written by rdbench export (YAML flow style).\n{}",
        to_json(manifest)?
    ))
}

fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|json| json + "\n")
        .map_err(|e| Error::Internal(e.to_string()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
