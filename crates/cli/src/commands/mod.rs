//! The subcommands. Each takes the validated [`Context`] and returns the process exit code.

mod admission;
mod attempt;
mod calibrate;
mod catalog;
mod check_task;
mod cycle;
mod doctor;
pub mod export;
mod glance;
pub mod llm_proxy;
mod monitor;
pub mod score_job;
mod serve;
pub mod serve_llm;

use std::path::PathBuf;

use rdbench_core::calibration::{
    CalibrationEntry, CalibrationSource, CalibrationStore, DeviceFingerprint, Disagreement,
};
use rdbench_core::home::Home;
use rdbench_core::task::{ProfileInfo, Task, TaskInfo};
use rdbench_core::{Error, Result};

use crate::cli::{Cli, Command};
use crate::output::Out;

/// What same-user mode says on every attempt command, so nobody mistakes it for protection.
pub const UNPROTECTED_NOTE: &str =
    "rdbench: unprotected mode: anything you run can change your scores (README, \"Protected scoring\")";

pub use rdbench_attempts::Caller;

/// Settings every command shares, validated from the flags.
pub struct Context {
    pub home: Home,
    pub json: bool,
    pub out: Out,
    pub caller: Caller,
}

impl Context {
    pub fn from_cli(cli: &Cli) -> Self {
        let home = cli
            .home
            .clone()
            .map(Home::new)
            .unwrap_or_else(Home::from_env);
        Context {
            home,
            json: cli.json,
            out: Out::terminal(),
            caller: Caller::Local,
        }
    }

    /// This command as the attempt library sees it: `host` supplies the binary's parts,
    /// `rights` says what the caller may do.
    pub fn attempts<'a>(
        &'a self,
        host: &'a dyn rdbench_attempts::Host,
        rights: rdbench_attempts::Rights,
    ) -> rdbench_attempts::Ctx<'a> {
        rdbench_attempts::Ctx {
            home: &self.home,
            json: self.json,
            out: &self.out,
            caller: self.caller,
            rights,
            host,
        }
    }

    /// Calibrations measured here, then those shipped in the repository's `calibration/`.
    pub fn calibration_store(&self) -> CalibrationStore {
        CalibrationStore::new(self.home.calibration_dir()).with_shipped(shipped_calibration_dir())
    }
}

/// A folder of the checkout the binary sits in (`target/<profile>/rdbench` or a bundle folder
/// beside the repository root), else of the checkout it was built from.
pub fn checkout_dir(name: &str) -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(3) {
            let candidate = up.join(name);
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(name)
}

/// Calibrations committed to the repository (e.g. measured on an H100 by the GPU check).
/// `$RDBENCH_SHIPPED_CALIBRATION`, else `calibration/` of the checkout the binary sits in
/// (`target/<profile>/rdbench` or a bundle folder beside the repository root), else the
/// checkout it was built from.
pub fn shipped_calibration_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RDBENCH_SHIPPED_CALIBRATION") {
        return PathBuf::from(dir);
    }
    checkout_dir("calibration")
}

/// The device a task's scores are measured on: the GPU for GPU tasks, the CPU otherwise.
pub fn device_fingerprint(info: &TaskInfo, profile: &ProfileInfo) -> Result<DeviceFingerprint> {
    if info.hardware_independent || !profile.needs_gpu {
        return Ok(DeviceFingerprint::this_cpu());
    }
    rdbench_gpu::device::scored()
        .map(|d| d.fingerprint())
        .map_err(|e| Error::Environment(e.to_string()))
}

/// The calibration that normalizes `task`/`profile` on `fp`: measured here first, then shipped.
pub fn find_calibration(
    ctx: &Context,
    task: &dyn Task,
    profile: &ProfileInfo,
    fp: &DeviceFingerprint,
) -> Result<Option<CalibrationEntry>> {
    let info = task.info();
    let shipped_with_task = || {
        let shipped = task.shipped_calibration(profile)?;
        Some(CalibrationEntry {
            task: info.name.clone(),
            profile: profile.name.clone(),
            start: shipped.start,
            reference: shipped.reference,
            measured_at: chrono::Utc::now(),
            provenance: format!("shipped with the task: {}", shipped.provenance),
            details: serde_json::Value::Null,
        })
    };
    if let Some(mut found) = ctx
        .calibration_store()
        .find(fp, &info.name, &profile.name)?
    {
        // A hardware-independent task's own numbers are a shipped calibration too.
        if found.disagreement.is_none() && info.hardware_independent {
            if let Some(shipped) = shipped_with_task() {
                found.disagreement = Disagreement::between(
                    &found.entry,
                    shipped,
                    CalibrationSource::Task(info.name.clone()),
                );
            }
        }
        // Never silent: a measured calibration that disagrees with the shipped one is used
        // (measured here comes first) with a warning, and its provenance names its file.
        if found.disagreement.is_some() {
            tracing::warn!("{}/{}: {}", info.name, profile.name, found.describe());
        }
        let mut entry = found.entry.clone();
        entry.provenance = format!("{} [{}]", entry.provenance, found.describe());
        return Ok(Some(entry));
    }
    Ok(info.hardware_independent.then(shipped_with_task).flatten())
}

/// Where no `rdbench-sandbox-shim` is installed (a `cargo run --bin rdbench` builds only this
/// binary), this binary serves as the sandbox's shim behind a hidden argument, if the
/// sandbox's user can run it: when this process is not root the sandbox runs as this user;
/// as root it runs as another user, who needs the binary readable and executable by others.
/// A protected service's binary is not (it holds the reference solutions; `serve` refuses a
/// public one), so there the shim must be installed beside it, and a program task says so.
fn use_self_as_sandbox_shim() {
    use rdbench_runner::sandbox::{use_shim, Shim};
    use std::os::unix::fs::PermissionsExt;
    if Shim::locate().is_ok() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let others_may_run = std::fs::metadata(&exe)
        .map(|m| m.permissions().mode() & 0o005 == 0o005)
        .unwrap_or(false);
    if rdbench_core::fsutil::effective_uid() != 0 || others_may_run {
        use_shim(Shim {
            program: exe,
            args: vec![crate::SANDBOX_SHIM_ARG.into()],
        });
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<i32> {
    // Every compile of this process (the scorer's precheck, the worker's) runs in a limited
    // child of this binary; the child itself compiles in-process.
    if !matches!(cli.command, Command::Nvrtc) {
        let isolation = rdbench_gpu::nvrtc::Isolation::current_exe(&["__nvrtc"])?;
        let _ = rdbench_gpu::nvrtc::set_isolation(isolation);
    }
    use_self_as_sandbox_shim();
    let ctx = Context::from_cli(&cli);
    match cli.command {
        Command::Attempt(command) => {
            if let Some(socket) = &cli.socket {
                return Ok(rdbench_client::run(socket, ctx.json, &command));
            }
            if !command.is_catalog() {
                warn!(ctx, "{UNPROTECTED_NOTE}");
            }
            attempt::run_local(&ctx, command)
        }
        Command::Serve {
            socket,
            allow_emulator_for_agents,
            allow_public_binary,
        } => {
            serve::check_own_binary(&ctx, allow_public_binary)?;
            serve::serve(&ctx, &socket, allow_emulator_for_agents)
        }
        Command::ServeLlm(args) => serve_llm::serve_llm(&ctx, &args),
        Command::InstallSolution {
            task,
            what,
            dir,
            profile,
        } => check_task::install(&ctx, &task, &what, &dir, profile.as_deref()),
        Command::CheckTask {
            task,
            profile,
            exploits,
            case,
        } => check_task::check_task(&ctx, &task, &profile, exploits.as_deref(), &case),
        Command::Calibrate {
            task,
            profile,
            runs,
        } => calibrate::calibrate(&ctx, &task, &profile, runs),
        Command::Monitor {
            dir,
            interval_ms,
            duration,
        } => monitor::monitor(&ctx, &dir, interval_ms, duration),
        Command::Aggregate(args) => crate::aggregate::run(&args, ctx.json),
        Command::Doctor => doctor::doctor(&ctx),
        Command::Export(command) => export::run(&ctx, &command),
        Command::ScoreJob(args) => score_job::score_job(&ctx, &args),
        Command::Fanout(args) => crate::fanout::run(&ctx, &args, cli.home.as_deref()),
        Command::LlmProxy(args) => llm_proxy::llm_proxy(&ctx, &args),
        Command::Cycle {
            task,
            profile,
            verbose,
        } => cycle::cycle(&ctx, &task, &profile, verbose),
        Command::Worker { task } => {
            let task = crate::registry::find(&task)?;
            Ok(crate::job::worker_main(task.as_ref()))
        }
        Command::Nvrtc => Ok(rdbench_gpu::nvrtc::child_main()),
    }
}
