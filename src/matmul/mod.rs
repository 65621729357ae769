//! Linear layers `y = x · Wᵀ (+ bias)` on the GPU for every weight format.
//!
//! A [`Linear`] owns its weights on the device. Weights larger than one storage binding are
//! split by output rows into chunks that each fit (one dispatch per chunk), so any matrix the
//! device memory holds works. [`Linear::plan`] validates shapes and returns the dispatches;
//! [`Linear::forward`] is the one-call convenience.

mod shader;

pub use shader::Strategy;

use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::{Dispatch, Gpu, PipelineKey, record_pass};
use crate::tensor::{ActDType, Tensor};
use wgpu::util::DeviceExt;

/// Which kernel a plan uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The fastest available for the shape and adapter.
    #[default]
    Auto,
    /// This strategy (an error when the adapter or shape cannot use it).
    Force(Strategy),
}

/// Rows of weights that live in one set of buffers.
struct Chunk {
    row0: usize,
    rows: usize,
    weights: wgpu::Buffer,
    scales: Option<wgpu::Buffer>,
    zeros: Option<wgpu::Buffer>,
}

/// A linear layer with its weights on the GPU.
pub struct Linear {
    /// Weight format.
    pub format: WeightFormat,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Bytes of weights, scales and zero points on the device.
    pub weight_bytes: u64,
    row_blocks: usize,
    groups: usize,
    chunks: Vec<Chunk>,
    bias: Option<wgpu::Buffer>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    row_blocks: u32,
    groups: u32,
    m: u32,
    x_stride4: u32,
    y_stride: u32,
    n_out: u32,
    y_offset: u32,
    k4: u32,
    row0: u32,
    pad: u32,
}

impl Linear {
    /// Uploads `weights` (and an optional `bias` of length `n`).
    pub fn new(gpu: &Gpu, weights: &PackedWeights, bias: Option<&[f32]>) -> Result<Self> {
        Self::with_binding_limit(gpu, weights, bias, gpu.caps.max_storage_binding)
    }

    /// Like [`Linear::new`] but splits weights at `limit` bytes per binding (≤ the device's).
    pub fn with_binding_limit(
        gpu: &Gpu,
        weights: &PackedWeights,
        bias: Option<&[f32]>,
        limit: u64,
    ) -> Result<Self> {
        let (n, k) = (weights.n, weights.k);
        if let Some(b) = bias {
            if b.len() != n {
                return Err(Error::Shape(format!(
                    "bias has {} values, the layer has {n} outputs",
                    b.len()
                )));
            }
        }
        let limit = limit.min(gpu.caps.max_storage_binding);
        let row_bytes = (weights.row_words() * 4) as u64;
        let rows_per_chunk = (limit / row_bytes) as usize;
        if rows_per_chunk == 0 {
            return Err(Error::TooLarge {
                what: format!("one weight row ({n} × {k} {})", weights.format.name()),
                bytes: row_bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        // Scale and zero-point words of whole rows must also stay inside a binding; int4
        // packs several rows' scales per word, so keep chunk boundaries on even rows of 8.
        let rows_per_chunk = if rows_per_chunk >= n {
            n
        } else {
            (rows_per_chunk / 8 * 8).max(8)
        };
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < n {
            let rows = rows_per_chunk.min(n - row0);
            let part = if rows == n {
                weights.clone()
            } else {
                weights.rows(row0, row0 + rows)
            };
            let label = format!("weights {}..{}", row0, row0 + rows);
            chunks.push(Chunk {
                row0,
                rows,
                weights: gpu.upload(&label, &part.data)?,
                scales: if part.scales.is_empty() {
                    None
                } else {
                    Some(gpu.upload("scales", &part.scales)?)
                },
                zeros: if part.zeros.is_empty() {
                    None
                } else {
                    Some(gpu.upload("zeros", &part.zeros)?)
                },
            });
            row0 += rows;
        }
        let bias = bias.map(|b| gpu.upload("bias", b)).transpose()?;
        Ok(Linear {
            format: weights.format,
            n,
            k,
            weight_bytes: weights.bytes(),
            row_blocks: weights.row_words() / 4,
            groups: weights.groups(),
            chunks,
            bias,
        })
    }

    /// Number of weight chunks (1 unless the weights exceed one binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The strategy `Auto` picks for `m` activation rows on `gpu`.
    pub fn auto_strategy(gpu: &Gpu, m: usize) -> Strategy {
        if m <= 8 {
            if gpu.caps.subgroups {
                Strategy::GemvSubgroup
            } else {
                Strategy::GemvWorkgroup
            }
        } else {
            Strategy::GemmTiled
        }
    }

    /// Computes `x · Wᵀ (+ bias)` into a new tensor, waiting for the result.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let y = Tensor::empty(gpu, x.rows, self.n, x.dtype)?;
        let plan = self.plan(gpu, x, &y, KernelChoice::Auto)?;
        let mut enc = gpu.encoder("linear");
        record_pass(&mut enc, &plan, None);
        gpu.submit_and_wait(enc)?;
        Ok(y)
    }

    /// Validates shapes and builds the dispatches that write `y = x · Wᵀ (+ bias)`.
    pub fn plan(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        choice: KernelChoice,
    ) -> Result<Vec<Dispatch>> {
        if x.cols != self.k {
            return Err(Error::Shape(format!(
                "input has {} features, the layer expects {}",
                x.cols, self.k
            )));
        }
        if y.cols != self.n || y.rows != x.rows {
            return Err(Error::Shape(format!(
                "output is {} × {}, expected {} × {}",
                y.rows, y.cols, x.rows, self.n
            )));
        }
        if x.dtype != y.dtype {
            return Err(Error::DType(format!(
                "input is {:?} but output is {:?}",
                x.dtype, y.dtype
            )));
        }
        if x.rows == 0 {
            return Err(Error::Invalid("input has no rows".into()));
        }
        let strategy = match choice {
            KernelChoice::Auto => Self::auto_strategy(gpu, x.rows),
            KernelChoice::Force(s) => s,
        };
        if strategy == Strategy::GemvSubgroup && !gpu.caps.subgroups {
            return Err(Error::MissingFeature {
                adapter: gpu.caps.name.clone(),
                feature: "SUBGROUP".into(),
            });
        }
        let mut out = Vec::new();
        // GEMV kernels take at most 8 rows per dispatch; larger inputs go in slices of 8.
        let slice = strategy.max_rows().min(x.rows);
        for m0 in (0..x.rows).step_by(slice) {
            let m = slice.min(x.rows - m0);
            for (ci, c) in self.chunks.iter().enumerate() {
                let last = ci + 1 == self.chunks.len();
                out.push(self.dispatch(gpu, strategy, x, y, m0, m, c, last)?);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        gpu: &Gpu,
        strategy: Strategy,
        x: &Tensor,
        y: &Tensor,
        m0: usize,
        m: usize,
        c: &Chunk,
        last_chunk: bool,
    ) -> Result<Dispatch> {
        // The last chunk also writes the zero padding of y's rows.
        let n_out = if last_chunk {
            y.stride() - c.row0
        } else {
            c.rows
        };
        let params = Params {
            n: c.rows as u32,
            k: self.k as u32,
            row_blocks: self.row_blocks as u32,
            groups: self.groups as u32,
            m: m as u32,
            x_stride4: (x.stride() / 4) as u32,
            y_stride: y.stride() as u32,
            n_out: n_out as u32,
            y_offset: c.row0 as u32,
            k4: self.k.div_ceil(4) as u32,
            row0: m0 as u32,
            pad: 0,
        };
        let (pipeline, grid) = self.pipeline(gpu, strategy, x.dtype, m, n_out)?;
        let layout = linear_layout(gpu);
        let uniform = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("linear params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let dummy = gpu.dummy();
        let entries = [
            wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: x.buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: c.weights.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: c.scales.as_ref().unwrap_or(dummy).as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 4,
                resource: c.zeros.as_ref().unwrap_or(dummy).as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 5,
                resource: self.bias.as_ref().unwrap_or(dummy).as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 6,
                resource: y.buffer.as_entire_binding(),
            },
        ];
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("linear"),
            layout: &layout.bind_group,
            entries: &entries,
        });
        Ok(Dispatch {
            label: format!("{} {} m={m}", strategy.name(), self.format.name()),
            pipeline,
            bind_group,
            grid,
        })
    }

    fn pipeline(
        &self,
        gpu: &Gpu,
        strategy: Strategy,
        act: ActDType,
        m: usize,
        n_out: usize,
    ) -> Result<(std::sync::Arc<wgpu::ComputePipeline>, (u32, u32))> {
        let name = shader::variant_name(strategy, self.format, act);
        let mut constants: Vec<(&str, f64)> = vec![("HAS_BIAS", self.bias.is_some() as u8 as f64)];
        if let WeightFormat::Int4 { group, asymmetric } = self.format {
            constants.push(("GROUP", group as f64));
            constants.push(("ASYM", asymmetric as u8 as f64));
        }
        let grid = match strategy {
            Strategy::GemvSubgroup => {
                let wg = 256u32.min(gpu.caps.max_invocations);
                let rows = (wg / gpu.caps.subgroup_min.max(1)).max(1);
                constants.extend([
                    ("M", m as f64),
                    ("WG", wg as f64),
                    ("ROWS_PER_WG", rows as f64),
                ]);
                gpu.grid((n_out as u32).div_ceil(rows))
            }
            Strategy::GemvWorkgroup => {
                let wg = 256u32.min(gpu.caps.max_invocations);
                let team = 32u32;
                constants.extend([("M", m as f64), ("WG", wg as f64), ("TEAM", team as f64)]);
                gpu.grid((n_out as u32).div_ceil(wg / team))
            }
            Strategy::GemmTiled => {
                let gx = (n_out as u32).div_ceil(64);
                let gy = (m as u32).div_ceil(64);
                let max = gpu.caps.max_workgroups_per_dim;
                if gx > max || gy > max {
                    return Err(Error::TooLarge {
                        what: format!("GEMM grid {gx} × {gy} workgroups"),
                        bytes: gx.max(gy) as u64,
                        limit_name: "max_compute_workgroups_per_dimension",
                        limit: max as u64,
                    });
                }
                (gx, gy)
            }
        };
        let key = PipelineKey::new(name, &constants);
        let layout = linear_layout(gpu);
        let p = gpu
            .pipelines
            .get_or_create(&gpu.device, &key, Some(&layout.pipeline), || {
                shader::source(strategy, self.format, act)
            })?;
        Ok((p, grid))
    }
}

fn linear_layout(gpu: &Gpu) -> std::sync::Arc<crate::gpu::Layout> {
    gpu.layouts.get_or_create(&gpu.device, "linear", || {
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        vec![
            entry(0, wgpu::BufferBindingType::Uniform),
            entry(1, ro),
            entry(2, ro),
            entry(3, ro),
            entry(4, ro),
            entry(5, ro),
            entry(6, wgpu::BufferBindingType::Storage { read_only: false }),
        ]
    })
}
