// Binary weights against int8 activations (gemv_low_bit_q8.wgsl): a 128-weight block is four
// x blocks of 32, one per word, so every x block lies in one group (GROUP ≥ 32). Each bit
// position of a word's bytes, masked, gives four sign bits q of consecutive weights as bytes;
// with the x block's sum S, Σ (2q - 1) · x = 2 Σ q · x - S, and a group mean m adds m · S.
fn wops(wv: vec4<u32>) -> array<u32, 32> {
    var o: array<u32, 32>;
#unroll j 4
#unroll s 8
    o[8u * {j}u + {s}u] = (wv[{j}] >> {s}u) & 0x01010101u;
#end
#end
    return o;
}

// (scale, mean) of the group of each word of block b.
fn qscales(row: u32, b: u32) -> array<vec2<f32>, 4> {
    var out: array<vec2<f32>, 4>;
    let g0 = row * p.groups + b * (128u / GROUP);
#unroll j 4
    {
        let g = g0 + (32u * {j}u) / GROUP;
        var m = 0.0;
        if (MEAN) {
            m = unpack2x16float(zeros[g >> 1u])[g & 1u];
        }
        out[{j}] = vec2<f32>(unpack2x16float(scales[g >> 1u])[g & 1u], m);
    }
#end
    return out;
}

fn qdot(sm: vec2<f32>, xm: vec2<u32>, d: i32) -> f32 {
    let s = bitcast<i32>(xm.y);
    var v = sm.x * f32(2 * d - s);
    if (MEAN) {
        v += sm.y * f32(s);
    }
    return bitcast<f32>(xm.x) * v;
}
