// 2:4: an item is one output row, a unit is one vec4 of kept values (EPV slots, EPV / 2 groups
// of four columns). A lane reads the unit's metadata nibbles (two 2-bit positions per group)
// and, per group, the x vec4 of its four columns, from which it picks the two kept ones.
// Params: fa = value vec4s per row, fb = metadata words per row, fc = int4 scales per row.
// Template variables: EPV4 (groups of four slots per vec4), META2 (int4: a unit's 16 groups
// span two metadata words), INT4 (f16 scale per unit), INT8 (f32 scale per output row).
const GPU_: u32 = EPV4 * 2u; // groups per unit

fn item_units(item: u32) -> vec2<u32> {
    return vec2<u32>(item * p.fa, (item + 1u) * p.fa);
}

fn unit_acc(item: u32, u_raw: u32, end: u32) {
    let u = min(u_raw, end - 1u);
    let v = vals[u];
    let ul = u - item * p.fa;
    let g0 = ul * GPU_;
    let mw = item * p.fb + g0 / 8u;
    let sh = 4u * (g0 % 8u);
    let m0w = idx[mw / 4u][mw % 4u];
#if META2
    let m1w = idx[(mw + 1u) / 4u][(mw + 1u) % 4u];
#end
#if NOT_META2
    let m1w = 0u;
#end
#if INT4
    let si = item * p.fc + ul;
    let s = half_of(scales[si >> 1u], si & 1u);
#end
#if NOT_INT4
    let s = 1.0;
#end
    var part: array<f32, MT>;
#unroll j EPV4
    {
        let d = dec4(v, {j}u);
        let ga = 2u * {j}u;
        let gb = ga + 1u;
        let na = (select(m0w, m1w, ga >= 8u) >> (sh + 4u * (ga % 8u))) & 15u;
        let nb = (select(m0w, m1w, gb >= 8u) >> (sh + 4u * (gb % 8u))) & 15u;
        let xa = min(g0 + ga, p.k4 - 1u);
        let xb = min(g0 + gb, p.k4 - 1u);
#unroll m MT
        {
            let x0 = load_x4(xrow[{m}] + xa);
            let x1 = load_x4(xrow[{m}] + xb);
            part[{m}] += d.x * pick4(x0, na & 3u) + d.y * pick4(x0, na >> 2u)
                + d.z * pick4(x1, nb & 3u) + d.w * pick4(x1, nb >> 2u);
        }
#end
    }
#end
    let g = select(0.0, s, u_raw < end);
#unroll m MT
    acc[{m}] += part[{m}] * g;
#end
}

fn row_scale(out: u32) -> f32 {
#if INT8
    return bitcast<f32>(scales[out]);
#end
#if NOT_INT8
    return 1.0;
#end
}
