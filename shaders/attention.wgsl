// Multi-head self-attention over a padded batch:
//   out[b, i, h] = softmax_j(q_i · k_j / sqrt(d), keys with mask 0 excluded) · v_j
// q, k, v are the three column blocks [0, H), [H, 2H), [2H, 3H) of one fused QKV row.
// A workgroup takes WG queries of one (sequence, head); each invocation owns one query and
// keeps its q and output in registers (DP4 vec4s, zero-padded past the head size), while
// the workgroup stages KC keys and values at a time in workgroup memory, loaded coalesced
// and then read by every invocation at once. The softmax is computed online (running max
// and sum), so any sequence length works. A sequence whose keys are all masked gives zeros.
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

var<workgroup> ks: array<vec4<f32>, {{KCDP4}}>;
var<workgroup> vs: array<vec4<f32>, {{KCDP4}}>;
var<workgroup> live: array<f32, {{KC}}>;

const MASKED: f32 = -1.0e30;

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
    let tiles = (p.seq + {{WG}}u - 1u) / {{WG}}u;
    let idx = row_of(wg, nwg);
    let seqs = p.rows / p.seq;
    if (idx >= seqs * p.heads * tiles) {
        return;
    }
    let tile = idx % tiles;
    let h = (idx / tiles) % p.heads;
    let first = (idx / tiles / p.heads) * p.seq; // token 0 of this sequence
    let i = tile * {{WG}}u + t;                  // this invocation's query
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
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (j < p.seq) {
                let base = (first + j) * p.qkv_stride + h * d;
                kv = load4(base + p.hidden, s % {{DP4}}u);
                vv = load4(base + 2u * p.hidden, s % {{DP4}}u);
            }
            ks[s] = kv;
            vs[s] = vv;
        }
        for (var s = t; s < {{KC}}u; s += {{WG}}u) {
            let j = j0 + s;
            live[s] = select(0.0, 1.0, j < p.seq && tokens[first + min(j, p.seq - 1u)].w != 0u);
        }
        workgroupBarrier();
        let n = min({{KC}}u, p.seq - j0);
        for (var jj = 0u; jj < n; jj++) {
            if (live[jj] == 0.0) {
                continue;
            }
            let kb = jj * {{DP4}}u;
            var s = 0.0;
#unroll e DP4
            s += dot(q{e}, ks[kb + {e}u]);
#end
            let m2 = max(m, s);
            let c = exp(m - m2);
            let w = exp(s - m2);
            l = l * c + w;
#unroll e DP4
            acc{e} = acc{e} * c + w * vs[kb + {e}u];
#end
            m = m2;
        }
    }
    if (i < p.seq) {
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
