// Sentence pooling, one workgroup per sequence: the mean of the token rows whose mask is set
// (every row without a mask), or the first row (CLS); then optionally L2 normalisation
// y / max(‖y‖, 1e-12), as torch.nn.functional.normalize. With seq = 1 and no mask this is
// plain row-wise L2 normalisation.
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
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let b = row_of(wg, nwg);
    if (b >= p.batch) {
        return;
    }
    let first = b * p.seq;
    var ss = 0.0;
    for (var c = t; c < p.out_stride; c += {{WG}}u) {
        var v = 0.0;
        if (c < p.cols) {
            if (CLS) {
                v = x[first * p.in_stride + c];
            } else {
                var acc = 0.0;
                var count = 0.0;
                for (var j = 0u; j < p.seq; j++) {
                    if (!HAS_MASK || tokens[first + j].w != 0u) {
                        acc += x[(first + j) * p.in_stride + c];
                        count += 1.0;
                    }
                }
                v = acc / max(count, 1.0);
            }
        }
        y[b * p.out_stride + c] = v;
        ss += v * v;
    }
    if (NORMALIZE) {
        let inv = 1.0 / max(sqrt(wg_sum(ss, t)), 1e-12);
        // Each invocation rescales the columns it wrote itself.
        for (var c = t; c < p.cols; c += {{WG}}u) {
            y[b * p.out_stride + c] *= inv;
        }
    }
}
