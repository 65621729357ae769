// int8 weights, four per word, one f32 scale per row: a block is 16 weights.
const BLOCK_VEC4: u32 = 4u;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    return vec2<f32>(1.0, 0.0);
}

fn decode(wv: vec4<u32>, j: u32, zero: f32) -> vec4<f32> {
    let v = wv[j];
    // Shift each byte to the top, then an arithmetic shift back sign-extends it.
    let b = bitcast<vec4<i32>>(vec4<u32>(v << 24u, v << 16u, v << 8u, v)) >> vec4<u32>(24u);
    return vec4<f32>(b);
}

fn row_scale(row: u32) -> f32 {
    return bitcast<f32>(scales[row]);
}
