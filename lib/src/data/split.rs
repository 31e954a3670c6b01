//! Seeded train/validation/test splits, stratified by label for classification.
use super::dataset::Dataset;
use super::example::DataKind;
use super::rng::SplitMix64;
use crate::{Error, Result};
use std::fmt;

/// Split fractions and seed. The same seed gives the same split on every machine.
///
/// ```
/// use tunebook::data::{Dataset, Example, SplitOptions};
/// let data = Dataset::from_examples((0..100).map(|i| Example::labeled(format!("text {i}"), i % 2)).collect())?;
/// let splits = data.split(&SplitOptions::new(0.8, 0.1, 0.1).seed(7))?;
/// assert_eq!((splits.train.len(), splits.validation.len(), splits.test.len()), (80, 10, 10));
/// // Stratified: each class keeps its share.
/// assert_eq!(splits.validation.label_counts(), vec![("0".to_string(), 5), ("1".to_string(), 5)]);
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOptions {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
    pub seed: u64,
    /// Splits each class separately (classification only), so every split keeps the
    /// class proportions.
    pub stratify: bool,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions { train: 0.8, validation: 0.1, test: 0.1, seed: 42, stratify: true }
    }
}

impl SplitOptions {
    /// Fractions must be non-negative and add up to 1.
    pub fn new(train: f64, validation: f64, test: f64) -> Self {
        SplitOptions { train, validation, test, ..Self::default() }
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn stratify(mut self, on: bool) -> Self {
        self.stratify = on;
        self
    }

    fn check(&self) -> Result<()> {
        let parts = [self.train, self.validation, self.test];
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || (parts.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
            return Err(Error::InvalidArgument(format!(
                "split fractions must be non-negative and add up to 1, got train {}, validation {}, test {}",
                self.train, self.validation, self.test
            )));
        }
        Ok(())
    }
}

/// The three parts of a dataset. Each keeps the original order of its examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub validation: Dataset,
    pub test: Dataset,
}

impl Splits {
    /// `("train", …), ("validation", …), ("test", …)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Dataset)> {
        [("train", &self.train), ("validation", &self.validation), ("test", &self.test)].into_iter()
    }
}

impl fmt::Display for Splits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, part) in self.iter() {
            write!(f, "{name:<11} {:>7} examples", part.len())?;
            let counts = part.label_counts();
            if !counts.is_empty() {
                let shown: Vec<String> = counts.iter().map(|(l, n)| format!("{l} {n}")).collect();
                write!(f, "  ({})", shown.join(", "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl Dataset {
    /// Splits into train/validation/test. Each group (each class when stratified) is
    /// shuffled with the seed and cut at `round(n × validation)` and
    /// `round(n × test)`; the rest is training data.
    /// A seeded random subset of `n` examples (all of them when `n` is larger), in their
    /// original order: a quick experiment on part of a big set.
    ///
    /// ```
    /// use tunebook::data::{Dataset, Example};
    /// let data = Dataset::from_examples((0..100).map(|i| Example::text(format!("row {i}"))).collect())?;
    /// let sample = data.sample(10, 7);
    /// assert_eq!(sample.len(), 10);
    /// assert_eq!(sample, data.sample(10, 7));
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn sample(&self, n: usize, seed: u64) -> Dataset {
        let mut order: Vec<usize> = (0..self.len()).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        order.truncate(n);
        order.sort_unstable();
        self.select(&order, format!("{}/sample", self.name()))
    }

    pub fn split(&self, options: &SplitOptions) -> Result<Splits> {
        options.check()?;
        let groups: Vec<Vec<usize>> = match (self.labels(), options.stratify && self.kind() == DataKind::Classification) {
            (Some(labels), true) => {
                let mut groups = vec![Vec::new(); labels.len()];
                for (i, example) in self.examples().iter().enumerate() {
                    let id = example.label().and_then(|l| labels.id(l)).unwrap_or(0);
                    groups[id].push(i);
                }
                groups
            }
            _ => vec![(0..self.len()).collect()],
        };
        let mut rng = SplitMix64::new(options.seed);
        let (mut train, mut validation, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for mut group in groups {
            rng.shuffle(&mut group);
            let n = group.len();
            let n_val = ((n as f64 * options.validation).round() as usize).min(n);
            let n_test = ((n as f64 * options.test).round() as usize).min(n - n_val);
            validation.extend_from_slice(&group[..n_val]);
            test.extend_from_slice(&group[n_val..n_val + n_test]);
            train.extend_from_slice(&group[n_val + n_test..]);
        }
        for part in [&mut train, &mut validation, &mut test] {
            part.sort_unstable();
        }
        let named = |part: &str| format!("{}/{part}", self.name());
        Ok(Splits {
            train: self.select(&train, named("train")),
            validation: self.select(&validation, named("validation")),
            test: self.select(&test, named("test")),
        })
    }
}
