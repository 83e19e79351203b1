//! Rules a submission's CUDA source must follow before any compiler sees it.
//!
//! - **No includes.** NVRTC resolves `#include "x"` against the compiling process's working
//!   directory and absolute paths, and its error log quotes what it read: `#include
//!   "/etc/passwd"` would put that file into the reason shown to the agent, and the pip NVRTC
//!   ships no headers a kernel could need. So `#include`, `#include_next`, `#import`, `#embed`
//!   (however spelled: `#`, `%:` or `??=`, with line splices and comments in between) and the
//!   `__has_include` / `__has_embed` probes are refused. A submission is one self-contained file.
//! - **Bounded nesting.** Brackets nested deeper than [`MAX_NESTING`] are refused: compilers
//!   parse them recursively, and a 2 KB file of parentheses overflows their stack.
//!
//! The scan is a small lexer (comments, string and character literals, raw strings, line
//! splices), linear in the source and iterative.

/// Deepest bracket nesting (`(`, `[`, `{` together) a submission may use.
pub const MAX_NESTING: usize = 256;

/// A broken rule: the 1-based line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub line: usize,
    pub what: String,
}

const FORBIDDEN_DIRECTIVES: [&str; 4] = ["include", "include_next", "import", "embed"];
const FORBIDDEN_IDENTS: [&str; 3] = ["__has_include", "__has_include_next", "__has_embed"];

/// Checks `source` against the rules.
pub fn check(source: &str) -> Result<(), Violation> {
    // Translation phase 2: splices join lines (a directive may be split across them). Keep a
    // map from positions back to physical lines for the message.
    let mut text: Vec<u8> = Vec::with_capacity(source.len());
    let mut line_of: Vec<usize> = Vec::with_capacity(source.len());
    let bytes = source.as_bytes();
    let (mut i, mut line) = (0, 1);
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let skip = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(b'\n'), _) => 2,
                (Some(b'\r'), Some(b'\n')) => 3,
                _ => 0,
            };
            if skip > 0 {
                i += skip;
                line += 1;
                continue;
            }
        }
        // Trigraph `??=` is `#` (removed in C++17, but refuse it as one anyway).
        if bytes[i..].starts_with(b"??=") {
            text.push(b'#');
            line_of.push(line);
            i += 3;
            continue;
        }
        text.push(bytes[i]);
        line_of.push(line);
        if bytes[i] == b'\n' {
            line += 1;
        }
        i += 1;
    }
    let at = |pos: usize| line_of.get(pos).copied().unwrap_or(line);
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut depth = 0usize;
    let mut line_start = true; // only whitespace (or comments) since the last newline
    let mut i = 0;
    let n = text.len();
    while i < n {
        let c = text[i];
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | 0x0b | 0x0c => i += 1,
            b'/' if text.get(i + 1) == Some(&b'/') => {
                while i < n && text[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if text.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < n && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                    if text[i] == b'\n' {
                        // A block comment spanning lines ends the directive context.
                        line_start = false;
                    }
                    i += 1;
                }
                i = (i + 2).min(n);
            }
            b'#' | b'%' if line_start && (c == b'#' || text.get(i + 1) == Some(&b':')) => {
                let start = i;
                i += if c == b'#' { 1 } else { 2 };
                // Skip spaces and block comments between `#` and the directive's name.
                loop {
                    while i < n && (text[i] == b' ' || text[i] == b'\t') {
                        i += 1;
                    }
                    if text.get(i) == Some(&b'/') && text.get(i + 1) == Some(&b'*') {
                        i += 2;
                        while i < n && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                            i += 1;
                        }
                        i = (i + 2).min(n);
                    } else {
                        break;
                    }
                }
                let name_start = i;
                while i < n && ident_char(text[i]) {
                    i += 1;
                }
                let name = std::str::from_utf8(&text[name_start..i]).unwrap_or("");
                if FORBIDDEN_DIRECTIVES.contains(&name) {
                    return Err(Violation {
                        line: at(start),
                        what: format!(
                            "`#{name}` is not allowed: a submission is one self-contained file, compiled alone with no headers"
                        ),
                    });
                }
                line_start = false;
            }
            b'"' | b'\'' => {
                line_start = false;
                i = skip_quoted(&text, i);
            }
            b'R' if text.get(i + 1) == Some(&b'"')
                && (i == 0 || !ident_char(text[i - 1]) || is_raw_prefix(&text, i)) =>
            {
                line_start = false;
                i = skip_raw_string(&text, i + 1);
            }
            c if ident_char(c) => {
                line_start = false;
                let s = i;
                while i < n && ident_char(text[i]) {
                    i += 1;
                }
                let word = std::str::from_utf8(&text[s..i]).unwrap_or("");
                if FORBIDDEN_IDENTS.contains(&word) {
                    return Err(Violation {
                        line: at(s),
                        what: format!(
                            "`{word}` is not allowed: no file is visible to a submission"
                        ),
                    });
                }
            }
            b'(' | b'[' | b'{' => {
                line_start = false;
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Violation {
                        line: at(i),
                        what: format!("brackets nested deeper than {MAX_NESTING} levels"),
                    });
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                line_start = false;
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => {
                line_start = false;
                i += 1;
            }
        }
    }
    Ok(())
}

/// `u8R"`, `uR"`, `UR"`, `LR"`: an encoding prefix right before the `R`.
fn is_raw_prefix(text: &[u8], r: usize) -> bool {
    let before = &text[..r];
    let prefix_ok = |p: &[u8]| {
        before.ends_with(p)
            && (before.len() == p.len()
                || !(before[before.len() - p.len() - 1].is_ascii_alphanumeric()
                    || before[before.len() - p.len() - 1] == b'_'))
    };
    prefix_ok(b"u8") || prefix_ok(b"u") || prefix_ok(b"U") || prefix_ok(b"L")
}

/// Past the string or character literal starting at `i` (or to the end of its line).
fn skip_quoted(text: &[u8], i: usize) -> usize {
    let quote = text[i];
    let mut j = i + 1;
    while j < text.len() {
        match text[j] {
            b'\\' => j += 2,
            b'\n' => return j,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    text.len()
}

/// Past the raw string whose opening `"` is at `q`: `"delim( ... )delim"`.
fn skip_raw_string(text: &[u8], q: usize) -> usize {
    let Some(open) = text[q..].iter().take(18).position(|&c| c == b'(') else {
        return q + 1;
    };
    let delim = &text[q + 1..q + open];
    let mut close = Vec::with_capacity(delim.len() + 2);
    close.push(b')');
    close.extend_from_slice(delim);
    close.push(b'"');
    let body = q + open + 1;
    text[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map_or(text.len(), |p| body + p + close.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(src: &str) -> Violation {
        check(src).expect_err(src)
    }

    #[test]
    fn every_spelling_of_an_include_is_refused() {
        for src in [
            "#include \"/etc/passwd\"\n",
            "#include <cstdio>\n",
            "  #  include <x>\n",
            "#/* c */include <x>\n",
            "%:include <x>\n",
            "??=include <x>\n",
            "#inc\\\nlude \"secret\"\n",
            "#\\\ninclude \"secret\"\n",
            "#define F \"/proc/self/environ\"\n#include F\n",
            "#include_next <x>\n",
            "#import \"x\"\n",
            "#embed \"/etc/passwd\"\n",
            "#if __has_include(\"/secret\")\n#endif\n",
        ] {
            let v = refused(src);
            assert!(v.what.contains("not allowed"), "{src:?}: {v:?}");
        }
        let v = refused("int a;\n\nint b;\n#include \"x\"\n");
        assert_eq!(v.line, 4);
    }

    #[test]
    fn includes_in_comments_strings_and_mid_line_are_not_directives() {
        for src in [
            "// #include <x>\nint a;\n",
            "/* #include <x> */ int a;\n",
            "const char* s = \"#include <x>\";\n",
            "const char* s = R\"(\n#include <x>\n)\";\n",
            "const char* s = R\"xy(\n#include )\" <x>\n)xy\";\n",
            "int a; # include\n", // not at the start of a line (and not valid C++ either)
            "#define STR(x) #x\n#pragma once\n#if 1\n#endif\n",
            "char c = '#';\n",
        ] {
            assert_eq!(check(src), Ok(()), "{src:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_and_normal_code_passes() {
        let deep = format!(
            "int f() {{ return {}1{}; }}",
            "(".repeat(3000),
            ")".repeat(3000)
        );
        assert!(refused(&deep).what.contains("nested"));
        let braces = format!("void f() {}{}", "{".repeat(300), "}".repeat(300));
        assert!(refused(&braces).what.contains("nested"));
        let fine = format!(
            "int f() {{ return {}1{}; }}",
            "(".repeat(100),
            ")".repeat(100)
        );
        assert_eq!(check(&fine), Ok(()));
        for shipped in [
            include_str!("../../../kernels/prefix_sum/start/solution.cu"),
            include_str!("../../../reference_solutions/prefix-sum/reference/solution.cu"),
            include_str!("../../../reference_solutions/prefix-sum/fastest/solution.cu"),
        ] {
            assert_eq!(check(shipped), Ok(()));
        }
    }
}
