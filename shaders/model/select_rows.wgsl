// y[r, :] = x[ids[r], :] (padding included, so it stays zero): the rows whose logits a decode
// step needs, out of every token row of the pass. An id past x's rows writes zeros rather
// than reading out of bounds.
struct Params {
    rows: u32,
    src_rows: u32,
    stride: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let i = (wg.x + wg.y * nwg.x) * {{WG}}u + t;
    if (i >= p.rows * p.stride) {
        return;
    }
    let r = i / p.stride;
    let c = i % p.stride;
    let src = ids[r];
    var v = 0.0;
    if (src < p.src_rows) {
        v = x[src * p.stride + c];
    }
    y[i] = v;
}
