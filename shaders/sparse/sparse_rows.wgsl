// Core of every sparse y = x · Wᵀ (+ bias) kernel. The weights are cut into *items* (a CSR
// row, a BSR block row of R output rows, a 2:4 row), each a contiguous range of *units* (8 CSR
// elements, one BSR block, one vec4 of 2:4 values); the format file (sparse_csr/bsr/24.wgsl)
// says where an item's units are (item_units) and how a lane adds one unit to its partial
// sums (unit_acc). The lanes of a team read consecutive units, so their loads coalesce.
//
// Load balance: the host groups consecutive items into *bins*, one workgroup per bin and
// activation tile. A bin is either up to a few short items that the workgroup's teams take
// one each (subgroups, or TEAM-lane teams without subgroups; teams never wait for each
// other), or a single long item that the whole workgroup walks and reduces together, so a
// dense row never keeps one team busy while the others idle.
//
// Activation rows are taken MT at a time (grid: bins × ceil(m / MT) workgroups); each lane
// keeps R × MT partial sums in registers (loops unrolled in the text, src/gpu/wgsl.rs).
// Template variables: MT, R, U (units in flight per lane), SG (subgroup reduction, else workgroup memory), XT
// (x transposed per tile, see sparse_csr.wgsl), XSM (x staged in workgroup memory: its
// length, CSR with MT = 1; 0: not staged).
struct Params {
    n: u32,         // output features
    k4: u32,        // x vec4s holding data per row: ceil(k / 4)
    m: u32,         // activation rows
    m_tiles: u32,   // ceil(m / MT)
    bins: u32,      // bins (workgroups per activation tile)
    x_stride4: u32, // x row stride in vec4s
    y_stride: u32,  // y row stride in elements (outputs n.. are the zero padding)
    bins_off: u32,  // word offset of the bins in `ptrs`
    items: u32,     // items holding weights; later items only write padding
    fa: u32,        // format parameters (see the format file)
    fb: u32,
    fc: u32,
}

override HAS_BIAS: bool = false;
override WG: u32 = 256u;
const MT: u32 = {{MT}}u;
const R: u32 = {{R}}u;
const RM: u32 = {{R}}u * {{MT}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read> ptrs: array<u32>;
@group(0) @binding(3) var<storage, read> idx: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> vals: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> scales: array<u32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<act>;

var<private> acc: array<f32, RM>;
// x vec4 offset of each activation row of the tile (clamped to the last row).
var<private> xrow: array<u32, MT>;
// (first item, item count, whole-workgroup flag, rounds), read uniformly by all invocations.
var<workgroup> bin_wg: vec4<u32>;
#if SG
var<workgroup> red: array<f32, 64u * RM>;
#else
override TEAM: u32 = 32u;
var<workgroup> red: array<f32, WG * RM>;
#end

// Component i of v. With XSEL without a dynamic index into a vector value, which a driver
// may lower to a round trip through local memory; !XSEL keeps the plain index (for comparison).
fn pick4(v: vec4<f32>, i: u32) -> f32 {
#if XSEL
    return select(select(v.x, v.y, i == 1u), select(v.z, v.w, i == 3u), i >= 2u);
#else
    return v[i];
#end
}

// Half i (0 or 1) of a packed f16 pair.
fn half_of(w: u32, i: u32) -> f32 {
    let h = unpack2x16float(w);
    return select(h.x, h.y, i == 1u);
}

#if XSM
// CSR with one activation row: x staged whole in workgroup memory, since gathers by column
// index from global memory touch a different cache line per lane.
var<workgroup> xs: array<f32, {{XSM}}>;
#end

// x[row][col] for the activation row whose vec4 offset is `base4`: one scalar load.
fn x_at(base4: u32, col: u32) -> f32 {
#if XSM
    return xs[col];
#else
#if XSEL
    return f32(x[base4 + (col >> 2u)][col & 3u]);
#else
    return load_x4(base4 + (col >> 2u))[col & 3u];
#end
#end
}

// Writes R × MT outputs of `item` (sums `t`); outputs past n are padding and get zero.
fn write_item(item: u32, m0: u32, t: array<f32, RM>) {
#unroll r R
    {
        let out = item * R + {r}u;
        if (out < p.y_stride) {
            var s = 0.0;
            var b = 0.0;
            if (out < p.n) {
                s = row_scale(out);
                if (HAS_BIAS) {
                    b = bias[out];
                }
            }
#unroll m MT
            if (m0 + {m}u < p.m) {
                y[(m0 + {m}u) * p.y_stride + out] = to_act(t[{r}u * MT + {m}u] * s + b);
            }
#end
        }
    }
#end
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
#if SG
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) sgl: u32,
    @builtin(subgroup_size) sgs: u32,
#end
) {
    let w = wg.x + wg.y * nwg.x;
    let bi = w % p.bins;
    let mt = w / p.bins;
    var teams = 1u;
#if SG
    teams = nsg;
#else
    teams = WG / TEAM;
#end
    if (li == 0u) {
        let flags = ptrs[p.bins_off + 2u * bi + 1u];
        let count = flags & 0x7FFFFFFFu;
        let whole = flags >> 31u;
        var tm = teams;
        if (whole != 0u) {
            tm = 1u;
        }
        bin_wg = vec4<u32>(ptrs[p.bins_off + 2u * bi], count, whole, (count + tm - 1u) / tm);
    }
    let bin = workgroupUniformLoad(&bin_wg);
    let whole = bin.z != 0u;
    var team = WG;
    var lane = li;
    var t = 0u;
    if (!whole) {
#if SG
        team = sgs;
        lane = sgl;
        t = sg;
#else
        team = TEAM;
        lane = li % TEAM;
        t = li / TEAM;
#end
    } else {
        teams = 1u;
    }
    let m0 = mt * MT;
    let live_tile = mt < p.m_tiles;
#unroll i MT
    xrow[{i}] = min(m0 + {i}u, p.m - 1u) * p.x_stride4;
#end
#if XT
    xrow[0] = mt * p.k4 * 4u;
#end
#if XSM
    for (var i = li; i < p.k4; i += WG) {
        let v = load_x4(xrow[0] + i);
        xs[4u * i] = v.x;
        xs[4u * i + 1u] = v.y;
        xs[4u * i + 2u] = v.z;
        xs[4u * i + 3u] = v.w;
    }
    workgroupBarrier();
#end
    for (var round = 0u; round < bin.w; round++) {
        let i = round * teams + t;
        let item = bin.x + min(i, bin.y - 1u);
        let live = live_tile && i < bin.y;
#unroll j RM
        acc[{j}] = 0.0;
#end
        if (live && item < p.items) {
            let ur = item_units(item);
            for (var u = ur.x + lane; u < ur.y; u += team * {{U}}u) {
#unroll q U
                unit_acc(item, u + {q}u * team, ur.y);
#end
            }
        }
        var tot: array<f32, RM>;
#if SG
#unroll j RM
        tot[{j}] = subgroupAdd(acc[{j}]);
#end
        if (whole) {
            if (sgl == 0u) {
#unroll j RM
                red[sg * RM + {j}u] = tot[{j}];
#end
            }
            workgroupBarrier();
            if (li == 0u) {
#unroll j RM
                tot[{j}] = 0.0;
#end
                for (var s = 0u; s < nsg; s++) {
#unroll j RM
                    tot[{j}] += red[s * RM + {j}u];
#end
                }
            }
            workgroupBarrier();
        }
#else
#unroll j RM
        red[{j}u * WG + li] = acc[{j}];
#end
        workgroupBarrier();
        for (var s = team / 2u; s > 0u; s >>= 1u) {
            if (lane < s) {
#unroll j RM
                red[{j}u * WG + li] += red[{j}u * WG + li + s];
#end
            }
            workgroupBarrier();
        }
#unroll j RM
        tot[{j}] = red[{j}u * WG + li];
#end
#end
        if (lane == 0u && live) {
            write_item(item, m0, tot);
        }
    }
}
