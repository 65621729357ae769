// Ternary16 (five trits a byte) weights against int8 activations (gemv_low_bit_q8.wgsl): an
// 80-weight block is one x block, as twenty weights a word do not fit x blocks of 32.
// Digit d of byte t is ((t · 3^d) mod 256) · 3 >> 8 (w_ternary16.wgsl). Done on the even
// and the odd bytes of a word apart, as two 16-bit lanes each, the products cannot carry
// into the next byte, so each digit of four bytes costs two multiplies by 3 (which also
// leave t · 3^(d+1) mod 256 for the next digit) and four masks: words of four codes 0..2, of
// four consecutive weights, for dot4I8Packed; Σx of the block takes out the offset 1.
fn wops(wv: vec4<u32>) -> array<u32, 20> {
    var o: array<u32, 20>;
#unroll j 4
    {
        var e = wv[{j}] & 0x00FF00FFu;
        var od = (wv[{j}] >> 8u) & 0x00FF00FFu;
#unroll d 5
        {
            let pe = e * 3u;
            let po = od * 3u;
            o[5u * {j}u + {d}u] = ((pe >> 8u) & 0x00FF00FFu) | (po & 0xFF00FF00u);
            e = pe & 0x00FF00FFu;
            od = po & 0x00FF00FFu;
        }
#end
    }
#end
    return o;
}

// The scale of block b's group (GROUP and the f16 pairs as the float decoder reads them).
fn qscales(row: u32, b: u32) -> array<vec2<f32>, 1> {
    let g = row * p.groups + (b * 80u) / GROUP;
    return array<vec2<f32>, 1>(vec2<f32>(unpack2x16float(scales[g >> 1u])[g & 1u], 0.0));
}

fn qdot(sm: vec2<f32>, xm: vec2<u32>, d: i32) -> f32 {
    return sm.x * bitcast<f32>(xm.x) * f32(d - bitcast<i32>(xm.y));
}
