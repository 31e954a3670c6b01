//! Datasets installed with the project: VADER sentiment sets, the chatterbot English
//! corpus, and the bundled quick-start instruction pairs.
use super::dataset::{Dataset, Skipped};
use super::example::{DataKind, Example};
use super::labels::LabelMap;
use super::load::{read_jsonl_from, Builder, LoadOptions};
use crate::models::{site_packages, venv_dir};
use crate::{Error, Result};
use serde_yaml_ng::Value as Yaml;
use std::path::{Path, PathBuf};

/// The VADER ground-truth sets (Hutto & Gilbert, ICWSM 2014): sentences rated from −4
/// (extremely negative) to +4 (extremely positive) by about 20 people each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaderSet {
    /// 4,200 tweets.
    Tweets,
    /// 10,605 sentences of Rotten Tomatoes reviews.
    MovieReviews,
    /// 3,708 sentences of Amazon product reviews.
    AmazonReviews,
    /// 5,190 sentences of New York Times opinion pieces.
    NytEditorials,
}

impl VaderSet {
    pub fn file_name(self) -> &'static str {
        match self {
            VaderSet::Tweets => "tweets_GroundTruth.txt",
            VaderSet::MovieReviews => "movieReviewSnippets_GroundTruth.txt",
            VaderSet::AmazonReviews => "amazonReviewSnippets_GroundTruth.txt",
            VaderSet::NytEditorials => "nytEditorialSnippets_GroundTruth.txt",
        }
    }
}

/// Mean ratings within this distance of 0 are neutral. Raters answered on the integer
/// scale −4…+4, so a mean that rounds to 0 is the scale's own "neutral" point; a mean of
/// ±0.5 or beyond rounds to at least a mild opinion.
pub const VADER_NEUTRAL_BAND: f64 = 0.5;

/// The VADER classes, in id order.
pub fn vader_labels() -> LabelMap {
    LabelMap::new(["negative", "neutral", "positive"])
}

/// The class of a VADER mean rating: `score <= -0.5` negative, `score >= 0.5` positive,
/// neutral in between (see [`VADER_NEUTRAL_BAND`]).
pub fn vader_class(score: f64) -> &'static str {
    if score <= -VADER_NEUTRAL_BAND {
        "negative"
    } else if score >= VADER_NEUTRAL_BAND {
        "positive"
    } else {
        "neutral"
    }
}

/// Where scripts/setup.sh unpacks the VADER data.
pub fn vader_dir() -> Result<PathBuf> {
    let dir = venv_dir()
        .map(|v| v.join("share/tunebook/vader/hutto_ICWSM_2014"))
        .ok_or_else(|| Error::InvalidArgument("the project's Python environment (.venv) was not found; run scripts/setup.sh or set TUNEBOOK_VENV".into()))?;
    if !dir.is_dir() {
        return Err(Error::bad_file(&dir, "missing: run scripts/setup.sh to unpack the VADER data sets"));
    }
    Ok(dir)
}

/// A VADER set as 3-class sentiment data (negative/neutral/positive from the mean rating,
/// see [`vader_class`]).
///
/// The files are UTF-8, tab-separated `id, mean rating, text`, with CRLF line ends. Tweets
/// keep Twitter's HTML escapes, which are undone here (`&amp;` `&lt;` `&gt;` `&quot;`);
/// movie snippets use runs of spaces where dashes were (the whitespace step of
/// [`Dataset::clean`] collapses them) and contain two exact duplicates (removed and
/// reported by cleaning). Malformed lines are not dropped silently: they are listed in
/// [`Dataset::skipped`] and the cleaning report.
///
/// ```no_run
/// use tunebook::data::{vader, VaderSet};
/// let tweets = vader(VaderSet::Tweets)?;
/// assert_eq!(tweets.len(), 4200);
/// println!("{:?}", tweets.label_counts());
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn vader(set: VaderSet) -> Result<Dataset> {
    let path = vader_dir()?.join(set.file_name());
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| Error::bad_file(&path, format!("not valid UTF-8: {e}")))?;
    let (mut examples, mut origins, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let origin = format!("{}:{}", set.file_name(), index + 1);
        match vader_row(line) {
            Ok(example) => {
                examples.push(example);
                origins.push(origin);
            }
            Err(reason) => skipped.push(Skipped { origin, reason }),
        }
    }
    let name = format!("vader {}", set.file_name());
    Dataset::from_parts(name, DataKind::Classification, examples, origins, None, skipped).with_labels(vader_labels())
}

fn vader_row(line: &str) -> std::result::Result<Example, String> {
    let mut fields = line.splitn(3, '\t');
    let (Some(_id), Some(score), Some(text)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected 3 tab-separated fields (id, rating, text): {line:?}"));
    };
    let score: f64 = score.trim().parse().map_err(|_| format!("rating {score:?} is not a number"))?;
    if !score.is_finite() {
        return Err(format!("rating {score} is not finite"));
    }
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    Ok(Example::labeled(text, vader_class(score)))
}

/// The chatterbot English corpus folder in the project's Python environment.
pub fn chatterbot_dir() -> Result<PathBuf> {
    let dir = site_packages()
        .map(|s| s.join("chatterbot_corpus/data/english"))
        .ok_or_else(|| Error::InvalidArgument("the project's Python environment (.venv) was not found; run scripts/setup.sh or set TUNEBOOK_VENV".into()))?;
    if !dir.is_dir() {
        return Err(Error::bad_file(&dir, "missing: run scripts/setup.sh to install chatterbot-corpus"));
    }
    Ok(dir)
}

/// The chatterbot English corpus as prompt/reply pairs: in each conversation, every line
/// and the one after it form a pair (a 3-line conversation gives 2 pairs). Entries that
/// are not a list of at least two strings are listed in [`Dataset::skipped`] (the 2024
/// corpus has one: a trivia question written as a single string).
pub fn chatterbot() -> Result<Dataset> {
    let dir = chatterbot_dir()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    let (mut examples, mut origins, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for file in &files {
        chatterbot_file(file, &mut examples, &mut origins, &mut skipped)?;
    }
    Ok(Dataset::from_parts("chatterbot english".into(), DataKind::Chat, examples, origins, None, skipped))
}

fn chatterbot_file(path: &Path, examples: &mut Vec<Example>, origins: &mut Vec<String>, skipped: &mut Vec<Skipped>) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let doc: Yaml = serde_yaml_ng::from_str(&text).map_err(|e| Error::bad_file(path, format!("invalid YAML: {e}")))?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let Some(Yaml::Sequence(conversations)) = doc.get("conversations") else {
        return Err(Error::bad_file(path, "expected a `conversations` list"));
    };
    for (index, conversation) in conversations.iter().enumerate() {
        let origin = format!("{name} conversation {}", index + 1);
        let lines: Option<Vec<&str>> = match conversation {
            Yaml::Sequence(items) => items.iter().map(Yaml::as_str).collect(),
            _ => None,
        };
        match lines {
            Some(lines) if lines.len() >= 2 => {
                for (turn, pair) in lines.windows(2).enumerate() {
                    examples.push(Example::pair(pair[0], pair[1]));
                    origins.push(if lines.len() == 2 { origin.clone() } else { format!("{origin} turn {}", turn + 1) });
                }
            }
            _ => skipped.push(Skipped { origin, reason: format!("expected a list of at least two lines, found {}", yaml_preview(conversation)) }),
        }
    }
    Ok(())
}

fn yaml_preview(value: &Yaml) -> String {
    let text = serde_yaml_ng::to_string(value).unwrap_or_default().trim().replace('\n', " ");
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(79).collect::<String>())
    } else {
        text
    }
}

/// The 64 hand-written prompt/response pairs bundled with tunebook
/// (`notebooks/data/quickstart_qa.jsonl`, compiled in), for a first fine-tune.
pub fn quickstart() -> Result<Dataset> {
    const QUICKSTART: &str = include_str!("../../../notebooks/data/quickstart_qa.jsonl");
    let path = Path::new("quickstart_qa.jsonl");
    let mut builder = Builder::new(LoadOptions::default());
    read_jsonl_from(QUICKSTART.as_bytes(), path, &mut builder)?;
    builder.finish("quickstart_qa.jsonl")
}
