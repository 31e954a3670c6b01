//! QLoRA's storage (Dettmers et al. 2023): frozen base weights as 4-bit codes, blocks of
//! 64 scaled by their absolute maximum, the scales themselves quantized to 8 bits in blocks
//! of 256 (double quantization). Weights are dequantized on the fly to the compute dtype.
//! LoRA on top: `LoraConfig::new(16).quantize(QuantType::Nf4).apply(&mut model)`.
//!
//! ```no_run
//! use tunebook::peft::{qlora, LoraConfig, QuantType};
//! # let mut model = tunebook::Model::from_pretrained("smollm2-135m-instruct")?;
//! LoraConfig::new(16).all_linear().quantize(QuantType::Nf4).apply(&mut model)?;
//! println!("{}", qlora::storage(&mut model)); // bits per quantized parameter
//! # Ok::<(), tunebook::Error>(())
//! ```
use crate::models::Model;
use crate::nn::{join, linear, Linear, LinearHook, Module};
use crate::peft::common::PACKED_4BIT_SUFFIX;
use crate::peft::lora::LoraLayer;
use crate::{Error, Result};
use std::fmt;
use tch::{Kind, Tensor};

/// Elements per absmax block of the 4-bit codes.
pub const BLOCK_SIZE: i64 = 64;
/// Absmax values per block of the 8-bit double quantization.
pub const SCALE_BLOCK_SIZE: i64 = 256;

/// NormalFloat4: quantiles of N(0,1) scaled to [-1, 1], exact zero included (QLoRA paper,
/// bitsandbytes' table).
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// FP4 (E2M1: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}) normalised to [-1, 1]; zero appears twice
/// (±0), as in the format.
pub const FP4_CODE: [f32; 16] = [
    -1.0,
    -4.0 / 6.0,
    -3.0 / 6.0,
    -2.0 / 6.0,
    -1.5 / 6.0,
    -1.0 / 6.0,
    -0.5 / 6.0,
    0.0,
    0.0,
    0.5 / 6.0,
    1.0 / 6.0,
    1.5 / 6.0,
    2.0 / 6.0,
    3.0 / 6.0,
    4.0 / 6.0,
    1.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    Nf4,
    Fp4,
}

impl QuantType {
    pub fn code(self) -> &'static [f32; 16] {
        match self {
            QuantType::Nf4 => &NF4_CODE,
            QuantType::Fp4 => &FP4_CODE,
        }
    }
    /// Half the widest gap between neighbouring code values: the worst rounding error of a
    /// normalised weight.
    pub fn max_rounding_error(self) -> f64 {
        let code = self.code();
        code.windows(2).map(|w| (w[1] - w[0]) as f64 / 2.0).fold(0.0, f64::max)
    }
}

/// Per-block absmax scales, plain or double-quantized.
enum Scales {
    Plain(Tensor),
    /// `absmax ≈ codes · scale[block] + offset`, codes int8 in blocks of 256.
    Double { codes: Tensor, scale: Tensor, offset: f64, blocks: i64 },
}

impl Scales {
    fn shallow_clone(&self) -> Scales {
        match self {
            Scales::Plain(t) => Scales::Plain(t.shallow_clone()),
            Scales::Double { codes, scale, offset, blocks } => {
                Scales::Double { codes: codes.shallow_clone(), scale: scale.shallow_clone(), offset: *offset, blocks: *blocks }
            }
        }
    }

    fn quantize(absmax: &Tensor, double: bool) -> Scales {
        if !double {
            return Scales::Plain(absmax.shallow_clone());
        }
        let blocks = absmax.numel() as i64;
        let offset = absmax.mean(Kind::Float).double_value(&[]);
        let centered = pad_to(&(absmax - offset), SCALE_BLOCK_SIZE).view([-1, SCALE_BLOCK_SIZE]);
        let scale = centered.abs().amax([1], true).clamp_min(1e-12) / 127.0;
        let codes = (&centered / &scale).round().clamp(-127.0, 127.0).to_kind(Kind::Int8);
        Scales::Double { codes, scale, offset, blocks }
    }

    fn dequantize(&self) -> Tensor {
        match self {
            Scales::Plain(t) => t.shallow_clone(),
            Scales::Double { codes, scale, offset, blocks } => {
                (codes.to_kind(Kind::Float) * scale).flatten(0, -1).narrow(0, 0, *blocks) + *offset
            }
        }
    }

    fn bytes(&self) -> i64 {
        match self {
            Scales::Plain(t) => t.numel() as i64 * 4,
            Scales::Double { codes, scale, .. } => codes.numel() as i64 + scale.numel() as i64 * 4 + 8,
        }
    }
}

/// A weight stored as packed 4-bit codes (two per byte) plus block scales.
pub struct QuantizedWeight {
    /// `uint8`, two codes per byte (low nibble first).
    pub packed: Tensor,
    scales: Scales,
    shape: Vec<i64>,
    pub quant_type: QuantType,
}

fn pad_to(flat: &Tensor, block: i64) -> Tensor {
    let n = flat.numel() as i64;
    let pad = (block - n % block) % block;
    if pad == 0 {
        flat.shallow_clone()
    } else {
        Tensor::cat(&[flat.shallow_clone(), Tensor::zeros([pad], (flat.kind(), flat.device()))], 0)
    }
}

impl QuantizedWeight {
    /// Quantizes `weight` (any float dtype) in blocks of 64.
    pub fn quantize(weight: &Tensor, quant_type: QuantType, double_quant: bool) -> Result<Self> {
        if !weight.is_floating_point() || weight.numel() == 0 {
            return Err(Error::tensor("weight", format!("4-bit quantization needs a non-empty float tensor, found {:?} {:?}", weight.kind(), weight.size())));
        }
        let flat = weight.detach().to_kind(Kind::Float).flatten(0, -1);
        let blocks = pad_to(&flat, BLOCK_SIZE).view([-1, BLOCK_SIZE]);
        let absmax = blocks.abs().amax([1], true).clamp_min(1e-12);
        let code = Tensor::from_slice(quant_type.code()).to_device(weight.device());
        let midpoints = (code.narrow(0, 1, 15) + code.narrow(0, 0, 15)) / 2.0;
        let index = (&blocks / &absmax).bucketize(&midpoints, false, false).view([-1, 2]);
        let packed = (index.select(1, 0) + index.select(1, 1) * 16).to_kind(Kind::Uint8);
        Ok(QuantizedWeight { packed, scales: Scales::quantize(&absmax.flatten(0, -1), double_quant), shape: weight.size(), quant_type })
    }

    /// The weight back in `kind`, shaped as the original.
    pub fn dequantize(&self, kind: Kind) -> Tensor {
        let bytes = self.packed.to_kind(Kind::Int64);
        let high = bytes.floor_divide_scalar(16);
        let low = &bytes - &high * 16;
        let index = Tensor::stack(&[low, high], 1).flatten(0, -1);
        let code = Tensor::from_slice(self.quant_type.code()).to_device(self.packed.device());
        let values = code.index_select(0, &index).view([-1, BLOCK_SIZE]) * self.scales.dequantize().unsqueeze(1);
        values.flatten(0, -1).narrow(0, 0, self.numel()).view(self.shape.as_slice()).to_kind(kind)
    }

    /// `x · Wᵀ + bias` with the frozen 4-bit weight. While training, the dequantized weight
    /// is not kept for the backward pass but dequantized again there (as bitsandbytes
    /// does), so a QLoRA step holds one layer's fp32 weight at a time, not all of them.
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> Tensor {
        if !crate::autograd::grad_enabled() {
            return linear(x, &self.dequantize(x.kind()), bias);
        }
        let (weight, recompute) = (self.shallow_clone(), self.shallow_clone());
        let bias = bias.map(Tensor::shallow_clone);
        crate::autograd::function(
            x,
            move |x| linear(x, &weight.dequantize(x.kind()), bias.as_ref()),
            // Weight and bias are frozen: only the input's gradient, grad · W.
            move |grad_output| linear(grad_output, &recompute.dequantize(grad_output.kind()).tr(), None),
        )
    }

    fn shallow_clone(&self) -> QuantizedWeight {
        QuantizedWeight { packed: self.packed.shallow_clone(), scales: self.scales.shallow_clone(), shape: self.shape.clone(), quant_type: self.quant_type }
    }

    /// The per-block absolute maxima as used by [`dequantize`](Self::dequantize) (after
    /// double quantization when it is on).
    pub fn absmax(&self) -> Tensor {
        self.scales.dequantize()
    }

    /// Number of weights represented.
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// Bytes held: packed codes and scales.
    pub fn storage_bytes(&self) -> i64 {
        self.packed.numel() as i64 + self.scales.bytes()
    }

    pub fn bits_per_parameter(&self) -> f64 {
        8.0 * self.storage_bytes() as f64 / self.numel() as f64
    }
}

/// A frozen linear whose weight lives only in 4 bits (QLoRA's non-targeted layers).
pub struct Quantized4bit {
    pub weight: QuantizedWeight,
}

impl LinearHook for Quantized4bit {
    fn forward(&self, base: &Linear, x: &Tensor) -> Tensor {
        self.weight.linear(x, base.bias.as_ref())
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, PACKED_4BIT_SUFFIX), &self.weight.packed);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Measured storage of a model's quantized weights.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct QuantizedStorage {
    pub layers: usize,
    pub parameters: i64,
    pub bytes: i64,
}

impl QuantizedStorage {
    pub fn bits_per_parameter(&self) -> f64 {
        if self.parameters == 0 {
            0.0
        } else {
            8.0 * self.bytes as f64 / self.parameters as f64
        }
    }
}

impl fmt::Display for QuantizedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} quantized layers, {} parameters in {} bytes: {:.3} bits per parameter",
            self.layers,
            self.parameters,
            self.bytes,
            self.bits_per_parameter()
        )
    }
}

/// Adds up the 4-bit weights of `model` (codes and scales).
pub fn storage(model: &mut Model) -> QuantizedStorage {
    let mut total = QuantizedStorage { layers: 0, parameters: 0, bytes: 0 };
    model.visit_linears_mut("", &mut |_, linear| {
        let Some(hook) = &linear.hook else { return };
        let any = hook.as_any();
        let weight = any
            .downcast_ref::<Quantized4bit>()
            .map(|q| &q.weight)
            .or_else(|| any.downcast_ref::<LoraLayer>().and_then(|l| l.quantized.as_ref()));
        if let Some(w) = weight {
            total.layers += 1;
            total.parameters += w.numel();
            total.bytes += w.storage_bytes();
        }
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantizing_again_in_backward_gives_the_usual_input_gradient() {
        tch::manual_seed(5);
        let w = QuantizedWeight::quantize(&Tensor::randn([48, 80], (Kind::Float, tch::Device::Cpu)), QuantType::Nf4, true).unwrap();
        let bias = Tensor::randn([48], (Kind::Float, tch::Device::Cpu));
        let x = Tensor::randn([2, 3, 80], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let probe = Tensor::randn([2, 3, 48], (Kind::Float, tch::Device::Cpu));
        let plain = linear(&x, &w.dequantize(Kind::Float), Some(&bias));
        (&plain * &probe).sum(Kind::Float).backward();
        let expected = x.grad().copy();
        let _ = x.grad().zero_();
        let recomputed = w.linear(&x, Some(&bias));
        assert!(recomputed.allclose(&plain, 1e-6, 1e-6, false));
        (&recomputed * &probe).sum(Kind::Float).backward();
        assert!(x.grad().allclose(&expected, 1e-5, 1e-5, false));
    }
}
