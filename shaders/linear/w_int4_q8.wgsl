// int4 weights against int8 activations: one 16-byte weight block is one 32-value x block.
// Masking a word's even and odd nibbles into bytes gives two words of unsigned 4-bit values
// that dot4I8Packed multiplies with x packed in the same order (quant_q8.wgsl, PAIRED).
fn x_blocks() -> u32 {
    return p.row_blocks;
}

fn wload(row: u32, b: u32) -> array<vec4<u32>, 2> {
    return array<vec4<u32>, 2>(w[row * p.row_blocks + b], vec4<u32>(0u));
}

fn block_sz(row: u32, b: u32) -> vec2<f32> {
    return block_scale_zero(row, b);
}

fn wdot(wv: array<vec4<u32>, 2>, xa: vec4<u32>, xb: vec4<u32>) -> i32 {
    let m = 0x0F0F0F0Fu;
    let v = wv[0];
    return dot4I8Packed(v.x & m, xa.x) + dot4I8Packed((v.x >> 4u) & m, xa.y)
        + dot4I8Packed(v.y & m, xa.z) + dot4I8Packed((v.y >> 4u) & m, xa.w)
        + dot4I8Packed(v.z & m, xb.x) + dot4I8Packed((v.z >> 4u) & m, xb.y)
        + dot4I8Packed(v.w & m, xb.z) + dot4I8Packed((v.w >> 4u) & m, xb.w);
}
