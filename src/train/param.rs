//! Trained parameters on the device and the optimizer step over them: each tensor with its
//! gradient and AdamW moments, one param-buffer slot of AdamW scalars a tensor (rewritten
//! each step), and the recorded tail of a step (squared gradient norms, then one AdamW
//! dispatch a tensor).

use super::AdamW;
use super::ops::{self, AdamWTensors};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, ParamBuffer};
use crate::tensor::Tensor;

/// One parameter tensor with its gradient and AdamW moments.
pub(crate) struct Param {
    /// The f32 master values.
    pub w: Tensor,
    /// The gradient of the last step.
    pub g: Tensor,
    m: Tensor,
    v: Tensor,
    /// Offset of its AdamW scalars in the optimizer's param buffer.
    offset: u32,
    /// Whether weight decay applies (matrices; not biases or norm scales).
    decayed: bool,
    /// 1 where a weight may be non-zero, 0 where it is pruned (kept so by every update).
    mask: Option<Tensor>,
}

impl Param {
    /// Uploads `data` (`rows × cols`) with zero gradient and moments.
    pub fn new(gpu: &Gpu, data: &[f32], rows: usize, cols: usize, decayed: bool) -> Result<Self> {
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

    /// Keeps the values where `mask` (0 or 1 a value) is 0 at zero, now and after every step.
    pub fn with_mask(mut self, gpu: &Gpu, mask: &[f32]) -> Result<Self> {
        let (n, k) = (self.w.rows, self.w.cols);
        if mask.len() != n * k || mask.iter().any(|&m| m != 0.0 && m != 1.0) {
            return Err(Error::shape(format!(
                "a mask of {} values for {n} × {k} weights must hold only 0 and 1",
                mask.len()
            )));
        }
        let kept: Vec<f32> = self
            .w
            .to_f32(gpu)?
            .iter()
            .zip(mask)
            .map(|(a, m)| a * m)
            .collect();
        self.w = Tensor::from_f32(gpu, &kept, n, k)?;
        self.mask = Some(Tensor::from_f32(gpu, mask, n, k)?);
        Ok(self)
    }

    /// Elements of its buffer (rows × stride).
    pub fn len(&self) -> usize {
        self.w.rows * self.w.stride()
    }
}

/// AdamW over a fixed set of parameters: the gradient-norm slots and the per-step scalars.
pub(crate) struct Optimizer {
    opt: AdamW,
    norms: wgpu::Buffer,
    scalars: ParamBuffer,
    count: usize,
}

impl Optimizer {
    /// Reserves a scalar slot for each of `params` (in the order later calls get them).
    pub fn new(gpu: &Gpu, opt: AdamW, params: &mut [&mut Param]) -> Result<Self> {
        opt.validate()?;
        let count = params.len();
        let align = gpu
            .device
            .limits()
            .min_uniform_buffer_offset_alignment
            .max(64) as u64;
        let mut scalars = ParamBuffer::new(gpu, align * count.max(1) as u64)?;
        for p in params.iter_mut() {
            p.offset = scalars.push(&opt.params(1, p.len(), count, p.decayed))?;
        }
        Ok(Optimizer {
            opt,
            norms: gpu.upload("gradient norms", &vec![0f32; count.max(1)])?,
            scalars,
            count,
        })
    }

    /// The step's tail after the gradients of `params` are written: their squared norms,
    /// then AdamW on each (clipped by the global norm).
    pub fn plan(&self, gpu: &Gpu, params: &[&Param]) -> Result<Vec<Dispatch>> {
        self.check(params)?;
        let mut out = Vec::with_capacity(2 * params.len());
        for (slot, p) in params.iter().enumerate() {
            out.push(ops::sum_squares(gpu, &p.g, &self.norms, slot)?);
        }
        for p in params {
            let t = AdamWTensors {
                w: &p.w,
                g: &p.g,
                m: &p.m,
                v: &p.v,
                mask: p.mask.as_ref(),
            };
            out.push(ops::adamw(gpu, &t, &self.norms, &self.scalars, p.offset)?);
        }
        Ok(out)
    }

    /// Writes the scalars of step `step` (from 1) for `params`.
    pub fn set_step(&mut self, step: usize, params: &[&Param]) -> Result<()> {
        self.check(params)?;
        for p in params {
            let s = self.opt.params(step, p.len(), self.count, p.decayed);
            self.scalars.write(p.offset, &s)?;
        }
        Ok(())
    }

    fn check(&self, params: &[&Param]) -> Result<()> {
        if params.len() != self.count {
            return Err(Error::invariant(format!(
                "an optimizer of {} tensors given {}",
                self.count,
                params.len()
            )));
        }
        Ok(())
    }
}
