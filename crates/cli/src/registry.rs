//! The tasks this binary knows. Adding a task crate: add it as a dependency and one line here;
//! a crate may contribute several tasks (an op family). A task whose reference solution is a
//! crate of its own that uses the task's types gets it here, so the task crate never contains it.

use rdbench_core::task::Task;
use rdbench_core::{Error, Result};

/// Every task, in listing order.
pub fn all() -> Vec<Box<dyn Task>> {
    [
        rdbench_task_prefix_sum::tasks(),
        rdbench_task_fix_embedding::tasks(),
        rdbench_task_ops::tasks(),
        rdbench_task_cuda_backtest::tasks(),
        rdbench_task_tree_traversal::tasks(),
        rdbench_task_restricted_mlm::tasks(rdbench_reference_restricted_mlm::REFERENCE),
        rdbench_task_scaling_law::tasks(rdbench_reference_scaling_law::REFERENCE),
        rdbench_task_optimize_train::tasks(),
        rdbench_task_codecontests_scaffold::tasks(),
        rdbench_task_finetune_qa::tasks(rdbench_reference_finetune_qa::REFERENCE),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A task by name, or a usage error listing the names.
pub fn find(name: &str) -> Result<Box<dyn Task>> {
    let tasks = all();
    let names: Vec<String> = tasks.iter().map(|t| t.info().name).collect();
    tasks
        .into_iter()
        .find(|t| t.info().name == name)
        .ok_or_else(|| {
            Error::Usage(format!(
                "unknown task {name:?}; the tasks are: {}",
                names.join(", ")
            ))
        })
}
