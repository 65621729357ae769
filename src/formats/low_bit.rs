//! Binary and ternary weights: choosing each group's scale, and the bit layouts of
//! [`WeightFormat::Binary`], [`WeightFormat::Ternary`] and [`WeightFormat::Ternary16`].
//!
//! Every layout puts four *consecutive* weights in the four bytes of a word at the same bit
//! position, so that one shift and one mask give them as bytes: a kernel then multiplies them
//! with four consecutive int8 activations (`dot4I8Packed`) or unpacks them to floats
//! (`unpack4xU8`) without reordering x.
//!
//! | format | weights / word | weight `i` of a word | code → value |
//! | --- | --- | --- | --- |
//! | binary | 32 | bit `8·(i % 4) + i / 4` | 0 → −1, 1 → +1 |
//! | ternary (2 bits) | 16 | bits `8·(i % 4) + 2·(i / 4)` | 0, 1, 2 → −1, 0, +1 |
//! | ternary16 (1.6 bits) | 20 | byte `i % 4`, base-3 digit `i / 4` (most significant first) | as ternary |
//!
//! A ternary16 byte holds five codes `t₀…t₄` as `v = Σ tⱼ·3⁴⁻ʲ` (0…242), stored as
//! `⌈v · 256 / 243⌉` (GGUF TQ1_0's trick): digit `j` is then `((b · 3ʲ) mod 256) · 3 / 256`,
//! a multiply, a mask and a shift, where dividing by powers of 3 would cost far more.
//!
//! Scales are f16 per (row, group of `group` weights along `k`), packed two per word like
//! int4's. A ternary group's scale is the least-squares one: for a sign pattern that keeps
//! the `j` largest magnitudes the best scale is their mean, and the best `j` maximises
//! `(Σ top j |w|)² / j`; codes are then rounded against the stored f16 scale. A binary
//! group's scale is its mean magnitude (the least-squares scale of the signs), around the
//! group's mean with [`WeightFormat::Binary`]'s `mean` (stored in `zeros`, decoding as
//! `s · (±1) + m`).
//!
//! Padding: ternary padding codes are 1 and decode to zero. Binary has no zero code, so its
//! rows have a scale (and mean) for every group of the padded row, zero past `k`'s last
//! group, and padding in a partial last group decodes to `±s + m` of that group, which never
//! reaches a result (x's padding is zero, as for the min formats of the module docs).

use super::{PackedWeights, WeightFormat, pack, row_words};
use half::f16;

/// Codes of ternary16 (five per byte), and the powers of three that extract them.
pub(super) const POW3: [u32; 5] = [1, 3, 9, 27, 81];

/// The least-squares ternary scale of `vals`: the mean of the `j` largest magnitudes for the
/// `j` that maximises `(Σ top j |w|)² / j`; 1 for an all-zero group.
pub fn ternary_scale(vals: &[f32]) -> f16 {
    let mut mags: Vec<f32> = vals.iter().map(|v| v.abs()).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    let (mut sum, mut best, mut scale) = (0f64, 0f64, 0f64);
    for (j, &m) in mags.iter().enumerate() {
        sum += m as f64;
        let gain = sum * sum / (j + 1) as f64;
        if gain > best {
            best = gain;
            scale = sum / (j + 1) as f64;
        }
    }
    if scale > 0.0 {
        nonzero_f16(scale as f32)
    } else {
        f16::ONE
    }
}

/// `v` as f16, never flushed to zero (a nonzero group keeps a nonzero scale).
fn nonzero_f16(v: f32) -> f16 {
    let s = f16::from_f32(v);
    if s.to_f32() > 0.0 {
        s
    } else {
        f16::MIN_POSITIVE_SUBNORMAL
    }
}

/// The ternary code (0, 1, 2 for −1, 0, +1) of `v` against scale `s`.
fn ternary_code(v: f32, s: f32) -> u32 {
    ((v / s).round().clamp(-1.0, 1.0) + 1.0) as u32
}

/// Binary scale and mean of `vals`: `m` = their mean (0 without `mean`), `s` = the mean
/// magnitude of `v − m`. Rounded to f16; `s` is 0 only for a group that is all `m`.
pub fn binary_params(vals: &[f32], mean: bool) -> (f16, f16) {
    let len = vals.len().max(1) as f64;
    let m = if mean {
        f16::from_f32((vals.iter().map(|&v| v as f64).sum::<f64>() / len) as f32)
    } else {
        f16::ZERO
    };
    let mf = m.to_f32() as f64;
    let s = vals.iter().map(|&v| (v as f64 - mf).abs()).sum::<f64>() / len;
    let s = if s > 0.0 {
        nonzero_f16(s as f32)
    } else {
        f16::ZERO
    };
    (s, m)
}

/// Scale and mean (zero but for binary with means) of a group of `vals` in the binary or
/// ternary `format`.
pub(super) fn group_params(format: WeightFormat, vals: &[f32]) -> (f16, f16) {
    match format {
        WeightFormat::Binary { mean, .. } => binary_params(vals, mean),
        _ => (ternary_scale(vals), f16::ZERO),
    }
}

/// The code of `v` in a group of scale `s` and mean `m`.
fn code_of(format: WeightFormat, v: f32, (s, m): (f16, f16)) -> u32 {
    match format {
        WeightFormat::Binary { .. } => (v - m.to_f32() >= 0.0) as u32,
        _ => ternary_code(v, s.to_f32()),
    }
}

/// What code `q` decodes to in a group of scale `s` and mean `m`, in the kernels' arithmetic.
fn decode(format: WeightFormat, q: u32, s: f32, m: f32) -> f32 {
    match format {
        WeightFormat::Binary { .. } => (2.0 * q as f32 - 1.0) * s + m,
        _ => (q as f32 - 1.0) * s,
    }
}

/// The value `v` is stored as in a group of scale and mean `params`: its code, decoded.
pub(super) fn round(format: WeightFormat, v: f32, params: (f16, f16)) -> f32 {
    let q = code_of(format, v, params);
    decode(format, q, params.0.to_f32(), params.1.to_f32())
}

/// Packs `w` (`n × k`) into a binary or ternary `format`, each group's scale (and mean)
/// chosen from its weights.
pub(super) fn pack(w: &[f32], n: usize, k: usize, format: WeightFormat) -> PackedWeights {
    let groups = format.groups(k);
    // Binary groups of the padded row past the last real one keep a zero scale and mean.
    let mut params = vec![(f16::ZERO, f16::ZERO); n * groups];
    for (row, p) in w.chunks(k).zip(params.chunks_mut(groups)) {
        row_params(format, row, p);
    }
    pack_with(w, n, k, format, &params)
}

/// The scale and mean of each group of one `row` into `out` (one item a group of the row;
/// groups of a binary row's padding are left as they are).
pub(super) fn row_params(format: WeightFormat, row: &[f32], out: &mut [(f16, f16)]) {
    let g = format.group().expect("low-bit formats are group-wise");
    for (p, vals) in out.iter_mut().zip(row.chunks(g)) {
        *p = group_params(format, vals);
    }
}

/// Packs `w` (`n × k`) into a binary or ternary `format` with the given scale and mean of
/// every (row, group) ([`WeightFormat::groups`] a row): each weight gets its nearest code.
pub(super) fn pack_with(
    w: &[f32],
    n: usize,
    k: usize,
    format: WeightFormat,
    params: &[(f16, f16)],
) -> PackedWeights {
    let rw = row_words(format, k);
    let g = format.group().expect("low-bit formats are group-wise");
    let groups = format.groups(k);
    let mut data = vec![0u32; n * rw];
    for r in 0..n {
        let row = &w[r * k..(r + 1) * k];
        let out = &mut data[r * rw..(r + 1) * rw];
        let codes: Vec<u32> = row
            .iter()
            .enumerate()
            .map(|(c, &v)| code_of(format, v, params[r * groups + c / g]))
            .collect();
        match format {
            WeightFormat::Binary { .. } => {
                for (c, _) in codes.iter().enumerate().filter(|(_, q)| **q == 1) {
                    let i = c % 32;
                    out[c / 32] |= 1 << (8 * (i % 4) + i / 4);
                }
            }
            WeightFormat::Ternary { .. } => {
                for c in 0..rw * 16 {
                    put_ternary(out, c, codes.get(c).copied().unwrap_or(1));
                }
            }
            WeightFormat::Ternary16 { .. } => {
                for (word, out_word) in out.iter_mut().enumerate() {
                    for byte in 0..4 {
                        let v = (0..5).fold(0u32, |v, digit| {
                            let c = word * 20 + 4 * digit + byte;
                            3 * v + codes.get(c).copied().unwrap_or(1)
                        });
                        *out_word |= (v * 256).div_ceil(243) << (8 * byte);
                    }
                }
            }
            _ => unreachable!("low_bit::pack packs binary and ternary formats"),
        }
    }
    let scales: Vec<u16> = params.iter().map(|p| p.0.to_bits()).collect();
    let mean = matches!(format, WeightFormat::Binary { mean: true, .. });
    PackedWeights {
        format,
        n,
        k,
        data,
        scales: pack::pack_halves(&scales),
        zeros: if mean {
            let means: Vec<u16> = params.iter().map(|p| p.1.to_bits()).collect();
            pack::pack_halves(&means)
        } else {
            Vec::new()
        },
    }
}

/// Sets weight `c` of a zeroed 2-bit ternary row to code `q` (0, 1, 2).
pub(crate) fn put_ternary(row: &mut [u32], c: usize, q: u32) {
    let i = c % 16;
    row[c / 16] |= q << (8 * (i % 4) + 2 * (i / 4));
}

/// The code (0/1 for binary; 0, 1, 2 for ternary) of weight `c` of a packed row.
pub(super) fn code(format: WeightFormat, row: &[u32], c: usize) -> u32 {
    match format {
        WeightFormat::Binary { .. } => {
            let i = c % 32;
            (row[c / 32] >> (8 * (i % 4) + i / 4)) & 1
        }
        WeightFormat::Ternary { .. } => {
            let i = c % 16;
            (row[c / 16] >> (8 * (i % 4) + 2 * (i / 4))) & 3
        }
        WeightFormat::Ternary16 { .. } => {
            let i = c % 20;
            let b = (row[c / 20] >> (8 * (i % 4))) & 0xFF;
            (((b * POW3[i / 4]) & 0xFF) * 3) >> 8
        }
        _ => unreachable!("low_bit::code decodes binary and ternary formats"),
    }
}

/// Weight `c` of row `r`, decoded as the kernels decode it.
pub(super) fn value(p: &PackedWeights, row: &[u32], r: usize, c: usize) -> f32 {
    let gi = r * p.groups() + c / p.format.group().expect("group-wise");
    let s = pack::half_f32(&p.scales, gi);
    let m = if p.format.has_half_zeros() {
        pack::half_f32(&p.zeros, gi)
    } else {
        0.0
    };
    decode(p.format, code(p.format, row, c), s, m)
}

/// Every weight of `p` (`n × k`), decoded as the kernels decode it.
pub(super) fn unpack(p: &PackedWeights) -> Vec<f32> {
    let rw = p.row_words();
    let mut out = Vec::with_capacity(p.n * p.k);
    for r in 0..p.n {
        let row = &p.data[r * rw..(r + 1) * rw];
        out.extend((0..p.k).map(|c| value(p, row, r, c)));
    }
    out
}
