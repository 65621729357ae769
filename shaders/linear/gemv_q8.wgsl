// GEMV core for int8/int4 weights with int8-quantized activations (dot4I8Packed: DP4A on
// NVIDIA). Same interface as gemv_rows.wgsl, so the subgroup and workgroup entry points serve
// both. Decoding int4 to floats costs more ALU work per byte than the memory system delivers
// bytes at; integer dot products take 8 instructions per 32 weights instead of ~5 per weight.
// Consecutive lanes read consecutive weight blocks and consecutive 48-byte x blocks.
// Template variables: M, R, U as in gemv_rows.wgsl.
fn rows_partials(first_row: u32, lane: u32, team: u32, li: u32) -> array<f32, {{M}} * {{R}}> {
    var acc: array<f32, {{M}} * {{R}}>;
#unroll r R
    let wrow{r} = min(first_row + {r}u, p.n - 1u);
#end
    let nb = x_blocks();
    let xrow = nb * 3u;
    for (var b0 = lane; b0 < nb; b0 += team * {{U}}u) {
        // Issue all U × R weight loads before any arithmetic that waits on them.
#unroll u U
        let b{u} = min(b0 + {u}u * team, nb - 1u);
#unroll r R
        let wv{u}_{r} = wload(wrow{r}, b{u});
        let sz{u}_{r} = block_sz(wrow{r}, b{u});
#end
#end
#unroll u U
        if (b0 + {u}u * team < nb) {
#unroll m M
            let xi{m} = (p.row0 + {m}u) * xrow + b{u} * 3u;
            let xa{m} = x[xi{m}];
            let xb{m} = x[xi{m} + 1u];
            let xd{m} = x[xi{m} + 2u];
#unroll r R
            let dq{r}_{m} = wdot(wv{u}_{r}, xa{m}, xb{m}) - i32(sz{u}_{r}.y) * bitcast<i32>(xd{m}.y);
            acc[{r} * {{M}} + {m}] += sz{u}_{r}.x * bitcast<f32>(xd{m}.x) * f32(dq{r}_{m});
#end
#end
        }
#end
    }
    return acc;
}
