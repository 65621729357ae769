//! The one linear layer that models use, `y = act(x · Wᵀ + b)`, whatever the weights: dense
//! in any [`crate::formats::WeightFormat`] (the kernels of [`crate::matmul`]) or sparse in any
//! [`crate::sparse::SparseWeights`] format (the kernels of [`crate::sparse::gpu`]). It sits
//! above both kernel families, so that neither has to know the other's layer type.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::{ActivationPrecision, KernelChoice, Linear, PrecisionsUsed, Strategy};
use crate::sparse::{SparseLinear, SparsePath};
use crate::tensor::Tensor;
use crate::weights::LayerWeights;

/// How a [`LinearLayer`] picks its kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearOptions {
    /// Each row's result is independent of the other rows of the batch, to the last bit.
    ///
    /// The automatic choice picks a kernel per batch size (GEMV, tiled or tensor-core GEMM;
    /// for sparse weights the sparse kernel or, for many rows, the dense path), and these
    /// round differently, so one row's result can change in its last bits with the batch
    /// around it. The data-parallel scheduler needs results bit-identical to a single-device
    /// run whatever the micro-batch split, so it asks for this: dense weights then always run
    /// the tiled GEMM and sparse weights their sparse kernel.
    pub batch_invariant: bool,
}

enum Weights {
    Dense(Linear),
    Sparse(SparseLinear),
}

/// A linear layer on the device, dense or sparse.
pub struct LinearLayer {
    weights: Weights,
    options: LinearOptions,
    /// The activation precisions of the kernels its plans chose (see [`Self::activations`]).
    activations: PrecisionsUsed,
}

impl LinearLayer {
    /// Uploads `weights` and an optional bias of `n` values.
    pub fn new(
        gpu: &Gpu,
        weights: &LayerWeights,
        bias: Option<&[f32]>,
        options: LinearOptions,
    ) -> Result<Self> {
        let weights = match weights {
            LayerWeights::Dense(w) => Weights::Dense(Linear::new(gpu, w, bias)?),
            LayerWeights::Sparse(w) => Weights::Sparse(SparseLinear::new(gpu, w, bias)?),
        };
        Ok(LinearLayer {
            weights,
            options,
            activations: PrecisionsUsed::default(),
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        match &self.weights {
            Weights::Dense(l) => l.n,
            Weights::Sparse(l) => l.n,
        }
    }

    /// Input features.
    pub fn k(&self) -> usize {
        match &self.weights {
            Weights::Dense(l) => l.k,
            Weights::Sparse(l) => l.k,
        }
    }

    /// Format of the weights: `int4g32`, `csr-f16`, `2:4-int8`, ...
    pub fn format_name(&self) -> String {
        match &self.weights {
            Weights::Dense(l) => l.format.name(),
            Weights::Sparse(l) => l.format.clone(),
        }
    }

    /// Bytes of weights (and sparse metadata) one forward pass reads.
    pub fn weight_bytes(&self) -> u64 {
        match &self.weights {
            Weights::Dense(l) => l.weight_bytes,
            Weights::Sparse(l) => l.weight_bytes,
        }
    }

    /// The options the layer was made with.
    pub fn options(&self) -> LinearOptions {
        self.options
    }

    /// Fuses `act` into the kernels' epilogue where the weights are dense (`y = act(x · Wᵀ +
    /// b)`); sparse weights stay as they are, and their caller keeps the separate elementwise
    /// pass (see [`Self::activates`]).
    pub fn fuse_activation(&mut self, act: Activation) {
        if let Weights::Dense(l) = &mut self.weights {
            l.set_activation(Some(act));
        }
    }

    /// Whether the layer applies an activation itself.
    pub fn activates(&self) -> bool {
        matches!(&self.weights, Weights::Dense(l) if l.activation().is_some())
    }

    /// Bytes of scratch a plan of `m` rows writes the weights into: sparse weights take the
    /// dense path for many rows (see `sparse/gpu/densify.rs`); 0 otherwise.
    pub fn scratch_bytes(&self, m: usize) -> u64 {
        match &self.weights {
            Weights::Sparse(l) if !self.options.batch_invariant && l.densifies(m) => {
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
        let invariant = self.options.batch_invariant;
        match &self.weights {
            Weights::Dense(l) => {
                // The strategy `Auto` would pick, named here so that its precision is known.
                let strategy = if invariant {
                    Strategy::GemmTiled
                } else {
                    l.strategy_for(gpu, x.rows)
                };
                let plan = l.plan(gpu, x, y, KernelChoice::Force(strategy))?;
                self.activations
                    .record(ActivationPrecision::of(strategy, x.dtype));
                Ok(plan)
            }
            Weights::Sparse(l) => {
                let path = if invariant {
                    SparsePath::Kernel
                } else {
                    SparsePath::Auto
                };
                let plan = l.plan_in(gpu, x, y, path, scratch)?;
                self.activations
                    .record(ActivationPrecision::of_dtype(x.dtype));
                Ok(plan)
            }
        }
    }

    /// The precisions the kernels of the plans built so far read activations in (int8 where
    /// an int8 GEMV quantized them, f16 for f16 tensors or tensor cores, else f32), in
    /// [`ActivationPrecision::ALL`] order; empty before the first plan.
    pub fn activations(&self) -> Vec<ActivationPrecision> {
        self.activations.get()
    }

    /// Dispatches writing `out[r, :] = W[ids[r], :]`: the rows `ids` (one u32 per row of
    /// the f32 `out`) names, decoded (see [`Linear::plan_gather`]; an id ≥ `n` gives zeros).
    /// Dense weights only: sparse ones are an error.
    pub fn plan_gather(
        &self,
        gpu: &Gpu,
        ids: &wgpu::Buffer,
        out: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        match &self.weights {
            Weights::Dense(l) => Ok(vec![l.plan_gather(gpu, ids, out)?]),
            Weights::Sparse(l) => Err(Error::invalid(format!(
                "a row gather reads dense weights, not {} ones",
                l.format
            ))),
        }
    }

    /// Computes `x · Wᵀ (+ bias)` into a new tensor, waiting for the result.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let y = Tensor::empty(gpu, x.rows, self.n(), x.dtype)?;
        let plan = self.plan(gpu, x, &y)?;
        let mut enc = gpu.encoder("linear layer");
        crate::gpu::record_pass(&mut enc, &plan, None);
        gpu.submit_and_wait(enc)?;
        Ok(y)
    }
}
