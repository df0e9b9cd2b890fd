//! Python's `str.strip` family, which chat templates call (`| trim`, `.strip()`): transformers renders
//! them with Python, whose whitespace set differs from Rust's `char::is_whitespace` (it also holds the
//! information separators U+001C..U+001F), so a message ending in one would render differently.

/// `str.isspace()` for one character: Unicode category Zs or bidirectional class WS, B or S.
pub fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Which ends of the string to strip.
#[derive(Debug, Clone, Copy)]
pub enum Ends {
    Both,
    Start,
    End,
}

/// `s.strip(chars)`, `s.lstrip(chars)` or `s.rstrip(chars)`; `None` strips Python whitespace.
pub fn strip<'a>(s: &'a str, chars: Option<&str>, ends: Ends) -> &'a str {
    let strip_char = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_python_space(c),
    };
    match ends {
        Ends::Both => s.trim_matches(strip_char),
        Ends::Start => s.trim_start_matches(strip_char),
        Ends::End => s.trim_end_matches(strip_char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_what_python_strips() {
        assert_eq!(strip("\u{1f} a\u{3000}\u{1c}", None, Ends::Both), "a");
        assert_eq!(strip("\u{1f} a ", None, Ends::Start), "a ");
        assert_eq!(strip("xxaxy", Some("xy"), Ends::End), "xxa");
        assert_eq!(strip("\u{200b}a", None, Ends::Both), "\u{200b}a", "zero-width space is not whitespace");
    }
}
