// GEMV entry with subgroups: each subgroup owns R consecutive rows at a time and sums its
// lanes with subgroupAdd. Work is assigned by subgroup id, so any subgroup size works; every
// subgroup runs the same number of rounds because rows_partials holds barriers.
override WG: u32 = 256u;
override ROWS_PER_WG: u32 = 8u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let first = (wg.x + wg.y * nwg.x) * ROWS_PER_WG;
    let rounds = ROWS_PER_WG / {{R}}u;
    for (var round = 0u; round < rounds; round += nsg) {
        let row0 = first + (round + sg) * {{R}}u;
        let acc = rows_partials(row0, lane, sg_size, li);
        if (round + sg < rounds) {
#unroll r R
#unroll m M
            let t{r}_{m} = subgroupAdd(acc[{r} * {{M}} + {m}]);
            if (lane == 0u && row0 + {r}u < p.n_out) {
                write_y({m}u, row0 + {r}u, t{r}_{m});
            }
#end
#end
        }
    }
}
