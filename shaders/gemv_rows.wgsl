// GEMV core, shared by the subgroup and the workgroup-reduction entry points: a team of
// lanes walks one weight row block by block (consecutive lanes read consecutive 16-byte
// blocks, so a team's loads are coalesced) and keeps one partial sum per activation row.
const MAX_M: u32 = 8u;
override M: u32 = 1u;

fn row_partials(row: u32, lane: u32, team: u32) -> array<f32, MAX_M> {
    var acc: array<f32, MAX_M>;
    let wbase = row * p.row_blocks;
    for (var b = lane; b < p.row_blocks; b += team) {
        let wv = w[wbase + b];
        let sz = block_scale_zero(row, b);
        var wd: array<vec4<f32>, BLOCK_VEC4>;
        for (var j = 0u; j < BLOCK_VEC4; j++) {
            wd[j] = decode(wv, j, sz.y);
        }
        let x0 = b * BLOCK_VEC4;
        // Only the last block of a row can reach past the data of an x row.
        let full = x0 + BLOCK_VEC4 <= p.k4;
        for (var m = 0u; m < M; m++) {
            let xb = (p.row0 + m) * p.x_stride4 + x0;
            var part = 0.0;
            for (var j = 0u; j < BLOCK_VEC4; j++) {
                if (full || x0 + j < p.k4) {
                    part += dot(wd[j], load_x4(xb + j));
                }
            }
            acc[m] += part * sz.x;
        }
    }
    return acc;
}
