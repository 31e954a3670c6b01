//! What the trainer consumes: data that collates a [`Batch`] from example indices.
//!
//! The trainer owns the order (a seeded shuffle per epoch), so a checkpoint only needs the
//! epoch and the position in it. The data pipeline's [`TokenizedDataset`] (packed or not)
//! plugs in directly; [`TokenRows`] holds token ids made any other way.
use crate::data::{Batch, TokenizedDataset};
use crate::loss::IGNORE_INDEX;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Data the trainer can draw batches from.
pub trait TrainData {
    /// Number of rows (examples, or packed rows).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Collates the rows at `indices` (in that order) into one batch on `device`.
    fn collate(&self, indices: &[usize], device: Device) -> Result<Batch>;
}

impl TrainData for TokenizedDataset {
    fn len(&self) -> usize {
        TokenizedDataset::len(self)
    }
    fn collate(&self, indices: &[usize], device: Device) -> Result<Batch> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= TokenizedDataset::len(self)) {
            return Err(Error::InvalidArgument(format!("row {bad} out of range: {} has {} rows", self.name(), TokenizedDataset::len(self))));
        }
        Ok(TokenizedDataset::collate(self, indices, device))
    }
}

/// Tokens the causal loss is computed on (labels shifted by one, -100 ignored), or the
/// examples of a classification batch.
pub(crate) fn loss_weight(batch: &Batch) -> i64 {
    if batch.labels.dim() < 2 {
        return batch.labels.size()[0];
    }
    let t = batch.labels.size()[1];
    batch.labels.narrow(1, 1, t - 1).ne(IGNORE_INDEX).sum(Kind::Int64).int64_value(&[])
}

/// Token ids held in memory, collated with right padding: for data tokenized outside the
/// data pipeline, and for tests.
///
/// ```
/// use tunebook::train::{TrainData, TokenRows};
/// let data = TokenRows::classification(vec![(vec![5, 6, 7], 1), (vec![8], 0)], 0);
/// let batch = data.collate(&[0, 1], tch::Device::Cpu)?;
/// assert_eq!(batch.input_ids.size(), [2, 3]);
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokenRows {
    rows: Vec<Vec<i64>>,
    targets: Targets,
    pad_id: i64,
}

#[derive(Debug, Clone)]
enum Targets {
    Tokens(Vec<Vec<i64>>),
    Classes(Vec<i64>),
}

impl TokenRows {
    /// Causal-LM rows of `(input_ids, labels)`; labels are aligned with the ids, -100 where
    /// no loss is wanted (e.g. the prompt).
    pub fn causal(rows: Vec<(Vec<i64>, Vec<i64>)>, pad_id: i64) -> Result<Self> {
        for (i, (ids, labels)) in rows.iter().enumerate() {
            if ids.len() != labels.len() || ids.is_empty() {
                return Err(Error::Data {
                    location: format!("row {i}"),
                    message: format!("{} input ids but {} labels; expected the same non-zero length", ids.len(), labels.len()),
                });
            }
        }
        let (ids, labels) = rows.into_iter().unzip();
        Ok(TokenRows { rows: ids, targets: Targets::Tokens(labels), pad_id })
    }

    /// Causal-LM rows that learn every token.
    pub fn causal_texts(rows: Vec<Vec<i64>>, pad_id: i64) -> Result<Self> {
        Self::causal(rows.into_iter().map(|r| (r.clone(), r)).collect(), pad_id)
    }

    /// Classification rows of `(input_ids, class id)`.
    pub fn classification(rows: Vec<(Vec<i64>, i64)>, pad_id: i64) -> Self {
        let (ids, classes) = rows.into_iter().unzip();
        TokenRows { rows: ids, targets: Targets::Classes(classes), pad_id }
    }
}

impl TrainData for TokenRows {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn collate(&self, indices: &[usize], device: Device) -> Result<Batch> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.rows.len()) {
            return Err(Error::InvalidArgument(format!("row {bad} out of range: the data has {} rows", self.rows.len())));
        }
        let width = indices.iter().map(|&i| self.rows[i].len()).max().unwrap_or(0);
        let pad = |row: &[i64], value: i64| {
            let mut out = row.to_vec();
            out.resize(width, value);
            out
        };
        let matrix = |rows: Vec<Vec<i64>>| Tensor::from_slice(&rows.concat()).reshape([indices.len() as i64, width as i64]).to_device(device);
        let ids = matrix(indices.iter().map(|&i| pad(&self.rows[i], self.pad_id)).collect());
        let mask = matrix(indices.iter().map(|&i| pad(&vec![1; self.rows[i].len()], 0)).collect());
        let labels = match &self.targets {
            Targets::Tokens(labels) => matrix(indices.iter().map(|&i| pad(&labels[i], IGNORE_INDEX)).collect()),
            Targets::Classes(classes) => Tensor::from_slice(&indices.iter().map(|&i| classes[i]).collect::<Vec<_>>()).to_device(device),
        };
        let tokens = indices.iter().map(|&i| self.rows[i].len()).sum();
        Ok(Batch { input_ids: ids, attention_mask: mask, labels, segments: None, examples: indices.len(), tokens })
    }
}
