//! Resource limits for compiler child processes (NVRTC on untrusted source, the emulator's host
//! compiler): the address space (`RLIMIT_AS`), CPU time (`RLIMIT_CPU`), no core dumps, a
//! wall-clock limit the parent enforces, and the most log text kept.
//!
//! A compiler is the one place an agent's source can make the scorer do unbounded work before
//! anything runs: an exponential template instantiation drives NVRTC to gigabytes (5 GB in
//! 25 s for 2^18 instantiations, measured). A time limit alone does not bound memory, so the
//! compile runs in a child that the kernel stops at the limit; the parent only sees a child
//! that failed or died, and reports it as a [`GpuError::ResourceLimit`](crate::GpuError).

use std::time::Duration;

/// What a compiler child may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileLimits {
    /// Address space of the child, bytes (`RLIMIT_AS`): virtual, so it includes the mapped
    /// compiler library and thread stacks, not only the heap.
    pub address_space: u64,
    /// CPU seconds (`RLIMIT_CPU`, soft; the hard limit is a few seconds above it, so SIGXCPU
    /// comes first and SIGKILL only if that is ignored). A backstop behind `wall`.
    pub cpu: Duration,
    /// Wall-clock time after which the parent kills the child.
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

    /// Makes `cmd`'s child start under these limits (address space, CPU, no core file), in its
    /// own process group (so that killing the group stops a compiler driver's subprocesses
    /// too), and killed when the thread that spawned it dies.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let address_space = self.address_space as libc::rlim_t;
        let cpu = self.cpu.as_secs().max(1) as libc::rlim_t;
        // SAFETY: runs in the forked child before exec and calls only async-signal-safe
        // functions (setrlimit, setpgid, prctl, getppid, _exit) on values computed before fork.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                let set = |resource, soft: libc::rlim_t, hard: libc::rlim_t| {
                    let lim = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(resource, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                };
                set(libc::RLIMIT_AS, address_space, address_space)?;
                set(libc::RLIMIT_CPU, cpu, cpu + 5)?;
                set(libc::RLIMIT_CORE, 0, 0)?;
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                #[cfg(target_os = "linux")]
                {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The parent may have died between fork and prctl.
                    if libc::getppid() != parent {
                        libc::_exit(137);
                    }
                }
                #[cfg(not(target_os = "linux"))]
                let _ = parent;
                Ok(())
            });
        }
    }
}

/// Kills the process group `pgid` led by a child started under [`CompileLimits::apply`].
/// Call only before the child has been reaped (its id cannot have been reused then).
pub fn kill_group(pgid: u32) {
    // SAFETY: plain kill(2) on a negative pid: the group the unreaped child leads.
    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
}

/// Bytes in GiB with one decimal, for messages.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Cuts `log` to at most `max` bytes (on a character boundary) and says so.
pub fn cap_log(mut log: String, max: usize) -> String {
    if log.len() <= max {
        return log;
    }
    let total = log.len();
    let mut cut = max;
    while !log.is_char_boundary(cut) {
        cut -= 1;
    }
    log.truncate(cut);
    log.push_str(&format!("\n[log cut: {total} bytes, the first {cut} kept]"));
    log
}

/// Keeps only the lines of a compiler's log that are about the submission `name`: a
/// diagnostic that names another file (NVRTC's `file(3): error`, GCC's `file:3:5: error`,
/// `In file included from file:3`, `file: In function`) is dropped with the source excerpt
/// and notes that follow it, and a note at the end says how many lines went. The log is what
/// the agent reads, and a compiler quotes the lines of whatever file it reports on: only the
/// submission's own text may come back. Lines before the first diagnostic (NVRTC's option
/// errors) and the error summary naming the submission are kept.
pub fn filter_log(log: &str, name: &str) -> String {
    let summary = format!("detected in the compilation of \"{name}\"");
    let mut keep = true;
    let mut dropped = 0usize;
    let mut out = String::with_capacity(log.len());
    for line in log.split_inclusive('\n') {
        if let Some(file) = diagnostic_file(line, name) {
            keep = file == name;
        }
        if keep || line.contains(&summary) {
            out.push_str(line);
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "[{dropped} log lines about files other than {name} removed]\n"
        ));
    }
    out
}

/// The file a diagnostic line names, if the line starts one. A file other than `name` must
/// be one word, so that a quoted source line such as `  x = f(1): y` is not taken for one.
fn diagnostic_file<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let l = line.trim_start();
    let l = l
        .strip_prefix("In file included from ")
        .or_else(|| l.strip_prefix("from "))
        .unwrap_or(l);
    let b = l.as_bytes();
    let digits_then = |from: usize, ends: &[u8]| {
        let n = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        n > 0 && (from + n == b.len() || ends.contains(&b[from + n]))
    };
    let end = (0..b.len()).find(|&i| match b[i] {
        // NVRTC: `file(12): error: ...`
        b'(' => {
            let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            n > 0 && b[i + 1 + n..].starts_with(b"):")
        }
        // GCC: `file:12:3: error`, `from file:12,` and `file: In function 'f':`
        b':' => {
            digits_then(i + 1, b":,\r\n")
                || l[i + 1..].starts_with(" In ")
                || l[i + 1..].starts_with(" At ")
        }
        _ => false,
    })?;
    let file = &l[..end];
    (file == name || (!file.is_empty() && !file.contains(char::is_whitespace))).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_log_keeps_only_the_submissions_own_diagnostics() {
        // NVRTC quoting an included file's lines (what the red team read the key through).
        let nvrtc = "solution.cu(3): warning: something\n  int x = f(1): y;\n      ^\n\n\
            /etc/passwd(1): error: expected a declaration\n  root:x:0:0:root:/root:/bin/bash\n  ^\n\n\
            /proc/self/environ(1): error: bad\n  SECRET=hunter2\n\n\
            solution.cu(9): error: identifier \"q\" is undefined\n    q = 1;\n    ^\n\n\
            3 errors detected in the compilation of \"solution.cu\".\n";
        let kept = filter_log(nvrtc, "solution.cu");
        assert!(!kept.contains("root:"), "{kept}");
        assert!(!kept.contains("hunter2"), "{kept}");
        assert!(!kept.contains("/etc/passwd"), "{kept}");
        assert!(kept.contains("solution.cu(3): warning"), "{kept}");
        assert!(
            kept.contains("int x = f(1): y;"),
            "an excerpt is not a header: {kept}"
        );
        assert!(kept.contains("q = 1;"), "{kept}");
        assert!(
            kept.contains("3 errors detected in the compilation of"),
            "{kept}"
        );
        assert!(
            kept.contains("[7 log lines about files other than solution.cu removed]"),
            "{kept}"
        );
        // GCC's format (the emulator), with include chains and function context.
        let gcc = "In file included from /tmp/b/wrapper.cpp:4:\n\
            attempt/solution.cu: In function 'void k()':\n\
            attempt/solution.cu:5:3: error: 'q' was not declared\n    5 |   q = 1;\n\
            /usr/include/secret.h:1:1: error: bad\n    1 | KEY=42\n\
            In file included from /tmp/b/cuda_emu.h:2,\n                 from /tmp/b/wrapper.cpp:1:\n\
            /usr/include/x.h:3: note: here\n";
        let kept = filter_log(gcc, "attempt/solution.cu");
        assert!(kept.contains("'q' was not declared"), "{kept}");
        assert!(kept.contains("5 |   q = 1;"), "{kept}");
        assert!(kept.contains("In function 'void k()'"), "{kept}");
        assert!(
            !kept.contains("KEY=42")
                && !kept.contains("/usr/include")
                && !kept.contains("wrapper.cpp"),
            "{kept}"
        );
        // Nothing to drop: unchanged.
        assert_eq!(
            filter_log("x.cu(1): error: e\n", "x.cu"),
            "x.cu(1): error: e\n"
        );
        assert_eq!(
            filter_log("nvrtc: error: invalid option\n", "x.cu"),
            "nvrtc: error: invalid option\n"
        );
    }

    #[test]
    fn cap_log_cuts_on_a_char_boundary_and_says_so() {
        assert_eq!(cap_log("short".into(), 10), "short");
        let cut = cap_log("ééééé".into(), 3); // 10 bytes, 'é' is two
        assert!(
            cut.starts_with("é\n[log cut: 10 bytes, the first 2 kept]"),
            "{cut}"
        );
    }

    #[test]
    fn a_child_starts_under_the_limits() {
        // The limits reach the exec'd program, as its shell reports them.
        let limits = CompileLimits {
            address_space: 64 << 20,
            ..CompileLimits::default()
        };
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg("ulimit -v; ulimit -c; ulimit -t");
        limits.apply(&mut cmd);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            ["65536", "0", "75"],
            "ulimit -v (KiB), -c, -t: {text}"
        );
    }
}
