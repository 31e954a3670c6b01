//! Task heads on top of a backbone's hidden states.
use crate::nn::{Linear, Module};
use tch::{Kind, Tensor};

/// What the model is for; picks the head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Next-token prediction (`*ForCausalLM`).
    CausalLm,
    /// One label per text (`*ForSequenceClassification`).
    SequenceClassification { num_labels: i64 },
    /// Mean-pooled sentence embeddings (sentence-transformers style).
    Embedding,
}

impl Task {
    /// A stable lowercase identifier: `causal_lm`, `sequence_classification`, `embedding`.
    pub fn id(&self) -> &'static str {
        match self {
            Task::CausalLm => "causal_lm",
            Task::SequenceClassification { .. } => "sequence_classification",
            Task::Embedding => "embedding",
        }
    }
}

impl std::fmt::Display for Task {
    /// What a person reads: `causal LM`, `classification (3 labels)`, `embedding`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::CausalLm => write!(f, "causal LM"),
            Task::SequenceClassification { num_labels } => write!(f, "classification ({num_labels} labels)"),
            Task::Embedding => write!(f, "embedding"),
        }
    }
}

/// How a classification head reads a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Decoders: the last real token (Llama/GPT-2 `score`).
    LastToken,
    /// Encoders: `[CLS]` through BERT's tanh pooler.
    Cls,
}

pub enum Head {
    CausalLm {
        lm_head: Linear,
        /// The head shares the token embedding matrix (not listed twice as a parameter).
        tied: bool,
        /// `tanh(logits / c) · c` (Gemma's `final_logit_softcapping`).
        logit_softcap: Option<f64>,
    },
    SequenceClassification {
        /// BERT's `pooler.dense` (tanh); decoders have none.
        pooler: Option<Linear>,
        /// `score` (decoders) or `classifier` (BERT).
        classifier: Linear,
        pooling: Pooling,
        classifier_name: &'static str,
    },
    Embedding,
}

impl Head {
    pub fn forward(&self, hidden: &Tensor, attention_mask: Option<&Tensor>) -> Tensor {
        match self {
            Head::CausalLm { lm_head, logit_softcap: None, .. } => lm_head.forward(hidden),
            Head::CausalLm { lm_head, logit_softcap: Some(cap), .. } => (lm_head.forward(hidden) / *cap).tanh() * *cap,
            Head::SequenceClassification { pooler, classifier, pooling, .. } => {
                let pooled = match pooling {
                    Pooling::Cls => hidden.select(1, 0),
                    Pooling::LastToken => last_token(hidden, attention_mask),
                };
                let pooled = match pooler {
                    Some(p) => p.forward(&pooled).tanh(),
                    None => pooled,
                };
                classifier.forward(&pooled)
            }
            Head::Embedding => mean_pool(hidden, attention_mask),
        }
    }
}

fn last_token(hidden: &Tensor, attention_mask: Option<&Tensor>) -> Tensor {
    let (b, t) = (hidden.size()[0], hidden.size()[1]);
    let index = match attention_mask {
        // Last position holding a real token; right or left padding alike.
        Some(mask) => {
            let positions = Tensor::arange(t, (Kind::Int64, hidden.device())).unsqueeze(0);
            (positions * mask.to_kind(Kind::Int64)).argmax(1, false)
        }
        None => Tensor::full([b], t - 1, (Kind::Int64, hidden.device())),
    };
    let batch = Tensor::arange(b, (Kind::Int64, hidden.device()));
    hidden.index(&[Some(batch), Some(index)])
}

/// Mean of the hidden states of real tokens.
pub fn mean_pool(hidden: &Tensor, attention_mask: Option<&Tensor>) -> Tensor {
    match attention_mask {
        Some(mask) => {
            let m = mask.to_kind(hidden.kind()).unsqueeze(-1);
            (hidden * &m).sum_dim_intlist(1, false, hidden.kind()) / m.sum_dim_intlist(1, false, hidden.kind()).clamp_min(1e-9)
        }
        None => hidden.mean_dim(1, false, hidden.kind()),
    }
}

impl Module for Head {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match self {
            Head::CausalLm { lm_head, tied: false, .. } => lm_head.visit_params(&crate::nn::join(prefix, "lm_head"), f),
            Head::CausalLm { tied: true, .. } | Head::Embedding => {}
            Head::SequenceClassification { pooler, classifier, classifier_name, .. } => {
                if let Some(p) = pooler {
                    p.visit_params(&crate::nn::join(prefix, "bert.pooler.dense"), f);
                }
                classifier.visit_params(&crate::nn::join(prefix, classifier_name), f);
            }
        }
    }
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        match self {
            Head::CausalLm { lm_head, tied: false, .. } => f(&crate::nn::join(prefix, "lm_head"), lm_head),
            Head::CausalLm { tied: true, .. } | Head::Embedding => {}
            Head::SequenceClassification { pooler, classifier, classifier_name, .. } => {
                if let Some(p) = pooler {
                    f(&crate::nn::join(prefix, "bert.pooler.dense"), p);
                }
                f(&crate::nn::join(prefix, classifier_name), classifier);
            }
        }
    }
}
