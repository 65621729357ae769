//! CPU references (f64) of every model kernel and of whole forward passes: the oracles the
//! GPU model runtime is tested against. Matrices are dense row-major without padding.

use crate::model::config::{Activation, BertConfig, Pooling};

mod paged;
pub use paged::{paged_attention, paged_kv_append};

/// The error function to f64 precision: its Taylor series near zero, a continued fraction of
/// erfc in the tails.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let r = if z < 2.5 {
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(z) = exp(-z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))).
        let mut f = z;
        for k in (1..80).rev() {
            f = z + (k as f64 / 2.0) / f;
        }
        1.0 - (-z * z).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

/// An activation at f64.
pub fn activate(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Relu => x.max(0.0),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + u.tanh())
        }
        Activation::Silu => x / (1.0 + (-x).exp()),
    }
}

/// LayerNorm (or RMSNorm when `beta` is None) of each row of `x (+ residual)`.
pub fn norm(
    x: &[f64],
    residual: Option<&[f64]>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f64,
    cols: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(cols).enumerate() {
        let v: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(c, a)| a + residual.map_or(0.0, |res| res[r * cols + c]))
            .collect();
        let n = cols as f64;
        let mean = if beta.is_some() {
            v.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for c in 0..cols {
            out.push((v[c] - mean) * inv * gamma[c] as f64 + beta.map_or(0.0, |b| b[c] as f64));
        }
    }
    out
}

/// Softmax of each row.
pub fn softmax(x: &[f64], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

/// Self-attention: `qkv` is `batch·seq × 3H` (Q, K, V blocks), `mask` one flag per row;
/// returns `batch·seq × H`.
pub fn attention(qkv: &[f64], mask: &[bool], seq: usize, heads: usize, hidden: usize) -> Vec<f64> {
    let rows = mask.len();
    let d = hidden / heads;
    let scale = 1.0 / (d as f64).sqrt();
    let w = 3 * hidden;
    let mut out = vec![0.0; rows * hidden];
    for row in 0..rows {
        let first = row / seq * seq;
        for h in 0..heads {
            let q = &qkv[row * w + h * d..row * w + h * d + d];
            let keys: Vec<usize> = (first..first + seq).filter(|&j| mask[j]).collect();
            // A sequence with every key masked attends to nothing: zeros.
            if keys.is_empty() {
                continue;
            }
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    let k = &qkv[j * w + hidden + h * d..j * w + hidden + h * d + d];
                    q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale
                })
                .collect();
            let p = softmax(&s, s.len());
            for (pi, &j) in p.iter().zip(&keys) {
                for e in 0..d {
                    out[row * hidden + h * d + e] += pi * qkv[j * w + 2 * hidden + h * d + e];
                }
            }
        }
    }
    out
}

/// Pools sequences of `seq` rows (mean over masked-in rows, or the first row), then
/// optionally L2-normalises.
pub fn pool(
    x: &[f64],
    mask: Option<&[bool]>,
    seq: usize,
    cols: usize,
    pooling: Pooling,
    normalize: bool,
) -> Vec<f64> {
    let batch = x.len() / cols / seq;
    let mut out = Vec::with_capacity(batch * cols);
    for b in 0..batch {
        let mut v = vec![0.0; cols];
        match pooling {
            Pooling::Cls => v.copy_from_slice(&x[b * seq * cols..b * seq * cols + cols]),
            Pooling::Mean => {
                let mut count = 0.0;
                for j in 0..seq {
                    if mask.is_none_or(|m| m[b * seq + j]) {
                        count += 1.0;
                        for c in 0..cols {
                            v[c] += x[(b * seq + j) * cols + c];
                        }
                    }
                }
                v.iter_mut().for_each(|a| *a /= f64::max(count, 1.0));
            }
        }
        if normalize {
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= n);
        }
        out.extend(v);
    }
    out
}

/// `x · Wᵀ + b` with f64 activations and f32 weights (`n × k`).
pub fn dense(x: &[f64], w: &[f32], b: Option<&[f32]>, n: usize, k: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() / k * n);
    for row in x.chunks(k) {
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let mut acc = b.map_or(0.0, |b| b[j] as f64);
            for (a, c) in row.iter().zip(wr) {
                acc += a * *c as f64;
            }
            out.push(acc);
        }
    }
    out
}

/// Weights of a BERT encoder on the host, by role (linear weights already dequantized).
#[derive(Clone, Debug)]
pub struct BertWeights {
    /// Word, position and token-type embeddings.
    pub word: Vec<f32>,
    /// Position embeddings.
    pub pos: Vec<f32>,
    /// Token-type embeddings.
    pub types: Vec<f32>,
    /// Embedding LayerNorm gamma, beta.
    pub emb_ln: (Vec<f32>, Vec<f32>),
    /// Per layer.
    pub layers: Vec<BertLayerWeights>,
}

/// One transformer layer's weights.
#[derive(Clone, Debug)]
pub struct BertLayerWeights {
    /// Fused Q, K, V (`3H × H`) and bias.
    pub qkv: (Vec<f32>, Vec<f32>),
    /// Attention output projection (`H × H`) and bias.
    pub out: (Vec<f32>, Vec<f32>),
    /// Post-attention LayerNorm.
    pub ln1: (Vec<f32>, Vec<f32>),
    /// Feed-forward in (`I × H`) and bias.
    pub ffn_in: (Vec<f32>, Vec<f32>),
    /// Feed-forward out (`H × I`) and bias.
    pub ffn_out: (Vec<f32>, Vec<f32>),
    /// Output LayerNorm.
    pub ln2: (Vec<f32>, Vec<f32>),
}

/// A whole BERT forward pass of one sequence (`ids`, `types`) to its pooled vector.
pub fn bert(c: &BertConfig, w: &BertWeights, ids: &[u32], types: &[u32]) -> Vec<f64> {
    bert_observed(c, w, ids, types, &mut |_, _, _| {})
}

/// The input of one of a BERT layer's linear weights (numbered in [`LinearSite::ALL`]'s order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearSite {
    /// The fused Q, K, V projection.
    Qkv,
    /// The attention output projection.
    Out,
    /// The feed-forward input.
    FfnIn,
    /// The feed-forward output.
    FfnOut,
}

impl LinearSite {
    /// All four, in the order a layer runs them.
    pub const ALL: [LinearSite; 4] = [
        LinearSite::Qkv,
        LinearSite::Out,
        LinearSite::FfnIn,
        LinearSite::FfnOut,
    ];
}

/// [`bert`], showing `observe` the input of every linear weight (layer, site, `seq × k`
/// row-major) before it is multiplied: what calibration collects.
pub fn bert_observed(
    c: &BertConfig,
    w: &BertWeights,
    ids: &[u32],
    types: &[u32],
    observe: &mut dyn FnMut(usize, LinearSite, &[f64]),
) -> Vec<f64> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let s = ids.len();
    let mut x = Vec::with_capacity(s * h);
    for (p, (&id, &t)) in ids.iter().zip(types).enumerate() {
        for col in 0..h {
            x.push(
                w.word[id as usize * h + col] as f64
                    + w.pos[p * h + col] as f64
                    + w.types[t as usize * h + col] as f64,
            );
        }
    }
    let eps = c.layer_norm_eps;
    let mut x = norm(&x, None, &w.emb_ln.0, Some(&w.emb_ln.1), eps, h);
    let mask = vec![true; s];
    let act = c.activation().expect("validated config");
    for (li, l) in w.layers.iter().enumerate() {
        observe(li, LinearSite::Qkv, &x);
        let qkv = dense(&x, &l.qkv.0, Some(&l.qkv.1), 3 * h, h);
        let ctx = attention(&qkv, &mask, s, c.num_attention_heads, h);
        observe(li, LinearSite::Out, &ctx);
        let o = dense(&ctx, &l.out.0, Some(&l.out.1), h, h);
        let a = norm(&o, Some(&x), &l.ln1.0, Some(&l.ln1.1), eps, h);
        observe(li, LinearSite::FfnIn, &a);
        let f: Vec<f64> = dense(&a, &l.ffn_in.0, Some(&l.ffn_in.1), i, h)
            .into_iter()
            .map(|v| activate(act, v))
            .collect();
        observe(li, LinearSite::FfnOut, &f);
        let f = dense(&f, &l.ffn_out.0, Some(&l.ffn_out.1), h, i);
        x = norm(&f, Some(&a), &l.ln2.0, Some(&l.ln2.1), eps, h);
    }
    pool(&x, None, s, h, c.pooling, c.normalize)
}
