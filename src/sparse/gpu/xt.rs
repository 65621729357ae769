//! Activation tiles transposed for the CSR SpMM path (`shaders/sparse/sparse_xt.wgsl`): with `MT`
//! activation rows per tile, a non-zero in column `c` needs `x[0..MT][c]`, which row-major x
//! spreads over `MT` cache lines; transposed per tile they are `ceil(MT / 4)` adjacent vec4s.

use crate::error::Result;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::{ActDType, Tensor};

const XT: &str = include_str!("../../../shaders/sparse/sparse_xt.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct XtParams {
    m: u32,
    k4: u32,
    x_stride4: u32,
    mt: u32,
    mtv: u32,
    total: u32,
}

const SPARSE_XT: Kernel<XtParams> = Kernel::new("sparse_xt", &[Read("x"), ReadWrite("xt")]);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(SPARSE_XT.name, XT, "XtParams", XtParams;
        m, k4, x_stride4, mt, mtv, total)
}

/// Allocates the transposed tiles of `x` (`mt` rows per tile, in `x`'s dtype) and the
/// dispatch that fills them.
pub fn transpose_tiles(gpu: &Gpu, x: &Tensor, mt: usize) -> Result<(wgpu::Buffer, Dispatch)> {
    let tiles = x.rows.div_ceil(mt);
    let mtv = mt.div_ceil(4);
    let k4 = x.cols.div_ceil(4);
    let total = tiles as u64 * k4 as u64 * 4 * mtv as u64;
    let elem = match x.dtype {
        ActDType::F32 => 4,
        ActDType::F16 => 2,
    };
    let out = gpu.storage("sparse x tiles", total * 4 * elem)?;
    let params = XtParams {
        m: x.rows as u32,
        k4: k4 as u32,
        x_stride4: (x.stride() / 4) as u32,
        mt: mt as u32,
        mtv: mtv as u32,
        total: u32::try_from(total).map_err(|_| {
            crate::Error::Input(crate::InputError::TooLarge {
                what: "transposed activation tiles".into(),
                bytes: total * 4 * elem,
                limit_name: "u32 vec4 index",
                limit: u32::MAX as u64,
            })
        })?,
    };
    let (act, name) = (x.dtype, variant_name(x.dtype));
    let dispatch = SPARSE_XT
        .launch(gpu)
        .label(format!("sparse x tiles m={}", x.rows))
        .shader(name, move || Ok(source(act)))
        .trusted()
        .params(&params)
        .buffers(&[Some(&x.buffer), Some(&out)])
        .workgroups(params.total.div_ceil(64) as u64)
        .build()?;
    Ok((out, dispatch))
}

/// Pipeline name of the transpose kernel for `act` activations.
pub(super) fn variant_name(act: ActDType) -> String {
    format!("sparse_xt_{act:?}")
}

/// The WGSL of the transpose kernel for `act` activations (it has no template variables).
pub(super) fn source(act: ActDType) -> String {
    format!("{}\n{XT}", act.wgsl())
}
