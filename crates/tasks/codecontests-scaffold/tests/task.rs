//! The task through its `Task` interface, without scoring (scoring trains the model and runs
//! the sandbox: `rdbench check-task codecontests-scaffold` and tests/protected.rs do that).

use rdbench_core::task::{
    profile_of, InvalidKind, PrepareRequest, ProfileInfo, ScoreRequest, Solution,
};

fn tiny() -> ProfileInfo {
    profile_of(
        rdbench_task_codecontests_scaffold::tasks()[0].as_ref(),
        "tiny",
    )
    .unwrap()
}

fn request(dir: &std::path::Path) -> ScoreRequest {
    ScoreRequest {
        profile: tiny(),
        submission_dir: dir.to_path_buf(),
        private_dir: dir.join("private"),
        cache_dir: dir.join("cache"),
        samples_path: dir.join("samples.json"),
        seed: 1,
        execution: Default::default(),
    }
}

#[test]
fn every_task_of_the_crate_passes_the_conformance_kit() {
    rdbench_core::conformance::assert_all_conformant(
        rdbench_task_codecontests_scaffold::tasks(),
        "tiny",
    );
}

/// The attempt's folder: the starting scaffold, the evaluator copy, the visible problems with
/// all their tests (none held out), and instructions that name the rules' numbers.
#[test]
fn an_attempt_starts_with_the_scaffold_the_visible_problems_and_the_rules() {
    let task = &rdbench_task_codecontests_scaffold::tasks()[0];
    let tmp = tempfile::tempdir().unwrap();
    let attempt = tmp.path().join("attempt");
    std::fs::create_dir_all(&attempt).unwrap();
    task.prepare(&PrepareRequest {
        profile: tiny(),
        attempt_dir: attempt.clone(),
        private_dir: tmp.path().join("private"),
        cache_dir: tmp.path().join("cache"),
    })
    .unwrap();
    for file in [
        "solution/solve.py",
        "solution/rust_eval.py",
        "INSTRUCTIONS.md",
    ] {
        assert!(attempt.join(file).is_file(), "{file}");
    }
    let visible = std::fs::read_to_string(attempt.join("problems/visible.jsonl")).unwrap();
    let problems: Vec<rdbench_contests::Problem> = visible
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(problems.len(), 96);
    assert!(problems
        .iter()
        .all(|p| p.combo().split() == rdbench_contests::problems::Split::Visible));
    let text = std::fs::read_to_string(attempt.join("INSTRUCTIONS.md")).unwrap();
    for part in [
        "rdbench-code-tiny",
        "150000",
        "127.0.0.1:8000",
        "generate_solution",
    ] {
        assert!(text.contains(part), "INSTRUCTIONS.md lacks {part}");
    }
    let unfilled = text.split('{').skip(1).find(|rest| {
        let name: String = rest.chars().take_while(|c| *c != '}').collect();
        // `{statement}` is the tool's own placeholder, for the agent to type.
        !name.is_empty()
            && name != "statement"
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    });
    assert!(unfilled.is_none(), "an unfilled placeholder: {unfilled:?}");
}

/// Refused before anything runs: a folder without an entry point, a link in the tree.
#[test]
fn a_scaffold_without_an_entry_point_or_with_a_link_is_refused_unrun() {
    let task = &rdbench_task_codecontests_scaffold::tasks()[0];
    let tmp = tempfile::tempdir().unwrap();
    let sol = tmp.path().join("solution");
    std::fs::create_dir_all(&sol).unwrap();
    std::fs::write(sol.join("main.py"), "print(1)\n").unwrap();
    let refused = task.precheck(&request(tmp.path())).unwrap().unwrap();
    assert_eq!(refused.0, InvalidKind::MissingFile, "{refused:?}");

    task.install_solution(Solution::Reference, &tiny(), tmp.path(), tmp.path())
        .unwrap();
    assert_eq!(task.precheck(&request(tmp.path())).unwrap(), None);
    std::os::unix::fs::symlink("/etc", sol.join("etc")).unwrap();
    let refused = task.precheck(&request(tmp.path())).unwrap().unwrap();
    assert_eq!(refused.0, InvalidKind::RuleViolation, "{refused:?}");
}
