// Ternary weights {-1, 0, +1} as 2-bit codes 0, 1, 2, sixteen per word, with an f16 scale per
// group of GROUP weights along k (src/formats/low_bit.rs): a block is 64 weights and never
// straddles a group (GROUP is 64, 128 or 256). Weight i of a word sits at bit
// 8 * (i % 4) + 2 * (i / 4), so one shift and mask give four consecutive weights as bytes.
const BLOCK_VEC4: u32 = 16u;
override GROUP: u32 = 128u;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    let g = row * p.groups + (blk * 64u) / GROUP;
    return vec2<f32>(unpack2x16float(scales[g >> 1u])[g & 1u], 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    let v = wv[j >> 2u] >> (2u * (j & 3u));
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u);
    // 2^23 + q exactly (see w_int4.wgsl), less 2^23 + 1: the code's value.
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388609.0);
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return sz.x;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
