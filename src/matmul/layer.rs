//! One interface over every kind of linear layer, so a model can switch a layer between
//! dense and sparse weights without its caller changing.

use crate::error::Result;
use crate::formats::PackedWeights;
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::{KernelChoice, Linear};
use crate::sparse::{SparseLinear, SparsePath, SparseWeights};
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

/// A linear layer's weights on the host, dense (packed) or sparse: what a model file holds
/// for one layer.
#[derive(Clone, Debug)]
pub enum LayerWeights {
    /// Dense weights in any [`crate::formats::WeightFormat`].
    Dense(PackedWeights),
    /// Sparse weights in any GPU-supported sparse format.
    Sparse(SparseWeights),
}

impl LayerWeights {
    /// Output features.
    pub fn n(&self) -> usize {
        match self {
            LayerWeights::Dense(w) => w.n,
            LayerWeights::Sparse(w) => w.n(),
        }
    }

    /// Input features.
    pub fn k(&self) -> usize {
        match self {
            LayerWeights::Dense(w) => w.k,
            LayerWeights::Sparse(w) => w.k(),
        }
    }

    /// Format name: `int4g32`, `csr-f16`, `2:4-int8`, ...
    pub fn format_name(&self) -> String {
        match self {
            LayerWeights::Dense(w) => w.format.name(),
            LayerWeights::Sparse(w) => w.name(),
        }
    }

    /// The dense `n × k` matrix the kernels multiply by.
    pub fn dequantize(&self) -> Vec<f32> {
        match self {
            LayerWeights::Dense(w) => w.dequantize(),
            LayerWeights::Sparse(w) => w.to_dense(),
        }
    }

    /// Uploads the weights (and an optional bias of `n` values) as a layer of the matching kind.
    pub fn upload(&self, gpu: &Gpu, bias: Option<&[f32]>) -> Result<AnyLinear> {
        Ok(match self {
            LayerWeights::Dense(w) => Linear::new(gpu, w, bias)?.into(),
            LayerWeights::Sparse(w) => SparseLinear::new(gpu, w, bias)?.into(),
        })
    }
}

impl From<PackedWeights> for LayerWeights {
    fn from(w: PackedWeights) -> Self {
        LayerWeights::Dense(w)
    }
}

impl From<SparseWeights> for LayerWeights {
    fn from(w: SparseWeights) -> Self {
        LayerWeights::Sparse(w)
    }
}
