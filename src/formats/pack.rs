//! Per-format packing and unpacking (round to nearest everywhere; int4 scales from
//! [`super::int4`]).

use super::{PackedWeights, WeightFormat, int4, row_words};
use half::f16;

pub(super) fn pack(w: &[f32], n: usize, k: usize, format: WeightFormat) -> PackedWeights {
    let rw = row_words(format, k);
    let mut data = vec![0u32; n * rw];
    let mut scales = Vec::new();
    let zeros = Vec::new();
    match format {
        WeightFormat::F32 => {
            for r in 0..n {
                for c in 0..k {
                    data[r * rw + c] = w[r * k + c].to_bits();
                }
            }
        }
        WeightFormat::F16 => {
            for r in 0..n {
                for c in 0..k {
                    let h = f16::from_f32(w[r * k + c]).to_bits() as u32;
                    data[r * rw + c / 2] |= h << (16 * (c % 2));
                }
            }
        }
        WeightFormat::Int8 => {
            for r in 0..n {
                let row = &w[r * k..(r + 1) * k];
                let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                scales.push(s.to_bits());
                for (c, v) in row.iter().enumerate() {
                    let q = (v / s).round().clamp(-127.0, 127.0) as i8 as u8 as u32;
                    data[r * rw + c / 4] |= q << (8 * (c % 4));
                }
            }
        }
        WeightFormat::Int4 { group, asymmetric } => {
            let params = int4::all_group_params(w, n, k, group as usize, asymmetric);
            return pack_int4(w, n, k, format, &params);
        }
        WeightFormat::Int8G32 => return pack_int8_g32(w, n, k),
        WeightFormat::Int4Min { group } => return pack_int4_min(w, n, k, group as usize),
        WeightFormat::Binary { .. }
        | WeightFormat::Ternary { .. }
        | WeightFormat::Ternary16 { .. } => {
            unreachable!("low-bit formats are packed by formats::low_bit")
        }
    }
    PackedWeights {
        format,
        n,
        k,
        data,
        scales,
        zeros,
    }
}

/// Packs `w` into the int4 `format` with the given scale and zero point of every group
/// (row-major by group), each weight rounded to its nearest code.
pub(super) fn pack_int4(
    w: &[f32],
    n: usize,
    k: usize,
    format: WeightFormat,
    params: &[(f16, u8)],
) -> PackedWeights {
    let WeightFormat::Int4 { group, asymmetric } = format else {
        unreachable!("pack_int4 packs int4 formats")
    };
    let rw = row_words(format, k);
    let mut data = vec![0u32; n * rw];
    let g = group as usize;
    let groups = k.div_ceil(g);
    let mut halves = Vec::with_capacity(n * groups);
    let mut nibbles = Vec::with_capacity(n * groups);
    for r in 0..n {
        for gi in 0..groups {
            let c0 = gi * g;
            let c1 = (c0 + g).min(k);
            let vals = &w[r * k + c0..r * k + c1];
            let (s, z) = params[r * groups + gi];
            halves.push(s.to_bits());
            nibbles.push(z as u32);
            let sf = s.to_f32();
            for (j, v) in vals.iter().enumerate() {
                let q = ((v / sf).round() + z as f32).clamp(0.0, 15.0) as u32;
                let c = c0 + j;
                data[r * rw + c / 8] |= q << (4 * (c % 8));
            }
        }
        // Padding decodes to zero: its nibble must equal the zero point of its group.
        for c in k..k.next_multiple_of(32) {
            let z = nibbles[r * groups + (groups - 1).min(c / g)];
            data[r * rw + c / 8] |= z << (4 * (c % 8));
        }
    }
    PackedWeights {
        format,
        n,
        k,
        data,
        scales: pack_halves(&halves),
        zeros: if asymmetric {
            pack_nibbles(&nibbles)
        } else {
            Vec::new()
        },
    }
}

/// Int8 in groups of 32 as ggml's `quantize_row_q8_0` does it: `d` = the group's largest
/// magnitude / 127 rounded to f16, each weight rounded to its nearest multiple of `d`.
/// Padding bytes are 0 and decode to exactly zero.
fn pack_int8_g32(w: &[f32], n: usize, k: usize) -> PackedWeights {
    let format = WeightFormat::Int8G32;
    let rw = row_words(format, k);
    let groups = k.div_ceil(32);
    let mut data = vec![0u32; n * rw];
    let mut halves = Vec::with_capacity(n * groups);
    for r in 0..n {
        for gi in 0..groups {
            let (c0, c1) = (gi * 32, (gi * 32 + 32).min(k));
            let vals = &w[r * k + c0..r * k + c1];
            let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = f16::from_f32(amax / 127.0);
            halves.push(d.to_bits());
            let df = d.to_f32();
            for (j, v) in vals.iter().enumerate() {
                let q = if df == 0.0 {
                    0
                } else {
                    (v / df).round().clamp(-127.0, 127.0) as i8 as u8 as u32
                };
                let c = c0 + j;
                data[r * rw + c / 4] |= q << (8 * (c % 4));
            }
        }
    }
    PackedWeights {
        format,
        n,
        k,
        data,
        scales: pack_halves(&halves),
        zeros: Vec::new(),
    }
}

/// u4 with a scale and a minimum per group as ggml's `quantize_row_q4_1` does it: `m` = the
/// group's minimum, `d` = its range / 15 (both rounded to f16), each weight rounded to its
/// nearest code against the rounded `d` and `m`. Padding codes are 0 (see the module
/// documentation).
fn pack_int4_min(w: &[f32], n: usize, k: usize, g: usize) -> PackedWeights {
    let format = WeightFormat::Int4Min { group: g as u32 };
    let rw = row_words(format, k);
    let groups = k.div_ceil(g);
    let mut data = vec![0u32; n * rw];
    let mut ds = Vec::with_capacity(n * groups);
    let mut ms = Vec::with_capacity(n * groups);
    for r in 0..n {
        for gi in 0..groups {
            let (c0, c1) = (gi * g, (gi * g + g).min(k));
            let vals = &w[r * k + c0..r * k + c1];
            let lo = vals.iter().fold(f32::INFINITY, |m, &v| m.min(v));
            let hi = vals.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let (d, m) = (f16::from_f32((hi - lo) / 15.0), f16::from_f32(lo));
            ds.push(d.to_bits());
            ms.push(m.to_bits());
            let (df, mf) = (d.to_f32(), m.to_f32());
            for (j, v) in vals.iter().enumerate() {
                let q = if df == 0.0 {
                    0
                } else {
                    ((v - mf) / df).round().clamp(0.0, 15.0) as u32
                };
                let c = c0 + j;
                data[r * rw + c / 8] |= q << (4 * (c % 8));
            }
        }
    }
    PackedWeights {
        format,
        n,
        k,
        data,
        scales: pack_halves(&ds),
        zeros: pack_halves(&ms),
    }
}

pub(super) fn pack_halves(h: &[u16]) -> Vec<u32> {
    let mut out = vec![0u32; h.len().div_ceil(2)];
    for (i, &v) in h.iter().enumerate() {
        out[i / 2] |= (v as u32) << (16 * (i % 2));
    }
    out
}

pub(super) fn pack_nibbles(z: &[u32]) -> Vec<u32> {
    let mut out = vec![0u32; z.len().div_ceil(8)];
    for (i, &v) in z.iter().enumerate() {
        out[i / 8] |= (v & 0xF) << (4 * (i % 8));
    }
    out
}

pub(super) fn half_at(words: &[u32], i: usize) -> u16 {
    (words[i / 2] >> (16 * (i % 2))) as u16
}

/// The f16 at index `i` of a packed f16 array, as f32.
pub(super) fn half_f32(words: &[u32], i: usize) -> f32 {
    f16::from_bits(half_at(words, i)).to_f32()
}

pub(super) fn nibble_at(words: &[u32], i: usize) -> u32 {
    (words[i / 8] >> (4 * (i % 8))) & 0xF
}

/// Halves `i0..i1` of a packed f16 array, re-packed from index 0.
pub(super) fn halves_of(words: &[u32], i0: usize, i1: usize) -> Vec<u32> {
    pack_halves(&(i0..i1).map(|i| half_at(words, i)).collect::<Vec<_>>())
}

/// Nibbles `i0..i1` of a packed u4 array, re-packed from index 0.
pub(super) fn nibbles_of(words: &[u32], i0: usize, i1: usize) -> Vec<u32> {
    pack_nibbles(&(i0..i1).map(|i| nibble_at(words, i)).collect::<Vec<_>>())
}

pub(super) fn unpack(p: &PackedWeights) -> Vec<f32> {
    let (n, k, rw) = (p.n, p.k, p.row_words());
    let mut out = vec![0f32; n * k];
    for r in 0..n {
        let row = &p.data[r * rw..(r + 1) * rw];
        for c in 0..k {
            out[r * k + c] = match p.format {
                WeightFormat::F32 => f32::from_bits(row[c]),
                WeightFormat::F16 => f16::from_bits((row[c / 2] >> (16 * (c % 2))) as u16).to_f32(),
                WeightFormat::Int8 => {
                    let q = (row[c / 4] >> (8 * (c % 4))) as u8 as i8;
                    q as f32 * f32::from_bits(p.scales[r])
                }
                WeightFormat::Int4 { group, asymmetric } => {
                    let gi = r * p.groups() + c / group as usize;
                    let q = (row[c / 8] >> (4 * (c % 8))) & 0xF;
                    let z = if asymmetric {
                        nibble_at(&p.zeros, gi)
                    } else {
                        8
                    };
                    let s = f16::from_bits(half_at(&p.scales, gi)).to_f32();
                    (q as f32 - z as f32) * s
                }
                WeightFormat::Int8G32 => {
                    let q = (row[c / 4] >> (8 * (c % 4))) as u8 as i8;
                    q as f32 * half_f32(&p.scales, r * p.groups() + c / 32)
                }
                WeightFormat::Int4Min { group } => {
                    let gi = r * p.groups() + c / group as usize;
                    let q = (row[c / 8] >> (4 * (c % 8))) & 0xF;
                    q as f32 * half_f32(&p.scales, gi) + half_f32(&p.zeros, gi)
                }
                WeightFormat::Binary { .. }
                | WeightFormat::Ternary { .. }
                | WeightFormat::Ternary16 { .. } => {
                    unreachable!("low-bit formats are unpacked by formats::low_bit")
                }
            };
        }
    }
    out
}
