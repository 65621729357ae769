// 2:4: an item is R consecutive output rows, a unit is one vec4 of kept values at the same
// place in each of them (EPV slots, EPV / 2 groups of four columns, the same columns in every
// row). Per group a lane loads the x vec4 of its four columns once per activation row and, for
// each of the R rows, picks the two kept entries with that row's two 2-bit positions: x is
// read once for R rows. Rows past n are clamped for loads and count zero.
// Params: fa = value vec4s per row, fb = metadata words per row, fc = int4 scales per row.
// Template variables: EPV4 (groups of four slots per vec4), META2 (int4: a unit's 16 groups
// span two metadata words), INT4 (f16 scale per unit and row), INT8 (f32 scale per output row).
const GPU_: u32 = EPV4 * 2u; // groups per unit

fn item_units(item: u32) -> vec2<u32> {
    return vec2<u32>(item * p.fa, (item + 1u) * p.fa);
}

fn unit_acc(item: u32, u_raw: u32, end: u32) {
    let u = min(u_raw, end - 1u);
    let ul = u - item * p.fa;
    let g0 = ul * GPU_;
    let sh = 4u * (g0 % 8u);
    var v: array<vec4<u32>, R>;
    var m0: array<u32, R>;
    var m1: array<u32, R>;
    var s: array<f32, R>;
#unroll r R
    {
        let row = min(item * R + {r}u, p.n - 1u);
        v[{r}] = vals[row * p.fa + ul];
        let mw = row * p.fb + g0 / 8u;
        m0[{r}] = idx[mw / 4u][mw % 4u];
#if META2
        m1[{r}] = idx[(mw + 1u) / 4u][(mw + 1u) % 4u];
#end
#if INT4
        let si = row * p.fc + ul;
        let sc = half_of(scales[si >> 1u], si & 1u);
#else
        let sc = 1.0;
#end
        s[{r}] = select(0.0, sc, u_raw < end && item * R + {r}u < p.n);
    }
#end
    var part: array<f32, RM>;
#unroll j EPV4
    {
        let ga = 2u * {j}u;
        let gb = ga + 1u;
        let xa = min(g0 + ga, p.k4 - 1u);
        let xb = min(g0 + gb, p.k4 - 1u);
        var x0: array<vec4<f32>, MT>;
        var x1: array<vec4<f32>, MT>;
#unroll m MT
        x0[{m}] = load_x4(xrow[{m}] + xa);
        x1[{m}] = load_x4(xrow[{m}] + xb);
#end
#unroll r R
        {
            let d = dec4(v[{r}], {j}u);
            let na = (select(m0[{r}], m1[{r}], ga >= 8u) >> (sh + 4u * (ga % 8u))) & 15u;
            let nb = (select(m0[{r}], m1[{r}], gb >= 8u) >> (sh + 4u * (gb % 8u))) & 15u;
#unroll m MT
            part[{r}u * MT + {m}u] += d.x * pick4(x0[{m}], na & 3u) + d.y * pick4(x0[{m}], na >> 2u)
                + d.z * pick4(x1[{m}], nb & 3u) + d.w * pick4(x1[{m}], nb >> 2u);
#end
        }
#end
    }
#end
#unroll r R
#unroll m MT
    acc[{r}u * MT + {m}u] += part[{r}u * MT + {m}u] * s[{r}];
#end
#end
}

fn row_scale(out: u32) -> f32 {
#if INT8
    return bitcast<f32>(scales[out]);
#else
    return 1.0;
#end
}
