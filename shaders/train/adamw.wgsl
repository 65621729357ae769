// One AdamW step on a tensor (PyTorch's torch.optim.AdamW): the gradient scaled by the
// clipping factor min(1, max_norm / (‖g‖ + 10⁻⁶)) (‖g‖² the sum of `norms[0..count]`, every
// tensor's share, when max_norm > 0), moments m and v updated, w decayed by lr·wd and moved
// by lr·m̂ / (√v̂ + eps). MASKED keeps pruned weights at zero (w·mask after the step).
struct Params {
    len: u32,
    count: u32,
    _p0: u32,
    _p1: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    // 1 − β1^step and 1 − β2^step.
    bias1: f32,
    bias2: f32,
    max_norm: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> norms: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * {{WG}}u;
    if (i >= p.len) {
        return;
    }
    var clip = 1.0;
    if (p.max_norm > 0.0) {
        var sq = 0.0;
        for (var j = 0u; j < p.count; j++) {
            sq += norms[j];
        }
        // As torch.nn.utils.clip_grad_norm_: the 1e-6 keeps a zero gradient finite.
        clip = min(1.0, p.max_norm / (sqrt(sq) + 1e-6));
    }
    let gi = g[i] * clip;
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    var wi = w[i] * (1.0 - p.lr * p.weight_decay);
    wi -= p.lr * (mi / p.bias1) / (sqrt(vi / p.bias2) + p.eps);
#if MASKED
    wi *= mask[i];
#end
    w[i] = wi;
}
