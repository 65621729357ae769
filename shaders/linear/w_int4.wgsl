// int4 weights, eight per word, f16 scale (and optional 4-bit zero point) per group of GROUP
// weights along k: a block is 32 weights and never straddles a group (GROUP is 32, 64 or 128).
const BLOCK_VEC4: u32 = 8u;
override GROUP: u32 = 32u;
override ASYM: bool = false;

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    let g = row * p.groups + (blk * 32u) / GROUP;
    let s = unpack2x16float(scales[g >> 1u])[g & 1u];
    var z = 8.0;
    if (ASYM) {
        z = f32((zeros[g >> 3u] >> (4u * (g & 7u))) & 15u);
    }
    return vec2<f32>(s, z);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    let v = wv[j >> 1u] >> (16u * (j & 1u));
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    // OR-ing a small integer into the mantissa of 2^23 gives 2^23 + q exactly: two full-rate
    // operations instead of a slow integer-to-float conversion.
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0 + sz.y);
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return sz.x;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
