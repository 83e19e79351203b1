//! The generator checked by the evaluator: for every template and parameter, the reference
//! solution passes every test of a problem and each wrong variant fails at least one.

mod common;

use rdbench_contests::problems::solutions::{reference, wrong_variants};
use rdbench_contests::problems::{Combo, Problem, TemplateId};
use rdbench_contests::TestGroups;

fn check_template(template: TemplateId) {
    let Some(evaluator) = common::evaluator() else {
        return;
    };
    for &parameter in template.parameters() {
        let combo = Combo {
            template,
            parameter,
            phrasing: 0,
        };
        let problem = Problem::from_seed(combo, 11);
        let source = reference(template, parameter);
        let e = evaluator.evaluate(&source, &problem).unwrap();
        println!(
            "{template:?} {parameter}: compile {:.2} s, {} tests {:.2} s",
            e.compile_seconds,
            problem.all_tests().count(),
            e.tests_seconds
        );
        assert!(e.succeeded, "{template:?} {parameter}: {e:#?}\n{source}");
        for wrong in wrong_variants(template, parameter) {
            let e = evaluator.evaluate(&wrong.source, &problem).unwrap();
            assert!(
                e.compiled,
                "{template:?} {parameter} {:?}: {}",
                wrong.mistake, e.stderr
            );
            assert!(
                !e.succeeded,
                "{template:?} {parameter} {:?} passed every test:\n{}",
                wrong.mistake, wrong.source
            );
        }
    }
}

#[test]
fn sum_mod() {
    check_template(TemplateId::SumMod);
}
#[test]
fn extreme() {
    check_template(TemplateId::Extreme);
}
#[test]
fn count_divisible() {
    check_template(TemplateId::CountDivisible);
}
#[test]
fn count_above() {
    check_template(TemplateId::CountAbove);
}
#[test]
fn reverse() {
    check_template(TemplateId::Reverse);
}
#[test]
fn parity() {
    check_template(TemplateId::Parity);
}
#[test]
fn gcd_lcm() {
    check_template(TemplateId::GcdLcm);
}
#[test]
fn running_sum() {
    check_template(TemplateId::RunningSum);
}
#[test]
fn count_letter() {
    check_template(TemplateId::CountLetter);
}
#[test]
fn digits() {
    check_template(TemplateId::Digits);
}
