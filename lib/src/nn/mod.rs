//! Building blocks shared by every model family: layers with `forward`, the weight
//! loader, attention masks, and the walk over parameters that fine-tuning methods use.
mod attention;
mod checkpoint;
mod layers;
mod matmul;
mod module;
mod fused;
mod weights;

pub use attention::{attention_bias, rotate_half, KvCache, LayerCache, Rope, RopeScaling};
pub use checkpoint::Checkpointing;
pub use layers::{Embedding, LayerNorm, Linear, LinearHook, RmsNorm, PACKED_4BIT_SUFFIX};
pub use matmul::{addmm_, cpu_matmul, linear, mm, set_cpu_matmul, CpuMatmul};
pub use module::{join, Module, NamedTensors};
pub use fused::{rms_norm, swiglu};
pub use weights::Weights;
