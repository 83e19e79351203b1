//! Rules a submission's CUDA source must follow before any compiler sees it.
//!
//! The check is a preprocessing tokenizer that follows the C++ translation phases (line
//! splices, comments, whitespace, digraphs, literals including raw strings), so that it sees
//! the directives a compiler sees. What it enforces is an **allowlist**, not a blocklist:
//!
//! - **Directives.** A directive is a `#` (or `%:`) that is the first token of a line. Only
//!   `#define`, `#undef`, `#if`, `#ifdef`, `#ifndef`, `#elif`, `#elifdef`, `#elifndef`,
//!   `#else`, `#endif`, `#error`, `#warning`, the null directive and `#pragma unroll` /
//!   `nounroll` / `once` are allowed; everything else (`#include`, `#include_next`, `#import`,
//!   `#embed`, `#line` and GCC's `# 1 "file"` line markers, which rename the file diagnostics
//!   name, any other pragma, anything unknown) is refused. NVRTC resolves an include against
//!   the compiling process's files and quotes what it read in its log, which becomes the reason
//!   the agent reads; the pip NVRTC ships no headers a kernel could need anyway. `#error` and
//!   `#warning` are allowed: they print only the submission's own text.
//! - **Names that reach files or the preprocessor.** `__has_include`, `__has_include_next`,
//!   `__has_embed` (probe whether a path exists), `_Pragma` and `__pragma` (a pragma no
//!   directive shows) are refused as any identifier *containing* them.
//! - **No token pasting.** `##` (in any spelling: `%:%:`, `#%:`, ...) is refused outright,
//!   so no forbidden name can be assembled from harmless pieces (`__has_ ## include`), and the
//!   substring rule above cannot be sidestepped. Stringizing (`#x`) is allowed: it makes only a
//!   string literal, and nothing left that takes a string reads a file.
//! - **No spelling two compilers read differently.** NVRTC (EDG) and the emulator's GCC
//!   disagree on some corners; where the tokenizer's reading could differ from a compiler's,
//!   the source is refused instead of guessed: trigraphs (`??/` anywhere, since a trigraph
//!   backslash can continue a comment; the others outside comments and literals), a
//!   backslash separated from its newline by spaces (GCC splices it, the standard does not), a
//!   carriage return not followed by a line feed (GCC ends a line there), a line splice inside
//!   a raw string (reverted by the standard), NUL and other control characters, stray
//!   backslashes (universal character names) and non-ASCII bytes outside comments and
//!   literals (a compiler could take one for whitespace).
//! - **Bounded nesting.** Brackets nested deeper than [`MAX_NESTING`] are refused: compilers
//!   parse them recursively, and a 2 KB file of parentheses overflows their stack.
//!
//! Where it must choose, the tokenizer errs towards seeing *more* directives than a compiler
//! does: a line break inside a block comment starts a new line for it (`/*` newline `*/
//! #include` is a directive to NVRTC), so an include can never hide behind a comment. The scan
//! is linear in the source and iterative.

/// Deepest bracket nesting (`(`, `[`, `{` and their digraphs together) a submission may use.
pub const MAX_NESTING: usize = 256;

/// A broken rule: the 1-based (physical) line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct Violation {
    pub line: usize,
    pub what: String,
}

/// Directives a submission may use (besides `#pragma`, whose argument is checked too).
const ALLOWED_DIRECTIVES: [&str; 12] = [
    "define", "undef", "if", "ifdef", "ifndef", "elif", "elifdef", "elifndef", "else", "endif",
    "error", "warning",
];
/// Directives that read a file: refused with a message that says so.
const FILE_DIRECTIVES: [&str; 4] = ["include", "include_next", "import", "embed"];
/// `#pragma X` for these X only: loop unrolling, and the harmless include guard.
const ALLOWED_PRAGMAS: [&str; 3] = ["unroll", "nounroll", "once"];
/// An identifier containing one of these is refused (see the module documentation).
const FORBIDDEN_IN_IDENTS: [&str; 4] = ["has_include", "has_embed", "_Pragma", "__pragma"];
/// C++20 module directives (no `#`): not directives under `-std=c++17`, refused anyway.
const MODULE_WORDS: [&str; 3] = ["import", "module", "export"];

/// Checks `source` against the rules; the first violation found is returned.
pub fn check(source: &str) -> Result<(), Violation> {
    let text = Logical::splice(source.as_bytes())?;
    Scanner {
        t: &text,
        i: 0,
        line_start: true,
        depth: 0,
    }
    .run()
}

fn violation(line: usize, what: impl Into<String>) -> Violation {
    Violation {
        line,
        what: what.into(),
    }
}

/// The source after translation phases 1 and 2: line splices removed, CRLF read as LF.
struct Logical {
    bytes: Vec<u8>,
    /// The physical line of each byte, for messages.
    line_of: Vec<usize>,
    /// Whether a line splice was removed right before each byte (for raw strings).
    spliced_before: Vec<bool>,
    /// The line after the last byte.
    last_line: usize,
}

impl Logical {
    /// Phases 1 and 2 on the physical bytes, refusing what compilers read differently there.
    fn splice(src: &[u8]) -> Result<Logical, Violation> {
        let n = src.len();
        let mut out = Logical {
            bytes: Vec::with_capacity(n),
            line_of: Vec::with_capacity(n),
            spliced_before: Vec::with_capacity(n),
            last_line: 1,
        };
        // A UTF-8 byte order mark at the start is not part of the text (compilers skip it).
        let mut i = if src.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let mut line = 1;
        let mut spliced = false;
        while i < n {
            let c = src[i];
            match c {
                0 => return Err(violation(line, "a NUL byte is not allowed")),
                b'\r' if src.get(i + 1) != Some(&b'\n') => {
                    return Err(violation(
                        line,
                        "a carriage return not followed by a line feed is not allowed (compilers disagree on whether it ends a line)",
                    ));
                }
                // CRLF is a line feed.
                b'\r' => {
                    i += 1;
                    continue;
                }
                b'?' if src[i..].starts_with(b"??/") => {
                    return Err(violation(
                        line,
                        "the trigraph `??/` is not allowed (it is a backslash to some compilers, not to others)",
                    ));
                }
                b'\\' => {
                    // A splice: backslash, line end. Backslash, blanks, line end is one to
                    // GCC and not to the standard: refused.
                    let mut j = i + 1;
                    while j < n && matches!(src[j], b' ' | b'\t' | 0x0b | 0x0c) {
                        j += 1;
                    }
                    let eol = match (src.get(j), src.get(j + 1)) {
                        (Some(b'\n'), _) => Some(1),
                        (Some(b'\r'), Some(b'\n')) => Some(2),
                        _ => None,
                    };
                    if let Some(len) = eol {
                        if j > i + 1 {
                            return Err(violation(
                                line,
                                "a backslash separated from its line end by spaces is not allowed (compilers disagree on whether it joins the lines)",
                            ));
                        }
                        i = j + len;
                        line += 1;
                        spliced = true;
                        continue;
                    }
                }
                _ => {}
            }
            out.bytes.push(c);
            out.line_of.push(line);
            out.spliced_before.push(spliced);
            spliced = false;
            if c == b'\n' {
                line += 1;
            }
            i += 1;
        }
        out.last_line = line;
        Ok(out)
    }

    fn line(&self, i: usize) -> usize {
        self.line_of.get(i).copied().unwrap_or(self.last_line)
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Whitespace other than a line feed: every class a compiler accepts between tokens.
fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | 0x0b | 0x0c)
}

struct Scanner<'a> {
    t: &'a Logical,
    i: usize,
    /// Only whitespace and comments since the last line feed (one inside a comment counts).
    line_start: bool,
    depth: usize,
}

impl Scanner<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.t.bytes.get(i).copied()
    }

    fn err(&self, i: usize, what: impl Into<String>) -> Violation {
        violation(self.t.line(i), what)
    }

    /// A `#` token at `i` (`#` or the digraph `%:`): its length, else 0.
    fn hash_len(&self, i: usize) -> usize {
        match self.at(i) {
            Some(b'#') => 1,
            Some(b'%') if self.at(i + 1) == Some(b':') => 2,
            _ => 0,
        }
    }

    fn run(mut self) -> Result<(), Violation> {
        let n = self.t.bytes.len();
        while self.i < n {
            let i = self.i;
            let c = self.t.bytes[i];
            match c {
                b'\n' => {
                    self.line_start = true;
                    self.i += 1;
                }
                c if is_blank(c) => self.i += 1,
                b'/' if matches!(self.at(i + 1), Some(b'/' | b'*')) => self.comment()?,
                b'#' | b'%' if self.hash_len(i) > 0 => {
                    let len = self.hash_len(i);
                    if self.hash_len(i + len) > 0 {
                        return Err(self.err(
                            i,
                            "token pasting (`##`, `%:%:`) is not allowed: it could assemble a name this check refuses",
                        ));
                    }
                    self.i += len;
                    if self.line_start {
                        self.directive(i)?;
                    }
                    // Otherwise a stringizing `#` in a macro body (or a stray one NVRTC
                    // rejects): harmless.
                    self.line_start = false;
                }
                b'"' | b'\'' => {
                    self.line_start = false;
                    self.i = self.quoted(i);
                }
                c if is_ident_start(c) => self.identifier()?,
                c if c.is_ascii_digit() => {
                    self.line_start = false;
                    self.pp_number();
                }
                b'.' if self.at(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                    self.line_start = false;
                    self.pp_number();
                }
                b'?' if self.at(i + 1) == Some(b'?')
                    && matches!(
                        self.at(i + 2),
                        Some(b'=' | b'\'' | b'(' | b')' | b'!' | b'<' | b'>' | b'-')
                    ) =>
                {
                    return Err(self.err(
                        i,
                        format!(
                            "the trigraph `??{}` is not allowed (replaced by some compilers, not by others)",
                            self.t.bytes[i + 2] as char
                        ),
                    ));
                }
                b'\\' => {
                    return Err(self.err(
                        i,
                        "a backslash outside literals (a universal character name) is not allowed",
                    ))
                }
                c if c >= 0x80 => {
                    return Err(self.err(
                        i,
                        "a non-ASCII character outside comments and string literals is not allowed",
                    ))
                }
                c if c < 0x20 || c == 0x7f => {
                    return Err(
                        self.err(i, format!("the control character {c:#04x} is not allowed"))
                    )
                }
                _ => {
                    self.line_start = false;
                    self.bracket(i)?;
                }
            }
        }
        Ok(())
    }

    /// The comment at `self.i` (`//` or `/*`): skipped; a block comment that contains a line
    /// feed starts a new line (errs towards more directives).
    fn comment(&mut self) -> Result<(), Violation> {
        let start = self.i;
        let bytes = &self.t.bytes;
        if bytes[start + 1] == b'/' {
            // To the line feed, which the main loop then sees.
            self.i = bytes[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| start + p);
            return Ok(());
        }
        let body = start + 2;
        let Some(end) = bytes[body..].windows(2).position(|w| w == b"*/") else {
            return Err(self.err(start, "an unterminated block comment is not allowed"));
        };
        if bytes[body..body + end].contains(&b'\n') {
            self.line_start = true;
        }
        self.i = body + end + 2;
        Ok(())
    }

    /// Past blanks and comments, staying on this logical line (a block comment may span
    /// lines: it is one space inside a directive).
    fn skip_blanks(&mut self) -> Result<(), Violation> {
        loop {
            match self.at(self.i) {
                Some(c) if is_blank(c) => self.i += 1,
                Some(b'/') if self.at(self.i + 1) == Some(b'*') => {
                    let keep = self.line_start;
                    self.comment()?;
                    self.line_start = keep;
                }
                _ => return Ok(()),
            }
        }
    }

    /// The identifier at `self.i`, if any (not consumed).
    fn peek_ident(&self) -> Option<&str> {
        let s = self.i;
        if !self.at(s).is_some_and(is_ident_start) {
            return None;
        }
        let e = (s..self.t.bytes.len())
            .find(|&j| !is_ident_char(self.t.bytes[j]))
            .unwrap_or(self.t.bytes.len());
        std::str::from_utf8(&self.t.bytes[s..e]).ok()
    }

    /// The directive whose `#` was at `hash` (`self.i` is just past it): its name must be on
    /// the allowlist. The rest of the line is scanned as ordinary tokens by the caller.
    fn directive(&mut self, hash: usize) -> Result<(), Violation> {
        self.skip_blanks()?;
        match self.at(self.i) {
            // The null directive (`#` alone, or followed by a `//` comment).
            None | Some(b'\n') => return Ok(()),
            Some(b'/') if self.at(self.i + 1) == Some(b'/') => return Ok(()),
            _ => {}
        }
        let Some(name) = self.peek_ident().map(str::to_owned) else {
            return Err(self.err(
                hash,
                "`#` followed by anything but a directive name (a line marker such as `# 1 \"file\"`) is not allowed",
            ));
        };
        self.i += name.len();
        if FILE_DIRECTIVES.contains(&name.as_str()) {
            return Err(self.err(
                hash,
                format!("`#{name}` is not allowed: a submission is one self-contained file, compiled alone with no headers"),
            ));
        }
        if name == "pragma" {
            self.skip_blanks()?;
            let what = self.peek_ident().unwrap_or("").to_owned();
            if !ALLOWED_PRAGMAS.contains(&what.as_str()) {
                return Err(self.err(
                    hash,
                    format!("`#pragma {what}` is not allowed: only `#pragma unroll`, `#pragma nounroll` and `#pragma once` are"),
                ));
            }
            self.i += what.len();
            return Ok(());
        }
        if !ALLOWED_DIRECTIVES.contains(&name.as_str()) {
            return Err(self.err(
                hash,
                format!(
                    "`#{name}` is not allowed: a submission may use only #define, #undef, #if, #ifdef, #ifndef, #elif, #else, #endif, #error, #warning and #pragma unroll"
                ),
            ));
        }
        Ok(())
    }

    /// An identifier (or a literal's encoding prefix, or a raw string) at `self.i`.
    fn identifier(&mut self) -> Result<(), Violation> {
        let s = self.i;
        let word = self.peek_ident().unwrap_or("").to_owned();
        let e = s + word.len();
        let first_on_line = self.line_start;
        self.line_start = false;
        match (word.as_str(), self.at(e)) {
            ("R" | "u8R" | "uR" | "UR" | "LR", Some(b'"')) => {
                self.i = self.raw_string(s, e)?;
                return Ok(());
            }
            ("u8" | "u" | "U" | "L", Some(b'"' | b'\'')) => {
                self.i = self.quoted(e);
                return Ok(());
            }
            _ => {}
        }
        if let Some(bad) = FORBIDDEN_IN_IDENTS.iter().find(|f| word.contains(**f)) {
            let why = if bad.contains("Pragma") || bad.contains("pragma") {
                "a pragma may be written only as a `#pragma` directive"
            } else {
                "no file is visible to a submission"
            };
            return Err(self.err(s, format!("`{word}` is not allowed: {why}")));
        }
        if first_on_line && MODULE_WORDS.contains(&word.as_str()) {
            return Err(self.err(
                s,
                format!("a line may not start with `{word}` (a C++20 module directive)"),
            ));
        }
        self.i = e;
        Ok(())
    }

    /// Past the string or character literal whose quote is at `q`; an unterminated one ends
    /// at its line feed, as in every compiler.
    fn quoted(&self, q: usize) -> usize {
        let bytes = &self.t.bytes;
        let quote = bytes[q];
        let mut j = q + 1;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' if bytes.get(j + 1) != Some(&b'\n') => j += 2,
                b'\n' => return j,
                c if c == quote => return j + 1,
                _ => j += 1,
            }
        }
        bytes.len()
    }

    /// Past the raw string whose prefix starts at `s` and opening quote is at `q`:
    /// `R"delim( ... )delim"`. Malformed, unterminated or spliced ones are refused: compilers
    /// recover from those differently.
    fn raw_string(&self, s: usize, q: usize) -> Result<usize, Violation> {
        let bytes = &self.t.bytes;
        let delim_end = (q + 1..bytes.len().min(q + 18)).find(|&j| bytes[j] == b'(');
        let delim_ok = |d: &[u8]| {
            d.len() <= 16
                && d.iter()
                    .all(|&c| c.is_ascii_graphic() && !matches!(c, b'(' | b')' | b'\\' | b'"'))
        };
        let Some(open) = delim_end.filter(|&o| delim_ok(&bytes[q + 1..o])) else {
            return Err(self.err(s, "a malformed raw string literal is not allowed"));
        };
        let mut close = Vec::with_capacity(open - q + 1);
        close.push(b')');
        close.extend_from_slice(&bytes[q + 1..open]);
        close.push(b'"');
        let Some(end) = bytes[open + 1..]
            .windows(close.len())
            .position(|w| w == close.as_slice())
            .map(|p| open + 1 + p + close.len())
        else {
            return Err(self.err(s, "an unterminated raw string literal is not allowed"));
        };
        if self.t.spliced_before[q + 1..end].iter().any(|&b| b) {
            return Err(self.err(
                s,
                "a line splice inside a raw string literal is not allowed (the standard reverts it, not every compiler does)",
            ));
        }
        Ok(end)
    }

    /// Past the preprocessing number at `self.i` (digit separators and exponent signs
    /// included, so that `1'000` does not open a character literal).
    fn pp_number(&mut self) {
        let bytes = &self.t.bytes;
        let mut j = self.i + 1;
        while j < bytes.len() {
            let c = bytes[j];
            let exponent_sign = matches!(c, b'e' | b'E' | b'p' | b'P')
                && matches!(bytes.get(j + 1), Some(b'+' | b'-'));
            let separator = c == b'\'' && bytes.get(j + 1).is_some_and(|&d| is_ident_char(d));
            if exponent_sign || separator {
                j += 2;
            } else if is_ident_char(c) || c == b'.' {
                j += 1;
            } else {
                break;
            }
        }
        self.i = j;
    }

    /// Punctuation at `i`: brackets (digraphs too) count towards the nesting bound.
    fn bracket(&mut self, i: usize) -> Result<(), Violation> {
        let (opens, len) = match (self.t.bytes[i], self.at(i + 1)) {
            // `<::` is `<` `::` unless `:>` or `::` follows (C++11 [lex.pptoken]/3).
            (b'<', Some(b':'))
                if self.at(i + 2) == Some(b':') && !matches!(self.at(i + 3), Some(b':' | b'>')) =>
            {
                (None, 1)
            }
            (b'<', Some(b':' | b'%')) => (Some(true), 2),
            (b':', Some(b'>')) | (b'%', Some(b'>')) => (Some(false), 2),
            (b'(' | b'[' | b'{', _) => (Some(true), 1),
            (b')' | b']' | b'}', _) => (Some(false), 1),
            _ => (None, 1),
        };
        match opens {
            Some(true) => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(self.err(
                        i,
                        format!("brackets nested deeper than {MAX_NESTING} levels"),
                    ));
                }
            }
            Some(false) => self.depth = self.depth.saturating_sub(1),
            None => {}
        }
        self.i = i + len;
        Ok(())
    }
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
            "# /* c */ include <x>\n",
            "#\x0cinclude \"/proc/self/environ\"\n",
            "#\x0binclude \"/proc/self/environ\"\n",
            "#\x0c\x0b \t include <x>\n",
            "%:include <x>\n",
            "%: include <x>\n",
            "%:\x0cinclude <x>\n",
            "/*\n*/ #include \"/proc/self/environ\"\n",
            "int a; /* a comment\n over lines */ #include <x>\n",
            "/*\n*/ %:include <x>\n",
            "# /*\n*/ include <x>\n",
            "#inc\\\nlude \"secret\"\n",
            "#\\\ninclude \"secret\"\n",
            "\\\n#include \"secret\"\n",
            "#\\\r\ninclude \"secret\"\n",
            "#include\\\n \"secret\"\n",
            "#define F \"/proc/self/environ\"\n#include F\n",
            "#include_next <x>\n",
            "#import \"x\"\n",
            "#embed \"/etc/passwd\"\n",
            "\u{feff}#include <x>\n",
            "int a;\r\n#include <x>\r\n",
            "// a comment\n#include <x>\n",
        ] {
            let v = refused(src);
            assert!(v.what.contains("not allowed"), "{src:?}: {v:?}");
            assert!(v.what.contains('#'), "{src:?} names the directive: {v:?}");
        }
        let v = refused("int a;\n\nint b;\n#include \"x\"\n");
        assert_eq!(v.line, 4);
        assert_eq!(v.to_string(), format!("line 4: {}", v.what));
        // The physical line of the `#`, splices and comments counted.
        assert_eq!(refused("int a; \\\n\n/*\n\n*/ #include <x>\n").line, 5);
    }

    #[test]
    fn trigraphs_and_ambiguous_spellings_are_refused() {
        for (src, says) in [
            ("??=include <x>\n", "trigraph"),
            ("??=define X 1\n", "trigraph"),
            ("int a; // ??/\n#include <x>\n", "trigraph"),
            ("const char* s = \"??/\";\n", "trigraph"),
            ("int a[1] = ??< 0 ??>;\n", "trigraph"),
            ("// comment \\ \n#include <x>\n", "spaces"),
            ("#\\\t\ninclude <x>\n", "spaces"),
            ("int a;\r#include <x>\n", "carriage return"),
            ("int a;\0\n", "NUL"),
            ("int \\u0061 = 1;\n", "backslash"),
            ("int caf\u{e9} = 1;\n", "non-ASCII"),
            ("\u{a0}#include <x>\n", "non-ASCII"),
            ("\x1c#include <x>\n", "control character"),
            (
                "/* never closed\n#include <x>\n",
                "unterminated block comment",
            ),
            ("auto s = R\"(never closed\n", "unterminated raw string"),
            ("auto s = R\"a b(x)a b\";\n", "malformed raw string"),
            (
                "auto s = R\"x( )x\\\n\" /* )x\" \n#include <x>\n */;\n",
                "splice inside a raw string",
            ),
        ] {
            let v = refused(src);
            assert!(v.what.contains(says), "{src:?}: {v:?}");
        }
        // Trigraph-like text in comments and literals is harmless (except `??/`).
        for src in [
            "// really??! (why??)\nint a;\n",
            "const char* s = \"what??!\";\n",
        ] {
            assert_eq!(check(src), Ok(()), "{src:?}");
        }
    }

    #[test]
    fn probes_pasting_and_pragma_operators_are_refused() {
        for (src, says) in [
            ("#if __has_include(\"/secret\")\n#endif\n", "__has_include"),
            (
                "#if __has_include_next(<x>)\n#endif\n",
                "__has_include_next",
            ),
            ("#if __has_embed(\"/secret\")\n#endif\n", "__has_embed"),
            ("#if defined(__has_include)\n#endif\n", "__has_include"),
            ("#define H __has_include\n", "__has_include"),
            (
                "#define CAT(a, b) a ## b\n#if CAT(__has_, include)(\"/etc/passwd\")\n#endif\n",
                "pasting",
            ),
            ("#define CAT(a, b) a%:%:b\n", "pasting"),
            ("#define CAT(a, b) a#%:b\n", "pasting"),
            ("#define CAT(a, b) a%:#b\n", "pasting"),
            ("#define CAT(a,b) a##b\n", "pasting"),
            ("_Pragma(\"once\")\n", "_Pragma"),
            ("#define P(x) _Pragma(#x)\n", "_Pragma"),
            ("__pragma(once)\n", "__pragma"),
            ("int my_Pragma_count;\n", "_Pragma"),
        ] {
            let v = refused(src);
            assert!(v.what.contains("not allowed"), "{src:?}: {v:?}");
            assert!(v.what.contains(says), "{src:?}: {v:?}");
        }
    }

    #[test]
    fn only_allowlisted_directives_and_pragmas_pass() {
        for src in [
            "#line 1 \"/etc/passwd\"\n",
            "# 1 \"/etc/passwd\"\n",
            "#ident \"x\"\n",
            "#assert machine(x)\n",
            "#sccs \"x\"\n",
            "#frobnicate\n",
            "#pragma GCC dependency \"/etc/passwd\"\n",
            "#pragma push_macro(\"X\")\n",
            "#pragma\n",
            "#pragma /* c */ message(\"x\")\n",
            "#pragma STDC FP_CONTRACT ON\n",
            "#\"x\"\n",
            "import <cstdio>;\n",
            "export module m;\n",
        ] {
            let v = refused(src);
            assert!(
                v.what.contains("not allowed") || v.what.contains("may not"),
                "{src:?}: {v:?}"
            );
        }
        let src = "#define A 1\n#undef A\n#ifdef A\n#elif 1\n#elifdef B\n#else\n#endif\n\
            #ifndef B\n#if defined(B) && 1\n#endif\n#endif\n#\n# // null\n\
            #pragma unroll\n#pragma unroll 4\n#pragma unroll (2 * 2)\n#pragma nounroll\n\
            #pragma once\n  #  pragma /* c */ unroll\n%:define Q 1\n\
            #if 0\n#error \"no\"\n#warning don't\n#endif\n";
        assert_eq!(check(src), Ok(()));
    }

    #[test]
    fn includes_in_comments_strings_and_mid_line_are_not_directives() {
        for src in [
            "// #include <x>\nint a;\n",
            "/* #include <x> */ int a;\n",
            "/* one\n #include <x>\n two */ int a;\n",
            "const char* s = \"#include <x>\";\n",
            "const char* s = u8\"#include <x>\";\n",
            "const char* s = R\"(\n#include <x>\n)\";\n",
            "const char* s = R\"xy(\n#include )\" <x>\n)xy\";\n",
            "const char* s = u8R\"(\n%:include <x>\n)\";\n",
            "const char* s = LR\"--(\n??=include \\ x\n)--\";\n",
            "int a; # include\n", // not at the start of a line (and not valid C++ either)
            "#define STR(x) #x\n#define S2(x) %:x\n#pragma once\n#if 1\n#endif\n",
            "#define STR(x) \\\n  #x\n",
            "char c = '#';\n",
            "char c = '\\'';\n#define X 1\n",
            "int n = 1'000'000; int m = 0x1'0;\n",
            "float f = 1.5e+3f, g = .5E-2, h = 0x1p-3;\n",
            "auto s = \"a\\\"#include\";\n",
            "int a<:1:> = <%0%>;\n",
        ] {
            assert_eq!(check(src), Ok(()), "{src:?}");
        }
        // A raw string spanning lines is one token: a `#` after it is not at a line start.
        assert_eq!(check("auto s = R\"(\n)\"; # x\n"), Ok(()));
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
        let digraphs = format!("void f() {}{}", "<%".repeat(300), "%>".repeat(300));
        assert!(refused(&digraphs).what.contains("nested"));
        let fine = format!(
            "int f() {{ return {}1{}; }}",
            "(".repeat(100),
            ")".repeat(100)
        );
        assert_eq!(check(&fine), Ok(()));
        // `<::` is `<` `::`: many of them do not nest.
        let templ = "std::vector<::T> v;\n".repeat(400);
        assert_eq!(check(&templ), Ok(()));
    }

    proptest::proptest! {
        /// Any text (built from the characters the tokenizer cares about) is answered without
        /// a panic, and a refusal names a line of the text.
        #[test]
        fn arbitrary_text_never_panics(
            s in "[a-zR_ \t\x0b\x0c\r\n(){}<>%:#?=/*\"'\\\\u8L0-9.\u{e9}\u{feff}]{0,160}",
        ) {
            if let Err(v) = check(&s) {
                proptest::prop_assert!(v.line >= 1 && v.line <= s.lines().count() + 2);
            }
        }
    }

    /// Differential check against the compilers themselves: thousands of spellings of an
    /// include (line starts, `#` spellings, separators, split names); whenever NVRTC or the
    /// host C++ compiler actually includes the probe file, the rules must have refused the
    /// source. The whole sweep is a compile per spelling (6,200, about 3 minutes on 2 cores):
    /// `cargo test -p rdbench-gpu --lib -- --ignored`. Every run of the suite checks a fixed
    /// sample of it (below).
    #[test]
    #[ignore = "the whole sweep takes about 3 minutes; the suite runs every 19th spelling"]
    fn no_spelling_that_a_compiler_includes_passes() {
        let (_, included, any_compiler) = include_spellings_against_the_compilers(1);
        assert!(
            included > 100 || !any_compiler,
            "the probe never worked: {included}"
        );
    }

    /// Every 19th spelling of the sweep (a stride prime to every loop's length, so each
    /// prefix, `#` spelling, separator and name occurs), about 330 compiles.
    #[test]
    fn a_sample_of_the_spellings_that_a_compiler_includes_is_refused() {
        let (checked, included, any_compiler) = include_spellings_against_the_compilers(19);
        assert!(checked > 300, "{checked}");
        assert!(
            included > 100 / 19 || !any_compiler,
            "the probe never worked: {included}"
        );
    }

    /// Compiles every `stride`-th spelling with NVRTC and g++ (those present) and asserts each
    /// one a compiler included is refused; returns (checked, included, any compiler present).
    fn include_spellings_against_the_compilers(stride: usize) -> (usize, usize, bool) {
        use crate::nvrtc::{compile_with, CompileOptions, Isolation};
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe.h");
        std::fs::write(&probe, "#define RDB_PROBE_INCLUDED 1\n").unwrap();
        let nvrtc = crate::probe::require_nvrtc().is_ok();
        let gcc = rdbench_runner::Command::new("g++")
            .arg("--version")
            .run()
            .is_ok_and(|o| o.exit == rdbench_runner::Exit::Exited(0));
        let prefixes = [
            "",
            "  ",
            "\x0c",
            "\x0b",
            "/* c */ ",
            "/*\n*/ ",
            "int rdb_a; /*\n*/ ",
            "\\\n",
            "int rdb_a; \\\n",
            "\u{feff}",
            "\r\n",
        ];
        let hashes = ["#", "%:", "??=", "#\\\n", "%\\\n:"];
        let seps = [
            "", " ", "\t", "\x0c", "\x0b", "/**/", "/*\n*/", "\\\n", " \\\n ", "\\ \n",
        ];
        let names = ["include", "inc\\\nlude", "include_next", "import"];
        // Lines before the directive that a tokenizer could misread (a literal or comment
        // that does or does not continue), each with a plain line start after it.
        let before = [
            "// c\n",
            "// c \\\n",
            "// c \\ \n",
            "char c = '\\'';\n",
            "const char* s = \"\\\\\";\n",
            "const char* s = \"a\\\nb\";\n",
            "auto r = R\"(x)\";\n",
            "auto r = R\"x()\")x\";\n",
            "int n = 1'0; int m = 1'0'0;\n",
            "/* a */\n",
            "/* a\n */\n",
            "#define M \\\n",
            "#define M(x) #x\n",
            "int a = 'a' /* ' */;\n",
            "char q = '\"'; // \"\n",
            "const char* u = u8\"\\\"\";\n",
        ];
        let mut prefixes: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
        prefixes.extend(before.iter().map(|b| b.to_string()));
        // Skipped groups around literals: a compiler that did not lex a raw string there would
        // see the `#else` inside it (NVRTC and GCC both do lex it).
        for open in [
            "auto r = R\"(\n",
            "auto r = R\"x(\n",
            "char c = '\n",
            "auto s = \"\n",
        ] {
            prefixes.push(format!("#if 0\n{open}#else\n"));
        }
        let (mut included, mut checked, mut index) = (0, 0, 0usize);
        for prefix in &prefixes {
            for hash in hashes {
                for sep in seps {
                    for name in names {
                        index += 1;
                        if (index - 1) % stride != 0 {
                            continue;
                        }
                        let src = format!(
                            "{prefix}{hash}{sep}{name} \"{}\"\n#ifdef RDB_PROBE_INCLUDED\n#error RDB_INCLUDED_YES\n#endif\n",
                            probe.display()
                        );
                        let by_nvrtc = nvrtc
                            && match compile_with(
                                &src,
                                "x.cu",
                                &CompileOptions::cubin(80),
                                &Isolation::InProcess,
                            ) {
                                Err(e) => e.to_string().contains("RDB_INCLUDED_YES"),
                                Ok(_) => false,
                            };
                        let by_gcc = gcc && {
                            let file = dir.path().join("x.cpp");
                            std::fs::write(&file, &src).unwrap();
                            let out = rdbench_runner::Command::new("g++")
                                .args(["-std=c++17", "-fsyntax-only", "-w"])
                                .arg(&file)
                                .stderr(rdbench_runner::Output::Capture { tail: 1 << 20 })
                                .deadline(std::time::Duration::from_secs(60))
                                .run()
                                .unwrap();
                            out.stderr.text().contains("RDB_INCLUDED_YES")
                        };
                        checked += 1;
                        if by_nvrtc || by_gcc {
                            included += 1;
                            assert!(
                                check(&src).is_err(),
                                "included (NVRTC {by_nvrtc}, g++ {by_gcc}) but allowed: {src:?}"
                            );
                        }
                    }
                }
            }
        }
        eprintln!("{checked} spellings, {included} included by a compiler, all refused");
        (checked, included, nvrtc || gcc)
    }

    /// Every `.cu` the repository ships as a starting or reference solution passes.
    #[test]
    fn the_repositorys_own_kernels_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut seen = 0;
        let mut stack = vec![root.join("kernels"), root.join("reference_solutions")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "cu")
                    && !path.components().any(|c| c.as_os_str() == "harness")
                {
                    let src = std::fs::read_to_string(&path).unwrap();
                    assert_eq!(check(&src), Ok(()), "{}", path.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 10, "found only {seen} .cu files");
    }
}
