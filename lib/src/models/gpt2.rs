//! GPT-2: learned positions, LayerNorm, GELU (tanh), fused qkv projection.
//!
//! Hugging Face stores GPT-2's projections as `Conv1D` (`[in, out]`); they are transposed
//! into ordinary `[out, in]` linears on load. [`CONV1D_LAYERS`] names them so exporters
//! transpose back (PEFT calls this `fan_in_fan_out`).
use super::decoder::decoder_head;
use super::family::{parse, Classes, Family, ParameterNames};
use super::heads::{Head, Task};
use super::{check_positive, position_ids, Forward};
use crate::nn::{attention_bias, join, Checkpointing, Embedding, KvCache, LayerCache, LayerNorm, Linear, Module, Weights};
use crate::Result;
use serde::Deserialize;
use tch::Tensor;

pub static FAMILY: Family = Family {
    name: "GPT-2",
    model_types: &["gpt2"],
    classes: Classes { causal_lm: "GPT2LMHeadModel", classification: "GPT2ForSequenceClassification", base: "GPT2Model" },
    lora_targets: &["c_attn"],
    names: ParameterNames { token_embedding: "transformer.wte.weight", attention_output: "attn.c_proj", ffn_output: "mlp.c_proj", conv1d_layers: &CONV1D_LAYERS },
    base_task: Task::CausalLm,
    build,
    gguf: None,
};

fn build(config: &serde_json::Value, w: &mut Weights, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
    w.add_prefix_if_missing("transformer.", "wte.weight");
    let c: Config = parse(config, "GPT-2")?;
    let backbone = Gpt2::load(w, c)?;
    let head = decoder_head(w, task, &backbone.wte.weight, backbone.config.n_embd, true, None)?;
    Ok((Box::new(backbone), head))
}

/// Layer names whose checkpoint weights are `[in, out]`.
pub const CONV1D_LAYERS: [&str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: i64,
    pub n_positions: i64,
    pub n_embd: i64,
    pub n_layer: i64,
    pub n_head: i64,
    #[serde(default)]
    pub n_inner: Option<i64>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_act")]
    pub activation_function: String,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}

impl Config {
    fn inner(&self) -> i64 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
    fn validate(&self) -> Result<()> {
        check_positive("n_embd", self.n_embd)?;
        check_positive("n_head", self.n_head)?;
        if self.n_embd % self.n_head != 0 {
            return Err(crate::Error::config("n_head", format!("{} must divide n_embd {}", self.n_head, self.n_embd)));
        }
        match self.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu" => Ok(()),
            other => Err(crate::Error::Unsupported {
                what: "activation_function",
                name: other.into(),
                supported: "gelu_new, gelu_pytorch_tanh, gelu".into(),
            }),
        }
    }
}

fn conv1d(w: &mut Weights, p: &str, inp: i64, out: i64) -> Result<Linear> {
    let weight = w.take(&format!("{p}.weight"), &[inp, out])?.t_().contiguous();
    Ok(Linear::new(weight, Some(w.take(&format!("{p}.bias"), &[out])?)))
}

fn layer_norm(w: &mut Weights, p: &str, c: &Config) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: w.take(&format!("{p}.weight"), &[c.n_embd])?,
        bias: w.take(&format!("{p}.bias"), &[c.n_embd])?,
        eps: c.layer_norm_epsilon,
    })
}

pub struct Block {
    pub ln_1: LayerNorm,
    pub c_attn: Linear,
    pub attn_c_proj: Linear,
    pub ln_2: LayerNorm,
    pub c_fc: Linear,
    pub mlp_c_proj: Linear,
    n_head: i64,
    tanh_gelu: bool,
}

impl Block {
    fn load(w: &mut Weights, p: &str, c: &Config) -> Result<Self> {
        let n = c.n_embd;
        Ok(Block {
            ln_1: layer_norm(w, &format!("{p}.ln_1"), c)?,
            c_attn: conv1d(w, &format!("{p}.attn.c_attn"), n, 3 * n)?,
            attn_c_proj: conv1d(w, &format!("{p}.attn.c_proj"), n, n)?,
            ln_2: layer_norm(w, &format!("{p}.ln_2"), c)?,
            c_fc: conv1d(w, &format!("{p}.mlp.c_fc"), n, c.inner())?,
            mlp_c_proj: conv1d(w, &format!("{p}.mlp.c_proj"), c.inner(), n)?,
            n_head: c.n_head,
            tanh_gelu: c.activation_function != "gelu",
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, cache: Option<&mut LayerCache>) -> Tensor {
        let (b, t, n) = (x.size()[0], x.size()[1], x.size()[2]);
        let hd = n / self.n_head;
        let qkv = self.c_attn.forward(&self.ln_1.forward(x)).split(n, -1);
        let heads = |y: &Tensor| y.view([b, t, self.n_head, hd]).transpose(1, 2);
        let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]));
        let (k, v) = match cache {
            Some(c) => c.append(k, v),
            None => (k, v),
        };
        let is_causal = mask.is_none() && t > 1 && k.size()[2] == t;
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, is_causal, None, false);
        let h = x + self.attn_c_proj.forward(&y.transpose(1, 2).reshape([b, t, n]));
        let act = self.c_fc.forward(&self.ln_2.forward(&h)).gelu(if self.tanh_gelu { "tanh" } else { "none" });
        &h + self.mlp_c_proj.forward(&act)
    }
}

impl Module for Block {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.ln_1.visit_params(&format!("{p}.ln_1"), f);
        self.c_attn.visit_params(&format!("{p}.attn.c_attn"), f);
        self.attn_c_proj.visit_params(&format!("{p}.attn.c_proj"), f);
        self.ln_2.visit_params(&format!("{p}.ln_2"), f);
        self.c_fc.visit_params(&format!("{p}.mlp.c_fc"), f);
        self.mlp_c_proj.visit_params(&format!("{p}.mlp.c_proj"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        f(&format!("{p}.attn.c_attn"), &mut self.c_attn);
        f(&format!("{p}.attn.c_proj"), &mut self.attn_c_proj);
        f(&format!("{p}.mlp.c_fc"), &mut self.c_fc);
        f(&format!("{p}.mlp.c_proj"), &mut self.mlp_c_proj);
    }
}

pub struct Gpt2 {
    pub config: Config,
    pub wte: Embedding,
    pub wpe: Embedding,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    checkpointing: Checkpointing,
}

impl Gpt2 {
    pub fn load(w: &mut Weights, config: Config) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let wte = Embedding { weight: w.take("transformer.wte.weight", &[c.vocab_size, c.n_embd])? };
        let wpe = Embedding { weight: w.take("transformer.wpe.weight", &[c.n_positions, c.n_embd])? };
        let h = (0..c.n_layer).map(|i| Block::load(w, &format!("transformer.h.{i}"), c)).collect::<Result<Vec<_>>>()?;
        let ln_f = layer_norm(w, "transformer.ln_f", c)?;
        Ok(Gpt2 { config, wte, wpe, h, ln_f, checkpointing: Checkpointing::default() })
    }
}

impl Forward for Gpt2 {
    fn embed(&self, input_ids: &Tensor) -> Tensor {
        self.wte.forward(input_ids)
    }
    fn forward_embeds(&self, embeds: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, mut cache: Option<&mut KvCache>) -> Tensor {
        let (t, device) = (embeds.size()[1], embeds.device());
        let past = cache.as_ref().map_or(0, |c| c.seq_len());
        let positions = position_ids(t, past, attention_mask, segments, device);
        let mask = attention_bias(t, past, attention_mask, segments, true, None, device);
        let mut x = embeds + self.wpe.forward(&positions);
        for (i, block) in self.h.iter().enumerate() {
            x = match cache.as_deref_mut() {
                Some(c) => block.forward(&x, mask.as_ref(), Some(&mut c.layers[i])),
                None => {
                    let mask = mask.as_ref().map(Tensor::shallow_clone);
                    self.checkpointing.run(block, &x, move |block, x| block.forward(x, mask.as_ref(), None))
                }
            };
        }
        self.ln_f.forward(&x)
    }
    fn num_layers(&self) -> usize {
        self.h.len()
    }
    fn hidden_size(&self) -> i64 {
        self.config.n_embd
    }
    fn checkpointing_mut(&mut self) -> &mut Checkpointing {
        &mut self.checkpointing
    }
}

impl Module for Gpt2 {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.wte.visit_params(&join(p, "transformer.wte"), f);
        self.wpe.visit_params(&join(p, "transformer.wpe"), f);
        self.h.visit_params(&join(p, "transformer.h"), f);
        self.ln_f.visit_params(&join(p, "transformer.ln_f"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.h.visit_linears_mut(&join(p, "transformer.h"), f);
    }
}
