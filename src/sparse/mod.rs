//! Sparse weight formats on the host: conversion from a dense f32 matrix, packing into the GPU
//! layout, unpacking, and a CPU reference matmul `y = x · Wᵀ` with f64 accumulation.
//!
//! Every format stores a weight matrix `W` of `n × k` (`n` outputs, `k` inputs) and keeps
//! every array the GPU reads as `Vec<u32>` words, ready to upload as a storage buffer. Packed
//! sub-word elements are little-endian within a word: element `i` of an array of `b`-bit
//! elements lives in word `i / (32 / b)` at bit `b · (i % (32 / b))`, exactly like the dense
//! formats of [`crate::formats`]. An array may be empty (an all-zero matrix stores no values);
//! an upload must round such a buffer up to one word because wgpu refuses empty bindings.
//!
//! # Value types ([`ValueType`])
//!
//! | type | bits | decodes as | scale |
//! | --- | --- | --- | --- |
//! | f32 | 32 | IEEE f32 | – |
//! | f16 | 16 | IEEE f16 (round to nearest) | – |
//! | int8 | 8 | `q · s`, `q` two's complement in `[-127, 127]` | f32, see the format |
//! | int4 | 4 | `(u − 8) · s`, `u` unsigned nibble | f16, see the format |
//!
//! Quantization is symmetric, so a zero weight is stored exactly as zero. f16 and int4 refuse
//! weights above `f16::MAX` (65504) in magnitude rather than storing an infinity.
//!
//! # [`Csr`]: compressed sparse rows (f32 or f16 values)
//!
//! * `row_ptr`: `n + 1` u32, row `r` owns elements `row_ptr[r]..row_ptr[r + 1]`.
//! * `col_idx`: one column index per element, 16-bit (two per word, even element in the low
//!   half) when `k ≤ 65536`, else 32-bit; [`Csr::index_bits`] says which.
//! * `values`: one value per element, f32 one per word or f16 two per word.
//!
//! Rows are not padded: the GPU kernel ([`gpu`]) reads elements in aligned units of eight
//! (one 16-byte vector of u16 indices, one of f16 values), lane `l` of a team taking unit
//! `row_ptr[r] / 8 + l`, `+ l + 32`, ..., and masks the elements of a row's first and last
//! unit that belong to its neighbours; the arrays are padded to whole units on upload.
//!
//! # [`Bsr`]: block-sparse rows (f32, f16, int8, int4 values)
//!
//! The matrix is cut into blocks of `block_rows × block_cols` (`br × bc`, any sizes ≥ 1, e.g.
//! `1 × 32` for matrix–vector products or `16 × 16` for tiles). Neither `n` nor `k` need be a
//! multiple of the block: edge blocks are padded with zeros (rows `≥ n`, columns `≥ k`), which
//! are stored and decode to exactly zero; a kernel must not write outputs of rows `≥ n` and must
//! clamp or guard reads of `x` at columns `≥ k`. A block is stored when it holds at least one
//! non-zero weight.
//!
//! * `row_ptr`: `ceil(n / br) + 1` u32, block row `R` owns blocks `row_ptr[R]..row_ptr[R + 1]`.
//! * `block_col`: one u32 per stored block, its block column `C` (its first weight column is
//!   `C · bc`), ascending within a block row.
//! * `values`: block `b` is contiguous at words `b · block_words ..`, its `br · bc` elements
//!   row-major (element `rr · bc + cc` is weight `[R·br + rr, C·bc + cc]`). `block_words` is
//!   rounded up to a multiple of 4 so that every block starts on a 16-byte boundary and is read
//!   with `vec4<u32>` loads; the tail elements are zero codes and never decoded.
//! * `scales`: int8: one f32 (bits) per *output row* of `W` (`n` words), so a kernel multiplies
//!   a row's accumulated sum once instead of once per block. int4: one f16 per (stored block,
//!   row of the block): the group is the block width `bc` along `k`; block `b` row `rr` uses
//!   f16 number `b · br + rr`, two per word. Empty for f32 and f16.
//!
//! # [`TwoFour`]: 2:4 compressed (f32, f16, int8, int4 values)
//!
//! Each row is cut into `G = ceil(k / 4)` groups of four consecutive columns (the last one
//! zero-padded when `k` is not a multiple of 4); each group keeps exactly two slots, so a row
//! has `2G` stored values. A group with more than two non-zeros is refused.
//!
//! * `values`: row-major, row `r` at words `r · row_value_words()`, slot `2g + j` of the row is
//!   the `j`-th kept value of group `g`. Rows are padded to a multiple of 16 bytes (zero codes).
//! * `meta`: two 2-bit positions (0..=3 within the group) per group, 4 bits a group, 8 groups a
//!   word: group `g` of row `r` is in word `r · row_meta_words() + g / 8` at bit `4 · (g % 8)`,
//!   first position in the low two bits, second in the next two; positions are strictly
//!   ascending. Rows are padded to a multiple of 16 bytes, so one `vec4<u32>` of metadata covers
//!   32 groups (128 columns).
//! * Slots: the non-zeros of the group, completed with zeros at the lowest free positions. A
//!   zero slot of the padded last group may point at a column `≥ k`: a kernel clamps the
//!   column to `k − 1` (the value is zero) or zero-pads `x`.
//! * `scales`: int8: one f32 (bits) per row (`n` words). int4: one f16 per 32 consecutive slots
//!   of a row ([`TwoFour::INT4_GROUP`], i.e. 16 groups, 64 columns): row `r` group `s` is f16
//!   number `r · scale_groups() + s`, two per word. Empty for f32 and f16.

mod bsr;
mod choose;
mod concat;
mod csr;
pub mod gpu;
mod two_four;
mod validate;
mod values;
mod weights;

pub use bsr::{Bsr, check_kernel_block};
pub use choose::{
    Candidate, CostModel, FormatChoice, Representation, choose, representation_bytes,
};
pub use csr::Csr;
pub use gpu::{BinShape, SparseLinear, SparsePath, SparseTuning};
pub use two_four::TwoFour;
pub use weights::SparseWeights;

use crate::error::{Error, Result};

/// Element type of the values a sparse format stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum ValueType {
    /// 32-bit floats: conversion is exact.
    F32,
    /// 16-bit floats (round to nearest).
    F16,
    /// Symmetric int8; where the scale lives depends on the format.
    Int8,
    /// Symmetric int4 (nibble − 8) with f16 scales; the group depends on the format.
    Int4,
}

impl ValueType {
    /// Bits per stored value.
    pub fn bits(self) -> usize {
        match self {
            ValueType::F32 => 32,
            ValueType::F16 => 16,
            ValueType::Int8 => 8,
            ValueType::Int4 => 4,
        }
    }

    /// The value type named `s` ([`ValueType::name`]).
    pub fn parse(s: &str) -> Result<Self> {
        [
            ValueType::F32,
            ValueType::F16,
            ValueType::Int8,
            ValueType::Int4,
        ]
        .into_iter()
        .find(|v| v.name() == s)
        .ok_or_else(|| Error::invalid(format!("unknown value type '{s}' (f32, f16, int8, int4)")))
    }

    /// Short name: `f32`, `f16`, `int8`, `int4`.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::F32 => "f32",
            ValueType::F16 => "f16",
            ValueType::Int8 => "int8",
            ValueType::Int4 => "int4",
        }
    }
}

/// Checks a dense `n × k` matrix: non-empty, the right length, finite values.
pub(crate) fn check_matrix(w: &[f32], n: usize, k: usize) -> Result<()> {
    if n == 0 || k == 0 {
        return Err(Error::invalid(format!("empty weight matrix ({n} × {k})")));
    }
    if n.checked_mul(k) != Some(w.len()) {
        return Err(Error::shape(format!(
            "weight data has {} values, expected {n} × {k}",
            w.len()
        )));
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "weight [{}, {}] is {} (not finite)",
            i / k,
            i % k,
            w[i]
        )));
    }
    Ok(())
}

/// Checks that every weight fits the value type (f16 and int4 scales overflow past f16::MAX).
fn check_range(w: &[f32], k: usize, vt: ValueType) -> Result<()> {
    if matches!(vt, ValueType::F16 | ValueType::Int4) {
        let max = half::f16::MAX.to_f32();
        if let Some(i) = w.iter().position(|v| v.abs() > max) {
            return Err(Error::invalid(format!(
                "weight [{}, {}] = {} does not fit {} (|w| ≤ {max})",
                i / k,
                i % k,
                w[i],
                vt.name()
            )));
        }
    }
    Ok(())
}

/// Dense `n × k` matrix from a visitor of stored entries `(row, col, value)`.
fn dense_from(
    n: usize,
    k: usize,
    visit: impl FnOnce(&mut dyn FnMut(usize, usize, f32)),
) -> Vec<f32> {
    let mut out = vec![0f32; n * k];
    visit(&mut |r, c, v| out[r * k + c] = v);
    out
}

/// `y = x · Wᵀ` (`m × n`) over the stored entries, f64 accumulation. The visitor yields each
/// row's entries by ascending column, so the sum runs in the same order as
/// [`crate::reference::linear`] on the dense matrix.
fn matmul_from(
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    visit: impl FnOnce(&mut dyn FnMut(usize, usize, f32)),
) -> Result<Vec<f64>> {
    if m.checked_mul(k) != Some(x.len()) {
        return Err(Error::shape(format!(
            "input has {} values, expected {m} × {k}",
            x.len()
        )));
    }
    let mut y = vec![0f64; m * n];
    visit(&mut |r, c, v| {
        for i in 0..m {
            y[i * n + r] += x[i * k + c] as f64 * v as f64;
        }
    });
    Ok(y)
}

/// Converts a count to a u32 array entry, refusing formats that would overflow one.
fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(format!("{what} = {v} does not fit in u32")))
}
