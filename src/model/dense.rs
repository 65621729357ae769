//! The one place the model runtime calls a linear layer: swapping [`crate::matmul::Linear`]
//! for another layer type (sparse, say) changes this file only.

use crate::error::Result;
use crate::formats::PackedWeights;
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::{KernelChoice, Linear};
use crate::tensor::Tensor;

/// `y = x · Wᵀ + b` with weights in any [`crate::formats::WeightFormat`].
pub struct Dense {
    inner: Linear,
    kernel: KernelChoice,
}

impl Dense {
    /// Uploads the weights and bias.
    /// Uploads the weights and bias; `kernel` picks the strategy of every plan.
    pub fn new(
        gpu: &Gpu,
        weights: &PackedWeights,
        bias: Option<&[f32]>,
        kernel: KernelChoice,
    ) -> Result<Self> {
        Ok(Dense {
            inner: Linear::new(gpu, weights, bias)?,
            kernel,
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.inner.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.inner.k
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.inner.weight_bytes
    }

    /// Dispatches writing `y = x · Wᵀ + b`.
    pub fn plan(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.inner.plan(gpu, x, y, self.kernel)
    }
}
