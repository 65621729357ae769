// Appends one pass's token rows to the paged KV cache. qkv row r is [Q | K | V] (heads,
// kv_heads, kv_heads heads of 2·half components); at the row's position pos:
//   q[r]                = RoPE(Q), f32, row padding zero
//   k_pool[slot(r)]     = f16(RoPE(K)),  v_pool[slot(r)] = f16(V)
// RoPE turns pair k of a head by pos · inv_freq[k] (INTERLEAVED pairs (2k, 2k + 1), otherwise
// (k, k + half)), exactly as rope.wgsl. One invocation per output word: two f32 of q, or one
// packed f16 pair of K or V, so no two invocations write one word. A row whose sequence is
// past the tables, whose position is past its table row, or whose block id is past the pool
// writes no K or V (its q is still written).
struct Params {
    rows: u32,
    heads: u32,
    kv_heads: u32,
    half: u32,         // head_dim / 2
    qkv_stride: u32,
    q_stride: u32,
    words: u32,        // invocations per row: q_stride / 2 + kv_heads · head_dim
    block_size: u32,
    blocks: u32,
    table_stride: u32,
    seqs: u32,         // sequences the tables buffer holds
    _p0: u32,
}

override INTERLEAVED: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<u32>;
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(5) var<storage, read_write> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_pool: array<u32>;
@group(0) @binding(7) var<storage, read_write> v_pool: array<u32>;

// Component e of the head starting at qkv[base], rotated to position `pos`.
fn rotated(base: u32, e: u32, pos: f32) -> f32 {
    var k = e;
    var second = e >= p.half;
    if (second) {
        k = e - p.half;
    }
    var a = k;
    var b = k + p.half;
    if (INTERLEAVED) {
        k = e / 2u;
        second = (e & 1u) == 1u;
        a = 2u * k;
        b = a + 1u;
    }
    let cs = rope_turn(pos * inv_freq[k]);
    let xa = qkv[base + a];
    let xb = qkv[base + b];
    return select(xa * cs.x - xb * cs.y, xb * cs.x + xa * cs.y, second);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let i = (wg.x + wg.y * nwg.x) * {{WG}}u + t;
    let row = i / p.words;
    if (row >= p.rows) {
        return;
    }
    let w = i - row * p.words;
    let seq = rows[2u * row];
    let pos = rows[2u * row + 1u];
    let fpos = f32(pos);
    let d = 2u * p.half;
    let src = row * p.qkv_stride;
    let qw = p.q_stride / 2u;
    if (w < qw) {
        let e = 2u * w;
        let o = row * p.q_stride + e;
        if (e >= p.heads * d) {
            q[o] = 0.0;
            q[o + 1u] = 0.0;
            return;
        }
        let hb = src + e / d * d;
        q[o] = rotated(hb, e % d, fpos);
        q[o + 1u] = rotated(hb, e % d + 1u, fpos);
        return;
    }
    let kvw = p.kv_heads * p.half;
    let wk = w - qw;
    let is_v = wk >= kvw;
    let wh = select(wk, wk - kvw, is_v);
    let kvh = wh / p.half;
    let ww = wh - kvh * p.half;
    if (seq >= p.seqs || pos / p.block_size >= p.table_stride) {
        return;
    }
    let block = tables[seq * p.table_stride + pos / p.block_size];
    if (block >= p.blocks) {
        return;
    }
    let at = paged_slot(block, kvh, p.kv_heads, pos % p.block_size, p.block_size, p.half) + ww;
    let hb = src + p.heads * d + kvh * d;
    if (is_v) {
        let vb = hb + p.kv_heads * d;
        v_pool[at] = pack2x16float(vec2<f32>(qkv[vb + 2u * ww], qkv[vb + 2u * ww + 1u]));
    } else {
        k_pool[at] = pack2x16float(vec2<f32>(rotated(hb, 2u * ww, fpos),
                                             rotated(hb, 2u * ww + 1u, fpos)));
    }
}
