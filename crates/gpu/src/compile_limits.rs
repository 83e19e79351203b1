//! What a compiler child process may use (NVRTC on untrusted source, the emulator's host
//! compiler): the address space (`RLIMIT_AS`), CPU time (`RLIMIT_CPU`), no core dumps, a
//! wall clock, and the most log text kept. The children themselves run through
//! [`rdbench_runner::Command`], which sets the limits, kills at the wall clock and classifies
//! the ending; [`CompileLimits::ended_at_a_limit`] turns a limit's ending into the error
//! callers report.
//!
//! A compiler is the one place an agent's source can make the scorer do unbounded work before
//! anything runs: an exponential template instantiation drives NVRTC to gigabytes (5 GB in
//! 25 s for 2^18 instantiations, measured). A time limit alone does not bound memory, so the
//! compile runs in a child that the kernel stops at the limit; the parent only sees a child
//! that failed or died, and reports it as a [`GpuError::ResourceLimit`].

use std::time::Duration;

use rdbench_runner::{Exit, Limit, Outcome};

use crate::GpuError;

/// What a compiler child may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileLimits {
    /// Address space of the child, bytes (`RLIMIT_AS`): virtual, so it includes the mapped
    /// compiler library and thread stacks, not only the heap.
    pub address_space: u64,
    /// CPU seconds (`RLIMIT_CPU`, soft; the hard limit is [`rdbench_runner::CPU_GRACE`]
    /// above it, so SIGXCPU comes first and SIGKILL only if that is ignored). A backstop
    /// behind `wall`.
    pub cpu: Duration,
    /// Wall-clock time after which the child and everything it started are killed.
    pub wall: Duration,
    /// Most bytes of compiler log kept; a longer log is cut and says so.
    pub max_log_bytes: usize,
}

/// Default address-space limit of a compile: a normal kernel's compile peaks far below it
/// (NVRTC maps about 0.3 GB and uses tens of MB), the template bomb would take 5 GB and more.
pub const DEFAULT_ADDRESS_SPACE: u64 = 3 << 30;
/// Default wall-clock limit, the same as the submission checks' compile timeout.
pub const DEFAULT_WALL: Duration = crate::submission::COMPILE_TIMEOUT;
/// Default log cap.
pub const DEFAULT_MAX_LOG_BYTES: usize = 64 * 1024;

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            address_space: DEFAULT_ADDRESS_SPACE,
            // Above the wall clock: a single-threaded compiler cannot use more CPU than wall
            // time, so the wall clock fires first and names the limit; this one catches a
            // child whose parent is no longer watching.
            cpu: DEFAULT_WALL + Duration::from_secs(15),
            wall: DEFAULT_WALL,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
        }
    }
}

impl CompileLimits {
    /// The limits in words, for messages: `3.0 GiB address space, 60 s`.
    pub fn describe(&self) -> String {
        format!(
            "{} address space, {} s wall clock, {} s CPU",
            gib(self.address_space),
            self.wall.as_secs(),
            self.cpu.as_secs()
        )
    }

    /// The rlimits of a compiler child (address space, CPU, no core file); the wall clock is
    /// the command's deadline.
    pub fn runner_limits(&self) -> rdbench_runner::Limits {
        rdbench_runner::Limits {
            address_space: Some(self.address_space),
            cpu: Some(self.cpu),
            core_dumps: false,
            ..Default::default()
        }
    }

    /// A compiler child `Command` for `program` under these limits: rlimits, the wall clock
    /// as its deadline, stderr captured (its last `stderr_tail` bytes kept).
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        stderr_tail: usize,
    ) -> rdbench_runner::Command<'static> {
        let mut cmd = rdbench_runner::Command::new(program);
        cmd.limits(self.runner_limits())
            .deadline(self.wall)
            .stderr(rdbench_runner::Output::Capture { tail: stderr_tail });
        cmd
    }

    /// The error for a compile of `name` by `compiler` (words for messages: "the compiler")
    /// that ended at one of these limits: the wall clock, CPU time, or an allocation that
    /// failed and said so; `None` for any other ending (the caller reads its output).
    /// `shown` is what of the compiler's output the message may carry: a compiler's own log
    /// only after [`filter_log`](crate::compile_log::filter_log), since it quotes other files.
    pub fn ended_at_a_limit(
        &self,
        name: &str,
        compiler: &str,
        outcome: &Outcome,
        shown: &str,
    ) -> Option<GpuError> {
        let over = |limit: String, detail: String| GpuError::ResourceLimit {
            name: name.into(),
            limit,
            detail,
        };
        let peak = gib(outcome.usage.peak_rss);
        let secs = outcome.wall.as_secs_f64();
        Some(match outcome.exit {
            Exit::TimedOut => over(
                format!("{} s wall clock", self.wall.as_secs()),
                format!(
                    "{compiler} was still running after {} s (peak memory {peak}) and was killed",
                    self.wall.as_secs()
                ),
            ),
            Exit::LimitHit(Limit::Cpu) => over(
                format!("{} s CPU", self.cpu.as_secs()),
                format!(
                    "{compiler} used {:.1} s of CPU time in {secs:.1} s and was stopped{}",
                    outcome.usage.cpu().as_secs_f64(),
                    output_suffix(shown)
                ),
            ),
            Exit::LimitHit(Limit::AddressSpace) => over(
                format!("{} address space", gib(self.address_space)),
                format!(
                    "{compiler} ran out of memory after {secs:.1} s at peak memory {peak}{}",
                    output_suffix(shown)
                ),
            ),
            Exit::LimitHit(other) => over(
                self.describe(),
                format!("{compiler} stopped at its {other} limit"),
            ),
            Exit::Exited(_) | Exit::Signaled(_) => return None,
        })
    }
}

/// A child's captured stderr as text for a message, saying so when its start was cut.
pub(crate) fn stderr_text(outcome: &Outcome) -> String {
    let text = outcome.stderr.text();
    if outcome.stderr.complete() {
        text
    } else {
        format!("[the last {} bytes]\n{text}", outcome.stderr.tail.len())
    }
}

/// `; its output:` and `shown`, or nothing when that is empty.
pub(crate) fn output_suffix(shown: &str) -> String {
    if shown.trim().is_empty() {
        String::new()
    } else {
        format!("; its output:\n{shown}")
    }
}

/// Bytes in GiB with one decimal, for messages.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_starts_under_the_limits() {
        // The limits reach the exec'd program, as its shell reports them.
        let limits = CompileLimits {
            address_space: 64 << 20,
            ..CompileLimits::default()
        };
        let mut cmd = limits.command("sh", 4096);
        cmd.arg("-c")
            .arg("ulimit -v; ulimit -c; ulimit -t")
            .stdout(rdbench_runner::Output::Capture { tail: 4096 });
        let out = cmd.run().unwrap();
        assert_eq!(out.exit, Exit::Exited(0), "{}", out.stderr.text());
        let text = out.stdout.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            ["65536", "0", "75"],
            "ulimit -v (KiB), -c, -t: {text}"
        );
    }

    #[test]
    fn the_wall_clock_and_the_cpu_limit_are_resource_limits() {
        let limits = CompileLimits {
            cpu: Duration::from_secs(1),
            wall: Duration::from_millis(500),
            ..CompileLimits::default()
        };
        let sleeping = limits.command("sleep", 4096).arg("30").run().unwrap();
        match limits.ended_at_a_limit("x.cu", "the compiler", &sleeping, "") {
            Some(GpuError::ResourceLimit { limit, detail, .. }) => {
                assert_eq!(limit, "0 s wall clock");
                assert!(detail.contains("was killed"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let limits = CompileLimits {
            wall: Duration::from_secs(30),
            ..limits
        };
        let spinning = limits
            .command("sh", 4096)
            .args(["-c", "while :; do :; done"])
            .run()
            .unwrap();
        match limits.ended_at_a_limit("x.cu", "the compiler", &spinning, "") {
            Some(GpuError::ResourceLimit { limit, .. }) => assert_eq!(limit, "1 s CPU"),
            other => panic!("{other:?}"),
        }
        let fine = limits.command("true", 4096).run().unwrap();
        assert!(limits
            .ended_at_a_limit("x.cu", "the compiler", &fine, "")
            .is_none());
    }
}
