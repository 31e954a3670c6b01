//! Tokenization: chat template, truncation, response-only labels.
use super::dataset::Dataset;
use super::example::{DataKind, Example};
use super::labels::LabelMap;
use crate::loss::IGNORE_INDEX;
use crate::tokenizer::{ChatMessage, Tokenizer};
use crate::{Error, Result};
use rayon::prelude::*;
use std::ops::Range;

/// Which end of a too-long example is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Keep the start (Hugging Face's default).
    #[default]
    Right,
    /// Keep the end (keeps the response of a long chat).
    Left,
}

/// Which tokens of a chat example carry a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainOn {
    /// Only the assistant turns (through their end-of-turn token); prompts are
    /// [`IGNORE_INDEX`].
    #[default]
    Responses,
    /// Every token, prompts included.
    WholeText,
}

/// How examples become token ids and labels.
///
/// ```no_run
/// use tunebook::data::{Dataset, TokenizeOptions, Truncation};
/// let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
/// let data = tunebook::data::quickstart()?;
/// let tokens = data.tokenize(model.tokenizer()?, &TokenizeOptions::default().max_len(512).truncation(Truncation::Left))?;
/// println!("{}", tokens.stats());
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizeOptions {
    /// Longest example in tokens; longer ones are cut (and counted in the statistics).
    pub max_len: usize,
    pub truncation: Truncation,
    pub train_on: TrainOn,
    /// Raw text only: ends each text with the end-of-sequence token, so the model learns
    /// where documents stop.
    pub add_eos: bool,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions { max_len: 2048, truncation: Truncation::Right, train_on: TrainOn::Responses, add_eos: true }
    }
}

impl TokenizeOptions {
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }
    pub fn truncation(mut self, side: Truncation) -> Self {
        self.truncation = side;
        self
    }
    pub fn train_on(mut self, which: TrainOn) -> Self {
        self.train_on = which;
        self
    }
    pub fn add_eos(mut self, on: bool) -> Self {
        self.add_eos = on;
        self
    }
}

/// One tokenized example, or several once packed.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedRow {
    pub input_ids: Vec<u32>,
    /// Targets aligned with `input_ids` (the loss shifts them), [`IGNORE_INDEX`] where no
    /// loss applies; empty for classification.
    pub labels: Vec<i64>,
    /// Which example of a packed row each token belongs to (0, 1, …); empty when not packed.
    pub segments: Vec<i64>,
    /// The class id, for classification.
    pub class_id: Option<i64>,
}

impl TokenizedRow {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    /// Tokens that carry a loss.
    pub fn loss_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// A tokenized dataset, ready to pack and batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedDataset {
    pub(crate) name: String,
    pub(crate) kind: DataKind,
    pub(crate) rows: Vec<TokenizedRow>,
    pub(crate) pad_id: u32,
    pub(crate) max_len: usize,
    /// The fixed row length once packed.
    pub(crate) packed_len: Option<usize>,
    /// Per example: tokens kept, and tokens before truncation.
    pub(crate) lengths: Vec<usize>,
    pub(crate) full_lengths: Vec<usize>,
    pub(crate) labels: Option<LabelMap>,
}

impl TokenizedDataset {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> DataKind {
        self.kind
    }
    /// Rows: one per example, or packed rows after [`pack`](Self::pack).
    pub fn rows(&self) -> &[TokenizedRow] {
        &self.rows
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// Examples tokenized (packing puts several in a row).
    pub fn examples(&self) -> usize {
        self.lengths.len()
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn max_len(&self) -> usize {
        self.max_len
    }
    pub fn packed_len(&self) -> Option<usize> {
        self.packed_len
    }
    pub fn labels(&self) -> Option<&LabelMap> {
        self.labels.as_ref()
    }
    /// Token count per example after truncation.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }
}

impl Dataset {
    /// Tokenizes every example with `tokenizer`, in parallel.
    ///
    /// - chat: the model's chat template is applied; labels cover the assistant turns
    ///   (or everything with [`TrainOn::WholeText`]);
    /// - classification: the text with the tokenizer's special tokens, and the class id;
    /// - text: the text with special tokens and, by default, the end-of-sequence token.
    pub fn tokenize(&self, tokenizer: &Tokenizer, options: &TokenizeOptions) -> Result<TokenizedDataset> {
        if options.max_len == 0 {
            return Err(Error::InvalidArgument("max_len must be at least 1".into()));
        }
        let encoded = encode(self, tokenizer, options)?;
        let mut rows = Vec::with_capacity(encoded.len());
        let mut lengths = Vec::with_capacity(encoded.len());
        let mut full_lengths = Vec::with_capacity(encoded.len());
        for (mut row, example) in encoded.into_iter().zip(self.examples()) {
            full_lengths.push(row.input_ids.len());
            truncate(&mut row, options.max_len, options.truncation);
            lengths.push(row.input_ids.len());
            if let Example::Labeled { label, .. } = example {
                row.class_id = self.labels().and_then(|m| m.id(label)).map(|id| id as i64);
            }
            rows.push(row);
        }
        Ok(TokenizedDataset {
            name: self.name().to_string(),
            kind: self.kind(),
            rows,
            pad_id: tokenizer.pad_token_id(),
            max_len: options.max_len,
            packed_len: None,
            lengths,
            full_lengths,
            labels: self.labels().cloned(),
        })
    }
}

fn truncate(row: &mut TokenizedRow, max_len: usize, side: Truncation) {
    let n = row.input_ids.len();
    if n <= max_len {
        return;
    }
    let keep = match side {
        Truncation::Right => 0..max_len,
        Truncation::Left => n - max_len..n,
    };
    row.input_ids = row.input_ids[keep.clone()].to_vec();
    if !row.labels.is_empty() {
        row.labels = row.labels[keep].to_vec();
    }
}

/// Token count of every example as it will be trained (chat template applied), untruncated.
pub(crate) fn token_lengths(dataset: &Dataset, tokenizer: &Tokenizer) -> Result<Vec<usize>> {
    let options = TokenizeOptions { train_on: TrainOn::WholeText, ..Default::default() };
    Ok(encode(dataset, tokenizer, &options)?.iter().map(TokenizedRow::len).collect())
}

fn tokenizer_error(e: tokenizers::Error) -> Error {
    Error::Tokenizer(format!("encode_batch: {e}"))
}

/// Ids and labels of every example, before truncation.
fn encode(dataset: &Dataset, tokenizer: &Tokenizer, options: &TokenizeOptions) -> Result<Vec<TokenizedRow>> {
    let row = |input_ids: Vec<u32>, labels: Vec<i64>| TokenizedRow { input_ids, labels, segments: Vec::new(), class_id: None };
    let texts: Vec<&str> = dataset.examples().iter().filter_map(|e| match e {
        Example::Labeled { text, .. } | Example::Text(text) => Some(text.as_str()),
        Example::Chat(_) => None,
    }).collect();
    match dataset.kind() {
        DataKind::Classification => Ok(tokenizer.encode_batch(&texts, true)?.into_iter().map(|ids| row(ids, Vec::new())).collect()),
        DataKind::Text => {
            let eos = tokenizer.eos_token_ids().first().copied().filter(|_| options.add_eos);
            Ok(tokenizer
                .encode_batch(&texts, true)?
                .into_iter()
                .map(|mut ids| {
                    if let Some(eos) = eos.filter(|e| ids.last() != Some(e)) {
                        ids.push(eos);
                    }
                    let labels = ids.iter().map(|&t| t as i64).collect();
                    row(ids, labels)
                })
                .collect())
        }
        DataKind::Chat => {
            let rendered: Vec<Rendered> = dataset
                .examples()
                .par_iter()
                .zip(dataset.origins().par_iter())
                .map(|(example, origin)| match example {
                    Example::Chat(messages) => render_chat(tokenizer, messages, options.train_on, origin),
                    _ => Err(Error::Data { location: origin.clone(), message: "not a chat example".into() }),
                })
                .collect::<Result<_>>()?;
            let inputs: Vec<&str> = rendered.iter().map(|r| r.text.as_str()).collect();
            let encodings = tokenizer.inner().encode_batch(inputs, false).map_err(tokenizer_error)?;
            Ok(encodings
                .par_iter()
                .zip(rendered.par_iter())
                .map(|(encoding, rendered)| {
                    let ids = encoding.get_ids().to_vec();
                    let labels = match options.train_on {
                        TrainOn::WholeText => ids.iter().map(|&t| t as i64).collect(),
                        TrainOn::Responses => ids
                            .iter()
                            .zip(encoding.get_offsets())
                            .map(|(&id, &(start, _))| if rendered.spans.iter().any(|s| s.contains(&start)) { id as i64 } else { IGNORE_INDEX })
                            .collect(),
                    };
                    row(ids, labels)
                })
                .collect())
        }
    }
}

/// A conversation rendered with the chat template, and the byte ranges of its assistant
/// turns (from the start of the reply through the template's end-of-turn text).
struct Rendered {
    text: String,
    spans: Vec<Range<usize>>,
}

/// Renders `messages`; for response-only labels, finds each assistant turn by rendering
/// the conversation up to it (with the generation prompt) and through it. Templates that
/// do not render incrementally fall back to locating the reply text itself.
fn render_chat(tokenizer: &Tokenizer, messages: &[ChatMessage], train_on: TrainOn, origin: &str) -> Result<Rendered> {
    let render = |upto: &[ChatMessage], generation_prompt: bool| {
        tokenizer
            .apply_chat_template(upto, generation_prompt)
            .map_err(|e| Error::Data { location: origin.into(), message: e.to_string() })
    };
    let text = render(messages, false)?;
    let mut spans = Vec::new();
    if train_on == TrainOn::WholeText {
        return Ok(Rendered { text, spans });
    }
    let mut search_from = 0;
    for (i, message) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
        let before = render(&messages[..i], true)?;
        let through = if i + 1 == messages.len() { text.clone() } else { render(&messages[..=i], false)? };
        let span = if text.starts_with(&before) && text.starts_with(&through) && before.len() <= through.len() {
            before.len()..through.len()
        } else {
            let start = text[search_from..].find(&message.content).map(|p| p + search_from).ok_or_else(|| Error::Data {
                location: origin.into(),
                message: format!("assistant turn {i} not found in the chat template's output; use TrainOn::WholeText"),
            })?;
            start..start + message.content.len()
        };
        search_from = span.end;
        spans.push(span);
    }
    Ok(Rendered { text, spans })
}
