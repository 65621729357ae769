// Multi-head self-attention over a padded batch:
//   out[b, i, h] = softmax_j(q_i · k_j / sqrt(d), keys with mask 0 excluded) · v_j
// q, k, v are the three column blocks [0, H), [H, 2H), [2H, 3H) of one fused QKV row.
// A workgroup takes WG / SPLIT queries of one (sequence, head); SPLIT invocations share each
// query, every one keeping the query's q and its own output accumulator in registers (DP4
// vec4s, zero-padded past the head size). The workgroup stages KC keys and values at a time
// in workgroup memory, loaded coalesced and then read by every invocation at once. The
// softmax is computed online (running max and sum) over chunks of CH keys: their scores are
// independent dot products, and the accumulator is rescaled once per chunk. With SPLIT > 1
// the invocations of a query take every SPLIT-th chunk of the staged keys, and their partial
// softmax states are merged at the end (log-sum-exp), so a small grid still fills the GPU.
// A sequence whose keys are all masked gives zeros.
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

// Staged keys at [0, KCDP4), their values at [KCDP4, 2 KCDP4). The merge reuses it, which
// needs KCDP4 >= WG (the host guarantees it).
var<workgroup> kv: array<vec4<f32>, {{KVDP4}}>;
var<workgroup> live: array<f32, {{KC}}>;

const MASKED: f32 = -1.0e30;
const QW: u32 = {{WG}}u / {{SPLIT}}u; // queries per workgroup
const VS: u32 = {{KCDP4}}u;

// Elements 4e..4e+3 of a head's slice starting at `base`, zero past the head size.
fn load4(base: u32, e: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (4u * e + c < p.head_dim) {
            v[c] = qkv[base + 4u * e + c];
        }
    }
    return v;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let tiles = (p.seq + QW - 1u) / QW;
    let idx = row_of(wg, nwg);
    let seqs = p.rows / p.seq;
    if (idx >= seqs * p.heads * tiles) {
        return;
    }
    let tile = idx % tiles;
    let h = (idx / tiles) % p.heads;
    let first = (idx / tiles / p.heads) * p.seq; // token 0 of this sequence
    // The parts of a query sit QW lanes apart, so the lanes of a part read the same keys
    // (a broadcast) rather than SPLIT different ones.
    let qi = t % QW;
    let part = t / QW;
    let i = tile * QW + qi; // this invocation's query
    let d = p.head_dim;
    let qrow = first + min(i, p.seq - 1u);
    let qb = qrow * p.qkv_stride + h * d;
#unroll e DP4
    let q{e} = load4(qb, {e}u) * p.scale;
    var acc{e} = vec4<f32>(0.0);
#end
    var m = MASKED;
    var l = 0.0;
    for (var j0 = 0u; j0 < p.seq; j0 += {{KC}}u) {
        workgroupBarrier();
        for (var s = t; s < {{KCDP4}}u; s += {{WG}}u) {
            let jj = s / {{DP4}}u;
            let j = j0 + jj;
            var kk = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (j < p.seq) {
                let base = (first + j) * p.qkv_stride + h * d;
                kk = load4(base + p.hidden, s % {{DP4}}u);
                vv = load4(base + 2u * p.hidden, s % {{DP4}}u);
            }
            kv[s] = kk;
            kv[VS + s] = vv;
        }
        // Keys past the sequence end are flagged dead too, so a chunk may run past it.
        for (var s = t; s < {{KC}}u; s += {{WG}}u) {
            let j = j0 + s;
            live[s] = select(0.0, 1.0, j < p.seq && tokens[first + min(j, p.seq - 1u)].w != 0u);
        }
        workgroupBarrier();
        let chunks = (min({{KC}}u, p.seq - j0) + {{CH}}u - 1u) / {{CH}}u;
        for (var k = part; k < chunks; k += {{SPLIT}}u) {
            let j = k * {{CH}}u;
#unroll u CH
            let on{u} = live[j + {u}u] != 0.0;
            var s{u} = 0.0;
#end
            // Key-inner order: CH independent dependency chains the compiler can overlap.
#unroll e DP4
#unroll u CH
            s{u} += dot(q{e}, kv[(j + {u}u) * {{DP4}}u + {e}u]);
#end
#end
            var cm = MASKED;
#unroll u CH
            s{u} = select(MASKED, s{u}, on{u});
            cm = max(cm, s{u});
#end
            // A dead chunk (padding) must leave m, l, acc as they are; skipping also saves
            // its exps.
            if (cm == MASKED) {
                continue;
            }
            let m2 = max(m, cm);
            let r = exp(m - m2);
            var ws = 0.0;
            // select, not exp(MASKED - m2): a masked key must weigh exactly nothing.
#unroll u CH
            let w{u} = select(0.0, exp(s{u} - m2), on{u});
            ws += w{u};
#end
            l = l * r + ws;
#unroll e DP4
            acc{e} *= r;
#unroll u CH
            acc{e} += w{u} * kv[VS + (j + {u}u) * {{DP4}}u + {e}u];
#end
#end
            m = m2;
        }
    }
#if MERGE
    // Merge the parts' (m, l, acc) over disjoint keys: rescale each to the common max and
    // sum. Exchanges alternate between kv[0, WG) and kv[WG, 2 WG), so one barrier per
    // exchange keeps a write from overtaking the previous exchange's reads.
    workgroupBarrier();
    kv[{{WG}}u + t] = vec4<f32>(m, l, 0.0, 0.0);
    workgroupBarrier();
    var mx = MASKED;
    for (var r = 0u; r < {{SPLIT}}u; r++) {
        mx = max(mx, kv[{{WG}}u + r * QW + qi].x);
    }
    var lt = 0.0;
    for (var r = 0u; r < {{SPLIT}}u; r++) {
        let o = kv[{{WG}}u + r * QW + qi];
        lt += o.y * exp(o.x - mx);
    }
    l = lt;
    let f = exp(m - mx);
#unroll e DP4
    kv[{e}u % 2u * {{WG}}u + t] = acc{e} * f;
    workgroupBarrier();
    if (part == 0u) {
        var a = vec4<f32>(0.0);
        for (var r = 0u; r < {{SPLIT}}u; r++) {
            a += kv[{e}u % 2u * {{WG}}u + r * QW + qi];
        }
        acc{e} = a;
    }
#end
#end
    if (i < p.seq && part == 0u) {
        let inv = select(0.0, 1.0 / l, l > 0.0);
        let ob = (first + i) * p.out_stride + h * d;
#unroll e DP4
        for (var c = 0u; c < 4u; c++) {
            if (4u * {e}u + c < d) {
                out[ob + 4u * {e}u + c] = acc{e}[c] * inv;
            }
        }
#end
        if (h == 0u) {
            for (var c = p.hidden; c < p.out_stride; c++) {
                out[(first + i) * p.out_stride + c] = 0.0;
            }
        }
    }
}
