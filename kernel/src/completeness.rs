//! `is_complete_request`: would pressing Enter in a console run this code, or continue it?
//!
//! A lexical scan, not a parse: it tracks brackets, string / char / raw-string literals,
//! nested block comments and a dangling binary operator at the end.

#[derive(Debug, PartialEq, Eq)]
pub enum Completeness {
    Complete,
    /// Needs more lines; the indent to offer for the next one.
    Incomplete { indent: String },
    /// A closing bracket that matches nothing; more input cannot fix it.
    Invalid,
}

pub fn check(code: &str) -> Completeness {
    let chars: Vec<char> = code.chars().collect();
    let mut open: Vec<char> = Vec::new();
    let mut last_token_end: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => match skip_block_comment(&chars, i) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => return incomplete(open.len()),
            },
            '"' => match skip_string(&chars, i + 1) {
                Some(end) => {
                    i = end;
                    last_token_end = Some(i);
                    continue;
                }
                None => return incomplete(open.len()),
            },
            'r' | 'b' if starts_identifier(&chars, i) => {
                if let Some(hashes_start) = raw_string_start(&chars, i) {
                    match skip_raw_string(&chars, hashes_start) {
                        Some(end) => {
                            i = end;
                            last_token_end = Some(i);
                            continue;
                        }
                        None => return incomplete(open.len()),
                    }
                }
            }
            '\'' => {
                if let Some(end) = char_literal_end(&chars, i) {
                    i = end;
                    last_token_end = Some(i);
                    continue;
                }
                // Otherwise a lifetime or label: an identifier-like token.
            }
            '(' | '[' | '{' => open.push(c),
            ')' | ']' | '}' => {
                let expected = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(expected) {
                    return Completeness::Invalid;
                }
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last_token_end = Some(i + 1);
        }
        i += 1;
    }
    if !open.is_empty() {
        return incomplete(open.len());
    }
    match last_token_end {
        Some(end) if ends_with_dangling_operator(&chars[..end]) => incomplete(0),
        _ => Completeness::Complete,
    }
}

fn incomplete(depth: usize) -> Completeness {
    Completeness::Incomplete { indent: "    ".repeat(depth) }
}

fn starts_identifier(chars: &[char], i: usize) -> bool {
    i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// For `r"`, `r#"`, `br##"` ... returns the index of the first `#` or the quote.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut k = j;
    while chars.get(k) == Some(&'#') {
        k += 1;
    }
    (chars.get(k) == Some(&'"')).then_some(j)
}

/// `start` points at the hashes (or the quote); returns the index after the closing delimiter.
fn skip_raw_string(chars: &[char], start: usize) -> Option<usize> {
    let mut hashes = 0;
    let mut j = start;
    while chars[j] == '#' {
        hashes += 1;
        j += 1;
    }
    j += 1; // opening quote
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    None
}

/// `start` is just after the opening quote; returns the index after the closing one.
fn skip_string(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Returns the end of `'x'`, `'\n'`, `'\u{1F600}'`; `None` for lifetimes like `'a`.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => {
            let mut j = i + 2;
            while j < chars.len() && j < i + 14 {
                if chars[j] == '\'' && j > i + 2 {
                    return Some(j + 1);
                }
                j += 1;
            }
            None
        }
        _ => (chars.get(i + 2) == Some(&'\'')).then_some(i + 3),
    }
}

/// Returns the index after `*/`, honouring nesting, or `None` when unterminated.
fn skip_block_comment(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut j = start;
    while j + 1 < chars.len() {
        match (chars[j], chars[j + 1]) {
            ('/', '*') => {
                depth += 1;
                j += 2;
            }
            ('*', '/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => j += 1,
        }
    }
    None
}

/// A statement cannot end in `=`, `+`, `.`, `,`, `&&`, `->` ...; `..` (a range), `?`, `>`
/// (generics, comparisons end in an operand) and `;` can.
fn ends_with_dangling_operator(code: &[char]) -> bool {
    let Some(&last) = code.last() else {
        return false;
    };
    let before = code.len().checked_sub(2).map(|i| code[i]);
    match last {
        '.' => before != Some('.'),
        '>' => matches!(before, Some('-') | Some('=')),
        '=' | '+' | '-' | '*' | '/' | '%' | '^' | '&' | '|' | ',' | '<' | '!' | ':' => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incomplete_at(depth: usize) -> Completeness {
        Completeness::Incomplete { indent: "    ".repeat(depth) }
    }

    #[test]
    fn balanced_code_is_complete() {
        assert_eq!(check("let x = vec![1, 2];\nprintln!(\"{x:?}\")"), Completeness::Complete);
        assert_eq!(check("fn f() -> i32 { 1 }"), Completeness::Complete);
        assert_eq!(check(""), Completeness::Complete);
        assert_eq!(check("let r = 1..;"), Completeness::Complete);
        assert_eq!(check("x.."), Completeness::Complete);
        assert_eq!(check("let v: Vec<u8> = Vec::new()"), Completeness::Complete);
    }

    #[test]
    fn unfinished_brackets_ask_for_more_with_indent() {
        assert_eq!(check("fn main() {\n    let x = (1,"), incomplete_at(2));
        assert_eq!(check("for i in 0..3 {"), incomplete_at(1));
        assert_eq!(check("let v = vec!["), incomplete_at(1));
    }

    #[test]
    fn brackets_inside_strings_chars_and_comments_do_not_count() {
        assert_eq!(check(r#"let s = "{(";"#), Completeness::Complete);
        assert_eq!(check("let c = '{';"), Completeness::Complete);
        assert_eq!(check("let c = '\\'';"), Completeness::Complete);
        assert_eq!(check("// {\nlet x = 1;"), Completeness::Complete);
        assert_eq!(check("/* { */ let x = 1;"), Completeness::Complete);
        assert_eq!(check(r##"let s = r#"a "{" b"#;"##), Completeness::Complete);
        assert_eq!(check("fn f<'a>(x: &'a str) -> &'a str { x }"), Completeness::Complete);
        assert_eq!(check("let s = \"escaped \\\" quote {\";"), Completeness::Complete);
    }

    #[test]
    fn unterminated_literals_and_comments_are_incomplete() {
        assert_eq!(check("let s = \"abc"), incomplete_at(0));
        assert_eq!(check("let s = r#\"abc\"\n"), incomplete_at(0));
        assert_eq!(check("/* outer /* inner */ still open"), incomplete_at(0));
        assert_eq!(check("{ /* open"), incomplete_at(1));
    }

    #[test]
    fn dangling_operator_is_incomplete() {
        assert_eq!(check("let x = 1 +"), incomplete_at(0));
        assert_eq!(check("let x ="), incomplete_at(0));
        assert_eq!(check("model.train()\n    ."), incomplete_at(0));
        assert_eq!(check("a && // comment\n"), incomplete_at(0));
        assert_eq!(check("let f = |x| x ->"), incomplete_at(0));
    }

    #[test]
    fn mismatched_closer_is_invalid() {
        assert_eq!(check("let x = (1, 2];"), Completeness::Invalid);
        assert_eq!(check("}"), Completeness::Invalid);
    }
}
