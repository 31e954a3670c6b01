//! Pieces of attention shared by the decoder and encoder families: rotary position
//! embeddings, the key/value cache used in generation, and attention masks.
use crate::{Error, Result};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5, which also
/// carries `rope_theta`) from a Hugging Face config.json.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RopeScaling {
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

fn default_rope_type() -> String {
    "default".into()
}

/// Rotary position embedding: the inverse frequencies, computed once.
pub struct Rope {
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(head_dim: i64, theta: f64, scaling: Option<&RopeScaling>, device: Device) -> Result<Self> {
        // Same float32 arithmetic as transformers, so logits match to 1e-5.
        let exponent = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, Device::Cpu)).to_kind(Kind::Float) / head_dim as f64;
        let mut inv_freq = Tensor::from(theta as f32).pow(&exponent).reciprocal();
        if let Some(s) = scaling {
            inv_freq = scale_inv_freq(inv_freq, s)?;
        }
        Ok(Rope { inv_freq: inv_freq.to_device(device) })
    }

    /// cos and sin for `position_ids` `[batch, seq]`, each `[batch, 1, seq, head_dim]`.
    pub fn cos_sin(&self, position_ids: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = position_ids.to_kind(Kind::Float).unsqueeze(-1) * self.inv_freq.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` by the positions in cos/sin. When cos/sin
    /// cover fewer dimensions than a head (partial rotary, as Phi's), only those leading
    /// dimensions rotate and the rest pass through.
    pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let (head_dim, rotary) = (x.size()[x.dim() - 1], cos.size()[cos.dim() - 1]);
        if rotary == head_dim {
            return x * cos + rotate_half(x) * sin;
        }
        let (rot, pass) = (x.narrow(-1, 0, rotary), x.narrow(-1, rotary, head_dim - rotary));
        Tensor::cat(&[&rot * cos + rotate_half(&rot) * sin, pass], -1)
    }
}

fn scale_inv_freq(inv_freq: Tensor, s: &RopeScaling) -> Result<Tensor> {
    let field = |v: Option<f64>, name: &str| {
        v.ok_or_else(|| Error::config(format!("rope_scaling.{name}"), format!("required for rope_type `{}`", s.rope_type)))
    };
    match s.rope_type.as_str() {
        "default" => Ok(inv_freq),
        "linear" => Ok(inv_freq / field(s.factor, "factor")?),
        "llama3" => {
            let factor = field(s.factor, "factor")?;
            let low = field(s.low_freq_factor, "low_freq_factor")?;
            let high = field(s.high_freq_factor, "high_freq_factor")?;
            let old_len = field(s.original_max_position_embeddings, "original_max_position_embeddings")?;
            let low_wavelen = old_len / low;
            let high_wavelen = old_len / high;
            let wavelen = inv_freq.reciprocal() * (2.0 * std::f64::consts::PI);
            let long = wavelen.gt(low_wavelen);
            let scaled = inv_freq.where_self(&long.logical_not(), &(&inv_freq / factor));
            let smooth = (wavelen.reciprocal() * old_len - low) / (high - low);
            let smoothed = (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
            let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
            Ok(smoothed.where_self(&medium, &scaled))
        }
        other => Err(Error::Unsupported {
            what: "rope_scaling.rope_type",
            name: other.to_string(),
            supported: "default, linear, llama3".into(),
        }),
    }
}

/// `[x1, x2] -> [-x2, x1]` over the last dimension.
pub fn rotate_half(x: &Tensor) -> Tensor {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.narrow(-1, 0, half);
    let x2 = x.narrow(-1, half, half);
    Tensor::cat(&[&x2.neg(), &x1], -1)
}

/// Keys and values of one attention layer for the tokens seen so far.
#[derive(Default)]
pub struct LayerCache {
    pub keys: Option<Tensor>,
    pub values: Option<Tensor>,
}

impl LayerCache {
    /// Appends this step's keys/values `[batch, kv_heads, seq, head_dim]`; returns all of them.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let k = match self.keys.take() {
            Some(prev) => Tensor::cat(&[prev, k], 2),
            None => k,
        };
        let v = match self.values.take() {
            Some(prev) => Tensor::cat(&[prev, v], 2),
            None => v,
        };
        self.keys = Some(k.shallow_clone());
        self.values = Some(v.shallow_clone());
        (k, v)
    }
}

/// The cache of every layer, so generating token n+1 does not recompute tokens 1..n.
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: (0..num_layers).map(|_| LayerCache::default()).collect() }
    }

    /// How many positions are cached.
    pub fn seq_len(&self) -> i64 {
        self.layers.first().and_then(|l| l.keys.as_ref()).map_or(0, |k| k.size()[2])
    }
}

/// Boolean attention mask `[batch, 1, query, key]` (true = may attend), or `None` when
/// plain causal (or full) attention needs no mask.
///
/// - `key_padding`: `[batch, key]` with 1 for real tokens and 0 for padding.
/// - `segments`: `[batch, query]` example index of each token in a packed sequence;
///   attention stays inside each example.
///
/// - `window`: a sliding window (Mistral, Gemma 3's local layers): a query sees only the
///   `window` most recent positions, itself included (transformers' and llama.cpp's rule).
///
/// A query always sees itself, so padded rows never become all-masked (which would give
/// NaN that leaks through the values of later layers).
pub fn attention_bias(
    query_len: i64,
    past_len: i64,
    key_padding: Option<&Tensor>,
    segments: Option<&Tensor>,
    causal: bool,
    window: Option<i64>,
    device: Device,
) -> Option<Tensor> {
    let key_len = past_len + query_len;
    let window = window.filter(|&w| w < key_len);
    let needs_causal_mask = causal && query_len > 1 && (past_len > 0 || key_padding.is_some() || segments.is_some());
    if key_padding.is_none() && segments.is_none() && !needs_causal_mask && window.is_none() {
        return None;
    }
    let q_pos = Tensor::arange_start(past_len, key_len, (Kind::Int64, device)).view([1, 1, query_len, 1]);
    let k_pos = Tensor::arange(key_len, (Kind::Int64, device)).view([1, 1, 1, key_len]);
    let mut mask = if causal { k_pos.le_tensor(&q_pos) } else { k_pos.ones_like().to_kind(Kind::Bool) };
    if let Some(w) = window {
        mask = mask.logical_and(&k_pos.gt_tensor(&(&q_pos - w)));
    }
    if let Some(pad) = key_padding {
        let b = pad.size()[0];
        mask = mask.logical_and(&pad.to_kind(Kind::Bool).view([b, 1, 1, key_len]));
    }
    if let Some(seg) = segments {
        let b = seg.size()[0];
        let same = seg.view([b, 1, query_len, 1]).eq_tensor(&seg.view([b, 1, 1, query_len]));
        mask = mask.logical_and(&same);
    }
    Some(mask.logical_or(&k_pos.eq_tensor(&q_pos)))
}
