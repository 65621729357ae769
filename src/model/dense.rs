//! The one place the model runtime calls a linear layer, dense or sparse.

use crate::activation::Activation;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::{AnyLinear, KernelChoice, LayerWeights, LinearLayer};
use crate::sparse::SparsePath;
use crate::tensor::Tensor;

/// `y = x · Wᵀ + b` with dense weights in any [`crate::formats::WeightFormat`] or sparse
/// weights in any [`crate::sparse::SparseWeights`] format.
pub struct Dense {
    inner: AnyLinear,
    kernel: KernelChoice,
}

impl Dense {
    /// Uploads the weights and bias; `kernel` picks the strategy of every plan of dense
    /// weights (sparse weights have one kernel per format).
    pub fn new(
        gpu: &Gpu,
        weights: &LayerWeights,
        bias: Option<&[f32]>,
        kernel: KernelChoice,
    ) -> Result<Self> {
        Ok(Dense {
            inner: weights.upload(gpu, bias)?,
            kernel,
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.inner.n()
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.inner.k()
    }

    /// Format of the weights: `int4g32`, `csr-f16`, `2:4-int8`, ...
    pub fn format_name(&self) -> String {
        match &self.inner {
            AnyLinear::Dense(l) => l.format.name(),
            AnyLinear::Sparse(l) => l.format.clone(),
        }
    }

    /// Bytes of weights (and sparse metadata) on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.inner.weight_bytes()
    }

    /// Fuses `act` into the kernels' epilogue where the weights are dense (`y = act(x · Wᵀ +
    /// b)`); sparse weights stay as they are, and their caller keeps the separate elementwise
    /// pass (see [`Self::activates`]).
    pub fn fuse_activation(&mut self, act: Activation) {
        if let AnyLinear::Dense(l) = &mut self.inner {
            l.set_activation(Some(act));
        }
    }

    /// Whether the layer applies an activation itself.
    pub fn activates(&self) -> bool {
        matches!(&self.inner, AnyLinear::Dense(l) if l.activation().is_some())
    }

    /// Bytes of scratch a plan of `m` rows writes the weights into: sparse weights take the
    /// dense path for many rows (see `sparse/gpu/densify.rs`); 0 otherwise.
    pub fn scratch_bytes(&self, m: usize) -> u64 {
        match &self.inner {
            AnyLinear::Sparse(l) if self.kernel == KernelChoice::Auto && l.densifies(m) => {
                l.dense_bytes()
            }
            _ => 0,
        }
    }

    /// Dispatches writing `y = x · Wᵀ + b` (then the fused activation, if any).
    pub fn plan(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.plan_in(gpu, x, y, None)
    }

    /// [`Self::plan`] with a scratch buffer of at least [`Self::scratch_bytes`] that layers
    /// run one after another share (a plan of its own allocates one when None).
    pub fn plan_in(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        scratch: Option<&wgpu::Buffer>,
    ) -> Result<Vec<Dispatch>> {
        match &self.inner {
            AnyLinear::Dense(l) => l.plan(gpu, x, y, self.kernel),
            // A forced dense kernel asks for rows independent of the batch: the sparse
            // kernel then never hands many rows to the dense path.
            AnyLinear::Sparse(l) => {
                let path = match self.kernel {
                    KernelChoice::Auto => SparsePath::Auto,
                    KernelChoice::Force(_) => SparsePath::Kernel,
                };
                l.plan_in(gpu, x, y, path, scratch)
            }
        }
    }
}
