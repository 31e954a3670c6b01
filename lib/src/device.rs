//! Where tensors live and which float type they compute in.
//!
//! CUDA computes in bf16 (tensor cores); CPU computes in fp32 because bf16 matmul on
//! CPUs without AMX is two orders of magnitude slower.
pub use tch::Device;
use tch::Kind;

/// A CUDA device when one is usable, otherwise the CPU. The device is this worker's own
/// (`LOCAL_RANK`, as torchrun sets it) in a distributed launch, else the first.
pub fn best_device() -> Device {
    if tch::Cuda::is_available() {
        Device::Cuda(local_gpu())
    } else {
        Device::Cpu
    }
}

/// `cuda` means this worker's GPU: one per process in a launch (`LOCAL_RANK`), else GPU 0.
fn local_gpu() -> usize {
    let local_rank = std::env::var("LOCAL_RANK").ok().and_then(|r| r.trim().parse::<usize>().ok()).unwrap_or(0);
    local_rank % tch::Cuda::device_count().max(1) as usize
}

/// The dtype weights and activations use on `device` by default.
pub fn compute_kind(device: Device) -> Kind {
    match device {
        Device::Cuda(_) => Kind::BFloat16,
        _ => Kind::Float,
    }
}

/// The dtype as PyTorch names it: `float32`, `bfloat16`, `float16`, ...
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        Kind::Double => "float64",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Bool => "bool",
        _ => "other",
    }
}

/// The device as PyTorch names it: `cpu`, `cuda:0`, `mps`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// Parses "cpu", "cuda" (this worker's GPU), "cuda:1" or "auto".
pub fn parse_device(name: &str) -> crate::Result<Device> {
    match name.trim() {
        "auto" => Ok(best_device()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(local_gpu())),
        other => other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| crate::Error::InvalidArgument(format!(
                "device `{other}`: expected auto, cpu, cuda or cuda:N"
            ))),
    }
}

/// Resident memory of this process (Linux `/proc/self/status`; zero where unavailable).
/// On a GPU, model memory lives on the device and is not part of these figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    /// Bytes resident now (VmRSS).
    pub resident_bytes: u64,
    /// Highest resident bytes since start or since [`reset_peak_memory`] (VmHWM).
    pub peak_bytes: u64,
}

impl ProcessMemory {
    pub fn resident_mib(&self) -> f64 {
        self.resident_bytes as f64 / (1024.0 * 1024.0)
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_bytes as f64 / (1024.0 * 1024.0)
    }
}

/// The process's resident and peak memory now, to measure what a step of training costs:
///
/// ```
/// use tunebook::device::{process_memory, reset_peak_memory};
/// reset_peak_memory();
/// let buffer = vec![1u8; 64 << 20];
/// let memory = process_memory();
/// # #[cfg(target_os = "linux")]
/// assert!(memory.peak_bytes >= memory.resident_bytes && memory.peak_mib() >= 64.0);
/// # drop(buffer);
/// ```
pub fn process_memory() -> ProcessMemory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| -> u64 {
        let kib = status.lines().find_map(|line| line.strip_prefix(key)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        kib.unwrap_or(0) * 1024
    };
    ProcessMemory { resident_bytes: field("VmRSS:"), peak_bytes: field("VmHWM:") }
}

/// Lets the peak start again from the current resident size (Linux `clear_refs` value 5;
/// a no-op elsewhere), so the next [`process_memory`] peak covers only what ran since.
/// Memory freed earlier is first handed back to the system: glibc keeps freed blocks
/// resident, which would otherwise raise the new baseline and hide a smaller peak.
pub fn reset_peak_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free memory; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
