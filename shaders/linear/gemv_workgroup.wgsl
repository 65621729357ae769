// GEMV entry without subgroups: teams of TEAM consecutive invocations (a power of two) own
// R rows each and reduce their partial sums through workgroup memory.
override WG: u32 = 256u;
override TEAM: u32 = 32u;
const PER_LANE: u32 = {{M}}u * {{R}}u;

var<workgroup> red: array<f32, WG * PER_LANE>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let lane = li % TEAM;
    let row0 = ((wg.x + wg.y * nwg.x) * (WG / TEAM) + li / TEAM) * {{R}}u;
    let acc = rows_partials(row0, lane, TEAM, li);
#unroll i PER_LANE
    red[{i}u * WG + li] = acc[{i}];
#end
    workgroupBarrier();
    for (var s = TEAM / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
#unroll i PER_LANE
            red[{i}u * WG + li] += red[{i}u * WG + li + s];
#end
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
#unroll r R
#unroll m M
        if (row0 + {r}u < p.n_out) {
            write_y({m}u, row0 + {r}u, red[({r}u * {{M}}u + {m}u) * WG + li]);
        }
#end
#end
    }
}
