// A distillation loss and its gradient with respect to the student's outputs s, per row
// against the teacher's t (one workgroup per row; the shared reductions of model_reduce.wgsl):
// LOSS 0: α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(softmax(s), label) (labels read
//         only where α < 1), the classifier recipe of Hinton et al.;
// LOSS 1: mean over columns of (s − t)²;
// LOSS 2: 1 − cos(s, t), sentence embeddings as sentence-transformers distils them.
// Every row's loss and gradient carry the factor `scale` (1 / rows: the batch mean).
// loss (a one-column tensor) gets row r's share for r < rows, zeros up to cap; grad rows from rows up to cap (padding of a last,
// short batch) and every row's column padding are written as zeros.
struct Params {
    rows: u32,
    cap: u32,
    cols: u32,
    stride: u32,
    temperature: f32,
    alpha: f32,
    scale: f32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = row_of(wg, nwg);
    if (row >= p.cap) {
        return;
    }
    let base = row * p.stride;
    if (row >= p.rows) {
        for (var c = li; c < p.stride; c += {{WG}}u) {
            grad[base + c] = 0.0;
        }
        if (li < 4u) {
            loss[row * 4u + li] = 0.0;
        }
        return;
    }
    var row_loss = 0.0;
#if LOSS_KD
    let inv_t = 1.0 / p.temperature;
    var ms = -3.0e38;
    var mt = -3.0e38;
    var mh = -3.0e38;
    for (var c = li; c < p.cols; c += {{WG}}u) {
        ms = max(ms, s[base + c] * inv_t);
        mt = max(mt, t[base + c] * inv_t);
        mh = max(mh, s[base + c]);
    }
    ms = wg_max(ms, li);
    mt = wg_max(mt, li);
    mh = wg_max(mh, li);
    var es = 0.0;
    var et = 0.0;
    var eh = 0.0;
    for (var c = li; c < p.cols; c += {{WG}}u) {
        es += exp(s[base + c] * inv_t - ms);
        et += exp(t[base + c] * inv_t - mt);
        eh += exp(s[base + c] - mh);
    }
    // log-sum-exps of s/T, t/T and s.
    let ls = ms + log(wg_sum(es, li));
    let lt = mt + log(wg_sum(et, li));
    let lh = mh + log(wg_sum(eh, li));
    let hard = p.alpha < 1.0;
    var label = 0xffffffffu;
    if (hard) {
        label = labels[row];
    }
    var kl = 0.0;
    var label_logit = 0.0;
    for (var c = li; c < p.stride; c += {{WG}}u) {
        var g = 0.0;
        if (c < p.cols) {
            let log_ps = s[base + c] * inv_t - ls;
            let log_pt = t[base + c] * inv_t - lt;
            let pt = exp(log_pt);
            kl += pt * (log_pt - log_ps);
            g = p.alpha * p.temperature * (exp(log_ps) - pt);
            if (hard) {
                var onehot = 0.0;
                if (c == label) {
                    onehot = 1.0;
                    label_logit = s[base + c];
                }
                g += (1.0 - p.alpha) * (exp(s[base + c] - lh) - onehot);
            }
        }
        grad[base + c] = g * p.scale;
    }
    kl = wg_sum(kl, li);
    row_loss = p.alpha * p.temperature * p.temperature * kl;
    if (hard) {
        // A label beyond the columns counts as a logit of -inf: an infinite loss says so.
        var ce = lh - wg_sum(label_logit, li);
        if (label >= p.cols) {
            ce = bitcast<f32>(0x7f800000u);
        }
        row_loss += (1.0 - p.alpha) * ce;
    }
#end
#if LOSS_MSE
    var sq = 0.0;
    let inv_n = 1.0 / f32(p.cols);
    for (var c = li; c < p.stride; c += {{WG}}u) {
        var g = 0.0;
        if (c < p.cols) {
            let d = s[base + c] - t[base + c];
            sq += d * d;
            g = 2.0 * d * inv_n;
        }
        grad[base + c] = g * p.scale;
    }
    row_loss = wg_sum(sq, li) * inv_n;
#end
#if LOSS_COSINE
    var st = 0.0;
    var ss = 0.0;
    var tt = 0.0;
    for (var c = li; c < p.cols; c += {{WG}}u) {
        let a = s[base + c];
        let b = t[base + c];
        st += a * b;
        ss += a * a;
        tt += b * b;
    }
    st = wg_sum(st, li);
    let ns = max(sqrt(wg_sum(ss, li)), 1e-12);
    let nt = max(sqrt(wg_sum(tt, li)), 1e-12);
    let cosine = st / (ns * nt);
    for (var c = li; c < p.stride; c += {{WG}}u) {
        var g = 0.0;
        if (c < p.cols) {
            g = cosine * s[base + c] / (ns * ns) - t[base + c] / (ns * nt);
        }
        grad[base + c] = g * p.scale;
    }
    row_loss = 1.0 - cosine;
#end
    // loss is a one-column tensor: rows of four, the last three padding.
    if (li < 4u) {
        loss[row * 4u + li] = select(0.0, row_loss * p.scale, li == 0u);
    }
}
