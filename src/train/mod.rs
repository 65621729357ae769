//! Training on the device: the kernels of a training step (`ops`: matrix products for the
//! forward pass and both gradients of a linear layer, activation and bias gradients, the
//! distillation losses, gradient clipping and AdamW), the optimizer's schedule (`AdamW`),
//! their f64 host references (`reference`, the test oracles), and students distilled from a
//! teacher (`mlp`: a classifier student of the MLP family), and the host-side reader of the
//! distillation data sets (`data`: sentences and labelled snippets, split into training and
//! held-out text).
//!
//! A training step is planned once as a list of dispatches over persistent tensors and
//! replayed with each batch's bytes and each step's optimizer scalars, one submit a step.

pub mod bert;
pub mod data;
pub mod mlp;
pub mod ops;
mod param;
pub mod reference;
pub mod student;

use crate::error::{Error, Result};
pub use ops::{AdamWParams, Loss, Op};

/// How the learning rate changes over a run: a linear warm-up from 0, then a decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decay {
    /// Constant after the warm-up.
    Constant,
    /// Linear to 0 at the last step (the Hugging Face default).
    Linear,
    /// Half a cosine to 0 at the last step.
    Cosine,
}

/// AdamW (decoupled weight decay, as `torch.optim.AdamW`) with gradient clipping by the global
/// norm and a learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    /// Peak learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// Decoupled weight decay of weight matrices (biases take none).
    pub weight_decay: f32,
    /// Largest global gradient norm; larger gradients are scaled down to it (0: no clipping).
    pub max_norm: f32,
    /// Steps of linear warm-up.
    pub warmup: usize,
    /// Steps of the whole run (the schedule's end).
    pub steps: usize,
    /// The decay after the warm-up.
    pub decay: Decay,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_norm: 1.0,
            warmup: 0,
            steps: 1000,
            decay: Decay::Linear,
        }
    }
}

impl AdamW {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let ok = self.lr > 0.0
            && self.lr.is_finite()
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps > 0.0
            && self.weight_decay >= 0.0
            && self.weight_decay.is_finite()
            && self.max_norm >= 0.0
            && self.max_norm.is_finite()
            && self.steps > 0;
        if !ok {
            return Err(Error::config(format!(
                "AdamW settings out of range: {self:?}"
            )));
        }
        Ok(())
    }

    /// The learning rate of step `step` (1-based, as the bias corrections count).
    pub fn lr_at(&self, step: usize) -> f32 {
        let lr = self.lr as f64;
        let s = step as f64;
        if step <= self.warmup {
            return (lr * s / self.warmup.max(1) as f64) as f32;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let done = ((s - self.warmup as f64) / span).clamp(0.0, 1.0);
        let f = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - done,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
        };
        (lr * f) as f32
    }

    /// The kernel's scalars for step `step` (1-based) of a tensor of `len` elements (padding
    /// included), with `count` gradient-norm shares to sum and `decayed` saying whether the
    /// tensor takes weight decay.
    pub fn params(&self, step: usize, len: usize, count: usize, decayed: bool) -> AdamWParams {
        let t = step.max(1) as i32;
        AdamWParams {
            len: len as u32,
            count: count as u32,
            _p0: 0,
            _p1: 0,
            lr: self.lr_at(step),
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: if decayed { self.weight_decay } else { 0.0 },
            bias1: (1.0 - (self.beta1 as f64).powi(t)) as f32,
            bias2: (1.0 - (self.beta2 as f64).powi(t)) as f32,
            max_norm: self.max_norm,
        }
    }
}
