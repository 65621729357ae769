//! A whole BERT distillation step in f64: the forward pass of a padded batch with its saved
//! activations, the loss against the teacher's sentence vectors, and the gradient of every
//! trained parameter (embeddings stay frozen): the oracle of `train::bert`'s device step,
//! checked itself against finite differences of the forward pass.

use super::{activate_grad, attention_grad, loss, norm_grad, pool, pool_grad};
use crate::model::config::{BertConfig, Pooling};
use crate::model::reference::{BertWeights, activate, attention, dense, norm};
use crate::train::Loss;

/// A batch of `ids.len() / seq` sequences padded to `seq` tokens: token ids, types and the
/// mask (false on padding), row-major by sequence.
#[derive(Clone, Copy, Debug)]
pub struct TokenBatch<'a> {
    /// Token ids.
    pub ids: &'a [u32],
    /// Token types.
    pub types: &'a [u32],
    /// Which tokens are real.
    pub mask: &'a [bool],
    /// Tokens a sequence.
    pub seq: usize,
}

/// The gradient of one layer's parameters, as `(weight or γ, bias or β)` in the order
/// QKV, attention output, LayerNorm 1, FFN in, FFN out, LayerNorm 2
/// ([`crate::model::reference::BertLayerWeights`]'s roles).
pub type LayerGrads = [(Vec<f64>, Vec<f64>); 6];

/// What one layer's backward pass needs of its forward pass.
struct Saved {
    x: Vec<f64>,
    qkv: Vec<f64>,
    ctx: Vec<f64>,
    v1: Vec<f64>,
    a: Vec<f64>,
    f1: Vec<f64>,
    f2: Vec<f64>,
    v2: Vec<f64>,
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// The embedding rows of `batch` after the embedding LayerNorm.
fn embed(c: &BertConfig, w: &BertWeights, batch: &TokenBatch<'_>) -> Vec<f64> {
    let h = c.hidden_size;
    let mut x = Vec::with_capacity(batch.ids.len() * h);
    for (r, (&id, &t)) in batch.ids.iter().zip(batch.types).enumerate() {
        let p = r % batch.seq;
        for col in 0..h {
            x.push(
                w.word[id as usize * h + col] as f64
                    + w.pos[p * h + col] as f64
                    + w.types[t as usize * h + col] as f64,
            );
        }
    }
    norm(
        &x,
        None,
        &w.emb_ln.0,
        Some(&w.emb_ln.1),
        c.layer_norm_eps,
        h,
    )
}

/// The pooled (and, as configured, normalised) vectors of `batch` and every layer's saved
/// activations.
fn forward(c: &BertConfig, w: &BertWeights, batch: &TokenBatch<'_>) -> (Vec<f64>, Vec<Saved>) {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let eps = c.layer_norm_eps;
    let act = c.activation().expect("validated config");
    let mut x = embed(c, w, batch);
    let mut saved = Vec::new();
    for l in &w.layers {
        let qkv = dense(&x, &l.qkv.0, Some(&l.qkv.1), 3 * h, h);
        let ctx = attention(&qkv, batch.mask, batch.seq, c.num_attention_heads, h);
        let v1 = add(&dense(&ctx, &l.out.0, Some(&l.out.1), h, h), &x);
        let a = norm(&v1, None, &l.ln1.0, Some(&l.ln1.1), eps, h);
        let f1 = dense(&a, &l.ffn_in.0, Some(&l.ffn_in.1), i, h);
        let f2: Vec<f64> = f1.iter().map(|&v| activate(act, v)).collect();
        let v2 = add(&dense(&f2, &l.ffn_out.0, Some(&l.ffn_out.1), h, i), &a);
        let next = norm(&v2, None, &l.ln2.0, Some(&l.ln2.1), eps, h);
        saved.push(Saved {
            x,
            qkv,
            ctx,
            v1,
            a,
            f1,
            f2,
            v2,
        });
        x = next;
    }
    let cls = c.pooling == Pooling::Cls;
    let pooled = pool(&x, batch.mask, batch.seq, cls, c.normalize, h);
    saved.push(Saved {
        x,
        qkv: Vec::new(),
        ctx: Vec::new(),
        v1: Vec::new(),
        a: Vec::new(),
        f1: Vec::new(),
        f2: Vec::new(),
        v2: Vec::new(),
    });
    (pooled, saved)
}

/// The sentence vectors of `batch`.
pub fn outputs(c: &BertConfig, w: &BertWeights, batch: &TokenBatch<'_>) -> Vec<f64> {
    forward(c, w, batch).0
}

/// A linear layer's backward pass: `(dW, db)` from the output gradient `dy` (`rows × n`)
/// and the input `x` (`rows × k`), and the input gradient `dy · W`.
fn linear_grad(
    dy: &[f64],
    x: &[f64],
    w: &[f32],
    n: usize,
    k: usize,
) -> ((Vec<f64>, Vec<f64>), Vec<f64>) {
    let rows = dy.len() / n;
    let (mut dw, mut db, mut dx) = (vec![0.0; n * k], vec![0.0; n], vec![0.0; rows * k]);
    for r in 0..rows {
        for j in 0..n {
            let d = dy[r * n + j];
            if d == 0.0 {
                continue;
            }
            db[j] += d;
            for p in 0..k {
                dw[j * k + p] += d * x[r * k + p];
                dx[r * k + p] += d * w[j * k + p] as f64;
            }
        }
    }
    ((dw, db), dx)
}

/// The loss of `batch` against the teacher's vectors `teacher` (`batch × hidden`) and the
/// gradient of every layer's parameters.
pub fn loss_and_grads(
    c: &BertConfig,
    w: &BertWeights,
    batch: &TokenBatch<'_>,
    teacher: &[f64],
    kind: Loss,
) -> (f64, Vec<LayerGrads>) {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let eps = c.layer_norm_eps;
    let act = c.activation().expect("validated config");
    let (pooled, saved) = forward(c, w, batch);
    let (value, dpooled) = loss(kind, &pooled, teacher, &[], h);
    let cls = c.pooling == Pooling::Cls;
    let last = &saved[w.layers.len()].x;
    let mut dx = pool_grad(last, batch.mask, batch.seq, cls, c.normalize, &dpooled, h);
    let mut grads = Vec::with_capacity(w.layers.len());
    for (l, s) in w.layers.iter().zip(&saved[..w.layers.len()]).rev() {
        let (dv2, dg2, db2) = norm_grad(&s.v2, &l.ln2.0, eps, &dx, h);
        let (g_ffn_out, df2) = linear_grad(&dv2, &s.f2, &l.ffn_out.0, h, i);
        let df1: Vec<f64> = df2
            .iter()
            .zip(&s.f1)
            .map(|(d, &z)| d * activate_grad(act, z))
            .collect();
        let (g_ffn_in, da) = linear_grad(&df1, &s.a, &l.ffn_in.0, i, h);
        let da = add(&da, &dv2);
        let (dv1, dg1, db1) = norm_grad(&s.v1, &l.ln1.0, eps, &da, h);
        let (g_out, dctx) = linear_grad(&dv1, &s.ctx, &l.out.0, h, h);
        let dqkv = attention_grad(
            &s.qkv,
            batch.mask,
            batch.seq,
            c.num_attention_heads,
            h,
            &dctx,
        );
        let (g_qkv, dxl) = linear_grad(&dqkv, &s.x, &l.qkv.0, 3 * h, h);
        dx = add(&dxl, &dv1);
        grads.push([g_qkv, g_out, (dg1, db1), g_ffn_in, g_ffn_out, (dg2, db2)]);
    }
    grads.reverse();
    (value, grads)
}
