// Per-row symmetric int8 quantization of activations for the DP4A GEMM: one workgroup per
// row finds max |x|, then writes q = round(x · 127 / max) four to a word (k ascending from
// the low byte, as int8 weights are packed) and the row's scale max / 127. Rows are padded
// with zero words up to the weights' row length.
struct QParams {
    m: u32,         // rows
    k4: u32,        // vec4s of x that hold data
    x_stride4: u32, // x row stride in vec4s
    words: u32,     // output words per row (a multiple of 4)
    row0: u32,      // first x row
}

@group(0) @binding(0) var<uniform> q: QParams;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;
@group(0) @binding(3) var<storage, read_write> xscale: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row = wg.y * nwg.x + wg.x;
    // Rows past m (a 2-D grid rounds up) compute on row 0 and write nothing: barriers must
    // stay in uniform control flow.
    let valid = row < q.m;
    let r = select(0u, row, valid);
    let base = (q.row0 + r) * q.x_stride4;
    var mx = 0.0;
    for (var i = li; i < q.k4; i += 256u) {
        mx = max(mx, max4(abs(vec4<f32>(x[base + i]))));
    }
    partial[li] = mx;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            partial[li] = max(partial[li], partial[li + s]);
        }
        workgroupBarrier();
    }
    let amax = partial[0];
    let inv = select(0.0, 127.0 / amax, amax > 0.0);
    if (valid) {
        if (li == 0u) {
            xscale[row] = amax / 127.0;
        }
        for (var i = li; i < q.words; i += 256u) {
            var v = vec4<f32>(0.0);
            if (i < q.k4) {
                v = vec4<f32>(x[base + i]);
            }
            xq[row * q.words + i] = pack4xI8(vec4<i32>(clamp(round(v * inv), vec4(-127.0), vec4(127.0))));
        }
    }
}

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}
