// Ternary weights, five base-3 codes per byte (1.6 bits a weight), twenty per word, with an
// f16 scale per group of GROUP weights along k (src/formats/low_bit.rs): a block is 80
// weights and never straddles a group (GROUP is 80, 160 or 320). Byte b of a word holds
// weights b, b + 4, ..., b + 16 as the digits of ceil(v * 256 / 243): digit d is
// ((byte * 3^d) mod 256) * 3 / 256, most significant first.
const BLOCK_VEC4: u32 = 20u;
override GROUP: u32 = 160u;
const POW3 = array<u32, 5>(1u, 3u, 9u, 27u, 81u);

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    let g = row * p.groups + (blk * 80u) / GROUP;
    return vec2<f32>(unpack2x16float(scales[g >> 1u])[g & 1u], 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    let b = (vec4<u32>(wv[j / 5u]) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    let q = (((b * POW3[j % 5u]) & vec4<u32>(255u)) * 3u) >> vec4<u32>(8u);
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388609.0);
}

fn block_scale(sz: vec2<f32>) -> f32 {
    return sz.x;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
