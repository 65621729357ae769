//! Row selection (`shaders/model/select_rows.wgsl`): `out[r] = x[ids[r]]`, the token rows whose
//! logits a decoder step reads back (the last row of each sequence), out of every row of the
//! pass. Re-exported by `ops`.

use super::{WG, dispatch, need_f32};
use crate::error::{Error, Result};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

pub(super) const SELECT_ROWS: &str = include_str!("../../../shaders/model/select_rows.wgsl");

/// Params of `select_rows.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SelectParams {
    rows: u32,
    src_rows: u32,
    stride: u32,
    _p0: u32,
}

pub(super) const K_SELECT: Kernel<SelectParams> = Kernel::new(
    "model_select_rows",
    &[Read("x"), Read("ids"), ReadWrite("y")],
);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(K_SELECT.name, SELECT_ROWS, "Params", SelectParams;
        rows, src_rows, stride, _p0)
}

/// `out[r, :] = x[ids[r], :]`: `ids` holds one `u32` per row of `out` (rewritten per call, so
/// a recorded plan picks different rows each time); an id at or past `x.rows` gives a row of
/// zeros instead of an out-of-bounds read.
pub fn select_rows(gpu: &Gpu, x: &Tensor, ids: &wgpu::Buffer, out: &Tensor) -> Result<Dispatch> {
    need_f32(x, "row selection input")?;
    need_f32(out, "row selection output")?;
    if x.cols != out.cols {
        return Err(Error::shape(format!(
            "row selection of {}-wide rows into {}-wide ones",
            x.cols, out.cols
        )));
    }
    if ids.size() < (out.rows * 4) as u64 {
        return Err(Error::shape(format!(
            "row selection: the id buffer holds {} ids, needs {}",
            ids.size() / 4,
            out.rows
        )));
    }
    let len = out.rows as u64 * out.stride() as u64;
    if len > u32::MAX as u64 || x.rows > u32::MAX as usize {
        return Err(Error::shape(format!(
            "row selection of {} × {} has more than 2^32 elements",
            out.rows, out.cols
        )));
    }
    dispatch(
        gpu,
        &K_SELECT,
        SELECT_ROWS,
        format!("select rows {}×{}", out.rows, out.cols),
        &[],
        &[],
        &SelectParams {
            rows: out.rows as u32,
            src_rows: x.rows as u32,
            stride: out.stride() as u32,
            _p0: 0,
        },
        &[Some(&x.buffer), Some(ids), Some(&out.buffer)],
        (len as u32).div_ceil(WG),
    )
}
