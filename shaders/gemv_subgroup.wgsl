// GEMV entry with subgroups: each subgroup owns whole rows and sums its lanes with
// subgroupAdd. Rows are assigned by subgroup id, so any subgroup size works.
override WG: u32 = 256u;
override ROWS_PER_WG: u32 = 8u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let first = (wg.x + wg.y * nwg.x) * ROWS_PER_WG;
    for (var r = sg; r < ROWS_PER_WG; r += nsg) {
        let row = first + r;
        if (row >= p.n_out) {
            break;
        }
        var acc: array<f32, MAX_M>;
        if (row < p.n) {
            acc = row_partials(row, lane, sg_size);
        }
        for (var m = 0u; m < M; m++) {
            let total = subgroupAdd(acc[m]);
            if (lane == 0u) {
                write_y(m, row, total);
            }
        }
    }
}
