//! Text a person reads at a glance: one line cut to a width at a word boundary, long text
//! wrapped under an indent, and a list of names written once each. Widths count characters
//! (the output has no wide glyphs).

/// The widest line that `cycle` and `doctor` print by default.
pub const WIDTH: usize = 120;

/// `text`'s first line in at most `width` characters. A longer line (or one with more lines
/// after it) is cut at the last space that fits and ends in "…", so no word is cut in half
/// unless a single word is wider than `width`.
pub fn fit(text: &str, width: usize) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let more = lines.next().is_some();
    let chars: Vec<char> = first.chars().collect();
    if chars.len() <= width && !more {
        return first.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let budget = width - 1; // the ellipsis takes one
    let mut end = budget.min(chars.len());
    if end < chars.len() {
        // Back to the space before the word that does not fit (the character at `end` may
        // itself be the space that ends a word that does).
        if let Some(space) = chars[..=end].iter().rposition(|c| *c == ' ') {
            if space > 0 {
                end = space;
            }
        }
    }
    let head: String = chars[..end].iter().collect();
    format!("{}…", head.trim_end_matches([' ', ',', ';', ':', '(']))
}

/// `text` wrapped at word boundaries into lines of at most `width` characters: the first line
/// starts with `first`, the others with `indent`. A word wider than a line gets a line of
/// its own.
pub fn wrap(first: &str, indent: &str, text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        let needed = line.chars().count() + usize::from(!empty) + word.chars().count();
        if !empty && needed > width {
            lines.push(std::mem::replace(&mut line, indent.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines
}

/// Each distinct item once, in the order first seen, with how many times it came.
pub fn dedup_counted<T: PartialEq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<(T, usize)> {
    let mut seen: Vec<(T, usize)> = Vec::new();
    for item in items {
        match seen.iter_mut().find(|(s, _)| *s == item) {
            Some((_, n)) => *n += 1,
            None => seen.push((item, 1)),
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_short_text_and_cuts_long_text_between_words() {
        assert_eq!(fit("no GPU", 10), "no GPU");
        assert_eq!(fit("skipped timing because", 16), "skipped timing…");
        // The cut falls exactly after a word: that word stays.
        assert_eq!(fit("abc def ghi", 8), "abc def…");
        assert_eq!(fit("one\ntwo", 20), "one…");
        assert_eq!(fit("unbreakableword", 6), "unbre…");
        for width in 1..30 {
            let cut = fit("the reference solution fails: its own checks", width);
            assert!(cut.chars().count() <= width, "{width}: {cut}");
        }
    }

    #[test]
    fn wrap_fills_lines_to_the_width_under_the_indent() {
        let lines = wrap("  a: ", "     ", "one two three four five six", 14);
        assert_eq!(
            lines,
            ["  a: one two", "     three", "     four five", "     six"]
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 14));
        assert_eq!(wrap("x ", " ", "", 10), ["x "]);
    }

    #[test]
    fn dedup_counts_repeats_in_first_seen_order() {
        assert_eq!(dedup_counted(["b", "a", "b", "b"]), [("b", 3), ("a", 1)]);
    }
}
