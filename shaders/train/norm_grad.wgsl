// LayerNorm's backward pass, one workgroup per row (the shared reductions of
// model_reduce.wgsl): with v the row the forward pass normalised (x plus the residual, which
// it can save: model_norm_sum), x̂ = (v − mean) / σ, σ = sqrt(var + eps) and g = dy · γ,
//   dv = (g − mean(g) − x̂ · mean(g · x̂)) / σ
// and the per-row products dy · x̂ (summed over rows into γ's gradient by train_col_sum; β's
// is the column sum of dy). Statistics are recomputed from v, in the forward pass's order.
// Padding of dv and dyx is written as zeros.
struct Params {
    rows: u32,
    cols: u32,
    stride: u32,
    _p0: u32,
    eps: f32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dv: array<f32>;
@group(0) @binding(5) var<storage, read_write> dyx: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.stride;
    let n = f32(p.cols);
    var s = 0.0;
    for (var c = t; c < p.cols; c += {{WG}}u) {
        s += v[base + c];
    }
    let mean = wg_sum(s, t) / n;
    var s2 = 0.0;
    for (var c = t; c < p.cols; c += {{WG}}u) {
        let d = v[base + c] - mean;
        s2 += d * d;
    }
    let inv_sigma = inverseSqrt(wg_sum(s2, t) / n + p.eps);
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = t; c < p.cols; c += {{WG}}u) {
        let xh = (v[base + c] - mean) * inv_sigma;
        let g = dy[base + c] * gamma[c];
        sg += g;
        sgx += g * xh;
    }
    let mg = wg_sum(sg, t) / n;
    let mgx = wg_sum(sgx, t) / n;
    for (var c = t; c < p.stride; c += {{WG}}u) {
        var d = 0.0;
        var e = 0.0;
        if (c < p.cols) {
            let xh = (v[base + c] - mean) * inv_sigma;
            d = (dy[base + c] * gamma[c] - mg - xh * mgx) * inv_sigma;
            e = dy[base + c] * xh;
        }
        dv[base + c] = d;
        dyx[base + c] = e;
    }
}
