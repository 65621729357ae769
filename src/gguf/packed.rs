//! GGUF tensors as sparq weight matrices, losslessly: every supported ggml type has a sparq
//! format that decodes to the same f32 values, bit for bit ([`super::Gguf::dequantize`]).
//!
//! | ggml | sparq | how |
//! | --- | --- | --- |
//! | F32 | f32 | copied |
//! | F16 | f16 | copied |
//! | BF16 | f32 | widened (exact) |
//! | Q8_0 | int8g32 | quants and f16 scales copied |
//! | Q4_0 | int4g32 (zero point 8) | nibbles reordered, f16 scales copied |
//! | Q4_1 | int4g32m | nibbles reordered, f16 scales and minimums copied |
//! | TQ2_0 | ternaryg256 | 2-bit codes re-laid, f16 scales copied |
//! | TQ1_0 | ternaryg256 | trits decoded from base 3 and re-laid in 2 bits, f16 scales copied |
//!
//! ggml's 4-bit blocks hold element `j` in the low nibble of byte `j` and element `j + 16` in
//! its high nibble; sparq's rows run along `k` from the low nibble of each word. The ternary
//! blocks (256 weights, one scale `d`) are one sparq group each, their trits exactly kept;
//! a TQ2_0 code 3 (no trit, which ggml never writes) is refused.

use super::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockTQ1_0, BlockTQ2_0, GgmlType, Gguf};
use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat, low_bit, row_words};

/// Tensor `name` of `file` (1-D: one row; 2-D: `[n, k]`, `k` the row length) in the sparq
/// format its type maps onto (see the module documentation); `unsupported type X in tensor
/// Y` for any other type, an error for more than two dimensions or quantized rows that are
/// not whole blocks.
pub fn packed_weights(file: &Gguf, name: &str) -> Result<PackedWeights> {
    let t = file.tensor(name)?;
    let unsupported = || super::types::unsupported(t.ty, name).prefixed(file.source());
    // Before the block check, which would otherwise speak of an unsupported type's blocks.
    if !super::types::SUPPORTED_TYPES.contains(&t.ty) {
        return Err(unsupported());
    }
    let what = |msg: String| Error::gguf(format!("{}: tensor '{name}': {msg}", file.source()));
    if t.dims.len() > 2 {
        return Err(what(format!(
            "{} dimensions, a weight matrix has at most 2",
            t.dims.len()
        )));
    }
    let (n, k) = (t.rows(), t.row_len());
    if n == 0 || k == 0 {
        return Err(what(format!("empty ({n} × {k})")));
    }
    let block = t.ty.block_len() as usize;
    if !k.is_multiple_of(block) {
        return Err(what(format!(
            "rows of {k} values are not whole {} blocks of {block}",
            t.ty
        )));
    }
    let bytes = file.tensor_bytes(name)?;
    let halves = |b: &[u8]| -> Vec<u16> {
        b.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    };
    let dense = |format, data: Vec<u32>| PackedWeights {
        format,
        n,
        k,
        data,
        scales: Vec::new(),
        zeros: Vec::new(),
    };
    Ok(match t.ty {
        GgmlType::F32 => {
            let w: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            dense(
                WeightFormat::F32,
                pad_rows(&w, n, k, row_words(WeightFormat::F32, k)),
            )
        }
        GgmlType::BF16 => {
            let w: Vec<u32> = halves(bytes).iter().map(|&h| (h as u32) << 16).collect();
            dense(
                WeightFormat::F32,
                pad_rows(&w, n, k, row_words(WeightFormat::F32, k)),
            )
        }
        GgmlType::F16 => {
            let h = halves(bytes);
            let rw = row_words(WeightFormat::F16, k);
            let mut data = vec![0u32; n * rw];
            for r in 0..n {
                for c in 0..k {
                    data[r * rw + c / 2] |= (h[r * k + c] as u32) << (16 * (c % 2));
                }
            }
            dense(WeightFormat::F16, data)
        }
        GgmlType::Q8_0 => {
            let blocks = file.blocks::<BlockQ8_0>(name)?;
            // Rows are whole blocks of 32 = 8 words each, so blocks simply follow each other.
            let data = blocks
                .iter()
                .flat_map(|b| {
                    b.qs.chunks_exact(4).map(|q| {
                        u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
                    })
                })
                .collect();
            let d: Vec<u16> = blocks.iter().map(|b| u16::from_le_bytes(b.d)).collect();
            PackedWeights {
                format: WeightFormat::Int8G32,
                n,
                k,
                data,
                scales: pack_halves(&d),
                zeros: Vec::new(),
            }
        }
        GgmlType::Q4_0 => {
            let blocks = file.blocks::<BlockQ4_0>(name)?;
            let d: Vec<u16> = blocks.iter().map(|b| u16::from_le_bytes(b.d)).collect();
            PackedWeights {
                format: WeightFormat::Int4 {
                    group: 32,
                    asymmetric: false,
                },
                n,
                k,
                data: blocks.iter().flat_map(|b| nibbles(&b.qs)).collect(),
                scales: pack_halves(&d),
                zeros: Vec::new(),
            }
        }
        GgmlType::Q4_1 => {
            let blocks = file.blocks::<BlockQ4_1>(name)?;
            let d: Vec<u16> = blocks.iter().map(|b| u16::from_le_bytes(b.d)).collect();
            let m: Vec<u16> = blocks.iter().map(|b| u16::from_le_bytes(b.m)).collect();
            PackedWeights {
                format: WeightFormat::Int4Min { group: 32 },
                n,
                k,
                data: blocks.iter().flat_map(|b| nibbles(&b.qs)).collect(),
                scales: pack_halves(&d),
                zeros: pack_halves(&m),
            }
        }
        GgmlType::TQ1_0 => {
            let blocks = file.blocks::<BlockTQ1_0>(name)?;
            let d: Vec<u16> = blocks.iter().map(|b| u16::from_le_bytes(b.d)).collect();
            ternary(n, k, blocks.iter().map(|b| b.codes()), &d)
        }
        GgmlType::TQ2_0 => {
            let blocks = file.blocks::<BlockTQ2_0>(name)?;
            let d: Vec<u16> = blocks.iter().map(|b| u16::from_le_bytes(b.d)).collect();
            let codes = blocks
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    b.codes().map_err(|e| {
                        super::types::tq2_code3(name, 256 * i + e).prefixed(file.source())
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            ternary(n, k, codes.into_iter(), &d)
        }
        _ => return Err(unsupported()),
    })
}

/// Blocks of 256 trits with their f16 scales `d` as [`WeightFormat::Ternary`] of group 256:
/// rows are whole blocks and sparq's blocks of 64, so blocks follow each other unpadded.
fn ternary(
    n: usize,
    k: usize,
    blocks: impl Iterator<Item = [u8; 256]>,
    d: &[u16],
) -> PackedWeights {
    let format = WeightFormat::Ternary { group: 256 };
    debug_assert_eq!(row_words(format, k) * n, 16 * d.len());
    let mut data = vec![0u32; 16 * d.len()];
    for (words, codes) in data.chunks_exact_mut(16).zip(blocks) {
        for (c, &q) in codes.iter().enumerate() {
            low_bit::put_ternary(words, c, q as u32);
        }
    }
    PackedWeights {
        format,
        n,
        k,
        data,
        scales: pack_halves(d),
        zeros: Vec::new(),
    }
}

/// Rows of `k` words padded with zeros to `rw` words each.
fn pad_rows(w: &[u32], n: usize, k: usize, rw: usize) -> Vec<u32> {
    let mut data = vec![0u32; n * rw];
    for r in 0..n {
        data[r * rw..r * rw + k].copy_from_slice(&w[r * k..(r + 1) * k]);
    }
    data
}

/// One ggml 4-bit block's 32 codes as four words of sparq's layout (element `c` at nibble
/// `c % 8` of word `c / 8`).
fn nibbles(qs: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    for c in 0..32 {
        let q = if c < 16 { qs[c] & 0xF } else { qs[c - 16] >> 4 };
        out[c / 8] |= (q as u32) << (4 * (c % 8));
    }
    out
}

fn pack_halves(h: &[u16]) -> Vec<u32> {
    h.chunks(2)
        .map(|p| p[0] as u32 | (p.get(1).copied().unwrap_or(0) as u32) << 16)
        .collect()
}
