// Sparse weights (CSR, BSR or 2:4, as the sparse kernels bind them) written out as the dense
// matrix the dense kernels read: rows of 16-byte blocks, f16 pairs (OUT_F16) or f32 (!OUT_F16),
// columns past k zero. For many activation rows a dense GEMM over this copy beats walking the
// sparse structure once per row tile, and the copy costs one read of the sparse arrays and one
// write of the dense matrix per forward pass.
//
// One invocation writes one 16-byte block (CPB columns) of one row, so every output word has
// one writer and no zero-fill pass is needed: it finds the stored entries of its columns
// (CSR: a binary search of the row's sorted columns; BSR: of the block row's sorted block
// columns, a block holding all CPB columns since block widths are multiples of CPB; 2:4: the
// groups are at fixed places) and decodes them with the value file's dec4.
// Template variables: CSR / BSR / TWO_FOUR (!TWO_FOUR: the search), IDX16 (else u32 indices),
// VF16 / VF32, INT4, INT8, CPB, OUT_F16 (else f32 out); BSR: R (block rows), BC, RV, BV.
struct Params {
    n: u32,          // rows
    k: u32,          // columns holding data
    row_blocks: u32, // 16-byte blocks per dense row
    total: u32,      // n · row_blocks
    fa: u32,         // 2:4: value vec4s per row
    fb: u32,         // 2:4: metadata words per row
    fc: u32,         // 2:4: int4 scales per row
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ptrs: array<u32>;
@group(0) @binding(2) var<storage, read> idx: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vals: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> scales: array<u32>;
@group(0) @binding(5) var<storage, read_write> dense: array<vec4<u32>>;

const CPB: u32 = {{CPB}}u;

var<private> cols: array<f32, CPB>;

fn half_at(w: u32, i: u32) -> f32 {
    let h = unpack2x16float(w);
    return select(h.x, h.y, i == 1u);
}

fn idx_word(a: u32) -> u32 {
    return idx[a / 4u][a % 4u];
}

// Scale of a whole output row (int8 values), 1 otherwise.
fn row_scale(row: u32) -> f32 {
#if INT8
    return bitcast<f32>(scales[row]);
#else
    return 1.0;
#end
}

#if !TWO_FOUR
// The first entry in [lo, hi) whose sorted_key (defined by CSR and BSR below) is at least
// `want`, or hi: a binary search, since a row's entries are sorted.
fn first_at_least(lo0: u32, hi0: u32, want: u32) -> u32 {
    var lo = lo0;
    var hi = hi0;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (sorted_key(mid) < want) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}
#end

#if CSR
fn csr_col(e: u32) -> u32 {
#if IDX16
    return (idx[e / 8u][(e % 8u) / 2u] >> (16u * (e % 2u))) & 0xFFFFu;
#else
    return idx_word(e);
#end
}

// The entries' columns, sorted within a row: what first_at_least searches.
fn sorted_key(e: u32) -> u32 {
    return csr_col(e);
}

fn csr_val(e: u32) -> f32 {
#if VF16
    return half_at(vals[e / 8u][(e % 8u) / 2u], e % 2u);
#end
#if VF32
    return bitcast<f32>(vals[e / 4u][e % 4u]);
#end
}

fn fill(row: u32, c0: u32) {
    let end = ptrs[row + 1u];
    for (var e = first_at_least(ptrs[row], end, c0); e < end; e++) {
        let c = csr_col(e);
        if (c >= c0 + CPB) {
            break;
        }
        cols[c - c0] = csr_val(e);
    }
}
#end

#if BSR
const R: u32 = {{R}}u;
const BC: u32 = {{BC}}u;
const RV: u32 = {{RV}}u;
const BV: u32 = {{BV}}u;

// The blocks' columns, sorted within a block row: what first_at_least searches.
fn sorted_key(b: u32) -> u32 {
    return idx_word(b);
}

fn fill(row: u32, c0: u32) {
    let br = row / R;
    let r = row % R;
    let want = c0 / BC;
    let end = ptrs[br + 1u];
    let b = first_at_least(ptrs[br], end, want);
    if (b >= end || sorted_key(b) != want) {
        return;
    }
#if INT4
    let sr = b * R + r;
    let s = half_at(scales[sr >> 1u], sr & 1u);
#else
    let s = 1.0;
#end
    let cb0 = c0 % BC;
    for (var c = 0u; c < CPB; c++) {
        let cb = cb0 + c;
        let v = vals[b * BV + r * RV + cb / (4u * EPV4)];
        cols[c] = dec4(v, (cb % (4u * EPV4)) / 4u)[cb % 4u] * s;
    }
}
#end

#if TWO_FOUR
const GPU_: u32 = EPV4 * 2u; // groups of four columns per value vec4

fn fill(row: u32, c0: u32) {
    for (var gl = 0u; gl < CPB / 4u; gl++) {
        let g = c0 / 4u + gl;
        let ul = g / GPU_;
        if (ul >= p.fa) {
            return;
        }
        let gi = g % GPU_;
        let d = dec4(vals[row * p.fa + ul], gi / 2u);
        let odd = gi % 2u == 1u;
        let nib = (idx_word(row * p.fb + g / 8u) >> (4u * (g % 8u))) & 15u;
#if INT4
        let si = row * p.fc + ul;
        let s = half_at(scales[si >> 1u], si & 1u);
#else
        let s = 1.0;
#end
        cols[4u * gl + (nib & 3u)] += select(d.x, d.z, odd) * s;
        cols[4u * gl + (nib >> 2u)] += select(d.y, d.w, odd) * s;
    }
}
#end

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.total) {
        return;
    }
    let row = i / p.row_blocks;
    let c0 = (i % p.row_blocks) * CPB;
#unroll c CPB
    cols[{c}] = 0.0;
#end
    fill(row, c0);
    let s = row_scale(row);
#unroll c CPB
    cols[{c}] = select(0.0, cols[{c}] * s, c0 + {c}u < p.k);
#end
#if OUT_F16
    dense[i] = vec4<u32>(
        pack2x16float(vec2<f32>(cols[0], cols[1])),
        pack2x16float(vec2<f32>(cols[2], cols[3])),
        pack2x16float(vec2<f32>(cols[4], cols[5])),
        pack2x16float(vec2<f32>(cols[6], cols[7])),
    );
#else
    dense[i] = bitcast<vec4<u32>>(vec4<f32>(cols[0], cols[1], cols[2], cols[3]));
#end
}
