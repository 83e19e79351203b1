//! The instruction world the policy lives in: a word-level vocabulary, instructions whose
//! responses have a computable quality, and the corpus a base model is trained on.
//!
//! An instruction is an invented verb and its operands (`zorp red fox owl`); eight verbs name
//! eight operations (reverse, sort, first, last, count, repeat, capital, list). Which verb names
//! which operation, and which city is each invented country's capital, follow from the
//! installation's secret ([`World::new`]): someone who reads rdbench's source knows the
//! operations but not the language, so hand-writing correct responses takes what the task
//! allows (the judge's verdicts, the models' own outputs), not the source.
//!
//! [`World::quality`] scores a response in [0, 1]: 1 for the answer (for `list`, three
//! distinct members of the category), partial credit for responses that share positions with
//! it (the answer may start up to two words late, as after a verbal tic), halved when the
//! response never ended (no end token). The judge ([`crate::judge`]) adds
//! the biases real LLM judges have.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const SEP: u32 = 2;
pub const EOS: u32 = 3;
const SPECIALS: [&str; 4] = ["<pad>", "<bos>", "<sep>", "<eos>"];
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const VERBS: [&str; 8] = ["zorp", "blick", "quon", "vash", "trel", "mip", "dax", "fen"];
const COLORS: [&str; 8] = [
    "red", "blue", "green", "yellow", "black", "white", "pink", "gray",
];
const ANIMALS: [&str; 8] = ["fox", "owl", "cat", "dog", "bee", "eel", "yak", "ant"];
const FRUITS: [&str; 8] = [
    "apple", "pear", "plum", "fig", "lime", "kiwi", "date", "grape",
];
const CATEGORIES: [&str; 3] = ["colors", "animals", "fruits"];
const COUNTRIES: [&str; 12] = [
    "arvel", "bostra", "cendy", "dulmor", "esk", "farrow", "gilden", "hask", "ilmar", "jorvik",
    "kestra", "lumen",
];
const CITIES: [&str; 12] = [
    "ostby", "pella", "quarn", "rilla", "sotto", "tamber", "ulvik", "varn", "wenna", "xalt",
    "yorra", "zell",
];
const FILLERS: [&str; 10] = [
    "um", "well", "maybe", "i", "think", "so", "yes", "no", "ok", "hmm",
];

/// The eight operations a verb can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Reverse,
    Sort,
    First,
    Last,
    Count,
    Repeat,
    Capital,
    List,
}

const OPS: [Op; 8] = [
    Op::Reverse,
    Op::Sort,
    Op::First,
    Op::Last,
    Op::Count,
    Op::Repeat,
    Op::Capital,
    Op::List,
];

/// Every token's text, in id order (the same in every installation).
pub fn vocabulary() -> Vec<&'static str> {
    SPECIALS
        .iter()
        .chain(&DIGITS)
        .chain(&VERBS)
        .chain(&COLORS)
        .chain(&ANIMALS)
        .chain(&FRUITS)
        .chain(&CATEGORIES)
        .chain(&COUNTRIES)
        .chain(&CITIES)
        .chain(&FILLERS)
        .copied()
        .collect()
}

/// Most tokens of an instruction (verb and operands) and of a response's answer.
pub const MAX_PROMPT_WORDS: usize = 8;

/// One instruction: its words (no `<bos>`/`<sep>`) and the operation it asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instruction {
    pub op: Op,
    pub words: Vec<u32>,
}

/// One installation's language and facts.
#[derive(Debug, Clone)]
pub struct World {
    vocab: Vec<&'static str>,
    /// `verb_op[i]`: the operation verb `i` names.
    verb_op: [Op; 8],
    /// `capital[i]`: the city (index into CITIES) of country `i`.
    capital: [usize; 12],
}

impl World {
    /// The world of `seed` (derived from the installation's secret).
    pub fn new(seed: u64) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut verb_op = OPS;
        verb_op.shuffle(&mut rng);
        let mut capital: [usize; 12] = std::array::from_fn(|i| i);
        capital.shuffle(&mut rng);
        World {
            vocab: vocabulary(),
            verb_op,
            capital,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The id of `word`.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.vocab.iter().position(|w| *w == word).map(|i| i as u32)
    }

    fn ids(&self, words: &[&str]) -> Vec<u32> {
        words
            .iter()
            .map(|w| self.id(w).expect("a vocabulary word"))
            .collect()
    }

    /// Text of `tokens`, words joined by spaces (special tokens included, in angle brackets).
    pub fn text(&self, tokens: &[u32]) -> String {
        tokens
            .iter()
            .map(|&t| self.vocab.get(t as usize).copied().unwrap_or("<unk>"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Tokens of `text` (words separated by whitespace), or the first unknown word.
    pub fn parse(&self, text: &str) -> Result<Vec<u32>, String> {
        text.split_whitespace()
            .map(|w| {
                self.id(w)
                    .ok_or_else(|| format!("`{w}` is not a word of the vocabulary"))
            })
            .collect()
    }

    fn verb(&self, op: Op) -> u32 {
        let i = self
            .verb_op
            .iter()
            .position(|o| *o == op)
            .expect("every op has a verb");
        self.id(VERBS[i]).expect("verbs are words")
    }

    /// The operation `words` asks for, if its first word is a verb.
    pub fn op_of(&self, words: &[u32]) -> Option<Op> {
        let first = self.vocab.get(*words.first()? as usize)?;
        VERBS
            .iter()
            .position(|v| v == first)
            .map(|i| self.verb_op[i])
    }

    /// `words` as an instruction: a verb and the operands its operation takes, or why not.
    pub fn instruction_from(&self, words: &[u32]) -> Result<Instruction, String> {
        let op = self
            .op_of(words)
            .ok_or("an instruction starts with one of the eight verbs")?;
        let operands: Vec<&str> = words[1..]
            .iter()
            .map(|&t| self.vocab.get(t as usize).copied().unwrap_or(""))
            .collect();
        let item = |w: &&str| {
            [&COLORS[..], &ANIMALS, &FRUITS, &DIGITS]
                .iter()
                .any(|p| p.contains(w))
        };
        let ok = match op {
            Op::Reverse | Op::First | Op::Last => {
                (2..=5).contains(&operands.len()) && operands.iter().all(item)
            }
            Op::Count => (1..=7).contains(&operands.len()) && operands.iter().all(item),
            Op::Sort => {
                (2..=5).contains(&operands.len()) && operands.iter().all(|w| DIGITS.contains(w))
            }
            Op::Repeat => {
                operands.len() == 2 && item(&operands[0]) && ["2", "3", "4"].contains(&operands[1])
            }
            Op::Capital => operands.len() == 1 && COUNTRIES.contains(&operands[0]),
            Op::List => operands.len() == 1 && CATEGORIES.contains(&operands[0]),
        };
        if ok {
            Ok(Instruction {
                op,
                words: words.to_vec(),
            })
        } else {
            Err("its operands are not ones its verb takes".into())
        }
    }

    /// A random instruction.
    pub fn instruction(&self, rng: &mut impl Rng) -> Instruction {
        let op = OPS[rng.gen_range(0..OPS.len())];
        let items = |rng: &mut dyn rand::RngCore, n: usize| -> Vec<&'static str> {
            let pool: &[&str] = match rng.gen_range(0..4) {
                0 => &COLORS,
                1 => &ANIMALS,
                2 => &FRUITS,
                _ => &DIGITS,
            };
            (0..n).map(|_| pool[rng.gen_range(0..pool.len())]).collect()
        };
        let operands: Vec<&str> = match op {
            Op::Reverse | Op::First | Op::Last => {
                let n = rng.gen_range(2..=5);
                items(rng, n)
            }
            Op::Count => {
                let n = rng.gen_range(1..=7);
                items(rng, n)
            }
            Op::Sort => (0..rng.gen_range(2..=5))
                .map(|_| DIGITS[rng.gen_range(0..10)])
                .collect(),
            Op::Repeat => {
                let mut w = items(rng, 1);
                w.push(DIGITS[rng.gen_range(2..=4)]);
                w
            }
            Op::Capital => vec![COUNTRIES[rng.gen_range(0..COUNTRIES.len())]],
            Op::List => vec![CATEGORIES[rng.gen_range(0..CATEGORIES.len())]],
        };
        let mut words = vec![self.verb(op)];
        words.extend(self.ids(&operands));
        Instruction { op, words }
    }

    /// The best response to `ins` (for `list`, one of many equally good ones, chosen by
    /// `rng`).
    pub fn answer(&self, ins: &Instruction, rng: &mut impl Rng) -> Vec<u32> {
        let operands = &ins.words[1..];
        match ins.op {
            Op::Reverse => operands.iter().rev().copied().collect(),
            Op::Sort => {
                let mut d = operands.to_vec();
                d.sort_by_key(|&t| self.vocab[t as usize]);
                d
            }
            Op::First => operands[..1].to_vec(),
            Op::Last => operands[operands.len() - 1..].to_vec(),
            Op::Count => self.ids(&[DIGITS[operands.len()]]),
            Op::Repeat => {
                let times: usize = self.vocab[operands[1] as usize].parse().unwrap_or(1);
                vec![operands[0]; times]
            }
            Op::Capital => {
                let country = COUNTRIES
                    .iter()
                    .position(|c| *c == self.vocab[operands[0] as usize])
                    .unwrap_or(0);
                self.ids(&[CITIES[self.capital[country]]])
            }
            Op::List => {
                let mut members = self.ids(self.category(operands[0]));
                members.shuffle(rng);
                members.truncate(3);
                members
            }
        }
    }

    fn category(&self, word: u32) -> &'static [&'static str] {
        match self.vocab.get(word as usize).copied() {
            Some("colors") => &COLORS,
            Some("animals") => &ANIMALS,
            _ => &FRUITS,
        }
    }

    /// Quality of `response` (the tokens after `<sep>`, its end token excluded) to `ins`;
    /// `ended`: the response ended with `<eos>` (not cut at the token limit).
    pub fn quality(&self, ins: &Instruction, response: &[u32], ended: bool) -> f64 {
        if response.is_empty() {
            return 0.0;
        }
        let q = match ins.op {
            Op::List => {
                let members = self.ids(self.category(ins.words[1]));
                let mut seen = Vec::new();
                for t in response {
                    if members.contains(t) && !seen.contains(t) {
                        seen.push(*t);
                    }
                }
                let valid = seen.len().min(3) as f64 / 3.0;
                valid * 3.0 / response.len().max(3) as f64
            }
            _ => {
                let answer = self.answer(ins, &mut ChaCha8Rng::seed_from_u64(0));
                if response == answer.as_slice() {
                    1.0
                } else {
                    // Words in place, the answer allowed to start up to two words late (a
                    // judge credits "um, red fox" for the answer in it, less than the answer).
                    let same = (0..=2)
                        .map(|late| {
                            response
                                .iter()
                                .skip(late)
                                .zip(&answer)
                                .filter(|(a, b)| a == b)
                                .count()
                        })
                        .max()
                        .unwrap_or(0);
                    0.6 * same as f64 / response.len().max(answer.len()) as f64
                }
            }
        };
        if ended {
            q
        } else {
            q / 2.0
        }
    }

    /// A response as a base model's corpus has them: the answer with probability `good`,
    /// else a failure. Most failures are one verbal tic, `um` before the answer (so a model of
    /// this corpus, decoded greedily, opens with it); the rest are realistic mistakes: a wrong
    /// answer of the right kind, a damaged answer, too much, filler.
    pub fn corpus_response(&self, ins: &Instruction, good: f64, rng: &mut impl Rng) -> Vec<u32> {
        let answer = self.answer(ins, rng);
        if rng.gen_bool(good) {
            return answer;
        }
        let filler = |rng: &mut dyn rand::RngCore, n: usize| -> Vec<u32> {
            (0..n)
                .map(|_| {
                    self.id(FILLERS[rng.gen_range(0..FILLERS.len())])
                        .expect("word")
                })
                .collect()
        };
        let same_kind = |rng: &mut dyn rand::RngCore, t: u32| -> u32 {
            let word = self.vocab[t as usize];
            let pool: &[&str] = [&COLORS[..], &ANIMALS, &FRUITS, &DIGITS, &CITIES]
                .into_iter()
                .find(|p| p.contains(&word))
                .unwrap_or(&FILLERS);
            self.id(pool[rng.gen_range(0..pool.len())]).expect("word")
        };
        let mut out = match rng.gen_range(0..20) {
            // The tic: `um`, sometimes more filler, then the answer.
            0..=10 => {
                let mut out = vec![self.id("um").expect("word")];
                if rng.gen_bool(0.3) {
                    out.extend(filler(rng, 1));
                }
                out.extend(&answer);
                out
            }
            // A wrong answer of the right kind.
            11..=14 => answer.iter().map(|&t| same_kind(rng, t)).collect(),
            // The answer with one word changed.
            15..=16 => {
                let mut out = answer.clone();
                let i = rng.gen_range(0..out.len());
                out[i] = same_kind(rng, out[i]);
                out
            }
            // Too much: the answer and some of it again.
            17..=18 => {
                let mut out = answer.clone();
                out.extend(&answer[..rng.gen_range(1..=answer.len())]);
                out
            }
            _ => {
                let n = rng.gen_range(1..=3);
                filler(rng, n)
            }
        };
        out.truncate(MAX_PROMPT_WORDS);
        out
    }

    /// `<bos> instruction <sep>`.
    pub fn prompt_tokens(&self, ins: &Instruction) -> Vec<u32> {
        let mut t = vec![BOS];
        t.extend(&ins.words);
        t.push(SEP);
        t
    }

    /// `<bos> instruction <sep> response <eos>`.
    pub fn document(&self, ins: &Instruction, response: &[u32]) -> Vec<u32> {
        let mut t = self.prompt_tokens(ins);
        t.extend(response);
        t.push(EOS);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_and_facts_follow_the_seed() {
        let (a, b) = (World::new(1), World::new(2));
        assert_ne!((a.verb_op, a.capital), (b.verb_op, b.capital));
        assert_eq!(World::new(1).verb_op, a.verb_op);
        assert_eq!(a.vocab_size(), vocabulary().len());
        // Words are unique, so text and tokens map one to one.
        let mut v = vocabulary();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), a.vocab_size());
    }

    #[test]
    fn answers_score_one_and_failures_less() {
        let w = World::new(7);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut failures = 0;
        for _ in 0..500 {
            let ins = w.instruction(&mut rng);
            assert!(ins.words.len() <= MAX_PROMPT_WORDS);
            let answer = w.answer(&ins, &mut rng);
            assert_eq!(
                w.quality(&ins, &answer, true),
                1.0,
                "{}",
                w.text(&ins.words)
            );
            assert_eq!(w.quality(&ins, &answer, false), 0.5);
            assert_eq!(w.op_of(&ins.words), Some(ins.op));
            assert_eq!(w.instruction_from(&ins.words).as_ref(), Ok(&ins));
            let r = w.corpus_response(&ins, 0.0, &mut rng);
            let q = w.quality(&ins, &r, true);
            assert!((0.0..=1.0).contains(&q));
            if q < 1.0 {
                failures += 1;
            }
        }
        assert!(
            failures > 350,
            "{failures} of 500 bad responses scored below 1"
        );
    }

    #[test]
    fn examples() {
        let w = World::new(7);
        let verb = |op| w.vocab[w.verb(op) as usize];
        let ins = |op, text: &str| Instruction {
            op,
            words: w.parse(&format!("{} {text}", verb(op))).unwrap(),
        };
        let q = |i: &Instruction, r: &str| w.quality(i, &w.parse(r).unwrap(), true);
        let rev = ins(Op::Reverse, "red fox 3");
        assert_eq!(q(&rev, "3 fox red"), 1.0);
        assert!((q(&rev, "3 fox blue") - 0.4).abs() < 1e-9);
        // The answer after a tic: its words count, against the longer length.
        assert!((q(&rev, "um 3 fox red") - 0.45).abs() < 1e-9);
        assert!((q(&rev, "um um um um") - 0.0).abs() < 1e-9);
        assert_eq!(q(&ins(Op::Sort, "3 1 2"), "1 2 3"), 1.0);
        assert_eq!(
            q(
                &ins(Op::Count, "a".replace('a', "fox fox owl").as_str()),
                "3"
            ),
            1.0
        );
        assert_eq!(q(&ins(Op::Repeat, "owl 3"), "owl owl owl"), 1.0);
        let list = ins(Op::List, "animals");
        assert_eq!(q(&list, "fox owl cat"), 1.0);
        assert!((q(&list, "fox fox cat") - 2.0 / 3.0).abs() < 1e-9);
        assert!((q(&list, "fox owl cat dog eel yak") - 0.5).abs() < 1e-9);
        assert_eq!(q(&list, ""), 0.0);
    }
}
