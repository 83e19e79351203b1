//! Rust solutions for a template and parameter: the reference ([`reference`]) and realistic
//! wrong variants ([`wrong_variants`]), for the tests (every reference must pass all of its
//! problem's tests, every wrong one fail at least one) and for the tiny code model's corpus.
//!
//! A program is three pieces: helpers (the gcd), the reading of the input (one per
//! [`Layout`]) and the body (one per template and parameter). A mistake changes exactly one
//! piece: reading mistakes ([`Mistake::OffByOne`], [`Mistake::WrongReading`]) belong to the
//! layout, so every template of that layout has them; the others to the body. The reference
//! is written independently of [`super::answer`] (a second implementation), which is what makes
//! the reference-passes test meaningful.

use serde::{Deserialize, Serialize};

use super::{Layout, TemplateId, PARITY_WORDS};

/// A realistic mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mistake {
    /// One item too few (the last number of a list, the last letter of a word).
    OffByOne,
    /// The input read wrongly (the count taken as data, a number parsed as `i32`).
    WrongReading,
    /// The wrong operation (min for max, `>=` for `>`, `x % 2 == 1` for odd, no reversal...).
    WrongOperator,
    /// Arithmetic in `i32` where the answer needs 64 bits (wraps: `-O` has no overflow checks).
    Overflow,
}

/// A wrong solution and the mistake it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrongSolution {
    pub mistake: Mistake,
    pub source: String,
}

/// The reference solution of `template` with `parameter`.
pub fn reference(template: TemplateId, parameter: i64) -> String {
    program(template, parameter, None)
}

/// Every wrong variant the template has for `parameter`.
pub fn wrong_variants(template: TemplateId, parameter: i64) -> Vec<WrongSolution> {
    mistakes(template, parameter)
        .into_iter()
        .map(|mistake| WrongSolution {
            mistake,
            source: program(template, parameter, Some(mistake)),
        })
        .collect()
}

/// The mistakes a template's programs can make: its layout's reading mistakes, then its body's.
pub fn mistakes(template: TemplateId, parameter: i64) -> Vec<Mistake> {
    use TemplateId as T;
    let mut all = match template.layout(parameter) {
        Layout::List | Layout::Word => vec![Mistake::OffByOne, Mistake::WrongReading],
        Layout::Number => vec![Mistake::WrongReading],
        Layout::Pair => vec![],
    };
    all.push(Mistake::WrongOperator);
    let overflows =
        matches!(template, T::SumMod | T::RunningSum) || (template == T::GcdLcm && parameter == 1);
    if overflows {
        all.push(Mistake::Overflow);
    }
    all
}

fn program(template: TemplateId, parameter: i64, mistake: Option<Mistake>) -> String {
    let helpers = if template == TemplateId::GcdLcm {
        "fn gcd(a: i64, b: i64) -> i64 {\n    if b == 0 { a } else { gcd(b, a % b) }\n}\n\n"
    } else {
        ""
    };
    format!(
        "use std::io::Read;\n\n{helpers}fn main() {{\n    let mut input = String::new();\n    std::io::stdin().read_to_string(&mut input).unwrap();\n    let mut tokens = input.split_ascii_whitespace();\n{}{}}}\n",
        reading(template.layout(parameter), mistake),
        body(template, parameter, mistake),
    )
}

fn reading(layout: Layout, mistake: Option<Mistake>) -> &'static str {
    match (layout, mistake) {
        (Layout::List, Some(Mistake::OffByOne)) => "    let n: usize = tokens.next().unwrap().parse().unwrap();\n    let a: Vec<i64> = (1..n).map(|_| tokens.next().unwrap().parse().unwrap()).collect();\n",
        (Layout::List, Some(Mistake::WrongReading)) => "    let a: Vec<i64> = tokens.map(|t| t.parse().unwrap()).collect();\n",
        (Layout::List, _) => "    let n: usize = tokens.next().unwrap().parse().unwrap();\n    let a: Vec<i64> = (0..n).map(|_| tokens.next().unwrap().parse().unwrap()).collect();\n",
        (Layout::Pair, _) => "    let a: i64 = tokens.next().unwrap().parse().unwrap();\n    let b: i64 = tokens.next().unwrap().parse().unwrap();\n",
        (Layout::Word, Some(Mistake::OffByOne)) => "    let _n: usize = tokens.next().unwrap().parse().unwrap();\n    let s: &str = tokens.next().unwrap();\n    let s = &s[..s.len() - 1];\n",
        (Layout::Word, Some(Mistake::WrongReading)) => "    let s: &str = tokens.next().unwrap();\n",
        (Layout::Word, _) => "    let _n: usize = tokens.next().unwrap().parse().unwrap();\n    let s: &str = tokens.next().unwrap();\n",
        (Layout::Number, Some(Mistake::WrongReading)) => "    let n: u64 = tokens.next().unwrap().parse::<i32>().unwrap() as u64;\n",
        (Layout::Number, _) => "    let n: u64 = tokens.next().unwrap().parse().unwrap();\n",
    }
}

fn body(template: TemplateId, parameter: i64, mistake: Option<Mistake>) -> String {
    use TemplateId as T;
    let wrong = mistake == Some(Mistake::WrongOperator);
    let overflow = mistake == Some(Mistake::Overflow);
    let p = parameter;
    match template {
        T::SumMod => {
            let sum = if overflow {
                "    let total: i32 = a.iter().map(|&x| x as i32).sum();\n"
            } else {
                "    let total: i64 = a.iter().sum();\n"
            };
            let op = if wrong { "/" } else { "%" };
            format!("{sum}    println!(\"{{}}\", total {op} {p});\n")
        }
        T::Extreme => {
            let (min, max) = if wrong {
                ("max", "min")
            } else {
                ("min", "max")
            };
            match p {
                0 => format!("    println!(\"{{}}\", a.iter().{min}().unwrap());\n"),
                1 => format!("    println!(\"{{}}\", a.iter().{max}().unwrap());\n"),
                _ => format!("    println!(\"{{}}\", a.iter().{max}().unwrap() - a.iter().{min}().unwrap());\n"),
            }
        }
        T::CountDivisible | T::CountAbove => {
            let test = match (template, wrong) {
                (T::CountDivisible, false) => format!("x % {p} == 0"),
                (T::CountDivisible, true) => format!("x % {p} != 0"),
                (_, false) => format!("x > {p}"),
                (_, true) => format!("x >= {p}"),
            };
            format!("    let count = a.iter().filter(|&&x| {test}).count();\n    println!(\"{{}}\", count);\n")
        }
        T::Reverse => {
            let rev = if wrong { "" } else { ".rev()" };
            if p == 0 {
                format!("    let out: Vec<String> = a.iter(){rev}.map(|x| x.to_string()).collect();\n    println!(\"{{}}\", out.join(\" \"));\n")
            } else {
                format!("    let out: String = s.chars(){rev}.collect();\n    println!(\"{{}}\", out);\n")
            }
        }
        T::Parity => {
            let (even, odd) = PARITY_WORDS[p as usize];
            let choice = if wrong {
                format!("if x % 2 == 1 {{ \"{odd}\" }} else {{ \"{even}\" }}")
            } else {
                format!("if x % 2 == 0 {{ \"{even}\" }} else {{ \"{odd}\" }}")
            };
            format!("    let mut out = String::new();\n    for x in &a {{\n        out.push_str({choice});\n        out.push('\\n');\n    }}\n    print!(\"{{}}\", out);\n")
        }
        T::GcdLcm => {
            let expr = match (p, mistake) {
                (0, Some(Mistake::WrongOperator)) => "a.min(b)",
                (0, _) => "gcd(a, b)",
                (1, Some(Mistake::WrongOperator)) => "a * b",
                (1, Some(Mistake::Overflow)) => "(a as i32) / (gcd(a, b) as i32) * (b as i32)",
                (1, _) => "a / gcd(a, b) * b",
                (_, Some(Mistake::WrongOperator)) => "*a.iter().min().unwrap()",
                _ => "a.iter().fold(0, |g, &x| gcd(g, x))",
            };
            format!("    println!(\"{{}}\", {expr});\n")
        }
        T::RunningSum => {
            let int = if overflow { "i32" } else { "i64" };
            // Suffix sums walk from the end and turn the result around; the wrong variant
            // computes the other kind.
            let suffix = (p == 1) != wrong;
            let (order, turn) = if suffix {
                (".rev()", "    out.reverse();\n")
            } else {
                ("", "")
            };
            format!("    let mut total: {int} = 0;\n    let mut out = Vec::new();\n    for &x in a.iter(){order} {{\n        total += x as {int};\n        out.push(total.to_string());\n    }}\n{turn}    println!(\"{{}}\", out.join(\" \"));\n")
        }
        T::CountLetter => {
            let c = p as u8 as char;
            let op = if wrong { "!=" } else { "==" };
            format!("    let count = s.chars().filter(|&c| c {op} '{c}').count();\n    println!(\"{{}}\", count);\n")
        }
        T::Digits => {
            let digit_sum = "    let digit_sum = |mut v: u64| {\n        let mut s = 0;\n        while v > 0 {\n            s += v % 10;\n            v /= 10;\n        }\n        s\n    };\n";
            match (p, wrong) {
                (0, false) => format!("{digit_sum}    println!(\"{{}}\", digit_sum(n));\n"),
                (0, true) => "    println!(\"{}\", n % 9);\n".into(),
                (1, false) => "    println!(\"{}\", n.to_string().len());\n".into(),
                (1, true) => "    let mut count = 0;\n    let mut v = n;\n    while v > 0 {\n        count += 1;\n        v /= 10;\n    }\n    println!(\"{}\", count);\n".into(),
                (_, false) => format!("{digit_sum}    let mut v = n;\n    while v >= 10 {{\n        v = digit_sum(v);\n    }}\n    println!(\"{{}}\", v);\n"),
                (_, true) => format!("{digit_sum}    println!(\"{{}}\", digit_sum(n));\n"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_wrong_variants_that_differ_from_the_reference() {
        for t in TemplateId::ALL {
            for &p in t.parameters() {
                let reference = reference(t, p);
                let wrong = wrong_variants(t, p);
                assert!(wrong.len() >= 2 || t == TemplateId::GcdLcm, "{t:?} {p}");
                for w in &wrong {
                    assert_ne!(w.source, reference, "{t:?} {p} {:?}", w.mistake);
                }
            }
        }
    }
}
