// Row gather: out[r, :] = the decoded row ids[r] of W (an embedding lookup from the very
// buffers a tied lm_head multiplies by). Follows a weight decoder (w_*.wgsl), which reads w,
// scales, zeros and p.groups: one kernel for every dense format. One invocation per (output
// row, 16-byte weight block); columns past k are out's zero padding. An id past the matrix
// reads nothing and writes a row of zeros.
struct Params {
    n: u32,          // weight rows
    k: u32,          // weights per row (out's columns)
    row_blocks: u32, // 16-byte blocks per weight row
    groups: u32,     // scale groups per row
    rows: u32,       // output rows (ids)
    out_stride: u32, // out row stride in elements (k rounded up to 4)
    blocks: u32,     // blocks an output row spans: ceil(out_stride / block weights)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read> zeros: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 64u + li;
    let r = i / p.blocks;
    let blk = i % p.blocks;
    if (r >= p.rows) {
        return;
    }
    let id = ids[r];
    let valid = id < p.n;
    var wv = vec4<u32>(0u);
    var sz = vec2<f32>(0.0);
    var s = 0.0;
    if (valid) {
        wv = w[id * p.row_blocks + blk];
        sz = block_scale_zero(id, blk);
        s = block_scale(sz) * row_scale(id);
    }
    for (var j = 0u; j < BLOCK_VEC4; j++) {
        let c0 = (blk * BLOCK_VEC4 + j) * 4u;
        if (c0 >= p.out_stride) {
            break;
        }
        let v = decode(wv, j, sz) * s;
        for (var e = 0u; e < 4u; e++) {
            let col = c0 + e;
            out[r * p.out_stride + col] = select(0.0, v[e], valid && col < p.k);
        }
    }
}
