//! The training corpus: chat documents `[<|system|>{system}<|end|>]<|user|>{prompt}<|end|>
//! <|assistant|>{answer}<|end|>` built **only from visible combos** ([`Split::Visible`]), each
//! with a fresh problem (new examples) from one seeded ChaCha stream.
//!
//! - **Prompt**: the statement in one of [`INSTRUCTIONS`] (bare, "Solve this problem in
//!   Rust:", "Write a Rust program...", asking for a fenced block...), with a system message
//!   ([`SYSTEMS`]) with probability [`Mixture::p_system`], so a scaffold's own wording still
//!   reads like the corpus.
//! - **Answer**: a comment restating the task ([`task_comment`]), then the reference solution
//!   with probability [`Mixture::p_reference`], otherwise one
//!   of the template's realistic wrong variants (uniformly); written as bare code with
//!   probability [`Mixture::p_bare`], otherwise as a sentence ([`INTROS`]) and a fenced
//!   ```` ```rust ```` block, followed by a closing sentence ([`OUTROS`]) with probability
//!   [`Mixture::p_outro`].

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rdbench_contests::problems::solutions::{reference, wrong_variants};
use rdbench_contests::problems::{Combo, Problem, Split};
use serde::{Deserialize, Serialize};

use crate::tokenizer::{Vocab, ASSISTANT, END, PAD, SYSTEM, USER};

/// Instruction wrappers of the statement (`{s}` is the statement).
pub const INSTRUCTIONS: [&str; 7] = [
    "{s}",
    "Solve this problem in Rust:\n\n{s}",
    "{s}\n\nWrite a Rust program that reads the input from stdin and prints the answer to stdout.",
    "Solve the following competitive programming problem in Rust.\n\n{s}",
    "Problem:\n\n{s}\n\nAnswer with a complete Rust program.",
    "Write a solution in Rust for this problem. Put your code in a ```rust code block.\n\n{s}",
    "Here is a programming problem.\n\n{s}\n\nSolve it in Rust. Read from standard input and write to standard output.",
];

/// System messages.
pub const SYSTEMS: [&str; 4] = [
    "You are a helpful assistant.",
    "You are an expert competitive programmer. Write correct and efficient Rust code.",
    "You are a coding assistant. Answer with Rust code.",
    "You are a world-class programmer. Solve the problem and give the full program.",
];

/// Sentences before a fenced answer.
pub const INTROS: [&str; 5] = [
    "Here is a Rust solution:",
    "Here is my solution.",
    "The following program reads the input and prints the answer.",
    "Sure! Here is the code:",
    "This Rust program solves the problem:",
];

/// Sentences after a fenced answer.
pub const OUTROS: [&str; 3] = [
    "It reads the whole input and prints the result.",
    "The program runs in linear time.",
    "This should pass all the tests.",
];

/// Every text the corpus adds around statements and solutions (for the vocabulary).
pub fn wrapper_texts() -> Vec<String> {
    INSTRUCTIONS
        .iter()
        .map(|s| s.replace("{s}", "x"))
        .chain(SYSTEMS.iter().map(|s| s.to_string()))
        .chain(INTROS.iter().map(|s| s.to_string()))
        .chain(OUTROS.iter().map(|s| s.to_string()))
        .chain(["```rust\nx\n```\n\n".to_string(), "```\nx\n```".to_string()])
        .collect()
}

/// The corpus's mixture probabilities: the tuning knobs of the solve rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    /// An answer is the reference solution (else a wrong variant).
    pub p_reference: f64,
    /// An answer is bare code (else a sentence and a fenced block).
    pub p_bare: f64,
    /// A fenced answer ends with a sentence after the block.
    pub p_outro: f64,
    /// A document has a system message.
    pub p_system: f64,
}

/// The comment a program opens with: the statement's first line (the task, with its
/// parameter). A program that restates its task first is common in code models' answers; for
/// a small model it also turns "find the task in the prompt, then write its lines" into two
/// short steps (copy one line, then continue from a line a few tokens back), which it learns
/// in a few hundred steps.
pub fn task_comment(statement: &str) -> String {
    format!("// {}", statement.lines().next().unwrap_or_default())
}

/// One chat document, as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub combo: Combo,
    pub system: Option<String>,
    pub user: String,
    pub answer: String,
}

/// `n` documents from `seed`, drawn from visible combos only.
pub fn documents(seed: u64, n: usize, mix: &Mixture) -> Vec<Document> {
    let combos: Vec<Combo> = Combo::all()
        .into_iter()
        .filter(|c| c.split() == Split::Visible)
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x636f_6465_6d6f_6465);
    (0..n)
        .map(|i| {
            let combo = *combos.choose(&mut rng).expect("visible combos exist");
            assert_eq!(combo.split(), Split::Visible);
            let problem = Problem::generate(combo, format!("doc-{i}"), &mut rng);
            let system = rng
                .gen_bool(mix.p_system)
                .then(|| SYSTEMS.choose(&mut rng).unwrap().to_string());
            let user = INSTRUCTIONS
                .choose(&mut rng)
                .unwrap()
                .replace("{s}", &problem.description);
            let code = if rng.gen_bool(mix.p_reference) {
                reference(combo.template, combo.parameter)
            } else {
                let wrong = wrong_variants(combo.template, combo.parameter);
                wrong
                    .choose(&mut rng)
                    .expect("wrong variants")
                    .source
                    .clone()
            };
            let code = format!("{}\n{code}", task_comment(&problem.description));
            let answer = if rng.gen_bool(mix.p_bare) {
                code
            } else {
                let intro = INTROS.choose(&mut rng).unwrap();
                let mut a = format!("{intro}\n\n```rust\n{code}```");
                if rng.gen_bool(mix.p_outro) {
                    a.push_str("\n\n");
                    a.push_str(OUTROS.choose(&mut rng).unwrap());
                }
                a
            };
            Document {
                combo,
                system,
                user,
                answer,
            }
        })
        .collect()
}

/// The chat template's tokens of a conversation: `<|system|>`/`<|user|>`/`<|assistant|>`, the
/// content, `<|end|>` per message.
pub fn chat_tokens<'a>(
    vocab: &Vocab,
    messages: impl IntoIterator<Item = (u32, &'a str)>,
) -> Vec<u32> {
    let mut out = Vec::new();
    for (role, content) in messages {
        out.push(role);
        out.extend(vocab.encode(content));
        out.push(END);
    }
    out
}

impl Document {
    /// The document's tokens, its final `<|end|>` included.
    pub fn tokens(&self, vocab: &Vocab) -> Vec<u32> {
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push((SYSTEM, s.as_str()));
        }
        messages.push((USER, self.user.as_str()));
        messages.push((ASSISTANT, self.answer.as_str()));
        chat_tokens(vocab, messages)
    }
}

/// Rows of `seq_len` tokens packed from `docs` ([`rdbench_lm::train::pack_documents`]).
pub fn pack(docs: &[Vec<u32>], seq_len: usize) -> Vec<u16> {
    rdbench_lm::train::pack_documents(docs, seq_len, PAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdbench_contests::problems::{statement, Tests};

    fn mix() -> Mixture {
        Mixture {
            p_reference: 0.5,
            p_bare: 0.5,
            p_outro: 0.5,
            p_system: 0.3,
        }
    }

    #[test]
    fn no_held_out_statement_is_in_the_corpus() {
        let docs = documents(1, 3000, &mix());
        let held: Vec<String> = Combo::all()
            .into_iter()
            .filter(|c| c.split() == Split::HeldOut)
            .map(|c| statement(c, &Tests::default()))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for d in &docs {
            assert_eq!(d.combo.split(), Split::Visible);
            seen.insert(d.combo);
            for h in &held {
                assert!(!d.user.contains(h.as_str()), "{}", d.user);
            }
        }
        // Every visible combo appears.
        assert_eq!(seen.len(), 96);
    }

    #[test]
    fn packing_starts_every_row_at_a_document() {
        let docs = vec![vec![1, 2, 3], vec![4, 5], vec![9; 20]];
        let rows = pack(&docs, 4);
        assert_eq!(rows, [1, 2, 3, 4, 4, 5, 1, 2]);
    }
}

#[cfg(test)]
mod stats {
    #[test]
    #[ignore = "prints statistics"]
    fn lengths() {
        let v = crate::tokenizer::Vocab::build();
        let docs = super::documents(1, 2000, &crate::Settings::default().mixture);
        let mut l: Vec<(usize, usize)> = docs
            .iter()
            .map(|d| (d.tokens(&v).len(), v.encode(&d.answer).len()))
            .collect();
        l.sort();
        println!(
            "doc tokens: min {:?} median {:?} p99 {:?} max {:?}",
            l[0],
            l[l.len() / 2],
            l[l.len() * 99 / 100],
            l[l.len() - 1]
        );
        let a: Vec<usize> = l.iter().map(|x| x.1).collect();
        println!("answer max {}", a.iter().max().unwrap());
    }
}
