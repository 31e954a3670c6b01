//! Packing into fixed-length rows, and batches as tensors.
use super::example::DataKind;
use super::rng::SplitMix64;
use super::tokenize::{TokenizedDataset, TokenizedRow};
use crate::loss::IGNORE_INDEX;
use crate::{Error, Result};
use std::collections::BTreeMap;
use tch::{Device, Tensor};

/// The segment id of padding in packed batches.
pub const PADDING_SEGMENT: i64 = -1;

impl TokenizedDataset {
    /// Packs examples into rows of at most `seq_len` tokens (best fit, longest first),
    /// so little compute goes to padding. Each token's segment is its example's index in
    /// the row; the model keeps attention inside a segment and restarts positions. The
    /// first token of every example gets no label, so no example learns to predict the
    /// next one's start.
    ///
    /// Fails when an example is longer than `seq_len` (tokenize with `max_len ≤ seq_len`).
    pub fn pack(&self, seq_len: usize) -> Result<TokenizedDataset> {
        if self.kind == DataKind::Classification {
            return Err(Error::InvalidArgument("packing is for language-model data; classification batches one example per row".into()));
        }
        if self.packed_len.is_some() {
            return Err(Error::InvalidArgument(format!("{} is already packed", self.name)));
        }
        if seq_len == 0 {
            return Err(Error::InvalidArgument("packing length must be at least 1".into()));
        }
        let too_long = self.rows.iter().filter(|r| r.len() > seq_len).count();
        if too_long > 0 {
            let longest = self.rows.iter().map(TokenizedRow::len).max().unwrap_or(0);
            return Err(Error::InvalidArgument(format!(
                "{too_long} examples are longer than the packing length {seq_len} (longest {longest}); tokenize with max_len <= {seq_len}"
            )));
        }
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.rows[i].len()));
        let mut bins: Vec<Vec<usize>> = Vec::new();
        let mut by_room: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in order {
            let len = self.rows[i].len();
            let tightest = by_room.range(len..).next().map(|(&room, _)| room);
            let fit = tightest.and_then(|room| {
                let open = by_room.get_mut(&room)?;
                let bin = open.pop()?;
                if open.is_empty() {
                    by_room.remove(&room);
                }
                Some((room, bin))
            });
            let (room, bin) = fit.unwrap_or_else(|| {
                bins.push(Vec::new());
                (seq_len, bins.len() - 1)
            });
            bins[bin].push(i);
            by_room.entry(room - len).or_default().push(bin);
        }
        let rows = bins.iter().map(|members| self.packed_row(members)).collect();
        Ok(TokenizedDataset { rows, packed_len: Some(seq_len), ..self.clone() })
    }

    fn packed_row(&self, members: &[usize]) -> TokenizedRow {
        let mut row = TokenizedRow { input_ids: Vec::new(), labels: Vec::new(), segments: Vec::new(), class_id: None };
        for (segment, &i) in members.iter().enumerate() {
            let example = &self.rows[i];
            let first = row.labels.len();
            row.input_ids.extend_from_slice(&example.input_ids);
            row.labels.extend_from_slice(&example.labels);
            if let Some(label) = row.labels.get_mut(first) {
                *label = IGNORE_INDEX;
            }
            row.segments.extend(std::iter::repeat_n(segment as i64, example.len()));
        }
        row
    }

    /// Pads the rows at `indices` into one batch on `device`: to the longest row, or to
    /// the packing length for packed data.
    pub fn collate(&self, indices: &[usize], device: Device) -> Batch {
        let rows: Vec<&TokenizedRow> = indices.iter().map(|&i| &self.rows[i]).collect();
        let width = self.packed_len.unwrap_or_else(|| rows.iter().map(|r| r.len()).max().unwrap_or(0)).max(1);
        let b = rows.len();
        let mut input_ids = vec![self.pad_id as i64; b * width];
        let mut attention = vec![0i64; b * width];
        let mut labels = vec![IGNORE_INDEX; b * width];
        let mut segments = vec![PADDING_SEGMENT; b * width];
        for (r, row) in rows.iter().enumerate() {
            let at = r * width;
            for (t, &id) in row.input_ids.iter().enumerate() {
                input_ids[at + t] = id as i64;
                attention[at + t] = 1;
            }
            labels[at..at + row.labels.len()].copy_from_slice(&row.labels);
            segments[at..at + row.segments.len()].copy_from_slice(&row.segments);
        }
        let shape = [b as i64, width as i64];
        let tensor = |v: &[i64]| Tensor::from_slice(v).reshape(shape).to_device(device);
        let labels = match self.kind {
            DataKind::Classification => Tensor::from_slice(&rows.iter().map(|r| r.class_id.unwrap_or(IGNORE_INDEX)).collect::<Vec<i64>>()).to_device(device),
            _ => tensor(&labels),
        };
        Batch {
            input_ids: tensor(&input_ids),
            attention_mask: tensor(&attention),
            labels,
            segments: self.packed_len.map(|_| tensor(&segments)),
            examples: rows.iter().map(|r| r.segments.iter().max().map_or(1, |&s| s as usize + 1)).sum(),
            tokens: rows.iter().map(|r| r.len()).sum(),
        }
    }

    /// The row indices of each batch, in order: seeded shuffle, optional length
    /// bucketing (similar lengths together, so less padding), last short batch kept
    /// unless `drop_last`.
    pub fn batch_indices(&self, options: &BatchOptions) -> Vec<Vec<usize>> {
        let size = options.batch_size.max(1);
        let mut rng = SplitMix64::new(options.seed);
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        if options.shuffle {
            rng.shuffle(&mut order);
        }
        if options.bucket_by_length {
            for window in order.chunks_mut(size * BUCKET_BATCHES) {
                window.sort_by_key(|&i| std::cmp::Reverse(self.rows[i].len()));
            }
        }
        let mut batches: Vec<Vec<usize>> = order.chunks(size).map(<[usize]>::to_vec).collect();
        if options.drop_last {
            batches.retain(|b| b.len() == size);
        }
        if options.shuffle && options.bucket_by_length {
            rng.shuffle(&mut batches);
        }
        batches
    }

    /// Batches as tensors, one epoch. Use a different [`BatchOptions::seed`] per epoch for
    /// a new order.
    ///
    /// ```no_run
    /// use tunebook::data::{BatchOptions, Dataset, TokenizeOptions};
    /// let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// let data = tunebook::data::quickstart()?;
    /// let train = data.tokenize(model.tokenizer()?, &TokenizeOptions::default())?.pack(512)?;
    /// for batch in train.batches(&BatchOptions::new(4).seed(1)) {
    ///     let logits = model.forward_with(&batch.input_ids, Some(&batch.attention_mask), batch.segments.as_ref(), None);
    ///     let loss = tunebook::loss::causal_lm_loss(&logits, &batch.labels);
    /// }
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn batches(&self, options: &BatchOptions) -> Batches<'_> {
        Batches { data: self, plan: self.batch_indices(options).into_iter(), device: options.device }
    }
}

/// How many batches' worth of examples are sorted together when bucketing by length:
/// enough to group similar lengths, few enough to keep batches varied.
const BUCKET_BATCHES: usize = 50;

/// Batching choices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOptions {
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub bucket_by_length: bool,
    pub drop_last: bool,
    pub device: Device,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { batch_size: 8, shuffle: true, seed: 0, bucket_by_length: false, drop_last: false, device: Device::Cpu }
    }
}

impl BatchOptions {
    pub fn new(batch_size: usize) -> Self {
        BatchOptions { batch_size, ..Self::default() }
    }
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn bucket_by_length(mut self, on: bool) -> Self {
        self.bucket_by_length = on;
        self
    }
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
}

/// One batch, right-padded, as int64 tensors on the chosen device.
#[derive(Debug)]
pub struct Batch {
    /// `[batch, seq]`, padding is the tokenizer's pad id.
    pub input_ids: Tensor,
    /// `[batch, seq]`, 1 for tokens and 0 for padding.
    pub attention_mask: Tensor,
    /// `[batch, seq]` targets with [`IGNORE_INDEX`] on prompts and padding (language
    /// modelling), or `[batch]` class ids (classification).
    pub labels: Tensor,
    /// `[batch, seq]` example index of each token for packed rows ([`PADDING_SEGMENT`] on
    /// padding); `None` for unpacked data.
    pub segments: Option<Tensor>,
    /// Examples in the batch (a packed row holds several).
    pub examples: usize,
    /// Tokens that are not padding.
    pub tokens: usize,
}

/// Iterator over the batches of one epoch.
pub struct Batches<'a> {
    data: &'a TokenizedDataset,
    plan: std::vec::IntoIter<Vec<usize>>,
    device: Device,
}

impl Iterator for Batches<'_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.plan.next().map(|indices| self.data.collate(&indices, self.device))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.plan.size_hint()
    }
}

impl ExactSizeIterator for Batches<'_> {}
