// int8 weights, four per word, one f32 scale per row: a block is 16 weights.
const BLOCK_VEC4: u32 = 4u;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    return vec2<f32>(1.0, 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    // Flipping the sign bit maps i8 b to the unsigned byte b + 128; OR-ing that into the
    // mantissa of 2^23 gives 2^23 + 128 + b exactly, avoiding a slow int-to-float conversion.
    let v = wv[j] ^ 0x80808080u;
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388736.0);
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return sz.x;
}

fn row_scale(row: u32) -> f32 {
    return bitcast<f32>(scales[row]);
}
