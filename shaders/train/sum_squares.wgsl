// norms[slot] = Σ x[i]² over a whole buffer (one workgroup, the shared reductions of
// model_reduce.wgsl): one tensor's share of the gradient norm that clipping needs.
struct Params {
    len: u32,
    slot: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> norms: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < p.len; i += {{WG}}u) {
        let v = x[i];
        s += v * v;
    }
    s = wg_sum(s, li);
    if (li == 0u) {
        norms[p.slot] = s;
    }
}
