// LayerNorm or RMSNorm of a row, optionally of the sum with a residual row:
//   v = x (+ r);  y = (v - mean) / sqrt(var + eps) * gamma (+ beta)   (RMS: no mean, no beta)
// Statistics in f32 over the row's invocations; two passes over the row keep the variance
// exact enough for eps = 1e-12 (BERT). The padding of y is written as zeros. With SUM_OUT the
// sum v is written too (a pre-norm decoder's residual stream: one pass instead of an add and a
// norm).
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

override RMS: bool = false;
override HAS_RES: bool = false;
override HAS_BETA: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
#if SUM_OUT
@group(0) @binding(6) var<storage, read_write> sum_out: array<f32>;
#end

fn value(i: u32) -> f32 {
    var v = x[i];
    if (HAS_RES) {
        v += r[i];
    }
    return v;
}

// TPR invocations per row, WG / TPR rows per workgroup: narrow rows (BERT's 384) then share
// one workgroup and its barriers instead of leaving most of a 128-wide workgroup idle.
const TPR: u32 = {{TPR}}u;

// Sum of v over the TPR invocations of this row (every invocation must call it).
fn row_sum(v: f32, t: u32) -> f32 {
    workgroupBarrier();
    red[t] = v;
    workgroupBarrier();
    let lt = t % TPR;
    for (var s = TPR / 2u; s > 0u; s = s / 2u) {
        if (lt < s) {
            red[t] += red[t + s];
        }
        workgroupBarrier();
    }
    return red[t - lt];
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let row = row_of(wg, nwg) * ({{WG}}u / TPR) + t / TPR;
    let lt = t % TPR;
    // Rows past the end still take part in the reductions' barriers.
    let cols = select(0u, p.cols, row < p.rows);
    let base = min(row, p.rows - 1u) * p.stride;
    let n = f32(p.cols);
    var mean = 0.0;
    if (!RMS) {
        var s = 0.0;
        for (var c = lt; c < cols; c += TPR) {
            s += value(base + c);
        }
        mean = row_sum(s, t) / n;
    }
    var s2 = 0.0;
    for (var c = lt; c < cols; c += TPR) {
        let d = value(base + c) - mean;
        s2 += d * d;
    }
    let inv = inverseSqrt(row_sum(s2, t) / n + p.eps);
    if (row >= p.rows) {
        return;
    }
    for (var c = lt; c < p.stride; c += TPR) {
        var o = 0.0;
        if (c < p.cols) {
            let v = value(base + c);
#if SUM_OUT
            sum_out[base + c] = v;
#end
            o = (v - mean) * inv * gamma[c];
            if (HAS_BETA) {
                o += beta[c];
            }
        }
#if SUM_OUT
        if (c >= p.cols) {
            sum_out[base + c] = 0.0;
        }
#end
        y[base + c] = o;
    }
}
