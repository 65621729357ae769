// SwiGLU: y[r, c] = silu(g) · u with g = x[r, c] and u = x[r, cols + c] (x is one fused
// gate/up projection, `rows × 2·cols`); the padding of y is written as zeros. One invocation
// per element of y, padding included.
struct Params {
    rows: u32,
    cols: u32,
    in_stride: u32,
    out_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// g · sigmoid(g) through e = exp(-|g|) ∈ (0, 1], so nothing overflows for large |g|:
// sigmoid(g) = 1 / (1 + e) for g ≥ 0 and e / (1 + e) for g < 0.
fn silu(g: f32) -> f32 {
    let e = exp(-abs(g));
    let s = select(e, 1.0, g >= 0.0) / (1.0 + e);
    return g * s;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let i = (wg.x + wg.y * nwg.x) * {{WG}}u + t;
    if (i >= p.rows * p.out_stride) {
        return;
    }
    let r = i / p.out_stride;
    let c = i % p.out_stride;
    var o = 0.0;
    if (c < p.cols) {
        let base = r * p.in_stride;
        o = silu(x[base + c]) * x[base + p.cols + c];
    }
    y[i] = o;
}
