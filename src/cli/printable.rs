//! Strings from the server's database or from other members (names, mostly) shown on a terminal.
//! The server checks names now, but an older database may still hold one with an escape sequence
//! or a newline, which could move the cursor or forge a table line: anything a terminal would
//! act on is shown escaped instead, the way Rust writes it (`\n`, `\x1b`, `\u{202e}`).

use std::borrow::Cow;

/// Characters a terminal acts on or that reorder text: C0/C1 controls and DEL (`is_control`),
/// and the Unicode bidirectional and zero-width format characters, which can make a line read
/// differently from what it holds.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` as it may safely be printed; borrowed when nothing needed escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched_and_controls_are_escaped() {
        assert!(matches!(
            printable("alice-1.lab"),
            Cow::Borrowed("alice-1.lab")
        ));
        assert_eq!(printable("a\nb\x1b[2J\u{7f}"), "a\\nb\\x1b[2J\\x7f");
        assert_eq!(printable("x\u{9b}y\u{202e}z"), "x\\u{9b}y\\u{202e}z");
        assert_eq!(printable("a\\x1b"), "a\\\\x1b");
        assert_eq!(printable("ünï"), "ünï");
    }
}
