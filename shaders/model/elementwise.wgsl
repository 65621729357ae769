// y = act(a (+ b)) over every element, padding included (each activation maps 0 to 0, so
// zero padding stays zero); `activate` and its ACT code come from activation.wgsl.
struct Params {
    len: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override HAS_B: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let i = (wg.x + wg.y * nwg.x) * {{WG}}u + t;
    if (i >= p.len) {
        return;
    }
    var v = a[i];
    if (HAS_B) {
        v += b[i];
    }
    y[i] = activate(v);
}
