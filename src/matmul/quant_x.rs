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

/// Parameters of both quantization kernels (this one and `quant_qb`): x's row length and
/// stride in vec4s, output blocks per row, rows.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct QParams {
    pub(super) k4: u32,
    pub(super) x_stride4: u32,
    pub(super) blocks: u32,
    pub(super) rows: u32,
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
    let (act, name) = (x.dtype, variant_name(x.dtype, paired));
    let dispatch = dispatch(gpu, &QUANT_Q8_KERNEL, x, &out, blocks, name, move || {
        source(act, paired)
    })?;
    Ok((out, dispatch))
}

/// The dispatch of a quantization kernel (`kernel`, shader `name` made by `source`) that
/// reads `x` and writes `blocks` blocks per row into `out`, one invocation per block.
pub(super) fn dispatch(
    gpu: &Gpu,
    kernel: &Kernel<QParams>,
    x: &Tensor,
    out: &wgpu::Buffer,
    blocks: usize,
    name: String,
    source: impl FnOnce() -> Result<String> + 'static,
) -> Result<Dispatch> {
    let params = QParams {
        k4: x.cols.div_ceil(4) as u32,
        x_stride4: (x.stride() / 4) as u32,
        blocks: blocks as u32,
        rows: x.rows as u32,
    };
    kernel
        .launch(gpu)
        .label(format!("{name} m={}", x.rows))
        .shader(name, source)
        .trusted()
        .params(&params)
        .buffers(&[Some(&x.buffer), Some(out)])
        .workgroups(((x.rows * blocks) as u64).div_ceil(64))
        .build()
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
