// Binary weights: sign bits, thirty-two per word, with an f16 scale (and, with MEAN, an f16
// mean) per group of GROUP weights along k (src/formats/low_bit.rs); a weight decodes as
// ±s + m. Weight i of a word sits at bit 8 * (i % 4) + i / 4.
//
// A block is 128 weights. With GROUP = 128 it is one group, and the block state is its (s, m):
// decode reads no scale, and without MEAN it returns the signs, the kernels applying s once per
// block as the block scale. With GROUP = 32 or 64 a block holds several groups: the block state
// is then the index of its first group (as the bits of an f32, never computed with), decode
// applies each vec4's own group and the block scale is 1. GROUP is an override constant, so
// the driver folds the branches away.
const BLOCK_VEC4: u32 = 32u;
override GROUP: u32 = 128u;
override MEAN: bool = false;

// (s, m) of scale group g (m = 0 without MEAN).
fn binary_scale_mean(g: u32) -> vec2<f32> {
    let s = unpack2x16float(scales[g >> 1u])[g & 1u];
    var m = 0.0;
    if (MEAN) {
        m = unpack2x16float(zeros[g >> 1u])[g & 1u];
    }
    return vec2<f32>(s, m);
}

fn block_scale_zero(row: u32, blk: u32) -> vec2<f32> {
    let g = row * p.groups + blk * (128u / GROUP);
    if (GROUP == 128u) {
        return binary_scale_mean(g);
    }
    return vec2<f32>(bitcast<f32>(g), 0.0);
}

fn decode(wv: vec4<u32>, j: u32, sz: vec2<f32>) -> vec4<f32> {
    let v = wv[j >> 3u] >> (j & 7u);
    let q = (vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    // The sign bit of -1.0 cleared for code 1: ±1 exactly, with no conversion.
    let sign = bitcast<vec4<f32>>(vec4<u32>(0xBF800000u) ^ (q << vec4<u32>(31u)));
    if (GROUP == 128u) {
        if (!MEAN) {
            return sign;
        }
        return sign * sz.x + sz.y;
    }
    let sm = binary_scale_mean(bitcast<u32>(sz.x) + (4u * j) / GROUP);
    return sign * sm.x + sm.y;
}

fn block_scale(sz: vec2<f32>) -> f32 {
    if (GROUP == 128u && !MEAN) {
        return sz.x;
    }
    return 1.0;
}

fn row_scale(row: u32) -> f32 {
    return 1.0;
}
