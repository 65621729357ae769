//! SwiGLU (`shaders/model/swiglu.wgsl`): `out = silu(gate) · up` from one fused gate/up
//! projection. Re-exported by `ops`.

use super::{WG, dispatch, need_f32};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

pub(super) const SWIGLU: &str = include_str!("../../../shaders/model/swiglu.wgsl");

/// Params of `swiglu.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SwigluParams {
    rows: u32,
    cols: u32,
    in_stride: u32,
    out_stride: u32,
}

pub(super) const K_SWIGLU: Kernel<SwigluParams> =
    Kernel::new("model_swiglu", &[Read("gate_up"), ReadWrite("out")]);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(K_SWIGLU.name, SWIGLU, "Params", SwigluParams;
        rows, cols, in_stride, out_stride)
}

/// `out = silu(gate) · up` elementwise, with silu(g) = g / (1 + e^-g) (computed without
/// overflow for large |g|): `gate_up` is `rows × 2·I`, the gate projection's `I` outputs then
/// the up projection's `I` (as one fused linear layer writes them), `out` is `rows × I`.
pub fn swiglu(gpu: &Gpu, gate_up: &Tensor, out: &Tensor) -> Result<Dispatch> {
    need_f32(gate_up, "swiglu input")?;
    need_f32(out, "swiglu output")?;
    if gate_up.rows != out.rows || gate_up.cols != 2 * out.cols {
        return Err(Error::shape(format!(
            "swiglu of {} × {} into {} × {} (the input must be rows × 2·I, the output rows × I)",
            gate_up.rows, gate_up.cols, out.rows, out.cols
        )));
    }
    let len = out.rows as u64 * out.stride() as u64;
    if len > u32::MAX as u64 {
        return Err(Error::shape(format!(
            "swiglu output {} × {} has more than 2^32 elements",
            out.rows, out.cols
        )));
    }
    dispatch(
        gpu,
        &K_SWIGLU,
        SWIGLU,
        format!("swiglu {}×{}", out.rows, out.cols),
        &[],
        &[],
        &SwigluParams {
            rows: out.rows as u32,
            cols: out.cols as u32,
            in_stride: gate_up.stride() as u32,
            out_stride: out.stride() as u32,
        },
        &[Some(&gate_up.buffer), Some(&out.buffer)],
        (len as u32).div_ceil(WG),
    )
}
