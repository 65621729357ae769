// Multi-head self-attention over a padded batch, one workgroup per (query token, head):
//   out[b, i, h] = softmax_j(q_i · k_j / sqrt(d), keys with mask 0 excluded) · v_j
// q, k, v are the three column blocks [0, H), [H, 2H), [2H, 3H) of one fused QKV row.
// Scores of a row stay in workgroup memory (seq ≤ MAXS); head size ≤ WG.
struct Params {
    rows: u32,       // batch × seq
    seq: u32,
    heads: u32,
    head_dim: u32,
    hidden: u32,     // H = heads × head_dim
    qkv_stride: u32,
    out_stride: u32,
    scale: f32,      // 1 / sqrt(head_dim)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<vec4<u32>>; // .w: attention mask
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> q: array<f32, {{WG}}>;
var<workgroup> sc: array<f32, {{MAXS}}>;
var<workgroup> part: array<f32, {{WG}}>;

const MASKED: f32 = -1.0e30;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let idx = row_of(wg, nwg);
    if (idx >= p.rows * p.heads) {
        return;
    }
    let row = idx / p.heads;
    let h = idx % p.heads;
    let first = (row / p.seq) * p.seq; // token 0 of this sequence
    let d = p.head_dim;
    if (t < d) {
        q[t] = qkv[row * p.qkv_stride + h * d + t] * p.scale;
    }
    workgroupBarrier();
    var m = MASKED;
    for (var j = t; j < p.seq; j += {{WG}}u) {
        var s = MASKED;
        if (tokens[first + j].w != 0u) {
            let kb = (first + j) * p.qkv_stride + p.hidden + h * d;
            s = 0.0;
            for (var e = 0u; e < d; e++) {
                s += q[e] * qkv[kb + e];
            }
        }
        sc[j] = s;
        m = max(m, s);
    }
    m = wg_max(m, t);
    var total = 0.0;
    for (var j = t; j < p.seq; j += {{WG}}u) {
        // A fully masked row (padding of the batch) averages every key: finite, never read.
        let e = exp(sc[j] - m);
        sc[j] = e;
        total += e;
    }
    total = wg_sum(total, t);
    // workgroup_size / head_dim groups of lanes each sum a strided part of the keys.
    let groups = {{WG}}u / d;
    let g = t / d;
    let lane = t % d;
    var acc = 0.0;
    if (g < groups) {
        for (var j = g; j < p.seq; j += groups) {
            acc += sc[j] * qkv[(first + j) * p.qkv_stride + 2u * p.hidden + h * d + lane];
        }
    }
    part[t] = acc;
    workgroupBarrier();
    if (t < d) {
        var o = 0.0;
        for (var k = 0u; k < groups; k++) {
            o += part[k * d + t];
        }
        out[row * p.out_stride + h * d + t] = o / total;
    }
    if (h == 0u && t < p.out_stride - p.hidden) {
        out[row * p.out_stride + p.hidden + t] = 0.0;
    }
}
