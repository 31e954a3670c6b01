//! Token statistics: the numbers behind the notebook's tables and histograms.
use super::split::Splits;
use super::tokenize::{TokenizeOptions, TokenizedDataset};
use crate::tokenizer::Tokenizer;
use crate::Result;
use serde::Serialize;
use std::fmt;

/// Token counts of one dataset (or split).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenStats {
    pub name: String,
    pub examples: usize,
    /// Tokens after truncation: what the model reads.
    pub total_tokens: usize,
    /// Tokens that carry a loss (responses only, by default); for classification, the
    /// number of examples.
    pub loss_tokens: usize,
    pub mean: f64,
    /// Middle length (mean of the two middle ones for an even count).
    pub median: f64,
    /// 95th percentile, nearest-rank: the smallest length with at least 95% of examples at
    /// or below it.
    pub p95: usize,
    pub min: usize,
    pub max: usize,
    /// Examples longer than `max_len`, and the tokens cut from them.
    pub truncated: usize,
    pub truncated_tokens: usize,
    /// Token positions the model processes per epoch: the kept tokens, or rows × row
    /// length once packed (padding included).
    pub tokens_per_epoch: usize,
    /// Examples per class, for classification.
    pub label_counts: Vec<(String, usize)>,
    /// Every example's length, for histograms.
    pub lengths: Vec<usize>,
}

impl TokenizedDataset {
    pub fn stats(&self) -> TokenStats {
        let mut sorted = self.lengths.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let total: usize = sorted.iter().sum();
        let median = match n {
            0 => 0.0,
            _ if n % 2 == 1 => sorted[n / 2] as f64,
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
        };
        let p95 = if n == 0 { 0 } else { sorted[(n * 95).div_ceil(100).max(1) - 1] };
        let truncated = self.full_lengths.iter().zip(&self.lengths).filter(|(f, k)| f > k).count();
        let truncated_tokens = self.full_lengths.iter().zip(&self.lengths).map(|(f, k)| f - k).sum();
        let loss_tokens = match self.labels {
            Some(_) => self.rows.iter().filter(|r| r.class_id.is_some()).count(),
            None => self.rows.iter().map(|r| r.loss_tokens()).sum(),
        };
        let label_counts = match &self.labels {
            Some(map) => {
                let mut counts = vec![0usize; map.len()];
                for id in self.rows.iter().filter_map(|r| r.class_id) {
                    counts[id as usize] += 1;
                }
                map.names().iter().cloned().zip(counts).collect()
            }
            None => Vec::new(),
        };
        TokenStats {
            name: self.name.clone(),
            examples: n,
            total_tokens: total,
            loss_tokens,
            mean: if n == 0 { 0.0 } else { total as f64 / n as f64 },
            median,
            p95,
            min: sorted.first().copied().unwrap_or(0),
            max: sorted.last().copied().unwrap_or(0),
            truncated,
            truncated_tokens,
            tokens_per_epoch: self.packed_len.map_or(total, |len| len * self.rows.len()),
            label_counts,
            lengths: self.lengths.clone(),
        }
    }
}

impl fmt::Display for TokenStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} examples, {} tokens ({} with loss), {} per epoch", self.name, self.examples, self.total_tokens, self.loss_tokens, self.tokens_per_epoch)?;
        writeln!(f, "  length: mean {:.1}, median {:.1}, p95 {}, min {}, max {}", self.mean, self.median, self.p95, self.min, self.max)?;
        write!(f, "  truncated: {} examples ({} tokens cut)", self.truncated, self.truncated_tokens)?;
        if !self.label_counts.is_empty() {
            let shown: Vec<String> = self.label_counts.iter().map(|(l, n)| format!("{l} {n}")).collect();
            write!(f, "\n  labels: {}", shown.join(", "))?;
        }
        Ok(())
    }
}

impl Splits {
    /// Tokenizes each split and returns its statistics (train, validation, test).
    pub fn token_stats(&self, tokenizer: &Tokenizer, options: &TokenizeOptions) -> Result<Vec<TokenStats>> {
        self.iter().map(|(_, part)| Ok(part.tokenize(tokenizer, options)?.stats())).collect()
    }
}
