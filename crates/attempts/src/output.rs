//! Printing: one JSON document with `--json`, aligned text otherwise; on the terminal, or
//! captured for the scoring service to send to its client.

use std::cell::RefCell;
use std::fmt::Display;

use rdbench_core::template::printable;
use serde::Serialize;

/// Where a command's output goes: the process's stdout and stderr, or (in `rdbench serve`)
/// two buffers that become the client's reply, so a command prints the same text either way.
#[derive(Debug, Default)]
pub struct Out {
    captured: Option<RefCell<(String, String)>>,
}

impl Out {
    pub fn terminal() -> Self {
        Out { captured: None }
    }
    pub fn capture() -> Self {
        Out {
            captured: Some(RefCell::new(Default::default())),
        }
    }
    /// A line on stdout, terminal controls escaped ([`printable`]).
    pub fn line(&self, text: impl Display) {
        self.raw_line(&printable(&text.to_string()));
    }
    fn raw_line(&self, text: &str) {
        match &self.captured {
            None => println!("{text}"),
            Some(c) => {
                let out = &mut c.borrow_mut().0;
                out.push_str(text);
                out.push('\n');
            }
        }
    }
    /// A line on stderr (warnings, notes), terminal controls escaped.
    pub fn warn(&self, text: impl Display) {
        let text = text.to_string();
        let text = printable(&text);
        match &self.captured {
            None => eprintln!("{text}"),
            Some(c) => {
                let err = &mut c.borrow_mut().1;
                err.push_str(&text);
                err.push('\n');
            }
        }
    }
    /// `value` as pretty JSON on stdout (JSON escapes its own control characters).
    pub fn json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => self.raw_line(&s),
            Err(e) => self.warn(format!("rdbench: cannot serialize output: {e}")),
        }
    }
    /// What was captured (stdout, stderr), emptying the buffers.
    pub fn take(&self) -> (String, String) {
        self.captured
            .as_ref()
            .map(|c| std::mem::take(&mut *c.borrow_mut()))
            .unwrap_or_default()
    }
}

/// A plain text table with left-aligned columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        self.render_within(usize::MAX)
    }

    /// As [`Table::render`], the last column wrapped at spaces so that no line is wider than
    /// `max` characters (a single word longer than the room left keeps its own line).
    pub fn render_within(&self, max: usize) -> String {
        let cols = self.header.len();
        let Some(last) = cols.checked_sub(1) else {
            return String::new();
        };
        let before: usize = self
            .rows
            .iter()
            .chain([&self.header])
            .fold(vec![0; last], |mut w: Vec<usize>, r| {
                for (i, c) in r.iter().enumerate().take(last) {
                    w[i] = w[i].max(c.chars().count());
                }
                w
            })
            .iter()
            .map(|w| w + 2)
            .sum();
        let room = max.saturating_sub(before).max(1);
        let mut wrapped = Table::new(&[]);
        wrapped.header = self.header.clone();
        for r in &self.rows {
            let lines = r.get(last).map_or_else(Vec::new, |c| wrap(c, room));
            for (n, line) in lines.into_iter().enumerate() {
                let mut cells: Vec<String> = if n == 0 {
                    r.iter().take(last).cloned().collect()
                } else {
                    vec![String::new(); last]
                };
                cells.push(line);
                wrapped.rows.push(cells);
            }
        }
        wrapped.render_unwrapped()
    }

    fn render_unwrapped(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(cols) {
                if i + 1 == cols {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{:<w$}  ", c, w = widths[i]));
                }
            }
            s.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        out.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("  "),
        );
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(r));
        }
        out
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (at least one line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("at least one line");
        if line.is_empty() {
            line.push_str(word);
        } else if line.chars().count() + 1 + word.chars().count() <= width {
            line.push(' ');
            line.push_str(word);
        } else {
            lines.push(word.to_string());
        }
    }
    lines
}

/// A number for tables: 4 significant decimals, or a dash.
pub fn num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        Some(_) => "NaN".into(),
        None => "-".into(),
    }
}

/// Cuts a reason to one line of at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > max {
        format!("{}...", first.chars().take(max).collect::<String>())
    } else if s.lines().count() > 1 {
        format!("{first} ...")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured output is what the terminal would get: lines on their stream, terminal
    /// controls escaped in text (JSON escapes its own).
    #[test]
    fn captured_output_is_split_and_escaped() {
        let out = Out::capture();
        out.line("a\u{1b}[2Jb");
        out.warn("careful");
        out.json(&serde_json::json!({ "k": "\u{1b}" }));
        let (stdout, stderr) = out.take();
        assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
        assert!(
            stdout.ends_with("{\n  \"k\": \"\\u001b\"\n}\n"),
            "{stdout:?}"
        );
        assert_eq!(stderr, "careful\n");
        assert_eq!(out.take(), (String::new(), String::new()), "taking empties");
    }

    #[test]
    fn tables_numbers_and_one_liners() {
        let mut t = Table::new(&["#", "result"]);
        t.row(vec!["10".into(), "ok".into()]);
        assert_eq!(t.render(), "#   result\n--  ------\n10  ok");
        t.row(vec!["11".into(), "one two three".into()]);
        assert_eq!(
            t.render_within(11),
            "#   result\n--  -------\n10  ok\n11  one two\n    three"
        );
        assert_eq!(num(Some(0.123456)), "0.1235");
        assert_eq!((num(None), num(Some(f64::NAN))), ("-".into(), "NaN".into()));
        assert_eq!(one_line("first\nsecond", 90), "first ...");
        assert_eq!(one_line("abcdef", 3), "abc...");
    }
}
