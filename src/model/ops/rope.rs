//! Rotary position embedding (`shaders/model/rope.wgsl`) of Q or K rows, with each token's
//! position read from a storage buffer so a decode step can change it per call without a new
//! plan. Re-exported by `ops`.

use super::{WG, dispatch, need_f32, same_shape};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

/// Which pairs of a head's Q/K components RoPE rotates together, which is a property of how the
/// checkpoint's Q and K rows are ordered, not of the model (re-exported by `model::llama`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    /// Component `i` pairs with `i + head_dim / 2` (Hugging Face checkpoints; llama.cpp's NEOX
    /// mode, used by its Qwen2 GGUF files).
    #[default]
    HalfSplit,
    /// Components `2i` and `2i + 1` pair (llama.cpp's Llama GGUF files, whose converter permutes
    /// the Q and K rows of each head so that this layout gives Hugging Face's results).
    Interleaved,
}

const ROPE: &str = concat!(
    include_str!("../../../shaders/model/rope_turn.wgsl"),
    include_str!("../../../shaders/model/rope.wgsl")
);

/// A RoPE configuration with its frequencies on the device: built once per model, so a
/// dispatch that rotates (`rope`, `kv_append`) uploads nothing.
pub struct Rope {
    head_dim: usize,
    theta: f64,
    layout: RopeLayout,
    /// `theta^(-2i / head_dim)` for each pair `i`, computed in f64 and rounded to f32.
    pub(super) inv_freq: wgpu::Buffer,
}

impl Rope {
    /// RoPE over heads of `head_dim` (even, at least 2) with base `theta` (positive).
    pub fn new(gpu: &Gpu, head_dim: usize, theta: f64, layout: RopeLayout) -> Result<Self> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(Error::shape(format!(
                "rope needs an even head size, got {head_dim}"
            )));
        }
        if !(theta.is_finite() && theta > 0.0) {
            return Err(Error::invalid(format!(
                "rope theta must be positive, is {theta}"
            )));
        }
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64) as f32)
            .collect();
        Ok(Rope {
            head_dim,
            theta,
            layout,
            inv_freq: gpu.upload("rope inv_freq", &inv_freq)?,
        })
    }

    /// Components per head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The frequency base.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// Which components pair.
    pub fn layout(&self) -> RopeLayout {
        self.layout
    }
}

/// Params of `rope.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RopeParams {
    rows: u32,
    cols: u32,
    stride: u32,
    half: u32,
}

const K_ROPE: Kernel<RopeParams> = Kernel::new(
    "model_rope",
    &[Read("x"), Read("pos"), Read("inv_freq"), ReadWrite("y")],
);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(K_ROPE.name, ROPE, "Params", RopeParams; rows, cols, stride, half)
}

pub(super) fn kernel_source() -> (&'static str, &'static str) {
    (K_ROPE.name, ROPE)
}

/// `out = RoPE(x)`: `x` is `tokens × heads·head_dim` (Q or K rows), `positions` holds one
/// `u32` per token (row `r` turns to `positions[r]`); pair `i` of each head turns by
/// `position · theta^(-2i / head_dim)` radians, `layout` saying which two components pair
/// (as `model::llama::reference::rope`, the f64 oracle). `out` has `x`'s shape and must be another
/// tensor (a buffer cannot be bound for reading and writing in one dispatch).
///
/// The frequencies are computed here in f64 and uploaded as f32; the angle is their f32
/// product with the position, so its error is about `2^-23 · angle` radians (≈ 5 · 10^-4 at
/// position 4096 for the first pair).
#[allow(clippy::too_many_arguments)]
pub fn rope(
    gpu: &Gpu,
    x: &Tensor,
    positions: &wgpu::Buffer,
    heads: usize,
    head_dim: usize,
    theta: f64,
    layout: RopeLayout,
    out: &Tensor,
) -> Result<Dispatch> {
    need_f32(x, "rope input")?;
    need_f32(out, "rope output")?;
    same_shape(x, out, "rope output")?;
    if head_dim == 0 || !head_dim.is_multiple_of(2) || heads == 0 {
        return Err(Error::shape(format!(
            "rope needs heads ≥ 1 of an even size, got {heads} heads of {head_dim}"
        )));
    }
    if heads * head_dim != x.cols {
        return Err(Error::shape(format!(
            "rope of {heads} heads of {head_dim} applied to {} columns",
            x.cols
        )));
    }
    if positions.size() < (x.rows * 4) as u64 {
        return Err(Error::shape(format!(
            "rope: position buffer holds {} tokens, needs {}",
            positions.size() / 4,
            x.rows
        )));
    }
    let half = head_dim / 2;
    let rope = Rope::new(gpu, head_dim, theta, layout)?;
    let pairs = x.rows * x.stride() / 2;
    dispatch(
        gpu,
        &K_ROPE,
        ROPE,
        format!("rope {}×{heads}×{head_dim}", x.rows),
        &[],
        &[(
            "INTERLEAVED",
            (layout == RopeLayout::Interleaved) as u8 as f64,
        )],
        &RopeParams {
            rows: x.rows as u32,
            cols: x.cols as u32,
            stride: x.stride() as u32,
            half: half as u32,
        },
        &[
            Some(&x.buffer),
            Some(positions),
            Some(&rope.inv_freq),
            Some(&out.buffer),
        ],
        pairs.div_ceil(WG as usize) as u32,
    )
}
