// Merges the split partials of paged_attention: for output (row r, head h, component c),
//   out = Σ_s acc_s[c] · exp(m_s − M) / Σ_s l_s · exp(m_s − M),  M = max_s m_s
// over the splits s that hold keys of the row (the same paged_keys count as the attention
// kernel, so a split it skipped is never read). One invocation per element of the padded
// output; padding is written as zeros, and a row with no keys gives zeros.
struct Params {
    rows: u32,
    heads: u32,
    head_dim: u32,
    out_stride: u32,
    seqs: u32,
    max_context: u32,
    table_stride: u32,
    block_size: u32,
    splits: u32,
    split_keys: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const MASKED: f32 = -1.0e30;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let i = (wg.x + wg.y * nwg.x) * {{WG}}u + t;
    let r = i / p.out_stride;
    if (r >= p.rows) {
        return;
    }
    let c = i - r * p.out_stride;
    let d = p.head_dim;
    if (c >= p.heads * d) {
        out[i] = 0.0;
        return;
    }
    let h = c / d;
    let n = paged_keys(rows[2u * r], rows[2u * r + 1u], p.seqs, p.max_context,
                       p.table_stride, p.block_size);
    let ns = min((n + p.split_keys - 1u) / p.split_keys, p.splits);
    let base = (r * p.heads + h) * p.splits * (d + 2u);
    var mx = MASKED;
    for (var s = 0u; s < ns; s++) {
        mx = max(mx, part[base + s * (d + 2u)]);
    }
    var l = 0.0;
    var a = 0.0;
    for (var s = 0u; s < ns; s++) {
        let o = base + s * (d + 2u);
        let f = exp(part[o] - mx);
        l += part[o + 1u] * f;
        a += part[o + 2u + c - h * d] * f;
    }
    out[i] = select(0.0, a / l, l > 0.0);
}
