// Ternary (2-bit) weights against int8 activations (gemv_low_bit_q8.wgsl): a 64-weight block
// is one x block. Masking the four 2-bit fields of each byte gives words of four codes 0..2
// as bytes, the codes of consecutive weights (src/formats/low_bit.rs), so dot4I8Packed sums
// q · x and subtracting the block's Σx gives Σ (q - 1) · x.
fn wops(wv: vec4<u32>) -> array<u32, 16> {
    var o: array<u32, 16>;
#unroll j 4
#unroll s 4
    o[4u * {j}u + {s}u] = (wv[{j}] >> (2u * {s}u)) & 0x03030303u;
#end
#end
    return o;
}

// The scale of block b's group (GROUP and the f16 pairs as the float decoder reads them).
fn qscales(row: u32, b: u32) -> array<vec2<f32>, 1> {
    let g = row * p.groups + (b * 64u) / GROUP;
    return array<vec2<f32>, 1>(vec2<f32>(unpack2x16float(scales[g >> 1u])[g & 1u], 0.0));
}

fn qdot(sm: vec2<f32>, xm: vec2<u32>, d: i32) -> f32 {
    return sm.x * bitcast<f32>(xm.x) * f32(d - bitcast<i32>(xm.y));
}
