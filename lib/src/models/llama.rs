//! The Llama family: Llama 2/3, SmolLM2, TinyLlama, Mistral, Qwen2 (q/k/v bias).
//! Grouped-query attention, RMSNorm, SwiGLU, rotary positions; tied or untied embeddings.
use super::{check_positive, Forward};
use crate::nn::{attention_bias, Checkpointing, Embedding, KvCache, LayerCache, Linear, Module, RmsNorm, Rope, RopeScaling, Weights};
use crate::Result;
use serde::Deserialize;
use tch::Tensor;

/// Read straight from the model's config.json.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    #[serde(default)]
    pub head_dim: Option<i64>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers 5 spelling of theta + scaling.
    #[serde(default)]
    pub rope_parameters: Option<RopeScaling>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's switch for biases on q/k/v/o.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// Qwen2 has biases on q/k/v only.
    #[serde(default)]
    pub qkv_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> i64 {
    2048
}
fn default_act() -> String {
    "silu".into()
}

impl Config {
    pub fn num_kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// Rope theta and scaling, whichever config spelling holds them.
    pub fn rope(&self) -> (f64, Option<&RopeScaling>) {
        let theta = self.rope_parameters.as_ref().and_then(|p| p.rope_theta).unwrap_or(self.rope_theta);
        (theta, self.rope_parameters.as_ref().or(self.rope_scaling.as_ref()))
    }

    pub fn validate(&self) -> Result<()> {
        check_positive("hidden_size", self.hidden_size)?;
        check_positive("num_attention_heads", self.num_attention_heads)?;
        check_positive("num_hidden_layers", self.num_hidden_layers)?;
        check_positive("vocab_size", self.vocab_size)?;
        if self.num_attention_heads % self.num_kv_heads() != 0 {
            return Err(crate::Error::config(
                "num_key_value_heads",
                format!("{} must divide num_attention_heads {}", self.num_kv_heads(), self.num_attention_heads),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(crate::Error::Unsupported { what: "hidden_act", name: self.hidden_act.clone(), supported: "silu".into() });
        }
        Ok(())
    }
}

pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn load(w: &mut Weights, p: &str, c: &Config) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim());
        let (q, kv) = (c.num_attention_heads * hd, c.num_kv_heads() * hd);
        let qkv_bias = c.attention_bias || c.qkv_bias;
        Ok(Attention {
            q_proj: load_linear(w, &format!("{p}.q_proj"), q, h, qkv_bias)?,
            k_proj: load_linear(w, &format!("{p}.k_proj"), kv, h, qkv_bias)?,
            v_proj: load_linear(w, &format!("{p}.v_proj"), kv, h, qkv_bias)?,
            o_proj: load_linear(w, &format!("{p}.o_proj"), h, q, c.attention_bias)?,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_kv_heads(),
            head_dim: hd,
        })
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: Option<&Tensor>, cache: Option<&mut LayerCache>) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let heads = |y: Tensor, n: i64| y.view([b, t, n, self.head_dim]).transpose(1, 2);
        let q = Rope::apply(&heads(self.q_proj.forward(x), self.num_heads), cos, sin);
        let k = Rope::apply(&heads(self.k_proj.forward(x), self.num_kv_heads), cos, sin);
        let v = heads(self.v_proj.forward(x), self.num_kv_heads);
        let (k, v) = match cache {
            Some(c) => c.append(k, v),
            None => (k, v),
        };
        let is_causal = mask.is_none() && t > 1 && k.size()[2] == t;
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, is_causal, None, self.num_kv_heads != self.num_heads);
        self.o_proj.forward(&y.transpose(1, 2).reshape([b, t, self.num_heads * self.head_dim]))
    }
}

impl Module for Attention {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (n, l) in self.linears() {
            l.visit_params(&format!("{p}.{n}"), f);
        }
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        f(&format!("{p}.q_proj"), &mut self.q_proj);
        f(&format!("{p}.k_proj"), &mut self.k_proj);
        f(&format!("{p}.v_proj"), &mut self.v_proj);
        f(&format!("{p}.o_proj"), &mut self.o_proj);
    }
}

impl Attention {
    fn linears(&self) -> [(&'static str, &Linear); 4] {
        [("q_proj", &self.q_proj), ("k_proj", &self.k_proj), ("v_proj", &self.v_proj), ("o_proj", &self.o_proj)]
    }
}

pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    fn load(w: &mut Weights, p: &str, c: &Config) -> Result<Self> {
        let (h, i, bias) = (c.hidden_size, c.intermediate_size, c.mlp_bias);
        Ok(Mlp {
            gate_proj: load_linear(w, &format!("{p}.gate_proj"), i, h, bias)?,
            up_proj: load_linear(w, &format!("{p}.up_proj"), i, h, bias)?,
            down_proj: load_linear(w, &format!("{p}.down_proj"), h, i, bias)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj.forward(&crate::nn::swiglu(&self.gate_proj.forward(x), &self.up_proj.forward(x)))
    }
}

impl Module for Mlp {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.gate_proj.visit_params(&format!("{p}.gate_proj"), f);
        self.up_proj.visit_params(&format!("{p}.up_proj"), f);
        self.down_proj.visit_params(&format!("{p}.down_proj"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        f(&format!("{p}.gate_proj"), &mut self.gate_proj);
        f(&format!("{p}.up_proj"), &mut self.up_proj);
        f(&format!("{p}.down_proj"), &mut self.down_proj);
    }
}

pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    fn load(w: &mut Weights, p: &str, c: &Config) -> Result<Self> {
        Ok(DecoderLayer {
            input_layernorm: load_rms(w, &format!("{p}.input_layernorm"), c)?,
            self_attn: Attention::load(w, &format!("{p}.self_attn"), c)?,
            post_attention_layernorm: load_rms(w, &format!("{p}.post_attention_layernorm"), c)?,
            mlp: Mlp::load(w, &format!("{p}.mlp"), c)?,
        })
    }
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: Option<&Tensor>, cache: Option<&mut LayerCache>) -> Tensor {
        let h = x + self.self_attn.forward(&self.input_layernorm.forward(x), cos, sin, mask, cache);
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h))
    }
}

impl Module for DecoderLayer {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.input_layernorm.visit_params(&format!("{p}.input_layernorm"), f);
        self.self_attn.visit_params(&format!("{p}.self_attn"), f);
        self.post_attention_layernorm.visit_params(&format!("{p}.post_attention_layernorm"), f);
        self.mlp.visit_params(&format!("{p}.mlp"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.self_attn.visit_linears_mut(&format!("{p}.self_attn"), f);
        self.mlp.visit_linears_mut(&format!("{p}.mlp"), f);
    }
}

/// The decoder stack (`model.*` in a checkpoint), without a head.
pub struct Llama {
    pub config: Config,
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    rope: Rope,
    checkpointing: Checkpointing,
}

impl Llama {
    pub fn load(w: &mut Weights, config: Config) -> Result<Self> {
        config.validate()?;
        let embed = w.take("model.embed_tokens.weight", &[config.vocab_size, config.hidden_size])?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::load(w, &format!("model.layers.{i}"), &config))
            .collect::<Result<Vec<_>>>()?;
        let norm = load_rms(w, "model.norm", &config)?;
        let (theta, scaling) = config.rope();
        let rope = Rope::new(config.head_dim(), theta, scaling, w.device)?;
        Ok(Llama { embed_tokens: Embedding { weight: embed }, layers, norm, rope, config, checkpointing: Checkpointing::default() })
    }
}

impl Forward for Llama {
    fn embed(&self, input_ids: &Tensor) -> Tensor {
        self.embed_tokens.forward(input_ids)
    }

    fn forward_embeds(&self, embeds: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, mut cache: Option<&mut KvCache>) -> Tensor {
        let (t, device) = (embeds.size()[1], embeds.device());
        let past = cache.as_ref().map_or(0, |c| c.seq_len());
        let positions = super::position_ids(t, past, attention_mask, segments, device);
        let (cos, sin) = self.rope.cos_sin(&positions, embeds.kind());
        let mask = attention_bias(t, past, attention_mask, segments, true, device);
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = match cache.as_deref_mut() {
                Some(c) => layer.forward(&h, &cos, &sin, mask.as_ref(), Some(&mut c.layers[i])),
                None => {
                    let (cos, sin, mask) = (cos.shallow_clone(), sin.shallow_clone(), mask.as_ref().map(Tensor::shallow_clone));
                    self.checkpointing.run(layer, &h, move |layer, h| layer.forward(h, &cos, &sin, mask.as_ref(), None))
                }
            };
        }
        self.norm.forward(&h)
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

impl Module for Llama {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.embed_tokens.visit_params(&crate::nn::join(p, "model.embed_tokens"), f);
        self.layers.visit_params(&crate::nn::join(p, "model.layers"), f);
        self.norm.visit_params(&crate::nn::join(p, "model.norm"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.layers.visit_linears_mut(&crate::nn::join(p, "model.layers"), f);
    }
}

fn load_linear(w: &mut Weights, p: &str, out: i64, inp: i64, bias: bool) -> Result<Linear> {
    let weight = w.take(&format!("{p}.weight"), &[out, inp])?;
    let bias = if bias { Some(w.take(&format!("{p}.bias"), &[out])?) } else { None };
    Ok(Linear::new(weight, bias))
}

fn load_rms(w: &mut Weights, p: &str, c: &Config) -> Result<RmsNorm> {
    Ok(RmsNorm { weight: w.take(&format!("{p}.weight"), &[c.hidden_size])?, eps: c.rms_norm_eps })
}
