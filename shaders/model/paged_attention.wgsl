// Causal grouped-query attention over the paged KV cache (flash-decoding):
//   out[r, h] = softmax_j(q[r, h] · k_j · scale) · v_j over keys j of the row's sequence in
//   0 ..= pos (clamped by paged_keys), k and v from kv head h / group.
// A workgroup takes one (row, kv head, split): the `group` query heads that share the kv
// head, over the split's keys [split · split_keys, (split + 1) · split_keys). Keys are staged
// kc at a time in workgroup memory (packed f16, as in the pools), so each K/V word is read
// from the pool once for the whole group. Per tile: the group × kc scores (one dot product
// per invocation); one invocation per query head finds the new running max and the rescale
// factor; the weights exp(score - max), one per invocation, written over the scores; then
// each invocation rescales and updates the accumulators of the (head, component pair)s it
// owns (NA of them, WG apart), and the running sum of their head, which every owner of the
// head keeps alike (the same additions in the same order), so it is never shared.
// MERGE: the splits write their (max, sum, unnormalised accumulator) to dst, the scratch,
// at ((r · heads + h) · splits + split) · (head_dim + 2), and paged_combine merges them; a
// split wholly past the row's keys writes nothing (the combine does not read it). Otherwise
// there is one split and dst is the output (row padding zero).
struct Params {
    rows: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    group: u32,        // heads / kv_heads
    block_size: u32,
    blocks: u32,
    table_stride: u32,
    seqs: u32,         // sequences the tables buffer holds
    max_context: u32,
    splits: u32,
    split_keys: u32,
    kc: u32,           // keys per staged tile
    q_stride: u32,
    out_stride: u32,
    scale: f32,        // 1 / sqrt(head_dim)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<u32>;
@group(0) @binding(4) var<storage, read> k_pool: array<u32>;
@group(0) @binding(5) var<storage, read> v_pool: array<u32>;
@group(0) @binding(6) var<storage, read_write> dst: array<f32>;

// Workgroup memory, carved at run time (the host checks that the parts fit): staged keys
// [0, kc·ks) in rows of ks = half | 1 words (an odd stride, so the invocations scoring
// different keys at once read different banks), values [kc·ks, kc·(ks + half)) in rows of
// half, the group's scaled q (group · head_dim f32),
// scores then weights (group × kc), and per query head the running max and the tile's
// rescale factor.
var<workgroup> sh: array<u32, {{SH}}>;

const MASKED: f32 = -1.0e30;

fn shf(i: u32) -> f32 {
    return bitcast<f32>(sh[i]);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let idx = row_of(wg, nwg);
    if (idx >= p.rows * p.kv_heads * p.splits) {
        return;
    }
    let split = idx % p.splits;
    let kvh = idx / p.splits % p.kv_heads;
    let r = idx / p.splits / p.kv_heads;
    let seq = rows[2u * r];
    let n = paged_keys(seq, rows[2u * r + 1u], p.seqs, p.max_context, p.table_stride,
                       p.block_size);
    let k0 = split * p.split_keys;
    let k1 = min(k0 + p.split_keys, n);
#if MERGE
    if (k0 >= n) {
        return;
    }
#end
    let d = p.head_dim;
    let half = d / 2u;
    let g = p.group;
    let kc = p.kc;
    let ks = half | 1u;
    let voff = kc * ks;
    let qoff = voff + kc * half;
    let soff = qoff + g * d;
    let moff = soff + g * kc;
    let roff = moff + g;
    let qb = r * p.q_stride + kvh * g * d;
    for (var i = t; i < g * d; i += {{WG}}u) {
        sh[qoff + i] = bitcast<u32>(q[qb + i] * p.scale);
    }
    for (var i = t; i < g; i += {{WG}}u) {
        sh[moff + i] = bitcast<u32>(MASKED);
    }
#unroll a NA
    var acc{a} = vec2<f32>(0.0);
    var l{a} = 0.0;
#end
    // A row past the tables has no keys; the clamp only keeps its (unused) base in bounds.
    let tb = select(0u, seq, seq < p.seqs) * p.table_stride;
    for (var j0 = k0; j0 < k1; j0 += kc) {
        workgroupBarrier();
        let kn = min(kc, k1 - j0);
        for (var s = t; s < kn * half; s += {{WG}}u) {
            let key = j0 + s / half;
            let block = min(tables[tb + key / p.block_size], p.blocks - 1u);
            let at = paged_slot(block, kvh, p.kv_heads, key % p.block_size, p.block_size, half)
                + s % half;
            sh[s / half * ks + s % half] = k_pool[at];
            sh[voff + s] = v_pool[at];
        }
        workgroupBarrier();
        for (var e = t; e < g * kn; e += {{WG}}u) {
            let gi = e / kn;
            let jj = e - gi * kn;
            var s = 0.0;
            for (var w = 0u; w < half; w++) {
                let qq = vec2<f32>(shf(qoff + gi * d + 2u * w), shf(qoff + gi * d + 2u * w + 1u));
                s += dot(qq, unpack2x16float(sh[jj * ks + w]));
            }
            sh[soff + gi * kc + jj] = bitcast<u32>(s);
        }
        workgroupBarrier();
        for (var gi = t; gi < g; gi += {{WG}}u) {
            var cm = MASKED;
            for (var jj = 0u; jj < kn; jj++) {
                cm = max(cm, shf(soff + gi * kc + jj));
            }
            let m = shf(moff + gi);
            let m2 = max(m, cm);
            sh[moff + gi] = bitcast<u32>(m2);
            sh[roff + gi] = bitcast<u32>(exp(m - m2));
        }
        workgroupBarrier();
        for (var e = t; e < g * kn; e += {{WG}}u) {
            let gi = e / kn;
            let at = soff + gi * kc + e - gi * kn;
            sh[at] = bitcast<u32>(exp(shf(at) - shf(moff + gi)));
        }
        workgroupBarrier();
#unroll a NA
        {
            let i = t + {a}u * {{WG}}u;
            if (i < g * half) {
                let gi = i / half;
                let w = i - gi * half;
                let rr = shf(roff + gi);
                var x = acc{a} * rr;
                var ls = 0.0;
                for (var jj = 0u; jj < kn; jj++) {
                    let wj = shf(soff + gi * kc + jj);
                    x += wj * unpack2x16float(sh[voff + jj * half + w]);
                    ls += wj;
                }
                acc{a} = x;
                l{a} = l{a} * rr + ls;
            }
        }
#end
    }
    // The maxima are final; with no tile at all, this orders their initial writes.
    workgroupBarrier();
#unroll a NA
    {
        let i = t + {a}u * {{WG}}u;
        if (i < g * half) {
            let gi = i / half;
            let w = i - gi * half;
            let h = kvh * g + gi;
            let l = l{a};
#if MERGE
            let base = ((r * p.heads + h) * p.splits + split) * (d + 2u);
            if (w == 0u) {
                dst[base] = shf(moff + gi);
                dst[base + 1u] = l;
            }
            dst[base + 2u + 2u * w] = acc{a}.x;
            dst[base + 3u + 2u * w] = acc{a}.y;
#else
            let inv = select(0.0, 1.0 / l, l > 0.0);
            let o = r * p.out_stride + h * d + 2u * w;
            dst[o] = acc{a}.x * inv;
            dst[o + 1u] = acc{a}.y * inv;
#end
        }
    }
#end
#if !MERGE
    if (kvh == 0u) {
        for (var x = p.heads * d + t; x < p.out_stride; x += {{WG}}u) {
            dst[r * p.out_stride + x] = 0.0;
        }
    }
#end
}
