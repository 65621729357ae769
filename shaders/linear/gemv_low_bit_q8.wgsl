// GEMV core for binary and ternary weights against int8 activations (dot4I8Packed: DP4A on
// NVIDIA), with the interface of gemv_rows.wgsl so that the subgroup and workgroup entry
// points serve it. x comes as quant_qb.wgsl writes it: each row's int8 values contiguous,
// then a (step, sum) pair per block of QV4 vec4s.
//
// Why a body of its own: at 1 to 2 bits a weight, x costs more bytes than the weights, so a
// lane reads a weight block's x (one byte a weight, QPB blocks) once per activation row and
// uses it for all R rows, and no x bytes go to headers. The format's `wops` turns a 16-byte
// weight block into NOPS words of four small unsigned codes (a shift and a mask each, no
// multiply, no sign fix-up): the codes' offset (ternary's 1, binary's 2q - 1) is taken out
// per x block with its sum in `qdot`, where the group scale is applied too.
//
// Template variables: M, R, U as in gemv_rows.wgsl; XV4 (x vec4s per weight block), QPB (x
// blocks per weight block), QV4 = XV4 / QPB, NOPS = 4 · XV4 (operand words per block).
const XV4: u32 = {{XV4}}u;
const QPB: u32 = {{QPB}}u;
const QV4: u32 = {{QV4}}u;

// The (step bits, sum) pair of x block `q` of the row whose pairs start at vec4 `base`.
fn xmeta(base: u32, q: u32) -> vec2<u32> {
    let v = x[base + q / 2u];
    return select(v.xy, v.zw, (q & 1u) == 1u);
}

fn rows_partials(first_row: u32, lane: u32, team: u32, li: u32) -> array<f32, {{M}} * {{R}}> {
    var acc: array<f32, {{M}} * {{R}}>;
#unroll r R
    let wrow{r} = min(first_row + {r}u, p.n - 1u);
#end
    let nb = p.row_blocks;
    let values4 = nb * XV4;
    let xstride = values4 + (nb * QPB + 1u) / 2u;
    for (var b0 = lane; b0 < nb; b0 += team * {{U}}u) {
        // Issue all U × R weight and scale loads before any arithmetic that waits on them.
#unroll u U
        let b{u} = min(b0 + {u}u * team, nb - 1u);
#unroll r R
        let wv{u}_{r} = w[wrow{r} * nb + b{u}];
        let sm{u}_{r} = qscales(wrow{r}, b{u});
#end
#end
#unroll u U
        if (b0 + {u}u * team < nb) {
#unroll r R
            let o{r} = wops(wv{u}_{r});
#end
#unroll m M
            {
                let xr = (p.row0 + {m}u) * xstride;
                let xo = xr + b{u} * XV4;
#unroll q QPB
                let xm{q} = xmeta(xr + values4, b{u} * QPB + {q}u);
#unroll v QV4
                let x{q}_{v} = x[xo + {q}u * QV4 + {v}u];
#end
#end
#unroll r R
                {
                    var t = 0.0;
#unroll q QPB
                    {
                        var d = 0;
#unroll v QV4
                        d = dot4I8Packed(o{r}[4u * ({q}u * QV4 + {v}u)], x{q}_{v}.x) + d;
                        d = dot4I8Packed(o{r}[4u * ({q}u * QV4 + {v}u) + 1u], x{q}_{v}.y) + d;
                        d = dot4I8Packed(o{r}[4u * ({q}u * QV4 + {v}u) + 2u], x{q}_{v}.z) + d;
                        d = dot4I8Packed(o{r}[4u * ({q}u * QV4 + {v}u) + 3u], x{q}_{v}.w) + d;
#end
                        t += qdot(sm{u}_{r}[{q}], xm{q}, d);
                    }
#end
                    acc[{r} * {{M}} + {m}] += t;
                }
#end
            }
#end
        }
#end
    }
    return acc;
}
