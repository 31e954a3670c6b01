//! Text generation: greedy or sampled decoding with a KV cache, batched prompts with left
//! padding, stop tokens and stop strings.
use crate::loss::causal_lm_loss_sum;
use crate::models::{Model, Task};
use crate::tokenizer::ChatMessage;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Decoding settings, named as in transformers' `GenerationConfig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// End-of-sequence tokens are suppressed until this many tokens are generated.
    pub min_new_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: i64,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = off).
    pub top_p: f64,
    /// > 1 discourages tokens already present (CTRL paper's penalty, as transformers).
    pub repetition_penalty: f64,
    /// Generation stops when the text contains one of these; the result ends before it.
    pub stop: Vec<String>,
    /// Seed for sampling; `None` leaves libtorch's generator as it is.
    pub seed: Option<u64>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig { max_new_tokens: 64, min_new_tokens: 0, temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, stop: Vec::new(), seed: None }
    }
}

impl GenerationConfig {
    pub fn max_new_tokens(mut self, n: usize) -> Self {
        self.max_new_tokens = n;
        self
    }
    pub fn min_new_tokens(mut self, n: usize) -> Self {
        self.min_new_tokens = n;
        self
    }
    pub fn temperature(mut self, t: f64) -> Self {
        self.temperature = t;
        self
    }
    pub fn top_k(mut self, k: i64) -> Self {
        self.top_k = k;
        self
    }
    pub fn top_p(mut self, p: f64) -> Self {
        self.top_p = p;
        self
    }
    pub fn repetition_penalty(mut self, r: f64) -> Self {
        self.repetition_penalty = r;
        self
    }
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !(self.temperature >= 0.0) {
            return bad(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty > 0.0) {
            return bad(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        Ok(())
    }
}

/// Mean negative log-likelihood of a text under the model.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// Mean NLL per predicted token (nats); the first token is not predicted.
    pub mean_nll: f64,
    pub perplexity: f64,
    pub tokens: usize,
}

impl Model {
    /// Continues `prompt` (plain text, no chat template).
    pub fn generate(&self, prompt: &str, config: &GenerationConfig) -> Result<String> {
        Ok(self.generate_batch(&[prompt], config)?.remove(0))
    }

    /// Answers a single user message through the model's chat template.
    ///
    /// ```no_run
    /// # let model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
    /// let answer = model.chat("What is the capital of France?", &Default::default())?;
    /// assert!(answer.contains("Paris"));
    /// # Ok::<(), tunebook::Error>(())
    /// ```
    pub fn chat(&self, user_message: &str, config: &GenerationConfig) -> Result<String> {
        self.chat_messages(&[ChatMessage::user(user_message)], config)
    }

    /// Continues a conversation through the chat template.
    pub fn chat_messages(&self, messages: &[ChatMessage], config: &GenerationConfig) -> Result<String> {
        let text = self.tokenizer()?.apply_chat_template(messages, true)?;
        let ids = self.tokenizer()?.encode(&text, false)?;
        Ok(self.generate_ids(&[ids], config)?.remove(0))
    }

    /// Continues several prompts at once (left-padded into one batch).
    pub fn generate_batch(&self, prompts: &[&str], config: &GenerationConfig) -> Result<Vec<String>> {
        let ids = self.tokenizer()?.encode_batch(prompts, true)?;
        self.generate_ids(&ids, config)
    }

    /// Generation from token ids; returns the decoded continuations.
    pub fn generate_ids(&self, prompts: &[Vec<u32>], config: &GenerationConfig) -> Result<Vec<String>> {
        let tok = self.tokenizer()?;
        self.generate_tokens(prompts, config)?
            .iter()
            .map(|ids| {
                let text = tok.decode(ids, true)?;
                Ok(match stop_position(&text, &config.stop) {
                    Some(cut) => text[..cut].to_string(),
                    None => text,
                })
            })
            .collect()
    }

    /// Generation from token ids; returns the new token ids of each prompt (without the
    /// end-of-sequence token).
    pub fn generate_tokens(&self, prompts: &[Vec<u32>], config: &GenerationConfig) -> Result<Vec<Vec<u32>>> {
        config.validate()?;
        if self.task != Task::CausalLm {
            return Err(Error::InvalidArgument(format!("generation needs a causal LM head; this model is loaded for {:?}", self.task)));
        }
        if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidArgument("generation needs at least one non-empty prompt".into()));
        }
        if let Some(seed) = config.seed {
            tch::manual_seed(seed as i64);
        }
        let tok = self.tokenizer()?;
        let eos: Vec<i64> = tok.eos_token_ids().iter().map(|&i| i as i64).collect();
        let _guard = tch::no_grad_guard();
        let (ids, mut mask) = left_pad(prompts, tok.pad_token_id() as i64, self.device());
        let batch = prompts.len();
        let mut cache = self.new_cache();
        let mut seen = ids.shallow_clone();
        let mut logits = self.forward_with(&ids, Some(&mask), None, Some(&mut cache)).select(1, -1);
        let mut generated: Vec<Vec<u32>> = vec![Vec::new(); batch];
        let mut done = vec![false; batch];
        for step_index in 0..config.max_new_tokens {
            let mut logits_f = logits.to_kind(Kind::Float);
            if step_index < config.min_new_tokens && !eos.is_empty() {
                let eos_ids = Tensor::from_slice(&eos).to_device(logits_f.device());
                logits_f = logits_f.index_fill(1, &eos_ids, f64::NEG_INFINITY);
            }
            let next = pick_next(&logits_f, &seen, config);
            let next_ids: Vec<i64> = Vec::<i64>::try_from(&next)?;
            for (i, &t) in next_ids.iter().enumerate() {
                if done[i] {
                    continue;
                }
                if eos.contains(&t) {
                    done[i] = true;
                    continue;
                }
                generated[i].push(t as u32);
                if !config.stop.is_empty() && stop_position(&tok.decode(&generated[i], true)?, &config.stop).is_some() {
                    done[i] = true;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            let step = next.view([batch as i64, 1]);
            seen = Tensor::cat(&[&seen, &step], 1);
            mask = Tensor::cat(&[&mask, &mask.ones_like().narrow(1, 0, 1)], 1);
            logits = self.forward_with(&step, Some(&mask), None, Some(&mut cache)).select(1, -1);
        }
        Ok(generated)
    }

    /// Mean per-token negative log-likelihood and perplexity of `text`, computed as
    /// transformers computes its loss (the first token is only context).
    pub fn score(&self, text: &str) -> Result<Score> {
        let ids = self.tokenizer()?.encode(text, true)?;
        if ids.len() < 2 {
            return Err(Error::InvalidArgument(format!("scoring needs at least 2 tokens; `{text}` has {}", ids.len())));
        }
        let _guard = tch::no_grad_guard();
        let input = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).unsqueeze(0).to_device(self.device());
        let logits = self.forward(&input, None);
        let (sum, count) = causal_lm_loss_sum(&logits, &input);
        let mean_nll = sum.double_value(&[]) / count.double_value(&[]);
        Ok(Score { mean_nll, perplexity: mean_nll.exp(), tokens: ids.len() })
    }
}

/// Left-pads prompts into `[batch, max_len]` ids and a 0/1 mask.
fn left_pad(prompts: &[Vec<u32>], pad: i64, device: tch::Device) -> (Tensor, Tensor) {
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * width);
    let mut mask = Vec::with_capacity(prompts.len() * width);
    for p in prompts {
        let padding = width - p.len();
        ids.extend(std::iter::repeat_n(pad, padding).chain(p.iter().map(|&t| t as i64)));
        mask.extend(std::iter::repeat_n(0i64, padding).chain(std::iter::repeat_n(1, p.len())));
    }
    let shape = [prompts.len() as i64, width as i64];
    (Tensor::from_slice(&ids).view(shape).to_device(device), Tensor::from_slice(&mask).view(shape).to_device(device))
}

/// Byte offset where the first stop string starts.
fn stop_position(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Chooses the next token of each row from last-position logits `[batch, vocab]`.
fn pick_next(logits: &Tensor, seen: &Tensor, config: &GenerationConfig) -> Tensor {
    let mut logits = logits.shallow_clone();
    if config.repetition_penalty != 1.0 {
        let prev = logits.gather(1, seen, false);
        let penalised = (&prev * config.repetition_penalty).where_self(&prev.lt(0.0), &(&prev / config.repetition_penalty));
        logits = logits.scatter(1, seen, &penalised);
    }
    if config.temperature == 0.0 {
        return logits.argmax(-1, false);
    }
    logits = logits / config.temperature;
    let vocab = logits.size()[1];
    if config.top_k > 0 && config.top_k < vocab {
        let (top, _) = logits.topk(config.top_k, -1, true, true);
        let threshold = top.narrow(1, config.top_k - 1, 1);
        logits = logits.masked_fill(&logits.lt_tensor(&threshold), f64::NEG_INFINITY);
    }
    if config.top_p < 1.0 {
        let (sorted, order) = logits.sort(-1, true);
        let cumulative = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        // Drop a token when the tokens before it already reach top_p; the first stays.
        let drop_sorted = (cumulative - sorted.softmax(-1, Kind::Float)).gt(config.top_p);
        let drop = drop_sorted.scatter(1, &order, &drop_sorted);
        logits = logits.masked_fill(&drop, f64::NEG_INFINITY);
    }
    logits.softmax(-1, Kind::Float).multinomial(1, false).squeeze_dim(1)
}
