//! Small text helpers shared by the HTML and text renderers.

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Shortens `text` to at most `max_chars` characters, ending in `…` when cut.
/// Returns the text to show and whether it was cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> (String, bool) {
    if text.chars().count() <= max_chars {
        return (text.to_owned(), false);
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    (format!("{kept}…"), true)
}

/// Shows line breaks and tabs as visible marks so one cell stays one line.
pub(crate) fn one_line(text: &str) -> String {
    text.replace("\r\n", "↵").replace(['\n', '\r'], "↵").replace('\t', "→")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }

    #[test]
    fn truncates_on_characters_not_bytes() {
        assert_eq!(truncate("héllo wörld", 5), ("héll…".to_owned(), true));
        assert_eq!(truncate("héllo", 5), ("héllo".to_owned(), false));
    }

    #[test]
    fn line_breaks_become_visible_marks() {
        assert_eq!(one_line("a\nb\r\nc\td"), "a↵b↵c→d");
    }
}
