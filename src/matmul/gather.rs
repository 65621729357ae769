//! Row gather from a layer's weights: `out[r, :] = W[ids[r], :]` decoded, the embedding
//! lookup of a model whose lm_head is tied to its token embedding, read from the same packed
//! buffers the lm_head multiplies by (no second copy of the table).

use super::{Linear, shader};
use crate::error::{Error, InputError, Result};
use crate::formats::WeightFormat;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::{ActDType, Tensor};

const GATHER_ROWS: &str = include_str!("../../shaders/linear/gather_rows.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    row_blocks: u32,
    groups: u32,
    rows: u32,
    out_stride: u32,
    blocks: u32,
    pad: u32,
}

/// Ids (one u32 per output row), weights, scales, zero points or minimums, output.
const GATHER: Kernel<Params> = Kernel::new(
    "gather_rows",
    &[
        Read("ids"),
        Read("w"),
        Read("scales"),
        Read("zeros"),
        ReadWrite("out"),
    ],
);

/// Pipeline name of the gather for `format`'s decoder.
fn variant_name(format: WeightFormat) -> String {
    format!("gather_rows_{}", shader::decoder_name(format))
}

/// The gather module for `format`: its decoder, then the kernel.
fn source(format: WeightFormat) -> String {
    format!("{}\n{GATHER_ROWS}", shader::decoder(format))
}

impl Linear {
    /// The dispatch that writes `out[r, :] = W[ids[r], :]` (the weights alone: no bias, no
    /// fused activation) for each of `out.rows` ids, `ids` holding one u32 per output row.
    /// An id ≥ `n` reads nothing and gives a row of zeros. `out` is an f32 tensor of `k`
    /// columns; its padding is written as zeros. The values are those of
    /// [`crate::formats::PackedWeights::dequantize`] (for the min formats up to the one
    /// rounding a driver's fused multiply-add may save). Weights split over several bindings
    /// ([`Linear::chunks`] > 1) are refused.
    pub fn plan_gather(&self, gpu: &Gpu, ids: &wgpu::Buffer, out: &Tensor) -> Result<Dispatch> {
        if out.cols != self.k {
            return Err(Error::shape(format!(
                "gather output has {} columns, the weight rows have {}",
                out.cols, self.k
            )));
        }
        if out.dtype != ActDType::F32 {
            return Err(Error::dtype(format!(
                "gather output is {:?}, the gather writes f32",
                out.dtype
            )));
        }
        if out.rows == 0 {
            return Err(Error::invalid("gather output has no rows"));
        }
        let need = 4 * out.rows as u64;
        if ids.size() < need {
            return Err(Error::shape(format!(
                "{} bytes of ids for {} output rows (4 bytes each)",
                ids.size(),
                out.rows
            )));
        }
        let [c] = &self.chunks[..] else {
            return Err(Error::Input(InputError::TooLarge {
                what: format!(
                    "a row gather from weights in {} bindings ({} × {} {})",
                    self.chunks.len(),
                    self.n,
                    self.k,
                    self.format.name()
                ),
                bytes: self.weight_bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit: gpu.caps.max_storage_binding,
            }));
        };
        let block_k = self.format.block_k();
        let blocks = out.stride().div_ceil(block_k);
        let params = Params {
            n: self.n as u32,
            k: self.k as u32,
            row_blocks: self.row_blocks as u32,
            groups: self.groups as u32,
            rows: out.rows as u32,
            out_stride: out.stride() as u32,
            blocks: blocks as u32,
            pad: 0,
        };
        let mut constants: Vec<(&str, f64)> = Vec::new();
        constants.extend(super::shader::decoder_constants(self.format));
        let format = self.format;
        GATHER
            .launch(gpu)
            .label(format!(
                "gather {} rows of {}",
                out.rows,
                self.format.name()
            ))
            .shader(variant_name(format), move || Ok(source(format)))
            .constants(&constants)
            .params(&params)
            .buffers(&[
                Some(ids),
                Some(&c.weights),
                c.scales.as_ref(),
                c.zeros.as_ref(),
                Some(&out.buffer),
            ])
            .workgroups((out.rows as u64 * blocks as u64).div_ceil(64))
            .build()
    }
}

/// Every gather module (one per weight decoder), for [`super::shader_variants`].
pub(super) fn variants() -> Vec<(String, Result<String>)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for format in WeightFormat::all() {
        let name = variant_name(format);
        if !seen.contains(&name) {
            seen.push(name.clone());
            out.push((name, Ok(source(format))));
        }
    }
    out
}

/// The gather's params layout, for the layout test.
#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(GATHER.name, GATHER_ROWS, "Params", Params;
        n, k, row_blocks, groups, rows, out_stride, blocks, pad)
}
