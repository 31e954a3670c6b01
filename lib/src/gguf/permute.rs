//! llama.cpp's converter reorders the rows of Llama-style `q_proj`/`k_proj` weights so its rotary
//! embedding can rotate adjacent pairs; Hugging Face models rotate the two halves of each head.
//! Within every head of `head_dim` rows, HF row `i * head_dim/2 + j` (i in {0, 1}) is stored
//! at GGUF row `2 * j + i` (`convert_hf_to_gguf.py`'s `permute`).

use crate::error::{Error, Result};

/// Undoes llama.cpp's row permutation of a `q_proj` (pass `n_head`) or `k_proj` (pass the
/// number of key/value heads) weight or bias, in place. `shape` is row-major: `[rows, cols]`
/// or `[rows]`.
///
/// ```
/// use tunebook::gguf::{permute_qk, unpermute_qk};
/// let mut rows: Vec<f32> = (0..8).map(|r| r as f32).collect(); // 8 rows of 1 value, 2 heads
/// permute_qk(&mut rows, &[8, 1], 2)?;
/// assert_eq!(rows, [0., 2., 1., 3., 4., 6., 5., 7.]);
/// unpermute_qk(&mut rows, &[8, 1], 2)?;
/// assert_eq!(rows, [0., 1., 2., 3., 4., 5., 6., 7.]);
/// # Ok::<(), tunebook::Error>(())
/// ```
pub fn unpermute_qk(rows_data: &mut [f32], shape: &[usize], n_head: usize) -> Result<()> {
    reorder_rows(rows_data, shape, n_head, Direction::GgufToHf)
}

/// Applies llama.cpp's row permutation (Hugging Face layout to GGUF layout), for export.
pub fn permute_qk(rows_data: &mut [f32], shape: &[usize], n_head: usize) -> Result<()> {
    reorder_rows(rows_data, shape, n_head, Direction::HfToGguf)
}

#[derive(Clone, Copy)]
enum Direction {
    HfToGguf,
    GgufToHf,
}

fn reorder_rows(
    data: &mut [f32],
    shape: &[usize],
    n_head: usize,
    direction: Direction,
) -> Result<()> {
    let (rows, cols) = match *shape {
        [rows] => (rows, 1),
        [rows, cols] => (rows, cols),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "q/k permutation needs a 1-D or 2-D shape, got {shape:?}"
            )))
        }
    };
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(Error::InvalidArgument(format!(
            "q/k permutation: shape {shape:?} does not match {} values",
            data.len()
        )));
    }
    if n_head == 0 || rows % (2 * n_head) != 0 {
        return Err(Error::InvalidArgument(format!(
            "q/k permutation: {rows} rows cannot be split into {n_head} heads of an even size"
        )));
    }
    if cols == 0 {
        return Ok(());
    }
    let half = rows / n_head / 2;
    let source = data.to_vec();
    for (out_head, in_head) in data
        .chunks_exact_mut(2 * half * cols)
        .zip(source.chunks_exact(2 * half * cols))
    {
        for i in 0..2 {
            for j in 0..half {
                let hf_row = i * half + j;
                let gguf_row = 2 * j + i;
                let (to, from) = match direction {
                    Direction::HfToGguf => (gguf_row, hf_row),
                    Direction::GgufToHf => (hf_row, gguf_row),
                };
                out_head[to * cols..(to + 1) * cols]
                    .copy_from_slice(&in_head[from * cols..(from + 1) * cols]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The converter's numpy expression, transcribed index by index:
    /// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
    fn numpy_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for h in 0..n_head {
            for j in 0..half {
                for i in 0..2 {
                    let row = h * 2 * half + i * half + j;
                    out.extend_from_slice(&w[row * cols..(row + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_the_converter_and_inverse_round_trips() {
        let (rows, cols, n_head) = (24, 5, 3);
        let original: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let mut data = original.clone();
        permute_qk(&mut data, &[rows, cols], n_head).unwrap();
        assert_eq!(data, numpy_permute(&original, rows, cols, n_head));
        assert_ne!(data, original);
        unpermute_qk(&mut data, &[rows, cols], n_head).unwrap();
        assert_eq!(data, original);

        unpermute_qk(&mut data, &[rows, cols], n_head).unwrap();
        permute_qk(&mut data, &[rows, cols], n_head).unwrap();
        assert_eq!(data, original);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let mut data = vec![0f32; 12];
        assert!(unpermute_qk(&mut data, &[12], 5).is_err());
        assert!(unpermute_qk(&mut data, &[6, 3], 3).is_err());
        assert!(unpermute_qk(&mut data, &[12], 0).is_err());
        assert!(unpermute_qk(&mut data, &[2, 2, 3], 1).is_err());
    }
}
