//! One interface over every kind of linear layer, so a model can switch a layer between
//! dense and sparse weights without its caller changing.

use crate::error::Result;
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::{KernelChoice, Linear};
use crate::sparse::{SparseLinear, SparsePath};
use crate::tensor::Tensor;

/// A linear layer `y = x · Wᵀ (+ bias)` whatever its weight format.
pub trait LinearLayer {
    /// Output features.
    fn n(&self) -> usize;
    /// Input features.
    fn k(&self) -> usize;
    /// Bytes of weights (and their metadata) one forward pass reads.
    fn weight_bytes(&self) -> u64;
    /// Computes `x · Wᵀ (+ bias)` into a new tensor, waiting for the result.
    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor>;
    /// The dispatches that write `y` from `x` with the layer's automatic kernel choice,
    /// to be recorded into a caller's encoder (see [`crate::gpu::record_pass`]).
    fn plan(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>>;
}

impl LinearLayer for Linear {
    fn n(&self) -> usize {
        self.n
    }
    fn k(&self) -> usize {
        self.k
    }
    fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }
    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        Linear::forward(self, gpu, x)
    }
    fn plan(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        Linear::plan(self, gpu, x, y, KernelChoice::Auto)
    }
}

impl LinearLayer for SparseLinear {
    fn n(&self) -> usize {
        self.n
    }
    fn k(&self) -> usize {
        self.k
    }
    fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }
    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        SparseLinear::forward(self, gpu, x)
    }
    fn plan(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        SparseLinear::plan(self, gpu, x, y, SparsePath::Auto)
    }
}

/// A layer of either kind, for code that stores layers by value.
pub enum AnyLinear {
    /// Dense (quantized) weights.
    Dense(Linear),
    /// Sparse weights.
    Sparse(SparseLinear),
}

impl AnyLinear {
    fn inner(&self) -> &dyn LinearLayer {
        match self {
            AnyLinear::Dense(l) => l,
            AnyLinear::Sparse(l) => l,
        }
    }
}

impl LinearLayer for AnyLinear {
    fn n(&self) -> usize {
        self.inner().n()
    }
    fn k(&self) -> usize {
        self.inner().k()
    }
    fn weight_bytes(&self) -> u64 {
        self.inner().weight_bytes()
    }
    fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        self.inner().forward(gpu, x)
    }
    fn plan(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.inner().plan(gpu, x, y)
    }
}

impl From<Linear> for AnyLinear {
    fn from(l: Linear) -> Self {
        AnyLinear::Dense(l)
    }
}

impl From<SparseLinear> for AnyLinear {
    fn from(l: SparseLinear) -> Self {
        AnyLinear::Sparse(l)
    }
}
