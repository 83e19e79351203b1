//! A word-level tokenizer built from the problem generator's own text: no download, no merges.
//!
//! **Pieces.** Text is cut into pieces, left to right:
//! - a word: `[A-Za-z_][A-Za-z0-9_]*` (identifiers such as `a_i`, `i64`, `to_string`);
//! - a digit run;
//! - a multi-character operator of Rust ([`OPERATORS`]: `::`, `==`, `+=`, `..`, `()`, `{}`...),
//!   else one character (punctuation, `\n`, and the statements' non-ASCII symbols such as `≤`);
//! - a run of spaces.
//!
//! As in GPT-2, **one space joins the piece after it** (" given", " 97", " =" are single
//! pieces), so a run of `k` spaces before a word is the piece of `k - 1` spaces, then the
//! word with its space (code indentation stays short: `"   "` + `" let"`).
//!
//! **Whole-line tokens.** At the start of a line, a whole line (its newline included) that
//! the generator writes is one token: every line of every solution (references and wrong
//! variants: the frame, the input reading, the template's body with its parameter) and every
//! line of every statement wording (the task in its wording with its parameter, the input
//! format, the output format, the section titles). So a statement is a handful of tokens plus
//! its examples, and an answer a dozen: the model's few parameters go to choosing lines, not
//! spelling them, and training takes a minute. A held-out statement is new as a whole (an unseen
//! parameter and phrasing pair), never in its lines: each of its lines belongs to a visible
//! problem too (the split holds out one phrasing per parameter, and each line depends on one
//! half of the phrasing only). Text in any other shape (a line the generator never wrote) is
//! cut into pieces as above. A line commented out (`// ` then a whole line) is the comment's
//! token and the line's.
//! **Vocabulary** ([`Vocab::build`]): the special tokens, the whole-line tokens, every piece of every statement wording
//! of every combo (without examples), of every solution (references and wrong variants), of the
//! corpus's own instruction and answer wrappers, the numbers 0 to 100, and every printable
//! ASCII character with and without its space. It is a pure function of the generator and
//! this crate (a test pins its size and hash) and is also saved with each model, whose saved
//! copy is the one used.
//!
//! **Encoding** is lossy for prompts only: a digit run that is not in the vocabulary (the
//! examples' large random numbers) becomes `<num>` (or ` <num>` with its space); any other
//! unknown piece (a random example word, a character the generator never writes) becomes
//! `<unk>`, its space kept as ` ` when ` ` + piece is unknown but the piece alone is known.
//! The model never needs those numbers or words to write the program, and never sees either
//! token in an answer. **Decoding** is exact for every other token; `<num>` decodes as `0`,
//! `<unk>` as nothing, and the chat template's special tokens as nothing.

use std::collections::{BTreeSet, HashMap};

use rdbench_contests::problems::solutions::{reference, wrong_variants};
use rdbench_contests::problems::{statement, Combo, TemplateId, Tests};
use sha2::{Digest, Sha256};

use crate::corpus;

/// The chat template's special tokens and the two unknown-piece tokens, ids 0 to 7 in order.
pub const SPECIALS: [&str; 8] = [
    "<|pad|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<unk>",
    "<num>",
    " <num>",
];
pub const PAD: u32 = 0;
pub const SYSTEM: u32 = 1;
pub const USER: u32 = 2;
pub const ASSISTANT: u32 = 3;
pub const END: u32 = 4;
pub const UNK: u32 = 5;
pub const NUM: u32 = 6;
pub const SPACE_NUM: u32 = 7;

/// Rust's multi-character operators that are one piece (longest first where they overlap).
pub const OPERATORS: [&str; 17] = [
    "::", "==", "!=", ">=", "<=", "+=", "-=", "*=", "/=", "%=", "&&", "||", "..", "->", "=>", "()",
    "{}",
];

/// The vocabulary: token strings by id, and ids by string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// The whole-line tokens, longest first.
    lines: Vec<String>,
}

/// A line comment's opening: `// ` before a whole line is its own token, and the line keeps its
/// line token (an answer's opening comment restates the task's line: the same token as in the
/// statement, so the model copies a token instead of learning a second one for each line).
pub const COMMENT: &str = "// ";

/// Whether a token is a whole-line token (a line's text with its newline).
fn is_line(token: &str) -> bool {
    token.len() > 1 && token.ends_with('\n')
}

/// Every line (with its newline, not blank) the generator writes: of every solution, right and
/// wrong, and of every statement wording without examples.
pub fn generator_lines() -> BTreeSet<String> {
    let mut texts: Vec<String> = Combo::all()
        .into_iter()
        .map(|combo| statement(combo, &Tests::default()))
        .collect();
    for t in TemplateId::ALL {
        for &p in t.parameters() {
            texts.push(reference(t, p));
            texts.extend(wrong_variants(t, p).into_iter().map(|w| w.source));
        }
    }
    texts
        .iter()
        .flat_map(|text| text.split_inclusive('\n'))
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// One piece of text: the text, and whether it is a digit run (with or without its space).
fn pieces<'a>(text: &'a str, lines: &[String]) -> Vec<&'a str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Length of the piece (without a leading space) starting at `j`, or 0 for a space/end.
    let piece_len = |j: usize| -> usize {
        if j >= bytes.len() {
            return 0;
        }
        let b = bytes[j];
        if b.is_ascii_alphabetic() || b == b'_' {
            let mut k = j + 1;
            while k < bytes.len() && (bytes[k].is_ascii_alphanumeric() || bytes[k] == b'_') {
                k += 1;
            }
            k - j
        } else if b.is_ascii_digit() {
            let mut k = j + 1;
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                k += 1;
            }
            k - j
        } else if b == b' ' {
            0
        } else if let Some(op) = OPERATORS.iter().find(|op| text[j..].starts_with(*op)) {
            op.len()
        } else {
            // One character (UTF-8: its whole encoding).
            text[j..].chars().next().map_or(1, char::len_utf8)
        }
    };
    let line_at = |j: usize| lines.iter().find(|l| text[j..].starts_with(l.as_str()));
    while i < bytes.len() {
        if i == 0 || bytes[i - 1] == b'\n' {
            if let Some(l) = line_at(i) {
                out.push(&text[i..i + l.len()]);
                i += l.len();
                continue;
            }
            // A line commented out keeps its line token after the comment's own.
            if text[i..].starts_with(COMMENT) {
                if let Some(l) = line_at(i + COMMENT.len()) {
                    out.push(&text[i..i + COMMENT.len()]);
                    out.push(&text[i + COMMENT.len()..i + COMMENT.len() + l.len()]);
                    i += COMMENT.len() + l.len();
                    continue;
                }
            }
        }
        if bytes[i] == b' ' {
            let mut k = i;
            while k < bytes.len() && bytes[k] == b' ' {
                k += 1;
            }
            let next = piece_len(k);
            if next > 0 && bytes[k] != b'\n' {
                // The last space joins the piece after it.
                if k - 1 > i {
                    out.push(&text[i..k - 1]);
                }
                out.push(&text[k - 1..k + next]);
                i = k + next;
            } else {
                out.push(&text[i..k]);
                i = k;
            }
        } else {
            let n = piece_len(i);
            out.push(&text[i..i + n]);
            i += n;
        }
    }
    out
}

fn is_number(piece: &str) -> bool {
    let digits = piece.strip_prefix(' ').unwrap_or(piece);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Vocab {
    /// The vocabulary of this generator (see the module docs): deterministic.
    pub fn build() -> Vocab {
        let mut texts: Vec<String> = Vec::new();
        for combo in Combo::all() {
            texts.push(statement(combo, &Tests::default()));
        }
        for t in TemplateId::ALL {
            for &p in t.parameters() {
                texts.push(reference(t, p));
                texts.extend(wrong_variants(t, p).into_iter().map(|w| w.source));
            }
        }
        texts.extend(corpus::wrapper_texts());
        // Examples' text without their numbers: the words around them.
        texts.push("Examples\n\nInput\n\n1\n\nOutput\n\n1\n".into());
        for n in 0..=100 {
            texts.push(format!("{n} {n} -{n}"));
        }
        for b in 0x20u8..0x7f {
            let c = b as char;
            texts.push(format!("{c} {c}"));
        }
        // A lone space (before an unknown piece, at a line's end).
        let mut set = BTreeSet::from([" ".to_string(), COMMENT.to_string()]);
        let lines: Vec<String> = generator_lines().into_iter().collect();
        set.extend(lines.iter().cloned());
        for text in &texts {
            for p in pieces(text, &[]) {
                set.insert(p.to_string());
            }
        }
        let tokens: Vec<String> = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(set.into_iter().filter(|p| !SPECIALS.contains(&p.as_str())))
            .collect();
        Vocab::from_tokens(tokens).expect("the built vocabulary is valid")
    }

    /// A vocabulary from its token list (as saved with a model): the specials first, no
    /// duplicate, no empty token.
    pub fn from_tokens(tokens: Vec<String>) -> Result<Vocab, String> {
        if tokens.len() < SPECIALS.len() || tokens[..SPECIALS.len()] != SPECIALS {
            return Err("the vocabulary does not start with the special tokens".into());
        }
        if tokens.len() > u16::MAX as usize {
            return Err(format!("{} tokens do not fit u16 ids", tokens.len()));
        }
        let mut ids = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            if t.is_empty() || ids.insert(t.clone(), i as u32).is_some() {
                return Err(format!("token {i} ({t:?}) is empty or repeated"));
            }
        }
        let mut lines: Vec<String> = tokens.iter().filter(|t| is_line(t)).cloned().collect();
        lines.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Ok(Vocab { tokens, ids, lines })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Sha256 of the token list (one token per line, escaped as JSON), hex.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for t in &self.tokens {
            h.update(serde_json::to_string(t).unwrap_or_default().as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }

    /// The id of a token string, if it is one.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Text to token ids (see the module docs for what is lossy). Special-token strings in the
    /// text are ordinary text here: only the chat template inserts special ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for p in pieces(text, &self.lines) {
            if let Some(&id) = self.ids.get(p).filter(|&&id| id >= SPECIALS.len() as u32) {
                out.push(id);
                continue;
            }
            let (space, rest) = match p.strip_prefix(' ') {
                Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => (true, rest),
                _ => (false, p),
            };
            if is_number(p) {
                out.push(if space { SPACE_NUM } else { NUM });
                continue;
            }
            if space {
                out.push(self.ids[" "]);
            }
            match self
                .ids
                .get(rest)
                .filter(|&&id| id >= SPECIALS.len() as u32)
            {
                Some(&id) => out.push(id),
                None => out.push(UNK),
            }
        }
        out
    }

    /// Token ids to text: special tokens and `<unk>` dropped, `<num>` as `0`; ids outside the
    /// vocabulary are an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        let mut s = String::new();
        for &id in ids {
            match id {
                NUM => s.push('0'),
                SPACE_NUM => s.push_str(" 0"),
                _ if id < SPECIALS.len() as u32 => {}
                _ => s.push_str(
                    self.tokens
                        .get(id as usize)
                        .ok_or_else(|| format!("token id {id} is outside the vocabulary"))?,
                ),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_one_space_and_keep_indentation() {
        assert_eq!(
            pieces("You are given n ≤ 100.\n    let x = a::b(); ", &[]),
            [
                "You", " are", " given", " n", " ≤", " 100", ".", "\n", "   ", " let", " x", " =",
                " a", "::", "b", "()", ";", " "
            ]
        );
        assert_eq!(pieces("a  \n", &[]), ["a", "  ", "\n"]);
        let lines = ["    let x = 1;\n".to_string()];
        assert_eq!(
            pieces("    let x = 1;\n    let x = 1;\nb    let x = 1;\n", &lines),
            [
                "    let x = 1;\n",
                "    let x = 1;\n",
                "b",
                "   ",
                " let",
                " x",
                " =",
                " 1",
                ";",
                "\n"
            ]
        );
    }

    #[test]
    fn every_solution_and_wording_round_trips_exactly() {
        let v = Vocab::build();
        for t in TemplateId::ALL {
            for &p in t.parameters() {
                let sources = std::iter::once(reference(t, p))
                    .chain(wrong_variants(t, p).into_iter().map(|w| w.source));
                for src in sources {
                    let ids = v.encode(&src);
                    assert!(!ids.contains(&UNK) && !ids.contains(&NUM), "{src}");
                    assert_eq!(v.decode(&ids).unwrap(), src);
                }
            }
        }
        for combo in Combo::all() {
            let text = statement(combo, &Tests::default());
            let ids = v.encode(&text);
            assert!(!ids.contains(&UNK), "{text}");
            assert_eq!(v.decode(&ids).unwrap(), text);
        }
        for text in corpus::wrapper_texts() {
            assert_eq!(v.decode(&v.encode(&text)).unwrap(), text);
        }
    }

    #[test]
    fn unknown_numbers_and_words_are_lossy_tokens() {
        let v = Vocab::build();
        let ids = v.encode("4\n448 185 -591 97 qbzy ĳ");
        let back = v.decode(&ids).unwrap();
        assert_eq!(back, "4\n0 0 -0 97  ");
        assert!(ids.contains(&SPACE_NUM) && ids.contains(&NUM) && ids.contains(&UNK));
        assert_eq!(ids.iter().filter(|&&i| i == UNK).count(), 2);
        // Special-token strings in text are text.
        assert!(!v.encode("<|end|>").contains(&END));
        assert!(v.decode(&[v.len() as u32]).is_err());
    }

    /// An answer's opening comment restates the statement's first line with the same token.
    #[test]
    fn a_commented_line_keeps_its_line_token() {
        let v = Vocab::build();
        let combo = Combo::all()[5];
        let text = statement(combo, &Tests::default());
        let first = format!("{}\n", text.lines().next().unwrap());
        let line = v.id(&first).expect("the task's line is a token");
        assert_eq!(v.encode(&text)[0], line);
        let comment = v.encode(&format!("{COMMENT}{first}"));
        assert_eq!(comment, [v.id(COMMENT).unwrap(), line]);
        assert_eq!(v.decode(&comment).unwrap(), format!("// {first}"));
    }

    /// Pinned: a change of the generator's text or of this tokenizer changes the vocabulary
    /// (saved models keep their own copy; a new one needs new models).
    #[test]
    fn the_vocabulary_is_pinned() {
        let v = Vocab::build();
        assert_eq!(v, Vocab::build());
        assert_eq!(Vocab::from_tokens(v.tokens().to_vec()).unwrap(), v);
        assert_eq!((v.len(), &v.hash()[..16]), (951, "ddc55a6d7a071f58"));
    }
}
