//! A kernel task's files, found by the task's name: one name in every tree of the repository.
//!
//! | what | where |
//! |---|---|
//! | trusted harness kernels | `kernels/<task>/harness.cu` |
//! | the starting solution | `kernels/<task>/start/{solution.cu,launch.toml}` |
//! | the reference (and the fastest version, if any) | `reference_solutions/<task>/{reference,fastest}/` |
//! | the exploit corpus | `tests/exploits/<task>/` |
//!
//! The files are embedded when the task crate compiles (a scorer must not depend on a checkout
//! at run time). Every task crate sits three folders below the repository root
//! (`crates/tasks/<crate>/`), which is what these macros assume.

/// A file of the repository, by its path from the repository root, embedded as a `&str`.
#[macro_export]
macro_rules! repo_file {
    ($path:expr) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../", $path))
    };
}

/// `solution.cu` and `launch.toml` of one solution folder (path parts from the repository
/// root, concatenated).
#[macro_export]
macro_rules! kernel_files {
    ($($part:expr),+) => {
        $crate::kernel_task::KernelFiles {
            source: $crate::repo_file!(concat!($($part),+, "/solution.cu")),
            plan: $crate::repo_file!(concat!($($part),+, "/launch.toml")),
        }
    };
}

/// A task's shipped solutions, by the task's name: `kernels/<task>/start/` and
/// `reference_solutions/<task>/reference/`; with `fastest`, also
/// `reference_solutions/<task>/fastest/`.
#[macro_export]
macro_rules! kernel_solutions {
    ($task:literal) => {
        $crate::kernel_task::KernelSolutions {
            start: $crate::kernel_files!("kernels/", $task, "/start"),
            reference: $crate::kernel_files!("reference_solutions/", $task, "/reference"),
            fastest: None,
        }
    };
    ($task:literal, fastest) => {
        $crate::kernel_task::KernelSolutions {
            start: $crate::kernel_files!("kernels/", $task, "/start"),
            reference: $crate::kernel_files!("reference_solutions/", $task, "/reference"),
            fastest: Some($crate::kernel_files!(
                "reference_solutions/",
                $task,
                "/fastest"
            )),
        }
    };
}

/// A task's trusted kernels, `kernels/<task>/harness.cu`; with `prelude = "<repo path>"`, that
/// file's text goes first (a family's shared generator; the harness names it on its first line,
/// `// rdbench-prelude: <repo path>`, for the compile checks that read files alone).
#[macro_export]
macro_rules! kernel_harness {
    ($task:literal) => {
        $crate::kernel_task::HarnessSource {
            name: concat!("kernels/", $task, "/harness.cu"),
            source: $crate::repo_file!(concat!("kernels/", $task, "/harness.cu")),
        }
    };
    ($task:literal, prelude = $prelude:literal) => {
        $crate::kernel_task::HarnessSource {
            name: concat!("kernels/", $task, "/harness.cu"),
            source: concat!(
                $crate::repo_file!($prelude),
                $crate::repo_file!(concat!("kernels/", $task, "/harness.cu"))
            ),
        }
    };
}

/// A task's [`KernelSources`](crate::kernel_task::KernelSources) by its name: the solutions of
/// [`kernel_solutions!`] and the harness of [`kernel_harness!`] (the same options: `fastest`,
/// `prelude = "<repo path>"`).
#[macro_export]
macro_rules! kernel_sources {
    ($task:literal) => {
        $crate::kernel_task::KernelSources {
            solutions: $crate::kernel_solutions!($task),
            harness: $crate::kernel_harness!($task),
        }
    };
    ($task:literal, fastest) => {
        $crate::kernel_task::KernelSources {
            solutions: $crate::kernel_solutions!($task, fastest),
            harness: $crate::kernel_harness!($task),
        }
    };
    ($task:literal, prelude = $prelude:literal) => {
        $crate::kernel_task::KernelSources {
            solutions: $crate::kernel_solutions!($task),
            harness: $crate::kernel_harness!($task, prelude = $prelude),
        }
    };
}
