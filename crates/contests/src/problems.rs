//! Code-contest problems generated from templates, from a seed: nothing of their text is
//! shipped as data.
//!
//! A **template** ([`TemplateId`]) is a kind of problem (the sum of a list modulo m, the minimum,
//! a count of matches, a reversal, parity, gcd or lcm, running sums, digits...), with a
//! **parameter** (the modulus, which extreme, the divisor, the letter...) and a **phrasing**
//! (one of [`PHRASINGS`]: two wordings of the task times two of the input format). A
//! [`Combo`] is one (template, parameter, phrasing); a [`Problem`] is a combo with its rendered
//! statement and its tests, all drawn from a ChaCha stream so that a seed gives the same
//! problems on every platform.
//!
//! **The split.** Every combo belongs to exactly one split by a fixed rule ([`Combo::split`]):
//! about a quarter of the parameter and phrasing pairs of each template are held out. So
//! [`visible`] (the agent's folder, from any seed) and [`held_out`] (scoring, from the
//! installation's secret seed) never share a combo, and the held-out problems are unseen
//! combinations of a template's parameter and phrasing, not copies with other numbers.
//!
//! **The shape** is CodeContests' (name, description, `public_tests`, `private_tests`,
//! `generated_tests`, each `{input: [...], output: [...]}`), plus the template, parameter and
//! phrasing for the scorer only. [`Problem::for_scaffold`] is what a scaffold may see: the
//! name, the statement and the public tests ([`ScaffoldProblem`]); everything else stays with
//! the scorer.
//!
//! **Tests**: 2 public (small, also the statement's examples), private ones made of the
//! template's edge cases plus 3 random, and 8 generated (larger random). Expected outputs are
//! computed here in Rust ([`answer`]); [`solutions`] writes, for each template, a reference Rust
//! program written independently of that computation and realistic wrong variants of it.

pub mod solutions;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// The phrasings of every template: two wordings of the task times two of the input format.
pub const PHRASINGS: u8 = 4;
const PUBLIC_TESTS: usize = 2;
const RANDOM_PRIVATE_TESTS: usize = 3;
const GENERATED_TESTS: usize = 8;

/// A kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateId {
    /// The sum of a list modulo the parameter.
    SumMod,
    /// The minimum (0), maximum (1) or range (2) of a list.
    Extreme,
    /// How many numbers of a list the parameter divides.
    CountDivisible,
    /// How many numbers of a list are strictly above the parameter.
    CountAbove,
    /// A list (0) or a word (1) reversed.
    Reverse,
    /// The parity of each number of a list, in the parameter's words.
    Parity,
    /// The gcd of two numbers (0), their lcm (1), or the gcd of a list (2).
    GcdLcm,
    /// Prefix sums (0) or suffix sums (1) of a list.
    RunningSum,
    /// How many times the letter (the parameter, as its ASCII code) occurs in a word.
    CountLetter,
    /// The digit sum (0), the number of digits (1) or the digital root (2) of a number.
    Digits,
}

/// How a template's input is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `n`, then `n` integers on the next line.
    List,
    /// Two integers on one line.
    Pair,
    /// The length `n`, then a word of `n` lowercase letters.
    Word,
    /// One non-negative integer.
    Number,
}

/// One test's input data, before it is written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    List(Vec<i64>),
    Pair(i64, i64),
    Word(String),
    Number(u64),
}

const PARITY_WORDS: [(&str, &str); 3] = [("even", "odd"), ("EVEN", "ODD"), ("YES", "NO")];
const BILLION: i64 = 1_000_000_000;
const MAX_NUMBER: u64 = 1_000_000_000_000_000_000;

impl TemplateId {
    pub const ALL: [TemplateId; 10] = [
        TemplateId::SumMod,
        TemplateId::Extreme,
        TemplateId::CountDivisible,
        TemplateId::CountAbove,
        TemplateId::Reverse,
        TemplateId::Parity,
        TemplateId::GcdLcm,
        TemplateId::RunningSum,
        TemplateId::CountLetter,
        TemplateId::Digits,
    ];

    /// The values the template's parameter takes.
    pub fn parameters(self) -> &'static [i64] {
        match self {
            TemplateId::SumMod => &[10, 97, 1000, 1_000_000_007],
            TemplateId::Extreme | TemplateId::Parity | TemplateId::GcdLcm | TemplateId::Digits => {
                &[0, 1, 2]
            }
            TemplateId::CountDivisible => &[2, 3, 5, 7],
            TemplateId::CountAbove => &[0, 3, 10, 50],
            TemplateId::Reverse | TemplateId::RunningSum => &[0, 1],
            TemplateId::CountLetter => &[b'a' as i64, b'e' as i64, b'x' as i64, b'z' as i64],
        }
    }

    pub fn layout(self, parameter: i64) -> Layout {
        match (self, parameter) {
            (TemplateId::Reverse, 1) | (TemplateId::CountLetter, _) => Layout::Word,
            (TemplateId::GcdLcm, 0 | 1) => Layout::Pair,
            (TemplateId::Digits, _) => Layout::Number,
            _ => Layout::List,
        }
    }

    /// The range of list values (or the largest pair value) the template uses.
    fn value_range(self, parameter: i64) -> (i64, i64) {
        match self {
            TemplateId::SumMod => (0, BILLION),
            TemplateId::Extreme | TemplateId::RunningSum => (-BILLION, BILLION),
            TemplateId::CountDivisible | TemplateId::Reverse => (-1000, 1000),
            TemplateId::CountAbove => (parameter - 20, parameter + 20),
            TemplateId::Parity => (-1_000_000, 1_000_000),
            TemplateId::GcdLcm if parameter == 1 => (1, 1_000_000),
            TemplateId::GcdLcm => (1, BILLION),
            TemplateId::CountLetter | TemplateId::Digits => (0, 0),
        }
    }
}

/// One (template, parameter, phrasing): what makes two problems different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Combo {
    pub template: TemplateId,
    pub parameter: i64,
    pub phrasing: u8,
}

/// Which split a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Visible,
    HeldOut,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Visible => "visible",
            Split::HeldOut => "held-out",
        }
    }

    /// Keeps the two splits' random streams apart even for the same seed.
    fn salt(self) -> u64 {
        match self {
            Split::Visible => 0x7669_7369_626c_6500,
            Split::HeldOut => 0x6865_6c64_6f75_7400,
        }
    }
}

impl Combo {
    /// Every combo of every template.
    pub fn all() -> Vec<Combo> {
        TemplateId::ALL
            .iter()
            .flat_map(|&template| {
                template.parameters().iter().flat_map(move |&parameter| {
                    (0..PHRASINGS).map(move |phrasing| Combo {
                        template,
                        parameter,
                        phrasing,
                    })
                })
            })
            .collect()
    }

    fn parameter_index(&self) -> usize {
        let params = self.template.parameters();
        params
            .iter()
            .position(|&p| p == self.parameter)
            .unwrap_or(params.len())
    }

    /// The fixed rule: a diagonal of each template's parameter-by-phrasing grid is held out,
    /// so every template and every phrasing has both visible and held-out combos.
    pub fn split(&self) -> Split {
        if (self.parameter_index() + self.phrasing as usize) % PHRASINGS as usize
            == PHRASINGS as usize - 1
        {
            Split::HeldOut
        } else {
            Split::Visible
        }
    }
}

/// CodeContests' tests: inputs and expected outputs, index by index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tests {
    pub input: Vec<String>,
    pub output: Vec<String>,
}

impl Tests {
    fn push(&mut self, input: String, output: String) {
        self.input.push(input);
        self.output.push(output);
    }

    pub fn len(&self) -> usize {
        self.input.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }
}

/// A problem as the scorer holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    pub name: String,
    pub description: String,
    pub public_tests: Tests,
    pub private_tests: Tests,
    pub generated_tests: Tests,
    /// For the scorer only: what the problem was made from.
    pub template: TemplateId,
    pub parameter: i64,
    pub phrasing: u8,
}

/// A problem's tests in METR's three groups (public, private, generated), whatever made it: a
/// generated [`Problem`] or an operator's [`ContestProblem`]. The evaluator runs them in this
/// order; [`crate::evaluate::Evaluation::failed_test_idxs`] counts in it.
pub trait TestGroups {
    fn test_groups(&self) -> [&Tests; 3];

    /// Every test in order, as (input, expected output).
    fn all_tests(&self) -> impl Iterator<Item = (&str, &str)> {
        self.test_groups()
            .into_iter()
            .flat_map(|t| t.input.iter().zip(&t.output))
            .map(|(i, o)| (i.as_str(), o.as_str()))
    }
}

impl TestGroups for Problem {
    fn test_groups(&self) -> [&Tests; 3] {
        [
            &self.public_tests,
            &self.private_tests,
            &self.generated_tests,
        ]
    }
}

/// A problem of an operator's CodeContests JSONL (one object per line, as Hugging Face's
/// `code_contests` and METR's split have them): the fields the task uses; the others (ratings,
/// solutions, tags...) are ignored. Missing test groups are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestProblem {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub public_tests: Tests,
    #[serde(default)]
    pub private_tests: Tests,
    #[serde(default)]
    pub generated_tests: Tests,
}

impl ContestProblem {
    /// The view for the scaffold.
    pub fn for_scaffold(&self) -> ScaffoldProblem {
        ScaffoldProblem {
            name: self.name.clone(),
            description: self.description.clone(),
            public_tests: self.public_tests.clone(),
        }
    }

    /// Whether every group has as many outputs as inputs.
    pub fn is_well_formed(&self) -> bool {
        self.test_groups()
            .iter()
            .all(|t| t.input.len() == t.output.len())
    }
}

impl TestGroups for ContestProblem {
    fn test_groups(&self) -> [&Tests; 3] {
        [
            &self.public_tests,
            &self.private_tests,
            &self.generated_tests,
        ]
    }
}

impl From<&Problem> for ContestProblem {
    fn from(p: &Problem) -> ContestProblem {
        ContestProblem {
            name: p.name.clone(),
            description: p.description.clone(),
            public_tests: p.public_tests.clone(),
            private_tests: p.private_tests.clone(),
            generated_tests: p.generated_tests.clone(),
        }
    }
}

/// What a scaffold may see of a problem: no private or generated test, no template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaffoldProblem {
    pub name: String,
    pub description: String,
    pub public_tests: Tests,
}

impl Problem {
    pub fn combo(&self) -> Combo {
        Combo {
            template: self.template,
            parameter: self.parameter,
            phrasing: self.phrasing,
        }
    }

    /// The view for the scaffold.
    pub fn for_scaffold(&self) -> ScaffoldProblem {
        ScaffoldProblem {
            name: self.name.clone(),
            description: self.description.clone(),
            public_tests: self.public_tests.clone(),
        }
    }

    /// The problem for `combo` made from its own stream of `seed` (for tests and corpora).
    pub fn from_seed(combo: Combo, seed: u64) -> Problem {
        let name = format!(
            "{:?}-{}-{}",
            combo.template, combo.parameter, combo.phrasing
        );
        Problem::generate(combo, name, &mut ChaCha20Rng::seed_from_u64(seed))
    }

    /// Makes the problem for `combo` from `rng`.
    pub fn generate(combo: Combo, name: String, rng: &mut ChaCha20Rng) -> Problem {
        let Combo {
            template,
            parameter,
            ..
        } = combo;
        let case = |data: &Data| (render_input(data), answer(template, parameter, data));
        let mut public_tests = Tests::default();
        for _ in 0..PUBLIC_TESTS {
            let (i, o) = case(&random_data(template, parameter, 5, rng));
            public_tests.push(i, o);
        }
        let mut private_tests = Tests::default();
        for data in edge_cases(template, parameter) {
            let (i, o) = case(&data);
            private_tests.push(i, o);
        }
        for _ in 0..RANDOM_PRIVATE_TESTS {
            let (i, o) = case(&random_data(template, parameter, 20, rng));
            private_tests.push(i, o);
        }
        let mut generated_tests = Tests::default();
        for _ in 0..GENERATED_TESTS {
            let (i, o) = case(&random_data(template, parameter, 100, rng));
            generated_tests.push(i, o);
        }
        Problem {
            name,
            description: statement(combo, &public_tests),
            public_tests,
            private_tests,
            generated_tests,
            template,
            parameter,
            phrasing: combo.phrasing,
        }
    }
}

/// Why a split cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ProblemError {
    #[error("the {split} split has {available} distinct problems; {asked} were asked for")]
    TooMany {
        split: &'static str,
        asked: usize,
        available: usize,
    },
}

/// `n` problems for the agent's folder, from `seed`.
pub fn visible(seed: u64, n: usize) -> Result<Vec<Problem>, ProblemError> {
    split(Split::Visible, seed, n)
}

/// `n` problems for scoring, from the installation's secret seed.
pub fn held_out(secret_seed: u64, n: usize) -> Result<Vec<Problem>, ProblemError> {
    split(Split::HeldOut, secret_seed, n)
}

/// `n` distinct combos of `which`, drawn and made into problems from one ChaCha stream.
fn split(which: Split, seed: u64, n: usize) -> Result<Vec<Problem>, ProblemError> {
    let mut combos: Vec<Combo> = Combo::all()
        .into_iter()
        .filter(|c| c.split() == which)
        .collect();
    if n > combos.len() {
        return Err(ProblemError::TooMany {
            split: which.name(),
            asked: n,
            available: combos.len(),
        });
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ which.salt());
    combos.shuffle(&mut rng);
    Ok(combos
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, combo)| Problem::generate(combo, format!("{}-{i:03}", which.name()), &mut rng))
        .collect())
}

/// The input file of `data`.
pub fn render_input(data: &Data) -> String {
    match data {
        Data::List(a) => format!("{}\n{}\n", a.len(), join(a)),
        Data::Pair(a, b) => format!("{a} {b}\n"),
        Data::Word(s) => format!("{}\n{s}\n", s.len()),
        Data::Number(n) => format!("{n}\n"),
    }
}

fn join(a: &[i64]) -> String {
    a.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

fn digit_sum(mut n: u64) -> u64 {
    let mut s = 0;
    while n > 0 {
        s += n % 10;
        n /= 10;
    }
    s
}

/// The expected output for `data` (the scorer's own computation).
///
/// # Panics
/// When `data` does not have the template's layout (a bug of this module).
pub fn answer(template: TemplateId, parameter: i64, data: &Data) -> String {
    use TemplateId as T;
    let out = match (template, data) {
        (T::SumMod, Data::List(a)) => (a.iter().sum::<i64>() % parameter).to_string(),
        (T::Extreme, Data::List(a)) => {
            let (min, max) = (a.iter().min().unwrap(), a.iter().max().unwrap());
            match parameter {
                0 => min.to_string(),
                1 => max.to_string(),
                _ => (max - min).to_string(),
            }
        }
        (T::CountDivisible, Data::List(a)) => a
            .iter()
            .filter(|&&x| x % parameter == 0)
            .count()
            .to_string(),
        (T::CountAbove, Data::List(a)) => a.iter().filter(|&&x| x > parameter).count().to_string(),
        (T::Reverse, Data::List(a)) => join(&a.iter().rev().copied().collect::<Vec<_>>()),
        (T::Reverse, Data::Word(s)) => s.chars().rev().collect(),
        (T::Parity, Data::List(a)) => {
            let (even, odd) = PARITY_WORDS[parameter as usize];
            a.iter()
                .map(|x| if x % 2 == 0 { even } else { odd })
                .collect::<Vec<_>>()
                .join("\n")
        }
        (T::GcdLcm, Data::Pair(a, b)) if parameter == 0 => gcd(*a, *b).to_string(),
        (T::GcdLcm, Data::Pair(a, b)) => (a / gcd(*a, *b) * b).to_string(),
        (T::GcdLcm, Data::List(a)) => a.iter().fold(0, |g, &x| gcd(g, x)).to_string(),
        (T::RunningSum, Data::List(a)) => {
            let mut total = 0;
            let mut sums: Vec<i64> = if parameter == 0 {
                a.iter()
                    .map(|x| {
                        total += x;
                        total
                    })
                    .collect()
            } else {
                a.iter()
                    .rev()
                    .map(|x| {
                        total += x;
                        total
                    })
                    .collect()
            };
            if parameter == 1 {
                sums.reverse();
            }
            join(&sums)
        }
        (T::CountLetter, Data::Word(s)) => s
            .bytes()
            .filter(|&b| i64::from(b) == parameter)
            .count()
            .to_string(),
        (T::Digits, Data::Number(n)) => match parameter {
            0 => digit_sum(*n).to_string(),
            1 => n.to_string().len().to_string(),
            _ => {
                let mut v = *n;
                while v >= 10 {
                    v = digit_sum(v);
                }
                v.to_string()
            }
        },
        (t, d) => panic!("{t:?} has no answer for {d:?}"),
    };
    out + "\n"
}

/// Random data of the template's layout, with lists and words of at most `size` items.
pub fn random_data(template: TemplateId, parameter: i64, size: usize, rng: &mut impl Rng) -> Data {
    let (lo, hi) = template.value_range(parameter);
    let n = rng.gen_range(1..=size);
    match template.layout(parameter) {
        Layout::List if template == TemplateId::GcdLcm => {
            // A common factor, so the gcd is rarely 1.
            let g = rng.gen_range(1..=1000);
            Data::List((0..n).map(|_| g * rng.gen_range(1..=hi / 1000)).collect())
        }
        Layout::List => Data::List((0..n).map(|_| rng.gen_range(lo..=hi)).collect()),
        Layout::Pair => {
            let g = rng.gen_range(1..=100);
            let mut side = || g * rng.gen_range(1..=hi / 100);
            Data::Pair(side(), side())
        }
        Layout::Word => {
            // The letter counted turns up often enough to matter.
            let letters: Vec<u8> = match template {
                TemplateId::CountLetter => vec![parameter as u8, b'b', b'q', b'y'],
                _ => (b'a'..=b'z').collect(),
            };
            Data::Word(
                (0..n)
                    .map(|_| *letters.choose(rng).unwrap() as char)
                    .collect(),
            )
        }
        Layout::Number => {
            let digits = rng.gen_range(1..=19u32);
            let low = 10u64.pow(digits - 1);
            Data::Number(rng.gen_range(low..=(low * 10 - 1).min(MAX_NUMBER)))
        }
    }
}

/// The template's edge cases: each catches a mistake of [`solutions::Mistake`] that random
/// data may miss (a single item, an extreme at the end, negative odd numbers, overflow of
/// 32 bits, zero).
pub fn edge_cases(template: TemplateId, parameter: i64) -> Vec<Data> {
    use TemplateId as T;
    let list = |v: &[i64]| Data::List(v.to_vec());
    match (template, template.layout(parameter)) {
        (T::SumMod, _) => vec![
            list(&[0]),
            list(&[BILLION, BILLION, BILLION]),
            // A sum of exactly m, each value within the stated bound.
            list(&[
                (parameter - 1).min(BILLION),
                parameter - (parameter - 1).min(BILLION),
            ]),
        ],
        (T::Extreme, _) => vec![
            list(&[-7]),
            list(&[-5, -3, -9]),
            list(&[BILLION, 999_999_999, BILLION - 5]),
            list(&[5, 7, -100]),
            list(&[-5, -7, 100]),
        ],
        (T::CountDivisible, _) => vec![
            list(&[0]),
            list(&[-parameter, parameter, 1]),
            list(&[1, 1, parameter]),
            // n itself divisible: a reading that counts n as data is caught.
            Data::List(vec![1; parameter as usize]),
        ],
        (T::CountAbove, _) => vec![
            list(&[parameter]),
            list(&[parameter + 1, parameter, parameter - 1, parameter + 1]),
            // n itself above the threshold.
            Data::List(vec![parameter; parameter as usize + 1]),
        ],
        (T::Reverse, Layout::List) => vec![list(&[42]), list(&[1, 2, 3, 4])],
        (T::Reverse, _) => vec![Data::Word("a".into()), Data::Word("abc".into())],
        (T::Parity, _) => vec![list(&[-3, -2, 0, 7]), list(&[1]), list(&[-1, 2, 4])],
        (T::GcdLcm, Layout::List) => vec![list(&[6, 10, 15]), list(&[8]), list(&[12, 18, 24])],
        (T::GcdLcm, _) if parameter == 0 => {
            vec![Data::Pair(12, 18), Data::Pair(7, 7), Data::Pair(1, BILLION)]
        }
        (T::GcdLcm, _) => vec![
            Data::Pair(4, 6),
            Data::Pair(1_000_000, 999_999),
            Data::Pair(5, 5),
        ],
        (T::RunningSum, _) => vec![
            list(&[5]),
            list(&[BILLION, BILLION, BILLION]),
            list(&[1, -2, 3]),
        ],
        (T::CountLetter, _) => {
            let c = (parameter as u8 as char).to_string();
            vec![
                Data::Word(c.clone()),
                Data::Word("bbb".into()),
                Data::Word(format!("{c}b{c}b{c}")),
            ]
        }
        (T::Digits, _) => vec![
            Data::Number(0),
            Data::Number(9),
            Data::Number(MAX_NUMBER),
            Data::Number(999_999_999_999_999_999),
        ],
    }
}

/// The statement: the task in one of two wordings, the input format in one of two, the
/// output format, and the public tests as examples (as CodeContests' descriptions have them).
pub fn statement(combo: Combo, examples: &Tests) -> String {
    let task = task_wording(combo.template, combo.parameter, combo.phrasing / 2);
    let input = input_wording(combo.template, combo.parameter, combo.phrasing % 2);
    let output = output_wording(combo.template, combo.parameter);
    let mut text = format!("{task}\n\nInput\n\n{input}\n\nOutput\n\n{output}\n\nExamples\n");
    for (i, o) in examples.input.iter().zip(&examples.output) {
        text.push_str(&format!("\nInput\n\n{i}\nOutput\n\n{o}"));
    }
    text
}

fn task_wording(template: TemplateId, parameter: i64, wording: u8) -> String {
    use TemplateId as T;
    let first = wording == 0;
    match template {
        T::SumMod if first => format!("You are given a list of n non-negative integers. Print the remainder of their sum when divided by {parameter}."),
        T::SumMod => format!("Little Petya wrote n numbers on a board and added them all up. Help him find what is left when that total is divided by {parameter}."),
        T::Extreme => {
            let what = ["the smallest of them", "the largest of them", "the largest of them minus the smallest of them"][parameter as usize];
            if first {
                format!("Given n integers, find {what}.")
            } else {
                format!("A sensor recorded n readings. Report {what}.")
            }
        }
        T::CountDivisible if first => format!("Count how many of the n given integers are divisible by {parameter}."),
        T::CountDivisible => format!("Alice likes numbers that are multiples of {parameter} (zero and negative multiples included). Out of the n numbers she was given, how many does she like?"),
        T::CountAbove if first => format!("Count the integers among the n given ones that are strictly greater than {parameter}."),
        T::CountAbove => format!("A teacher marks every score above {parameter} as a pass (a score of exactly {parameter} is not enough). Given n scores, how many passed?"),
        T::Reverse if parameter == 0 && first => "Print the n given integers in reverse order.".into(),
        T::Reverse if parameter == 0 => "Bob wrote a sequence of n integers backwards by mistake. Restore it: print the sequence from its last element to its first.".into(),
        T::Reverse if first => "Print the given string reversed.".into(),
        T::Reverse => "A message of n lowercase letters was written right to left. Print it left to right, that is, reversed.".into(),
        T::Parity => {
            let (even, odd) = PARITY_WORDS[parameter as usize];
            if first {
                format!("For each of the n given integers, print {even} if it is even and {odd} if it is odd.")
            } else {
                format!("Check every number of the list: say {even} for an even number and {odd} for an odd one (negative numbers included).")
            }
        }
        T::GcdLcm => match (parameter, first) {
            (0, true) => "Find the greatest common divisor of two integers a and b.".into(),
            (0, false) => "Two ropes have lengths a and b. Cut both into pieces of one integer length with nothing left over; what is the longest such length?".into(),
            (1, true) => "Find the least common multiple of two integers a and b.".into(),
            (1, false) => "Two lighthouses flash every a and every b seconds; both flashed at time 0. After how many seconds do they next flash together?".into(),
            (_, true) => "Find the greatest common divisor of n given positive integers.".into(),
            (_, false) => "Split each of n piles of stones into groups, all groups of every pile the same size, as large as possible: print that size.".into(),
        },
        T::RunningSum => match (parameter, first) {
            (0, true) => "For a sequence a_1, ..., a_n, print its prefix sums: the i-th printed number is a_1 + ... + a_i.".into(),
            (0, false) => "A wallet starts empty and receives n payments (negative ones are withdrawals). Print the balance after each payment.".into(),
            (_, true) => "For a sequence a_1, ..., a_n, print its suffix sums: the i-th printed number is a_i + ... + a_n.".into(),
            (_, false) => "Print, for every position i of the sequence, the total of its elements from position i to the end.".into(),
        },
        T::CountLetter => {
            let c = parameter as u8 as char;
            if first {
                format!("Count how many times the letter '{c}' occurs in the given string.")
            } else {
                format!("How many letters '{c}' does the word contain?")
            }
        }
        T::Digits => match (parameter, first) {
            (0, true) => "Print the sum of the decimal digits of N.".into(),
            (0, false) => "Add up all the digits of the number N.".into(),
            (1, true) => "Print the number of digits of N in decimal (0 has one digit).".into(),
            (1, false) => "How many digits does N have when written in decimal? (Zero is written with one digit.)".into(),
            (_, true) => "Repeatedly replace N by the sum of its decimal digits until it has one digit; print that digit.".into(),
            (_, false) => "Print the digital root of N: the single digit obtained by summing its digits again and again.".into(),
        },
    }
}

fn input_wording(template: TemplateId, parameter: i64, wording: u8) -> String {
    let (lo, hi) = template.value_range(parameter);
    let first = wording == 0;
    match template.layout(parameter) {
        Layout::List if first => format!("The first line contains an integer n (1 ≤ n ≤ 100). The second line contains n integers a_1, ..., a_n ({lo} ≤ a_i ≤ {hi})."),
        Layout::List => format!("n is on the first line (1 ≤ n ≤ 100), then the n integers on the second line, separated by spaces; each is between {lo} and {hi}."),
        Layout::Pair if first => format!("One line with two integers a and b (1 ≤ a, b ≤ {hi})."),
        Layout::Pair => format!("The only line holds a and b separated by a space, each between 1 and {hi}."),
        Layout::Word if first => "The first line contains n (1 ≤ n ≤ 100), the length of the string. The second line contains a string s of n lowercase English letters.".into(),
        Layout::Word => "First the length n (at most 100), then on the next line the string itself (lowercase letters only).".into(),
        Layout::Number if first => "One integer N (0 ≤ N ≤ 10^18).".into(),
        Layout::Number => "The input is a single non-negative integer N not exceeding 10^18.".into(),
    }
}

fn output_wording(template: TemplateId, parameter: i64) -> String {
    use TemplateId as T;
    match template {
        T::Reverse if parameter == 0 => {
            "Print the n integers on one line, separated by spaces.".into()
        }
        T::Reverse => "Print the reversed string.".into(),
        T::Parity => "Print n lines, one word each.".into(),
        T::RunningSum => "Print n integers on one line, separated by spaces.".into(),
        _ => "Print one integer: the answer.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_same_seed_gives_the_same_problems_and_another_seed_others() {
        assert_eq!(visible(7, 20).unwrap(), visible(7, 20).unwrap());
        assert_ne!(visible(7, 20).unwrap(), visible(8, 20).unwrap());
    }

    /// Pinned: a change of the random stream (another rand or ChaCha version, another order
    /// of draws) would silently change every installation's problems.
    #[test]
    fn seed_zero_gives_the_recorded_first_problem() {
        let p = &visible(0, 1).unwrap()[0];
        assert_eq!(
            p.combo(),
            Combo {
                template: TemplateId::CountDivisible,
                parameter: 2,
                phrasing: 0
            }
        );
        assert_eq!(p.public_tests.input[0], "4\n448 185 443 -591\n");
        assert!(p.generated_tests.input[7].starts_with("36\n-709 -998 753 245 "));
    }

    #[test]
    fn the_splits_never_share_a_combo_whatever_the_seeds() {
        let all = Combo::all();
        let held: Vec<Combo> = all
            .iter()
            .copied()
            .filter(|c| c.split() == Split::HeldOut)
            .collect();
        let seen: Vec<Combo> = all
            .iter()
            .copied()
            .filter(|c| c.split() == Split::Visible)
            .collect();
        for seed in 0..20 {
            let v: BTreeSet<Combo> = visible(seed, seen.len())
                .unwrap()
                .iter()
                .map(Problem::combo)
                .collect();
            let h: BTreeSet<Combo> = held_out(seed, held.len())
                .unwrap()
                .iter()
                .map(Problem::combo)
                .collect();
            assert_eq!(v.len(), seen.len(), "visible combos repeat");
            assert_eq!(h.len(), held.len(), "held-out combos repeat");
            assert!(v.is_disjoint(&h));
        }
        // Every template has problems in both splits.
        for t in TemplateId::ALL {
            assert!(
                held.iter().any(|c| c.template == t),
                "{t:?} has no held-out combo"
            );
            assert!(
                seen.iter().any(|c| c.template == t),
                "{t:?} has no visible combo"
            );
        }
        assert!(held.len() >= 20, "only {} held-out combos", held.len());
    }

    #[test]
    fn statements_differ_across_the_splits() {
        let v: BTreeSet<String> = visible(1, 40)
            .unwrap()
            .into_iter()
            .map(|p| p.description)
            .collect();
        let h: BTreeSet<String> = held_out(1, 20)
            .unwrap()
            .into_iter()
            .map(|p| p.description)
            .collect();
        assert!(v.is_disjoint(&h));
    }

    #[test]
    fn the_phrasings_of_a_combo_all_read_differently() {
        for combo in Combo::all().into_iter().filter(|c| c.phrasing == 0) {
            let examples = Problem::from_seed(combo, 0).public_tests;
            let texts: BTreeSet<String> = (0..PHRASINGS)
                .map(|phrasing| statement(Combo { phrasing, ..combo }, &examples))
                .collect();
            assert_eq!(texts.len(), PHRASINGS as usize, "{combo:?}");
        }
    }

    #[test]
    fn every_test_keeps_the_bounds_the_statement_gives() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for t in TemplateId::ALL {
            for &p in t.parameters() {
                let (lo, hi) = t.value_range(p);
                let random = (0..50).map(|_| random_data(t, p, 100, &mut rng));
                for data in edge_cases(t, p).into_iter().chain(random) {
                    let fits = match &data {
                        Data::List(a) => {
                            (1..=100).contains(&a.len()) && a.iter().all(|x| (lo..=hi).contains(x))
                        }
                        Data::Pair(a, b) => (1..=hi).contains(a) && (1..=hi).contains(b),
                        Data::Word(w) => {
                            (1..=100).contains(&w.len())
                                && w.bytes().all(|b| b.is_ascii_lowercase())
                        }
                        Data::Number(n) => *n <= MAX_NUMBER,
                    };
                    assert!(fits, "{t:?} {p}: {data:?}");
                }
            }
        }
    }

    #[test]
    fn asking_for_more_than_a_split_holds_is_refused() {
        let err = held_out(0, 1000).unwrap_err();
        assert!(
            matches!(err, ProblemError::TooMany { asked: 1000, .. }),
            "{err}"
        );
    }

    #[test]
    fn every_problem_has_its_tests() {
        for p in visible(3, 40).unwrap() {
            assert_eq!(p.public_tests.len(), PUBLIC_TESTS);
            assert!(
                p.private_tests.len() >= RANDOM_PRIVATE_TESTS + 2,
                "{}",
                p.name
            );
            assert_eq!(p.generated_tests.len(), GENERATED_TESTS);
            assert!(p.description.contains(&p.public_tests.input[0]));
        }
    }

    #[test]
    fn the_scaffold_view_leaks_no_hidden_field() {
        for p in held_out(5, 20).unwrap() {
            let view = serde_json::to_value(p.for_scaffold()).unwrap();
            let keys: BTreeSet<&str> = view
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["name", "description", "public_tests"])
            );
            let text = serde_json::to_string(&view).unwrap();
            // No hidden test shows up anywhere in the view (small inputs may coincide with a
            // public one: only those that do not are checked).
            for input in p
                .private_tests
                .input
                .iter()
                .chain(&p.generated_tests.input)
                .filter(|i| i.len() > 12 && !p.public_tests.input.contains(i))
            {
                let escaped = serde_json::to_string(input).unwrap();
                assert!(
                    !text.contains(escaped.trim_matches('"')),
                    "{}: {input:?}",
                    p.name
                );
            }
            for word in ["template", "parameter", "phrasing", "private", "generated"] {
                assert!(!text.contains(&format!("\"{word}")), "{word} in {text}");
            }
            // And a scaffold's copy parses back without the scorer's fields.
            let back: ScaffoldProblem = serde_json::from_value(view).unwrap();
            assert_eq!(back.public_tests, p.public_tests);
            assert!(serde_json::from_str::<Problem>(&text).is_err());
        }
    }
}
