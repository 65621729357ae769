//! f64 host references of the training kernels and of a whole MLP step: the oracles the GPU
//! kernels are tested against (and, through finite differences, each other). No wgpu here.

pub mod bert;

use super::{AdamW, Loss};
use crate::activation::Activation;
use crate::model::reference::{activate, erf};

/// `op(A) · op(B)` in f64: `a` is stored `rows × cols` row-major and enters transposed when
/// `ta` (likewise `b`); returns the `m × n` product and the scale `Σ_p |a_ip · b_pj|` of each
/// entry (what an f32 sum's rounding error is measured against).
pub fn matmul(
    a: &[f32],
    a_shape: (usize, usize),
    ta: bool,
    b: &[f32],
    b_shape: (usize, usize),
    tb: bool,
) -> (Vec<f64>, Vec<f64>) {
    let at = |i: usize, p: usize| {
        if ta {
            a[p * a_shape.1 + i]
        } else {
            a[i * a_shape.1 + p]
        }
    };
    let bt = |p: usize, j: usize| {
        if tb {
            b[j * b_shape.1 + p]
        } else {
            b[p * b_shape.1 + j]
        }
    };
    let (m, k) = if ta { (a_shape.1, a_shape.0) } else { a_shape };
    let n = if tb { b_shape.0 } else { b_shape.1 };
    let mut y = vec![0.0; m * n];
    let mut scale = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut abs) = (0.0, 0.0);
            for p in 0..k {
                let v = at(i, p) as f64 * bt(p, j) as f64;
                s += v;
                abs += v.abs();
            }
            y[i * n + j] = s;
            scale[i * n + j] = abs;
        }
    }
    (y, scale)
}

/// The derivative of `act` at `x`.
pub fn activate_grad(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Relu => (x > 0.0) as u8 as f64,
        Activation::Gelu => {
            let phi = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2)) + x * phi
        }
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let th = (c * (x + 0.044715 * x * x * x)).tanh();
            0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * x * x)
        }
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
    }
}

fn log_softmax(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b / t));
    let lse = m + z.iter().map(|&v| (v / t - m).exp()).sum::<f64>().ln();
    z.iter().map(|&v| v / t - lse).collect()
}

/// The batch-mean loss of student rows `s` against teacher rows `t` (`rows × cols`) and its
/// gradient with respect to `s`, as `ops::loss` computes them.
pub fn loss(kind: Loss, s: &[f64], t: &[f64], labels: &[u32], cols: usize) -> (f64, Vec<f64>) {
    let rows = s.len() / cols;
    let scale = 1.0 / rows as f64;
    let mut total = 0.0;
    let mut grad = vec![0.0; s.len()];
    for r in 0..rows {
        let (sr, tr) = (&s[r * cols..(r + 1) * cols], &t[r * cols..(r + 1) * cols]);
        let g = &mut grad[r * cols..(r + 1) * cols];
        let l = match kind {
            Loss::Distill { temperature, alpha } => {
                let (temp, alpha) = (temperature as f64, alpha as f64);
                let ls = log_softmax(sr, temp);
                let lt = log_softmax(tr, temp);
                let mut l = 0.0;
                for c in 0..cols {
                    let pt = lt[c].exp();
                    l += pt * (lt[c] - ls[c]);
                    g[c] = alpha * temp * (ls[c].exp() - pt);
                }
                l *= alpha * temp * temp;
                if alpha < 1.0 {
                    let lh = log_softmax(sr, 1.0);
                    let y = labels[r] as usize;
                    l -= (1.0 - alpha) * lh[y];
                    for c in 0..cols {
                        g[c] += (1.0 - alpha) * (lh[c].exp() - (c == y) as u8 as f64);
                    }
                }
                l
            }
            Loss::Mse => {
                let n = cols as f64;
                let mut l = 0.0;
                for c in 0..cols {
                    let d = sr[c] - tr[c];
                    l += d * d / n;
                    g[c] = 2.0 * d / n;
                }
                l
            }
            Loss::Cosine => {
                let dot: f64 = sr.iter().zip(tr).map(|(a, b)| a * b).sum();
                let ns = sr.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
                let nt = tr.iter().map(|b| b * b).sum::<f64>().sqrt().max(1e-12);
                let cos = dot / (ns * nt);
                for c in 0..cols {
                    g[c] = cos * sr[c] / (ns * ns) - tr[c] / (ns * nt);
                }
                1.0 - cos
            }
        };
        total += l * scale;
        for v in g.iter_mut() {
            *v *= scale;
        }
    }
    (total, grad)
}

/// The clipping factor of gradients `grads` under `max_norm` (1 without clipping).
pub fn clip_factor(grads: &[&[f64]], max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    let sq: f64 = grads.iter().flat_map(|g| g.iter()).map(|v| v * v).sum();
    (max_norm / (sq.sqrt() + 1e-6)).min(1.0)
}

/// One AdamW step (`step` 1-based) of weights `w` with gradient `g` (already clipped by
/// `clip`) and moments `m`, `v`, as `ops::adamw` does it; `decayed` as in
/// [`AdamW::params`], `mask` keeps pruned weights at zero.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    opt: &AdamW,
    step: usize,
    decayed: bool,
    clip: f64,
    w: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    mask: Option<&[f32]>,
) {
    let p = opt.params(step, w.len(), 0, decayed);
    let (b1, b2) = (opt.beta1 as f64, opt.beta2 as f64);
    for i in 0..w.len() {
        let gi = g[i] * clip;
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        let mut wi = w[i] * (1.0 - p.lr as f64 * p.weight_decay as f64);
        wi -= p.lr as f64 * (m[i] / p.bias1 as f64)
            / ((v[i] / p.bias2 as f64).sqrt() + opt.eps as f64);
        if let Some(mask) = mask {
            wi *= mask[i] as f64;
        }
        w[i] = wi;
    }
}

/// Per layer a weight (`out × in`, row-major) and a bias, or their gradients.
pub type LayerPairs = Vec<(Vec<f64>, Vec<f64>)>;

/// An MLP's parameters in f64: per layer the weight (`out × in`, row-major) and the bias.
#[derive(Clone, Debug)]
pub struct MlpParams {
    /// Layer widths, input first.
    pub sizes: Vec<usize>,
    /// `(weight, bias)` per layer.
    pub layers: LayerPairs,
    /// Activation between layers.
    pub activation: Activation,
}

impl MlpParams {
    /// The outputs of the batch `x` (`rows × sizes[0]`), and each layer's pre-activation and
    /// input (as `(input, pre-activation)` pairs), for the backward pass.
    fn forward(&self, x: &[f64]) -> (Vec<f64>, LayerPairs) {
        let mut h = x.to_vec();
        let mut saved = Vec::new();
        let last = self.layers.len() - 1;
        for (l, (w, b)) in self.layers.iter().enumerate() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let rows = h.len() / k;
            let mut z = vec![0.0; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let dot: f64 = (0..k).map(|p| h[r * k + p] * w[j * k + p]).sum();
                    z[r * n + j] = dot + b[j];
                }
            }
            let out = if l < last {
                z.iter().map(|&v| activate(self.activation, v)).collect()
            } else {
                z.clone()
            };
            saved.push((h, z));
            h = out;
        }
        (h, saved)
    }

    /// The outputs (logits) of `x`.
    pub fn outputs(&self, x: &[f64]) -> Vec<f64> {
        self.forward(x).0
    }

    /// The loss of the batch `x` against teacher outputs `t`, and the gradient of every
    /// parameter (`(dW, db)` per layer).
    pub fn loss_and_grads(
        &self,
        kind: Loss,
        x: &[f64],
        t: &[f64],
        labels: &[u32],
    ) -> (f64, LayerPairs) {
        let (y, saved) = self.forward(x);
        let classes = *self.sizes.last().expect("layers");
        let (l, mut dz) = loss(kind, &y, t, labels, classes);
        let mut grads = vec![(Vec::new(), Vec::new()); self.layers.len()];
        for li in (0..self.layers.len()).rev() {
            let (k, n) = (self.sizes[li], self.sizes[li + 1]);
            let (h, _) = &saved[li];
            let rows = h.len() / k;
            let w = &self.layers[li].0;
            let mut dw = vec![0.0; n * k];
            let mut db = vec![0.0; n];
            for r in 0..rows {
                for j in 0..n {
                    let d = dz[r * n + j];
                    db[j] += d;
                    for p in 0..k {
                        dw[j * k + p] += d * h[r * k + p];
                    }
                }
            }
            grads[li] = (dw, db);
            if li > 0 {
                let zprev = &saved[li - 1].1;
                let mut dh = vec![0.0; rows * k];
                for r in 0..rows {
                    for p in 0..k {
                        let s: f64 = (0..n).map(|j| dz[r * n + j] * w[j * k + p]).sum();
                        dh[r * k + p] = s * activate_grad(self.activation, zprev[r * k + p]);
                    }
                }
                dz = dh;
            }
        }
        (l, grads)
    }
}

/// LayerNorm's backward pass for rows `v` (`cols` wide) normalised with `gamma` and `eps`:
/// the gradients of `v`, `gamma` and `beta` from the output's gradient `dy`.
pub fn norm_grad(
    v: &[f64],
    gamma: &[f32],
    eps: f64,
    dy: &[f64],
    cols: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = cols as f64;
    let mut dv = vec![0.0; v.len()];
    let (mut dgamma, mut dbeta) = (vec![0.0; cols], vec![0.0; cols]);
    for (r, row) in v.chunks(cols).enumerate() {
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        let dyr = &dy[r * cols..(r + 1) * cols];
        let xh: Vec<f64> = row.iter().map(|x| (x - mean) * inv).collect();
        let g: Vec<f64> = (0..cols).map(|c| dyr[c] * gamma[c] as f64).collect();
        let mg = g.iter().sum::<f64>() / n;
        let mgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / n;
        for c in 0..cols {
            dv[r * cols + c] = (g[c] - mg - xh[c] * mgx) * inv;
            dgamma[c] += dyr[c] * xh[c];
            dbeta[c] += dyr[c];
        }
    }
    (dv, dgamma, dbeta)
}

/// Sentence pooling in f64 (as `model::ops::pool`): the mean of the token rows of each
/// sequence of `seq` whose `mask` is set (CLS: the first row), then optionally L2
/// normalisation.
pub fn pool(
    x: &[f64],
    mask: &[bool],
    seq: usize,
    cls: bool,
    normalize: bool,
    cols: usize,
) -> Vec<f64> {
    let batch = x.len() / (seq * cols);
    let mut out = vec![0.0; batch * cols];
    for b in 0..batch {
        let kept: Vec<usize> = (0..seq)
            .filter(|&j| if cls { j == 0 } else { mask[b * seq + j] })
            .collect();
        let count = (kept.len() as f64).max(1.0);
        let y = &mut out[b * cols..(b + 1) * cols];
        for &j in &kept {
            for c in 0..cols {
                y[c] += x[(b * seq + j) * cols + c] / count;
            }
        }
        if normalize {
            let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            y.iter_mut().for_each(|v| *v /= norm);
        }
    }
    out
}

/// The backward pass of [`pool`]: the gradient of the token rows from the pooled rows' `dy`.
pub fn pool_grad(
    x: &[f64],
    mask: &[bool],
    seq: usize,
    cls: bool,
    normalize: bool,
    dy: &[f64],
    cols: usize,
) -> Vec<f64> {
    let batch = x.len() / (seq * cols);
    let pooled = pool(x, mask, seq, cls, false, cols);
    let mut dx = vec![0.0; x.len()];
    for b in 0..batch {
        let kept: Vec<usize> = (0..seq)
            .filter(|&j| if cls { j == 0 } else { mask[b * seq + j] })
            .collect();
        let count = (kept.len() as f64).max(1.0);
        let u = &pooled[b * cols..(b + 1) * cols];
        let d = &dy[b * cols..(b + 1) * cols];
        let du: Vec<f64> = if normalize {
            let norm = u.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            let ydy: f64 = u.iter().zip(d).map(|(a, b)| a * b).sum::<f64>() / norm;
            (0..cols)
                .map(|c| (d[c] - u[c] / norm * ydy) / norm)
                .collect()
        } else {
            d.to_vec()
        };
        for &j in &kept {
            for c in 0..cols {
                dx[(b * seq + j) * cols + c] = du[c] / count;
            }
        }
    }
    dx
}

/// The backward pass of multi-head self-attention (`model::reference::attention`): the
/// gradient of the fused `qkv` rows (`3 · hidden` wide) from the output's gradient `dout`
/// (`hidden` wide), for sequences of `seq` rows masked by `mask`.
pub fn attention_grad(
    qkv: &[f64],
    mask: &[bool],
    seq: usize,
    heads: usize,
    hidden: usize,
    dout: &[f64],
) -> Vec<f64> {
    let rows = mask.len();
    let d = hidden / heads;
    let scale = 1.0 / (d as f64).sqrt();
    let w = 3 * hidden;
    let mut g = vec![0.0; rows * w];
    for i in 0..rows {
        let first = i / seq * seq;
        let keys: Vec<usize> = (first..first + seq).filter(|&j| mask[j]).collect();
        if keys.is_empty() {
            continue;
        }
        for h in 0..heads {
            let (q, k, v) = (h * d, hidden + h * d, 2 * hidden + h * d);
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..d)
                        .map(|e| qkv[i * w + q + e] * qkv[j * w + k + e])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = s.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / z).collect();
            let dp: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..d)
                        .map(|e| dout[i * hidden + h * d + e] * qkv[j * w + v + e])
                        .sum()
                })
                .collect();
            let dd: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for (n, &j) in keys.iter().enumerate() {
                let ds = p[n] * (dp[n] - dd);
                for e in 0..d {
                    g[i * w + q + e] += ds * qkv[j * w + k + e] * scale;
                    g[j * w + k + e] += ds * qkv[i * w + q + e] * scale;
                    g[j * w + v + e] += p[n] * dout[i * hidden + h * d + e];
                }
            }
        }
    }
    g
}
