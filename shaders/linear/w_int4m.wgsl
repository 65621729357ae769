// int4 weights, eight per word, with an f16 scale d and an f16 minimum m per group of GROUP
// weights along k, decoding as q · d + m (GGUF's Q4_1): a block is 32 weights and never
// straddles a group. The minimum is added per weight, so decode returns finished weights and
// the kernels' block scale is 1.
const BLOCK_VEC4: u32 = 8u;
override GROUP: u32 = 32u;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    let g = row * p.groups + (blk * 32u) / GROUP;
    let d = unpack2x16float(scales[g >> 1u])[g & 1u];
    let m = unpack2x16float(zeros[g >> 1u])[g & 1u];
    return vec2<f32>(d, m);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    let v = wv[j >> 1u] >> (16u * (j & 1u));
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    // 2^23 + q exactly (see w_int4.wgsl), then q · d + m. The host rounds the product and
    // then the sum; a driver may fuse them into one rounding, which differs by at most one
    // rounding of the weight.
    let qf = bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0);
    return qf * sz.x + sz.y;
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return 1.0;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
