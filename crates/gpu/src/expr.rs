//! Integer expressions of `launch.toml`: grid and block sizes, shared memory, scratch lengths
//! and scalar arguments, written in terms of task variables (such as `n`) and named constants.
//!
//! An expression is parsed once to an AST ([`Expr::parse`]) and evaluated many times with
//! different variable bindings ([`Expr::eval`] with a `BTreeMap`, or [`Expr::eval_with`] with a
//! lookup closure). Evaluation is in `i64` with checked arithmetic: overflow, division or modulo
//! by zero, and `ceil_div`/`align_up` with a divisor `<= 0` are errors, never panics or
//! wrap-around.
//!
//! Grammar (whitespace is free between tokens):
//!
//! ```text
//! expr    := term (("+" | "-") term)*
//! term    := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := INT | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"
//! INT     := [0-9] [0-9_]*            (decimal, `_` separators, at most i64::MAX)
//! NAME    := [A-Za-z_] [A-Za-z0-9_]*
//! ```
//!
//! Functions: `ceil_div(a, b)`, `min(a, b)`, `max(a, b)`, `align_up(a, b)`. `/` and `%`
//! truncate toward zero, as in C. Every error carries the byte offset of the offending token in
//! the expression text and renders it as a 1-based column.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Longest accepted expression text, in bytes. This bounds the size of an expression: at most
/// about 2,000 terms and operators.
pub const MAX_EXPR_LEN: usize = 4096;
/// Deepest accepted nesting (and parser recursion): parentheses, function calls, negations and
/// changes of operator precedence. A chain of one precedence (`a + b - c + ...`,
/// `a * b / c * ...`) is one level however long it is, so a flat sum of many terms is accepted
/// while `1 + (1 + (1 + ...))` is bounded.
pub const MAX_EXPR_DEPTH: u32 = 128;
/// The functions an expression may call, all of arity 2.
pub const FUNCTIONS: &[&str] = &["ceil_div", "min", "max", "align_up"];

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
    fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul | BinOp::Div | BinOp::Rem => 2,
        }
    }
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    /// `ceil_div(a, b)`: the smallest integer `>= a / b`; `b` must be `> 0`.
    CeilDiv,
    /// `min(a, b)`.
    Min,
    /// `max(a, b)`.
    Max,
    /// `align_up(a, b)`: `a` rounded up to a multiple of `b`; `b` must be `> 0`.
    AlignUp,
}

impl Func {
    /// The function's name as written.
    pub fn name(self) -> &'static str {
        match self {
            Func::CeilDiv => "ceil_div",
            Func::Min => "min",
            Func::Max => "max",
            Func::AlignUp => "align_up",
        }
    }
    /// The function called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Func> {
        match name {
            "ceil_div" => Some(Func::CeilDiv),
            "min" => Some(Func::Min),
            "max" => Some(Func::Max),
            "align_up" => Some(Func::AlignUp),
            _ => None,
        }
    }
    fn arity(self) -> usize {
        2
    }
}

/// What went wrong in parsing or evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// The text is empty or only whitespace.
    Empty,
    /// The text is longer than [`MAX_EXPR_LEN`].
    TooLong { len: usize },
    /// The expression nests deeper than [`MAX_EXPR_DEPTH`].
    TooDeep,
    /// A character that starts no token.
    UnexpectedChar(char),
    /// The parser wanted one thing and found another.
    Expected { expected: String, found: String },
    /// An integer literal that does not fit in `i64`.
    LiteralTooLarge(String),
    /// A malformed integer literal (for example a trailing `_`).
    BadLiteral(String),
    /// A call of a function that does not exist.
    UnknownFunction { name: String },
    /// A call with the wrong number of arguments.
    WrongArity {
        name: String,
        expected: usize,
        found: usize,
    },
    /// A name with no value; `known` lists the names that have one (empty when unknown).
    UnknownName { name: String, known: Vec<String> },
    /// An arithmetic result outside `i64`.
    Overflow { what: String },
    /// `a / 0`.
    DivisionByZero,
    /// `a % 0`.
    ModuloByZero,
    /// `ceil_div(a, b)` or `align_up(a, b)` with `b <= 0`.
    NonPositiveDivisor { func: String, value: i64 },
}

impl fmt::Display for ExprErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExprErrorKind::Empty => write!(f, "expected an expression, found nothing"),
            ExprErrorKind::TooLong { len } => {
                write!(f, "expression is {len} bytes long; at most {MAX_EXPR_LEN} are allowed")
            }
            ExprErrorKind::TooDeep => write!(
                f,
                "expression nests too deeply (more than {MAX_EXPR_DEPTH} levels); simplify it or use constants"
            ),
            ExprErrorKind::UnexpectedChar(c) => write!(
                f,
                "unexpected character {c:?}; expressions use integers, names, + - * / %, parentheses and {}",
                FUNCTIONS.join("/")
            ),
            ExprErrorKind::Expected { expected, found } => write!(f, "expected {expected}, found {found}"),
            ExprErrorKind::LiteralTooLarge(s) => {
                write!(f, "integer literal {s} does not fit in a signed 64-bit integer")
            }
            ExprErrorKind::BadLiteral(s) => write!(
                f,
                "malformed integer literal `{s}`: use decimal digits, optionally separated by single `_`"
            ),
            ExprErrorKind::UnknownFunction { name } => write!(
                f,
                "unknown function `{name}`; the functions are {}",
                FUNCTIONS.join(", ")
            ),
            ExprErrorKind::WrongArity { name, expected, found } => write!(
                f,
                "function `{name}` takes {expected} arguments, {found} given"
            ),
            ExprErrorKind::UnknownName { name, known } => {
                if known.is_empty() {
                    write!(f, "unknown name `{name}`")
                } else {
                    write!(f, "unknown name `{name}`; known names: {}", known.join(", "))
                }
            }
            ExprErrorKind::Overflow { what } => {
                write!(f, "{what} overflows a signed 64-bit integer")
            }
            ExprErrorKind::DivisionByZero => write!(f, "division by zero"),
            ExprErrorKind::ModuloByZero => write!(f, "modulo by zero"),
            ExprErrorKind::NonPositiveDivisor { func, value } => write!(
                f,
                "second argument of `{func}` is {value}; it must be greater than 0"
            ),
        }
    }
}

/// An error in parsing or evaluating an expression, with its position in the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// What went wrong.
    pub kind: ExprErrorKind,
    /// Byte offset into `text` of the offending token.
    pub offset: usize,
    /// The expression text.
    pub text: String,
}

impl fmt::Display for ExprError {
    /// `<what is wrong> (at column <c> of `<expression>`)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (at column {} of `{}`)",
            self.kind,
            self.column(),
            self.text
        )
    }
}

impl std::error::Error for ExprError {}

impl ExprError {
    /// The 1-based column (in characters) of the offending token.
    pub fn column(&self) -> usize {
        let end = self.offset.min(self.text.len());
        match self.text.get(..end) {
            Some(prefix) => prefix.chars().count() + 1,
            None => end + 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Byte offset of the token this node is reported at (first operator, name, literal,
    /// function).
    pos: usize,
    /// Nesting depth: 1 for a leaf, one more than the deepest child otherwise. Every walk of
    /// the tree recurses at most this deep.
    depth: u32,
}

/// One operator of a chain and its right operand, with the operator's byte offset.
#[derive(Debug, Clone)]
struct Link {
    op: BinOp,
    pos: usize,
    rhs: Node,
}

#[derive(Debug, Clone)]
enum Kind {
    Int(i64),
    Name(String),
    Neg(Box<Node>),
    /// A left-associated chain of operators of one precedence: `first op1 rhs1 op2 rhs2 ...`
    /// is `((first op1 rhs1) op2 rhs2) ...`. Kept flat, so a long chain is shallow.
    Chain(Box<Node>, Vec<Link>),
    Call(Func, Box<Node>, Box<Node>),
}

impl Node {
    fn new(kind: Kind, pos: usize) -> Node {
        let depth = match &kind {
            Kind::Int(_) | Kind::Name(_) => 1,
            Kind::Neg(a) => a.depth + 1,
            Kind::Chain(a, rest) => rest.iter().map(|l| l.rhs.depth).fold(a.depth, u32::max) + 1,
            Kind::Call(_, a, b) => a.depth.max(b.depth) + 1,
        };
        Node { kind, pos, depth }
    }

    fn same_shape(&self, other: &Node) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Int(a), Kind::Int(b)) => a == b,
            (Kind::Name(a), Kind::Name(b)) => a == b,
            (Kind::Neg(a), Kind::Neg(b)) => a.same_shape(b),
            (Kind::Chain(a1, r1), Kind::Chain(a2, r2)) => {
                a1.same_shape(a2)
                    && r1.len() == r2.len()
                    && r1
                        .iter()
                        .zip(r2)
                        .all(|(x, y)| x.op == y.op && x.rhs.same_shape(&y.rhs))
            }
            (Kind::Call(f1, a1, b1), Kind::Call(f2, a2, b2)) => {
                f1 == f2 && a1.same_shape(a2) && b1.same_shape(b2)
            }
            _ => false,
        }
    }

    fn collect_names<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        match &self.kind {
            Kind::Int(_) => {}
            Kind::Name(n) => {
                out.insert(n.as_str());
            }
            Kind::Neg(a) => a.collect_names(out),
            Kind::Chain(a, rest) => {
                a.collect_names(out);
                for l in rest {
                    l.rhs.collect_names(out);
                }
            }
            Kind::Call(_, a, b) => {
                a.collect_names(out);
                b.collect_names(out);
            }
        }
    }

    /// Precedence of the node when printed: 1 additive, 2 multiplicative, 3 unary, 4 atom.
    fn print_precedence(&self) -> u8 {
        match &self.kind {
            Kind::Int(v) if *v < 0 => 4, // printed in parentheses
            Kind::Int(_) | Kind::Name(_) | Kind::Call(..) => 4,
            Kind::Neg(_) => 3,
            Kind::Chain(_, rest) => rest.first().map_or(4, |l| l.op.precedence()),
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Int(v) if *v == i64::MIN => write!(f, "(-9223372036854775807 - 1)"),
            Kind::Int(v) if *v < 0 => write!(f, "(-{})", v.unsigned_abs()),
            Kind::Int(v) => write!(f, "{v}"),
            Kind::Name(n) => write!(f, "{n}"),
            Kind::Neg(a) => {
                write!(f, "-")?;
                write_child(f, a, a.print_precedence() < 3)
            }
            Kind::Chain(a, rest) => {
                let p = self.print_precedence();
                write_child(f, a, a.print_precedence() < p)?;
                for l in rest {
                    write!(f, " {} ", l.op.symbol())?;
                    write_child(f, &l.rhs, l.rhs.print_precedence() <= p)?;
                }
                Ok(())
            }
            Kind::Call(func, a, b) => {
                write!(f, "{}(", func.name())?;
                a.write(f)?;
                write!(f, ", ")?;
                b.write(f)?;
                write!(f, ")")
            }
        }
    }
}

fn write_child(f: &mut fmt::Formatter<'_>, node: &Node, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "(")?;
        node.write(f)?;
        write!(f, ")")
    } else {
        node.write(f)
    }
}

/// A parsed integer expression. Parse once with [`Expr::parse`], evaluate many times.
///
/// Equality compares the expression's structure, not its spelling: `(n+1)` equals `n + 1`.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Node,
    text: String,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.root.same_shape(&other.root)
    }
}

impl Eq for Expr {}

impl fmt::Display for Expr {
    /// Prints the expression in canonical form (minimal parentheses, spaces around binary
    /// operators); parsing the output gives an equal expression.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.write(f)
    }
}

impl std::str::FromStr for Expr {
    type Err = ExprError;
    fn from_str(s: &str) -> Result<Expr, ExprError> {
        Expr::parse(s)
    }
}

impl Expr {
    /// Parses `text` (see the module documentation for the grammar).
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let err = |kind, offset| ExprError {
            kind,
            offset,
            text: text.to_string(),
        };
        if text.len() > MAX_EXPR_LEN {
            return Err(err(ExprErrorKind::TooLong { len: text.len() }, 0));
        }
        let tokens = lex(text)?;
        if tokens.len() == 1 {
            // Only the end token.
            return Err(err(ExprErrorKind::Empty, 0));
        }
        let mut p = Parser {
            text,
            tokens,
            at: 0,
            recursion: 0,
        };
        let root = p.expr()?;
        let tok = p.peek();
        if tok.tok != Tok::End {
            let expected = if matches!(tok.tok, Tok::RParen) {
                "an operator or end of expression (unbalanced `)`)"
            } else {
                "an operator (+ - * / %) or end of expression"
            };
            return Err(p.expected(expected));
        }
        Ok(Expr {
            root,
            text: text.to_string(),
        })
    }

    /// An expression that is the integer `value`.
    pub fn constant(value: i64) -> Expr {
        let node = Node::new(Kind::Int(value), 0);
        let text = Expr {
            root: node.clone(),
            text: String::new(),
        }
        .to_string();
        Expr { root: node, text }
    }

    /// The text the expression was parsed from (for [`Expr::constant`], its printed form).
    pub fn source(&self) -> &str {
        &self.text
    }

    /// The value, if the expression is a plain integer literal.
    pub fn as_constant(&self) -> Option<i64> {
        match self.root.kind {
            Kind::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The names the expression refers to (variables and constants), sorted.
    pub fn names(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.root.collect_names(&mut out);
        out
    }

    /// Evaluates with the names bound by `vars`. An unknown name is an error that lists the
    /// keys of `vars`.
    pub fn eval(&self, vars: &BTreeMap<String, i64>) -> Result<i64, ExprError> {
        let lookup = |name: &str| vars.get(name).copied();
        self.eval_inner(&lookup, &|| vars.keys().cloned().collect())
    }

    /// Evaluates with names looked up by `lookup`. An unknown name (`lookup` returns `None`) is
    /// an error whose list of known names is empty.
    pub fn eval_with(&self, lookup: &dyn Fn(&str) -> Option<i64>) -> Result<i64, ExprError> {
        self.eval_inner(lookup, &Vec::new)
    }

    fn eval_inner(
        &self,
        lookup: &dyn Fn(&str) -> Option<i64>,
        known: &dyn Fn() -> Vec<String>,
    ) -> Result<i64, ExprError> {
        let ev = Eval {
            text: &self.text,
            lookup,
            known,
        };
        ev.node(&self.root)
    }
}

struct Eval<'a> {
    text: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<i64>,
    known: &'a dyn Fn() -> Vec<String>,
}

impl Eval<'_> {
    fn err(&self, kind: ExprErrorKind, offset: usize) -> ExprError {
        ExprError {
            kind,
            offset,
            text: self.text.to_string(),
        }
    }

    fn overflow(&self, what: String, offset: usize) -> ExprError {
        self.err(ExprErrorKind::Overflow { what }, offset)
    }

    /// `a op b`, checked; errors are reported at `pos` (the operator).
    fn apply(&self, op: BinOp, a: i64, b: i64, pos: usize) -> Result<i64, ExprError> {
        let r = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div => {
                if b == 0 {
                    return Err(self.err(ExprErrorKind::DivisionByZero, pos));
                }
                a.checked_div(b)
            }
            BinOp::Rem => {
                if b == 0 {
                    return Err(self.err(ExprErrorKind::ModuloByZero, pos));
                }
                // i64::MIN % -1 is mathematically 0.
                Some(a.checked_rem(b).unwrap_or(0))
            }
        };
        r.ok_or_else(|| self.overflow(format!("{a} {} {b}", op.symbol()), pos))
    }

    fn node(&self, n: &Node) -> Result<i64, ExprError> {
        match &n.kind {
            Kind::Int(v) => Ok(*v),
            Kind::Name(name) => (self.lookup)(name).ok_or_else(|| {
                self.err(
                    ExprErrorKind::UnknownName {
                        name: name.clone(),
                        known: (self.known)(),
                    },
                    n.pos,
                )
            }),
            Kind::Neg(a) => {
                let a = self.node(a)?;
                a.checked_neg()
                    .ok_or_else(|| self.overflow(format!("-({a})"), n.pos))
            }
            Kind::Chain(first, rest) => {
                // Left to right, iteratively: a chain of any length costs no recursion.
                let mut acc = self.node(first)?;
                for l in rest {
                    let b = self.node(&l.rhs)?;
                    acc = self.apply(l.op, acc, b, l.pos)?;
                }
                Ok(acc)
            }
            Kind::Call(func, a, b) => {
                let a = self.node(a)?;
                let b = self.node(b)?;
                match func {
                    Func::Min => Ok(a.min(b)),
                    Func::Max => Ok(a.max(b)),
                    Func::CeilDiv | Func::AlignUp => {
                        if b <= 0 {
                            return Err(self.err(
                                ExprErrorKind::NonPositiveDivisor {
                                    func: func.name().to_string(),
                                    value: b,
                                },
                                n.pos,
                            ));
                        }
                        let q = ceil_div(a, b);
                        if *func == Func::CeilDiv {
                            Ok(q)
                        } else {
                            q.checked_mul(b)
                                .ok_or_else(|| self.overflow(format!("align_up({a}, {b})"), n.pos))
                        }
                    }
                }
            }
        }
    }
}

/// `ceil(a / b)` for `b > 0`, exact for all `a`.
fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) != 0 {
        // q <= a / b < i64::MAX when there is a remainder, so this cannot overflow.
        q + 1
    } else {
        q
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Int(i64),
    Ident(String),
    Op(BinOp),
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    len: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let err = |kind, offset| ExprError {
        kind,
        offset,
        text: text.to_string(),
    };
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let single = match c {
            b'+' => Some(Tok::Op(BinOp::Add)),
            b'-' => Some(Tok::Op(BinOp::Sub)),
            b'*' => Some(Tok::Op(BinOp::Mul)),
            b'/' => Some(Tok::Op(BinOp::Div)),
            b'%' => Some(Tok::Op(BinOp::Rem)),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(Token {
                tok,
                pos: start,
                len: 1,
            });
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let raw = &text[start..i];
            let well_formed = raw.bytes().all(|b| b.is_ascii_digit() || b == b'_')
                && !raw.ends_with('_')
                && !raw.contains("__");
            if !well_formed {
                return Err(err(ExprErrorKind::BadLiteral(raw.to_string()), start));
            }
            let digits: String = raw.chars().filter(|c| *c != '_').collect();
            let value: i64 = digits
                .parse()
                .map_err(|_| err(ExprErrorKind::LiteralTooLarge(raw.to_string()), start))?;
            out.push(Token {
                tok: Tok::Int(value),
                pos: start,
                len: i - start,
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                pos: start,
                len: i - start,
            });
            continue;
        }
        let ch = text[start..].chars().next().unwrap_or('\u{FFFD}');
        return Err(err(ExprErrorKind::UnexpectedChar(ch), start));
    }
    out.push(Token {
        tok: Tok::End,
        pos: text.len(),
        len: 0,
    });
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
    recursion: u32,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with `End`, and `at` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    fn err(&self, kind: ExprErrorKind, offset: usize) -> ExprError {
        ExprError {
            kind,
            offset,
            text: self.text.to_string(),
        }
    }

    fn describe(&self, t: &Token) -> String {
        match &t.tok {
            Tok::End => "end of expression".to_string(),
            _ => format!("`{}`", &self.text[t.pos..t.pos + t.len]),
        }
    }

    fn expected(&self, what: &str) -> ExprError {
        let t = self.peek();
        self.err(
            ExprErrorKind::Expected {
                expected: what.to_string(),
                found: self.describe(t),
            },
            t.pos,
        )
    }

    fn check_depth(&self, node: Node) -> Result<Node, ExprError> {
        if node.depth > MAX_EXPR_DEPTH {
            Err(self.err(ExprErrorKind::TooDeep, node.pos))
        } else {
            Ok(node)
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.recursion += 1;
        if self.recursion > MAX_EXPR_DEPTH {
            let pos = self.peek().pos;
            return Err(self.err(ExprErrorKind::TooDeep, pos));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let first = self.term()?;
        let node = self.chain(first, 1, Self::term)?;
        self.recursion -= 1;
        Ok(node)
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        let first = self.unary()?;
        self.chain(first, 2, Self::unary)
    }

    /// The operators of precedence `prec` after `first`, each followed by an `operand`, as one
    /// flat chain (a loop, not recursion: the chain's length costs no depth). A parenthesized
    /// `first` that is itself a chain of this precedence is extended, not nested: `(a + b) + c`
    /// is `a + b + c`, as it means.
    fn chain(
        &mut self,
        first: Node,
        prec: u8,
        operand: fn(&mut Self) -> Result<Node, ExprError>,
    ) -> Result<Node, ExprError> {
        let mut rest = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::Op(op) if op.precedence() == prec => {
                    self.bump();
                    let rhs = operand(self)?;
                    rest.push(Link {
                        op,
                        pos: t.pos,
                        rhs,
                    });
                }
                _ => break,
            }
        }
        if rest.is_empty() {
            return Ok(first);
        }
        let pos = rest[0].pos;
        let node = match first.kind {
            Kind::Chain(a, mut head) if head.first().map(|l| l.op.precedence()) == Some(prec) => {
                let pos = head[0].pos;
                head.extend(rest);
                Node::new(Kind::Chain(a, head), pos)
            }
            kind => Node::new(
                Kind::Chain(
                    Box::new(Node {
                        kind,
                        pos: first.pos,
                        depth: first.depth,
                    }),
                    rest,
                ),
                pos,
            ),
        };
        self.check_depth(node)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        let t = self.peek().clone();
        if t.tok == Tok::Op(BinOp::Sub) {
            self.bump();
            self.enter()?;
            let inner = self.unary()?;
            self.recursion -= 1;
            return self.check_depth(Node::new(Kind::Neg(Box::new(inner)), t.pos));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Int(v) => {
                self.bump();
                Ok(Node::new(Kind::Int(v), t.pos))
            }
            Tok::Ident(name) => {
                self.bump();
                if self.peek().tok != Tok::LParen {
                    return Ok(Node::new(Kind::Name(name), t.pos));
                }
                let func = Func::from_name(&name).ok_or_else(|| {
                    self.err(ExprErrorKind::UnknownFunction { name: name.clone() }, t.pos)
                })?;
                self.bump(); // (
                let mut args = Vec::new();
                if self.peek().tok == Tok::RParen {
                    self.bump();
                } else {
                    loop {
                        args.push(self.expr()?);
                        let next = self.peek().clone();
                        match next.tok {
                            Tok::Comma => {
                                self.bump();
                            }
                            Tok::RParen => {
                                self.bump();
                                break;
                            }
                            _ => {
                                return Err(self
                                    .expected(&format!("`,` or `)` in the arguments of `{name}`")))
                            }
                        }
                    }
                }
                if args.len() != func.arity() {
                    return Err(self.err(
                        ExprErrorKind::WrongArity {
                            name: name.clone(),
                            expected: func.arity(),
                            found: args.len(),
                        },
                        t.pos,
                    ));
                }
                let mut it = args.into_iter();
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => self
                        .check_depth(Node::new(Kind::Call(func, Box::new(a), Box::new(b)), t.pos)),
                    _ => Err(self.err(
                        ExprErrorKind::WrongArity {
                            name,
                            expected: 2,
                            found: 0,
                        },
                        t.pos,
                    )),
                }
            }
            Tok::LParen => {
                self.bump();
                let inner = self.expr()?;
                if self.peek().tok != Tok::RParen {
                    return Err(self.expected("`)` or an operator"));
                }
                self.bump();
                Ok(inner)
            }
            _ => Err(self.expected("an integer, a name, `-` or `(`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn ev(text: &str, pairs: &[(&str, i64)]) -> Result<i64, ExprError> {
        Expr::parse(text)?.eval(&vars(pairs))
    }

    #[test]
    fn literals_and_separators() {
        assert_eq!(ev("42", &[]).unwrap(), 42);
        assert_eq!(ev("100_000_000", &[]).unwrap(), 100_000_000);
        assert_eq!(ev("9223372036854775807", &[]).unwrap(), i64::MAX);
        assert_eq!(ev("  7\t\n", &[]).unwrap(), 7);
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(ev("1 + 2 * 3", &[]).unwrap(), 7);
        assert_eq!(ev("(1 + 2) * 3", &[]).unwrap(), 9);
        assert_eq!(ev("10 - 3 - 2", &[]).unwrap(), 5);
        assert_eq!(ev("100 / 10 / 5", &[]).unwrap(), 2);
        assert_eq!(ev("17 % 5 * 2", &[]).unwrap(), 4);
        assert_eq!(ev("-2 * 3", &[]).unwrap(), -6);
        assert_eq!(ev("- -2", &[]).unwrap(), 2);
        assert_eq!(ev("2 - -2", &[]).unwrap(), 4);
        assert_eq!(ev("-(2 + 3) * 2", &[]).unwrap(), -10);
    }

    #[test]
    fn division_truncates_like_c() {
        assert_eq!(ev("-7 / 2", &[]).unwrap(), -3);
        assert_eq!(ev("-7 % 2", &[]).unwrap(), -1);
        assert_eq!(ev("7 % -2", &[]).unwrap(), 1);
    }

    #[test]
    fn functions() {
        let v = [("n", 1000), ("BLOCK", 256)];
        assert_eq!(ev("ceil_div(n, BLOCK)", &v).unwrap(), 4);
        assert_eq!(ev("ceil_div(1024, 256)", &v).unwrap(), 4);
        assert_eq!(ev("ceil_div(0, 256)", &v).unwrap(), 0);
        assert_eq!(ev("ceil_div(-5, 2)", &v).unwrap(), -2);
        assert_eq!(ev("min(n, BLOCK)", &v).unwrap(), 256);
        assert_eq!(ev("max(n, BLOCK)", &v).unwrap(), 1000);
        assert_eq!(ev("align_up(n, BLOCK)", &v).unwrap(), 1024);
        assert_eq!(ev("align_up(1024, 256)", &v).unwrap(), 1024);
        assert_eq!(ev("max(1, min(65535, ceil_div(n, 4)))", &v).unwrap(), 250);
        assert_eq!(
            ev("ceil_div(9223372036854775807, 1)", &v).unwrap(),
            i64::MAX
        );
        assert_eq!(ev("ceil_div(9223372036854775807, 2)", &v).unwrap(), 1 << 62);
    }

    #[test]
    fn parse_once_eval_many() {
        let e = Expr::parse("ceil_div(n, 256 * 16)").unwrap();
        for (n, want) in [(1, 1), (1000, 1), (100_000_000, 24_415)] {
            assert_eq!(e.eval(&vars(&[("n", n)])).unwrap(), want);
            assert_eq!(
                e.eval_with(&|name| (name == "n").then_some(n)).unwrap(),
                want
            );
        }
    }

    #[test]
    fn overflow_is_an_error() {
        let e = Expr::parse("n * n * n").unwrap();
        let err = e.eval(&vars(&[("n", 100_000_000)])).unwrap_err();
        assert!(matches!(err.kind, ExprErrorKind::Overflow { .. }), "{err}");
        assert_eq!(err.column(), 7, "{err}");
        assert!(err.to_string().contains("overflows"), "{err}");
        assert!(ev("9223372036854775807 + 1", &[]).is_err());
        assert!(ev("-9223372036854775807 - 2", &[]).is_err());
        assert!(ev("align_up(9223372036854775807, 2)", &[]).is_err());
        let min = vars(&[("m", i64::MIN)]);
        assert!(Expr::parse("-m").unwrap().eval(&min).is_err());
        assert!(Expr::parse("m / -1").unwrap().eval(&min).is_err());
        assert_eq!(Expr::parse("m % -1").unwrap().eval(&min).unwrap(), 0);
    }

    #[test]
    fn division_errors() {
        let e = ev("n / (n - n)", &[("n", 3)]).unwrap_err();
        assert_eq!(e.kind, ExprErrorKind::DivisionByZero);
        assert_eq!(e.column(), 3);
        assert_eq!(
            ev("5 % 0", &[]).unwrap_err().kind,
            ExprErrorKind::ModuloByZero
        );
        let e = ev("ceil_div(5, 0)", &[]).unwrap_err();
        assert!(matches!(
            e.kind,
            ExprErrorKind::NonPositiveDivisor { value: 0, .. }
        ));
        assert!(e.to_string().contains("must be greater than 0"), "{e}");
        assert!(ev("align_up(5, -4)", &[]).is_err());
    }

    #[test]
    fn unknown_name_lists_known_names() {
        let e = ev("ceil_div(nn, BLOCK)", &[("n", 1), ("BLOCK", 2)]).unwrap_err();
        assert_eq!(e.column(), 10);
        let msg = e.to_string();
        assert!(msg.contains("unknown name `nn`"), "{msg}");
        assert!(msg.contains("known names: BLOCK, n"), "{msg}");
        let e = Expr::parse("x").unwrap().eval_with(&|_| None).unwrap_err();
        assert_eq!(
            e.kind,
            ExprErrorKind::UnknownName {
                name: "x".into(),
                known: vec![]
            }
        );
    }

    #[test]
    fn parse_errors_have_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "expected an expression"),
            ("   ", 1, "expected an expression"),
            ("1 +", 4, "found end of expression"),
            ("(1 + 2", 7, "expected `)`"),
            ("1 + 2)", 6, "unbalanced"),
            ("n n", 3, "expected an operator"),
            ("10n", 1, "malformed integer literal"),
            ("1__0", 1, "malformed"),
            ("1_", 1, "malformed"),
            ("2 ** 3", 4, "found `*`"),
            ("1.5", 2, "unexpected character '.'"),
            ("n # 2", 3, "unexpected character '#'"),
            ("ñ", 1, "unexpected character"),
            ("ceil(n, 2)", 1, "unknown function `ceil`"),
            ("ceil_div(n)", 1, "takes 2 arguments, 1 given"),
            ("min(1, 2, 3)", 1, "takes 2 arguments, 3 given"),
            ("max()", 1, "takes 2 arguments, 0 given"),
            ("min(1 2)", 7, "`,` or `)`"),
            ("99999999999999999999", 1, "does not fit"),
            ("*", 1, "expected an integer, a name"),
            ("min(1,)", 7, "found `)`"),
        ];
        for (text, col, needle) in cases {
            let e = Expr::parse(text).expect_err(text);
            assert_eq!(e.column(), *col, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().contains(&format!("of `{text}`")), "{e}");
        }
    }

    #[test]
    fn pathological_inputs_do_not_panic() {
        let deep_parens = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
        assert_eq!(
            Expr::parse(&deep_parens).unwrap_err().kind,
            ExprErrorKind::TooDeep
        );
        let deep_neg = format!("{}1", "-".repeat(1000));
        assert_eq!(
            Expr::parse(&deep_neg).unwrap_err().kind,
            ExprErrorKind::TooDeep
        );
        // Nesting to the right is nesting: bounded.
        let right = format!("{}1{}", "1 + (".repeat(200), ")".repeat(200));
        assert_eq!(
            Expr::parse(&right).unwrap_err().kind,
            ExprErrorKind::TooDeep
        );
        let long = "1".repeat(MAX_EXPR_LEN + 1);
        assert!(matches!(
            Expr::parse(&long).unwrap_err().kind,
            ExprErrorKind::TooLong { .. }
        ));
        let long_sum = vec!["1"; MAX_EXPR_LEN / 2 + 1].join("+");
        assert!(matches!(
            Expr::parse(&long_sum).unwrap_err().kind,
            ExprErrorKind::TooLong { .. }
        ));
    }

    /// A flat chain of one precedence is one level of nesting however long: the red team's
    /// legitimate sum of 129 terms was refused as "nested too deep" when every `+` was a level.
    #[test]
    fn long_flat_chains_are_shallow() {
        let sum129 = (0..129)
            .map(|i| format!("{i}"))
            .collect::<Vec<_>>()
            .join(" + ");
        let e = Expr::parse(&sum129).expect("a flat sum of 129 terms");
        assert_eq!(e.eval(&vars(&[])).unwrap(), 128 * 129 / 2);
        assert_eq!(e.root.depth, 2);
        // The longest chain the length cap allows, of each precedence and mixed.
        let sum = vec!["1"; 2000].join("+");
        assert_eq!(ev(&sum, &[]).unwrap(), 2000);
        let product = vec!["n"; 1000].join("*");
        assert_eq!(ev(&product, &[("n", 1)]).unwrap(), 1);
        let mixed = vec!["2 * n - 1"; 300].join(" + ");
        assert_eq!(ev(&mixed, &[("n", 3)]).unwrap(), 1500);
        assert_eq!(Expr::parse(&mixed).unwrap().root.depth, 3);
        // Left-associated, left to right: 100 - 1 - 1 - ... and a division chain.
        let diff = format!("100{}", " - 1".repeat(150));
        assert_eq!(ev(&diff, &[]).unwrap(), -50);
        assert_eq!(ev("1000 / 10 / 5 % 3", &[]).unwrap(), 2);
        // A parenthesized left operand of the same precedence is the same chain.
        assert_eq!(
            Expr::parse("(a + b) + c").unwrap(),
            Expr::parse("a + b + c").unwrap()
        );
        assert_ne!(
            Expr::parse("a + (b + c)").unwrap(),
            Expr::parse("a + b + c").unwrap()
        );
        assert_eq!(
            Expr::parse("a - (b - c)").unwrap().to_string(),
            "a - (b - c)"
        );
        assert_eq!(
            ev("a - (b - c)", &[("a", 10), ("b", 4), ("c", 1)]).unwrap(),
            7
        );
        // Errors inside a chain point at their operator.
        let e = ev("1 + 2 + 3 / 0 + 4", &[]).unwrap_err();
        assert_eq!((e.column(), e.kind), (11, ExprErrorKind::DivisionByZero));
        let e = ev("9223372036854775807 - 1 + 1 + 1", &[]).unwrap_err();
        assert!(matches!(e.kind, ExprErrorKind::Overflow { .. }), "{e}");
        assert_eq!(e.column(), 29);
        // Nesting is still counted: 120 levels of parentheses around a sum pass, 200 do not.
        let nest = |k: usize| format!("{}a + b{}", "(".repeat(k), ")".repeat(k));
        assert!(Expr::parse(&nest(120)).is_ok());
        assert_eq!(
            Expr::parse(&nest(200)).unwrap_err().kind,
            ExprErrorKind::TooDeep
        );
        let calls = |k: usize| format!("{}1{}", "max(1, ".repeat(k), ")".repeat(k));
        assert!(Expr::parse(&calls(100)).is_ok());
        assert_eq!(
            Expr::parse(&calls(200)).unwrap_err().kind,
            ExprErrorKind::TooDeep
        );
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("n+1", "n + 1"),
            ("(n+1)*2", "(n + 1) * 2"),
            ("n-(a-b)", "n - (a - b)"),
            ("(n-a)-b", "n - a - b"),
            ("a/(b*c)", "a / (b * c)"),
            ("-(a+b)", "-(a + b)"),
            ("-a*b", "-a * b"),
            ("a*-b", "a * -b"),
            ("ceil_div( n ,BLOCK*ITEMS )", "ceil_div(n, BLOCK * ITEMS)"),
        ];
        for (text, want) in cases {
            let e = Expr::parse(text).unwrap();
            assert_eq!(e.to_string(), want);
            assert_eq!(Expr::parse(&e.to_string()).unwrap(), e);
        }
        assert_eq!(Expr::constant(-3).to_string(), "(-3)");
        assert_eq!(
            Expr::constant(i64::MIN).to_string(),
            "(-9223372036854775807 - 1)"
        );
        let m = Expr::parse(&Expr::constant(i64::MIN).to_string()).unwrap();
        assert_eq!(m.eval(&BTreeMap::new()).unwrap(), i64::MIN);
        assert_eq!(Expr::constant(256).as_constant(), Some(256));
        assert_eq!(Expr::constant(256).source(), "256");
    }

    #[test]
    fn names_are_collected() {
        let e = Expr::parse("ceil_div(n, BLOCK * ITEMS) + n").unwrap();
        let names: Vec<&str> = e.names().into_iter().collect();
        assert_eq!(names, vec!["BLOCK", "ITEMS", "n"]);
    }

    // ---- property tests -------------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum R {
        Int(i64),
        Var(usize),
        Neg(Box<R>),
        Bin(BinOp, Box<R>, Box<R>),
        Call(Func, Box<R>, Box<R>),
    }

    const VARS: [&str; 3] = ["n", "BLOCK", "k_2"];

    fn render(r: &R) -> String {
        // Fully parenthesized, so parsing does not depend on the printer under test.
        match r {
            R::Int(v) => v.to_string(),
            R::Var(i) => VARS[*i].to_string(),
            R::Neg(a) => format!("-({})", render(a)),
            R::Bin(op, a, b) => format!("({}) {} ({})", render(a), op.symbol(), render(b)),
            R::Call(f, a, b) => format!("{}({}, {})", f.name(), render(a), render(b)),
        }
    }

    /// Reference semantics in i128; `None` when any step leaves i64 or is an error.
    fn reference(r: &R, env: &[i64; 3]) -> Option<i64> {
        let fit = |v: i128| i64::try_from(v).ok();
        match r {
            R::Int(v) => Some(*v),
            R::Var(i) => Some(env[*i]),
            R::Neg(a) => fit(-(reference(a, env)? as i128)),
            R::Bin(op, a, b) => {
                let a = reference(a, env)? as i128;
                let b = reference(b, env)? as i128;
                match op {
                    BinOp::Add => fit(a + b),
                    BinOp::Sub => fit(a - b),
                    BinOp::Mul => fit(a * b),
                    BinOp::Div => (b != 0).then(|| fit(a / b)).flatten(),
                    BinOp::Rem => (b != 0).then(|| fit(a % b)).flatten(),
                }
            }
            R::Call(f, a, b) => {
                let a = reference(a, env)? as i128;
                let b = reference(b, env)? as i128;
                match f {
                    Func::Min => fit(a.min(b)),
                    Func::Max => fit(a.max(b)),
                    Func::CeilDiv | Func::AlignUp => {
                        if b <= 0 {
                            return None;
                        }
                        // Mathematical ceiling.
                        let q = if a >= 0 { (a + b - 1) / b } else { -((-a) / b) };
                        if *f == Func::CeilDiv {
                            fit(q)
                        } else {
                            fit(q * b)
                        }
                    }
                }
            }
        }
    }

    fn arb_r() -> impl Strategy<Value = R> {
        let leaf = prop_oneof![
            prop_oneof![0i64..20, 0i64..100_000, 0i64..=i64::MAX].prop_map(R::Int),
            (0usize..3).prop_map(R::Var),
        ];
        leaf.prop_recursive(6, 48, 2, |inner| {
            let op = prop_oneof![
                Just(BinOp::Add),
                Just(BinOp::Sub),
                Just(BinOp::Mul),
                Just(BinOp::Div),
                Just(BinOp::Rem)
            ];
            let func = prop_oneof![
                Just(Func::CeilDiv),
                Just(Func::Min),
                Just(Func::Max),
                Just(Func::AlignUp)
            ];
            prop_oneof![
                inner.clone().prop_map(|a| R::Neg(Box::new(a))),
                (op, inner.clone(), inner.clone()).prop_map(|(o, a, b)| R::Bin(
                    o,
                    Box::new(a),
                    Box::new(b)
                )),
                (func, inner.clone(), inner).prop_map(|(f, a, b)| R::Call(
                    f,
                    Box::new(a),
                    Box::new(b)
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn eval_matches_i128_reference(
            r in arb_r(),
            env in prop::array::uniform3(prop_oneof![-1000i64..1000, any::<i64>()]),
        ) {
            let text = render(&r);
            let e = Expr::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let map: BTreeMap<String, i64> =
                VARS.iter().zip(env.iter()).map(|(k, v)| (k.to_string(), *v)).collect();
            let got = e.eval(&map);
            match reference(&r, &env) {
                Some(want) => prop_assert_eq!(got, Ok(want), "{}", text),
                None => prop_assert!(got.is_err(), "{} gave {:?}", text, got),
            }
        }

        #[test]
        fn display_then_reparse_is_stable(r in arb_r()) {
            let e = Expr::parse(&render(&r)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let printed = e.to_string();
            let again = Expr::parse(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &e, "{}", printed);
            prop_assert_eq!(again.to_string(), printed);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[ -~]{0,40}") {
            if let Ok(e) = Expr::parse(&s) {
                let _ = e.eval_with(&|_| Some(7));
                let _ = Expr::parse(&e.to_string());
            }
        }
    }
}
