// GEMV core, shared by the subgroup and the workgroup-reduction entry points. A team of lanes
// walks R consecutive weight rows block by block: consecutive lanes read consecutive 16-byte
// blocks (coalesced), and each x vector a lane loads serves all R rows.
//
// x goes through workgroup memory: a lane's block needs BLOCK_VEC4 consecutive x vec4s, so
// reading x from global memory would make each warp-wide load touch one cache line per lane.
// The whole workgroup instead stages a chunk of x with coalesced loads, stored with an XOR
// swizzle (vec4 i at i ^ ((i >> 3) & 7)) so that both the staging writes and the lanes'
// strided reads hit distinct banks. All teams walk the chunks together (a barrier per chunk).
//
// Loops over M, R and the vec4s of a block are unrolled in the text (src/gpu/wgsl.rs) so
// accumulators and decoded weights stay in registers.
// Template variables: M (activation rows), R (weight rows per team), BLOCK_VEC4 (format),
// CHUNK4 (x vec4s per activation row staged at once; a multiple of BLOCK_VEC4 and of 8).
const CHUNK4: u32 = {{CHUNK4}}u;
const CHUNK_BLOCKS: u32 = CHUNK4 / BLOCK_VEC4;

var<workgroup> xs: array<vec4<f32>, {{M}} * CHUNK4>;

fn swz(i: u32) -> u32 {
    return i ^ ((i >> 3u) & 7u);
}

// Rows `first_row..first_row + R` (clamped to the matrix; the caller discards the extras).
// Must be called by every invocation of the workgroup: it contains barriers.
fn rows_partials(first_row: u32, lane: u32, team: u32, li: u32) -> array<f32, {{M}} * {{R}}> {
    var acc: array<f32, {{M}} * {{R}}>;
#unroll r R
    let wrow{r} = min(first_row + {r}u, p.n - 1u);
#end
    for (var c0 = 0u; c0 < p.row_blocks; c0 += CHUNK_BLOCKS) {
        workgroupBarrier();
        let kv0 = c0 * BLOCK_VEC4;
        for (var i = li; i < {{M}}u * CHUNK4; i += WG) {
            let m = i / CHUNK4;
            let v = i % CHUNK4;
            var val = vec4<f32>(0.0);
            if (kv0 + v < p.k4) {
                val = load_x4((p.row0 + m) * p.x_stride4 + kv0 + v);
            }
            xs[m * CHUNK4 + swz(v)] = val;
        }
        workgroupBarrier();
        let c_end = min(c0 + CHUNK_BLOCKS, p.row_blocks);
        for (var b = c0 + lane; b < c_end; b += team) {
            let xb = (b - c0) * BLOCK_VEC4;
#unroll r R
            let wv{r} = w[wrow{r} * p.row_blocks + b];
            let sz{r} = block_scale_zero(wrow{r}, b);
            var part{r} = array<f32, {{M}}>();
#end
#unroll j BLOCK_VEC4
            {
#unroll m M
                let xv{m} = xs[{m}u * CHUNK4 + swz(xb + {j}u)];
#end
#unroll r R
                let w{r} = decode(wv{r}, {j}u, sz{r}.y);
#unroll m M
                part{r}[{m}] += dot(w{r}, xv{m});
#end
#end
            }
#end
#unroll r R
#unroll m M
            acc[{r} * {{M}} + {m}] += part{r}[{m}] * sz{r}.x;
#end
#end
        }
    }
    return acc;
}
