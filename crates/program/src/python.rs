//! The Python a program task's sandbox runs: the system's `/usr/bin/python3` with the packages
//! of a virtual environment bound read-only at [`VENV_INSIDE`] and put on `PYTHONPATH`.
//!
//! Why not the venv's own interpreter: a venv's `python3` is a link to the interpreter it was
//! made from, which may sit where the sandbox's user cannot reach (pyenv under a private
//! `/root`). The system's Python of the same version reads the venv's pure and compiled
//! packages alike. Whether it can import what a task needs is asked once per process and
//! venv, outside the sandbox, so a missing package is an environment error naming the venv and
//! the install command, never a submission's failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rdbench_core::{Error, Result};
use rdbench_runner::sandbox::Bind;

use crate::SandboxEnv;

/// Where the venv is inside the sandbox.
pub const VENV_INSIDE: &str = "/opt/venv";
/// The interpreter the programs run.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// `$<var>` when set, else the checkout's `.venv` (made by `scripts/test.sh`).
pub fn venv_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv")))
}

/// The venv's `lib/pythonX.Y/site-packages`, relative to the venv.
pub fn site_packages(venv: &Path) -> std::result::Result<String, String> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("python3"))
        .map(|n| format!("lib/{n}/site-packages"))
        .ok_or_else(|| format!("{} has no python3.* folder", lib.display()))
}

/// Whether the system's Python imports `module` from `venv`: the site-packages folder when it
/// does, else why not (asked once per process for each venv and module).
pub fn imports(venv: &Path, module: &str) -> std::result::Result<String, String> {
    type Answers = BTreeMap<(PathBuf, String), std::result::Result<String, String>>;
    static ANSWERS: Mutex<Answers> = Mutex::new(BTreeMap::new());
    let key = (venv.to_path_buf(), module.to_string());
    if let Some(a) = ANSWERS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return a.clone();
    }
    let answer = ask(venv, module);
    ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, answer.clone());
    answer
}

fn ask(venv: &Path, module: &str) -> std::result::Result<String, String> {
    let site = site_packages(venv)?;
    let mut cmd = rdbench_runner::Command::new(SYSTEM_PYTHON);
    cmd.args(["-c", &format!("import {module}")])
        .env_clear()
        .env("PYTHONPATH", venv.join(&site))
        .stdout(rdbench_runner::Output::Null)
        .stderr(rdbench_runner::Output::Capture { tail: 400 })
        .deadline(Duration::from_secs(120));
    match cmd.run() {
        Ok(o) if o.exit == rdbench_runner::Exit::Exited(0) => Ok(site),
        Ok(o) => Err(format!(
            "{SYSTEM_PYTHON} cannot import {module} from {} ({}): {}",
            venv.join(&site).display(),
            o.exit,
            o.stderr.text().lines().last().unwrap_or("")
        )),
        Err(e) => Err(format!("{SYSTEM_PYTHON}: {e}")),
    }
}

/// The sandbox's environment for `task`'s Python programs: the venv named by `$<var>` (else the
/// checkout's) bound at [`VENV_INSIDE`], on `PYTHONPATH`, where it imports `module`; else an
/// environment error saying how to install it.
pub fn sandbox_env(task: &str, var: &str, module: &str, package: &str) -> Result<SandboxEnv> {
    let venv = venv_path(var);
    let site = imports(&venv, module).map_err(|why| {
        Error::Environment(format!(
            "{task} needs the Python package {package}: {why} (install it: {}/bin/pip install {package}, or set {var})",
            venv.display()
        ))
    })?;
    let venv = venv.canonicalize().map_err(|e| Error::io(&venv, e))?;
    let mut env = SandboxEnv {
        binds: vec![Bind::new(venv, VENV_INSIDE)],
        ..SandboxEnv::default()
    };
    env.env
        .insert("PYTHONPATH".into(), format!("{VENV_INSIDE}/{site}"));
    Ok(env)
}
