// Sparse values, f32: four per vec4.
const EPV4: u32 = 1u;

fn dec4(v: vec4<u32>, j: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(v);
}
