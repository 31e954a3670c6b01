//! The session's input history and `history_request` (tail, range, search), as IPython
//! answers it: entries `[session, line, input]`, or `[session, line, [input, output]]` when
//! the request asks for output. Only the running session exists; it is session 0, which
//! IPython also accepts as "the current session".

use serde_json::{json, Value};

const SESSION: u64 = 0;

struct Entry {
    line: u64,
    input: String,
    /// `text/plain` of the cell's execute_result, if it had one.
    output: Option<String>,
}

#[derive(Default)]
pub struct History {
    entries: Vec<Entry>,
}

impl History {
    pub fn push(&mut self, line: u64, input: String) {
        self.entries.push(Entry { line, input, output: None });
    }

    pub fn set_output(&mut self, line: u64, output: String) {
        if let Some(entry) = self.entries.iter_mut().rev().find(|entry| entry.line == line) {
            entry.output = Some(output);
        }
    }

    /// The `history` list of a `history_reply` to `request` (a history_request's content).
    pub fn query(&self, request: &Value) -> Vec<Value> {
        let with_output = request["output"].as_bool().unwrap_or(false);
        let n = request["n"].as_u64().map(|n| n as usize);
        let selected: Vec<&Entry> = match request["hist_access_type"].as_str().unwrap_or("tail") {
            "range" => {
                let session = request["session"].as_i64().unwrap_or(0);
                let start = request["start"].as_u64().unwrap_or(0);
                let stop = request["stop"].as_u64().unwrap_or(u64::MAX);
                let current = session == SESSION as i64;
                self.entries.iter().filter(|e| current && e.line >= start && e.line < stop).collect()
            }
            "search" => {
                let pattern: Vec<char> = request["pattern"].as_str().unwrap_or("*").chars().collect();
                let mut found: Vec<&Entry> = self.entries.iter().filter(|e| glob_match(&pattern, &e.input)).collect();
                if request["unique"].as_bool().unwrap_or(false) {
                    // The latest occurrence of each input, in order.
                    let mut seen = std::collections::HashSet::new();
                    found.reverse();
                    found.retain(|entry| seen.insert(entry.input.as_str()));
                    found.reverse();
                }
                last(found, n)
            }
            _ => last(self.entries.iter().collect(), n),
        };
        selected
            .into_iter()
            .map(|entry| {
                let text = if with_output { json!([entry.input, entry.output]) } else { json!(entry.input) };
                json!([SESSION, entry.line, text])
            })
            .collect()
    }
}

fn last(mut entries: Vec<&Entry>, n: Option<usize>) -> Vec<&Entry> {
    let n = n.unwrap_or(entries.len());
    entries.split_off(entries.len().saturating_sub(n))
}

/// Whether all of `text` matches the glob `pattern` (SQLite GLOB, as IPython searches):
/// `*` any run of characters, `?` one character, `[abc]` / `[a-z]` / `[^a]` a class.
pub fn glob_match(pattern: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    // Backtracking over the last `*` only: linear apart from the retries it needs.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let advance = match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match_class(&pattern[p..], text[t]),
            Some(&c) if c == text[t] => Some(1),
            _ => None,
        };
        match (advance, star) {
            (Some(len), _) => {
                p += len;
                t += 1;
            }
            // Let the last `*` take one more character and retry from there.
            (None, Some((star_p, star_t))) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Length of the class `[...]` at the start of `pattern` (a lone `[` is a literal).
fn class_len(pattern: &[char]) -> usize {
    // The first character after `[` (or `[^`) may be `]` itself.
    let first = if matches!(pattern.get(1), Some('^' | '!')) { 2 } else { 1 };
    pattern.iter().skip(first + 1).position(|&c| c == ']').map_or(1, |end| first + 1 + end + 1)
}

/// If `c` is in the class at the start of `pattern`: the class's length.
fn match_class(pattern: &[char], c: char) -> Option<usize> {
    let len = class_len(pattern);
    if len == 1 {
        return (c == '[').then_some(1);
    }
    let negated = matches!(pattern[1], '^' | '!');
    let members = &pattern[if negated { 2 } else { 1 }..len - 1];
    let mut found = false;
    let mut i = 0;
    while i < members.len() {
        if i + 2 < members.len() && members[i + 1] == '-' {
            found |= members[i] <= c && c <= members[i + 2];
            i += 3;
        } else {
            found |= members[i] == c;
            i += 1;
        }
    }
    (found != negated).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_the_whole_input() {
        let cases = [
            ("1 + 1", "1 + 1", true),
            ("1", "1 + 1", false),
            ("*", "", true),
            ("1*", "1 + 1", true),
            ("*+*", "1 + 1", true),
            ("?et x*", "let x = 1;\nx", true),
            ("?et", "let x", false),
            ("*a*b*c", "xaxxbxxc", true),
            ("*a*b*c", "xaxxcxxb", false),
            ("[a-c]at", "bat", true),
            ("[^a-c]at", "bat", false),
            ("[!x]at", "cat", true),
            ("[]]", "]", true),
            ("a[", "a[", true),
            ("é*", "élan", true),
        ];
        for (pattern, text, expected) in cases {
            let pattern: Vec<char> = pattern.chars().collect();
            assert_eq!(glob_match(&pattern, text), expected, "{pattern:?} on {text:?}");
        }
    }

    fn history(inputs: &[&str]) -> History {
        let mut history = History::default();
        for (line, input) in inputs.iter().enumerate() {
            history.push(line as u64 + 1, input.to_string());
        }
        history
    }

    #[test]
    fn tail_and_range_with_and_without_output() {
        let mut history = history(&["let a = 1;", "a + 1", "println!(\"x\");"]);
        history.set_output(2, "2".to_owned());
        let tail = history.query(&json!({"hist_access_type": "tail", "n": 2, "output": false}));
        assert_eq!(tail, vec![json!([0, 2, "a + 1"]), json!([0, 3, "println!(\"x\");"])]);
        let tail = history.query(&json!({"hist_access_type": "tail", "n": 2, "output": true}));
        assert_eq!(tail[0], json!([0, 2, ["a + 1", "2"]]));
        assert_eq!(tail[1], json!([0, 3, ["println!(\"x\");", null]]));
        let range = history.query(&json!({"hist_access_type": "range", "session": 0, "start": 1, "stop": 2}));
        assert_eq!(range, vec![json!([0, 1, "let a = 1;"])]);
        let other_session = history.query(&json!({"hist_access_type": "range", "session": -1, "start": 1}));
        assert!(other_session.is_empty());
    }

    #[test]
    fn search_with_unique_and_n() {
        let history = history(&["1 + 2", "x", "1 + 3", "1 + 2", "1 + 2"]);
        let search = |extra: Value| {
            let mut request = json!({"hist_access_type": "search", "pattern": "1 + *", "output": false});
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            history.query(&request).iter().map(|entry| entry[1].as_u64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(search(json!({})), vec![1, 3, 4, 5]);
        assert_eq!(search(json!({"n": 3})), vec![3, 4, 5]);
        assert_eq!(search(json!({"unique": true})), vec![3, 5]);
        assert_eq!(search(json!({"unique": true, "n": 1})), vec![5]);
        assert_eq!(search(json!({"pattern": "1 + 3"})), vec![3]);
    }
}
