//! The tree-traversal task through its `Task` interface: pinned calibration anchors, the
//! Python builder, the scorer's verdicts on cheats that need a program made for one input,
//! and hostile files in place of `program.json`.

use std::path::Path;

use rdbench_core::task::{profile_of, InvalidKind, ScoreOutcome, ScoreRequest, Solution, Task};
use rdbench_task_tree_traversal::{
    judge, solution_program, Verdict, FULL_REFERENCE_CYCLES, FULL_START_CYCLES, SUBMISSION,
    TINY_REFERENCE_CYCLES, TINY_START_CYCLES,
};
use rdbench_vliw::isa::{Slot, VLEN};
use rdbench_vliw::problem::{Input, Params};
use rdbench_vliw::program::Program;

/// An attempt of `profile` prepared under `root/<profile>`; its folder.
fn prepared(task: &dyn Task, profile: &str, root: &Path) -> std::path::PathBuf {
    let profile = profile_of(task, profile).unwrap();
    rdbench_core::conformance::prepare_attempt(
        task,
        &profile,
        &root.join(&profile.name),
        &root.join("cache"),
    )
    .unwrap()
}

fn score_dir(dir: &Path, profile: &str, seed: u64) -> ScoreOutcome {
    let task = rdbench_task_tree_traversal::task();
    let req = ScoreRequest {
        profile: profile_of(&task, profile).unwrap(),
        submission_dir: dir.to_path_buf(),
        private_dir: dir.join("private"),
        cache_dir: dir.join("cache"),
        samples_path: dir.join("samples/samples.json"),
        seed,
        execution: Default::default(),
    };
    if let Some((kind, reason)) = task.precheck(&req).unwrap() {
        return ScoreOutcome::invalid(kind, reason);
    }
    task.score(&req).unwrap()
}

fn kind(outcome: &ScoreOutcome) -> Option<InvalidKind> {
    outcome.invalid_kind()
}

#[test]
fn the_pinned_cycle_counts_are_the_shipped_programs() {
    for (profile, start, reference) in [
        ("tiny", TINY_START_CYCLES, TINY_REFERENCE_CYCLES),
        ("full", FULL_START_CYCLES, FULL_REFERENCE_CYCLES),
    ] {
        let s = solution_program(Solution::Starting, profile).unwrap();
        let r = solution_program(Solution::Reference, profile).unwrap();
        // Straight-line programs: every bundle runs once, on every input.
        assert_eq!(s.cycle_bundles() as u64, start, "{profile} start");
        // The bundle bound is set from the start's bundles, which are its cycles (no free
        // bundle in the baseline).
        assert_eq!(s.bundles.len() as u64, start, "{profile} start bundles");
        assert_eq!(r.cycle_bundles() as u64, reference, "{profile} reference");
        let params = Params::preset(profile).unwrap();
        for (what, program, cycles) in [("start", &s, start), ("reference", &r, reference)] {
            match judge(program, &params, start, 42) {
                Verdict::Correct(c) => assert!(c.iter().all(|&x| x == cycles), "{profile} {what}"),
                Verdict::Invalid(k, why) => panic!("{profile} {what}: {k}: {why}"),
            }
        }
        let f = solution_program(Solution::Fastest, profile).unwrap();
        assert!(
            f.cycle_bundles() as u64 <= reference,
            "{profile}: fastest is no slower"
        );
        assert!(matches!(judge(&f, &params, start, 43), Verdict::Correct(_)));
    }
    assert_eq!(
        solution_program(Solution::Starting, "original")
            .unwrap()
            .cycle_bundles(),
        147_734
    );
}

#[test]
fn no_program_ships_for_the_original_parameters() {
    for solution in [Solution::Reference, Solution::Fastest] {
        let e = solution_program(solution, "original")
            .unwrap_err()
            .to_string();
        assert!(e.contains("licence"), "{e}");
    }
}

#[test]
fn start_and_reference_normalize_to_zero_and_one_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let task = rdbench_task_tree_traversal::task();
    for profile in ["tiny", "full"] {
        let resolved = profile_of(&task, profile).unwrap();
        let cal = task.shipped_calibration(&resolved).unwrap();
        for (solution, want) in [(Solution::Starting, 0.0), (Solution::Reference, 1.0)] {
            let sub = dir.path().join(format!("{profile}-{}", solution.as_str()));
            task.install_solution(solution, &resolved, dir.path(), &sub)
                .unwrap();
            let ScoreOutcome::Valid { raw, .. } = score_dir(&sub, profile, 7) else {
                panic!("{profile} {solution:?} is not valid");
            };
            let normalized = (raw - cal.start) / (cal.reference - cal.start);
            assert!(
                (normalized - want).abs() < 1e-12,
                "{profile} {solution:?}: {normalized}"
            );
        }
    }
}

#[test]
fn the_python_builder_writes_the_same_starting_program() {
    let dir = tempfile::tempdir().unwrap();
    let task = rdbench_task_tree_traversal::task();
    for profile in ["tiny", "full"] {
        let attempt = prepared(&task, profile, dir.path());
        let Ok(out) = std::process::Command::new("python3")
            .arg(attempt.join("build_program.py"))
            .output()
        else {
            eprintln!("skipped: python3 is not here");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shipped = std::fs::read(attempt.join(SUBMISSION)).unwrap();
        assert!(
            out.stdout == shipped,
            "{profile}: build_program.py differs from program.json"
        );
    }
}

/// A program that stores `values` as the answer, whatever the input.
fn constant_answer(params: &Params, values: &[u32]) -> Program {
    let mut bundles = Vec::new();
    bundles.push(vec![Slot::Const {
        dest: 0,
        value: params.values_ptr() as u32,
    }]);
    for (i, chunk) in values.chunks(VLEN).enumerate() {
        let base = 8 + (i * VLEN) as u16;
        for pair in chunk.chunks(2).enumerate() {
            let (j, words) = pair;
            bundles.push(
                words
                    .iter()
                    .enumerate()
                    .map(|(w, &v)| Slot::Const {
                        dest: base + (2 * j + w) as u16,
                        value: v,
                    })
                    .collect(),
            );
        }
        bundles.push(vec![Slot::VStore { addr: 0, src: base }]);
        bundles.push(vec![Slot::AddImm {
            dest: 0,
            a: 0,
            imm: VLEN as u32,
        }]);
    }
    Program::from_bundles(&bundles)
}

#[test]
fn a_program_that_knows_one_inputs_answer_fails_the_scoring_inputs() {
    let params = Params::tiny();
    // The answer for seed 1, which the local tool shows the agent by default.
    let (answer, _) = Input::generate(&params, 1).solve(&params);
    let program = constant_answer(&params, &answer);
    // It is right on that input...
    let mut mem = Input::generate(&params, 1).memory_image(&params);
    rdbench_vliw::machine::run(&program, &mut mem, 1000).unwrap();
    assert_eq!(
        rdbench_vliw::problem::output_values(&params, &mem),
        answer.as_slice()
    );
    // ...and wrong on the scorer's.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SUBMISSION), program.to_json()).unwrap();
    let outcome = score_dir(dir.path(), "tiny", 0x5ec2e7);
    assert_eq!(
        kind(&outcome),
        Some(InvalidKind::WrongOutput),
        "{outcome:?}"
    );
}

/// The red team's program: a long run of empty bundles (no cycle) and one jump back. Stopped
/// by the bundle bound within a fraction of a second, with a reason naming that bound, for a
/// loop body far longer than the bound (one pass) and for a short one (many passes).
#[test]
fn a_loop_of_empty_bundles_stops_at_the_bundle_bound() {
    let params = Params::preset("tiny").unwrap();
    for body in [900_000usize, 1_000] {
        let json = format!(
            r#"{{"format": "rdbench-vliw/1", "bundles": [{}{{"flow": [["jump", 0]]}}]}}"#,
            "{},".repeat(body)
        );
        let program = Program::parse(json.as_bytes()).unwrap();
        let started = std::time::Instant::now();
        match judge(&program, &params, TINY_START_CYCLES, 7) {
            Verdict::Invalid(InvalidKind::Timeout, why) => {
                assert!(why.contains("executed bundles"), "{why}");
                assert!(why.contains("the bundle bound"), "{why}");
                assert!(why.contains("1069660 executed bundles"), "{why}");
            }
            other => panic!("{body}: {other:?}"),
        }
        assert!(
            started.elapsed().as_secs() < 20,
            "{body}: {:?}",
            started.elapsed()
        );
    }
    // A loop that costs a cycle per bundle still hits the cycle bound, and says so.
    let program =
        Program::parse(br#"{"format": "rdbench-vliw/1", "bundles": [{"flow": [["jump", 0]]}]}"#)
            .unwrap();
    match judge(&program, &params, TINY_START_CYCLES, 7) {
        Verdict::Invalid(InvalidKind::Timeout, why) => {
            assert!(why.contains("the cycle bound"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_empty_program_is_wrong_and_the_first_wrong_walker_is_named() {
    let params = Params::tiny();
    let Verdict::Invalid(k, why) = judge(&Program::default(), &params, TINY_START_CYCLES, 99)
    else {
        panic!("an empty program is wrong");
    };
    assert_eq!(k, InvalidKind::WrongOutput);
    assert!(
        why.contains("input 1 of 8") && why.contains("walker 0"),
        "{why}"
    );
    assert!(why.contains("32 of 32"), "{why}");
}

#[test]
fn hostile_files_in_place_of_the_program_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Missing.
    assert_eq!(
        kind(&score_dir(d, "tiny", 1)),
        Some(InvalidKind::MissingFile)
    );
    // A symbolic link to a real program.
    let elsewhere = d.join("elsewhere.json");
    std::fs::write(
        &elsewhere,
        solution_program(Solution::Reference, "tiny")
            .unwrap()
            .to_json(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&elsewhere, d.join(SUBMISSION)).unwrap();
    assert_eq!(
        kind(&score_dir(d, "tiny", 1)),
        Some(InvalidKind::MissingFile)
    );
    std::fs::remove_file(d.join(SUBMISSION)).unwrap();
    // A FIFO (opening it must not block).
    let fifo = std::ffi::CString::new(d.join(SUBMISSION).to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert_eq!(
        kind(&score_dir(d, "tiny", 1)),
        Some(InvalidKind::MissingFile)
    );
    std::fs::remove_file(d.join(SUBMISSION)).unwrap();
    // Over the size cap (sparse: costs no disk).
    let f = std::fs::File::create(d.join(SUBMISSION)).unwrap();
    f.set_len(rdbench_vliw::program::MAX_PROGRAM_BYTES + 1)
        .unwrap();
    assert_eq!(kind(&score_dir(d, "tiny", 1)), Some(InvalidKind::TooLarge));
}

#[test]
fn the_instructions_render_for_every_profile_with_the_right_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let task = rdbench_task_tree_traversal::task();
    for profile in ["tiny", "full", "original"] {
        let attempt = prepared(&task, profile, dir.path());
        let text = std::fs::read_to_string(attempt.join("INSTRUCTIONS.md")).unwrap();
        assert!(!text.contains("{{"), "{profile}");
        let bounds = rdbench_task_tree_traversal::run_bounds(match profile {
            "tiny" => TINY_START_CYCLES,
            "full" => FULL_START_CYCLES,
            _ => 147_734,
        });
        let shown = |n: u64| rdbench_core::template::thousands(n as i64);
        assert!(
            text.contains(&shown(bounds.bundles)),
            "{profile}: bundle bound"
        );
        assert!(
            text.contains(&shown(bounds.cycles)),
            "{profile}: cycle bound"
        );
        let params: Params =
            serde_json::from_str(&std::fs::read_to_string(attempt.join("params.json")).unwrap())
                .unwrap();
        assert_eq!(params, Params::preset(profile).unwrap());
        if profile == "original" {
            assert!(text.contains("1,363") && text.contains("147,734"));
        } else {
            assert!(!text.contains("1,363"));
        }
    }
}
