// Rotary position embedding of Q or K rows (`heads` heads of `2·half` components each): pair k
// of a head turns by pos[row] · inv_freq[k] radians (inv_freq[k] = theta^(-2k / head_dim), from
// the host in f64 rounded to f32). INTERLEAVED pairs (2k, 2k + 1), otherwise (k, k + half).
// One invocation per pair of the padded row; the padding of y is written as zeros.
struct Params {
    rows: u32,
    cols: u32,
    stride: u32,
    half: u32,
}

override INTERLEAVED: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let i = (wg.x + wg.y * nwg.x) * {{WG}}u + t;
    let pairs = p.stride / 2u;
    let row = i / pairs;
    if (row >= p.rows) {
        return;
    }
    let j = i - row * pairs;
    let base = row * p.stride;
    if (2u * j >= p.cols) {
        y[base + 2u * j] = 0.0;
        y[base + 2u * j + 1u] = 0.0;
        return;
    }
    let h = j / p.half;
    let k = j - h * p.half;
    let head = base + h * 2u * p.half;
    var a = head + k;
    var b = head + k + p.half;
    if (INTERLEAVED) {
        a = head + 2u * k;
        b = a + 1u;
    }
    let cs = rope_turn(f32(pos[row]) * inv_freq[k]);
    let c = cs.x;
    let s = cs.y;
    let xa = x[a];
    let xb = x[b];
    y[a] = xa * c - xb * s;
    y[b] = xb * c + xa * s;
}
