// Tensor-core GEMM on 16×16×16 f16 cooperative matrices with f32 accumulators.
//
// A workgroup of SGM × SGN subgroups computes a BM × BN tile of y (BM = SGM·FM·16,
// BN = SGN·FN·16); each subgroup owns FM × FN accumulator fragments. BK-deep slices of x and
// of the weights are converted to f16 while staged in workgroup memory (weights dequantized
// there, so every format shares this kernel). The global loads of slice t+1 are issued
// before the fragments of slice t are multiplied; with NBUF = 2 buffers one barrier per slice
// suffices, with NBUF = 1 (deeper slices in the same memory) a second one guards the buffer
// before it is overwritten. Rows are padded by 8 halves so the fragment loads of consecutive rows fall into
// different banks. Edges are handled by staging zeros, so any M, N, K work.
// Template variables: SG (subgroup size), SGM, SGN, FM, FN, BK, NBUF, SINGLE = (NBUF == 1),
// XLOADS, WLOADS, WRAW (f16
// weights copied without decoding; else decoded), KSTEPS = BK / 16, BLOCK_VEC4, SUB4 (weight
// vec4s an invocation stages: a block, or, for the binary and ternary formats' blocks of
// 64-128 weights, the part of one that divides both the block and BK / 4), PARTIAL
// (SUB4 < BLOCK_VEC4).
// (Splitting a weight block's decoding over 2-4 invocations, so that all of them work when a
// slice has fewer blocks than invocations, measured slower on the H100: see
// docs/notes/tensor_cores.md, v3.)
// (Staging u32 words of two halves and loading fragments from them as f16 halves the
// stores, but NVIDIA's compiler rejects that reinterpretation: NVVM compilation fails.)
const SG: u32 = {{SG}}u;
const SGN: u32 = {{SGN}}u;
const FM: u32 = {{FM}}u;
const FN: u32 = {{FN}}u;
const WG: u32 = {{SGM}}u * SGN * SG;
const BM: u32 = {{SGM}}u * FM * 16u;
const BN: u32 = SGN * FN * 16u;
const BK: u32 = {{BK}}u;
const NBUF: u32 = {{NBUF}}u;
const STR: u32 = BK + 8u; // padded row stride of the staged tiles, in halves
const BLOCK_K: u32 = BLOCK_VEC4 * 4u;
const SUB4: u32 = {{SUB4}}u;
const WUNITS: u32 = BK / (4u * SUB4); // staging units (blocks or parts of one) per staged row
const GROUP_M: u32 = 8u;

var<workgroup> xs: array<f16, NBUF * BM * STR>; // [buffer][m][k]
var<workgroup> ws: array<f16, NBUF * BN * STR>; // [buffer][n][k]: B = Wᵀ, column-major
var<workgroup> cs: array<f32, WG / SG * 256u>; // one 16 × 16 result fragment per subgroup

// Staging is split into a global load into registers (`load_*`, zeros outside the
// matrices) and a store into workgroup buffer `buf` (`stage_*`), so the loads of the next
// slice are in flight while the current one is multiplied. `l` numbers an invocation's loads.
fn load_x(li: u32, l: u32, m0: u32, k0: u32) -> vec4<f16> {
    let idx = li + l * WG;
    let gm = m0 + idx / (BK / 4u);
    let gk4 = k0 / 4u + idx % (BK / 4u);
    if (gm < p.m && gk4 < p.k4 && idx < BM * BK / 4u) {
        return vec4<f16>(x[(p.row0 + gm) * p.x_stride4 + gk4]);
    }
    return vec4<f16>(0.0);
}

fn stage_x(li: u32, l: u32, buf: u32, h: vec4<f16>) {
    let idx = li + l * WG;
    if (idx < BM * BK / 4u) {
        let o = buf * BM * STR + (idx / (BK / 4u)) * STR + (idx % (BK / 4u)) * 4u;
        xs[o] = h.x;
        xs[o + 1u] = h.y;
        xs[o + 2u] = h.z;
        xs[o + 3u] = h.w;
    }
}

struct WBlock {
    q: vec4<u32>,
    sz: vec2<f32>, // scale, zero point
    j0: u32,       // first vec4 of the block that the unit stages
}

fn load_w(li: u32, l: u32, n0: u32, k0: u32) -> WBlock {
    let idx = li + l * WG;
    let gn = n0 + idx / WUNITS;
    let v4 = k0 / 4u + (idx % WUNITS) * SUB4;
    let blk = v4 / BLOCK_VEC4;
#if PARTIAL
    let j0 = v4 % BLOCK_VEC4;
#else
    let j0 = 0u;
#end
    if (gn < p.n && blk < p.row_blocks && idx < BN * WUNITS) {
        return WBlock(w[gn * p.row_blocks + blk], block_scale_zero(gn, blk), j0);
    }
    return WBlock(vec4<u32>(0u), vec2<f32>(0.0), j0);
}

fn stage_w(li: u32, l: u32, buf: u32, b: WBlock) {
    let idx = li + l * WG;
    if (idx < BN * WUNITS) {
        let o = buf * BN * STR + (idx / WUNITS) * STR + (idx % WUNITS) * SUB4 * 4u;
#if WRAW
#unroll q 4
        {
            let h = vec2<f16>(unpack2x16float(b.q[{q}]));
            ws[o + {q}u * 2u] = h[0];
            ws[o + {q}u * 2u + 1u] = h[1];
        }
#end
#else
#unroll q SUB4
        {
            let h = vec4<f16>(decode(b.q, b.j0 + {q}u, b.sz) * block_scale(b.sz));
            ws[o + {q}u * 4u] = h.x;
            ws[o + {q}u * 4u + 1u] = h.y;
            ws[o + {q}u * 4u + 2u] = h.z;
            ws[o + {q}u * 4u + 3u] = h.w;
        }
#end
#end
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // Consecutive workgroups walk down a band of GROUP_M tile rows before moving right, so
    // the weight tiles they share are still in L2 when the next row of the band needs them.
    let lin = wg.y * nwg.x + wg.x;
    let band = lin / (GROUP_M * nwg.x);
    let rows = min(nwg.y - band * GROUP_M, GROUP_M);
    let in_band = lin % (GROUP_M * nwg.x);
    let n0 = (in_band / rows) * BN;
    let m0 = (band * GROUP_M + in_band % rows) * BM;
    let sg = li / SG;
    let lane = li % SG;
    let fm0 = (sg / SGN) * FM * 16u; // first tile row of this subgroup's fragments
    let fn0 = (sg % SGN) * FN * 16u; // first tile column
#unroll i FM
#unroll j FN
    var acc{i}_{j} = coop_mat16x16<f32, C>();
#end
#end
    let tiles = (p.row_blocks * BLOCK_K + BK - 1u) / BK;
#unroll l XLOADS
    stage_x(li, {l}u, 0u, load_x(li, {l}u, m0, 0u));
#end
#unroll l WLOADS
    stage_w(li, {l}u, 0u, load_w(li, {l}u, n0, 0u));
#end
    workgroupBarrier();
    // naga counts every branch on a local variable as non-uniform, and cooperative operations
    // and barriers need uniform control flow: so no branch in this loop; its last iteration
    // stages an all-zero slice that is never read.
    for (var t = 1u; t <= tiles; t++) {
        let k0 = t * BK;
#unroll l XLOADS
        let xr{l} = load_x(li, {l}u, m0, k0);
#end
#unroll l WLOADS
        let wr{l} = load_w(li, {l}u, n0, k0);
#end
        let xb = ((t - 1u) % NBUF) * BM * STR;
        let wb = ((t - 1u) % NBUF) * BN * STR;
#unroll kk KSTEPS
        {
#unroll i FM
            let a{i} = coopLoadT<coop_mat16x16<f16, A>>(&xs[xb + (fm0 + {i}u * 16u) * STR + {kk}u * 16u], STR);
#end
#unroll j FN
            let b{j} = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + (fn0 + {j}u * 16u) * STR + {kk}u * 16u], STR);
#end
#unroll i FM
#unroll j FN
            acc{i}_{j} = coopMultiplyAdd(a{i}, b{j}, acc{i}_{j});
#end
#end
        }
#end
#if SINGLE
        workgroupBarrier();
#end
#unroll l XLOADS
        stage_x(li, {l}u, t % NBUF, xr{l});
#end
#unroll l WLOADS
        stage_w(li, {l}u, t % NBUF, wr{l});
#end
        workgroupBarrier();
    }
    // Each subgroup passes its fragments through workgroup memory, one at a time, so that
    // bias, row scales, edges and the output type are handled per element by write_y.
#unroll i FM
#unroll j FN
    {
        coopStoreT(acc{i}_{j}, &cs[sg * 256u], 16u);
        workgroupBarrier();
        for (var e = lane; e < 256u; e += SG) {
            let gm = m0 + fm0 + {i}u * 16u + e / 16u;
            let col = n0 + fn0 + {j}u * 16u + e % 16u;
            if (gm < p.m && col < p.n_out) {
                write_y(gm, col, cs[sg * 256u + e]);
            }
        }
        workgroupBarrier();
    }
#end
#end
}
