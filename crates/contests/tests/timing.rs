//! The evaluator's cost per problem: compile plus every test, for the reference solutions of
//! ten visible problems, one after another. Ignored by default (it only measures):
//! `cargo test -p rdbench-contests --test timing -- --ignored --nocapture`.

mod common;

use rdbench_contests::problems::solutions::reference;
use rdbench_contests::visible;
use rdbench_contests::TestGroups;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "a measurement, not a check"]
fn evaluation_time_per_problem() {
    let Some(evaluator) = common::evaluator() else {
        return;
    };
    let (mut compile, mut per_test, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for problem in visible(0, 10).unwrap() {
        let tests = problem.all_tests().count();
        let e = evaluator
            .evaluate(&reference(problem.template, problem.parameter), &problem)
            .unwrap();
        assert!(e.succeeded, "{}: {e:#?}", problem.name);
        println!(
            "{} ({:?} {}): compile {:.2} s, {tests} tests {:.2} s",
            problem.name, problem.template, problem.parameter, e.compile_seconds, e.tests_seconds
        );
        compile.push(e.compile_seconds);
        per_test.push(e.tests_seconds / tests as f64);
        total.push(e.compile_seconds + e.tests_seconds);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "medians: compile {:.2} s, one test {:.0} ms, a problem {:.2} s (load average {})",
        median(compile),
        median(per_test) * 1000.0,
        median(total),
        load.split_whitespace().next().unwrap_or("?")
    );
}
