//! Writing GGUF v3 files: metadata plus tensors stored as F32, F16, BF16, Q8_0, Q4_0 or Q4_1.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use half::{bf16, f16};

use super::metadata::MetadataValue;
use super::reader::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use super::types::GgmlType;
use crate::error::{Error, Result};

/// Builds a GGUF file in memory and writes it out.
///
/// ```no_run
/// use tunebook::gguf::{GgmlType, GgufWriter};
///
/// let mut writer = GgufWriter::new();
/// writer.add_metadata("general.architecture", "llama");
/// writer.add_metadata("llama.block_count", 2u32);
/// writer.add_tensor("output_norm.weight", &[4], &[1.0, 1.0, 1.0, 1.0], GgmlType::F32)?;
/// writer.add_tensor("token_embd.weight", &[2, 32], &vec![0.5; 64], GgmlType::Q8_0)?;
/// writer.write("tiny.gguf")?;
/// # Ok::<(), tunebook::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    /// Row-major.
    shape: Vec<usize>,
    ggml_type: GgmlType,
    bytes: Vec<u8>,
}

/// Types [`GgufWriter::add_tensor`] can encode.
const ENCODABLE: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
];

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Sets a metadata key, replacing an earlier value for it. Keys are written in the order
    /// they were first set.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> &mut Self {
        let (key, value) = (key.into(), value.into());
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds a tensor from row-major f32 values, encoded as `ggml_type` (F32, F16, BF16, Q8_0,
    /// Q4_0 or Q4_1; quantised types need the last dimension to be a multiple of 32).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        values: &[f32],
        ggml_type: GgmlType,
    ) -> Result<&mut Self> {
        let name = name.into();
        let n_elements = checked_elements(&name, shape)?;
        if n_elements != values.len() {
            return Err(Error::tensor(
                &name,
                format!(
                    "shape {shape:?} needs {n_elements} values, got {}",
                    values.len()
                ),
            ));
        }
        if !ENCODABLE.contains(&ggml_type) {
            return Err(Error::Unsupported {
                what: "GGML type for writing",
                name: format!("{ggml_type} (tensor `{name}`)"),
                supported: ENCODABLE
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        check_rows(&name, shape, ggml_type)?;
        let bytes = encode(ggml_type, values);
        self.push(PendingTensor {
            name,
            shape: shape.to_vec(),
            ggml_type,
            bytes,
        })
    }

    /// Adds a tensor already encoded as `ggml_type` (e.g. quantised bytes copied from another
    /// GGUF file via [`GgufFile::tensor_bytes`](super::GgufFile::tensor_bytes)).
    pub fn add_tensor_bytes(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        ggml_type: GgmlType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let n_elements = checked_elements(&name, shape)?;
        check_rows(&name, shape, ggml_type)?;
        let expected = ggml_type.bytes_for(n_elements);
        if expected != Some(bytes.len()) {
            return Err(Error::tensor(
                &name,
                format!(
                    "{ggml_type} {shape:?} takes {expected:?} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        self.push(PendingTensor {
            name,
            shape: shape.to_vec(),
            ggml_type,
            bytes,
        })
    }

    fn push(&mut self, tensor: PendingTensor) -> Result<&mut Self> {
        if self.tensors.iter().any(|t| t.name == tensor.name) {
            return Err(Error::tensor(
                &tensor.name,
                "added twice to the GGUF writer",
            ));
        }
        self.tensors.push(tensor);
        Ok(self)
    }

    /// Writes the file (GGUF version 3).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::new(file);
        self.write_to(&mut out).map_err(|e| match e {
            WriteError::Io(e) => Error::io(path, e),
            WriteError::Invalid(e) => e,
        })?;
        out.flush().map_err(|e| Error::io(path, e))
    }

    /// The bytes [`write`](Self::write) would put in a file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out).map_err(|e| match e {
            WriteError::Io(e) => Error::InvalidArgument(format!("writing GGUF to memory: {e}")),
            WriteError::Invalid(e) => e,
        })?;
        Ok(out)
    }

    fn alignment(&self) -> Result<u64> {
        match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, MetadataValue::U32(a))) if a.is_power_of_two() => Ok(u64::from(*a)),
            Some((_, value)) => Err(Error::InvalidArgument(format!(
                "{ALIGNMENT_KEY} must be a u32 power of two, got {} {value}",
                value.type_name()
            ))),
        }
    }

    fn write_to(&self, out: &mut impl Write) -> Result<(), WriteError> {
        let alignment = self.alignment()?;
        for (key, value) in &self.metadata {
            check_homogeneous(key, value)?;
        }
        let mut header = Vec::new();
        header.extend(MAGIC);
        header.extend(3u32.to_le_bytes());
        header.extend((self.tensors.len() as u64).to_le_bytes());
        header.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut header, key);
            header.extend(value.type_id().to_le_bytes());
            put_value(&mut header, value);
        }
        let mut offset = 0u64;
        for tensor in &self.tensors {
            put_string(&mut header, &tensor.name);
            header.extend((tensor.shape.len() as u32).to_le_bytes());
            for &dim in tensor.shape.iter().rev() {
                header.extend((dim as u64).to_le_bytes());
            }
            header.extend(tensor.ggml_type.id().to_le_bytes());
            header.extend(offset.to_le_bytes());
            offset = (offset + tensor.bytes.len() as u64).next_multiple_of(alignment);
        }
        // The data section and every tensor in it start at a multiple of the alignment.
        let zeros = vec![0u8; alignment as usize];
        let padding =
            |len: usize| &zeros[..(len as u64).next_multiple_of(alignment) as usize - len];
        out.write_all(&header)?;
        out.write_all(padding(header.len()))?;
        for tensor in &self.tensors {
            out.write_all(&tensor.bytes)?;
            out.write_all(padding(tensor.bytes.len()))?;
        }
        Ok(())
    }
}

enum WriteError {
    Io(std::io::Error),
    Invalid(Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Invalid(e)
    }
}

fn checked_elements(name: &str, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.len() > MAX_DIMS {
        return Err(Error::tensor(
            name,
            format!("GGUF tensors have 1 to {MAX_DIMS} dimensions, got {shape:?}"),
        ));
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::tensor(name, format!("shape {shape:?} is too large")))
}

fn check_rows(name: &str, shape: &[usize], ggml_type: GgmlType) -> Result<()> {
    let row = shape.last().copied().unwrap_or(1);
    if row % ggml_type.block_size() != 0 {
        return Err(Error::tensor(
            name,
            format!(
                "{ggml_type} stores rows in blocks of {}, but the last dimension of {shape:?} is {row}",
                ggml_type.block_size()
            ),
        ));
    }
    Ok(())
}

/// GGUF arrays declare one element type; reject mixed arrays before writing anything.
fn check_homogeneous(key: &str, value: &MetadataValue) -> Result<()> {
    if let MetadataValue::Array(items) = value {
        if let Some(first) = items.first() {
            if let Some(odd) = items.iter().find(|item| item.type_id() != first.type_id()) {
                return Err(Error::InvalidArgument(format!(
                    "metadata `{key}`: GGUF arrays hold one type, found {} and {}",
                    first.type_name(),
                    odd.type_name()
                )));
            }
        }
        for item in items {
            check_homogeneous(key, item)?;
        }
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.extend(v.to_le_bytes()),
        MetadataValue::I8(v) => out.extend(v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend(v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend(v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend(v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend(v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend(v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(v) => put_string(out, v),
        MetadataValue::Array(items) => {
            // An empty array still needs an element type; u8 is as good as any.
            let element_type = items.first().map_or(0, MetadataValue::type_id);
            out.extend(element_type.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        MetadataValue::U64(v) => out.extend(v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend(v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend(v.to_le_bytes()),
    }
}

/// Encodes row-major values; the caller has checked the type is in [`ENCODABLE`] and that the
/// values are whole blocks.
fn encode(ggml_type: GgmlType, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ggml_type.bytes_for(values.len()).unwrap_or(0));
    match ggml_type {
        GgmlType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|&v| out.extend(f16::from_f32(v).to_le_bytes())),
        GgmlType::BF16 => values
            .iter()
            .for_each(|&v| out.extend(bf16::from_f32(v).to_le_bytes())),
        GgmlType::Q8_0 => values
            .chunks_exact(32)
            .for_each(|block| quantize_q8_0(block, &mut out)),
        GgmlType::Q4_0 => values
            .chunks_exact(32)
            .for_each(|block| quantize_q4_0(block, &mut out)),
        GgmlType::Q4_1 => values
            .chunks_exact(32)
            .for_each(|block| quantize_q4_1(block, &mut out)),
        _ => {}
    }
    out
}

fn reciprocal_or_zero(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// As ggml's `quantize_row_q8_0_ref`: scale by the largest magnitude, round half away from zero.
fn quantize_q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = reciprocal_or_zero(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// As ggml's `quantize_row_q4_0_ref`: the value of largest magnitude maps to -8.
fn quantize_q4_0(block: &[f32], out: &mut Vec<u8>) {
    let max = block
        .iter()
        .fold(0f32, |max, &v| if v.abs() > max.abs() { v } else { max });
    let d = max / -8.0;
    let id = reciprocal_or_zero(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).clamp(0, 15) as u8;
    out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
}

/// As ggml's `quantize_row_q4_1_ref`: 16 levels between the block's min and max.
fn quantize_q4_1(block: &[f32], out: &mut Vec<u8>) {
    let (min, max) = block
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let d = (max - min) / 15.0;
    let id = reciprocal_or_zero(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5) as i8).clamp(0, 15) as u8;
    out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
}

#[cfg(test)]
mod tests {
    use super::super::dequant::dequantize_into;
    use super::*;

    fn round_trip(ggml_type: GgmlType, values: &[f32]) -> Vec<f32> {
        let bytes = encode(ggml_type, values);
        assert_eq!(Some(bytes.len()), ggml_type.bytes_for(values.len()));
        let mut out = vec![0f32; values.len()];
        assert!(dequantize_into(ggml_type, &bytes, &mut out));
        out
    }

    fn wave(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37).sin() * (1.0 + (i / 32) as f32))
            .collect()
    }

    #[test]
    fn quantised_round_trips_stay_within_one_step() {
        let values = wave(256);
        // Worst-case error as a fraction of the block's largest magnitude: half a step for
        // Q8_0 and Q4_1; Q4_0 maps the extreme to -8 and clips the opposite side at +7 steps.
        for (ggml_type, fraction) in [
            (GgmlType::Q8_0, 0.5 / 127.0),
            (GgmlType::Q4_0, 1.0 / 8.0),
            (GgmlType::Q4_1, 1.0 / 15.0),
        ] {
            let decoded = round_trip(ggml_type, &values);
            for (block, decoded) in values.chunks(32).zip(decoded.chunks(32)) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Slack for the f16 scale.
                let tolerance = amax * fraction * 1.01 + 1e-3;
                for (a, b) in block.iter().zip(decoded) {
                    assert!(
                        (a - b).abs() <= tolerance,
                        "{ggml_type}: {a} vs {b} (tolerance {tolerance})"
                    );
                }
            }
        }
    }

    #[test]
    fn plain_types_round_trip() {
        let values = [1.5f32, -2.25, 0.0, 65504.0];
        assert_eq!(round_trip(GgmlType::F32, &values), values);
        assert_eq!(round_trip(GgmlType::F16, &values), values);
        assert_eq!(
            round_trip(GgmlType::BF16, &[1.5, -2.25, 0.0, 256.0]),
            [1.5, -2.25, 0.0, 256.0]
        );
    }

    #[test]
    fn q4_0_extreme_value_maps_to_minus_eight() {
        let mut values = vec![0.0f32; 32];
        values[3] = -4.0;
        values[20] = 2.0;
        let decoded = round_trip(GgmlType::Q4_0, &values);
        assert_eq!(decoded[3], -4.0);
        assert_eq!(decoded[20], 2.0);
        assert_eq!(decoded[0], 0.0);
    }

    #[test]
    fn rejects_bad_tensors() {
        let mut writer = GgufWriter::new();
        let err = writer
            .add_tensor("w", &[2, 3], &[0.0; 6], GgmlType::Q8_0)
            .unwrap_err();
        assert!(err.to_string().contains("blocks of 32"), "{err}");
        let err = writer
            .add_tensor("w", &[2, 3], &[0.0; 5], GgmlType::F32)
            .unwrap_err();
        assert!(err.to_string().contains("needs 6 values"), "{err}");
        writer
            .add_tensor("w", &[2, 3], &[0.0; 6], GgmlType::F32)
            .unwrap();
        let err = writer
            .add_tensor("w", &[6], &[0.0; 6], GgmlType::F32)
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = writer
            .add_tensor("q", &[32], &[0.0; 32], GgmlType::Q6_K)
            .unwrap_err();
        assert!(err.to_string().contains("Q6_K"), "{err}");
        writer.add_metadata("mixed", MetadataValue::Array(vec![1u32.into(), "x".into()]));
        let err = writer.to_bytes().unwrap_err();
        assert!(err.to_string().contains("one type"), "{err}");
    }
}
