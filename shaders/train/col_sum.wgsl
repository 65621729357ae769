// y[j] (+)= Σ_i x[i * stride + j] for i < rows, j < cols (a bias's gradient from its
// output's); summed in ascending i, one invocation per column. ACCUM adds to y.
struct Params {
    rows: u32,
    cols: u32,
    stride: u32,
    // Entries of y written: cols, then zeros up to cols_out (y's row padding).
    cols_out: u32,
}

override ACCUM: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x + gid.y * nwg.x * {{WG}}u;
    if (j >= p.cols_out) {
        return;
    }
    if (j >= p.cols) {
        y[j] = 0.0;
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < p.rows; i++) {
        s += x[i * p.stride + j];
    }
    if (ACCUM != 0u) {
        s += y[j];
    }
    y[j] = s;
}
