// int8 weights against int8 activations: two 16-byte weight blocks per 32-value x block (the
// second absent when a row has an odd number of blocks: x is zero there).
fn x_blocks() -> u32 {
    return (p.row_blocks + 1u) / 2u;
}

fn wload(row: u32, b: u32) -> array<vec4<u32>, 2> {
    let i = row * p.row_blocks + 2u * b;
    var second = vec4<u32>(0u);
    if (2u * b + 1u < p.row_blocks) {
        second = w[i + 1u];
    }
    return array<vec4<u32>, 2>(w[i], second);
}

fn block_sz(row: u32, b: u32) -> vec2<f32> {
    return vec2<f32>(1.0, 0.0);
}

fn wdot(wv: array<vec4<u32>, 2>, xa: vec4<u32>, xb: vec4<u32>) -> i32 {
    return dot4I8Packed(wv[0].x, xa.x) + dot4I8Packed(wv[0].y, xa.y)
        + dot4I8Packed(wv[0].z, xa.z) + dot4I8Packed(wv[0].w, xa.w)
        + dot4I8Packed(wv[1].x, xb.x) + dot4I8Packed(wv[1].y, xb.y)
        + dot4I8Packed(wv[1].z, xb.z) + dot4I8Packed(wv[1].w, xb.w);
}
