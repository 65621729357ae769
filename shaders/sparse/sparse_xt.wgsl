// Activation tiles transposed for the CSR SpMM path: tile t (rows t·MT .. t·MT + MT − 1) becomes
// k4·4 columns of MTV vec4s, column c holding x[t·MT + i][c] in slot i (zero past m, MT or k).
// A non-zero in column c then needs the MT activations of its tile as MTV adjacent vec4s (one
// cache sector for MT ≤ 8) instead of MT loads from MT different rows.
// One invocation per output vec4.
struct XtParams {
    m: u32,         // activation rows
    k4: u32,        // vec4s of x that hold data
    x_stride4: u32, // x row stride in vec4s
    mt: u32,        // rows per tile (MT of the sparse kernel)
    mtv: u32,       // vec4s per column: ceil(mt / 4)
    total: u32,     // output vec4s: tiles · k4·4 · mtv
}

@group(0) @binding(0) var<uniform> q: XtParams;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read_write> xt: array<act4>;

fn x_or_zero(row: u32, slot: u32, col: u32) -> act {
    if (slot >= q.mt || row >= q.m) {
        return act(0.0);
    }
    return x[row * q.x_stride4 + col / 4u][col % 4u];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= q.total) {
        return;
    }
    let v = i % q.mtv;
    let rest = i / q.mtv;
    let col = rest % (q.k4 * 4u);
    let tile = rest / (q.k4 * 4u);
    let s0 = 4u * v;
    let r0 = tile * q.mt + s0;
    xt[i] = act4(
        x_or_zero(r0, s0, col),
        x_or_zero(r0 + 1u, s0 + 1u, col),
        x_or_zero(r0 + 2u, s0 + 2u, col),
        x_or_zero(r0 + 3u, s0 + 3u, col),
    );
}
