//! BERT encoders, including MiniLM (sentence-transformers checkpoints without the
//! `bert.` prefix load too).
use super::decoder::init_linear;
use super::family::{parse, Classes, Family, ParameterNames};
use super::heads::{Head, Pooling, Task};
use super::{check_positive, Forward};
use crate::nn::{attention_bias, join, Checkpointing, Embedding, KvCache, LayerNorm, Linear, Module, Weights};
use crate::{Error, Result};
use serde::Deserialize;
use tch::{Kind, Tensor};

pub static FAMILY: Family = Family {
    name: "BERT",
    model_types: &["bert"],
    classes: Classes { causal_lm: "BertLMHeadModel", classification: "BertForSequenceClassification", base: "BertModel" },
    lora_targets: &["query", "value"],
    names: ParameterNames {
        token_embedding: "bert.embeddings.word_embeddings.weight",
        attention_output: "attention.output.dense",
        ffn_output: "output.dense",
        conv1d_layers: &[],
    },
    base_task: Task::Embedding,
    build,
    gguf: None,
};

fn build(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    w.add_prefix_if_missing("bert.", "embeddings.word_embeddings.weight");
    let c: Config = parse(config, "BERT")?;
    let backbone = Bert::load(w, c)?;
    let head = bert_head(w, task, backbone.config.hidden_size)?;
    Ok((Box::new(backbone), head))
}

fn bert_head(w: &mut Weights, task: &Task, hidden: i64) -> Result<Head> {
    match task {
        Task::SequenceClassification { num_labels } => {
            let pooler = match w.take_opt("bert.pooler.dense.weight", &[hidden, hidden])? {
                Some(weight) => Linear::new(weight, Some(w.take("bert.pooler.dense.bias", &[hidden])?)),
                None => init_linear(hidden, hidden, true, w.device, w.kind),
            };
            let classifier = match w.take_opt("classifier.weight", &[*num_labels, hidden])? {
                Some(weight) => Linear::new(weight, Some(w.take("classifier.bias", &[*num_labels])?)),
                None => init_linear(*num_labels, hidden, true, w.device, w.kind),
            };
            Ok(Head::SequenceClassification { pooler: Some(pooler), classifier, pooling: Pooling::Cls, classifier_name: "classifier" })
        }
        Task::Embedding => Ok(Head::Embedding),
        Task::CausalLm => Err(Error::InvalidArgument("BERT is an encoder: use Task::SequenceClassification or Task::Embedding".into())),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> i64 {
    512
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl Config {
    fn validate(&self) -> Result<()> {
        check_positive("hidden_size", self.hidden_size)?;
        check_positive("num_attention_heads", self.num_attention_heads)?;
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(crate::Error::config(
                "num_attention_heads",
                format!("{} must divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        match self.hidden_act.as_str() {
            "gelu" | "gelu_new" | "relu" => Ok(()),
            other => Err(crate::Error::Unsupported { what: "hidden_act", name: other.into(), supported: "gelu, gelu_new, relu".into() }),
        }
    }
}

fn dense(w: &mut Weights, p: &str, out: i64, inp: i64) -> Result<Linear> {
    Ok(Linear::new(w.take(&format!("{p}.weight"), &[out, inp])?, Some(w.take(&format!("{p}.bias"), &[out])?)))
}

fn layer_norm(w: &mut Weights, p: &str, c: &Config) -> Result<LayerNorm> {
    let h = c.hidden_size;
    Ok(LayerNorm { weight: w.take(&format!("{p}.weight"), &[h])?, bias: w.take(&format!("{p}.bias"), &[h])?, eps: c.layer_norm_eps })
}

pub struct Layer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
    num_heads: i64,
    act: String,
}

impl Layer {
    fn load(w: &mut Weights, p: &str, c: &Config) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Ok(Layer {
            query: dense(w, &format!("{p}.attention.self.query"), h, h)?,
            key: dense(w, &format!("{p}.attention.self.key"), h, h)?,
            value: dense(w, &format!("{p}.attention.self.value"), h, h)?,
            attention_output: dense(w, &format!("{p}.attention.output.dense"), h, h)?,
            attention_norm: layer_norm(w, &format!("{p}.attention.output.LayerNorm"), c)?,
            intermediate: dense(w, &format!("{p}.intermediate.dense"), i, h)?,
            output: dense(w, &format!("{p}.output.dense"), h, i)?,
            output_norm: layer_norm(w, &format!("{p}.output.LayerNorm"), c)?,
            num_heads: c.num_attention_heads,
            act: c.hidden_act.clone(),
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let (b, t, h) = (x.size()[0], x.size()[1], x.size()[2]);
        let heads = |y: Tensor| y.view([b, t, self.num_heads, h / self.num_heads]).transpose(1, 2);
        let (q, k, v) = (heads(self.query.forward(x)), heads(self.key.forward(x)), heads(self.value.forward(x)));
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, false, None, false);
        let y = self.attention_output.forward(&y.transpose(1, 2).reshape([b, t, h]));
        let x = self.attention_norm.forward(&(y + x));
        let inner = self.intermediate.forward(&x);
        let inner = match self.act.as_str() {
            "relu" => inner.relu(),
            "gelu_new" => inner.gelu("tanh"),
            _ => inner.gelu("none"),
        };
        self.output_norm.forward(&(self.output.forward(&inner) + x))
    }
}

impl Module for Layer {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, l) in self.linears() {
            l.visit_params(&format!("{p}.{name}"), f);
        }
        self.attention_norm.visit_params(&format!("{p}.attention.output.LayerNorm"), f);
        self.output_norm.visit_params(&format!("{p}.output.LayerNorm"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        f(&format!("{p}.attention.self.query"), &mut self.query);
        f(&format!("{p}.attention.self.key"), &mut self.key);
        f(&format!("{p}.attention.self.value"), &mut self.value);
        f(&format!("{p}.attention.output.dense"), &mut self.attention_output);
        f(&format!("{p}.intermediate.dense"), &mut self.intermediate);
        f(&format!("{p}.output.dense"), &mut self.output);
    }
}

impl Layer {
    fn linears(&self) -> [(&'static str, &Linear); 6] {
        [
            ("attention.self.query", &self.query),
            ("attention.self.key", &self.key),
            ("attention.self.value", &self.value),
            ("attention.output.dense", &self.attention_output),
            ("intermediate.dense", &self.intermediate),
            ("output.dense", &self.output),
        ]
    }
}

pub struct Bert {
    pub config: Config,
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<Layer>,
    checkpointing: Checkpointing,
}

impl Bert {
    pub fn load(w: &mut Weights, config: Config) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let emb = |w: &mut Weights, name: &str, rows: i64| -> Result<Embedding> {
            Ok(Embedding { weight: w.take(&format!("bert.embeddings.{name}.weight"), &[rows, c.hidden_size])? })
        };
        Ok(Bert {
            word_embeddings: emb(w, "word_embeddings", c.vocab_size)?,
            position_embeddings: emb(w, "position_embeddings", c.max_position_embeddings)?,
            token_type_embeddings: emb(w, "token_type_embeddings", c.type_vocab_size)?,
            embeddings_norm: layer_norm(w, "bert.embeddings.LayerNorm", c)?,
            layers: (0..c.num_hidden_layers)
                .map(|i| Layer::load(w, &format!("bert.encoder.layer.{i}"), c))
                .collect::<Result<Vec<_>>>()?,
            config,
            checkpointing: Checkpointing::default(),
        })
    }
}

impl Forward for Bert {
    fn embed(&self, input_ids: &Tensor) -> Tensor {
        self.word_embeddings.forward(input_ids)
    }
    fn forward_embeds(&self, embeds: &Tensor, attention_mask: Option<&Tensor>, _segments: Option<&Tensor>, _cache: Option<&mut KvCache>) -> Tensor {
        let (b, t, device) = (embeds.size()[0], embeds.size()[1], embeds.device());
        let positions = Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0);
        let token_types = Tensor::zeros([b, t], (Kind::Int64, device));
        let x = embeds + self.position_embeddings.forward(&positions) + self.token_type_embeddings.forward(&token_types);
        let mut x = self.embeddings_norm.forward(&x);
        let mask = attention_bias(t, 0, attention_mask, None, false, None, device);
        for layer in &self.layers {
            let mask = mask.as_ref().map(Tensor::shallow_clone);
            x = self.checkpointing.run(layer, &x, move |layer, x| layer.forward(x, mask.as_ref()));
        }
        x
    }
    fn num_layers(&self) -> usize {
        self.layers.len()
    }
    fn hidden_size(&self) -> i64 {
        self.config.hidden_size
    }
    fn checkpointing_mut(&mut self) -> &mut Checkpointing {
        &mut self.checkpointing
    }
}

impl Module for Bert {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let e = join(p, "bert.embeddings");
        self.word_embeddings.visit_params(&format!("{e}.word_embeddings"), f);
        self.position_embeddings.visit_params(&format!("{e}.position_embeddings"), f);
        self.token_type_embeddings.visit_params(&format!("{e}.token_type_embeddings"), f);
        self.embeddings_norm.visit_params(&format!("{e}.LayerNorm"), f);
        self.layers.visit_params(&join(p, "bert.encoder.layer"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.layers.visit_linears_mut(&join(p, "bert.encoder.layer"), f);
    }
}
