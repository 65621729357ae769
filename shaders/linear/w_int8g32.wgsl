// int8 weights, four per word, one f16 scale per group of 32 weights along k (GGUF's Q8_0):
// a block is 16 weights, half a group.
const BLOCK_VEC4: u32 = 4u;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    let g = row * p.groups + blk / 2u;
    return vec2<f32>(unpack2x16float(scales[g >> 1u])[g & 1u], 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    // As w_int8.wgsl: the sign flip and the mantissa of 2^23 convert the bytes exactly.
    let v = wv[j] ^ 0x80808080u;
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388736.0);
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return sz.x;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
