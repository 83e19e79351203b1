//! What a compiler says that comes back to the agent: only the diagnostics about the
//! submission's own file ([`filter_log`]), cut to a size ([`cap_log`]). A compiler quotes the
//! lines of whatever file it reports on, so a log about an included file would carry that
//! file's content (the red team read the service's environment this way).

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
    filter_lines(log, name, true)
}

/// As [`filter_log`], for the end of a log whose beginning was not kept (a capture's tail):
/// the lines before its first diagnostic may be the rest of one about another file, so they
/// go too.
pub fn filter_log_tail(log: &str, name: &str) -> String {
    filter_lines(log, name, false)
}

fn filter_lines(log: &str, name: &str, keep_leading: bool) -> String {
    let summary = format!("detected in the compilation of \"{name}\"");
    let mut keep = keep_leading;
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
    fn a_cut_log_loses_its_lines_before_the_first_diagnostic() {
        // The tail of a log that began inside a quote of another file.
        let tail = "  SECRET=hunter2\n\nx.cu(2): error: e\n  y = 1;\n";
        let kept = filter_log_tail(tail, "x.cu");
        assert!(!kept.contains("hunter2"), "{kept}");
        assert!(kept.starts_with("x.cu(2): error: e\n  y = 1;\n"), "{kept}");
        assert!(
            kept.contains("[2 log lines about files other than x.cu removed]"),
            "{kept}"
        );
        // From the start, the same leading lines are NVRTC's own (option errors): kept.
        assert!(filter_log(tail, "x.cu").contains("hunter2"));
    }
}
