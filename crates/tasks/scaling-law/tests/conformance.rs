//! The conformance kit (`rdbench_core::conformance`) on this crate's tasks, as `rdbench
//! check-task` runs it.

#[test]
fn every_task_of_the_crate_passes_the_conformance_kit() {
    rdbench_core::conformance::assert_all_conformant(
        rdbench_task_scaling_law::tasks(rdbench_reference_scaling_law::REFERENCE),
        "tiny",
    );
}
