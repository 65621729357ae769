// Sparse values, f16: eight per vec4, unpacked in the shader (no SHADER_F16 needed).
const EPV4: u32 = 2u;

fn dec4(v: vec4<u32>, j: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v[2u * j]), unpack2x16float(v[2u * j + 1u]));
}
