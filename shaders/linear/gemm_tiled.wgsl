// Portable GEMM for many activation rows: a workgroup of 16 × 16 invocations computes a
// BM × BN tile of y (BM = 16·TM, BN = 16·TN), staging BK-deep slices of x and of the
// dequantized weights in workgroup memory; each invocation accumulates TM × TN outputs in
// registers. Weights are staged in units of SUB4 vec4s of a block: whole blocks, or, for
// blocks deeper than a slice (the low-bit formats' 64-128 weights), the part of a block that
// a slice holds (SUB4 divides both BLOCK_VEC4 and BK / 4, so a unit never straddles a block
// or a slice). Template variables: TM, TN (multiples of 4), BK, XLOADS, WLOADS, BLOCK_VEC4,
// SUB4, PARTIAL (SUB4 < BLOCK_VEC4).
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
const BK: u32 = {{BK}}u;
const BLOCK_K: u32 = BLOCK_VEC4 * 4u;
const SUB4: u32 = {{SUB4}}u;
const UNITS: u32 = BK / (4u * SUB4); // staging units per weight row of a slice

var<workgroup> xs: array<vec4<f32>, BK * BM / 4u>; // [k][m / 4]
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>; // [k][n / 4]

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n0 = wg.x * BN;
    let m0 = wg.y * BM;
    let tx = li % 16u;
    let ty = li / 16u;
#unroll i TM4
#unroll c 4
#unroll j TN4
    var acc{i}{c}_{j} = vec4<f32>(0.0);
#end
#end
#end
    let k_end = p.row_blocks * BLOCK_K;
    for (var k0 = 0u; k0 < k_end; k0 += BK) {
        // x tile: BM rows × BK/4 vec4s, stored transposed.
#unroll l XLOADS
        {
            let idx = li + {l}u * 256u;
            let r = idx / (BK / 4u);
            let kv = idx % (BK / 4u);
            let gm = m0 + r;
            let gk4 = k0 / 4u + kv;
            var v = vec4<f32>(0.0);
            if (gm < p.m && gk4 < p.k4) {
                v = load_x4((p.row0 + gm) * p.x_stride4 + gk4);
            }
#unroll c 4
            xs[(kv * 4u + {c}u) * (BM / 4u) + r / 4u][r % 4u] = v[{c}];
#end
        }
#end
        // Weight tile: BN rows × UNITS units, decoded to f32 with their scales.
#unroll l WLOADS
        {
            let idx = li + {l}u * 256u;
            if (idx < BN * UNITS) {
                let r = idx / UNITS;
                let uu = idx % UNITS;
                let gn = n0 + r;
                let v4 = k0 / 4u + uu * SUB4; // the unit's first weight vec4 along the row
                let blk = v4 / BLOCK_VEC4;
#if PARTIAL
                let j0 = v4 % BLOCK_VEC4;
#else
                let j0 = 0u;
#end
                var wv = vec4<u32>(0u);
                var sz = vec2<f32>(0.0, 0.0);
                if (gn < p.n && blk < p.row_blocks) {
                    wv = w[gn * p.row_blocks + blk];
                    sz = block_scale_zero(gn, blk);
                }
#unroll j SUB4
                {
                    let d = decode(wv, j0 + {j}u, sz) * block_scale(sz);
#unroll c 4
                    ws[((uu * SUB4 + {j}u) * 4u + {c}u) * (BN / 4u) + r / 4u][r % 4u] = d[{c}];
#end
                }
#end
            }
        }
#end
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
#unroll i TM4
            let a{i} = xs[kk * (BM / 4u) + ty * (TM / 4u) + {i}u];
#end
#unroll j TN4
            let b{j} = ws[kk * (BN / 4u) + tx * (TN / 4u) + {j}u];
#end
#unroll i TM4
#unroll c 4
#unroll j TN4
            acc{i}{c}_{j} += a{i}[{c}] * b{j};
#end
#end
#end
        }
        workgroupBarrier();
    }
#unroll i TM4
#unroll c 4
    {
        let gm = m0 + ty * TM + {i}u * 4u + {c}u;
        if (gm < p.m) {
#unroll j TN4
#unroll e 4
            {
                let col = n0 + tx * TN + {j}u * 4u + {e}u;
                if (col < p.n_out) {
                    write_y(gm, col, acc{i}{c}_{j}[{e}]);
                }
            }
#end
#end
        }
    }
#end
#end
}
