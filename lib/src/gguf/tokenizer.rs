//! Rebuilding a Hugging Face tokenizer from `tokenizer.ggml.*` metadata.
//!
//! Two vocabulary kinds are supported, as in llama.cpp: `gpt2` (byte-level BPE, with a
//! pre-tokenizer chosen by `tokenizer.ggml.pre`) and `llama` (SentencePiece BPE with byte
//! fallback). The result matches what transformers builds from the same file, so token ids
//! agree with `AutoTokenizer.from_pretrained(dir, gguf_file=...)`.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::{GgufFile, MetadataValue};
use crate::error::{Error, Result};

/// llama.cpp's `llama_token_type`.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// SentencePiece's word-boundary marker.
const SPIECE_UNDERLINE: char = '\u{2581}';

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How text is cut into words before byte-level BPE, keyed by `tokenizer.ggml.pre`.
enum PreSplit {
    /// GPT-2's own regex inside the ByteLevel pre-tokenizer.
    Gpt2,
    /// Every digit on its own, then GPT-2's regex (SmolLM / StarCoder style).
    DigitsThenGpt2,
    /// A model-specific regex, then byte-level mapping without GPT-2's regex.
    Regex {
        pattern: &'static str,
        ignore_merges: bool,
    },
}

const PRE_TOKENIZERS: &[(&str, PreSplit)] = &[
    ("default", PreSplit::Gpt2),
    ("gpt-2", PreSplit::Gpt2),
    ("smollm", PreSplit::DigitsThenGpt2),
    // llama.cpp keeps whole-word vocabulary hits for Llama 3 (`ignore_merges`), as its tokenizer.json does.
    (
        "llama3",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: true,
        },
    ),
    (
        "llama-v3",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: true,
        },
    ),
    (
        "llama-bpe",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: true,
        },
    ),
    (
        "falcon3",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "pixtral",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "dbrx",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "smaug-bpe",
        PreSplit::Regex {
            pattern: LLAMA3_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "qwen2",
        PreSplit::Regex {
            pattern: QWEN2_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "deepseek-r1-qwen",
        PreSplit::Regex {
            pattern: QWEN2_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "tekken",
        PreSplit::Regex {
            pattern: TEKKEN_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "gpt-4o",
        PreSplit::Regex {
            pattern: GPT4O_SPLIT,
            ignore_merges: false,
        },
    ),
    (
        "llama4",
        PreSplit::Regex {
            pattern: GPT4O_SPLIT,
            ignore_merges: false,
        },
    ),
];

/// Reads `tokenizer.ggml.*` metadata that is common to both vocabulary kinds.
struct Vocabulary<'a> {
    file: &'a GgufFile,
    tokens: Vec<&'a str>,
    token_types: Vec<i64>,
}

impl<'a> Vocabulary<'a> {
    fn read(file: &'a GgufFile) -> Result<Self> {
        let tokens = string_array(file, "tokenizer.ggml.tokens")?;
        let token_types = match file.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(value) => {
                let types = array(file, "tokenizer.ggml.token_type", value)?
                    .iter()
                    .map(MetadataValue::as_i64)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        bad(
                            file,
                            "metadata `tokenizer.ggml.token_type` must hold integers",
                        )
                    })?;
                if types.len() != tokens.len() {
                    return Err(bad(
                        file,
                        format!(
                            "tokenizer.ggml.token_type has {} entries for {} tokens",
                            types.len(),
                            tokens.len()
                        ),
                    ));
                }
                types
            }
        };
        Ok(Vocabulary {
            file,
            tokens,
            token_types,
        })
    }

    fn of_type(&self, token_type: i64) -> impl Iterator<Item = &'a str> + '_ {
        self.tokens
            .iter()
            .zip(&self.token_types)
            .filter(move |(_, &t)| t == token_type)
            .map(|(&token, _)| token)
    }

    /// The text of the token `tokenizer.ggml.<which>_token_id` names, if any.
    fn special(&self, which: &str) -> Result<Option<(&'a str, u32)>> {
        let Some(id) = self.file.special_token(which) else {
            return Ok(None);
        };
        match self.tokens.get(id as usize) {
            Some(&token) => Ok(Some((token, id))),
            None => Err(bad(
                self.file,
                format!(
                    "{which} token id {id} is outside the vocabulary of {}",
                    self.tokens.len()
                ),
            )),
        }
    }

    fn flag(&self, key: &str, default: bool) -> bool {
        self.file
            .get(key)
            .and_then(MetadataValue::as_bool)
            .unwrap_or(default)
    }

    fn merges(&self) -> Result<Option<Vec<(String, String)>>> {
        if self.file.get("tokenizer.ggml.merges").is_none() {
            return Ok(None);
        }
        let merges = string_array(self.file, "tokenizer.ggml.merges")?;
        merges
            .iter()
            .enumerate()
            .map(|(i, merge)| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| {
                        bad(
                            self.file,
                            format!("merge #{i} {merge:?} is not two tokens separated by a space"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

pub(crate) fn build(file: &GgufFile) -> Result<Tokenizer> {
    let vocabulary = Vocabulary::read(file)?;
    let model = file.get_str("tokenizer.ggml.model")?;
    let (mut tokenizer, byte_level) = match model {
        "gpt2" => (byte_level_bpe(&vocabulary)?, true),
        "llama" => (sentencepiece_bpe(&vocabulary)?, false),
        other => {
            return Err(Error::Unsupported {
                what: "GGUF tokenizer model",
                name: format!(
                    "{other} (tokenizer.ggml.model in {})",
                    file.path().display()
                ),
                supported: "gpt2, llama".into(),
            })
        }
    };
    add_special_tokens(&mut tokenizer, &vocabulary, byte_level)?;
    let add_bos = vocabulary.flag("tokenizer.ggml.add_bos_token", model == "llama");
    let add_eos = vocabulary.flag("tokenizer.ggml.add_eos_token", false);
    if let Some(processor) = bos_eos_processor(&vocabulary, add_bos, add_eos)? {
        tokenizer.with_post_processor(Some(processor));
    }
    Ok(tokenizer)
}

fn byte_level_bpe(vocabulary: &Vocabulary<'_>) -> Result<Tokenizer> {
    let file = vocabulary.file;
    let pre = match file.get("tokenizer.ggml.pre") {
        None => "default",
        Some(_) => file.get_str("tokenizer.ggml.pre")?,
    };
    let split = PRE_TOKENIZERS
        .iter()
        .find(|(name, _)| *name == pre)
        .map(|(_, split)| split)
        .ok_or_else(|| Error::Unsupported {
            what: "GGUF pre-tokenizer",
            name: format!("{pre} (tokenizer.ggml.pre in {})", file.path().display()),
            supported: PRE_TOKENIZERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })?;

    // Byte-level vocabularies spell every byte as a printable character; a token written in
    // plain UTF-8 instead (some converters do this) is respelled so the BPE model can find it.
    let alphabet = byte_alphabet();
    let vocab: Vocab = vocabulary
        .tokens
        .iter()
        .enumerate()
        .map(|(id, &token)| (respell_bytes(token, &alphabet), id as u32))
        .collect();
    let merges = vocabulary.merges()?.unwrap_or_default();
    let ignore_merges = matches!(
        split,
        PreSplit::Regex {
            ignore_merges: true,
            ..
        }
    );
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| tokenizer_error(file, e))?;

    let pre_tokenizer = pre_tokenizer_of(split).map_err(|e| tokenizer_error(file, e))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// The pre-tokenizer llama.cpp's name `split` stands for, as tokenizers builds it.
fn pre_tokenizer_of(split: &PreSplit) -> std::result::Result<PreTokenizerWrapper, tokenizers::Error> {
    Ok(match split {
        PreSplit::Gpt2 => ByteLevel::new(false, true, true).into(),
        PreSplit::DigitsThenGpt2 => PreTokenizerSequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
        PreSplit::Regex { pattern, .. } => PreTokenizerSequence::new(vec![
            Split::new(SplitPattern::Regex((*pattern).to_owned()), SplitDelimiterBehavior::Isolated, false)?.into(),
            ByteLevel::new(false, true, false).into(),
        ])
        .into(),
    })
}

/// Text that tells pre-tokenizers apart: contractions, digit runs, whitespace runs and
/// newlines, punctuation, accents and scripts without spaces (as llama.cpp's converter
/// probes them).
const PRE_TOKENIZER_PROBE: &str = "Hello World! I'm 12345 you've  got 3.14 ...\n\n\t tabs\r\n  \u{1F600} caf\u{e9} \u{4F60}\u{597D}\u{4E16}\u{754C} \u{0928}\u{092E}\u{0938}\u{094D}\u{0924}\u{0947}  'quoted' \"double\" HTML<br/>   x=1;y=22;z=333; DON'T I'LL";

/// llama.cpp's `tokenizer.ggml.*` metadata for a byte-level BPE tokenizer (GPT-2, Llama 3,
/// Qwen, SmolLM style): tokens by id with their types, merges, and the pre-tokenizer named
/// by which of llama.cpp's splits cuts a probe text into the same words as this tokenizer's.
pub(crate) fn byte_level_bpe_metadata(tokenizer: &Tokenizer) -> Result<Vec<(String, MetadataValue)>> {
    let unsupported = |why: &str| Error::Unsupported {
        what: "tokenizer for GGUF export",
        name: why.to_string(),
        supported: "byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM style), or a model loaded from a GGUF".into(),
    };
    let model = serde_json::to_value(tokenizer.get_model()).map_err(|e| Error::Tokenizer(format!("serialising the tokenizer model: {e}")))?;
    if model.get("type").and_then(|t| t.as_str()) != Some("BPE") || model.get("byte_fallback").and_then(|b| b.as_bool()) == Some(true) {
        return Err(unsupported("a SentencePiece-style or non-BPE tokenizer"));
    }
    let ignore_merges = model.get("ignore_merges").and_then(|b| b.as_bool()).unwrap_or(false);
    let words = |pre: &PreTokenizerWrapper| -> Option<Vec<String>> {
        let mut text = tokenizers::PreTokenizedString::from(PRE_TOKENIZER_PROBE);
        tokenizers::PreTokenizer::pre_tokenize(pre, &mut text).ok()?;
        Some(text.get_splits(tokenizers::OffsetReferential::Original, tokenizers::OffsetType::Byte).into_iter().map(|(s, _, _)| s.to_string()).collect())
    };
    let ours = tokenizer.get_pre_tokenizer().and_then(words).ok_or_else(|| unsupported("a tokenizer without a pre-tokenizer"))?;
    let pre = PRE_TOKENIZERS
        .iter()
        .find(|(_, split)| {
            let same_merges = matches!(split, PreSplit::Regex { ignore_merges: true, .. }) == ignore_merges;
            same_merges && pre_tokenizer_of(split).ok().as_ref().and_then(words).as_ref() == Some(&ours)
        })
        .map(|(name, _)| *name)
        .ok_or_else(|| unsupported("a pre-tokenizer that splits text like none of llama.cpp's"))?;

    let vocab = tokenizer.get_vocab(true);
    let size = vocab.values().max().map_or(0, |&m| m as usize + 1);
    let mut tokens: Vec<String> = (0..size).map(|i| format!("[PAD{i}]")).collect();
    // llama.cpp's token types: 1 normal, 3 control, 4 user-defined, 5 unused.
    let mut types = vec![5i32; size];
    for (token, &id) in &vocab {
        tokens[id as usize] = token.clone();
        types[id as usize] = 1;
    }
    for (id, added) in tokenizer.get_added_tokens_decoder() {
        types[id as usize] = if added.special { TOKEN_TYPE_CONTROL as i32 } else { TOKEN_TYPE_USER_DEFINED as i32 };
    }
    let merges: Vec<MetadataValue> = match model.get("merges") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .map(|m| match m {
                serde_json::Value::String(s) => Ok(MetadataValue::String(s.clone())),
                serde_json::Value::Array(pair) if pair.len() == 2 => {
                    Ok(MetadataValue::String(format!("{} {}", pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default())))
                }
                other => Err(Error::Tokenizer(format!("unexpected BPE merge {other}"))),
            })
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    let count = |special: bool| tokenizer.encode("a", special).map(|e| e.get_ids().len()).unwrap_or(0);
    let adds_bos = count(true) > count(false);
    Ok(vec![
        ("tokenizer.ggml.model".into(), "gpt2".into()),
        ("tokenizer.ggml.pre".into(), pre.into()),
        ("tokenizer.ggml.tokens".into(), MetadataValue::Array(tokens.into_iter().map(MetadataValue::String).collect())),
        ("tokenizer.ggml.token_type".into(), MetadataValue::Array(types.into_iter().map(MetadataValue::I32).collect())),
        ("tokenizer.ggml.merges".into(), MetadataValue::Array(merges)),
        ("tokenizer.ggml.add_bos_token".into(), MetadataValue::Bool(adds_bos)),
    ])
}

fn sentencepiece_bpe(vocabulary: &Vocabulary<'_>) -> Result<Tokenizer> {
    let file = vocabulary.file;
    let vocab: HashMap<&str, u32> = vocabulary
        .tokens
        .iter()
        .enumerate()
        .map(|(id, &token)| (token, id as u32))
        .collect();
    let merges = match vocabulary.merges()? {
        Some(merges) => merges,
        None => merges_from_scores(vocabulary, &vocab)?,
    };
    let mut builder = BPE::builder()
        .vocab_and_merges(
            vocab
                .iter()
                .map(|(&t, &id)| (t.to_owned(), id))
                .collect::<Vocab>(),
            merges,
        )
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some((unk, _)) = vocabulary.special("unknown")? {
        builder = builder.unk_token(unk.to_owned());
    }
    let bpe = builder.build().map_err(|e| tokenizer_error(file, e))?;

    let add_space_prefix = vocabulary.flag("tokenizer.ggml.add_space_prefix", true);
    let prepend = if add_space_prefix {
        PrependScheme::First
    } else {
        PrependScheme::Never
    };
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPIECE_UNDERLINE.to_string(), " ")
            .map_err(|e| tokenizer_error(file, e))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_pre_tokenizer(Some(Metaspace::new(SPIECE_UNDERLINE, prepend, false)))
        .with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// SentencePiece files without merges: every split of a token into two vocabulary tokens is a
/// merge, ranked by the merged token's score (best first), then by the pieces' lengths, as
/// transformers' `generate_merges` ranks them.
fn merges_from_scores(
    vocabulary: &Vocabulary<'_>,
    vocab: &HashMap<&str, u32>,
) -> Result<Vec<(String, String)>> {
    let file = vocabulary.file;
    let key = "tokenizer.ggml.scores";
    let value = file.get(key).ok_or_else(|| {
        bad(
            file,
            "a `llama` tokenizer needs tokenizer.ggml.merges or tokenizer.ggml.scores",
        )
    })?;
    let scores = array(file, key, value)?
        .iter()
        .map(MetadataValue::as_f64)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(file, format!("metadata `{key}` must hold numbers")))?;
    if scores.len() != vocabulary.tokens.len() {
        return Err(bad(
            file,
            format!(
                "{key} has {} entries for {} tokens",
                scores.len(),
                vocabulary.tokens.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut candidates: Vec<(&str, &str, f64)> = Vec::new();
    for (&token, &score) in vocabulary.tokens.iter().zip(&scores) {
        if !seen.insert(token) {
            continue;
        }
        let start = candidates.len();
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                candidates.push((left, right, score));
            }
        }
        candidates[start..].sort_by_key(|(left, right, _)| (vocab[left], vocab[right]));
    }
    let rank = |(left, right, score): &(&str, &str, f64)| {
        (*score, left.chars().count(), right.chars().count())
    };
    // Stable and descending, like Python's sorted(..., reverse=True).
    candidates.sort_by(|a, b| {
        let (a, b) = (rank(a), rank(b));
        b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2))
    });
    Ok(candidates
        .into_iter()
        .map(|(l, r, _)| (l.to_owned(), r.to_owned()))
        .collect())
}

/// Control tokens (and the file's bos/eos/unk/pad) become special added tokens, so markers such
/// as `<|im_start|>` encode to one id and are skipped when decoding with `skip_special_tokens`.
/// User-defined tokens are matched whole but are not special.
fn add_special_tokens(
    tokenizer: &mut Tokenizer,
    vocabulary: &Vocabulary<'_>,
    byte_level: bool,
) -> Result<()> {
    // A control token outside the byte alphabet in a byte-level vocabulary is a converter
    // mislabel; transformers skips those too.
    let spelled = |token: &str| !byte_level || token.chars().all(in_byte_alphabet);
    let mut special: Vec<&str> = vocabulary
        .of_type(TOKEN_TYPE_CONTROL)
        .filter(|t| spelled(t))
        .collect();
    for which in ["bos", "eos", "unknown", "pad"] {
        if let Some((token, _)) = vocabulary.special(which)? {
            if !special.contains(&token) {
                special.push(token);
            }
        }
    }
    let special: Vec<AddedToken> = special
        .into_iter()
        .map(|t| AddedToken::from(t, true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&special);
    let user_defined: Vec<AddedToken> = vocabulary
        .of_type(TOKEN_TYPE_USER_DEFINED)
        .map(|t| AddedToken::from(t, false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user_defined);
    Ok(())
}

fn bos_eos_processor(
    vocabulary: &Vocabulary<'_>,
    add_bos: bool,
    add_eos: bool,
) -> Result<Option<TemplateProcessing>> {
    let bos = if add_bos {
        vocabulary.special("bos")?
    } else {
        None
    };
    let eos = if add_eos {
        vocabulary.special("eos")?
    } else {
        None
    };
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let mut specials = Vec::new();
    let (mut single, mut pair) = (Vec::new(), Vec::new());
    if let Some((token, id)) = bos {
        specials.push(
            SpecialToken::new("bos".into(), vec![id], vec![token.into()])
                .map_err(|e| tokenizer_error(vocabulary.file, e))?,
        );
        single.push("bos".to_string());
        pair.push("bos".to_string());
    }
    single.push("$A".into());
    pair.push("$A".into());
    if eos.is_some() {
        single.push("eos".into());
        pair.push("eos".into());
    }
    if bos.is_some() {
        pair.push("bos:1".into());
    }
    pair.push("$B:1".into());
    if let Some((token, id)) = eos {
        specials.push(
            SpecialToken::new("eos".into(), vec![id], vec![token.into()])
                .map_err(|e| tokenizer_error(vocabulary.file, e))?,
        );
        pair.push("eos:1".into());
    }
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| tokenizer_error(vocabulary.file, e))?
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| tokenizer_error(vocabulary.file, e))
}

/// GPT-2's printable stand-ins for the 256 byte values (`bytes_to_unicode`).
fn byte_alphabet() -> [char; 256] {
    let mut alphabet = ['\0'; 256];
    let mut next_unprintable = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next_unprintable += 1;
            next_unprintable - 1
        };
        alphabet[byte as usize] = char::from_u32(code).unwrap_or('\0');
    }
    alphabet
}

/// Whether `c` is one of [`byte_alphabet`]'s characters: printable Latin-1 bytes stand for
/// themselves, the 68 others are shifted to U+0100..=U+0143.
fn in_byte_alphabet(c: char) -> bool {
    matches!(u32::from(c), 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF | 0x100..=0x143)
}

fn respell_bytes(token: &str, alphabet: &[char; 256]) -> String {
    if token.chars().all(in_byte_alphabet) {
        token.to_owned()
    } else {
        token.bytes().map(|b| alphabet[b as usize]).collect()
    }
}

fn string_array<'a>(file: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let value = file.get(key).ok_or_else(|| {
        bad(
            file,
            format!("metadata `{key}` is missing; the file has no tokenizer"),
        )
    })?;
    array(file, key, value)?
        .iter()
        .map(MetadataValue::as_str)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(file, format!("metadata `{key}` must hold strings")))
}

fn array<'a>(file: &GgufFile, key: &str, value: &'a MetadataValue) -> Result<&'a [MetadataValue]> {
    value
        .as_array()
        .ok_or_else(|| bad(file, super::reader::wrong_type(key, value, "an array")))
}

fn bad(file: &GgufFile, message: impl Into<String>) -> Error {
    Error::bad_file(file.path(), message)
}

fn tokenizer_error(file: &GgufFile, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!(
        "building the tokenizer of {}: {e}",
        file.path().display()
    ))
}
