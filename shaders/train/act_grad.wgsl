// dx = dy · f'(z) elementwise over whole buffers (zero padding of dy stays zero), f the
// activation ACT of shared/activation.wgsl (its override constant); dx may not alias dy.
struct Params {
    len: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn activate_grad(x: f32) -> f32 {
    switch ACT {
        case 1u: {
            return select(0.0, 1.0, x > 0.0);
        }
        case 2u: {
            // Φ(x) + x·φ(x)
            return 0.5 * (1.0 + erf_approx(x * 0.70710678118654752))
                + x * 0.3989422804014327 * exp(-0.5 * x * x);
        }
        case 3u: {
            let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            let th = tanh(u);
            return 0.5 * (1.0 + th)
                + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);
        }
        case 4u: {
            let s = 1.0 / (1.0 + exp(-x));
            return s * (1.0 + x * (1.0 - s));
        }
        default: {
            return 1.0;
        }
    }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * {{WG}}u;
    if (i >= p.len) {
        return;
    }
    dx[i] = dy[i] * activate_grad(z[i]);
}
