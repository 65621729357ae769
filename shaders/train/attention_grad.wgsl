// The backward pass of multi-head self-attention with a padding mask (model_attention.wgsl:
// out_i = Σ_j P_ij v_j, P_ij = softmax_j(q_i · k_j · scale) over the keys kept by the mask;
// a sequence with no key kept gives zeros), in two kernels over one fused QKV gradient:
//   QUERIES (a workgroup per query row and head): P_i· recomputed, dP_ij = dout_i · v_j,
//     dS_ij = P_ij (dP_ij − Σ_j P_ij dP_ij), dq_i = scale · Σ_j dS_ij k_j; P and dS are
//     stored (batch, head, query, key) for the second kernel;
//   KEYS (a workgroup per key row and head): dk_j = scale · Σ_i dS_ij q_i, dv_j = Σ_i P_ij dout_i.
// The shared reductions of model_reduce.wgsl; sequences of at most MAXS tokens.
struct Params {
    rows: u32,       // batch × seq
    seq: u32,
    heads: u32,
    head_dim: u32,
    hidden: u32,     // heads × head_dim
    qkv_stride: u32,
    out_stride: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<vec4<u32>>; // .w: attention mask
@group(0) @binding(3) var<storage, read> dout: array<f32>;
#if QUERIES
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
@group(0) @binding(5) var<storage, read_write> dscores: array<f32>;
#else
@group(0) @binding(4) var<storage, read> probs: array<f32>;
@group(0) @binding(5) var<storage, read> dscores: array<f32>;
#end
@group(0) @binding(6) var<storage, read_write> dqkv: array<f32>;

const MAXS: u32 = {{MAXS}}u;
var<workgroup> wa: array<f32, {{MAXS}}>;
var<workgroup> wb: array<f32, {{MAXS}}>;

// Where (batch, head, query i, key j) lives in probs and dscores.
fn at(b: u32, h: u32, i: u32, j: u32) -> u32 {
    return ((b * p.heads + h) * p.seq + i) * p.seq + j;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let idx = row_of(wg, nwg);
    if (idx >= p.rows * p.heads) {
        return;
    }
    let row = idx / p.heads;
    let h = idx % p.heads;
    let b = row / p.seq;
    let first = b * p.seq;
    let me = row - first;
    let d = p.head_dim;
    let qoff = h * d;
    let koff = p.hidden + h * d;
    let voff = 2u * p.hidden + h * d;
#if QUERIES
    // Scores of this query against every key (wa), then probabilities.
    var m = -3.0e38;
    for (var j = t; j < p.seq; j += {{WG}}u) {
        var s = -3.0e38;
        if (tokens[first + j].w != 0u) {
            var acc = 0.0;
            for (var e = 0u; e < d; e++) {
                acc += qkv[row * p.qkv_stride + qoff + e] * qkv[(first + j) * p.qkv_stride + koff + e];
            }
            s = acc * p.scale;
            m = max(m, s);
        }
        wa[j] = s;
    }
    m = wg_max(m, t);
    var sum = 0.0;
    for (var j = t; j < p.seq; j += {{WG}}u) {
        var e = 0.0;
        if (tokens[first + j].w != 0u) {
            e = exp(wa[j] - m);
        }
        wa[j] = e;
        sum += e;
    }
    let total = wg_sum(sum, t);
    let inv = select(0.0, 1.0 / total, total > 0.0);
    var dsum = 0.0;
    for (var j = t; j < p.seq; j += {{WG}}u) {
        let pj = wa[j] * inv;
        var dp = 0.0;
        if (pj != 0.0) {
            for (var e = 0u; e < d; e++) {
                dp += dout[row * p.out_stride + qoff + e] * qkv[(first + j) * p.qkv_stride + voff + e];
            }
        }
        wa[j] = pj;
        wb[j] = dp;
        dsum += pj * dp;
    }
    let dd = wg_sum(dsum, t);
    for (var j = t; j < p.seq; j += {{WG}}u) {
        let ds = wa[j] * (wb[j] - dd);
        wb[j] = ds;
        probs[at(b, h, me, j)] = wa[j];
        dscores[at(b, h, me, j)] = ds;
    }
    workgroupBarrier();
    for (var e = t; e < d; e += {{WG}}u) {
        var acc = 0.0;
        for (var j = 0u; j < p.seq; j++) {
            acc += wb[j] * qkv[(first + j) * p.qkv_stride + koff + e];
        }
        dqkv[row * p.qkv_stride + qoff + e] = acc * p.scale;
    }
    // The first head's workgroup zeroes the row's padding.
    if (h == 0u) {
        for (var c = 3u * p.hidden + t; c < p.qkv_stride; c += {{WG}}u) {
            dqkv[row * p.qkv_stride + c] = 0.0;
        }
    }
#else
    // This key's column of P and dS over the sequence's queries.
    for (var i = t; i < p.seq; i += {{WG}}u) {
        wa[i] = probs[at(b, h, i, me)];
        wb[i] = dscores[at(b, h, i, me)];
    }
    workgroupBarrier();
    for (var e = t; e < d; e += {{WG}}u) {
        var dk = 0.0;
        var dv = 0.0;
        for (var i = 0u; i < p.seq; i++) {
            dk += wb[i] * qkv[(first + i) * p.qkv_stride + qoff + e];
            dv += wa[i] * dout[(first + i) * p.out_stride + qoff + e];
        }
        dqkv[row * p.qkv_stride + koff + e] = dk * p.scale;
        dqkv[row * p.qkv_stride + voff + e] = dv;
    }
#end
}
