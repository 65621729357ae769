//! Row argmax (`shaders/model/argmax.wgsl`): the column of each row's largest value, for
//! greedy decoding without reading the logits back. Re-exported by `ops`.

use super::{dispatch, need_f32};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

pub(super) const ARGMAX: &str = include_str!("../../../shaders/model/argmax.wgsl");

/// Invocations per row.
pub(super) const ARGMAX_WG: i64 = 256;

/// Params of `argmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ArgmaxParams {
    rows: u32,
    cols: u32,
    stride: u32,
    _p0: u32,
}

pub(super) const K_ARGMAX: Kernel<ArgmaxParams> =
    Kernel::new("model_argmax", &[Read("x"), ReadWrite("y")]);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(K_ARGMAX.name, ARGMAX, "Params", ArgmaxParams; rows, cols, stride, _p0)
}

/// `out[r] = argmax_c x[r, c]`, the lowest column among equal maxima, NaN never chosen (a row
/// of NaN gives 0), written as the bits of a `u32` (read them with `f32::to_bits`) into `out`,
/// an f32 tensor of `x.rows` rows and one column.
pub fn argmax_rows(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    need_f32(x, "argmax input")?;
    need_f32(out, "argmax output")?;
    if out.rows != x.rows || out.cols != 1 || x.cols == 0 {
        return Err(Error::shape(format!(
            "argmax of {} × {} into {} × {} (needs {} × 1)",
            x.rows, x.cols, out.rows, out.cols, x.rows
        )));
    }
    dispatch(
        gpu,
        &K_ARGMAX,
        ARGMAX,
        format!("argmax {}×{}", x.rows, x.cols),
        &[("WG", ARGMAX_WG)],
        &[],
        &ArgmaxParams {
            rows: x.rows as u32,
            cols: x.cols as u32,
            stride: x.stride() as u32,
            _p0: 0,
        },
        &[Some(&x.buffer), Some(&out.buffer)],
        x.rows as u32,
    )
}
