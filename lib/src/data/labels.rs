//! Class names and the ids a classifier predicts.
use serde::{Deserialize, Serialize};
use std::fmt;

/// The classes of a classification dataset, in id order.
///
/// Built from the data when not declared: integer labels in numeric order, other labels
/// alphabetically. Declare it to fix the ids, or to check validation data against the
/// training classes:
///
/// ```
/// use tunebook::data::LabelMap;
/// let labels = LabelMap::new(["negative", "neutral", "positive"]);
/// assert_eq!(labels.id("positive"), Some(2));
/// assert_eq!(labels.name(0), Some("negative"));
/// // Integer labels in the data name the class by position when they are not class names.
/// assert_eq!(labels.resolve("1"), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMap {
    names: Vec<String>,
}

impl LabelMap {
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LabelMap { names: names.into_iter().map(Into::into).collect() }
    }

    /// The classes found in `labels`: integers in numeric order when all are integers,
    /// otherwise sorted alphabetically.
    pub fn infer<'a>(labels: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<&str> = labels.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<i64>().unwrap_or_default());
        }
        LabelMap::new(names)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The id of a class name.
    pub fn id(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn name(&self, id: usize) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    /// The id of a label as written in the data: a class name, or else an integer id.
    pub fn resolve(&self, label: &str) -> Option<usize> {
        self.id(label).or_else(|| label.parse::<usize>().ok().filter(|&i| i < self.names.len()))
    }
}

impl fmt::Display for LabelMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.names.iter().enumerate().map(|(i, n)| format!("{i}={n}")).collect();
        write!(f, "{}", pairs.join(", "))
    }
}
