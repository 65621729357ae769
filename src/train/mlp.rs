//! Distillation of an MLP classifier on the device: a student (for example the teacher with
//! half its hidden neurons cut, `model::shrink::drop_neurons`) trained to match a teacher's
//! logits ([`Loss::Distill`]) with AdamW. One recorded step: forward, loss, backward,
//! gradient norm, one AdamW dispatch per tensor, replayed with each batch's bytes.

use super::ops::{self, AdamWTensors, Op};
use super::{AdamW, Loss};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, ParamBuffer, record_pass};
use crate::model::config::MlpConfig;
use crate::model::ops::elementwise;
use crate::tensor::Tensor;

/// A batch of training or evaluation rows: inputs (`rows × inputs`), the teacher's outputs
/// (`rows × classes`) and, for a hard-label loss, labels (`rows`).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// Inputs, row-major.
    pub x: &'a [f32],
    /// The teacher's outputs, row-major.
    pub teacher: &'a [f32],
    /// Class labels (empty when the loss needs none).
    pub labels: &'a [u32],
}

/// One layer's weight (`out × in`, row-major) and bias.
pub type Layer = (Vec<f32>, Vec<f32>);

/// Whether `loss` reads labels.
fn hard_labels(loss: Loss) -> bool {
    matches!(loss, Loss::Distill { alpha, .. } if alpha < 1.0)
}

/// One parameter tensor with its gradient and AdamW moments.
struct Param {
    w: Tensor,
    g: Tensor,
    m: Tensor,
    v: Tensor,
    /// Offset of its AdamW scalars in the param buffer.
    offset: u32,
    decayed: bool,
    /// 1 where a weight may be non-zero, 0 where it is pruned (kept so by every update).
    mask: Option<Tensor>,
}

impl Param {
    fn new(gpu: &Gpu, data: &[f32], rows: usize, cols: usize, decayed: bool) -> Result<Self> {
        let zeros = || Tensor::from_f32(gpu, &vec![0.0; rows * cols], rows, cols);
        Ok(Param {
            w: Tensor::from_f32(gpu, data, rows, cols)?,
            g: zeros()?,
            m: zeros()?,
            v: zeros()?,
            offset: 0,
            decayed,
            mask: None,
        })
    }

    fn len(&self) -> usize {
        self.w.rows * self.w.stride()
    }
}

/// Per layer: pre-activation and activation (its output) of the batch.
struct Acts {
    z: Tensor,
    a: Tensor,
}

/// An MLP student on the device, ready to train on batches of up to `batch` rows.
pub struct MlpTrainer<'g> {
    gpu: &'g Gpu,
    config: MlpConfig,
    loss: Loss,
    opt: AdamW,
    batch: usize,
    /// Weight and bias per layer.
    params: Vec<(Param, Param)>,
    x: Tensor,
    teacher: Tensor,
    labels: wgpu::Buffer,
    acts: Vec<Acts>,
    /// The loss's gradient, then each layer's (through `dz`) backwards.
    dz: Vec<Tensor>,
    /// The gradient at each hidden layer's output, before the activation's.
    da: Vec<Tensor>,
    row_loss: Tensor,
    norms: wgpu::Buffer,
    adam: ParamBuffer,
    /// Forward and loss: what an evaluation runs.
    eval: Vec<Dispatch>,
    /// Backward, clipping and AdamW, after `eval`.
    update: Vec<Dispatch>,
    step: usize,
}

impl<'g> MlpTrainer<'g> {
    /// Uploads the student `layers` (`(weight out × in, bias)` per layer of `config`) and
    /// plans its step for batches of up to `batch` rows.
    pub fn new(
        gpu: &'g Gpu,
        config: MlpConfig,
        layers: &[Layer],
        loss: Loss,
        opt: AdamW,
        batch: usize,
    ) -> Result<Self> {
        config.validate()?;
        loss.validate()?;
        opt.validate()?;
        let depth = config.sizes.len() - 1;
        if layers.len() != depth || batch == 0 {
            return Err(Error::shape(format!(
                "MLP student: {} layers for a config of {depth}, batch {batch}",
                layers.len()
            )));
        }
        let mut params = Vec::new();
        for (i, (w, b)) in layers.iter().enumerate() {
            let (k, n) = (config.sizes[i], config.sizes[i + 1]);
            if w.len() != n * k || b.len() != n {
                return Err(Error::shape(format!(
                    "MLP student layer {i}: {} weights and {} biases for {n} × {k}",
                    w.len(),
                    b.len()
                )));
            }
            params.push((
                Param::new(gpu, w, n, k, true)?,
                Param::new(gpu, b, 1, n, false)?,
            ));
        }
        let f32_tensor = |rows, cols| -> Result<Tensor> {
            Tensor::from_f32(gpu, &vec![0.0; rows * cols], rows, cols)
        };
        let classes = config.sizes[depth];
        let x = f32_tensor(batch, config.sizes[0])?;
        let teacher = f32_tensor(batch, classes)?;
        let labels = gpu.upload("labels", &vec![0u32; batch])?;
        let mut acts = Vec::new();
        let mut dz = Vec::new();
        let mut da = Vec::new();
        for &n in &config.sizes[1..] {
            acts.push(Acts {
                z: f32_tensor(batch, n)?,
                a: f32_tensor(batch, n)?,
            });
            dz.push(f32_tensor(batch, n)?);
            da.push(f32_tensor(batch, n)?);
        }
        let row_loss = f32_tensor(batch, 1)?;
        let norms = gpu.upload("gradient norms", &vec![0f32; 2 * depth])?;
        let align = gpu
            .device
            .limits()
            .min_uniform_buffer_offset_alignment
            .max(64) as u64;
        let mut adam = ParamBuffer::new(gpu, align * 2 * depth as u64)?;
        for (w, b) in &mut params {
            for p in [w, b] {
                p.offset = adam.push(&opt.params(1, p.len(), 2 * depth, p.decayed))?;
            }
        }
        let mut t = MlpTrainer {
            gpu,
            config,
            loss,
            opt,
            batch,
            params,
            x,
            teacher,
            labels,
            acts,
            dz,
            da,
            row_loss,
            norms,
            adam,
            eval: Vec::new(),
            update: Vec::new(),
            step: 0,
        };
        t.eval = t.plan_forward(batch, loss)?;
        t.update = t.plan_update()?;
        Ok(t)
    }

    /// Keeps the weight matrices sparse: `masks` (one per layer, `out × in`, 1 where a weight
    /// is kept and 0 where pruned) zero the pruned weights now and after every update, so the
    /// trained student keeps the sparsity pattern it started with.
    pub fn with_masks(mut self, masks: &[Vec<f32>]) -> Result<Self> {
        if masks.len() != self.params.len() {
            return Err(Error::shape(format!(
                "{} masks for {} layers",
                masks.len(),
                self.params.len()
            )));
        }
        for ((w, _), mask) in self.params.iter_mut().zip(masks) {
            let (n, k) = (w.w.rows, w.w.cols);
            if mask.len() != n * k || mask.iter().any(|&m| m != 0.0 && m != 1.0) {
                return Err(Error::shape(format!(
                    "a mask of {} values for {n} × {k} weights must hold only 0 and 1",
                    mask.len()
                )));
            }
            let kept: Vec<f32> =
                w.w.to_f32(self.gpu)?
                    .iter()
                    .zip(mask)
                    .map(|(a, m)| a * m)
                    .collect();
            w.w = Tensor::from_f32(self.gpu, &kept, n, k)?;
            w.mask = Some(Tensor::from_f32(self.gpu, mask, n, k)?);
        }
        self.eval = self.plan_forward(self.batch, self.loss)?;
        self.update = self.plan_update()?;
        Ok(self)
    }

    fn activation(&self) -> Activation {
        self.config.activation
    }

    /// Forward pass and `loss` of `rows` rows.
    fn plan_forward(&self, rows: usize, loss: Loss) -> Result<Vec<Dispatch>> {
        let gpu = self.gpu;
        let mut out = Vec::new();
        let last = self.params.len() - 1;
        for (i, (w, b)) in self.params.iter().enumerate() {
            let input = if i == 0 { &self.x } else { &self.acts[i - 1].a };
            let act = &self.acts[i];
            let z = if i == last { &act.a } else { &act.z };
            out.push(ops::matmul(
                gpu,
                input,
                Op::N,
                &w.w,
                Op::T,
                Some(&b.w),
                z,
                false,
            )?);
            if i < last {
                out.push(elementwise(
                    gpu,
                    Some(self.activation()),
                    &act.z,
                    None,
                    &act.a,
                )?);
            }
        }
        let labels = hard_labels(loss).then_some(&self.labels);
        out.push(ops::loss(
            gpu,
            loss,
            &self.acts[last].a,
            &self.teacher,
            labels,
            rows,
            &self.dz[last],
            &self.row_loss,
        )?);
        Ok(out)
    }

    /// Backward pass, gradient norm and AdamW (after [`Self::plan_eval`]'s loss gradient).
    fn plan_update(&self) -> Result<Vec<Dispatch>> {
        let gpu = self.gpu;
        let mut out = Vec::new();
        for i in (0..self.params.len()).rev() {
            let (w, b) = &self.params[i];
            let input = if i == 0 { &self.x } else { &self.acts[i - 1].a };
            let dz = &self.dz[i];
            out.push(ops::matmul(
                gpu,
                dz,
                Op::T,
                input,
                Op::N,
                None,
                &w.g,
                false,
            )?);
            out.push(ops::col_sum(gpu, dz, &b.g, false)?);
            if i > 0 {
                let da = &self.da[i - 1];
                out.push(ops::matmul(gpu, dz, Op::N, &w.w, Op::N, None, da, false)?);
                let z = &self.acts[i - 1].z;
                out.push(ops::act_grad(
                    gpu,
                    self.activation(),
                    z,
                    da,
                    &self.dz[i - 1],
                )?);
            }
        }
        for (slot, p) in self.tensors().enumerate() {
            out.push(ops::sum_squares(gpu, &p.g, &self.norms, slot)?);
        }
        for p in self.tensors() {
            let t = AdamWTensors {
                w: &p.w,
                g: &p.g,
                m: &p.m,
                v: &p.v,
                mask: p.mask.as_ref(),
            };
            out.push(ops::adamw(gpu, &t, &self.norms, &self.adam, p.offset)?);
        }
        Ok(out)
    }

    fn tensors(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().flat_map(|(w, b)| [w, b])
    }

    /// Writes `rows` into the batch tensors (rows beyond them zero) and returns their count.
    fn load(&self, rows: &Rows<'_>) -> Result<usize> {
        self.load_with(rows, self.loss)
    }

    /// [`Self::load`] for `loss` (which says whether labels are needed).
    fn load_with(&self, rows: &Rows<'_>, loss: Loss) -> Result<usize> {
        let (inputs, classes) = (
            self.config.sizes[0],
            *self.config.sizes.last().expect("validated"),
        );
        let n = rows.x.len() / inputs.max(1);
        let hard = hard_labels(loss);
        if n == 0
            || n > self.batch
            || rows.x.len() != n * inputs
            || rows.teacher.len() != n * classes
            || (hard && rows.labels.len() != n)
        {
            return Err(Error::shape(format!(
                "a batch of {} inputs, {} teacher outputs and {} labels for rows of {inputs} \
                 inputs and {classes} classes, at most {} rows",
                rows.x.len(),
                rows.teacher.len(),
                rows.labels.len(),
                self.batch
            )));
        }
        if hard && let Some(&l) = rows.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::shape(format!("label {l} of {classes} classes")));
        }
        let pad = |data: &[f32], cols: usize| {
            let s = crate::tensor::stride_of(cols);
            let mut v = vec![0f32; self.batch * s];
            for (r, row) in data.chunks(cols).enumerate() {
                v[r * s..r * s + cols].copy_from_slice(row);
            }
            v
        };
        let q = &self.gpu.queue;
        q.write_buffer(
            &self.x.buffer,
            0,
            bytemuck::cast_slice(&pad(rows.x, inputs)),
        );
        q.write_buffer(
            &self.teacher.buffer,
            0,
            bytemuck::cast_slice(&pad(rows.teacher, classes)),
        );
        let mut labels = vec![0u32; self.batch];
        labels[..rows.labels.len()].copy_from_slice(rows.labels);
        q.write_buffer(&self.labels, 0, bytemuck::cast_slice(&labels));
        Ok(n)
    }

    fn run(&self, dispatches: &[&[Dispatch]]) -> Result<()> {
        let mut enc = self.gpu.encoder("train step");
        for d in dispatches {
            record_pass(&mut enc, d, None);
        }
        self.gpu.submit_and_wait(enc)
    }

    /// The batch-mean loss of the last run, read back.
    fn read_loss(&self, rows: usize) -> Result<f64> {
        let v = self.row_loss.to_f32(self.gpu)?;
        Ok(v[..rows].iter().map(|&l| l as f64).sum())
    }

    /// One training step on `rows` (a full or a last, short batch); returns the loss before
    /// the update.
    pub fn step(&mut self, rows: &Rows<'_>) -> Result<f64> {
        let n = self.load(rows)?;
        self.step += 1;
        for p in self.tensors() {
            let params = self
                .opt
                .params(self.step, p.len(), 2 * self.params.len(), p.decayed);
            self.adam.write(p.offset, &params)?;
        }
        if n == self.batch {
            self.run(&[&self.eval, &self.update])?;
        } else {
            // A short batch averages over its own rows.
            let eval = self.plan_forward(n, self.loss)?;
            self.run(&[&eval, &self.update])?;
        }
        self.read_loss(n)
    }

    /// The mean loss over `data` (in batches), without training.
    pub fn evaluate(&self, data: &Rows<'_>) -> Result<f64> {
        Ok(self.evaluate_with_outputs(data)?.0)
    }

    /// [`Self::evaluate`], and the network's outputs (logits) of every row, from the same
    /// forward passes.
    pub fn evaluate_with_outputs(&self, data: &Rows<'_>) -> Result<(f64, Vec<f32>)> {
        self.batches(data, self.loss)
    }

    /// Runs the forward pass and `loss` over `data` in batches: the mean loss and the outputs.
    /// The full-batch pass is planned once (the step's own where `loss` is the step's), a
    /// last, short batch its own.
    fn batches(&self, data: &Rows<'_>, loss: Loss) -> Result<(f64, Vec<f32>)> {
        let inputs = self.config.sizes[0];
        let classes = *self.config.sizes.last().expect("validated");
        let total = data.x.len() / inputs;
        if total * inputs != data.x.len() || total == 0 {
            return Err(Error::shape(format!(
                "{} inputs for rows of {inputs}",
                data.x.len()
            )));
        }
        let hard = !data.labels.is_empty();
        let planned;
        let full = if loss == self.loss {
            &self.eval
        } else {
            planned = self.plan_forward(self.batch, loss)?;
            &planned
        };
        let mut sum = 0.0;
        let mut out = Vec::with_capacity(total * classes);
        for start in (0..total).step_by(self.batch) {
            let end = (start + self.batch).min(total);
            let rows = Rows {
                x: &data.x[start * inputs..end * inputs],
                teacher: &data.teacher[start * classes..end * classes],
                labels: if hard { &data.labels[start..end] } else { &[] },
            };
            let n = self.load_with(&rows, loss)?;
            if n == self.batch {
                self.run(&[full])?;
            } else {
                self.run(&[&self.plan_forward(n, loss)?])?;
            }
            sum += self.read_loss(n)? * n as f64;
            let last = &self.acts[self.acts.len() - 1].a;
            out.extend_from_slice(&last.to_f32(self.gpu)?[..n * classes]);
        }
        Ok((sum / total as f64, out))
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The student's weights now: `(weight, bias)` per layer.
    pub fn weights(&self) -> Result<Vec<Layer>> {
        self.params
            .iter()
            .map(|(w, b)| Ok((w.w.to_f32(self.gpu)?, b.w.to_f32(self.gpu)?)))
            .collect()
    }

    /// Every parameter's gradient from the last step (`(dW, db)` per layer), for tests.
    pub fn gradients(&self) -> Result<Vec<Layer>> {
        self.params
            .iter()
            .map(|(w, b)| Ok((w.g.to_f32(self.gpu)?, b.g.to_f32(self.gpu)?)))
            .collect()
    }
}

impl MlpTrainer<'_> {
    /// The network's outputs (logits) for `x` (`rows × inputs`), in batches.
    pub fn outputs(&self, x: &[f32]) -> Result<Vec<f32>> {
        let inputs = self.config.sizes[0].max(1);
        let classes = *self.config.sizes.last().expect("validated");
        // No targets: a soft-only loss against zeros, whose value is not read.
        let zeros = vec![0f32; x.len() / inputs * classes];
        let soft = Loss::Distill {
            temperature: 1.0,
            alpha: 1.0,
        };
        let rows = Rows {
            x,
            teacher: &zeros,
            labels: &[],
        };
        Ok(self.batches(&rows, soft)?.1)
    }
}

/// What a distillation run does: the loss, the optimizer (whose `steps` is the run's
/// length), rows per step, the shuffling seed and how often the held-out set is evaluated.
#[derive(Clone, Copy, Debug)]
pub struct DistillSettings {
    /// The loss.
    pub loss: Loss,
    /// The optimizer and its schedule; `opt.steps` steps are taken.
    pub opt: AdamW,
    /// Rows per step.
    pub batch: usize,
    /// Seed of the order in which training rows are visited.
    pub seed: u64,
    /// Steps between held-out evaluations (0: only before and after).
    pub eval_every: usize,
}

/// Inputs and labels of a classifier's data set.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// Features, `rows × inputs` row-major.
    pub x: Vec<f32>,
    /// Class of each row.
    pub labels: Vec<u32>,
}

impl Dataset {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// One held-out evaluation during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Steps taken before it.
    pub step: usize,
    /// The mean distillation loss on the held-out rows.
    pub loss: f64,
    /// The student's accuracy on them.
    pub accuracy: f64,
    /// How often the student's class is the teacher's.
    pub agreement: f64,
}

/// What a distillation run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DistillReport {
    /// Steps taken.
    pub steps: usize,
    /// The teacher's held-out accuracy.
    pub teacher_accuracy: f64,
    /// Held-out evaluations: before the first step, every `eval_every`, after the last.
    pub evaluations: Vec<Evaluation>,
    /// The training loss of each step's batch.
    pub train_loss: Vec<f64>,
    /// Wall time of the training steps, seconds.
    pub seconds: f64,
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

/// The fraction of rows whose `logits` argmax is `labels`.
fn accuracy(logits: &[f32], classes: usize, labels: impl Iterator<Item = usize>) -> f64 {
    let mut n = 0;
    let mut hit = 0;
    for (row, l) in logits.chunks(classes).zip(labels) {
        n += 1;
        hit += (argmax(row) == l) as usize;
    }
    hit as f64 / n.max(1) as f64
}

/// An untrained student: its configuration, `(weight, bias)` layers and, for a sparse
/// student, the masks its weights keep (see [`MlpTrainer::with_masks`]).
#[derive(Clone, Debug)]
pub struct Student {
    /// The student's shape.
    pub config: MlpConfig,
    /// Its initial layers.
    pub layers: Vec<Layer>,
    /// One mask per layer's weight matrix, for a student whose sparsity is kept.
    pub masks: Option<Vec<Vec<f32>>>,
}

/// Distils `student` (for example the teacher with neurons cut, or pruned with its masks)
/// from `teacher` on `train`, evaluating on `held_out`, and returns the
/// trained layers and the report. `progress(step, steps, loss)` is called after each step.
pub fn distill(
    gpu: &Gpu,
    teacher: (&MlpConfig, &[Layer]),
    student: &Student,
    train: &Dataset,
    held_out: &Dataset,
    s: &DistillSettings,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<(Vec<Layer>, DistillReport)> {
    let (tc, sc) = (teacher.0, &student.config);
    let classes = *tc.sizes.last().expect("a config has layers");
    if tc.sizes[0] != sc.sizes[0] || sc.sizes.last() != Some(&classes) {
        return Err(Error::shape(format!(
            "teacher {:?} and student {:?} differ in inputs or classes",
            tc.sizes, sc.sizes
        )));
    }
    for (d, what) in [(train, "training"), (held_out, "held-out")] {
        if d.rows() == 0 || d.x.len() != d.rows() * tc.sizes[0] {
            return Err(Error::shape(format!(
                "{what} data: {} features for {} rows of {}",
                d.x.len(),
                d.rows(),
                tc.sizes[0]
            )));
        }
    }
    let soft = Loss::Distill {
        temperature: 1.0,
        alpha: 1.0,
    };
    let frozen = AdamW::default();
    let teacher_net = MlpTrainer::new(gpu, tc.clone(), teacher.1, soft, frozen, s.batch)?;
    let train_t = teacher_net.outputs(&train.x)?;
    let held_t = teacher_net.outputs(&held_out.x)?;
    drop(teacher_net);
    let labels = |d: &Dataset| d.labels.iter().map(|&l| l as usize).collect::<Vec<_>>();
    let teacher_accuracy = accuracy(&held_t, classes, labels(held_out).into_iter());
    let mut net = MlpTrainer::new(gpu, sc.clone(), &student.layers, s.loss, s.opt, s.batch)?;
    if let Some(masks) = &student.masks {
        net = net.with_masks(masks)?;
    }
    let held = Rows {
        x: &held_out.x,
        teacher: &held_t,
        labels: &held_out.labels,
    };
    let evaluate = |net: &MlpTrainer<'_>, step| -> Result<Evaluation> {
        let (loss, out) = net.evaluate_with_outputs(&held)?;
        let teacher_classes = held_t.chunks(classes).map(argmax);
        Ok(Evaluation {
            step,
            loss,
            accuracy: accuracy(&out, classes, labels(held_out).into_iter()),
            agreement: accuracy(&out, classes, teacher_classes),
        })
    };
    let mut evaluations = vec![evaluate(&net, 0)?];
    let inputs = tc.sizes[0];
    let mut order: Vec<usize> = (0..train.rows()).collect();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(s.seed);
    let mut cursor = order.len();
    let (mut bx, mut bt, mut bl) = (Vec::new(), Vec::new(), Vec::new());
    let mut train_loss = Vec::with_capacity(s.opt.steps);
    let start = std::time::Instant::now();
    for step in 1..=s.opt.steps {
        bx.clear();
        bt.clear();
        bl.clear();
        while bl.len() < s.batch.min(order.len()) {
            if cursor == order.len() {
                rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
                cursor = 0;
            }
            let r = order[cursor];
            cursor += 1;
            bx.extend_from_slice(&train.x[r * inputs..(r + 1) * inputs]);
            bt.extend_from_slice(&train_t[r * classes..(r + 1) * classes]);
            bl.push(train.labels[r]);
        }
        let loss = net.step(&Rows {
            x: &bx,
            teacher: &bt,
            labels: &bl,
        })?;
        train_loss.push(loss);
        progress(step, s.opt.steps, loss);
        if s.eval_every > 0 && step % s.eval_every == 0 && step < s.opt.steps {
            evaluations.push(evaluate(&net, step)?);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    evaluations.push(evaluate(&net, s.opt.steps)?);
    let report = DistillReport {
        steps: s.opt.steps,
        teacher_accuracy,
        evaluations,
        train_loss,
        seconds,
    };
    Ok((net.weights()?, report))
}
