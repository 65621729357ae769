//! Element packing and symmetric quantization shared by the sparse formats. The arithmetic is
//! the same as the dense formats' (round to nearest), so a sparse int8 row decodes to the same
//! weights as a dense int8 row with the same scale.

use super::ValueType;
use half::f16;

/// Words holding `elems` values of type `vt`, each word filled with zero codes so that any
/// padding decodes to zero.
pub(super) fn zeroed(vt: ValueType, elems: usize) -> Vec<u32> {
    let fill = match vt {
        ValueType::Int4 => 0x8888_8888,
        _ => 0,
    };
    vec![fill; elems.div_ceil(32 / vt.bits())]
}

/// Writes `code` as element `i` of an array of `b`-bit elements.
pub(super) fn put(words: &mut [u32], b: usize, i: usize, code: u32) {
    let per = 32 / b;
    let mask = if b == 32 { u32::MAX } else { (1 << b) - 1 };
    let sh = b * (i % per);
    let w = &mut words[i / per];
    *w = (*w & !(mask << sh)) | ((code & mask) << sh);
}

/// Reads element `i` of an array of `b`-bit elements.
pub(super) fn get(words: &[u32], b: usize, i: usize) -> u32 {
    let per = 32 / b;
    let mask = if b == 32 { u32::MAX } else { (1 << b) - 1 };
    (words[i / per] >> (b * (i % per))) & mask
}

/// Code of `v` quantized with scale `s` (ignored by the float types).
pub(super) fn encode(vt: ValueType, v: f32, s: f32) -> u32 {
    match vt {
        ValueType::F32 => v.to_bits(),
        ValueType::F16 => f16::from_f32(v).to_bits() as u32,
        ValueType::Int8 => (v / s).round().clamp(-127.0, 127.0) as i8 as u8 as u32,
        ValueType::Int4 => ((v / s).round() + 8.0).clamp(0.0, 15.0) as u32,
    }
}

/// Weight that `code` stands for with scale `s`.
pub(super) fn decode(vt: ValueType, code: u32, s: f32) -> f32 {
    match vt {
        ValueType::F32 => f32::from_bits(code),
        ValueType::F16 => f16::from_bits(code as u16).to_f32(),
        ValueType::Int8 => code as u8 as i8 as f32 * s,
        ValueType::Int4 => (code as f32 - 8.0) * s,
    }
}

/// int8 scale of values whose largest magnitude is `amax` (1 for an all-zero set).
pub(super) fn int8_scale(amax: f32) -> f32 {
    if amax > 0.0 { amax / 127.0 } else { 1.0 }
}

/// int4 scale (as stored) of values sharing one scale: the dense formats' choice
/// ([`crate::formats::int4::symmetric_scale`]), so sparse and dense int4 decode alike.
pub(super) fn int4_scale(vals: &[f32]) -> f16 {
    crate::formats::int4::symmetric_scale(vals)
}

/// Largest magnitude of `vals` (0 when empty).
pub(super) fn amax(vals: impl IntoIterator<Item = f32>) -> f32 {
    vals.into_iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// f16 number `i` of a packed f16 array, as f32.
pub(super) fn half(words: &[u32], i: usize) -> f32 {
    f16::from_bits(get(words, 16, i) as u16).to_f32()
}
