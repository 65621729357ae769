// CSR: an item is one output row, a unit is 8 consecutive elements (one vec4 of u16 column
// indices or two of u32; one vec4 of f16 values or two of f32). Rows are not padded, so a
// row's first and last units may hold elements of its neighbours: those are masked to zero.
// Template variables: IDX16 (u16 indices, else u32), VAL_VEC4 (vec4s of values per unit:
// 1 f16, 2 f32);
// XT: x comes transposed per activation tile (shaders/sparse/sparse_xt.wgsl), xrow[0] being the
// tile's first column, so a non-zero reads its MT activations as MTV adjacent vec4s.
const MTV: u32 = {{MTV}}u;
var<private> e_lo: u32;
var<private> e_hi: u32;

fn item_units(item: u32) -> vec2<u32> {
    e_lo = ptrs[item];
    e_hi = ptrs[item + 1u];
    if (e_lo == e_hi) {
        return vec2<u32>(0u, 0u);
    }
    return vec2<u32>(e_lo / 8u, (e_hi + 7u) / 8u);
}

fn unit_acc(item: u32, u_raw: u32, end: u32) {
    let u = min(u_raw, end - 1u);
    let ok = u_raw < end;
#if IDX16
    let ia = array<vec4<u32>, 1>(idx[u]);
#else
    let ia = array<vec4<u32>, 2>(idx[2u * u], idx[2u * u + 1u]);
#end
#if VF16
    let v0 = vals[u];
    let wa = array<vec4<f32>, 2>(dec4(v0, 0u), dec4(v0, 1u));
#end
#if VF32
    let wa = array<vec4<f32>, 2>(dec4(vals[2u * u], 0u), dec4(vals[2u * u + 1u], 0u));
#end
#unroll j 8
    {
        let e = u * 8u + {j}u;
#if IDX16
        let col = (ia[0][{j}u / 2u] >> (16u * ({j}u % 2u))) & 0xFFFFu;
#else
        let col = ia[{j}u / 4u][{j}u % 4u];
#end
        let wv = select(0.0, wa[{j}u / 4u][{j}u % 4u], ok && e >= e_lo && e < e_hi);
#if XT
        var xq: array<vec4<f32>, MTV>;
#unroll q MTV
        xq[{q}] = load_x4((xrow[0] + col) * MTV + {q}u);
#end
#unroll m MT
        acc[{m}] += wv * xq[{m}u / 4u][{m}u % 4u];
#end
#else
#unroll m MT
        acc[{m}] += wv * x_at(xrow[{m}], col);
#end
#end
    }
#end
}

fn row_scale(out: u32) -> f32 {
    return 1.0;
}
