// Binary weights: sign bits, thirty-two per word, with an f16 scale (and, with MEAN, an f16
// mean) per group of GROUP weights along k (src/formats/low_bit.rs); a weight decodes as
// ±s + m. A block is 128 weights and may hold several groups (GROUP is 32, 64 or 128), so the
// block state is the index of its first group and decode applies each word's own scale: the
// kernels' block scale is 1. Weight i of a word sits at bit 8 * (i % 4) + i / 4.
const BLOCK_VEC4: u32 = 32u;
override GROUP: u32 = 128u;
override MEAN: bool = false;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(row * p.groups + blk * (128u / GROUP)), 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    let g = bitcast<u32>(sz.x) + (4u * j) / GROUP;
    let s = unpack2x16float(scales[g >> 1u])[g & 1u];
    var m = 0.0;
    if (MEAN) {
        m = unpack2x16float(zeros[g >> 1u])[g & 1u];
    }
    let v = wv[j >> 3u] >> (j & 7u);
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    // 2^23 + q exactly (see w_int4.wgsl), then 2q - 1 = ±1.
    let qf = bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0);
    return (2.0 * qf - 1.0) * s + m;
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return 1.0;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
