//! [`ProgramAdapter`]: a [`ProgramTask`] as an [`rdbench_core::task::Task`].
//!
//! One scoring call: read the submitted `solution/` tree within the task's caps (a link, a
//! FIFO or a tree over the caps is an invalid entry before anything runs); draw a secret input
//! from the installation's pool (the drawn entry built on its first draw: the input made and
//! the reference program run on it, so the first calls take a reference run longer, and
//! starting an attempt runs nothing);
//! write the tree into a fresh work folder, replace its input folder with the drawn input and
//! remove any output file already there; run the contract's command in the sandbox under the
//! deadline; read the outputs without following a link after every process has ended; let the
//! task check them against the reference's. The raw score is `ln(seconds)` of the whole run.
//!
//! The program's stdout and stderr are **not** shown to the agent: they could carry the secret
//! input out, and with a few inputs per installation an agent that collected them could train
//! on them beforehand and ship the answers. A failing run's reason names its exit only; the
//! program is debugged on the public example input in the attempt's folder.

use std::path::Path;
use std::time::Duration;

use rdbench_core::task::{
    Execution, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest,
    ShippedCalibration, Solution, SubmissionFile, SubmissionKind, Task, TaskInfo,
};
use rdbench_core::untrusted_tree;
use rdbench_core::{Error, Result};
use rdbench_runner::Exit;
use serde_json::json;

use crate::pool::{Entry, Pool};
use crate::run::{run_in_sandbox, run_user, Ran, WorkDir};
use crate::tree::{read_tree, write_tree, TreeError, TreeFile};
use crate::{Contract, Outputs, ProgramTask, SandboxEnv, Verdict, SOLUTION_DIR};

/// A program task as a [`Task`].
pub struct ProgramAdapter<T: ProgramTask>(pub T);

/// What one run gave: how it ended, and its outputs or why there are none.
pub struct RunResult {
    pub ran: Ran,
    pub outputs: std::result::Result<Outputs, (InvalidKind, String)>,
}

impl<T: ProgramTask> ProgramAdapter<T> {
    /// Runs `files` (a solution's tree) on the input folder `input` in the sandbox.
    pub fn run_tree(&self, profile: &str, files: &[TreeFile], input: &Path) -> Result<RunResult> {
        let contract = self.0.contract(profile)?;
        let env = self.0.sandbox_env(profile)?;
        run_tree(&contract, &env, files, input)
    }

    /// The pool of `profile` (an entry is built when it is first drawn).
    pub fn pool(&self, profile: &str, cache_dir: &Path) -> Result<Pool> {
        let contract = self.0.contract(profile)?;
        Ok(Pool::new(
            cache_dir,
            &self.0.info().name,
            profile,
            contract.pool_size,
        ))
    }

    /// Entry `index` of `pool`, its input made and the reference program run on it first if
    /// no call has built it yet.
    fn entry(&self, pool: &Pool, profile: &str, cache_dir: &Path, index: usize) -> Result<Entry> {
        let name = self.0.info().name;
        pool.ensure_entry(index, |i, input, expected| {
            let seed = Pool::seed(cache_dir, &name, profile, i)?;
            self.0.make_input(profile, seed, input)?;
            let reference = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            self.0
                .write_solution(Solution::Reference, profile, reference.path())?;
            let files = read_tree(reference.path(), &self.0.tree_limits())
                .map_err(|e| Error::Internal(format!("the reference solution's tree: {e}")))?;
            let r = self.run_tree(profile, &files, input)?;
            let outputs = match r.outputs {
                Ok(o) if r.ran.succeeded() => o,
                Ok(_) | Err(_) => {
                    return Err(Error::Internal(format!(
                        "the reference program {} on secret input {i}: {}",
                        r.ran.exit,
                        tail_lines(&r.ran.stderr, 20)
                    )))
                }
            };
            for (path, bytes) in outputs {
                let to = expected.join(path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                std::fs::write(&to, bytes).map_err(|e| Error::io(&to, e))?;
            }
            std::fs::write(
                expected.join(".reference-seconds"),
                format!("{:.3}\n", r.ran.wall.as_secs_f64()),
            )
            .map_err(|e| Error::io(expected, e))
        })
    }

    fn write_solution_with_example(
        &self,
        which: Solution,
        profile: &str,
        dir: &Path,
    ) -> Result<()> {
        let sol = dir.join(SOLUTION_DIR);
        std::fs::create_dir_all(&sol).map_err(|e| Error::io(&sol, e))?;
        self.0.write_solution(which, profile, &sol)?;
        let contract = self.0.contract(profile)?;
        let input = sol.join(&contract.input_dir);
        std::fs::create_dir_all(&input).map_err(|e| Error::io(&input, e))?;
        self.0
            .make_input(profile, self.0.example_seed(profile), &input)
    }
}

/// Runs a tree on an input in a fresh work folder (see the module overview).
fn run_tree(
    contract: &Contract,
    env: &SandboxEnv,
    files: &[TreeFile],
    input: &Path,
) -> Result<RunResult> {
    let work = WorkDir::new(run_user()).map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let root = work.path().to_path_buf();
    write_tree(&root, files).map_err(|e| Error::io(&root, e))?;
    let input_to = root.join(&contract.input_dir);
    if input_to.exists() || input_to.symlink_metadata().is_ok() {
        remove_any(&input_to)?;
    }
    copy_dir(input, &input_to)?;
    for out in &contract.outputs {
        let p = root.join(&out.path);
        if p.symlink_metadata().is_ok() {
            remove_any(&p)?;
        }
    }
    work.give_to_user().map_err(|e| Error::io(&root, e))?;
    let ran = run_in_sandbox(&work, contract, env).map_err(|e| {
        Error::Environment(format!("the program could not be run in the sandbox: {e}"))
    })?;
    let outputs = read_outputs(&root, contract);
    Ok(RunResult { ran, outputs })
}

fn remove_any(p: &Path) -> Result<()> {
    let meta = p.symlink_metadata().map_err(|e| Error::io(p, e))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
    .map_err(|e| Error::io(p, e))
}

/// Copies the scorer's own (trusted) input folder.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for e in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let e = e.map_err(|e| Error::io(from, e))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().map_err(|x| Error::io(&src, x))?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|x| Error::io(&src, x))?;
        }
    }
    Ok(())
}

/// Reads every output file without following a link anywhere on its path.
fn read_outputs(
    root: &Path,
    contract: &Contract,
) -> std::result::Result<Outputs, (InvalidKind, String)> {
    let mut out = Outputs::new();
    for o in &contract.outputs {
        let path = root.join(&o.path);
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p, n.to_string_lossy().into_owned()),
            _ => {
                return Err((
                    InvalidKind::MissingFile,
                    format!("{}: no file name", o.path),
                ))
            }
        };
        let dir = untrusted_tree::open_dir(parent).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => (
                InvalidKind::MissingFile,
                format!("the run wrote no {}", o.path),
            ),
            _ => (
                InvalidKind::BadArtifact,
                format!("{}: its folder is not a plain folder ({e})", o.path),
            ),
        })?;
        use rdbench_core::fsutil::UntrustedReadError as E;
        let bytes = untrusted_tree::read_file(&dir, &name, o.max_bytes).map_err(|e| match e {
            E::NotFound => (
                InvalidKind::MissingFile,
                format!("the run wrote no {}", o.path),
            ),
            E::TooLarge { size, max } => (
                InvalidKind::TooLarge,
                format!("{}: {size} bytes, over its limit of {max}", o.path),
            ),
            other => (InvalidKind::BadArtifact, format!("{}: {other}", o.path)),
        })?;
        out.insert(o.path.clone(), bytes);
    }
    Ok(out)
}

fn read_expected(dir: &Path, contract: &Contract) -> Result<Outputs> {
    let mut out = Outputs::new();
    for o in &contract.outputs {
        let p = dir.join(&o.path);
        out.insert(
            o.path.clone(),
            std::fs::read(&p).map_err(|e| Error::io(&p, e))?,
        );
    }
    Ok(out)
}

/// The last `n` lines of `text` (for the scorer's own errors, never an agent's reason).
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The invalid entry a run that did not end well gets, if it did not.
fn exit_verdict(ran: &Ran, deadline: Duration) -> Option<(InvalidKind, String)> {
    match ran.exit {
        Exit::Exited(0) => None,
        Exit::TimedOut => Some((
            InvalidKind::Timeout,
            format!(
                "the run was stopped at its deadline of {} s",
                deadline.as_secs()
            ),
        )),
        Exit::LimitHit(limit) => Some((
            InvalidKind::ResourceLimit,
            format!("the run stopped at its {limit} limit"),
        )),
        other => Some((
            InvalidKind::Crash,
            format!(
                "the program {other} (its output is not shown: it ran on secret data; run it on the example input in your folder)"
            ),
        )),
    }
}

/// The invalid entry for a tree the kit refused to read.
pub fn tree_refusal(e: &TreeError) -> (InvalidKind, String) {
    (e.invalid_kind(), format!("{SOLUTION_DIR}/: {e}"))
}

impl<T: ProgramTask> Task for ProgramAdapter<T> {
    fn info(&self) -> TaskInfo {
        let mut info = self.0.info();
        info.submission = SubmissionKind::Program;
        info.submission_files = vec![SubmissionFile::tree(SOLUTION_DIR, self.0.tree_limits())];
        info
    }

    fn prepare(&self, req: &PrepareRequest) -> Result<()> {
        self.write_solution_with_example(Solution::Starting, &req.profile.name, &req.attempt_dir)?;
        let text = self.0.instructions(&req.profile.name)?;
        let p = req.attempt_dir.join("INSTRUCTIONS.md");
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
    }

    fn install_solution(
        &self,
        solution: Solution,
        profile: &ProfileInfo,
        _cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        self.write_solution_with_example(solution, &profile.name, dir)
    }

    fn precheck(&self, req: &ScoreRequest) -> Result<Option<(InvalidKind, String)>> {
        let root = req.submission_dir.join(SOLUTION_DIR);
        Ok(read_tree(&root, &self.0.tree_limits())
            .err()
            .map(|e| tree_refusal(&e)))
    }

    fn check_environment(&self, profile: &ProfileInfo, _: Execution) -> Result<()> {
        let profile = profile.name.as_str();
        let caps = rdbench_runner::sandbox::capabilities();
        if let Some(why) = caps.why_not {
            return Err(Error::Environment(format!(
                "{}: the sandbox for its programs cannot run here: {why}",
                self.0.info().name
            )));
        }
        self.0.sandbox_env(profile).map(|_| ())
    }

    fn score(&self, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let profile = req.profile.name.as_str();
        let contract = self.0.contract(profile)?;
        let root = req.submission_dir.join(SOLUTION_DIR);
        let files = match read_tree(&root, &self.0.tree_limits()) {
            Ok(f) => f,
            Err(e) => {
                let (kind, reason) = tree_refusal(&e);
                return Ok(ScoreOutcome::invalid(kind, reason));
            }
        };
        let pool = self.pool(profile, &req.cache_dir)?;
        let entry = self.entry(&pool, profile, &req.cache_dir, pool.draw(req.seed).index)?;
        let input_seed = Pool::seed(&req.cache_dir, &self.0.info().name, profile, entry.index)?;
        let r = self.run_tree(profile, &files, &entry.input)?;
        let seconds = r.ran.wall.as_secs_f64();
        let run = json!({
            "seconds": seconds,
            "exit": r.ran.exit.to_string(),
            "cpu_s": r.ran.usage.cpu().as_secs_f64(),
            "peak_rss_bytes": r.ran.usage.peak_rss,
            "tree_sha256": crate::tree::tree_hash(&files),
        });
        let _ = req.save_samples(&json!({ "run": run, "input": entry.index }));
        if let Some((kind, reason)) = exit_verdict(&r.ran, contract.deadline) {
            return Ok(ScoreOutcome::Invalid {
                kind,
                reason,
                details: json!({ "run": run }),
            });
        }
        let got = match r.outputs {
            Ok(o) => o,
            Err((kind, reason)) => {
                return Ok(ScoreOutcome::Invalid {
                    kind,
                    reason,
                    details: json!({ "run": run }),
                })
            }
        };
        let expected = read_expected(&entry.expected, &contract)?;
        Ok(match self.0.check(profile, input_seed, &expected, &got)? {
            Verdict::Valid { headline, details } => ScoreOutcome::Valid {
                raw: seconds.ln(),
                headline: format!("{seconds:.2} s; {headline}"),
                details: json!({ "run": run, "check": details }),
            },
            Verdict::Invalid {
                kind,
                reason,
                details,
            } => ScoreOutcome::Invalid {
                kind,
                reason,
                details: json!({ "run": run, "check": details }),
            },
        })
    }

    fn shipped_calibration(&self, profile: &ProfileInfo) -> Option<ShippedCalibration> {
        self.0.shipped_calibration(&profile.name)
    }
}
