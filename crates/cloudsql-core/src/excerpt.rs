//! Short, printable excerpts of untrusted text (response bodies, API fields, user input) for error
//! messages, so a hostile or broken peer cannot make an error message huge or unreadable.

use std::fmt::Write as _;

/// The most bytes of untrusted text an error message quotes.
pub(crate) const EXCERPT_LIMIT: usize = 256;

/// `text` made safe to quote: line breaks and tabs become spaces, other control and invisible
/// characters become `\u{..}` escapes, and anything past [`EXCERPT_LIMIT`] bytes is cut off on a
/// character boundary with a marker saying how long the original was.
pub(crate) fn excerpt(text: &str) -> String {
    excerpt_with_limit(text, EXCERPT_LIMIT)
}

/// [`excerpt`] of bytes that should be UTF-8 (invalid sequences become U+FFFD).
pub(crate) fn excerpt_bytes(bytes: &[u8]) -> String {
    excerpt(String::from_utf8_lossy(bytes).trim())
}

fn excerpt_with_limit(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit) + 32);
    let mut cut_at = None;
    for (index, c) in text.char_indices() {
        let before = out.len();
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if is_hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
        if out.len() > limit {
            out.truncate(before);
            cut_at = Some(index);
            break;
        }
    }
    if cut_at.is_some() {
        let _ = write!(out, "… (truncated, {} bytes)", text.len());
    }
    out
}

/// Control characters and the invisible ones that can disguise text (zero-width characters,
/// bidirectional overrides, separators, the byte-order mark).
pub(crate) fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_text_is_kept() {
        assert_eq!(excerpt("permission denied"), "permission denied");
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(excerpt("a\nb\tc"), "a b c");
        assert_eq!(excerpt("a\0b\x1b[31m"), "a\\u{0}b\\u{1b}[31m");
        assert_eq!(excerpt("ad\u{200b}min\u{202e}"), "ad\\u{200b}min\\u{202e}");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_marker() {
        let long = "é".repeat(100_000);
        let shown = excerpt(&long);
        assert!(shown.len() < EXCERPT_LIMIT + 40, "{} bytes", shown.len());
        assert!(shown.ends_with("… (truncated, 200000 bytes)"), "{shown}");
        assert!(shown.starts_with("éé"));

        let exact = "x".repeat(EXCERPT_LIMIT);
        assert_eq!(excerpt(&exact), exact);
        let over = "x".repeat(EXCERPT_LIMIT + 1);
        assert!(excerpt(&over).contains("truncated, 257 bytes"));
    }

    #[test]
    fn escapes_count_towards_the_limit() {
        let nuls = "\0".repeat(10_000);
        let shown = excerpt(&nuls);
        assert!(shown.len() < EXCERPT_LIMIT + 40, "{} bytes", shown.len());
        assert!(shown.starts_with("\\u{0}\\u{0}"));
    }

    #[test]
    fn bytes_are_decoded_lossily_and_trimmed() {
        assert_eq!(excerpt_bytes(b"  <html>\xff</html>\n"), "<html>\u{fffd}</html>");
    }
}
