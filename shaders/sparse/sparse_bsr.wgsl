// BSR: an item is a block row (R output rows), a unit is one stored block of R × BC weights.
// A lane reads its whole block (block rows are whole vec4s: RV per row) and BC consecutive
// x values per activation row, which are contiguous, so it reads x as vec4s.
// Template variables: BC, RV (vec4s per block row), BV (vec4s per block), EPV4 (groups of four
// weights per vec4), INT4 (f16 scale per block row), INT8 (f32 scale per output row).
const BC4: u32 = {{BC}}u / 4u;
const RV: u32 = {{RV}}u;
const BV: u32 = {{BV}}u;

fn item_units(item: u32) -> vec2<u32> {
    return vec2<u32>(ptrs[item], ptrs[item + 1u]);
}

fn unit_acc(item: u32, u_raw: u32, end: u32) {
    let b = min(u_raw, end - 1u);
    let c4 = idx[b / 4u][b % 4u] * BC4;
    let g = select(0.0, 1.0, u_raw < end);
#unroll r R
    {
#if INT4
        let sr = b * R + {r}u;
        let s = half_of(scales[sr >> 1u], sr & 1u) * g;
#else
        let s = g;
#end
#unroll q RV
        let v{q} = vals[b * BV + {r}u * RV + {q}u];
#end
        var part: array<f32, MT>;
#unroll q RV
#unroll j EPV4
        {
            let d = dec4(v{q}, {j}u);
            let xi = min(c4 + {q}u * EPV4 + {j}u, p.k4 - 1u);
#unroll m MT
            part[{m}] += dot(d, load_x4(xrow[{m}] + xi));
#end
        }
#end
#end
#unroll m MT
        acc[{r}u * MT + {m}u] += part[{m}] * s;
#end
    }
#end
}

fn row_scale(out: u32) -> f32 {
#if INT8
    return bitcast<f32>(scales[out]);
#else
    return 1.0;
#end
}
