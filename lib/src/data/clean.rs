//! Cleaning with a report: normalisation, empty rows, duplicates, length filters.
use super::dataset::Dataset;
use super::example::Example;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// Which cleaning steps run, in this order: Unicode NFC, whitespace, empty rows, exact
/// duplicates, near-duplicates, character length, token length.
///
/// ```no_run
/// use tunebook::data::{CleanOptions, Dataset};
/// let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
/// let data = tunebook::data::quickstart()?;
/// let options = CleanOptions::default().max_chars(4000).tokenizer(model.tokenizer()?).max_tokens(1024);
/// let (clean, report) = data.clean(&options)?;
/// println!("{report}");
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Clone)]
pub struct CleanOptions {
    /// Unicode NFC normalisation (composed accents, so "é" is one form).
    pub nfc: bool,
    /// Line endings to `\n`, odd spaces to plain ones, runs of spaces inside a line to one
    /// (leading indentation is kept, for code), trailing spaces and 3+ blank lines removed.
    pub whitespace: bool,
    /// Drops examples with an empty text, prompt, response or label.
    pub drop_empty: bool,
    /// Drops examples identical to an earlier one.
    pub dedup: bool,
    /// Drops examples whose texts equal an earlier one's after lower-casing and keeping
    /// only letters and digits (labels are not compared).
    pub near_dedup: bool,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
    /// Token bounds need [`CleanOptions::tokenizer`]; chat examples are counted with the
    /// chat template applied, as they will be trained.
    pub min_tokens: Option<usize>,
    pub max_tokens: Option<usize>,
    pub tokenizer: Option<Tokenizer>,
    /// How many examples each step of the report shows.
    pub examples_per_step: usize,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            nfc: true,
            whitespace: true,
            drop_empty: true,
            dedup: true,
            near_dedup: true,
            min_chars: None,
            max_chars: None,
            min_tokens: None,
            max_tokens: None,
            tokenizer: None,
            examples_per_step: 3,
        }
    }
}

impl CleanOptions {
    pub fn nfc(mut self, on: bool) -> Self {
        self.nfc = on;
        self
    }
    pub fn whitespace(mut self, on: bool) -> Self {
        self.whitespace = on;
        self
    }
    pub fn drop_empty(mut self, on: bool) -> Self {
        self.drop_empty = on;
        self
    }
    pub fn dedup(mut self, on: bool) -> Self {
        self.dedup = on;
        self
    }
    pub fn near_dedup(mut self, on: bool) -> Self {
        self.near_dedup = on;
        self
    }
    pub fn min_chars(mut self, n: usize) -> Self {
        self.min_chars = Some(n);
        self
    }
    pub fn max_chars(mut self, n: usize) -> Self {
        self.max_chars = Some(n);
        self
    }
    pub fn min_tokens(mut self, n: usize) -> Self {
        self.min_tokens = Some(n);
        self
    }
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = Some(n);
        self
    }
    pub fn tokenizer(mut self, tokenizer: &Tokenizer) -> Self {
        self.tokenizer = Some(tokenizer.clone());
        self
    }
    pub fn examples_per_step(mut self, n: usize) -> Self {
        self.examples_per_step = n;
        self
    }
}

/// What one cleaning step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleanStep {
    pub name: String,
    /// Examples dropped.
    pub removed: usize,
    /// Examples whose text was rewritten (normalisation steps).
    pub changed: usize,
    /// A few of the affected examples: origin, and what happened.
    pub examples: Vec<String>,
}

/// Rows in and out and what each step removed or changed, with examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleanReport {
    pub dataset: String,
    /// Rows read, including rows the loader could not use.
    pub rows_in: usize,
    pub rows_out: usize,
    pub steps: Vec<CleanStep>,
}

impl CleanReport {
    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&CleanStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    pub fn removed(&self) -> usize {
        self.steps.iter().map(|s| s.removed).sum()
    }
}

impl fmt::Display for CleanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cleaning {}: {} rows in, {} out", self.dataset, self.rows_in, self.rows_out)?;
        writeln!(f, "  {:<26} {:>8} {:>8}", "step", "removed", "changed")?;
        for step in &self.steps {
            writeln!(f, "  {:<26} {:>8} {:>8}", step.name, step.removed, step.changed)?;
            for example in &step.examples {
                writeln!(f, "      {example}")?;
            }
        }
        Ok(())
    }
}

/// The examples being cleaned, with their origins, and the steps so far.
struct Run {
    dataset: String,
    examples: Vec<Example>,
    origins: Vec<String>,
    steps: Vec<CleanStep>,
    shown: usize,
}

impl Run {
    /// Rewrites every example's texts with `f`, in parallel, counting what changed.
    fn rewrite(&mut self, name: &str, f: impl Fn(&str) -> String + Sync) {
        let before: Vec<Option<Example>> = self
            .examples
            .par_iter_mut()
            .map(|example| {
                let original = example.clone();
                example.map_texts(&f);
                (*example != original).then_some(original)
            })
            .collect();
        let changed: Vec<usize> = before.iter().enumerate().filter_map(|(i, b)| b.as_ref().map(|_| i)).collect();
        let examples = changed
            .iter()
            .take(self.shown)
            .map(|&i| format!("{}: {:?} -> {:?}", self.origins[i], before[i].as_ref().map(|b| b.preview(60)).unwrap_or_default(), self.examples[i].preview(60)))
            .collect();
        self.steps.push(CleanStep { name: name.into(), removed: 0, changed: changed.len(), examples });
    }

    /// Drops the examples for which `reason` gives a reason, in order (so `reason` may
    /// remember what it has seen); fails when nothing is left.
    fn drop_where(&mut self, name: &str, mut reason: impl FnMut(usize, &Example) -> Option<String>) -> Result<()> {
        let reasons: Vec<Option<String>> = self.examples.iter().enumerate().map(|(i, e)| reason(i, e)).collect();
        let removed = reasons.iter().filter(|r| r.is_some()).count();
        let examples = reasons
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| format!("{}: {r}: {:?}", self.origins[i], self.examples[i].preview(60))))
            .take(self.shown)
            .collect();
        let before = self.examples.len();
        let mut keep = reasons.iter().map(Option::is_none);
        let mut keep_origin = reasons.iter().map(Option::is_none);
        self.examples.retain(|_| keep.next().unwrap_or(true));
        self.origins.retain(|_| keep_origin.next().unwrap_or(true));
        self.steps.push(CleanStep { name: name.into(), removed, changed: 0, examples });
        if self.examples.is_empty() && before > 0 {
            return Err(Error::Data {
                location: self.dataset.clone(),
                message: format!("the `{name}` filter removed all {before} remaining rows; nothing is left to train on"),
            });
        }
        Ok(())
    }
}

impl Dataset {
    /// Cleans a copy of the dataset and reports what each step removed or changed.
    /// Rows a loader skipped appear as the first step. Fails, naming the filter, when a
    /// filter would leave nothing.
    pub fn clean(&self, options: &CleanOptions) -> Result<(Dataset, CleanReport)> {
        if (options.min_tokens.is_some() || options.max_tokens.is_some()) && options.tokenizer.is_none() {
            return Err(Error::InvalidArgument("min_tokens/max_tokens need a tokenizer: CleanOptions::tokenizer(model.tokenizer()?)".into()));
        }
        let (name, kind, examples, origins, labels, skipped) = self.clone().into_parts();
        let rows_in = examples.len() + skipped.len();
        let mut run = Run { dataset: name.clone(), examples, origins, steps: Vec::new(), shown: options.examples_per_step };
        run.steps.push(CleanStep {
            name: "unreadable rows".into(),
            removed: skipped.len(),
            changed: 0,
            examples: skipped.iter().take(run.shown).map(|s| format!("{}: {}", s.origin, s.reason)).collect(),
        });
        if options.nfc {
            run.rewrite("unicode NFC", |s| if is_nfc(s) { s.to_string() } else { s.nfc().collect() });
        }
        if options.whitespace {
            run.rewrite("whitespace", normalise_whitespace);
        }
        if options.drop_empty {
            run.drop_where("empty", |_, e| empty_reason(e))?;
        }
        if options.dedup {
            let mut seen: HashMap<String, String> = HashMap::new();
            let origins = run.origins.clone();
            run.drop_where("exact duplicates", |i, e| {
                let key = serde_json::to_string(e).unwrap_or_default();
                duplicate_of(&mut seen, key, &origins[i])
            })?;
        }
        if options.near_dedup {
            let mut seen: HashMap<String, String> = HashMap::new();
            let origins = run.origins.clone();
            run.drop_where("near duplicates", |i, e| duplicate_of(&mut seen, near_key(e), &origins[i]))?;
        }
        if options.min_chars.is_some() || options.max_chars.is_some() {
            let name = bounds_name("chars", options.min_chars, options.max_chars);
            run.drop_where(&name, |_, e| outside(e.chars(), options.min_chars, options.max_chars, "characters"))?;
        }
        if let Some(tokenizer) = &options.tokenizer {
            if options.min_tokens.is_some() || options.max_tokens.is_some() {
                let probe = Dataset::from_parts(name.clone(), kind, run.examples.clone(), run.origins.clone(), labels.clone(), Vec::new());
                let lengths = super::tokenize::token_lengths(&probe, tokenizer)?;
                let name = bounds_name("tokens", options.min_tokens, options.max_tokens);
                run.drop_where(&name, |i, _| outside(lengths[i], options.min_tokens, options.max_tokens, "tokens"))?;
            }
        }
        let report = CleanReport { dataset: name.clone(), rows_in, rows_out: run.examples.len(), steps: run.steps };
        let cleaned = Dataset::from_parts(name, kind, run.examples, run.origins, labels, Vec::new());
        Ok((cleaned, report))
    }
}

fn bounds_name(unit: &str, min: Option<usize>, max: Option<usize>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("{lo} <= {unit} <= {hi}"),
        (Some(lo), None) => format!("{unit} >= {lo}"),
        (None, Some(hi)) => format!("{unit} <= {hi}"),
        (None, None) => unit.to_string(),
    }
}

fn outside(length: usize, min: Option<usize>, max: Option<usize>, unit: &str) -> Option<String> {
    if min.is_some_and(|m| length < m) || max.is_some_and(|m| length > m) {
        return Some(format!("{length} {unit}"));
    }
    None
}

/// `Some("duplicate of <first origin>")` when `key` was seen, else remembers it.
fn duplicate_of(seen: &mut HashMap<String, String>, key: String, origin: &str) -> Option<String> {
    match seen.get(&key) {
        Some(first) => Some(format!("duplicate of {first}")),
        None => {
            seen.insert(key, origin.to_string());
            None
        }
    }
}

/// Texts lower-cased, reduced to letters and digits, words separated by one space.
fn near_key(example: &Example) -> String {
    let mut key = String::new();
    for text in example.texts() {
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            if !key.is_empty() && !key.ends_with('\u{1}') {
                key.push(' ');
            }
            key.extend(word.chars().flat_map(char::to_lowercase));
        }
        key.push('\u{1}');
    }
    key
}

fn empty_reason(example: &Example) -> Option<String> {
    match example {
        Example::Chat(messages) => {
            if !messages.iter().any(|m| m.role == "assistant") {
                return Some("no assistant message".into());
            }
            if !messages.iter().any(|m| m.role == "user") {
                return Some("no user message".into());
            }
            messages.iter().find(|m| m.content.trim().is_empty()).map(|m| format!("empty {} message", m.role))
        }
        Example::Labeled { text, label } => {
            if text.trim().is_empty() {
                Some("empty text".into())
            } else if label.trim().is_empty() {
                Some("empty label".into())
            } else {
                None
            }
        }
        Example::Text(text) => text.trim().is_empty().then(|| "empty text".into()),
    }
}

/// See [`CleanOptions::whitespace`].
pub(crate) fn normalise_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in unified.split('\n') {
        let mut cleaned = String::with_capacity(line.len());
        let mut chars = line.chars().filter(|c| !matches!(c, '\u{200B}' | '\u{FEFF}')).peekable();
        while let Some(&c) = chars.peek() {
            if c != ' ' && c != '\t' {
                break;
            }
            cleaned.push(c);
            chars.next();
        }
        let mut pending_space = false;
        for c in chars {
            if c == ' ' || c == '\t' || (c.is_whitespace() && c != '\n') {
                pending_space = true;
            } else {
                if pending_space {
                    cleaned.push(' ');
                    pending_space = false;
                }
                cleaned.push(c);
            }
        }
        let cleaned = cleaned.trim_end();
        if cleaned.is_empty() {
            blank_lines += 1;
            if blank_lines > 1 {
                continue;
            }
        } else {
            blank_lines = 0;
        }
        out.push_str(cleaned);
        out.push('\n');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_keeps_indentation_and_collapses_inner_runs() {
        let text = "  fn main() {\r\n        let  x =\t1;   \r\n\r\n\r\n\r\n  }\u{00A0}\u{200B}  ";
        assert_eq!(normalise_whitespace(text), "fn main() {\n        let x = 1;\n\n  }");
        assert_eq!(normalise_whitespace("a    b"), "a b");
    }

    #[test]
    fn near_key_ignores_case_and_punctuation_but_not_words() {
        let a = near_key(&Example::pair("What is AI?", "A field."));
        assert_eq!(a, near_key(&Example::pair("what is ai", "a  field")));
        assert_ne!(a, near_key(&Example::pair("What is AI?", "A fields.")));
        assert_ne!(near_key(&Example::pair("ab", "c")), near_key(&Example::pair("a", "bc")));
    }
}
