//! The decoder-only transformer that Llama, Mistral, Qwen2/3, Phi-3 and Gemma 3 are variants
//! of, built from a [`DecoderSpec`] that each family's file derives from its own config.json.
//!
//! The families differ in a handful of switches — fused projections, q/k norms, sandwich
//! norms, the activation, embedding scaling, sliding-window layers, a second rotary base —
//! so the layers live here once and a family file says which switches it sets (as
//! torchtune's component builders do), rather than every family repeating the layers.
use super::family::ParameterNames;
use super::heads::{Head, Pooling, Task};
use super::{check_positive, Forward};
use crate::nn::{attention_bias, join, swiglu, Checkpointing, Embedding, KvCache, LayerCache, Linear, Module, RmsNorm, Rope, RopeScaling, Weights};
use crate::{Error, Result};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

/// Where methods find their places in every decoder of this file.
pub const DECODER_NAMES: ParameterNames = ParameterNames {
    token_embedding: "model.embed_tokens.weight",
    attention_output: "self_attn.o_proj",
    ffn_output: "mlp.down_proj",
    conv1d_layers: &[],
};

/// GGUF block tensors (llama.cpp's names) of the decoder's parts, for a family's
/// [`GgufLayout`](super::family::GgufLayout) to combine.
pub mod gguf_names {
    /// Llama's two norms: before attention, before the MLP.
    pub const PRE_NORMS: &[(&str, &str)] = &[("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")];
    /// Gemma's four: before and after attention, before and after the MLP.
    pub const SANDWICH_NORMS: &[(&str, &str)] = &[
        ("attn_norm", "input_layernorm"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_norm", "pre_feedforward_layernorm"),
        ("post_ffw_norm", "post_feedforward_layernorm"),
    ];
    pub const PROJECTIONS: &[(&str, &str)] = &[
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    /// Phi-3's fused linears (llama.cpp keeps gate and up together as `ffn_up`).
    pub const FUSED_PROJECTIONS: &[(&str, &str)] =
        &[("attn_qkv", "self_attn.qkv_proj"), ("attn_output", "self_attn.o_proj"), ("ffn_up", "mlp.gate_up_proj"), ("ffn_down", "mlp.down_proj")];
    pub const QK_NORMS: &[(&str, &str)] = &[("attn_q_norm", "self_attn.q_norm"), ("attn_k_norm", "self_attn.k_norm")];
}

/// The config.json fields every decoder family shares, under transformers' names. A family's
/// own `Config` flattens this and adds what only it has.
#[derive(Debug, Clone, Deserialize)]
pub struct DecoderConfig {
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
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers 5 spelling of theta + scaling (Gemma 3: one entry per attention kind).
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    /// Biases on q/k/v/o (Llama's and Gemma's switch).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default, alias = "hidden_activation")]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub sliding_window: Option<i64>,
    /// transformers 5: `"full_attention"` or `"sliding_attention"` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub max_window_layers: Option<i64>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> i64 {
    2048
}

impl DecoderConfig {
    pub fn num_kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Rope theta and scaling of the global (full-attention) layers, whichever config
    /// spelling holds them; `default_theta` when the config names none.
    pub fn rope(&self, default_theta: f64) -> Result<RopeSpec> {
        self.rope_for("full_attention", default_theta)
    }

    /// The rope of one attention kind: transformers 5 nests `rope_parameters` per kind
    /// (Gemma 3), others give one set for every layer.
    pub fn rope_for(&self, kind: &str, default_theta: f64) -> Result<RopeSpec> {
        let params = match &self.rope_parameters {
            Some(p) if p.get(kind).is_some() => p.get(kind).cloned(),
            Some(p) if p.get("rope_type").is_some() || p.get("rope_theta").is_some() => Some(p.clone()),
            _ => None,
        };
        let params: Option<RopeScaling> = params
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::config("rope_parameters", format!("not a rope description: {e}")))?;
        let theta = params.as_ref().and_then(|p| p.rope_theta).or(self.rope_theta).unwrap_or(default_theta);
        let scaling = params.or_else(|| self.rope_scaling.clone()).filter(|s| s.rope_type != "default");
        let rotary_dim = match self.partial_rotary_factor {
            Some(f) => (self.head_dim() as f64 * f) as i64,
            None => self.head_dim(),
        };
        Ok(RopeSpec { theta, scaling, rotary_dim })
    }

    /// Whether layer `i` attends within a sliding window, from `layer_types` when the config
    /// lists them, else `all_slide` (Mistral, Phi-3: every layer when `sliding_window` is set)
    /// or Qwen's `use_sliding_window` from `max_window_layers` on.
    pub fn layer_windows(&self, all_slide: bool) -> Result<Vec<Option<i64>>> {
        let n = self.num_hidden_layers.max(0) as usize;
        let window = self.sliding_window.filter(|&w| w > 0);
        let sliding: Vec<bool> = match &self.layer_types {
            Some(types) => {
                if types.len() != n {
                    return Err(Error::config("layer_types", format!("lists {} layers, the model has {n}", types.len())));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "full_attention" => Ok(false),
                        "sliding_attention" => Ok(true),
                        other => Err(Error::Unsupported { what: "layer_types entry", name: other.into(), supported: "full_attention, sliding_attention".into() }),
                    })
                    .collect::<Result<_>>()?
            }
            None if self.use_sliding_window == Some(true) => {
                let from = self.max_window_layers.unwrap_or(0).max(0) as usize;
                (0..n).map(|i| i >= from).collect()
            }
            None if self.use_sliding_window == Some(false) => vec![false; n],
            None => vec![all_slide && window.is_some(); n],
        };
        sliding
            .into_iter()
            .map(|s| match (s, window) {
                (false, _) => Ok(None),
                (true, Some(w)) => Ok(Some(w)),
                (true, None) => Err(Error::config("sliding_window", "sliding-attention layers need a positive sliding_window")),
            })
            .collect()
    }

    /// The activation named by `hidden_act`/`hidden_activation`, `default` when absent.
    pub fn activation(&self, default: Activation) -> Result<Activation> {
        match self.hidden_act.as_deref() {
            None => Ok(default),
            Some("silu") | Some("swish") => Ok(Activation::Silu),
            Some("gelu_pytorch_tanh") | Some("gelu_tanh") => Ok(Activation::GeluTanh),
            Some(other) => Err(Error::Unsupported { what: "hidden_act", name: other.into(), supported: "silu, gelu_pytorch_tanh".into() }),
        }
    }
}

/// Rotary embedding of one attention kind.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    pub theta: f64,
    pub scaling: Option<RopeScaling>,
    /// Leading dimensions of each head that rotate (Phi's `partial_rotary_factor`).
    pub rotary_dim: i64,
}

/// The gate activation of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) · up` (Llama, Qwen, Mistral, Phi-3).
    Silu,
    /// `gelu_tanh(gate) · up` (Gemma).
    GeluTanh,
}

/// How one family's decoder is put together; each family file derives it from its config.
#[derive(Debug, Clone)]
pub struct DecoderSpec {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub norm_eps: f64,
    /// Gemma stores RMSNorm weights as offsets from 1 (`x̂ · (1 + w)`).
    pub norm_unit_offset: bool,
    /// Phi-3's `qkv_proj` and `gate_up_proj` instead of separate linears.
    pub fused_projections: bool,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// RMSNorm over each head of q and k before the rotation (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Gemma's extra norms on the attention and MLP outputs, and its pre-MLP norm.
    pub sandwich_norms: bool,
    pub activation: Activation,
    /// Embeddings multiplied by this (Gemma: `sqrt(hidden_size)`).
    pub embed_scale: Option<f64>,
    /// Softmax scale of the attention scores; `None` is `1/sqrt(head_dim)`.
    pub attention_scale: Option<f64>,
    /// Sliding window of each layer (`None`: full attention).
    pub layer_windows: Vec<Option<i64>>,
    pub rope: RopeSpec,
    /// A second rotary base for sliding-window layers (Gemma 3).
    pub local_rope: Option<RopeSpec>,
    pub tie_word_embeddings: bool,
    /// `tanh(logits / c) · c` on the LM head's output (Gemma 2/3 configs may set it).
    pub final_logit_softcapping: Option<f64>,
}

impl DecoderSpec {
    /// The switches of a plain Llama on `c`; families change what differs.
    pub fn llama_like(c: &DecoderConfig, default_theta: f64) -> Result<Self> {
        Ok(DecoderSpec {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_kv_heads(),
            head_dim: c.head_dim(),
            norm_eps: c.rms_norm_eps,
            norm_unit_offset: false,
            fused_projections: false,
            qkv_bias: c.attention_bias,
            o_bias: c.attention_bias,
            mlp_bias: c.mlp_bias,
            qk_norm: false,
            sandwich_norms: false,
            activation: c.activation(Activation::Silu)?,
            embed_scale: None,
            attention_scale: None,
            layer_windows: c.layer_windows(false)?,
            rope: c.rope(default_theta)?,
            local_rope: None,
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
            final_logit_softcapping: None,
        })
    }

    fn validate(&self) -> Result<()> {
        check_positive("hidden_size", self.hidden_size)?;
        check_positive("num_attention_heads", self.num_heads)?;
        check_positive("num_key_value_heads", self.num_kv_heads)?;
        check_positive("num_hidden_layers", self.num_layers)?;
        check_positive("vocab_size", self.vocab_size)?;
        check_positive("head_dim", self.head_dim)?;
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(Error::config(
                "num_key_value_heads",
                format!("{} must divide num_attention_heads {}", self.num_kv_heads, self.num_heads),
            ));
        }
        if self.layer_windows.len() != self.num_layers as usize {
            return Err(Error::config("layer_types", format!("{} entries for {} layers", self.layer_windows.len(), self.num_layers)));
        }
        let rotary = self.rope.rotary_dim;
        if rotary <= 0 || rotary > self.head_dim || rotary % 2 != 0 {
            return Err(Error::config("partial_rotary_factor", format!("gives {rotary} rotary dimensions of a head of {}", self.head_dim)));
        }
        Ok(())
    }
}

/// RMSNorm in Llama's form (`x̂ · w`, cast back to the input's dtype before the weight) or
/// Gemma's (`x̂ · (1 + w)` in fp32, then cast).
pub struct Norm {
    pub inner: RmsNorm,
    pub unit_offset: bool,
}

impl Norm {
    fn load(w: &mut Weights, name: &str, size: i64, spec: &DecoderSpec) -> Result<Self> {
        Ok(Norm { inner: RmsNorm { weight: w.take(&format!("{name}.weight"), &[size])?, eps: spec.norm_eps }, unit_offset: spec.norm_unit_offset })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if !self.unit_offset {
            return self.inner.forward(x);
        }
        let xf = x.to_kind(Kind::Float);
        let rms = (xf.square().mean_dim(-1, true, Kind::Float) + self.inner.eps).rsqrt();
        (xf * rms * (self.inner.weight.to_kind(Kind::Float) + 1.0)).to_kind(x.kind())
    }
}

impl Module for Norm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.inner.visit_params(prefix, f)
    }
    fn visit_linears_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut Linear)) {}
}

/// q, k and v as three linears or one fused `qkv_proj` (rows q, then k, then v).
pub enum QkvProjection {
    Separate { q_proj: Linear, k_proj: Linear, v_proj: Linear },
    Fused { qkv_proj: Linear },
}

pub struct Attention {
    pub qkv: QkvProjection,
    pub o_proj: Linear,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
    scale: Option<f64>,
}

impl Attention {
    fn load(w: &mut Weights, p: &str, s: &DecoderSpec) -> Result<Self> {
        let (h, hd) = (s.hidden_size, s.head_dim);
        let (q, kv) = (s.num_heads * hd, s.num_kv_heads * hd);
        let qkv = if s.fused_projections {
            QkvProjection::Fused { qkv_proj: load_linear(w, &format!("{p}.qkv_proj"), q + 2 * kv, h, s.qkv_bias)? }
        } else {
            QkvProjection::Separate {
                q_proj: load_linear(w, &format!("{p}.q_proj"), q, h, s.qkv_bias)?,
                k_proj: load_linear(w, &format!("{p}.k_proj"), kv, h, s.qkv_bias)?,
                v_proj: load_linear(w, &format!("{p}.v_proj"), kv, h, s.qkv_bias)?,
            }
        };
        let qk_norm = |name: &str, w: &mut Weights| -> Result<Option<Norm>> {
            if s.qk_norm {
                Ok(Some(Norm::load(w, &format!("{p}.{name}"), hd, s)?))
            } else {
                Ok(None)
            }
        };
        Ok(Attention {
            qkv,
            o_proj: load_linear(w, &format!("{p}.o_proj"), h, q, s.o_bias)?,
            q_norm: qk_norm("q_norm", w)?,
            k_norm: qk_norm("k_norm", w)?,
            num_heads: s.num_heads,
            num_kv_heads: s.num_kv_heads,
            head_dim: hd,
            scale: s.attention_scale,
        })
    }

    fn project(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        match &self.qkv {
            QkvProjection::Separate { q_proj, k_proj, v_proj } => (q_proj.forward(x), k_proj.forward(x), v_proj.forward(x)),
            QkvProjection::Fused { qkv_proj } => {
                let (q, kv) = (self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim);
                let parts = qkv_proj.forward(x).split_with_sizes([q, kv, kv], -1);
                let [q, k, v]: [Tensor; 3] = parts.try_into().expect("split into three sizes gives three tensors");
                (q, k, v)
            }
        }
    }

    fn forward(&self, x: &Tensor, rope: &RopeTables, mask: Option<&Tensor>, cache: Option<&mut LayerCache>) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let (q, k, v) = self.project(x);
        let heads = |y: Tensor, n: i64, norm: &Option<Norm>| {
            let y = y.view([b, t, n, self.head_dim]);
            let y = match norm {
                Some(norm) => norm.forward(&y),
                None => y,
            };
            y.transpose(1, 2)
        };
        let q = Rope::apply(&heads(q, self.num_heads, &self.q_norm), &rope.cos, &rope.sin);
        let k = Rope::apply(&heads(k, self.num_kv_heads, &self.k_norm), &rope.cos, &rope.sin);
        let v = heads(v, self.num_kv_heads, &None);
        let (k, v) = match cache {
            Some(c) => c.append(k, v),
            None => (k, v),
        };
        let is_causal = mask.is_none() && t > 1 && k.size()[2] == t;
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, is_causal, self.scale, self.num_kv_heads != self.num_heads);
        self.o_proj.forward(&y.transpose(1, 2).reshape([b, t, self.num_heads * self.head_dim]))
    }

    fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let mut out: Vec<(&'static str, &mut Linear)> = match &mut self.qkv {
            QkvProjection::Separate { q_proj, k_proj, v_proj } => vec![("q_proj", q_proj), ("k_proj", k_proj), ("v_proj", v_proj)],
            QkvProjection::Fused { qkv_proj } => vec![("qkv_proj", qkv_proj)],
        };
        out.push(("o_proj", &mut self.o_proj));
        out
    }
}

impl Module for Attention {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match &self.qkv {
            QkvProjection::Separate { q_proj, k_proj, v_proj } => {
                q_proj.visit_params(&format!("{p}.q_proj"), f);
                k_proj.visit_params(&format!("{p}.k_proj"), f);
                v_proj.visit_params(&format!("{p}.v_proj"), f);
            }
            QkvProjection::Fused { qkv_proj } => qkv_proj.visit_params(&format!("{p}.qkv_proj"), f),
        }
        self.o_proj.visit_params(&format!("{p}.o_proj"), f);
        if let Some(n) = &self.q_norm {
            n.visit_params(&format!("{p}.q_norm"), f);
        }
        if let Some(n) = &self.k_norm {
            n.visit_params(&format!("{p}.k_norm"), f);
        }
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        for (name, linear) in self.linears_mut() {
            f(&format!("{p}.{name}"), linear);
        }
    }
}

/// Gate and up as two linears or one fused `gate_up_proj` (gate rows first).
pub enum GateUpProjection {
    Separate { gate_proj: Linear, up_proj: Linear },
    Fused { gate_up_proj: Linear },
}

pub struct Mlp {
    pub gate_up: GateUpProjection,
    pub down_proj: Linear,
    activation: Activation,
}

impl Mlp {
    fn load(w: &mut Weights, p: &str, s: &DecoderSpec) -> Result<Self> {
        let (h, i, bias) = (s.hidden_size, s.intermediate_size, s.mlp_bias);
        let gate_up = if s.fused_projections {
            GateUpProjection::Fused { gate_up_proj: load_linear(w, &format!("{p}.gate_up_proj"), 2 * i, h, bias)? }
        } else {
            GateUpProjection::Separate {
                gate_proj: load_linear(w, &format!("{p}.gate_proj"), i, h, bias)?,
                up_proj: load_linear(w, &format!("{p}.up_proj"), i, h, bias)?,
            }
        };
        Ok(Mlp { gate_up, down_proj: load_linear(w, &format!("{p}.down_proj"), h, i, bias)?, activation: s.activation })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (gate, up) = match &self.gate_up {
            GateUpProjection::Separate { gate_proj, up_proj } => (gate_proj.forward(x), up_proj.forward(x)),
            GateUpProjection::Fused { gate_up_proj } => {
                let both = gate_up_proj.forward(x);
                let half = both.size()[both.dim() - 1] / 2;
                (both.narrow(-1, 0, half), both.narrow(-1, half, half))
            }
        };
        let hidden = match self.activation {
            Activation::Silu => swiglu(&gate, &up),
            Activation::GeluTanh => gate.gelu("tanh") * up,
        };
        self.down_proj.forward(&hidden)
    }
}

impl Module for Mlp {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match &self.gate_up {
            GateUpProjection::Separate { gate_proj, up_proj } => {
                gate_proj.visit_params(&format!("{p}.gate_proj"), f);
                up_proj.visit_params(&format!("{p}.up_proj"), f);
            }
            GateUpProjection::Fused { gate_up_proj } => gate_up_proj.visit_params(&format!("{p}.gate_up_proj"), f),
        }
        self.down_proj.visit_params(&format!("{p}.down_proj"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        match &mut self.gate_up {
            GateUpProjection::Separate { gate_proj, up_proj } => {
                f(&format!("{p}.gate_proj"), gate_proj);
                f(&format!("{p}.up_proj"), up_proj);
            }
            GateUpProjection::Fused { gate_up_proj } => f(&format!("{p}.gate_up_proj"), gate_up_proj),
        }
        f(&format!("{p}.down_proj"), &mut self.down_proj);
    }
}

/// Norms around the MLP: Llama's one pre-MLP norm (`post_attention_layernorm`), or
/// Gemma's sandwich (attention output normed by `post_attention_layernorm`, then
/// `pre_feedforward_layernorm` before and `post_feedforward_layernorm` after the MLP).
pub struct SandwichNorms {
    pub pre_feedforward_layernorm: Norm,
    pub post_feedforward_layernorm: Norm,
}

pub struct DecoderLayer {
    pub input_layernorm: Norm,
    pub self_attn: Attention,
    pub post_attention_layernorm: Norm,
    pub sandwich: Option<SandwichNorms>,
    pub mlp: Mlp,
    /// Sliding window of this layer's attention.
    pub window: Option<i64>,
}

impl DecoderLayer {
    fn load(w: &mut Weights, p: &str, s: &DecoderSpec, window: Option<i64>) -> Result<Self> {
        let norm = |name: &str, w: &mut Weights| Norm::load(w, &format!("{p}.{name}"), s.hidden_size, s);
        let input_layernorm = norm("input_layernorm", w)?;
        let self_attn = Attention::load(w, &format!("{p}.self_attn"), s)?;
        let post_attention_layernorm = norm("post_attention_layernorm", w)?;
        let sandwich = if s.sandwich_norms {
            Some(SandwichNorms { pre_feedforward_layernorm: norm("pre_feedforward_layernorm", w)?, post_feedforward_layernorm: norm("post_feedforward_layernorm", w)? })
        } else {
            None
        };
        Ok(DecoderLayer { input_layernorm, self_attn, post_attention_layernorm, sandwich, mlp: Mlp::load(w, &format!("{p}.mlp"), s)?, window })
    }

    fn forward(&self, x: &Tensor, rope: &RopeTables, mask: Option<&Tensor>, cache: Option<&mut LayerCache>) -> Tensor {
        let attended = self.self_attn.forward(&self.input_layernorm.forward(x), rope, mask, cache);
        match &self.sandwich {
            None => {
                let h = x + attended;
                &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h))
            }
            Some(n) => {
                let h = x + self.post_attention_layernorm.forward(&attended);
                &h + n.post_feedforward_layernorm.forward(&self.mlp.forward(&n.pre_feedforward_layernorm.forward(&h)))
            }
        }
    }
}

impl Module for DecoderLayer {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.input_layernorm.visit_params(&format!("{p}.input_layernorm"), f);
        self.self_attn.visit_params(&format!("{p}.self_attn"), f);
        self.post_attention_layernorm.visit_params(&format!("{p}.post_attention_layernorm"), f);
        if let Some(n) = &self.sandwich {
            n.pre_feedforward_layernorm.visit_params(&format!("{p}.pre_feedforward_layernorm"), f);
            n.post_feedforward_layernorm.visit_params(&format!("{p}.post_feedforward_layernorm"), f);
        }
        self.mlp.visit_params(&format!("{p}.mlp"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.self_attn.visit_linears_mut(&format!("{p}.self_attn"), f);
        self.mlp.visit_linears_mut(&format!("{p}.mlp"), f);
    }
}

/// cos/sin of one rotary base for the positions of a forward pass.
struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    fn shallow_clone(&self) -> Self {
        RopeTables { cos: self.cos.shallow_clone(), sin: self.sin.shallow_clone() }
    }
}

/// The decoder stack (`model.*` in a checkpoint), without a head.
pub struct Decoder {
    pub spec: DecoderSpec,
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: Norm,
    rope: Rope,
    local_rope: Option<Rope>,
    checkpointing: Checkpointing,
}

impl Decoder {
    pub fn load(w: &mut Weights, spec: DecoderSpec) -> Result<Self> {
        spec.validate()?;
        let embed = w.take("model.embed_tokens.weight", &[spec.vocab_size, spec.hidden_size])?;
        let layers = (0..spec.num_layers)
            .map(|i| DecoderLayer::load(w, &format!("model.layers.{i}"), &spec, spec.layer_windows[i as usize]))
            .collect::<Result<Vec<_>>>()?;
        let norm = Norm::load(w, "model.norm", spec.hidden_size, &spec)?;
        let new_rope = |r: &RopeSpec| Rope::new(r.rotary_dim, r.theta, r.scaling.as_ref(), w.device);
        let rope = new_rope(&spec.rope)?;
        let local_rope = spec.local_rope.as_ref().map(new_rope).transpose()?;
        Ok(Decoder { embed_tokens: Embedding { weight: embed }, layers, norm, rope, local_rope, spec, checkpointing: Checkpointing::default() })
    }

    /// Builds the decoder and the head `task` asks for, taking both from `w`.
    pub fn load_with_head(w: &mut Weights, spec: DecoderSpec, task: &Task) -> Result<(Box<dyn Forward>, Head)> {
        let decoder = Decoder::load(w, spec)?;
        let head = decoder_head(w, task, &decoder.embed_tokens.weight, decoder.spec.hidden_size, decoder.spec.tie_word_embeddings, decoder.spec.final_logit_softcapping)?;
        Ok((Box::new(decoder), head))
    }

    fn rope_tables(rope: &Rope, positions: &Tensor, kind: Kind) -> RopeTables {
        let (cos, sin) = rope.cos_sin(positions, kind);
        RopeTables { cos, sin }
    }
}

impl Forward for Decoder {
    fn embed(&self, input_ids: &Tensor) -> Tensor {
        let embeds = self.embed_tokens.forward(input_ids);
        match self.spec.embed_scale {
            // transformers rounds the scale to the weights' dtype first.
            Some(scale) => &embeds * Tensor::from(scale as f32).to_kind(embeds.kind()).to_device(embeds.device()),
            None => embeds,
        }
    }

    fn forward_embeds(&self, embeds: &Tensor, attention_mask: Option<&Tensor>, segments: Option<&Tensor>, mut cache: Option<&mut KvCache>) -> Tensor {
        let (t, device) = (embeds.size()[1], embeds.device());
        let past = cache.as_ref().map_or(0, |c| c.seq_len());
        let positions = super::position_ids(t, past, attention_mask, segments, device);
        let global = Self::rope_tables(&self.rope, &positions, embeds.kind());
        let local = self.local_rope.as_ref().map(|r| Self::rope_tables(r, &positions, embeds.kind()));
        let full_mask = attention_bias(t, past, attention_mask, segments, true, None, device);
        // One mask per distinct window size (most models have at most one).
        let mut window_masks: Vec<(i64, Option<Tensor>)> = Vec::new();
        for w in self.layers.iter().filter_map(|l| l.window) {
            if !window_masks.iter().any(|(size, _)| *size == w) {
                window_masks.push((w, attention_bias(t, past, attention_mask, segments, true, Some(w), device)));
            }
        }
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let (rope, mask) = match layer.window {
                Some(w) => (local.as_ref().unwrap_or(&global), window_masks.iter().find(|(size, _)| *size == w).and_then(|(_, m)| m.as_ref())),
                None => (&global, full_mask.as_ref()),
            };
            h = match cache.as_deref_mut() {
                Some(c) => layer.forward(&h, rope, mask, Some(&mut c.layers[i])),
                None => {
                    let (rope, mask) = (rope.shallow_clone(), mask.map(Tensor::shallow_clone));
                    self.checkpointing.run(layer, &h, move |layer, h| layer.forward(h, &rope, mask.as_ref(), None))
                }
            };
        }
        self.norm.forward(&h)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }
    fn hidden_size(&self) -> i64 {
        self.spec.hidden_size
    }
    fn checkpointing_mut(&mut self) -> &mut Checkpointing {
        &mut self.checkpointing
    }
}

impl Module for Decoder {
    fn visit_params(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.embed_tokens.visit_params(&join(p, "model.embed_tokens"), f);
        self.layers.visit_params(&join(p, "model.layers"), f);
        self.norm.visit_params(&join(p, "model.norm"), f);
    }
    fn visit_linears_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        self.layers.visit_linears_mut(&join(p, "model.layers"), f);
    }
}

fn load_linear(w: &mut Weights, p: &str, out: i64, inp: i64, bias: bool) -> Result<Linear> {
    let weight = w.take(&format!("{p}.weight"), &[out, inp])?;
    let bias = if bias { Some(w.take(&format!("{p}.bias"), &[out])?) } else { None };
    Ok(Linear::new(weight, bias))
}

/// A new linear layer initialised as transformers does (normal(0, 0.02), zero bias).
pub(crate) fn init_linear(out: i64, inp: i64, bias: bool, device: Device, kind: Kind) -> Linear {
    let weight = (Tensor::randn([out, inp], (Kind::Float, device)) * 0.02).to_kind(kind);
    let bias = bias.then(|| Tensor::zeros([out], (kind, device)));
    Linear::new(weight, bias)
}

/// The head of a decoder (GPT-2 too): the LM head, tied to `embed` or read as
/// `lm_head.weight`, or a `score` classifier on the last real token.
pub(crate) fn decoder_head(w: &mut Weights, task: &Task, embed: &Tensor, hidden: i64, tie: bool, logit_softcap: Option<f64>) -> Result<Head> {
    match task {
        Task::CausalLm => {
            let vocab = embed.size()[0];
            let untied = if tie { None } else { w.take_opt("lm_head.weight", &[vocab, hidden])? };
            let (weight, tied) = match untied {
                Some(weight) => (weight, false),
                None if tie => (embed.shallow_clone(), true),
                None => return Err(Error::tensor("lm_head.weight", format!("missing from {} and tie_word_embeddings is false", w.source()))),
            };
            Ok(Head::CausalLm { lm_head: Linear::new(weight, None), tied, logit_softcap })
        }
        Task::SequenceClassification { num_labels } => {
            let classifier = match w.take_opt("score.weight", &[*num_labels, hidden])? {
                Some(weight) => Linear::new(weight, None),
                None => init_linear(*num_labels, hidden, false, w.device, w.kind),
            };
            Ok(Head::SequenceClassification { pooler: None, classifier, pooling: Pooling::LastToken, classifier_name: "score" })
        }
        Task::Embedding => Ok(Head::Embedding),
    }
}
