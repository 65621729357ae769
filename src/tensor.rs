//! Activations on the GPU: a row-major matrix whose rows are padded to a multiple of four
//! elements (so kernels read whole `vec4`s) with the padding kept at zero. Every kernel that
//! writes a tensor writes its padding too, so layers can be chained without clean-up passes.

use crate::error::DeviceError;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, read_buffer};
use half::f16;

/// Element type of an activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ActDType {
    /// 32-bit float.
    F32,
    /// 16-bit float (needs `SHADER_F16`).
    F16,
}

impl ActDType {
    /// The WGSL file that binds activations of this type (`act`, `act4`, `load_x4`, `to_act`):
    /// every kernel that reads or writes activations starts with it.
    pub fn wgsl(self) -> &'static str {
        match self {
            ActDType::F32 => include_str!("../shaders/shared/act_f32.wgsl"),
            ActDType::F16 => include_str!("../shaders/shared/act_f16.wgsl"),
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ActDType::F32 => 4,
            ActDType::F16 => 2,
        }
    }
}

/// A `rows × cols` activation matrix in a GPU buffer.
pub struct Tensor {
    /// The storage buffer (`rows × stride` elements).
    pub buffer: wgpu::Buffer,
    /// Number of rows (batch × sequence).
    pub rows: usize,
    /// Logical number of columns.
    pub cols: usize,
    /// Element type.
    pub dtype: ActDType,
}

impl Tensor {
    /// Row stride in elements: `cols` rounded up to a multiple of 4.
    pub fn stride(&self) -> usize {
        stride_of(self.cols)
    }

    /// Bytes the buffer holds.
    pub fn bytes(&self) -> u64 {
        (self.rows * self.stride() * self.dtype.size()) as u64
    }

    /// Uploads `data` (`rows × cols`, row-major) as an f32 tensor.
    pub fn from_f32(gpu: &Gpu, data: &[f32], rows: usize, cols: usize) -> Result<Self> {
        Self::from_f32_as(gpu, data, rows, cols, ActDType::F32)
    }

    /// Uploads `data` converted to `dtype`.
    pub fn from_f32_as(
        gpu: &Gpu,
        data: &[f32],
        rows: usize,
        cols: usize,
        dtype: ActDType,
    ) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::shape(format!(
                "tensor data has {} values, expected {rows} × {cols} = {}",
                data.len(),
                rows * cols
            )));
        }
        check_dtype(gpu, dtype)?;
        let s = stride_of(cols);
        let mut padded = vec![0f32; rows * s];
        for r in 0..rows {
            padded[r * s..r * s + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
        }
        let buffer = match dtype {
            ActDType::F32 => gpu.upload("tensor", &padded)?,
            ActDType::F16 => {
                let h: Vec<f16> = padded.iter().map(|&v| f16::from_f32(v)).collect();
                gpu.upload("tensor", &h)?
            }
        };
        Ok(Tensor {
            buffer,
            rows,
            cols,
            dtype,
        })
    }

    /// An uninitialised tensor (kernels writing it fill padding too).
    pub fn empty(gpu: &Gpu, rows: usize, cols: usize, dtype: ActDType) -> Result<Self> {
        check_dtype(gpu, dtype)?;
        let bytes = (rows * stride_of(cols) * dtype.size()) as u64;
        Ok(Tensor {
            buffer: gpu.storage("tensor", bytes)?,
            rows,
            cols,
            dtype,
        })
    }

    /// Fills the whole buffer, padding included, with NaN bit patterns (for tests).
    pub fn poison(&self, gpu: &Gpu) {
        let n = self.buffer.size() as usize;
        gpu.queue.write_buffer(&self.buffer, 0, &vec![0xFFu8; n]);
    }

    /// Reads the tensor back as f32, padding removed.
    pub fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let raw = read_buffer(gpu, &self.buffer, self.bytes())?;
        let s = self.stride();
        let all: Vec<f32> = match self.dtype {
            ActDType::F32 => bytemuck::cast_slice(&raw).to_vec(),
            ActDType::F16 => bytemuck::cast_slice::<u8, f16>(&raw)
                .iter()
                .map(|h| h.to_f32())
                .collect(),
        };
        Ok((0..self.rows)
            .flat_map(|r| all[r * s..r * s + self.cols].iter().copied())
            .collect())
    }

    /// Reads the whole buffer back as f32, padding included (for tests of the padding).
    pub fn to_f32_padded(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let raw = read_buffer(gpu, &self.buffer, self.bytes())?;
        Ok(match self.dtype {
            ActDType::F32 => bytemuck::cast_slice(&raw).to_vec(),
            ActDType::F16 => bytemuck::cast_slice::<u8, f16>(&raw)
                .iter()
                .map(|h| h.to_f32())
                .collect(),
        })
    }
}

/// Row stride for `cols` logical columns.
pub fn stride_of(cols: usize) -> usize {
    cols.next_multiple_of(4)
}

fn check_dtype(gpu: &Gpu, dtype: ActDType) -> Result<()> {
    if dtype == ActDType::F16 && !gpu.caps.f16 {
        return Err(Error::Device(DeviceError::MissingFeature {
            adapter: gpu.caps.name.clone(),
            feature: "SHADER_F16 (f16 activations)".into(),
        }));
    }
    Ok(())
}
