//! The int8-activation GEMV of binary and ternary weights (`shaders/linear/gemv_low_bit_q8.wgsl`
//! with a `w_*_q8.wgsl` decoder per format) and the quantization of x it reads
//! (`shaders/linear/quant_qb.wgsl`): the shapes that tie a format's 16-byte weight block to x
//! blocks, the template variables, and the quantization dispatch.
//!
//! x blocks follow the weights: 32 values for binary (one weight word; every binary group
//! holds whole words), 64 for ternary (one weight block, and groups are whole blocks) and 80
//! for ternary16, whose twenty weights a word fit no block of 32: a block of 80 is one weight
//! block and divides every ternary16 group, so one step and one sum serve a whole block.

use crate::error::Result;
use crate::formats::WeightFormat;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::{ActDType, Tensor};

const QUANT_QB: &str = include_str!("../../shaders/linear/quant_qb.wgsl");
const W_BINARY_Q8: &str = include_str!("../../shaders/linear/w_binary_q8.wgsl");
const W_TERNARY_Q8: &str = include_str!("../../shaders/linear/w_ternary_q8.wgsl");
const W_TERNARY16_Q8: &str = include_str!("../../shaders/linear/w_ternary16_q8.wgsl");
pub(super) const GEMV_LOW_BIT_Q8: &str = include_str!("../../shaders/linear/gemv_low_bit_q8.wgsl");

/// How a format's weight block meets x: x vec4s (sixteen int8 values each) per weight block,
/// and x blocks (one step and sum each) per weight block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    xv4: u32,
    qpb: u32,
}

impl Shape {
    /// The shape of `format`, `None` for formats this GEMV does not take.
    pub(super) fn of(format: WeightFormat) -> Option<Self> {
        let (xv4, qpb) = match format {
            WeightFormat::Binary { .. } => (8, 4),
            WeightFormat::Ternary { .. } => (4, 1),
            WeightFormat::Ternary16 { .. } => (5, 1),
            _ => return None,
        };
        Some(Shape { xv4, qpb })
    }

    /// x vec4s per x block.
    fn qv4(self) -> u32 {
        self.xv4 / self.qpb
    }

    /// The template variables of the GEMV body and decoder.
    pub(super) fn vars(self) -> [(&'static str, i64); 4] {
        [
            ("XV4", self.xv4 as i64),
            ("QPB", self.qpb as i64),
            ("QV4", self.qv4() as i64),
            ("NOPS", 4 * self.xv4 as i64),
        ]
    }
}

/// The int8-activation decoder of `format` (see [`Shape::of`] for which have one).
pub(super) fn decoder(format: WeightFormat) -> Option<&'static str> {
    match format {
        WeightFormat::Binary { .. } => Some(W_BINARY_Q8),
        WeightFormat::Ternary { .. } => Some(W_TERNARY_Q8),
        WeightFormat::Ternary16 { .. } => Some(W_TERNARY16_Q8),
        _ => None,
    }
}

use super::quant_x::QParams;

const QUANT_QB_KERNEL: Kernel<QParams> = Kernel::new("quant_qb", &[Read("x"), ReadWrite("xq")]);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(QUANT_QB_KERNEL.name, QUANT_QB, "QParams", QParams;
        k4, x_stride4, blocks, rows)
}

/// Allocates x quantized for `shape` over weight rows of `row_blocks` blocks, and the
/// dispatch that fills it.
pub(super) fn quantize(
    gpu: &Gpu,
    x: &Tensor,
    shape: Shape,
    row_blocks: usize,
) -> Result<(wgpu::Buffer, Dispatch)> {
    let blocks = row_blocks * shape.qpb as usize;
    let row4 = blocks * shape.qv4() as usize + blocks.div_ceil(2);
    let out = gpu.storage("x int8 rows", (x.rows * row4 * 16) as u64)?;
    let (act, qv4) = (x.dtype, shape.qv4());
    let name = variant_name(act, qv4);
    super::quant_x::dispatch(gpu, &QUANT_QB_KERNEL, x, &out, blocks, name, move || {
        source(act, qv4)
    })
    .map(|d| (out, d))
}

/// Pipeline name of the quantization kernel for `act` activations in blocks of `qv4` vec4s.
pub(super) fn variant_name(act: ActDType, qv4: u32) -> String {
    format!("quant_qb_{act:?}_{}", 16 * qv4)
}

/// The WGSL of the quantization kernel for `act` activations in blocks of `qv4` vec4s.
pub(super) fn source(act: ActDType, qv4: u32) -> Result<String> {
    let vars = [("QV4", qv4 as i64)];
    crate::gpu::wgsl::expand(&format!("{}\n{QUANT_QB}", act.wgsl()), &vars)
}

/// Every (pipeline name, WGSL) of the quantization kernel, for offline validation.
pub(super) fn quant_variants() -> Vec<(String, Result<String>)> {
    let mut out = Vec::new();
    for act in [ActDType::F32, ActDType::F16] {
        for qv4 in [2, 4, 5] {
            out.push((variant_name(act, qv4), source(act, qv4)));
        }
    }
    out
}
