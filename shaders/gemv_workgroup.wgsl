// GEMV entry without subgroups: teams of TEAM consecutive invocations (a power of two)
// own one row each and reduce their partial sums through workgroup memory.
override WG: u32 = 256u;
override TEAM: u32 = 32u;

var<workgroup> red: array<f32, WG * MAX_M>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let lane = li % TEAM;
    let row = (wg.x + wg.y * nwg.x) * (WG / TEAM) + li / TEAM;
    var acc: array<f32, MAX_M>;
    if (row < p.n) {
        acc = row_partials(row, lane, TEAM);
    }
    for (var m = 0u; m < M; m++) {
        red[m * WG + li] = acc[m];
    }
    workgroupBarrier();
    for (var s = TEAM / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var m = 0u; m < M; m++) {
                red[m * WG + li] += red[m * WG + li + s];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n_out) {
        for (var m = 0u; m < M; m++) {
            write_y(m, row, red[m * WG + li]);
        }
    }
}
