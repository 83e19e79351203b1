//! A small C front end: finds the `extern "C" __global__` kernel definitions in CUDA source and
//! classifies their parameters, so a launch plan can be checked against them without NVRTC or a
//! GPU.
//!
//! It is not a C++ parser. Comments and preprocessor lines are blanked out, the rest is cut into
//! identifiers, strings, numbers and punctuation, and [`parse_kernel_signatures`] walks the
//! tokens keeping track of braces and `extern "C" {` blocks. Each parameter becomes a
//! [`ParamKind`]: a pointer (const or not), an integer scalar a plan can pass, or anything else
//! (a struct, a float, ...), which a plan may not pass at all. Malformed source gives fewer
//! kernels, never a panic.
//!
//! [`crate::plan`] re-exports [`KernelSignature`], [`ParamKind`] and [`parse_kernel_signatures`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plan::ScalarType;

/// The kind of a kernel parameter, as read from the CUDA source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamKind {
    /// `T*` (any single-level pointer or `T x[]`); `is_const` when the pointee is `const`.
    Pointer { is_const: bool },
    /// An integer scalar the plan can pass.
    Scalar(ScalarType),
    /// Anything else (float, struct, `T**`, reference, ...), with its type text. A launch plan
    /// cannot pass it (see [`crate::plan::LaunchPlan::check_against`]); only the scorer's own
    /// harness kernels take such parameters (an `f32` for a `float`).
    Other(String),
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::Pointer { is_const: true } => write!(f, "a const pointer"),
            ParamKind::Pointer { is_const: false } => write!(f, "a pointer"),
            ParamKind::Scalar(t) => write!(f, "a scalar {t} (`{}`)", t.c_name()),
            ParamKind::Other(s) => write!(f, "`{s}`"),
        }
    }
}

/// An `extern "C" __global__` kernel found in a CUDA source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSignature {
    pub name: String,
    pub params: Vec<ParamKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CTok {
    Ident(String),
    Str(String),
    Num,
    Punct(char),
}

/// Replaces comments with spaces and drops preprocessor lines (with their `\` continuations).
fn strip_comments_and_directives(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                if b[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i = (i + 2).min(b.len());
            out.push(' ');
            continue;
        }
        if c == '#' && line_start {
            // Preprocessor directive: skip to the end of the logical line.
            while i < b.len() && b[i] != '\n' {
                if b[i] == '\\' && b.get(i + 1) == Some(&'\n') {
                    i += 1;
                } else if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    // A block comment inside a directive may span lines.
                    i += 2;
                    while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            continue;
        }
        if c == '"' || c == '\'' {
            out.push(c);
            i += 1;
            while i < b.len() && b[i] != c && b[i] != '\n' {
                if b[i] == '\\' && i + 1 < b.len() {
                    out.push(b[i]);
                    i += 1;
                }
                out.push(b[i]);
                i += 1;
            }
            if i < b.len() && b[i] == c {
                out.push(c);
                i += 1;
            }
            line_start = false;
            continue;
        }
        if c == '\n' {
            line_start = true;
        } else if !c.is_whitespace() {
            line_start = false;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn tokenize_c(src: &str) -> Vec<CTok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(CTok::Ident(b[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            out.push(CTok::Num);
        } else if c == '"' || c == '\'' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != c && b[i] != '\n' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            let end = i.min(b.len());
            let s: String = b[start.min(end)..end].iter().collect();
            i += 1;
            if c == '"' {
                out.push(CTok::Str(s));
            } else {
                out.push(CTok::Num);
            }
        } else {
            out.push(CTok::Punct(c));
            i += 1;
        }
    }
    out
}

fn is_punct(t: Option<&CTok>, c: char) -> bool {
    matches!(t, Some(CTok::Punct(p)) if *p == c)
}

fn is_ident(t: Option<&CTok>, s: &str) -> bool {
    matches!(t, Some(CTok::Ident(x)) if x == s)
}

/// Index just past the bracket that closes the one at `open` (`(`/`)` or `{`/`}`).
fn skip_balanced(toks: &[CTok], open: usize, o: char, c: char) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < toks.len() {
        if is_punct(toks.get(i), o) {
            depth += 1;
        } else if is_punct(toks.get(i), c) {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    toks.len()
}

/// Finds the `extern "C" __global__` kernel *definitions* in CUDA source: either with
/// `extern "C"` on the definition or inside an `extern "C" { ... }` block. Comments and
/// preprocessor lines are ignored; `__launch_bounds__(...)` and other qualifiers between
/// `__global__` and the name are skipped. Declarations without a body, templates and kernels
/// without C linkage are not returned. A kernel defined twice is returned once.
///
/// Parameter types are classified as pointers (`const` when the pointee is const),
/// integer scalars (`int`, `int32_t` → i32; `unsigned`, `unsigned int`, `uint32_t` → u32;
/// `long long`, `long`, `int64_t`, `ptrdiff_t` → i64; `unsigned long long`, `unsigned long`,
/// `size_t`, `uint64_t` → u64; `long` is 64-bit as on Linux) or [`ParamKind::Other`].
pub fn parse_kernel_signatures(source: &str) -> Vec<KernelSignature> {
    let toks = tokenize_c(&strip_comments_and_directives(source));
    let mut out: Vec<KernelSignature> = Vec::new();
    // One entry per open brace: whether it opened an `extern "C" {` block.
    let mut braces: Vec<bool> = Vec::new();
    let mut stmt_start = 0usize;
    let mut i = 0usize;
    while i < toks.len() {
        let t = &toks[i];
        if is_ident(Some(t), "extern")
            && matches!(toks.get(i + 1), Some(CTok::Str(s)) if s == "C")
            && is_punct(toks.get(i + 2), '{')
        {
            braces.push(true);
            i += 3;
            stmt_start = i;
            continue;
        }
        match t {
            CTok::Punct('{') => {
                braces.push(false);
                i += 1;
                stmt_start = i;
            }
            CTok::Punct('}') => {
                braces.pop();
                i += 1;
                stmt_start = i;
            }
            CTok::Punct(';') => {
                i += 1;
                stmt_start = i;
            }
            CTok::Ident(s) if s == "__global__" => {
                let prefix = &toks[stmt_start..i];
                let extern_c_here = prefix.windows(2).any(|w| {
                    is_ident(w.first(), "extern")
                        && matches!(w.get(1), Some(CTok::Str(s)) if s == "C")
                });
                let templated = prefix.iter().any(|t| is_ident(Some(t), "template"));
                let c_linkage = (extern_c_here || braces.contains(&true)) && !templated;
                match parse_kernel_at(&toks, i + 1) {
                    Some((name, params, next, is_definition)) => {
                        if is_definition && c_linkage && !out.iter().any(|k| k.name == name) {
                            out.push(KernelSignature { name, params });
                        }
                        i = next;
                        stmt_start = i;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// From just after `__global__`: returns (name, params, index after the body or `;`,
/// whether it is a definition).
fn parse_kernel_at(toks: &[CTok], mut j: usize) -> Option<(String, Vec<ParamKind>, usize, bool)> {
    loop {
        match toks.get(j)? {
            CTok::Ident(s)
                if s == "__launch_bounds__" || s == "__attribute__" || s == "__declspec" =>
            {
                if !is_punct(toks.get(j + 1), '(') {
                    return None;
                }
                j = skip_balanced(toks, j + 1, '(', ')');
            }
            CTok::Ident(name) if is_punct(toks.get(j + 1), '(') => {
                let open = j + 1;
                let close = skip_balanced(toks, open, '(', ')');
                let inner = toks.get(open + 1..close.saturating_sub(1)).unwrap_or(&[]);
                let params = parse_params(inner);
                return match toks.get(close) {
                    Some(CTok::Punct('{')) => {
                        let end = skip_balanced(toks, close, '{', '}');
                        Some((name.clone(), params, end, true))
                    }
                    Some(CTok::Punct(';')) => Some((name.clone(), params, close + 1, false)),
                    _ => Some((name.clone(), params, close, false)),
                };
            }
            CTok::Ident(_) | CTok::Punct(':') => j += 1,
            _ => return None,
        }
    }
}

fn parse_params(inner: &[CTok]) -> Vec<ParamKind> {
    // Split on top-level commas.
    let mut parts: Vec<&[CTok]> = Vec::new();
    let mut depth: i32 = 0;
    let mut start = 0;
    for (k, t) in inner.iter().enumerate() {
        match t {
            CTok::Punct('(' | '[' | '{' | '<') => depth += 1,
            CTok::Punct(')' | ']' | '}' | '>') => depth -= 1,
            CTok::Punct(',') if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    if parts.len() == 1
        && (parts[0].is_empty() || (parts[0].len() == 1 && is_ident(parts[0].first(), "void")))
    {
        return Vec::new();
    }
    parts.into_iter().map(classify_param).collect()
}

const IGNORED_QUALIFIERS: &[&str] = &[
    "__restrict__",
    "__restrict",
    "restrict",
    "__grid_constant__",
    "register",
    "struct",
    "__align__",
];

const TYPE_WORDS: &[&str] = &[
    "int",
    "unsigned",
    "signed",
    "long",
    "short",
    "char",
    "float",
    "double",
    "bool",
    "void",
    "size_t",
    "ssize_t",
    "ptrdiff_t",
    "intptr_t",
    "uintptr_t",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "uint",
    "half",
    "__half",
    "__nv_bfloat16",
];

fn classify_param(toks: &[CTok]) -> ParamKind {
    let text = toks
        .iter()
        .map(|t| match t {
            CTok::Ident(s) => s.clone(),
            CTok::Str(s) => format!("{s:?}"),
            CTok::Num => "#".to_string(),
            CTok::Punct(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let stars = toks.iter().filter(|t| is_punct(Some(t), '*')).count();
    let has_array = toks.iter().any(|t| is_punct(Some(t), '['));
    let has_other_punct = toks.iter().any(|t| {
        matches!(t, CTok::Punct(c) if !matches!(c, '*' | ':' | '[' | ']'))
            || matches!(t, CTok::Str(_))
    });
    if has_other_punct || stars + usize::from(has_array) > 1 {
        return ParamKind::Other(text);
    }
    if stars == 1 || has_array {
        // Pointee is const when `const` appears before the `*` (or anywhere, for `T x[]`).
        let before_star = toks
            .iter()
            .take_while(|t| !is_punct(Some(t), '*') && !is_punct(Some(t), '['));
        let is_const = before_star.into_iter().any(|t| is_ident(Some(t), "const"));
        return ParamKind::Pointer { is_const };
    }
    // Scalar: words without qualifiers and without `std::`.
    let mut words: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t {
            CTok::Ident(s) => Some(s.as_str()),
            _ => None,
        })
        .filter(|w| !matches!(*w, "const" | "volatile" | "std") && !IGNORED_QUALIFIERS.contains(w))
        .collect();
    if words.len() >= 2 {
        if let Some(last) = words.last() {
            if !TYPE_WORDS.contains(last) {
                words.pop(); // the parameter's name
            }
        }
    }
    let mut sorted = words.clone();
    sorted.sort_unstable();
    let scalar = match sorted.as_slice() {
        ["int"] | ["signed"] | ["int", "signed"] | ["int32_t"] => Some(ScalarType::I32),
        ["unsigned"] | ["int", "unsigned"] | ["uint32_t"] | ["uint"] => Some(ScalarType::U32),
        ["long", "long"]
        | ["int", "long", "long"]
        | ["long", "long", "signed"]
        | ["int", "long", "long", "signed"]
        | ["long"]
        | ["int", "long"]
        | ["long", "signed"]
        | ["int", "long", "signed"]
        | ["int64_t"]
        | ["ptrdiff_t"]
        | ["ssize_t"]
        | ["intptr_t"] => Some(ScalarType::I64),
        ["long", "long", "unsigned"]
        | ["int", "long", "long", "unsigned"]
        | ["long", "unsigned"]
        | ["int", "long", "unsigned"]
        | ["uint64_t"]
        | ["size_t"]
        | ["uintptr_t"] => Some(ScalarType::U64),
        _ => None,
    };
    match scalar {
        Some(t) => ParamKind::Scalar(t),
        None => ParamKind::Other(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_of_realistic_kernels() {
        let src = r#"
#include <cuda_fp16.h>
#include <stdint.h>
#define TILE 16 \
    /* continued */
// extern "C" __global__ void commented_out(int x) {}
/* extern "C" __global__ void also_commented(int x) {} */

template <int B> __device__ int helper(int x) { return x * B; }

__global__ void not_c_linkage(int* x) {}

extern "C" __global__ void decl_only(int* x);

extern "C"
__global__
void
__launch_bounds__(256, 2)
multi_line(
    const float* __restrict__ in,   // comment, with a comma
    float* __restrict__ out,
    const int n,
    long long m,
    unsigned int u,
    size_t sz,
    int64_t a, uint32_t b, uint64_t c, int32_t d,
    unsigned long long ull,
    unsigned u2,
    long l,
    float alpha,
    const half* h,
    float const* cp,
    int* const pc,
    int arr[],
    std::size_t ssz,
    const __grid_constant__ Params p)
{
    const char* s = "extern \"C\" __global__ void in_string(int x) {}";
    if (n > 0) { out[0] = in[0]; }
}

extern "C" {
__global__ void in_block_a(int *x, int n) { }
__global__ void __launch_bounds__(128) in_block_b(void) { }
static __device__ int dev(int y) { return y; }
}

extern "C" __global__ void no_params() { }
extern "C" __global__ void multi_line(int* x) { } // duplicate definition: first one wins
"#;
        let sigs = parse_kernel_signatures(src);
        let names: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["multi_line", "in_block_a", "in_block_b", "no_params"]
        );
        use ParamKind::*;
        use ScalarType::*;
        let p = &sigs[0].params;
        assert_eq!(p.len(), 20, "{p:?}");
        assert_eq!(p[0], Pointer { is_const: true });
        assert_eq!(p[1], Pointer { is_const: false });
        assert_eq!(p[2], Scalar(I32));
        assert_eq!(p[3], Scalar(I64));
        assert_eq!(p[4], Scalar(U32));
        assert_eq!(p[5], Scalar(U64));
        assert_eq!(
            &p[6..10],
            &[Scalar(I64), Scalar(U32), Scalar(U64), Scalar(I32)]
        );
        assert_eq!(p[10], Scalar(U64));
        assert_eq!(p[11], Scalar(U32));
        assert_eq!(p[12], Scalar(I64));
        assert!(
            matches!(&p[13], Other(t) if t == "float alpha"),
            "{:?}",
            p[13]
        );
        assert_eq!(p[14], Pointer { is_const: true });
        assert_eq!(p[15], Pointer { is_const: true });
        assert_eq!(p[16], Pointer { is_const: false });
        assert_eq!(p[17], Pointer { is_const: false });
        assert_eq!(p[18], Scalar(U64));
        assert!(matches!(&p[19], Other(_)), "{:?}", p[19]);
        assert_eq!(
            sigs[1].params,
            vec![Pointer { is_const: false }, Scalar(I32)]
        );
        assert!(sigs[2].params.is_empty());
        assert!(sigs[3].params.is_empty());
    }

    #[test]
    fn signature_parsing_edge_cases() {
        assert!(parse_kernel_signatures("").is_empty());
        assert!(parse_kernel_signatures("extern \"C\" __global__").is_empty());
        assert!(parse_kernel_signatures("extern \"C\" __global__ void k(int a").is_empty());
        assert!(parse_kernel_signatures("/* unterminated").is_empty());
        assert!(parse_kernel_signatures("\"unterminated").is_empty());
        assert!(parse_kernel_signatures("}}}} extern \"C\" { {{").is_empty());
        let sigs =
            parse_kernel_signatures("extern \"C\" __global__ void k(unsigned, long long) {}");
        assert_eq!(
            sigs[0].params,
            vec![
                ParamKind::Scalar(ScalarType::U32),
                ParamKind::Scalar(ScalarType::I64)
            ]
        );
        let sigs = parse_kernel_signatures("extern \"C\" __global__ void k(int x, float* y) {");
        assert_eq!(sigs.len(), 1);
        let sigs =
            parse_kernel_signatures("extern \"C\" __global__ void k(int x, void (*fp)(int)) {}");
        assert!(matches!(sigs[0].params[1], ParamKind::Other(_)));
        let sigs = parse_kernel_signatures(
            "namespace ns { extern \"C\" __global__ void inner(const double *__restrict__ p) {} }",
        );
        assert_eq!(sigs[0].name, "inner");
        assert_eq!(sigs[0].params, vec![ParamKind::Pointer { is_const: true }]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_cuda_text_never_panics(s in "[a-z_ \n(){};,*/\"'#\\\\]{0,120}") {
            let _ = parse_kernel_signatures(&s);
            let _ = parse_kernel_signatures(&format!("extern \"C\" __global__ void k({s}) {{}}"));
        }
    }
}
