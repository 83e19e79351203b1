//! # rdbench-task-tree-traversal
//!
//! The general-autonomy suite's "Tree Traversal Kernel", in the form of Anthropic's
//! performance take-home: make a program for a simulated VLIW SIMD machine
//! ([`rdbench_vliw`]) compute a batched walk down a hashed binary tree in as few cycles as
//! possible. It is rdbench's first kernel task that runs and scores entirely on a CPU, and
//! its scores are exact: a cycle count has no noise.
//!
//! **The submission is data.** `program.json` is parsed and validated (format version,
//! engines, operations, slot limits, scratch bounds, size caps) and then simulated by the
//! scorer on [`INPUTS`] fresh inputs drawn from the scoring call's secret seed. Nothing the
//! agent writes runs in the scorer, and the machine's memory holds the problem and nothing
//! else: there is no answer anywhere for a program to read. Every output value is checked;
//! the score is `ln` of the most cycles any input took.
//!
//! **Profiles.** `full` is rdbench's variant (its own hash constants, height 9, batch 224, 18
//! rounds), for which rdbench ships a reference program; `tiny` is a small variant for tests;
//! `original` has the take-home's own parameters and ships only the scalar baseline and the
//! published marks (its licence asks that solutions not be published), so its reference
//! point is the mark of 2,164 cycles, not a program.

pub use rdbench_reference_tree_traversal as reference;

use std::path::Path;

use rdbench_core::artifact::{ArtifactTask, ArtifactTaskAdapter, Rejection};
use rdbench_core::fsutil::{atomic_write, read_untrusted, UntrustedReadError};
use rdbench_core::rng::splitmix64;
use rdbench_core::task::{
    Direction, InvalidKind, PrepareRequest, ProfileInfo, ScoreOutcome, ScoreRequest,
    ShippedCalibration, Solution, SubmissionKind, Task, TaskInfo,
};
use rdbench_core::template::{render, thousands};
use rdbench_core::{Error, Result};
use rdbench_vliw::machine::{self, Bounds, Fault};
use rdbench_vliw::problem::{output_values, Input, Params};
use rdbench_vliw::program::{self, Program};
use serde_json::json;

/// The file an attempt submits.
pub const SUBMISSION: &str = "program.json";

/// Inputs simulated per scoring run; the score counts the slowest.
pub const INPUTS: u64 = 8;

/// A program is stopped (and invalid) after this many times the profile's baseline cycles.
pub const CYCLE_LIMIT_FACTOR: u64 = 10;

/// A program is also stopped (and invalid) after executing this many times the baseline's
/// bundles plus [`program::MAX_BUNDLES`], free bundles included. Bundles that name no engine
/// but `debug` cost no cycle, so without this bound a loop through a long run of them works
/// for ever inside the cycle bound (the red team's 3 MB program used 120 s of a core and ended
/// as the worker's generic timeout). The baseline is one slot per bundle with no free bundle,
/// so its bundles equal its cycles (a test pins that): the bound allows 10 times the start's
/// work plus one pass through the largest program a file may hold, which no useful program
/// comes near (tiny 1,069,660 bundles, full 2,453,980; a few milliseconds of simulation each).
pub const BUNDLE_LIMIT_FACTOR: u64 = 10;

/// The bounds of one simulated run for a profile whose baseline takes `start_cycles` cycles
/// (and as many bundles).
pub fn run_bounds(start_cycles: u64) -> Bounds {
    Bounds {
        cycles: start_cycles.saturating_mul(CYCLE_LIMIT_FACTOR),
        bundles: start_cycles
            .saturating_mul(BUNDLE_LIMIT_FACTOR)
            .saturating_add(program::MAX_BUNDLES as u64),
    }
}

/// The published marks of the original take-home (cycles, who, when), from its README.
pub const PUBLISHED_MARKS: [(u64, &str); 8] = [
    (147_734, "the scalar baseline (this task's start)"),
    (18_532, "the updated starting point of the 2-hour version"),
    (2_164, "Claude Opus 4 after many hours in a test harness"),
    (
        1_790,
        "Claude Opus 4.5 in a casual Claude Code session, about the best human in 2 hours",
    ),
    (1_579, "Claude Opus 4.5 after 2 hours in a test harness"),
    (1_548, "Claude Sonnet 4.5 after many more than 2 hours"),
    (1_487, "Claude Opus 4.5 after 11.5 hours in a test harness"),
    (1_363, "Claude Opus 4.5 in an improved test harness"),
];

/// One profile: its parameters and its calibration anchors (exact cycle counts).
pub struct Profile {
    name: &'static str,
    params: Params,
    /// Cycles of the scalar baseline (straight-line, so the same on every input).
    start_cycles: u64,
    /// Cycles of the reference: rdbench's reference program, or for `original` the
    /// published mark it stands for.
    reference_cycles: u64,
    reference_source: &'static str,
}

fn profiles() -> [Profile; 3] {
    [
        Profile {
            name: "tiny",
            params: Params::tiny(),
            start_cycles: TINY_START_CYCLES,
            reference_cycles: TINY_REFERENCE_CYCLES,
            reference_source: "rdbench's reference program in reference_solutions/tree-traversal",
        },
        Profile {
            name: "full",
            params: Params::variant(),
            start_cycles: FULL_START_CYCLES,
            reference_cycles: FULL_REFERENCE_CYCLES,
            reference_source: "rdbench's reference program in reference_solutions/tree-traversal",
        },
        Profile {
            name: "original",
            params: Params::original(),
            start_cycles: 147_734,
            reference_cycles: 2_164,
            reference_source:
                "the published mark of Claude Opus 4 after many hours (no program ships)",
        },
    ]
}

/// Cycle counts of the shipped programs, pinned so that normalized scores cannot drift when
/// a builder changes (a test rebuilds the programs and compares).
pub const TINY_START_CYCLES: u64 = 6_966;
pub const TINY_REFERENCE_CYCLES: u64 = 104;
pub const FULL_START_CYCLES: u64 = 145_398;
pub const FULL_REFERENCE_CYCLES: u64 = 1_846;

fn profile(name: &str) -> Option<Profile> {
    profiles().into_iter().find(|p| p.name == name)
}

/// The tree-traversal task.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeTraversal;

/// The tasks of this crate, for the CLI's registry.
pub fn tasks() -> Vec<Box<dyn Task>> {
    vec![Box::new(task())]
}

/// The task as the registry holds it: [`TreeTraversal`] behind the artifact-task adapter.
pub fn task() -> ArtifactTaskAdapter<TreeTraversal> {
    ArtifactTaskAdapter::new(TreeTraversal)
}

/// The program a shipped solution is, for the profile `profile_name`.
pub fn solution_program(solution: Solution, profile_name: &str) -> Result<Program> {
    build_solution(solution, &task().profile(profile_name)?)
}

fn build_solution(solution: Solution, p: &Profile) -> Result<Program> {
    let built = match solution {
        Solution::Starting => rdbench_vliw::baseline::baseline(&p.params),
        Solution::Reference => reference::reference(&p.params),
        Solution::Fastest => reference::fastest(&p.params),
    };
    built.map_err(|e| Error::Usage(format!("tree-traversal/{}: {e}", p.name)))
}

/// Reads and validates the submission; `Err` is the invalid verdict.
fn load_submission(dir: &Path) -> std::result::Result<Program, (InvalidKind, String)> {
    let path = dir.join(SUBMISSION);
    let bytes = read_untrusted(&path, program::MAX_PROGRAM_BYTES).map_err(|e| {
        let kind = match e {
            UntrustedReadError::NotFound | UntrustedReadError::NotARegularFile(_) => {
                InvalidKind::MissingFile
            }
            UntrustedReadError::TooLarge { .. } => InvalidKind::TooLarge,
            UntrustedReadError::Io(_) => InvalidKind::BadArtifact,
        };
        (kind, format!("{SUBMISSION}: {e}"))
    })?;
    Program::parse(&bytes).map_err(|e| {
        let kind = if e.rule {
            InvalidKind::RuleViolation
        } else {
            InvalidKind::BadArtifact
        };
        (kind, format!("{SUBMISSION}: {e}"))
    })
}

/// What simulating one submission on the scoring inputs gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Right on every input; cycles per input.
    Correct(Vec<u64>),
    Invalid(InvalidKind, String),
}

/// Simulates `program` on [`INPUTS`] inputs from `seed` and checks every output value.
pub fn judge(program: &Program, params: &Params, start_cycles: u64, seed: u64) -> Verdict {
    let bounds = run_bounds(start_cycles);
    let mut cycles = Vec::new();
    for k in 0..INPUTS {
        let input = Input::generate(params, splitmix64(seed ^ k.wrapping_mul(0x9E37)));
        let mut mem = input.memory_image(params);
        let stats = match machine::run_bounded(program, &mut mem, bounds) {
            Ok(s) => s,
            Err(f @ Fault::CycleLimit { .. }) => {
                return Verdict::Invalid(
                    InvalidKind::Timeout,
                    format!(
                        "input {} of {INPUTS}: {f}: the cycle bound ({CYCLE_LIMIT_FACTOR} x the \
                         baseline's {})",
                        k + 1,
                        thousands(start_cycles as i64)
                    ),
                )
            }
            Err(f @ Fault::BundleLimit { .. }) => {
                return Verdict::Invalid(
                    InvalidKind::Timeout,
                    format!(
                        "input {} of {INPUTS}: {f}: the bundle bound ({BUNDLE_LIMIT_FACTOR} x the \
                         baseline's {} bundles + {}, the most bundles a program file holds)",
                        k + 1,
                        thousands(start_cycles as i64),
                        thousands(program::MAX_BUNDLES as i64)
                    ),
                )
            }
            Err(f) => {
                return Verdict::Invalid(
                    InvalidKind::KernelFault,
                    format!("input {} of {INPUTS}: {f}", k + 1),
                )
            }
        };
        let (want, _) = input.solve(params);
        let got = output_values(params, &mem);
        let wrong: Vec<usize> = (0..want.len()).filter(|&i| want[i] != got[i]).collect();
        if let Some(&first) = wrong.first() {
            return Verdict::Invalid(
                InvalidKind::WrongOutput,
                format!(
                    "input {} of {INPUTS}: {} of {} final values are wrong; the first is walker \
                     {first} (memory word {}): expected {}, got {}",
                    k + 1,
                    wrong.len(),
                    want.len(),
                    params.values_ptr() + first,
                    want[first],
                    got[first]
                ),
            );
        }
        cycles.push(stats.cycles);
    }
    Verdict::Correct(cycles)
}

impl ArtifactTask for TreeTraversal {
    type Profile = Profile;

    fn info(&self) -> TaskInfo {
        let describe = |p: &Profile| {
            format!(
                "height {}, batch {}, {} rounds; start {} cycles, reference {} cycles ({})",
                p.params.height,
                p.params.batch,
                p.params.rounds,
                thousands(p.start_cycles as i64),
                thousands(p.reference_cycles as i64),
                p.reference_source
            )
        };
        TaskInfo {
            name: "tree-traversal".into(),
            family: "tree-traversal".into(),
            title: "Tree Traversal Kernel: a faster program for a simulated VLIW SIMD machine".into(),
            summary: "Write a program (as data: bundles of slots in program.json) for a simulated \
                      VLIW SIMD accelerator that walks a batch of values down a hashed binary tree. \
                      The scorer validates the program, simulates it on fresh secret inputs, checks \
                      every output and counts cycles. Runs entirely on a CPU; scores are exact."
                .into(),
            raw_score: format!(
                "ln(simulated cycles), the most over {INPUTS} fresh inputs"
            ),
            direction: Direction::LowerIsBetter,
            submission: SubmissionKind::Artifact,
            submission_files: vec![rdbench_core::task::SubmissionFile::new(
                SUBMISSION,
                rdbench_vliw::program::MAX_PROGRAM_BYTES,
            )],
            profiles: profiles()
                .iter()
                .map(|p| ProfileInfo {
                    name: p.name.into(),
                    description: describe(p),
                    needs_gpu: false,
                })
                .collect(),
            score_hidden: false,
            hardware_independent: true,
            // The take-home's current form is 2 hours (it began as 4).
            default_time_limit_minutes: 120,
            score_timeout_s: 120,
            human_minutes: Some(120.0),
            tools: Vec::new(),
        }
    }

    fn profile(&self, name: &str) -> Option<Profile> {
        profile(name)
    }

    fn prepare(&self, p: &Profile, req: &PrepareRequest) -> Result<()> {
        let out = &req.attempt_dir;
        let start = build_solution(Solution::Starting, p)?;
        atomic_write(&out.join(SUBMISSION), start.to_json().as_bytes())?;
        atomic_write(
            &out.join("build_program.py"),
            include_str!("../start/build_program.py").as_bytes(),
        )?;
        let params =
            serde_json::to_string_pretty(&p.params).map_err(|e| Error::Internal(e.to_string()))?;
        atomic_write(&out.join("params.json"), format!("{params}\n").as_bytes())
    }

    fn instructions(&self, p: &Profile) -> Result<String> {
        instructions(p)
    }

    fn install(
        &self,
        solution: Solution,
        p: &Profile,
        _cache_dir: &Path,
        dir: &Path,
    ) -> Result<()> {
        let program = build_solution(solution, p)?;
        atomic_write(&dir.join(SUBMISSION), program.to_json().as_bytes())
    }

    fn ships_fastest(&self) -> bool {
        true
    }

    fn check_submission(&self, _p: &Profile, req: &ScoreRequest) -> Result<Option<Rejection>> {
        Ok(load_submission(&req.submission_dir).err())
    }

    fn score(&self, p: &Profile, req: &ScoreRequest) -> Result<ScoreOutcome> {
        let program = match load_submission(&req.submission_dir) {
            Ok(program) => program,
            Err((kind, reason)) => return Ok(ScoreOutcome::invalid(kind, reason)),
        };
        let started = std::time::Instant::now();
        let cycles = match judge(&program, &p.params, p.start_cycles, req.seed) {
            Verdict::Correct(cycles) => cycles,
            Verdict::Invalid(kind, reason) => return Ok(ScoreOutcome::invalid(kind, reason)),
        };
        let worst = *cycles.iter().max().expect("INPUTS > 0");
        let best = *cycles.iter().min().expect("INPUTS > 0");
        let speedup = p.start_cycles as f64 / worst as f64;
        let beats: Vec<u64> = PUBLISHED_MARKS
            .iter()
            .map(|(c, _)| *c)
            .filter(|&c| worst < c)
            .collect();
        let details = json!({
            "cycles": worst,
            "cycles_per_input": cycles,
            "cycles_min": best,
            "bundles": program.bundles.len(),
            "slots": program.slots.len(),
            "start_cycles": p.start_cycles,
            "reference_cycles": p.reference_cycles,
            "speedup_over_start": speedup,
            "inputs": INPUTS,
            "simulation_seconds": started.elapsed().as_secs_f64(),
            "published_marks_beaten": if p.name == "original" { json!(beats) } else { json!(null) },
        });
        let spread = if best == worst {
            String::new()
        } else {
            format!(" (fastest input {})", thousands(best as i64))
        };
        Ok(ScoreOutcome::Valid {
            raw: (worst as f64).ln(),
            headline: format!(
                "{} cycles{spread}, {speedup:.1}x the start",
                thousands(worst as i64)
            ),
            details,
        })
    }

    fn shipped_calibration(&self, p: &Profile) -> Option<ShippedCalibration> {
        Some(ShippedCalibration {
            start: (p.start_cycles as f64).ln(),
            reference: (p.reference_cycles as f64).ln(),
            provenance: format!(
                "exact simulated cycles: start {} (the scalar baseline), reference {} ({})",
                p.start_cycles, p.reference_cycles, p.reference_source
            ),
        })
    }
}

/// The attempt's INSTRUCTIONS.md for a profile.
fn instructions(p: &Profile) -> Result<String> {
    let params = &p.params;
    let stages: Vec<String> = params
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = |c: rdbench_vliw::problem::Combine| match c {
                rdbench_vliw::problem::Combine::Add => "+",
                rdbench_vliw::problem::Combine::Xor => "^",
            };
            let shift = match s.op3 {
                rdbench_vliw::problem::Shift::Left => "<<",
                rdbench_vliw::problem::Shift::Right => ">>",
            };
            format!(
                "| {} | `a = (a {} 0x{:08X}) {} (a {} {})` |",
                i,
                name(s.op1),
                s.constant,
                name(s.op2),
                shift,
                s.shift
            )
        })
        .collect();
    let marks = if p.name == "original" {
        let rows: Vec<String> = PUBLISHED_MARKS
            .iter()
            .map(|(c, who)| format!("| {} | {who} |", thousands(*c as i64)))
            .collect();
        format!(
            "These are the original take-home's parameters. Its published marks, for \
             comparison (your normalized score is 1 at 2,164 cycles):\n\n| cycles | \
             |\n|---:|---|\n{}\n",
            rows.join("\n")
        )
    } else {
        "These parameters are rdbench's own variant of the take-home (its hash constants, \
         height, batch and rounds differ), so published programs for the original do not \
         compute it.\n"
            .into()
    };
    let n = params.n_nodes();
    render(
        include_str!("instructions.md"),
        &[
            ("PROFILE", p.name),
            ("HEIGHT", &params.height.to_string()),
            ("NODES", &thousands(n as i64)),
            ("BATCH", &params.batch.to_string()),
            ("ROUNDS", &params.rounds.to_string()),
            ("STAGES", &stages.join("\n")),
            ("TREE_PTR", &params.tree_ptr().to_string()),
            ("INDICES_PTR", &params.indices_ptr().to_string()),
            ("VALUES_PTR", &params.values_ptr().to_string()),
            ("MEM_WORDS", &thousands(params.memory_words() as i64)),
            ("START_CYCLES", &thousands(p.start_cycles as i64)),
            ("REFERENCE_CYCLES", &thousands(p.reference_cycles as i64)),
            (
                "LIMIT_CYCLES",
                &thousands(run_bounds(p.start_cycles).cycles as i64),
            ),
            (
                "LIMIT_BUNDLES",
                &thousands(run_bounds(p.start_cycles).bundles as i64),
            ),
            ("INPUTS", &INPUTS.to_string()),
            ("MARKS", &marks),
            ("MAX_MB", &(program::MAX_PROGRAM_BYTES >> 20).to_string()),
            ("MAX_BUNDLES", &thousands(program::MAX_BUNDLES as i64)),
        ],
    )
}
