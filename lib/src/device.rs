//! Where tensors live and which float type they compute in.
//!
//! CUDA computes in bf16 (tensor cores); CPU computes in fp32 because bf16 matmul on
//! CPUs without AMX is two orders of magnitude slower.
pub use tch::Device;
use tch::Kind;

/// The first CUDA device when one is usable, otherwise the CPU.
pub fn best_device() -> Device {
    if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// The dtype weights and activations use on `device` by default.
pub fn compute_kind(device: Device) -> Kind {
    match device {
        Device::Cuda(_) => Kind::BFloat16,
        _ => Kind::Float,
    }
}

/// Parses "cpu", "cuda", "cuda:1" or "auto".
pub fn parse_device(name: &str) -> crate::Result<Device> {
    match name.trim() {
        "auto" => Ok(best_device()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| crate::Error::InvalidArgument(format!(
                "device `{other}`: expected auto, cpu, cuda or cuda:N"
            ))),
    }
}
