//! `[data]`: where the examples come from and how they become training rows.
use crate::data::{self, CleanOptions, Dataset, Format, LoadOptions, SplitOptions, Splits, TokenizeOptions, TokenizedDataset, TrainOn, VaderSet};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Datasets installed with tunebook (see [`crate::data::quickstart`] and its neighbours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShippedData {
    /// The 64 bundled prompt/response pairs.
    Quickstart,
    /// The chatterbot English corpus as prompt/reply pairs.
    Chatterbot,
    /// VADER movie-review snippets, 3-class sentiment.
    VaderMovies,
    /// VADER tweets, 3-class sentiment.
    VaderTweets,
    VaderAmazon,
    VaderNyt,
}

impl ShippedData {
    fn load(self) -> Result<Dataset> {
        match self {
            ShippedData::Quickstart => data::quickstart(),
            ShippedData::Chatterbot => data::chatterbot(),
            ShippedData::VaderMovies => data::vader(VaderSet::MovieReviews),
            ShippedData::VaderTweets => data::vader(VaderSet::Tweets),
            ShippedData::VaderAmazon => data::vader(VaderSet::AmazonReviews),
            ShippedData::VaderNyt => data::vader(VaderSet::NytEditorials),
        }
    }
}

/// Which tokens of a chat example carry the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainOnSetting {
    /// The assistant's answers only.
    #[default]
    Response,
    /// Prompts too.
    All,
}

/// `[data]`: a file (or folder, or glob) or a shipped set, then cleaning, a seeded split,
/// tokenization and optional packing.
///
/// ```toml
/// [data]
/// path = "../data/quickstart_qa.jsonl"   # relative to the recipe's folder; or shipped = "quickstart"
/// max_len = 256
/// validation = 0.1
/// test = 0.0
/// seed = 42
/// train_on = "response"                  # or "all"
/// packing = false
/// clean = true
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// A data file (.json, .jsonl, .csv, .tsv, .parquet), a folder of them, or a glob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A dataset installed with tunebook, instead of `path`: `quickstart`, `chatterbot`,
    /// `vader-movies`, `vader-tweets`, `vader-amazon`, `vader-nyt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipped: Option<ShippedData>,
    /// auto, json, jsonl, csv, tsv or parquet.
    pub format: String,
    /// Only about this many examples, a seeded random sample (stratified by class), e.g.
    /// for a quick first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_examples: Option<usize>,
    /// Longest example in tokens; longer ones are cut. Also the packed row length.
    pub max_len: usize,
    /// Fractions held out for evaluation and for a final test (never trained on).
    pub validation: f64,
    pub test: f64,
    /// Seed of the split.
    pub seed: u64,
    pub train_on: TrainOnSetting,
    /// Packs several short examples per row (causal LM only).
    pub packing: bool,
    /// Normalises text and drops empty and duplicate examples (see [`CleanOptions`]).
    pub clean: bool,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            path: None,
            shipped: None,
            format: "auto".into(),
            max_examples: None,
            max_len: 512,
            validation: 0.1,
            test: 0.0,
            seed: 42,
            train_on: TrainOnSetting::Response,
            packing: false,
            clean: true,
        }
    }
}

/// Training and evaluation rows.
pub(crate) struct Prepared {
    pub train: TokenizedDataset,
    pub validation: Option<TokenizedDataset>,
}

impl DataSection {
    /// Checks what can be checked without loading anything; errors are [`Error::Config`]
    /// naming the field.
    pub(crate) fn check(&self) -> Result<()> {
        match (&self.path, &self.shipped) {
            (Some(_), Some(_)) => return Err(Error::config("shipped", "give either path or shipped, not both")),
            (None, None) => return Err(Error::config("path", "missing: give a data file, folder or glob (or shipped = \"quickstart\")")),
            (Some(path), None) => {
                data::expand_paths(path).map_err(|e| Error::config("path", e.to_string()))?;
            }
            (None, Some(_)) => {}
        }
        self.format.parse::<Format>().map_err(|e| Error::config("format", e.to_string()))?;
        if self.max_len == 0 {
            return Err(Error::config("max_len", "must be at least 1"));
        }
        if self.max_examples == Some(0) {
            return Err(Error::config("max_examples", "must be at least 1"));
        }
        for (field, fraction) in [("validation", self.validation), ("test", self.test)] {
            if !(0.0..1.0).contains(&fraction) {
                return Err(Error::config(field, format!("must be a fraction in [0, 1), found {fraction}")));
            }
        }
        if self.validation + self.test >= 1.0 {
            return Err(Error::config("test", format!("validation + test is {}: nothing would be left to train on", self.validation + self.test)));
        }
        Ok(())
    }

    /// The examples, loaded, sampled down to `max_examples` and cleaned.
    pub(crate) fn load(&self) -> Result<Dataset> {
        let dataset = match (&self.path, self.shipped) {
            (_, Some(shipped)) => shipped.load()?,
            (Some(path), None) => Dataset::load_with(path, LoadOptions::new().format(self.format.parse()?))?,
            (None, None) => return Err(Error::config("path", "missing")),
        };
        let dataset = match self.max_examples {
            // A sample rather than the first n: files are often sorted (VADER's movie
            // snippets by sentiment), and the split's stratification keeps class shares.
            Some(n) if n < dataset.len() => {
                let keep = n as f64 / dataset.len() as f64;
                dataset.split(&SplitOptions::new(keep, 1.0 - keep, 0.0).seed(self.seed))?.train
            }
            _ => dataset,
        };
        Ok(if self.clean { dataset.clean(&CleanOptions::default())?.0 } else { dataset })
    }

    pub(crate) fn split(&self, dataset: &Dataset) -> Result<Splits> {
        let options = SplitOptions::new(1.0 - self.validation - self.test, self.validation, self.test).seed(self.seed);
        dataset.split(&options)
    }

    /// Tokenized training rows (packed if asked) and validation rows (if any).
    pub(crate) fn prepare(&self, splits: &Splits, tokenizer: &Tokenizer) -> Result<Prepared> {
        let train_on = match self.train_on {
            TrainOnSetting::Response => TrainOn::Responses,
            TrainOnSetting::All => TrainOn::WholeText,
        };
        let options = TokenizeOptions::default().max_len(self.max_len).train_on(train_on);
        let mut train = splits.train.tokenize(tokenizer, &options)?;
        if self.packing {
            train = train.pack(self.max_len).map_err(|e| Error::config("packing", e.to_string()))?;
        }
        let validation = if splits.validation.is_empty() { None } else { Some(splits.validation.tokenize(tokenizer, &options)?) };
        Ok(Prepared { train, validation })
    }
}
