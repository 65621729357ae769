// Workgroup reductions shared by the row kernels of src/model (one workgroup per row).
// WG is a template variable, a power of two; every invocation must call these.
var<workgroup> red: array<f32, {{WG}}>;

fn wg_sum(v: f32, t: u32) -> f32 {
    workgroupBarrier();
    red[t] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            red[t] += red[t + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

fn wg_max(v: f32, t: u32) -> f32 {
    workgroupBarrier();
    red[t] = v;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            red[t] = max(red[t], red[t + s]);
        }
        workgroupBarrier();
    }
    return red[0];
}

// The row a workgroup owns: grids wider than the per-dimension limit are folded into y.
fn row_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}
