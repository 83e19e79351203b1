//! The tasks this binary knows. Adding a task: add its crate as a dependency and a line here.

use rdbench_core::task::Task;
use rdbench_core::{Error, Result};

/// Every task, in listing order.
pub fn all() -> Vec<Box<dyn Task>> {
    vec![
        Box::new(rdbench_task_prefix_sum::PrefixSum::default()),
        Box::new(rdbench_task_fix_embedding::FixEmbedding::default()),
    ]
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
