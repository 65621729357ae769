// The backward pass of sentence pooling (model_pool.wgsl), one workgroup per sequence (the
// shared reductions of model_reduce.wgsl): the gradient dy of the pooled (and, with
// NORMALIZE, L2-normalised) vector becomes the gradient of every token row. Normalisation
// y = u / ‖u‖ passes du = (dy − y (y · dy)) / ‖u‖; the mean over the masked tokens gives
// each of them du / count (masked-out rows get zeros), CLS gives the first row du.
// The pooled u is recomputed from x, in the forward pass's order.
struct Params {
    batch: u32,
    seq: u32,
    cols: u32,
    in_stride: u32,
    out_stride: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override HAS_MASK: bool = false;
override CLS: bool = false;
override NORMALIZE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<vec4<u32>>; // .w: attention mask
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

fn kept(j: u32, first: u32) -> bool {
    if (CLS) {
        return j == 0u;
    }
    return !HAS_MASK || tokens[first + j].w != 0u;
}

fn pooled(c: u32, first: u32, count: f32) -> f32 {
    if (CLS) {
        return x[first * p.in_stride + c];
    }
    var acc = 0.0;
    for (var j = 0u; j < p.seq; j++) {
        if (kept(j, first)) {
            acc += x[(first + j) * p.in_stride + c];
        }
    }
    return acc / count;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let b = row_of(wg, nwg);
    if (b >= p.batch) {
        return;
    }
    let first = b * p.seq;
    var count = 0.0;
    for (var j = 0u; j < p.seq; j++) {
        if (kept(j, first)) {
            count += 1.0;
        }
    }
    count = max(count, 1.0);
    var inv_norm = 1.0;
    var ydy = 0.0;
    if (NORMALIZE) {
        var uu = 0.0;
        var udy = 0.0;
        for (var c = t; c < p.cols; c += {{WG}}u) {
            let u = pooled(c, first, count);
            uu += u * u;
            udy += u * dy[b * p.out_stride + c];
        }
        inv_norm = 1.0 / max(sqrt(wg_sum(uu, t)), 1e-12);
        // y · dy = (u · dy) / ‖u‖
        ydy = wg_sum(udy, t) * inv_norm;
    }
    for (var c = t; c < p.in_stride; c += {{WG}}u) {
        var du = 0.0;
        if (c < p.cols) {
            du = dy[b * p.out_stride + c];
            if (NORMALIZE) {
                let y = pooled(c, first, count) * inv_norm;
                du = (du - y * ydy) * inv_norm;
            }
        }
        for (var j = 0u; j < p.seq; j++) {
            var g = 0.0;
            if (kept(j, first)) {
                g = du / count;
            }
            dx[(first + j) * p.in_stride + c] = g;
        }
    }
}
