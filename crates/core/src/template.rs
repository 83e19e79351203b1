//! `{{NAME}}` templates for task texts (instructions). Rendering fails on a placeholder that
//! is not given or a value that is not used, so no instructions ship with a stray `{{`.

use crate::{Error, Result};

/// Replaces every `{{NAME}}` in `text` with its value from `values`.
pub fn render(text: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut used = vec![false; values.len()];
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            Error::Internal(format!(
                "template: unclosed `{{{{` at {:?}",
                &after[..after.len().min(20)]
            ))
        })?;
        let name = &after[..end];
        let i = values
            .iter()
            .position(|(k, _)| *k == name)
            .ok_or_else(|| Error::Internal(format!("template: no value for {{{{{name}}}}}")))?;
        used[i] = true;
        out.push_str(values[i].1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(Error::Internal(format!(
            "template: value {:?} is never used",
            values[i].0
        )));
    }
    Ok(out)
}

/// [`render`] with owned values, as instructions that mix a task's own values with shared ones
/// (an architecture's) build them.
pub fn render_values(text: &str, values: &[(&str, String)]) -> Result<String> {
    let borrowed: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    render(text, &borrowed)
}

/// `text` safe to print on a terminal: control characters other than newline and tab
/// (escape sequences, carriage returns, C1 controls) and the bidirectional overrides are
/// written as `\u{..}` escapes. Reasons, headlines and names can carry an agent's bytes, and an
/// operator reads them.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `text` is a short label: 1 to `max_chars` characters, none of them a control
/// character (`--agent` names, scoring keys: stored in records and shown to operators).
pub fn is_short_label(text: &str, max_chars: usize) -> bool {
    !text.is_empty() && text.chars().count() <= max_chars && !text.chars().any(char::is_control)
}

/// `100000000` as `100,000,000`.
pub fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_terminal_controls_only() {
        assert_eq!(printable("plain\nline\tx"), "plain\nline\tx");
        assert_eq!(
            printable("a\x1b[2Jb\rc\u{9b}d\u{202e}"),
            "a\\u{1b}[2Jb\\u{d}c\\u{9b}d\\u{202e}"
        );
    }

    #[test]
    fn renders_and_refuses_leftovers() {
        assert_eq!(render("n = {{N}}.", &[("N", "5")]).unwrap(), "n = 5.");
        assert!(render("n = {{N}} {{M}}", &[("N", "5")]).is_err());
        assert!(render("n = {{N}}", &[("N", "5"), ("M", "1")]).is_err());
        assert!(render("n = {{N", &[("N", "5")]).is_err());
    }

    #[test]
    fn thousands_separator() {
        assert_eq!(thousands(100_000_000), "100,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(-1234), "-1,234");
    }
}
