// y[r] = the column of the largest x[r, c] (the lowest column among equals; NaN never wins), as
// the bits of a u32 in an f32 tensor of one column (its padding is written as zeros): greedy
// decoding reads back one word per sequence instead of a row of logits. One workgroup per
// row; each invocation scans a strided part of the row from the left, so a strict `>` keeps
// its lowest column, and the tree reduction breaks ties towards the lower column.
struct Params {
    rows: u32,
    cols: u32,
    stride: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

var<workgroup> best_v: array<f32, {{WG}}>;
var<workgroup> best_i: array<u32, {{WG}}>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let r = wg.x + wg.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    var v = -3.4028235e38;
    var i = 0xffffffffu;
    for (var c = t; c < p.cols; c += {{WG}}u) {
        let e = x[r * p.stride + c];
        if (e > v || (i == 0xffffffffu && e == v)) {
            v = e;
            i = c;
        }
    }
    best_v[t] = v;
    best_i[t] = i;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            let ov = best_v[t + s];
            let oi = best_i[t + s];
            if (ov > best_v[t] || (ov == best_v[t] && oi < best_i[t])) {
                best_v[t] = ov;
                best_i[t] = oi;
            }
        }
        workgroupBarrier();
    }
    if (t < 4u) {
        // Column 0 is the answer; 1..3 are the row's padding. A row of NaN gives column 0.
        var out = 0u;
        if (t == 0u && best_i[0] != 0xffffffffu) {
            out = best_i[0];
        }
        y[r * 4u + t] = out;
    }
}
