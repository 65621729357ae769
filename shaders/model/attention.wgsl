// Multi-head self-attention over a padded batch:
//   out[b, i, h] = softmax_j(q_i · k_j / sqrt(d), keys with mask 0 excluded) · v_j
// q, k, v are the three column blocks [0, H), [H, 2H), [2H, 3H) of one fused QKV row.
// A workgroup takes QPI × WG / SPLIT queries of one (sequence, head). Each invocation owns
// QPI queries, keeping each one's q, output accumulator (DP4 vec4s, zero-padded past the
// head size), running max and sum in registers: every K/V vec4 it reads from workgroup
// memory then serves QPI queries, and those reads, not the arithmetic, bound the kernel.
// SPLIT invocations share each query. The workgroup stages KC keys and values at a time in
// workgroup memory, loaded coalesced and then read by every invocation at once. The
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
const QW: u32 = {{WG}}u / {{SPLIT}}u; // invocations per part (each with QPI queries)
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
    let tiles = (p.seq + QW * {{QPI}}u - 1u) / (QW * {{QPI}}u);
    let idx = row_of(wg, nwg);
    let seqs = p.rows / p.seq;
    if (idx >= seqs * p.heads * tiles) {
        return;
    }
    let tile = idx % tiles;
    let h = (idx / tiles) % p.heads;
    let first = (idx / tiles / p.heads) * p.seq; // token 0 of this sequence
    // The parts of a query sit QW lanes apart, so the lanes of a part read the same keys
    // (a broadcast) rather than SPLIT different ones. An invocation's queries sit QW apart
    // too, so neighbouring lanes load and store neighbouring rows.
    let qi = t % QW;
    let part = t / QW;
    let d = p.head_dim;
#unroll c QPI
    let i{c} = (tile * {{QPI}}u + {c}u) * QW + qi; // this invocation's query number {c}
    let qb{c} = (first + min(i{c}, p.seq - 1u)) * p.qkv_stride + h * d;
#unroll e DP4
    let q{c}_{e} = load4(qb{c}, {e}u) * p.scale;
    var acc{c}_{e} = vec4<f32>(0.0);
#end
    var m{c} = MASKED;
    var l{c} = 0.0;
#end
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
            var alive = false;
#unroll u CH
            let on{u} = live[j + {u}u] != 0.0;
            alive = alive || on{u};
#end
            // A dead chunk (padding) must leave every m, l, acc as they are; skipping also
            // saves its dot products and exps. The mask is per key, so it is dead for all
            // of this invocation's queries at once.
            if (!alive) {
                continue;
            }
#unroll c QPI
#unroll u CH
            var s{c}_{u} = 0.0;
#end
#end
            // Key-inner order: CH × QPI independent dependency chains the compiler can
            // overlap, and each key vec4 is read once for all QPI queries.
#unroll e DP4
            {
#unroll u CH
                let k{u} = kv[(j + {u}u) * {{DP4}}u + {e}u];
#end
#unroll c QPI
#unroll u CH
                s{c}_{u} += dot(q{c}_{e}, k{u});
#end
#end
            }
#end
#unroll c QPI
            // The chunk has a live key, so the chunk max is a real score.
            var cm{c} = MASKED;
#unroll u CH
            s{c}_{u} = select(MASKED, s{c}_{u}, on{u});
            cm{c} = max(cm{c}, s{c}_{u});
#end
            let m2_{c} = max(m{c}, cm{c});
            let r{c} = exp(m{c} - m2_{c});
            var ws{c} = 0.0;
            // select, not exp(MASKED - m2): a masked key must weigh exactly nothing.
#unroll u CH
            let w{c}_{u} = select(0.0, exp(s{c}_{u} - m2_{c}), on{u});
            ws{c} += w{c}_{u};
#end
            l{c} = l{c} * r{c} + ws{c};
            m{c} = m2_{c};
#end
#unroll e DP4
            {
#unroll u CH
                let v{u} = kv[VS + (j + {u}u) * {{DP4}}u + {e}u];
#end
#unroll c QPI
                acc{c}_{e} *= r{c};
#unroll u CH
                acc{c}_{e} += w{c}_{u} * v{u};
#end
#end
            }
#end
        }
    }
#if MERGE
    // Merge the parts' (m, l, acc) over disjoint keys: rescale each to the common max and
    // sum, one query at a time. Exchange n (counted over all queries) uses kv[0, WG) when n
    // is even, kv[WG, 2 WG) when odd, so one barrier per exchange keeps a write from
    // overtaking the previous exchange's reads.
    workgroupBarrier();
#unroll c QPI
    {
        let hm = {c}u * ({{DP4}}u + 1u) % 2u * {{WG}}u;
        kv[hm + t] = vec4<f32>(m{c}, l{c}, 0.0, 0.0);
        workgroupBarrier();
        var mx = MASKED;
        for (var r = 0u; r < {{SPLIT}}u; r++) {
            mx = max(mx, kv[hm + r * QW + qi].x);
        }
        var lt = 0.0;
        for (var r = 0u; r < {{SPLIT}}u; r++) {
            let o = kv[hm + r * QW + qi];
            lt += o.y * exp(o.x - mx);
        }
        l{c} = lt;
        let f = exp(m{c} - mx);
#unroll e DP4
        let ha{e} = ({c}u * ({{DP4}}u + 1u) + 1u + {e}u) % 2u * {{WG}}u;
        kv[ha{e} + t] = acc{c}_{e} * f;
        workgroupBarrier();
        if (part == 0u) {
            var a = vec4<f32>(0.0);
            for (var r = 0u; r < {{SPLIT}}u; r++) {
                a += kv[ha{e} + r * QW + qi];
            }
            acc{c}_{e} = a;
        }
#end
    }
#end
#end
#unroll c QPI
    if (i{c} < p.seq && part == 0u) {
        let inv = select(0.0, 1.0 / l{c}, l{c} > 0.0);
        let ob = (first + i{c}) * p.out_stride + h * d;
#unroll e DP4
        for (var x = 0u; x < 4u; x++) {
            if (4u * {e}u + x < d) {
                out[ob + 4u * {e}u + x] = acc{c}_{e}[x] * inv;
            }
        }
#end
        if (h == 0u) {
            for (var x = p.hidden; x < p.out_stride; x++) {
                out[(first + i{c}) * p.out_stride + x] = 0.0;
            }
        }
    }
#end
}
