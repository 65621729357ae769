// GEMV core, shared by the subgroup and the workgroup-reduction entry points. A team of lanes
// walks R consecutive weight rows block by block: consecutive lanes read consecutive 16-byte
// blocks (coalesced), each lane keeps U blocks per row in flight, and each x vector a lane
// reads serves all R rows.
//
// With XSTAGE, x goes through workgroup memory: a lane's block needs BLOCK_VEC4 consecutive
// x vec4s, so reading x from global memory makes each warp-wide load touch one cache line
// per lane. The workgroup instead stages a chunk of x with coalesced loads, stored with an
// XOR swizzle (vec4 i at i ^ ((i >> 3) & 7)) so that both the staging writes and the lanes'
// strided reads hit distinct banks; all teams walk the chunks together (a barrier each).
//
// Loops over U, M, R and the vec4s of a block are unrolled in the text (src/gpu/wgsl.rs) so
// accumulators and decoded weights stay in registers.
// Template variables: M (activation rows), R (weight rows per team), U (blocks in flight per
// lane), BLOCK_VEC4 (format), XSTAGE (x read from workgroup memory, else global), CHUNK4 (x vec4s per
// activation row staged at once; a multiple of BLOCK_VEC4 and of 8).
const CHUNK4: u32 = {{CHUNK4}}u;
const CHUNK_BLOCKS: u32 = CHUNK4 / BLOCK_VEC4;

#if XSTAGE
var<workgroup> xs: array<vec4<f32>, {{M}} * CHUNK4>;

fn swz(i: u32) -> u32 {
    return i ^ ((i >> 3u) & 7u);
}
#end

// x vec4 `kv` (counted from the start of the chunk at vec4 `kv0`) of activation row m.
fn x_vec(m: u32, kv0: u32, kv: u32) -> vec4<f32> {
#if XSTAGE
    return xs[m * CHUNK4 + swz(kv)];
#else
    if (kv0 + kv < p.k4) {
        return load_x4((p.row0 + m) * p.x_stride4 + kv0 + kv);
    }
    return vec4<f32>(0.0);
#end
}

// Rows `first_row..first_row + R` (clamped to the matrix; the caller discards the extras).
// Must be called by every invocation of the workgroup: it may contain barriers.
fn rows_partials(first_row: u32, lane: u32, team: u32, li: u32) -> array<f32, {{M}} * {{R}}> {
    var acc: array<f32, {{M}} * {{R}}>;
#unroll r R
    let wrow{r} = min(first_row + {r}u, p.n - 1u);
#end
    for (var c0 = 0u; c0 < p.row_blocks; c0 += CHUNK_BLOCKS) {
        let kv0 = c0 * BLOCK_VEC4;
#if XSTAGE
        workgroupBarrier();
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
#end
        let c_end = min(c0 + CHUNK_BLOCKS, p.row_blocks);
        for (var b0 = c0 + lane; b0 < c_end; b0 += team * {{U}}u) {
            // Issue all U × R weight loads before any arithmetic that waits on them.
#unroll u U
            let b{u} = min(b0 + {u}u * team, c_end - 1u);
#unroll r R
            let wv{u}_{r} = w[wrow{r} * p.row_blocks + b{u}];
            let sz{u}_{r} = block_scale_zero(wrow{r}, b{u});
#end
#end
#unroll u U
            if (b0 + {u}u * team < c_end) {
                let xb = (b{u} - c0) * BLOCK_VEC4;
#unroll r R
                var part{r} = array<f32, {{M}}>();
#end
#unroll j BLOCK_VEC4
                {
#unroll m M
                    let xv{m} = x_vec({m}u, kv0, xb + {j}u);
#end
#unroll r R
                    let w{r} = decode(wv{u}_{r}, {j}u, sz{u}_{r});
#unroll m M
                    part{r}[{m}] += dot(w{r}, xv{m});
#end
#end
                }
#end
#unroll r R
#unroll m M
                acc[{r} * {{M}} + {m}] += part{r}[{m}] * block_scale(sz{u}_{r});
#end
#end
            }
#end
        }
    }
    return acc;
}
