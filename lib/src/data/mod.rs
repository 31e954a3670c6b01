//! Datasets for fine-tuning: load, clean, split, tokenize, pack, batch and measure.
//!
//! Every schema (prompt/response pairs, Alpaca, chat messages, ShareGPT, text/label,
//! raw text) becomes an [`Example`] in a [`Dataset`]; nothing is dropped without a line
//! in a report, and bad input is an error naming the file, line or row, and field.
//!
//! ```no_run
//! use tunebook::data::{self, BatchOptions, CleanOptions, SplitOptions, TokenizeOptions};
//! let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! let tokenizer = model.tokenizer()?;
//! let data = data::Dataset::load("notebooks/data/quickstart_qa.jsonl")?; // or data::quickstart()?
//! let (data, report) = data.clean(&CleanOptions::default())?;
//! println!("{report}");
//! let splits = data.split(&SplitOptions::default())?;
//! let train = splits.train.tokenize(tokenizer, &TokenizeOptions::default().max_len(512))?;
//! println!("{}", train.stats());
//! for batch in train.pack(512)?.batches(&BatchOptions::new(8)) {
//!     // batch.input_ids, batch.attention_mask, batch.labels, batch.segments
//! }
//! # Ok::<(), tunebook::Error>(())
//! ```
mod batch;
mod clean;
mod dataset;
mod example;
mod labels;
mod load;
mod rng;
mod save;
mod schema;
mod shipped;
mod split;
mod stats;
mod tokenize;

pub use batch::{Batch, BatchOptions, Batches, PADDING_SEGMENT};
pub use clean::{CleanOptions, CleanReport, CleanStep};
pub use dataset::{Dataset, Skipped};
pub use example::{DataKind, Example};
pub use labels::LabelMap;
pub use load::{expand_paths, Format, LoadOptions};
pub use schema::Schema;
pub use shipped::{chatterbot, chatterbot_dir, quickstart, vader, vader_class, vader_dir, vader_labels, VaderSet, VADER_NEUTRAL_BAND};
pub use split::{SplitOptions, Splits};
pub use stats::TokenStats;
pub use tokenize::{TokenizeOptions, TokenizedDataset, TokenizedRow, TrainOn, Truncation};
