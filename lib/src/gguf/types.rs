//! GGML tensor types: ids as stored in GGUF files and their block layouts.

use std::fmt;

/// Element type of a GGUF tensor, with the numeric id the file stores.
///
/// Quantised types pack `block_size()` values into `block_bytes()` bytes.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// (type, id, values per block, bytes per block), from ggml.h / ggml-common.h.
const LAYOUTS: &[(GgmlType, u32, usize, usize)] = {
    use GgmlType::*;
    const QK_K: usize = 256;
    &[
        (F32, 0, 1, 4),
        (F16, 1, 1, 2),
        (Q4_0, 2, 32, 2 + 16),
        (Q4_1, 3, 32, 2 + 2 + 16),
        (Q5_0, 6, 32, 2 + 4 + 16),
        (Q5_1, 7, 32, 2 + 2 + 4 + 16),
        (Q8_0, 8, 32, 2 + 32),
        (Q8_1, 9, 32, 2 + 2 + 32),
        (Q2_K, 10, QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
        (Q3_K, 11, QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
        (Q4_K, 12, QK_K, 2 + 2 + 12 + QK_K / 2),
        (Q5_K, 13, QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2),
        (Q6_K, 14, QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
        (Q8_K, 15, QK_K, 4 + QK_K + QK_K / 8),
        (IQ2_XXS, 16, QK_K, 2 + QK_K / 4),
        (IQ2_XS, 17, QK_K, 2 + QK_K / 4 + QK_K / 32),
        (IQ3_XXS, 18, QK_K, 2 + QK_K / 4 + QK_K / 8),
        (IQ1_S, 19, QK_K, 2 + QK_K / 8 + QK_K / 16),
        (IQ4_NL, 20, 32, 2 + 16),
        (IQ3_S, 21, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
        (IQ2_S, 22, QK_K, 2 + QK_K / 4 + QK_K / 16),
        (IQ4_XS, 23, QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
        (I8, 24, 1, 1),
        (I16, 25, 1, 2),
        (I32, 26, 1, 4),
        (I64, 27, 1, 8),
        (F64, 28, 1, 8),
        (IQ1_M, 29, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
        (BF16, 30, 1, 2),
        (TQ1_0, 34, QK_K, 2 + 4 * 13),
        (TQ2_0, 35, QK_K, 2 + 64),
        (MXFP4, 39, 32, 1 + 16),
    ]
};

impl GgmlType {
    /// The type a GGUF file means by `id`, or `None` for an id this crate does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        LAYOUTS
            .iter()
            .find(|layout| layout.1 == id)
            .map(|layout| layout.0)
    }

    fn layout(self) -> &'static (GgmlType, u32, usize, usize) {
        LAYOUTS
            .iter()
            .find(|layout| layout.0 == self)
            .expect("every GgmlType has a row in LAYOUTS")
    }

    /// Every type this crate knows, as `NAME (id)`, for error messages.
    pub(crate) fn known_list() -> String {
        LAYOUTS
            .iter()
            .map(|(ty, id, _, _)| format!("{ty} ({id})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The id stored in GGUF files.
    pub fn id(self) -> u32 {
        self.layout().1
    }

    /// Number of values in one block (1 for plain types).
    pub fn block_size(self) -> usize {
        self.layout().2
    }

    /// Bytes one block occupies.
    pub fn block_bytes(self) -> usize {
        self.layout().3
    }

    /// Bytes taken by `n_elements` values, or `None` when `n_elements` is not a whole number
    /// of blocks (or the size overflows).
    pub fn bytes_for(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.block_bytes())
    }

    /// Whether [`GgufFile::dequantize`](super::GgufFile::dequantize) can decode this type.
    pub fn can_dequantize(self) -> bool {
        DEQUANTIZABLE.contains(&self)
    }
}

/// Types [`super::dequant::dequantize_into`] decodes, in the order error messages list them.
pub(crate) const DEQUANTIZABLE: &[GgmlType] = {
    use GgmlType::*;
    &[
        F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
        IQ4_XS,
    ]
};

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for &(ty, id, _, _) in LAYOUTS {
            assert_eq!(GgmlType::from_id(id), Some(ty));
            assert_eq!(ty.id(), id);
        }
        assert_eq!(
            GgmlType::from_id(4),
            None,
            "id 4 (Q4_2) was removed from ggml"
        );
    }

    #[test]
    fn byte_sizes_follow_blocks() {
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::Q8_0.bytes_for(33), None);
        assert_eq!(GgmlType::F16.bytes_for(3), Some(6));
    }
}
