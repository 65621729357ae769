// f16 weights, two per word: a block is 8 halves. Unpacked in the shader, so no SHADER_F16 needed.
const BLOCK_VEC4: u32 = 2u;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    return vec2<f32>(1.0, 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(wv[2u * j]), unpack2x16float(wv[2u * j + 1u]));
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return sz.x;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
