//! A distillation run of an encoder student: the teacher's sentence vectors of every
//! sentence the run visits, training steps over shuffled batches, and held-out evaluations
//! (the loss, and the mean and lowest cosine of the student's vectors to the teacher's).

use super::{BertStudent, BertTrainer, Sequence};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::reference::BertWeights;
use crate::train::{AdamW, Loss};

/// What an encoder distillation run does.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSettings {
    /// The loss between student and teacher vectors (cosine or MSE).
    pub loss: Loss,
    /// The optimizer and its schedule; `opt.steps` steps are taken.
    pub opt: AdamW,
    /// Sentences per step.
    pub batch: usize,
    /// Tokens a sentence is truncated to.
    pub max_seq: usize,
    /// Seed of the order in which training sentences are visited.
    pub seed: u64,
    /// Steps between held-out evaluations (0: only before and after).
    pub eval_every: usize,
}

/// One held-out evaluation of an encoder student.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderEvaluation {
    /// Steps taken before it.
    pub step: usize,
    /// The mean loss on the held-out sentences.
    pub loss: f64,
    /// The mean cosine of the student's vectors to the teacher's.
    pub mean_cosine: f64,
    /// The lowest of them.
    pub min_cosine: f64,
}

/// What an encoder distillation run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderReport {
    /// Steps taken.
    pub steps: usize,
    /// Held-out evaluations: before the first step, every `eval_every`, after the last.
    pub evaluations: Vec<EncoderEvaluation>,
    /// The training loss of each step's batch.
    pub train_loss: Vec<f64>,
    /// Real (unpadded) tokens the training steps ran.
    pub tokens: usize,
    /// Wall time of the training steps, seconds.
    pub seconds: f64,
}

/// The sentence vectors (`seqs.len() × hidden`) of the encoder `model` in f32, in batches
/// of `batch` sequences of up to `max_seq` tokens; `progress(done, total)` after each batch.
pub fn sentence_vectors(
    gpu: &Gpu,
    model: &BertStudent,
    seqs: &[Sequence],
    batch: usize,
    max_seq: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    // A forward pass alone: the loss (against zeros, finite for MSE) is not read.
    let net = BertTrainer::new(gpu, model, Loss::Mse, AdamW::default(), batch, max_seq)?;
    let h = model.config.hidden_size;
    let zeros = vec![0f32; batch * h];
    let mut out = Vec::with_capacity(seqs.len() * h);
    for chunk in seqs.chunks(batch) {
        out.extend(net.evaluate(chunk, &zeros[..chunk.len() * h])?.1);
        progress(out.len() / h, seqs.len());
    }
    Ok(out)
}

/// The cosine of each row of `a` to the same row of `b` (`cols` wide).
pub fn row_cosines(a: &[f32], b: &[f32], cols: usize) -> Vec<f64> {
    a.chunks(cols)
        .zip(b.chunks(cols))
        .map(|(x, y)| {
            let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
            for (&p, &q) in x.iter().zip(y) {
                let (p, q) = (p as f64, q as f64);
                xy += p * q;
                xx += p * p;
                yy += q * q;
            }
            xy / (xx.sqrt() * yy.sqrt()).max(1e-30)
        })
        .collect()
}

/// Distils `student` on the training sentences with the teacher's vectors of them
/// (`train.1`, `train.0.len() × hidden`), evaluating on `held_out` likewise; returns the
/// trained weights (embeddings as the student's) and the report. `progress(step, steps,
/// loss)` is called after each step.
pub fn distill_encoder(
    gpu: &Gpu,
    student: &BertStudent,
    train: (&[Sequence], &[f32]),
    held_out: (&[Sequence], &[f32]),
    s: &EncoderSettings,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<(BertWeights, EncoderReport)> {
    let h = student.config.hidden_size;
    for ((seqs, t), what) in [(train, "training"), (held_out, "held-out")] {
        if seqs.is_empty() || t.len() != seqs.len() * h {
            return Err(Error::shape(format!(
                "{what} data: {} sentences with {} teacher values ({h} a sentence)",
                seqs.len(),
                t.len()
            )));
        }
    }
    let mut net = BertTrainer::new(gpu, student, s.loss, s.opt, s.batch, s.max_seq)?;
    let evaluate = |net: &BertTrainer<'_>, step| -> Result<EncoderEvaluation> {
        let (loss, out) = net.evaluate(held_out.0, held_out.1)?;
        let cos = row_cosines(&out, held_out.1, h);
        Ok(EncoderEvaluation {
            step,
            loss,
            mean_cosine: cos.iter().sum::<f64>() / cos.len() as f64,
            min_cosine: cos.iter().copied().fold(f64::INFINITY, f64::min),
        })
    };
    let mut evaluations = vec![evaluate(&net, 0)?];
    let (seqs, teacher) = train;
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(s.seed);
    let mut cursor = order.len();
    let (mut bs, mut bt) = (Vec::new(), Vec::new());
    let mut train_loss = Vec::with_capacity(s.opt.steps);
    let mut tokens = 0;
    let mut evaluating = std::time::Duration::ZERO;
    let start = std::time::Instant::now();
    for step in 1..=s.opt.steps {
        bs.clear();
        bt.clear();
        while bs.len() < s.batch.min(order.len()) {
            if cursor == order.len() {
                rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
                cursor = 0;
            }
            let r = order[cursor];
            cursor += 1;
            bs.push(seqs[r].clone());
            bt.extend_from_slice(&teacher[r * h..(r + 1) * h]);
        }
        tokens += bs.iter().map(|s| s.0.len()).sum::<usize>();
        let loss = net.step(&bs, &bt)?;
        train_loss.push(loss);
        progress(step, s.opt.steps, loss);
        if s.eval_every > 0 && step % s.eval_every == 0 && step < s.opt.steps {
            let t = std::time::Instant::now();
            evaluations.push(evaluate(&net, step)?);
            evaluating += t.elapsed();
        }
    }
    let seconds = (start.elapsed() - evaluating).as_secs_f64();
    evaluations.push(evaluate(&net, s.opt.steps)?);
    let report = EncoderReport {
        steps: s.opt.steps,
        evaluations,
        train_loss,
        tokens,
        seconds,
    };
    Ok((net.weights(&student.weights)?, report))
}
