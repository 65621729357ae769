// Sparse values, int4 (nibble − 8): thirty-two per vec4, unscaled.
const EPV4: u32 = 8u;

fn dec4(v: vec4<u32>, j: u32) -> vec4<f32> {
    let h = v[j >> 1u] >> (16u * (j & 1u));
    let q = (vec4<u32>(h) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    return bitcast<vec4<f32>>(q | vec4<u32>(0x4B000000u)) - vec4<f32>(8388616.0);
}
