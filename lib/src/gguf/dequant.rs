//! Decoding GGML blocks to f32, bit-compatible with ggml's `dequantize_row_*` and gguf-py.
//!
//! Each kernel sees one block as a fixed-size array, so the hot loops have no bounds checks.
//! Arithmetic follows gguf-py's order of operations (e.g. `(d * scale) * q - dmin * min`) so the
//! results match it exactly, not just within rounding.

use half::{bf16, f16};

use super::types::GgmlType;

/// Decodes `bytes` (whole blocks of `ty`) into `out`, which holds exactly the values they encode.
/// Returns `false` for a type with no decoder here.
pub(crate) fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> bool {
    debug_assert_eq!(ty.bytes_for(out.len()), Some(bytes.len()));
    match ty {
        GgmlType::F32 => per_block(bytes, out, |b: &[u8; 4], y: &mut [f32; 1]| {
            y[0] = f32::from_le_bytes(*b)
        }),
        GgmlType::F16 => per_block(bytes, out, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = f16::from_le_bytes(*b).to_f32()
        }),
        GgmlType::BF16 => per_block(bytes, out, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = bf16::from_le_bytes(*b).to_f32()
        }),
        GgmlType::F64 => per_block(bytes, out, |b: &[u8; 8], y: &mut [f32; 1]| {
            y[0] = f64::from_le_bytes(*b) as f32
        }),
        GgmlType::Q4_0 => per_block(bytes, out, q4_0),
        GgmlType::Q4_1 => per_block(bytes, out, q4_1),
        GgmlType::Q5_0 => per_block(bytes, out, q5_0),
        GgmlType::Q5_1 => per_block(bytes, out, q5_1),
        GgmlType::Q8_0 => per_block(bytes, out, q8_0),
        GgmlType::Q2_K => per_block(bytes, out, q2_k),
        GgmlType::Q3_K => per_block(bytes, out, q3_k),
        GgmlType::Q4_K => per_block(bytes, out, q4_k),
        GgmlType::Q5_K => per_block(bytes, out, q5_k),
        GgmlType::Q6_K => per_block(bytes, out, q6_k),
        GgmlType::IQ4_NL => per_block(bytes, out, iq4_nl),
        GgmlType::IQ4_XS => per_block(bytes, out, iq4_xs),
        _ => return false,
    }
    true
}

/// Blocks one task decodes: large tensors (embeddings of big vocabularies) spread over every
/// core, small ones stay on one.
const BLOCKS_PER_TASK: usize = 4096;

/// Runs `decode` over matching input blocks of `B` bytes and output blocks of `N` values,
/// in parallel over runs of [`BLOCKS_PER_TASK`] blocks.
#[inline(always)]
fn per_block<const B: usize, const N: usize>(
    bytes: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; B], &mut [f32; N]) + Sync,
) {
    use rayon::prelude::*;
    let run = |(bytes, out): (&[u8], &mut [f32])| {
        for (block, values) in bytes.chunks_exact(B).zip(out.chunks_exact_mut(N)) {
            // chunks_exact yields exactly B and N items, so these conversions cannot fail.
            if let (Ok(block), Ok(values)) = (block.try_into(), values.try_into()) {
                decode(block, values);
            }
        }
    };
    if bytes.len() <= B * BLOCKS_PER_TASK {
        run((bytes, out));
    } else {
        bytes.par_chunks(B * BLOCKS_PER_TASK).zip(out.par_chunks_mut(N * BLOCKS_PER_TASK)).for_each(run);
    }
}

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = d * ((q & 0x0F) as i32 - 8) as f32;
        y[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
    }
}

fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for j in 0..16 {
        let q = b[4 + j];
        y[j] = d * (q & 0x0F) as f32 + m;
        y[j + 16] = d * (q >> 4) as f32 + m;
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block: low nibbles from `qs`, fifth bits from `qh`.
#[inline(always)]
fn five_bit_values(qh: [u8; 4], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let q = five_bit_values([b[2], b[3], b[4], b[5]], &b[6..22]);
    for (value, q) in y.iter_mut().zip(q) {
        *value = d * (q as i32 - 16) as f32;
    }
}

fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let q = five_bit_values([b[4], b[5], b[6], b[7]], &b[8..24]);
    for (value, q) in y.iter_mut().zip(q) {
        *value = d * q as f32 + m;
    }
}

fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for (value, &q) in y.iter_mut().zip(&b[2..]) {
        *value = (q as i8) as f32 * d;
    }
}

fn q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half_at(b, 80), half_at(b, 82));
    for n in 0..256 {
        let (half, shift, l) = (n / 128, (n / 32) % 4, n % 32);
        let q = (qs[half * 32 + l] >> (2 * shift)) & 3;
        let scale = scales[n / 16];
        let dl = d * (scale & 0x0F) as f32;
        let ml = dmin * (scale >> 4) as f32;
        y[n] = dl * q as f32 - ml;
    }
}

fn q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half_at(b, 108);
    // 16 six-bit signed scales: low nibbles in bytes 0..8, top two bits in bytes 8..12.
    let mut dl = [0f32; 16];
    for (i, dl) in dl.iter_mut().enumerate() {
        let low = if i < 8 {
            packed[i] & 0x0F
        } else {
            packed[i - 8] >> 4
        };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *dl = d * ((low | (high << 4)) as i32 - 32) as f32;
    }
    for n in 0..256 {
        let (half, shift, l) = (n / 128, (n / 32) % 4, n % 32);
        let low = ((qs[half * 32 + l] >> (2 * shift)) & 3) as i32;
        // A clear high bit means the value is offset by -4.
        let high_clear = ((hmask[l] >> (n / 32)) & 1) ^ 1;
        y[n] = dl[n / 16] * (low - 4 * high_clear as i32) as f32;
    }
}

/// Scales and mins of the eight 32-value sub-blocks of Q4_K/Q5_K, six bits each.
#[inline(always)]
fn k_scales_mins(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..4 {
        scales[j] = packed[j] & 0x3F;
        mins[j] = packed[j + 4] & 0x3F;
        scales[j + 4] = (packed[j + 8] & 0x0F) | ((packed[j] >> 2) & 0x30);
        mins[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 2) & 0x30);
    }
    (scales, mins)
}

fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let (scales, mins) = k_scales_mins(&b[4..16]);
    let qs = &b[16..144];
    for (sub, values) in y.chunks_exact_mut(32).enumerate() {
        let (scale, min) = (d * scales[sub] as f32, dmin * mins[sub] as f32);
        let (bytes, shift) = (&qs[(sub / 2) * 32..(sub / 2) * 32 + 32], 4 * (sub % 2));
        for (value, &q) in values.iter_mut().zip(bytes) {
            *value = scale * ((q >> shift) & 0x0F) as f32 - min;
        }
    }
}

fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let (scales, mins) = k_scales_mins(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for (sub, values) in y.chunks_exact_mut(32).enumerate() {
        let (scale, min) = (d * scales[sub] as f32, dmin * mins[sub] as f32);
        let (bytes, shift) = (&qs[(sub / 2) * 32..(sub / 2) * 32 + 32], 4 * (sub % 2));
        for ((value, &q), &h) in values.iter_mut().zip(bytes).zip(qh) {
            let q = ((q >> shift) & 0x0F) | (((h >> sub) & 1) << 4);
            *value = scale * q as f32 - min;
        }
    }
}

fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = half_at(b, 208);
    for n in 0..256 {
        let (half, quarter, l) = (n / 128, (n / 32) % 4, n % 32);
        let low = (ql[half * 64 + (quarter % 2) * 32 + l] >> (4 * (quarter / 2))) & 0x0F;
        let high = (qh[half * 32 + l] >> (2 * quarter)) & 3;
        let q = (low | (high << 4)) as i32 - 32;
        y[n] = (d * (scales[n / 16] as i8) as f32) * q as f32;
    }
}

/// The 16 non-uniform levels of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`).
const IQ4_LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Sixteen bytes of 4-bit level indices scaled by `d`: low nibbles first, then high.
#[inline(always)]
fn iq4_values(d: f32, qs: &[u8], y: &mut [f32]) {
    for j in 0..16 {
        y[j] = d * IQ4_LEVELS[(qs[j] & 0x0F) as usize] as f32;
        y[j + 16] = d * IQ4_LEVELS[(qs[j] >> 4) as usize] as f32;
    }
}

fn iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    iq4_values(half_at(b, 0), &b[2..18], y);
}

fn iq4_xs(b: &[u8; 136], y: &mut [f32; 256]) {
    let d = half_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs) = (&b[4..8], &b[8..136]);
    for (sub, values) in y.chunks_exact_mut(32).enumerate() {
        let low = (scales_l[sub / 2] >> (4 * (sub % 2))) & 0x0F;
        let high = ((scales_h >> (2 * sub)) & 3) as u8;
        let scale = d * ((low | (high << 4)) as i32 - 32) as f32;
        iq4_values(scale, &qs[16 * sub..16 * sub + 16], values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; bytes.len() / ty.block_bytes() * ty.block_size()];
        assert!(dequantize_into(ty, bytes, &mut out));
        out
    }

    fn half_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_1_puts_low_nibbles_first() {
        let mut block = Vec::new();
        block.extend(half_bytes(0.5));
        block.extend(half_bytes(-1.0));
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = decode(GgmlType::Q4_1, &block);
        for j in 0..16 {
            assert_eq!(y[j], 0.5 * j as f32 - 1.0);
            assert_eq!(y[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q5_0_takes_fifth_bit_from_qh() {
        let mut block = Vec::new();
        block.extend(half_bytes(1.0));
        // Fifth bit set for values 0 and 31 only.
        block.extend((1u32 | 1 << 31).to_le_bytes());
        block.extend([0u8; 16]);
        let y = decode(GgmlType::Q5_0, &block);
        assert_eq!(y[0], 0.0);
        assert_eq!(y[31], 0.0);
        assert!(y[1..31].iter().all(|&v| v == -16.0));
    }

    #[test]
    fn q8_0_is_signed() {
        let mut block = Vec::new();
        block.extend(half_bytes(0.25));
        block.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let y = decode(GgmlType::Q8_0, &block);
        assert_eq!(y[0], -4.0);
        assert_eq!(y[31], 3.75);
    }

    #[test]
    fn q6_k_interleaves_quarters() {
        // All low bits zero, high bits 2 everywhere -> q = 32 - 32 = 0 except where set below.
        let mut block = vec![0u8; 210];
        block[128..192].fill(0b1010_1010);
        block[192..208].fill(1);
        block[208..210].copy_from_slice(&half_bytes(1.0));
        // Value 64 + 5 (third quarter of the first half) reads the high nibble of ql[5].
        block[5] = 0x70;
        let y = decode(GgmlType::Q6_K, &block);
        assert_eq!(y[69], 7.0);
        assert_eq!(y.iter().filter(|&&v| v != 0.0).count(), 1);
    }

    #[test]
    fn iq4_xs_combines_six_bit_scales() {
        let mut block = vec![0u8; 136];
        block[0..2].copy_from_slice(&half_bytes(0.5));
        // Sub-block 1: low scale bits 0x3 (high nibble of scales_l[0]), high bits 0b10 -> 35.
        block[2..4].copy_from_slice(&(0b10u16 << 2).to_le_bytes());
        block[4] = 0x30;
        // Its first value's index 15 (113), its seventeenth's index 0 (-127).
        block[8 + 16] = 0x0F;
        let y = decode(GgmlType::IQ4_XS, &block);
        assert_eq!(y[32], 0.5 * 3.0 * 113.0);
        assert_eq!(y[48], 0.5 * 3.0 * -127.0);
        assert_eq!(y[0], 0.5 * -32.0 * -127.0);
    }

    #[test]
    fn unknown_decoders_report_false() {
        assert!(!dequantize_into(
            GgmlType::IQ2_XXS,
            &[0u8; 66],
            &mut [0f32; 256]
        ));
    }
}
