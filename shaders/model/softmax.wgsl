// Softmax of each row (max-subtracted, f32); the padding of y is written as zeros.
struct Params {
    rows: u32,
    cols: u32,
    stride: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.stride;
    var m = -3.0e38;
    for (var c = t; c < p.cols; c += {{WG}}u) {
        m = max(m, x[base + c]);
    }
    m = wg_max(m, t);
    var s = 0.0;
    for (var c = t; c < p.cols; c += {{WG}}u) {
        s += exp(x[base + c] - m);
    }
    let inv = 1.0 / wg_sum(s, t);
    for (var c = t; c < p.stride; c += {{WG}}u) {
        var o = 0.0;
        if (c < p.cols) {
            o = exp(x[base + c] - m) * inv;
        }
        y[base + c] = o;
    }
}
