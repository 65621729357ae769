// int8 × int8 → i32 GEMM with dot4I8Packed (DP4A where native): activations quantized per
// row by quant_rows.wgsl (bound as x, words in the int8 weight layout; their scales in the
// `zeros` binding), int8 weights with a per-row scale. A workgroup of 16 × 16 invocations
// computes a BM × BN tile (BM = 16·TM, BN = 16·TN), staging BKW-word slices (4 k per word) of
// both operands transposed in workgroup memory; each invocation keeps TM × TN i32 sums.
// Template variables: TM, TN (multiples of 4), TM4 = TM / 4, TN4 = TN / 4, BKW (multiple of
// 4), XLOADS, WLOADS.
const TM: u32 = {{TM}}u;
const TN: u32 = {{TN}}u;
const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
const BKW: u32 = {{BKW}}u;

var<workgroup> xt: array<vec4<u32>, BKW * BM / 4u>; // [word][m / 4]
var<workgroup> wt: array<vec4<u32>, BKW * BN / 4u>; // [word][n / 4]

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
    var acc{i}{c}_{j} = vec4<i32>(0);
#end
#end
#end
    // x rows and weight rows both hold p.row_blocks blocks of four words.
    for (var b0 = 0u; b0 < p.row_blocks; b0 += BKW / 4u) {
#unroll l XLOADS
        {
            let idx = li + {l}u * 256u;
            let r = idx / (BKW / 4u);
            let bb = idx % (BKW / 4u);
            var v = vec4<u32>(0u);
            if (m0 + r < p.m && b0 + bb < p.row_blocks && r < BM) {
                v = x[(m0 + r) * p.row_blocks + b0 + bb];
            }
            if (r < BM) {
#unroll c 4
                xt[(bb * 4u + {c}u) * (BM / 4u) + r / 4u][r % 4u] = v[{c}];
#end
            }
        }
#end
#unroll l WLOADS
        {
            let idx = li + {l}u * 256u;
            let r = idx / (BKW / 4u);
            let bb = idx % (BKW / 4u);
            var v = vec4<u32>(0u);
            if (n0 + r < p.n && b0 + bb < p.row_blocks && r < BN) {
                v = w[(n0 + r) * p.row_blocks + b0 + bb];
            }
            if (r < BN) {
#unroll c 4
                wt[(bb * 4u + {c}u) * (BN / 4u) + r / 4u][r % 4u] = v[{c}];
#end
            }
        }
#end
        workgroupBarrier();
#unroll kw BKW
        {
#unroll i TM4
            let a{i} = xt[{kw}u * (BM / 4u) + ty * (TM / 4u) + {i}u];
#end
#unroll j TN4
            let b{j} = wt[{kw}u * (BN / 4u) + tx * (TN / 4u) + {j}u];
#end
#unroll i TM4
#unroll c 4
#unroll j TN4
            acc{i}{c}_{j} += vec4<i32>(dot4I8Packed(a{i}[{c}], b{j}.x), dot4I8Packed(a{i}[{c}], b{j}.y), dot4I8Packed(a{i}[{c}], b{j}.z), dot4I8Packed(a{i}[{c}], b{j}.w));
#end
#end
#end
        }
#end
        workgroupBarrier();
    }
#unroll i TM4
#unroll c 4
    {
        let gm = m0 + ty * TM + {i}u * 4u + {c}u;
        if (gm < p.m) {
            // Binding 4 holds the activation scales in this kernel.
            let sx = bitcast<f32>(zeros[gm]);
#unroll j TN4
#unroll e 4
            {
                let col = n0 + tx * TN + {j}u * 4u + {e}u;
                if (col < p.n_out) {
                    write_y(gm, col, f32(acc{i}{c}_{j}[{e}]) * sx);
                }
            }
#end
#end
        }
    }
#end
#end
}
