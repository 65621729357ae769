//! Activation rows quantized to int8 in blocks of 32 (`shaders/linear/quant_q8.wgsl`), the input of
//! the `dot4I8Packed` GEMV strategies. The block layout is written there; this file sizes the
//! output and records the dispatch.

use crate::error::Result;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::{ActDType, Tensor};

const QUANT_Q8: &str = include_str!("../../shaders/linear/quant_q8.wgsl");

/// Bytes of one quantized block of 32 values: 8 words of i8, step, sum, 2 words padding.
pub const BLOCK_BYTES: u64 = 48;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct QParams {
    k4: u32,
    x_stride4: u32,
    blocks: u32,
    rows: u32,
}

const QUANT_Q8_KERNEL: Kernel<QParams> = Kernel::new("quant_q8", &[Read("x"), ReadWrite("xq")]);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(QUANT_Q8_KERNEL.name, QUANT_Q8, "QParams", QParams;
        k4, x_stride4, blocks, rows)
}

/// Allocates the quantized copy of `x` (`blocks` of 32 per row) and the dispatch that fills it.
/// `paired`: the value order int4 weights need (see the shader).
pub fn quantize_rows(
    gpu: &Gpu,
    x: &Tensor,
    blocks: usize,
    paired: bool,
) -> Result<(wgpu::Buffer, Dispatch)> {
    let out = gpu.storage("x int8 blocks", x.rows as u64 * blocks as u64 * BLOCK_BYTES)?;
    let params = QParams {
        k4: x.cols.div_ceil(4) as u32,
        x_stride4: (x.stride() / 4) as u32,
        blocks: blocks as u32,
        rows: x.rows as u32,
    };
    let (act, name) = (x.dtype, variant_name(x.dtype, paired));
    let dispatch = QUANT_Q8_KERNEL
        .launch(gpu)
        .label(format!("quant_q8 m={}", x.rows))
        .shader(name, move || source(act, paired))
        .trusted()
        .params(&params)
        .buffers(&[Some(&x.buffer), Some(&out)])
        .workgroups(((x.rows * blocks) as u64).div_ceil(64))
        .build()?;
    Ok((out, dispatch))
}

/// Pipeline name of the quantization kernel for `act` activations.
pub(super) fn variant_name(act: ActDType, paired: bool) -> String {
    format!("quant_q8_{act:?}_paired{}", paired as u8)
}

/// The WGSL of the quantization kernel for `act` activations (`paired`: int4 order).
pub(super) fn source(act: ActDType, paired: bool) -> Result<String> {
    let vars = [("PAIRED", paired as i64)];
    crate::gpu::wgsl::expand(&format!("{}\n{QUANT_Q8}", act.wgsl()), &vars)
}
