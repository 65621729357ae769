//! int8 × int8 GEMM with `dot4I8Packed` (`shaders/linear/gemm_dp4a.wgsl`): a first dispatch
//! quantizes each activation row to int8 with its own scale (`shaders/linear/quant_rows.wgsl`), then
//! one GEMM dispatch per weight chunk multiplies them with int8 weights.

use super::{Linear, Strategy, shader};
use crate::error::DeviceError;
use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::tensor::Tensor;

/// Register tile per invocation (TM = TN) and words (4 k each) per staged slice.
const T: u32 = 8;
const BKW: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct QParams {
    m: u32,
    k4: u32,
    x_stride4: u32,
    words: u32,
    row0: u32,
    pad: [u32; 3],
}

/// Row quantization: activations in, int8 words and one scale per row out.
const QUANT_ROWS: Kernel<QParams> = Kernel::new(
    "quant_rows",
    &[Read("x"), ReadWrite("xq"), ReadWrite("xscale")],
);

#[cfg(test)]
pub(super) fn params_layout() -> crate::gpu::ParamsLayout {
    crate::params_layout!(QUANT_ROWS.name, shader::QUANT_ROWS, "QParams", QParams;
        m, k4, x_stride4, words, row0, pad)
}

/// Checks that `gpu` and `format` allow the DP4A GEMM.
pub(super) fn check(gpu: &Gpu, format: WeightFormat) -> Result<()> {
    if !gpu.caps.dot4_i8 {
        return Err(Error::Device(DeviceError::MissingFeature {
            adapter: gpu.caps.name.clone(),
            feature: "WGSL language feature packed_4x8_integer_dot_product".into(),
        }));
    }
    if format != WeightFormat::Int8 {
        return Err(Error::invalid(format!(
            "the DP4A GEMM takes int8 weights, not {}",
            format.name()
        )));
    }
    Ok(())
}

/// Template variables and grid of the GEMM kernel.
pub(super) fn prepare(m: usize, n_out: usize, vars: &mut Vec<(&'static str, i64)>) -> (u32, u32) {
    let b = 16 * T;
    vars.extend([
        ("TM", T as i64),
        ("TN", T as i64),
        ("TM4", (T / 4) as i64),
        ("TN4", (T / 4) as i64),
        ("BKW", BKW as i64),
        ("XLOADS", (b * BKW / 4).div_ceil(256) as i64),
        ("WLOADS", (b * BKW / 4).div_ceil(256) as i64),
    ]);
    ((n_out as u32).div_ceil(b), (m as u32).div_ceil(b))
}

impl Linear {
    /// The quantize dispatch and one GEMM dispatch per chunk.
    pub(super) fn plan_dp4a(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        check(gpu, self.format)?;
        let m = x.rows;
        let words = self.row_blocks * 4;
        let xq = gpu.storage("dp4a x", (m * words * 4) as u64)?;
        let xs = gpu.storage("dp4a x scales", (m * 4) as u64)?;
        let mut out = vec![quantize(gpu, x, &xq, &xs, words)?];
        for (ci, c) in self.chunks.iter().enumerate() {
            let last = ci + 1 == self.chunks.len();
            out.push(self.dispatch(
                gpu,
                (Strategy::GemmDp4a, None),
                x,
                y,
                0,
                m,
                c,
                last,
                super::Inputs {
                    x: Some(&xq),
                    binding4: Some(&xs),
                },
            )?);
        }
        Ok(out)
    }
}

fn quantize(
    gpu: &Gpu,
    x: &Tensor,
    xq: &wgpu::Buffer,
    xs: &wgpu::Buffer,
    words: usize,
) -> Result<Dispatch> {
    let act = x.dtype;
    let params = QParams {
        m: x.rows as u32,
        k4: x.cols.div_ceil(4) as u32,
        x_stride4: (x.stride() / 4) as u32,
        words: words as u32,
        row0: 0,
        pad: [0; 3],
    };
    QUANT_ROWS
        .launch(gpu)
        .label(format!("quant_rows m={}", x.rows))
        .shader(format!("quant_rows_{act:?}"), move || {
            Ok(shader::quant_rows_source(act))
        })
        .trusted()
        .params(&params)
        .buffers(&[Some(&x.buffer), Some(xq), Some(xs)])
        .workgroups(x.rows as u64)
        .build()
}

/// The CPU model of the quantization (what the GPU computes, up to the rounding of the
/// scale): per row, `q = round_half_even(x · 127 / max|x|)` and scale `max|x| / 127`.
pub fn quantize_rows_reference(x: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; m * k];
    let mut s = vec![0f32; m];
    for r in 0..m {
        let row = &x[r * k..(r + 1) * k];
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        s[r] = amax / 127.0;
        for (o, v) in q[r * k..(r + 1) * k].iter_mut().zip(row) {
            *o = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
    }
    (q, s)
}
