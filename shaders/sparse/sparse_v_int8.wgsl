// Sparse values, int8: sixteen per vec4, unscaled (the scale is applied per row or block).
const EPV4: u32 = 4u;

fn dec4(v: vec4<u32>, j: u32) -> vec4<f32> {
    // Sign flip + OR into the mantissa of 2^23: exact, without an int-to-float conversion.
    let q = (vec4<u32>(v[j] ^ 0x80808080u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388736.0);
}
