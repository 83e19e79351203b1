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

/// A task's trusted kernels, `kernels/<task>/harness.cu`; with `prelude = [<repo path>, ..]`,
/// those files go first, in that order (shared trusted code: the splitmix64 hash, a family's
/// generator). The compile checks read files alone, so each file of the chain names the one before
/// it on its first line, `// rdbench-prelude: <repo path>`, and the first names none; the build
/// fails where the chain and those lines disagree.
#[macro_export]
macro_rules! kernel_harness {
    ($task:literal $(, prelude = [$($prelude:literal),+ $(,)?])?) => {{
        const _: () = assert!(
            $crate::kernel_task::prelude_chain_holds(&[
                $($(($prelude, $crate::repo_file!($prelude)),)+)?
                (
                    concat!("kernels/", $task, "/harness.cu"),
                    $crate::repo_file!(concat!("kernels/", $task, "/harness.cu"))
                ),
            ]),
            concat!(
                "kernels/", $task, "/harness.cu: its prelude chain disagrees with the ",
                "`// rdbench-prelude:` first lines of its files"
            )
        );
        $crate::kernel_task::HarnessSource {
            name: concat!("kernels/", $task, "/harness.cu"),
            source: concat!(
                $($($crate::repo_file!($prelude),)+)?
                $crate::repo_file!(concat!("kernels/", $task, "/harness.cu"))
            ),
        }
    }};
}

/// Whether each `(repo path, text)` of a harness's chain names the one before it as its prelude
/// on its first line, and the first names none ([`kernel_harness!`]'s check, at compile time).
pub const fn prelude_chain_holds(chain: &[(&str, &str)]) -> bool {
    let mut k = 0;
    while k < chain.len() {
        let holds = match names_prelude(chain[k].1.as_bytes()) {
            None => k == 0,
            Some(path) => k > 0 && bytes_eq(path, chain[k - 1].0.as_bytes()),
        };
        if !holds {
            return false;
        }
        k += 1;
    }
    true
}

/// The path a text's first line `// rdbench-prelude: <path>` names, if it has that line.
const fn names_prelude(text: &[u8]) -> Option<&[u8]> {
    let mark = PRELUDE_MARK.as_bytes();
    if text.len() < mark.len() {
        return None;
    }
    let (head, rest) = text.split_at(mark.len());
    if !bytes_eq(head, mark) {
        return None;
    }
    let mut end = 0;
    while end < rest.len() && rest[end] != b'\n' {
        end += 1;
    }
    let mut path = rest.split_at(end).0;
    while let [head @ .., b' ' | b'\t' | b'\r'] = path {
        path = head;
    }
    Some(path)
}

const PRELUDE_MARK: &str = "// rdbench-prelude: ";

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A task's [`KernelSources`](crate::kernel_task::KernelSources) by its name: the solutions of
/// [`kernel_solutions!`] and the harness of [`kernel_harness!`] (the same options: `fastest`,
/// `prelude = [<repo path>, ..]`).
#[macro_export]
macro_rules! kernel_sources {
    ($task:literal $(, prelude = [$($prelude:literal),+ $(,)?])?) => {
        $crate::kernel_task::KernelSources {
            solutions: $crate::kernel_solutions!($task),
            harness: $crate::kernel_harness!($task $(, prelude = [$($prelude),+])?),
        }
    };
    ($task:literal, fastest $(, prelude = [$($prelude:literal),+ $(,)?])?) => {
        $crate::kernel_task::KernelSources {
            solutions: $crate::kernel_solutions!($task, fastest),
            harness: $crate::kernel_harness!($task $(, prelude = [$($prelude),+])?),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::prelude_chain_holds;

    #[test]
    fn a_chain_holds_when_each_file_names_the_one_before() {
        let hash = ("h.cu", "// the hash\nint h;\n");
        let family = ("f.cu", "// rdbench-prelude: h.cu\r\nint f;\n");
        let harness = ("t.cu", "// rdbench-prelude: f.cu\nint t;\n");
        assert!(prelude_chain_holds(&[("t.cu", "int t;\n")]));
        assert!(prelude_chain_holds(&[hash, family, harness]));
        // a file left out, a file too many, a different order, a first file naming a prelude
        assert!(!prelude_chain_holds(&[hash, harness]));
        assert!(!prelude_chain_holds(&[harness]));
        assert!(!prelude_chain_holds(&[family, hash, harness]));
        assert!(!prelude_chain_holds(&[family, harness]));
        assert!(!prelude_chain_holds(&[hash, family, ("t.cu", "int t;\n")]));
    }
}
