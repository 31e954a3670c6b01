//! The model's tokenizer, its special tokens and its chat template.
//!
//! Wraps a `tokenizers::Tokenizer` (from tokenizer.json, or built from GGUF metadata)
//! and renders the model's Jinja chat template the way transformers does.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos: Option<u32>,
    eos: Vec<u32>,
    pad: Option<u32>,
}

fn tok_err(context: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |e| Error::Tokenizer(format!("{context}: {e}"))
}

impl Tokenizer {
    /// Wraps a ready tokenizer. Fixed padding/truncation baked into some tokenizer.json files
    /// (all-MiniLM-L6-v2 pads everything to 128) is switched off: batching pads dynamically.
    pub fn new(mut inner: tokenizers::Tokenizer, chat_template: Option<String>) -> Self {
        inner.with_padding(None);
        let _ = inner.with_truncation(None);
        Tokenizer { inner, chat_template, bos: None, eos: Vec::new(), pad: None }
    }

    /// Reads a Hugging Face folder: tokenizer.json plus, when present, tokenizer_config.json
    /// (chat template, bos/eos/pad tokens), chat_template.jinja and generation_config.json
    /// (extra eos ids).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let file = dir.join("tokenizer.json");
        if !file.exists() {
            return Err(Error::bad_file(&file, "missing: a Hugging Face model folder needs tokenizer.json"));
        }
        let inner = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| Error::bad_file(&file, format!("not a valid tokenizer.json: {e}")))?;
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let mut template = config.as_ref().and_then(|c| chat_template_of(c.get("chat_template")?));
        // transformers saves the template beside the config since 4.43 (and only there in 5).
        let jinja = dir.join("chat_template.jinja");
        if template.is_none() && jinja.exists() {
            template = Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?);
        }
        let mut tok = Tokenizer::new(inner, template);
        if let Some(c) = &config {
            tok.bos = c.get("bos_token").and_then(token_content).and_then(|t| tok.token_to_id(&t));
            tok.pad = c.get("pad_token").and_then(token_content).and_then(|t| tok.token_to_id(&t));
            if let Some(eos) = c.get("eos_token").and_then(token_content).and_then(|t| tok.token_to_id(&t)) {
                tok.eos.push(eos);
            }
        }
        if let Some(gen) = read_json(&dir.join("generation_config.json"))? {
            let ids = match gen.get("eos_token_id") {
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64()).collect(),
                Some(v) => v.as_u64().into_iter().collect(),
                None => Vec::new(),
            };
            for id in ids {
                tok.add_eos(id as u32);
            }
        }
        Ok(tok)
    }

    /// Loads a bare tokenizer.json.
    pub fn from_file(file: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(file)
            .map_err(|e| Error::bad_file(file, format!("not a valid tokenizer.json: {e}")))?;
        Ok(Tokenizer::new(inner, None))
    }

    pub fn with_special_tokens(mut self, bos: Option<u32>, eos: Option<u32>, pad: Option<u32>) -> Self {
        self.bos = bos.or(self.bos);
        if let Some(e) = eos {
            self.add_eos(e);
        }
        self.pad = pad.or(self.pad);
        self
    }

    fn add_eos(&mut self, id: u32) {
        if !self.eos.contains(&id) {
            self.eos.push(id);
        }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` (chat template, special tokens) and
    /// `generation_config.json` (end-of-sequence ids) into `dir`, as Hugging Face lays them
    /// out, so [`Tokenizer::from_hf_dir`] and Python `AutoTokenizer` read them back.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let file = dir.join("tokenizer.json");
        self.inner.save(&file, false).map_err(|e| Error::bad_file(&file, format!("writing the tokenizer: {e}")))?;
        let token = |id: Option<u32>| id.and_then(|id| self.id_to_token(id));
        let mut config = serde_json::json!({ "tokenizer_class": "PreTrainedTokenizerFast" });
        for (key, value) in [("bos_token", token(self.bos)), ("eos_token", token(self.eos.first().copied())), ("pad_token", token(self.pad))] {
            if let Some(value) = value {
                config[key] = value.into();
            }
        }
        if let Some(template) = &self.chat_template {
            config["chat_template"] = template.clone().into();
        }
        write_json(&dir.join("tokenizer_config.json"), &config)?;
        write_json(&dir.join("generation_config.json"), &serde_json::json!({ "eos_token_id": self.eos, "bos_token_id": self.bos }))
    }

    /// Token ids of `text`. `add_special_tokens` adds what the tokenizer's post-processor
    /// adds (BERT's [CLS]/[SEP], Llama's <s>).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(tok_err("encode"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes many texts in parallel.
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        let encs = self.inner.encode_batch(texts.to_vec(), add_special_tokens).map_err(tok_err("encode_batch"))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(tok_err("decode"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    /// Ids that end generation (a model may have several, e.g. `<|im_end|>` and `<|endoftext|>`).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The pad token, when the tokenizer names one.
    pub fn pad_token_id_if_set(&self) -> Option<u32> {
        self.pad
    }

    /// The padding id: the pad token, else the first eos token, else 0.
    pub fn pad_token_id(&self) -> u32 {
        self.pad.or(self.eos.first().copied()).unwrap_or(0)
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Gives the tokenizer a chat template: [`PLAIN_CHAT_TEMPLATE`] for `"plain"`, a Jinja
    /// template given inline, or the path of a `.jinja` file (see [`resolve_chat_template`]).
    /// Base models come without one; chat-format data and `generate_chat` need one.
    ///
    /// ```
    /// # use tunebook::tokenizer::{ChatMessage, Tokenizer};
    /// # let inner = tokenizers::Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default());
    /// let mut tok = Tokenizer::new(inner, None);
    /// assert!(tok.apply_chat_template(&[ChatMessage::user("Hi!")], true).is_err());
    /// tok.set_chat_template("plain")?;
    /// let text = tok.apply_chat_template(&[ChatMessage::user("Hi!")], true)?;
    /// assert_eq!(text, "### User:\nHi!\n\n### Assistant:\n");
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn set_chat_template(&mut self, template: &str) -> Result<()> {
        let template = resolve_chat_template(template)?;
        template_environment().template_from_str(&template).map_err(|e| Error::Tokenizer(format!("chat template does not parse: {e}")))?;
        self.chat_template = Some(template);
        Ok(())
    }

    /// Renders `messages` with the model's chat template, as transformers'
    /// `apply_chat_template(..., tokenize=False)` does.
    ///
    /// ```no_run
    /// # use tunebook::tokenizer::ChatMessage;
    /// # let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// let tok = model.tokenizer()?;
    /// let text = tok.apply_chat_template(&[ChatMessage::user("Hi!")], true)?;
    /// assert!(text.ends_with("<|im_start|>assistant\n"));
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| Error::Tokenizer(NO_CHAT_TEMPLATE.into()))?;
        let env = template_environment();
        let tmpl = env.template_from_str(template).map_err(|e| Error::Tokenizer(format!("chat template does not parse: {e}")))?;
        let token = |id: Option<u32>| id.and_then(|i| self.id_to_token(i)).unwrap_or_default();
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => token(self.bos),
            eos_token => token(self.eos.first().copied()),
        })
        .map_err(|e| Error::Tokenizer(format!("chat template failed: {e}")))
    }
}

/// What a model without a chat template is told, with the ways out.
const NO_CHAT_TEMPLATE: &str = "this model has no chat template (no `chat_template` in tokenizer_config.json, \
no `tokenizer.chat_template` in the GGUF): it is probably a base model. Give it one: tunebook's plain \
`### User:` / `### Assistant:` format with `tokenizer.set_chat_template(\"plain\")` (recipe: `chat_template = \"plain\"` \
in [model]; command line: `--chat-template plain`), or a Jinja template or .jinja file of your own the same way; \
or train on prompt/completion or raw text without chat formatting";

/// A plain prompt/response format for models without a chat template (base models): a
/// system message as a first paragraph, `### User:` and `### Assistant:` headers, and the
/// end-of-sequence token after each reply so that generation learns where to stop.
pub const PLAIN_CHAT_TEMPLATE: &str = "{% for message in messages %}\
{% if message['role'] == 'system' %}{{ message['content'] }}\n\n\
{% elif message['role'] == 'user' %}### User:\n{{ message['content'] }}\n\n\
{% else %}### Assistant:\n{{ message['content'] }}{{ eos_token }}\n\n{% endif %}\
{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}";

/// The template text `spec` names: [`PLAIN_CHAT_TEMPLATE`] for `"plain"`, `spec` itself when
/// it is Jinja (holds `{{` or `{%`), else the contents of the file at that path.
pub fn resolve_chat_template(spec: &str) -> Result<String> {
    if spec.trim() == "plain" {
        return Ok(PLAIN_CHAT_TEMPLATE.to_string());
    }
    if spec.contains("{{") || spec.contains("{%") {
        return Ok(spec.to_string());
    }
    let path = Path::new(spec.trim());
    std::fs::read_to_string(path).map_err(|e| {
        Error::bad_file(path, format!("cannot read it as a chat template ({e}); expected \"plain\", a Jinja template or a .jinja file"))
    })
}

/// Jinja as transformers renders chat templates: trimmed blocks, Python string methods,
/// `raise_exception`.
fn template_environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::bad_file(path, format!("invalid JSON: {e}")))
}

/// A special token in tokenizer_config.json is either a string or `{"content": ...}`.
fn token_content(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::to_string).or_else(|| v.get("content")?.as_str().map(str::to_string))
}

/// `chat_template` is a string, or a list of `{name, template}` of which "default" is used.
fn chat_template_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
        _ => None,
    }
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
