//! Distillation of a BERT sentence encoder on the device: a student (fewer layers taken from
//! the teacher, narrower FFNs, or the teacher's shape with pruning masks) trained to match
//! the teacher's sentence vectors (`Loss::Cosine` or `Loss::Mse`) with AdamW; embeddings
//! stay frozen. One recorded step: embeddings, each layer's forward pass with its
//! activations kept, pooling, loss, the backward pass through every layer, gradient norm
//! and AdamW, replayed with each batch's token rows (one plan per padded length).

pub mod distill;
pub mod student;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, record_pass};
use crate::model::config::{Activation, BertConfig};
use crate::model::ops::{self as mops, Norm, Table};
use crate::model::reference::{BertLayerWeights, BertWeights};
use crate::tensor::Tensor;
use crate::train::param::{Optimizer, Param};
use crate::train::{AdamW, Loss, ops};
use std::collections::HashMap;

/// The roles of a layer's parameters, in [`crate::train::reference::bert::LayerGrads`]'s
/// order: (weight or γ, bias or β) each.
const QKV: usize = 0;
const OUT: usize = 1;
const LN1: usize = 2;
const FFN_IN: usize = 3;
const FFN_OUT: usize = 4;
const LN2: usize = 5;

/// One layer's parameter gradients, `(weight or γ, bias or β)` per role in
/// [`crate::train::reference::bert::LayerGrads`]'s order.
pub type LayerGradients = [(Vec<f32>, Vec<f32>); 6];

/// A sequence: token ids and types.
pub type Sequence = (Vec<u32>, Vec<u32>);

/// An untrained encoder student: its configuration, weights and, for a student whose
/// sparsity is kept, one mask per linear weight of each layer (QKV, output, FFN in, FFN out;
/// 1 where a weight is kept).
pub struct BertStudent {
    /// The student's shape.
    pub config: BertConfig,
    /// Its initial weights (embeddings included: they stay as they are).
    pub weights: BertWeights,
    /// Masks of the linear weights, per layer.
    pub masks: Option<Vec<[Vec<f32>; 4]>>,
}

/// One layer's activations, kept for the backward pass (`rows × width` each).
struct Acts {
    qkv: Tensor,
    ctx: Tensor,
    v1: Tensor,
    a: Tensor,
    f1: Tensor,
    f2: Tensor,
    v2: Tensor,
}

/// Gradients of activations, shared by every layer's backward pass.
struct Grads {
    dx: Tensor,
    dv2: Tensor,
    dyx: Tensor,
    df2: Tensor,
    df1: Tensor,
    da: Tensor,
    dv1: Tensor,
    dctx: Tensor,
    dqkv: Tensor,
}

/// One layer's parameters: (weight or γ, bias or β) per role, and its two norms reading
/// the γ and β tensors.
struct LayerParams {
    p: [(Param, Param); 6],
    norm1: Norm,
    norm2: Norm,
}

/// The planned passes of one padded length and count of real sequences.
struct Plan {
    forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
}

/// A BERT student on the device, ready to train on batches of up to `batch` sequences of
/// up to `max_seq` tokens.
pub struct BertTrainer<'g> {
    gpu: &'g Gpu,
    config: BertConfig,
    act: Activation,
    loss: Loss,
    batch: usize,
    max_seq: usize,
    word: Table,
    pos: Table,
    types: Table,
    emb_ln: Norm,
    layers: Vec<LayerParams>,
    opt: Optimizer,
    tokens: wgpu::Buffer,
    teacher: Tensor,
    /// The layers' inputs, then the last layer's output.
    xs: Vec<Tensor>,
    acts: Vec<Acts>,
    proj: Tensor,
    grads: Grads,
    scratch: ops::AttentionScratch,
    pooled: Tensor,
    dpooled: Tensor,
    row_loss: Tensor,
    plans: std::cell::RefCell<HashMap<(usize, usize), std::rc::Rc<Plan>>>,
    step: usize,
}

/// The first `rows` rows of `t` (same buffer).
fn view(t: &Tensor, rows: usize) -> Tensor {
    Tensor {
        buffer: t.buffer.clone(),
        rows,
        cols: t.cols,
        dtype: t.dtype,
    }
}

fn zeros(gpu: &Gpu, rows: usize, cols: usize) -> Result<Tensor> {
    Tensor::from_f32(gpu, &vec![0.0; rows * cols], rows, cols)
}

/// The device parameters of one layer of `w`, masked by `masks`.
fn layer_params(
    gpu: &Gpu,
    c: &BertConfig,
    w: &BertLayerWeights,
    masks: Option<&[Vec<f32>; 4]>,
) -> Result<LayerParams> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let linear = |(wt, b): &(Vec<f32>, Vec<f32>), n: usize, k: usize, mask: Option<&Vec<f32>>| {
        if wt.len() != n * k || b.len() != n {
            return Err(Error::shape(format!(
                "BERT student: a linear weight of {} values and {} biases for {n} × {k}",
                wt.len(),
                b.len()
            )));
        }
        let mut p = Param::new(gpu, wt, n, k, true)?;
        if let Some(m) = mask {
            p = p.with_mask(gpu, m)?;
        }
        Ok((p, Param::new(gpu, b, 1, n, false)?))
    };
    let norm = |(g, b): &(Vec<f32>, Vec<f32>)| {
        if g.len() != h || b.len() != h {
            return Err(Error::shape(format!(
                "BERT student: a LayerNorm of {} and {} values for width {h}",
                g.len(),
                b.len()
            )));
        }
        Ok((
            Param::new(gpu, g, 1, h, false)?,
            Param::new(gpu, b, 1, h, false)?,
        ))
    };
    let m = |j: usize| masks.map(|m| &m[j]);
    let p = [
        linear(&w.qkv, 3 * h, h, m(0))?,
        linear(&w.out, h, h, m(1))?,
        norm(&w.ln1)?,
        linear(&w.ffn_in, i, h, m(2))?,
        linear(&w.ffn_out, h, i, m(3))?,
        norm(&w.ln2)?,
    ];
    let eps = c.layer_norm_eps as f32;
    let norm_of = |(g, b): &(Param, Param)| Norm {
        gamma: g.w.buffer.clone(),
        beta: Some(b.w.buffer.clone()),
        cols: h,
        eps,
        rms: false,
    };
    Ok(LayerParams {
        norm1: norm_of(&p[LN1]),
        norm2: norm_of(&p[LN2]),
        p,
    })
}

impl<'g> BertTrainer<'g> {
    /// Uploads `student` and prepares training on batches of up to `batch` sequences of up
    /// to `max_seq` tokens, matching the teacher's vectors by `loss` (cosine or MSE).
    pub fn new(
        gpu: &'g Gpu,
        student: &BertStudent,
        loss: Loss,
        opt: AdamW,
        batch: usize,
        max_seq: usize,
    ) -> Result<Self> {
        let c = &student.config;
        c.validate()?;
        loss.validate()?;
        if matches!(loss, Loss::Distill { .. }) {
            return Err(Error::config(
                "an encoder student matches sentence vectors: cosine or MSE loss",
            ));
        }
        let (h, i, w) = (c.hidden_size, c.intermediate_size, &student.weights);
        if w.layers.len() != c.num_hidden_layers
            || student
                .masks
                .as_ref()
                .is_some_and(|m| m.len() != c.num_hidden_layers)
        {
            return Err(Error::shape(format!(
                "BERT student: {} layers of weights for a config of {}",
                w.layers.len(),
                c.num_hidden_layers
            )));
        }
        if batch == 0 || max_seq == 0 || max_seq > c.max_position_embeddings {
            return Err(Error::shape(format!(
                "BERT student: batches of {batch} sequences of up to {max_seq} tokens (the \
                 model takes at most {})",
                c.max_position_embeddings
            )));
        }
        let rows = batch
            .checked_mul(max_seq)
            .ok_or_else(|| Error::shape("batch × sequence overflows"))?;
        let what = format!("training {batch} sequences × {max_seq} tokens");
        gpu.check_tensor(
            &format!("{what}: FFN"),
            &[rows, crate::tensor::stride_of(i)],
            4,
        )?;
        gpu.check_tensor(
            &format!("{what}: QKV"),
            &[rows, crate::tensor::stride_of(3 * h)],
            4,
        )?;
        let act = c.activation()?;
        let heads = c.num_attention_heads;
        let scratch = ops::AttentionScratch::new(gpu, batch, max_seq, heads)?;
        let mut layers = Vec::with_capacity(w.layers.len());
        for (l, lw) in w.layers.iter().enumerate() {
            let masks = student.masks.as_ref().map(|m| &m[l]);
            layers.push(layer_params(gpu, c, lw, masks)?);
        }
        let mut all: Vec<&mut Param> = layers
            .iter_mut()
            .flat_map(|l| l.p.iter_mut().flat_map(|(a, b)| [a, b]))
            .collect();
        let opt = Optimizer::new(gpu, opt, &mut all)?;
        let t = |r, c| zeros(gpu, r, c);
        let acts = (0..w.layers.len())
            .map(|_| {
                Ok(Acts {
                    qkv: t(rows, 3 * h)?,
                    ctx: t(rows, h)?,
                    v1: t(rows, h)?,
                    a: t(rows, h)?,
                    f1: t(rows, i)?,
                    f2: t(rows, i)?,
                    v2: t(rows, h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let grads = Grads {
            dx: t(rows, h)?,
            dv2: t(rows, h)?,
            dyx: t(rows, h)?,
            df2: t(rows, i)?,
            df1: t(rows, i)?,
            da: t(rows, h)?,
            dv1: t(rows, h)?,
            dctx: t(rows, h)?,
            dqkv: t(rows, 3 * h)?,
        };
        let table = |label: &str, data: &[f32], n: usize| Table::new(gpu, label, data, n, h);
        Ok(BertTrainer {
            gpu,
            act,
            loss,
            batch,
            max_seq,
            word: table("word embeddings", &w.word, c.vocab_size)?,
            pos: table("position embeddings", &w.pos, c.max_position_embeddings)?,
            types: table("token type embeddings", &w.types, c.type_vocab_size)?,
            emb_ln: Norm::layer(gpu, &w.emb_ln.0, &w.emb_ln.1, c.layer_norm_eps)?,
            layers,
            opt,
            tokens: gpu.storage("training tokens", (rows * 16) as u64)?,
            teacher: t(batch, h)?,
            xs: (0..=w.layers.len())
                .map(|_| t(rows, h))
                .collect::<Result<_>>()?,
            acts,
            proj: t(rows, h)?,
            grads,
            scratch,
            pooled: t(batch, h)?,
            dpooled: t(batch, h)?,
            row_loss: t(batch, 1)?,
            plans: Default::default(),
            step: 0,
            config: c.clone(),
        })
    }

    fn params(&self) -> Vec<&Param> {
        self.layers
            .iter()
            .flat_map(|l| l.p.iter().flat_map(|(a, b)| [a, b]))
            .collect()
    }

    /// The forward pass and loss of `n` real sequences padded to `seq` tokens (the batch's
    /// other sequences are padding whose loss and gradient are zero).
    fn plan_forward(&self, seq: usize, n: usize) -> Result<Vec<Dispatch>> {
        let gpu = self.gpu;
        let rows = self.batch * seq;
        let heads = self.config.num_attention_heads;
        let proj = view(&self.proj, rows);
        let mut d = mops::embed(
            gpu,
            &self.tokens,
            &self.word,
            Some(&self.pos),
            Some(&self.types),
            &proj,
        )?;
        d.push(
            self.emb_ln
                .plan(gpu, &proj, None, &view(&self.xs[0], rows))?,
        );
        for (l, (lp, acts)) in self.layers.iter().zip(&self.acts).enumerate() {
            let x = view(&self.xs[l], rows);
            let [qkv, ctx, v1, a, f1, f2, v2] = [
                &acts.qkv, &acts.ctx, &acts.v1, &acts.a, &acts.f1, &acts.f2, &acts.v2,
            ]
            .map(|t| view(t, rows));
            let p = &lp.p;
            let linear = |x: &Tensor, role: usize, y: &Tensor| {
                ops::matmul(
                    gpu,
                    x,
                    ops::Op::N,
                    &p[role].0.w,
                    ops::Op::T,
                    Some(&p[role].1.w),
                    y,
                    false,
                )
            };
            d.push(linear(&x, QKV, &qkv)?);
            d.push(mops::attention(gpu, &qkv, &self.tokens, seq, heads, &ctx)?);
            d.push(linear(&ctx, OUT, &proj)?);
            d.push(lp.norm1.plan_sum(gpu, &proj, &x, &v1, &a)?);
            d.push(linear(&a, FFN_IN, &f1)?);
            d.push(mops::elementwise(gpu, Some(self.act), &f1, None, &f2)?);
            d.push(linear(&f2, FFN_OUT, &proj)?);
            d.push(
                lp.norm2
                    .plan_sum(gpu, &proj, &a, &v2, &view(&self.xs[l + 1], rows))?,
            );
        }
        let last = view(&self.xs[self.layers.len()], rows);
        let c = &self.config;
        d.push(mops::pool(
            gpu,
            &last,
            Some(&self.tokens),
            seq,
            c.pooling,
            c.normalize,
            &self.pooled,
        )?);
        d.push(ops::loss(
            gpu,
            self.loss,
            &self.pooled,
            &self.teacher,
            None,
            n,
            &self.dpooled,
            &self.row_loss,
        )?);
        Ok(d)
    }

    /// The backward pass through every layer and the optimizer's step (after
    /// [`Self::plan_forward`]'s loss gradient).
    fn plan_backward(&self, seq: usize) -> Result<Vec<Dispatch>> {
        use ops::Op::{N, T};
        let gpu = self.gpu;
        let rows = self.batch * seq;
        let heads = self.config.num_attention_heads;
        let g = &self.grads;
        let [dx, dv2, dyx, df2, df1, da, dv1, dctx, dqkv] = [
            &g.dx, &g.dv2, &g.dyx, &g.df2, &g.df1, &g.da, &g.dv1, &g.dctx, &g.dqkv,
        ]
        .map(|t| view(t, rows));
        let c = &self.config;
        let last = view(&self.xs[self.layers.len()], rows);
        let mut d = vec![ops::pool_grad(
            gpu,
            &last,
            Some(&self.tokens),
            seq,
            c.pooling,
            c.normalize,
            &self.dpooled,
            &dx,
        )?];
        for (l, (lp, acts)) in self.layers.iter().zip(&self.acts).enumerate().rev() {
            let x = view(&self.xs[l], rows);
            let [qkv, ctx, v1, a, f1, f2, v2] = [
                &acts.qkv, &acts.ctx, &acts.v1, &acts.a, &acts.f1, &acts.f2, &acts.v2,
            ]
            .map(|t| view(t, rows));
            let p = &lp.p;
            // A linear layer's weight and bias gradients from its output gradient `dy`.
            let weight_grads = |dy: &Tensor, x: &Tensor, role: usize| -> Result<[Dispatch; 2]> {
                Ok([
                    ops::matmul(gpu, dy, T, x, N, None, &p[role].0.g, false)?,
                    ops::col_sum(gpu, dy, &p[role].1.g, false)?,
                ])
            };
            let norm_grads = |norm: &Norm,
                              v: &Tensor,
                              dy: &Tensor,
                              dv: &Tensor,
                              role: usize|
             -> Result<[Dispatch; 3]> {
                Ok([
                    ops::norm_grad(gpu, norm, v, dy, dv, &dyx)?,
                    ops::col_sum(gpu, &dyx, &p[role].0.g, false)?,
                    ops::col_sum(gpu, dy, &p[role].1.g, false)?,
                ])
            };
            d.extend(norm_grads(&lp.norm2, &v2, &dx, &dv2, LN2)?);
            d.extend(weight_grads(&dv2, &f2, FFN_OUT)?);
            d.push(ops::matmul(
                gpu,
                &dv2,
                N,
                &p[FFN_OUT].0.w,
                N,
                None,
                &df2,
                false,
            )?);
            d.push(ops::act_grad(gpu, self.act, &f1, &df2, &df1)?);
            d.extend(weight_grads(&df1, &a, FFN_IN)?);
            // The FFN's residual: da = dv2 + df1 · W_in.
            d.push(mops::elementwise(gpu, None, &dv2, None, &da)?);
            d.push(ops::matmul(
                gpu,
                &df1,
                N,
                &p[FFN_IN].0.w,
                N,
                None,
                &da,
                true,
            )?);
            d.extend(norm_grads(&lp.norm1, &v1, &da, &dv1, LN1)?);
            d.extend(weight_grads(&dv1, &ctx, OUT)?);
            d.push(ops::matmul(
                gpu,
                &dv1,
                N,
                &p[OUT].0.w,
                N,
                None,
                &dctx,
                false,
            )?);
            d.extend(ops::attention_grad(
                gpu,
                &qkv,
                &self.tokens,
                seq,
                heads,
                &dctx,
                &self.scratch,
                &dqkv,
            )?);
            d.extend(weight_grads(&dqkv, &x, QKV)?);
            if l > 0 {
                // The attention block's residual: dx = dv1 + dqkv · W_qkv (the embeddings
                // below the first layer are frozen).
                d.push(mops::elementwise(gpu, None, &dv1, None, &dx)?);
                d.push(ops::matmul(gpu, &dqkv, N, &p[QKV].0.w, N, None, &dx, true)?);
            }
        }
        d.extend(self.opt.plan(gpu, &self.params())?);
        Ok(d)
    }

    /// The plan of `n` real sequences padded to `seq` tokens, made once.
    fn plan(&self, seq: usize, n: usize) -> Result<std::rc::Rc<Plan>> {
        if let Some(p) = self.plans.borrow().get(&(seq, n)) {
            return Ok(p.clone());
        }
        let plan = std::rc::Rc::new(Plan {
            forward: self.plan_forward(seq, n)?,
            backward: self.plan_backward(seq)?,
        });
        self.plans.borrow_mut().insert((seq, n), plan.clone());
        Ok(plan)
    }

    /// Writes `seqs` (at most `batch`, each of 1 to `max_seq` tokens) and the teacher's
    /// vectors of them (`seqs.len() × hidden`) into the batch tensors; returns the padded
    /// length.
    fn load(&self, seqs: &[Sequence], teacher: &[f32]) -> Result<usize> {
        let c = &self.config;
        let h = c.hidden_size;
        let n = seqs.len();
        if n == 0 || n > self.batch || teacher.len() != n * h {
            return Err(Error::shape(format!(
                "a batch of {n} sequences (at most {}) with {} teacher values ({h} a sequence)",
                self.batch,
                teacher.len()
            )));
        }
        let longest = seqs.iter().map(|s| s.0.len()).max().unwrap_or(0);
        for (s, (ids, types)) in seqs.iter().enumerate() {
            if ids.is_empty() || ids.len() > self.max_seq || types.len() != ids.len() {
                return Err(Error::shape(format!(
                    "sequence {s}: {} tokens and {} types (1 to {} tokens)",
                    ids.len(),
                    types.len(),
                    self.max_seq
                )));
            }
            if ids.iter().any(|&id| id as usize >= c.vocab_size)
                || types.iter().any(|&t| t as usize >= c.type_vocab_size)
            {
                return Err(Error::invalid(format!(
                    "sequence {s}: a token id or type outside the vocabulary"
                )));
            }
        }
        let seq = longest.next_multiple_of(8).min(self.max_seq);
        let mut rows = vec![[0u32; 4]; self.batch * seq];
        for (s, (ids, types)) in seqs.iter().enumerate() {
            for (p, (&id, &ty)) in ids.iter().zip(types).enumerate() {
                rows[s * seq + p] = [id, p as u32, ty, 1];
            }
        }
        // A padding sequence is one unmasked token, so that its softmax and mean stay finite.
        for s in n..self.batch {
            rows[s * seq] = [0, 0, 0, 1];
        }
        let q = &self.gpu.queue;
        q.write_buffer(&self.tokens, 0, bytemuck::cast_slice(&rows));
        let stride = self.teacher.stride();
        let mut t = vec![0f32; self.batch * stride];
        for (r, row) in teacher.chunks(h).enumerate() {
            t[r * stride..r * stride + h].copy_from_slice(row);
        }
        q.write_buffer(&self.teacher.buffer, 0, bytemuck::cast_slice(&t));
        Ok(seq)
    }

    fn run(&self, passes: &[&[Dispatch]]) -> Result<()> {
        let mut enc = self.gpu.encoder("train step");
        for d in passes {
            record_pass(&mut enc, d, None);
        }
        self.gpu.submit_and_wait(enc)
    }

    fn read_loss(&self, n: usize) -> Result<f64> {
        let v = self.row_loss.to_f32(self.gpu)?;
        Ok(v[..n].iter().map(|&l| l as f64).sum())
    }

    /// One training step on `seqs` with the teacher's vectors of them; returns the batch's
    /// loss before the update.
    pub fn step(&mut self, seqs: &[Sequence], teacher: &[f32]) -> Result<f64> {
        let seq = self.load(seqs, teacher)?;
        let plan = self.plan(seq, seqs.len())?;
        self.step += 1;
        self.set_step()?;
        self.run(&[&plan.forward, &plan.backward])?;
        self.read_loss(seqs.len())
    }

    fn set_step(&mut self) -> Result<()> {
        let step = self.step;
        let params: Vec<&Param> = self
            .layers
            .iter()
            .flat_map(|l| l.p.iter().flat_map(|(a, b)| [a, b]))
            .collect();
        self.opt.set_step(step, &params)
    }

    /// The mean loss over `seqs` (in batches) and the student's sentence vectors of them,
    /// without training.
    pub fn evaluate(&self, seqs: &[Sequence], teacher: &[f32]) -> Result<(f64, Vec<f32>)> {
        let h = self.config.hidden_size;
        if seqs.is_empty() || teacher.len() != seqs.len() * h {
            return Err(Error::shape(format!(
                "{} sequences with {} teacher values",
                seqs.len(),
                teacher.len()
            )));
        }
        let mut sum = 0.0;
        let mut out = Vec::with_capacity(seqs.len() * h);
        for (chunk, t) in seqs.chunks(self.batch).zip(teacher.chunks(self.batch * h)) {
            let seq = self.load(chunk, t)?;
            let plan = self.plan(seq, chunk.len())?;
            self.run(&[&plan.forward])?;
            sum += self.read_loss(chunk.len())? * chunk.len() as f64;
            let v = self.pooled.to_f32(self.gpu)?;
            out.extend_from_slice(&v[..chunk.len() * h]);
        }
        Ok((sum / seqs.len() as f64, out))
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The student's weights now (embeddings as they were given).
    pub fn weights(&self, frozen: &BertWeights) -> Result<BertWeights> {
        let gpu = self.gpu;
        let pair = |(a, b): &(Param, Param)| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((a.w.to_f32(gpu)?, b.w.to_f32(gpu)?))
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(BertLayerWeights {
                    qkv: pair(&l.p[QKV])?,
                    out: pair(&l.p[OUT])?,
                    ln1: pair(&l.p[LN1])?,
                    ffn_in: pair(&l.p[FFN_IN])?,
                    ffn_out: pair(&l.p[FFN_OUT])?,
                    ln2: pair(&l.p[LN2])?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(BertWeights {
            word: frozen.word.clone(),
            pos: frozen.pos.clone(),
            types: frozen.types.clone(),
            emb_ln: frozen.emb_ln.clone(),
            layers,
        })
    }

    /// Every parameter's gradient from the last step, per layer in
    /// [`crate::train::reference::bert::LayerGrads`]'s order, for tests.
    pub fn gradients(&self) -> Result<Vec<LayerGradients>> {
        let gpu = self.gpu;
        self.layers
            .iter()
            .map(|l| {
                let mut out = LayerGradients::default();
                for (o, (a, b)) in out.iter_mut().zip(&l.p) {
                    *o = (a.g.to_f32(gpu)?, b.g.to_f32(gpu)?);
                }
                Ok(out)
            })
            .collect()
    }
}
