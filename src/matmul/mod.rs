//! Linear layers `y = x · Wᵀ (+ bias)` on the GPU for every weight format.
//!
//! A [`Linear`] owns its weights on the device. Weights larger than one storage binding are
//! split by output rows into chunks that each fit (one dispatch per chunk), so any matrix the
//! device memory holds works. [`Linear::plan`] validates shapes and returns the dispatches;
//! [`Linear::forward`] is the one-call convenience.

pub mod coop;
pub mod dp4a;
mod gather;
mod low_bit_q8;
mod precision;
mod quant_x;
mod shader;
mod tuning;
mod variants;

pub use coop::CoopTiling;
pub use precision::{ActivationPrecision, PrecisionsUsed};
pub use shader::Strategy;
pub use tuning::{GEMM_SMALL_GRID, coop_min_rows, gemm_tile};
use tuning::{GemmTiling, GemvTuning};

use crate::activation::Activation;
use crate::error::DeviceError;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Dispatch, Gpu, Kernel, record_pass};
use crate::tensor::{ActDType, Tensor};

/// Checks the input and output of a `y = x · Wᵀ` layer with `n` outputs and `k` inputs (any
/// weight representation): shapes, matching dtypes, at least one row.
pub fn validate_io(n: usize, k: usize, x: &Tensor, y: &Tensor) -> Result<()> {
    if x.cols != k {
        return Err(Error::shape(format!(
            "input has {} features, the layer expects {k}",
            x.cols
        )));
    }
    if y.cols != n || y.rows != x.rows {
        return Err(Error::shape(format!(
            "output is {} × {}, expected {} × {n}",
            y.rows, y.cols, x.rows
        )));
    }
    if x.dtype != y.dtype {
        return Err(Error::dtype(format!(
            "input is {:?} but output is {:?}",
            x.dtype, y.dtype
        )));
    }
    if x.rows == 0 {
        return Err(Error::invalid("input has no rows"));
    }
    Ok(())
}

/// Most activation rows that the portable choice still sends through GEMV kernels (in
/// slices of 8).
pub const GEMV_MAX_ROWS: usize = 64;

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
    activation: Option<Activation>,
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
        if let Some(b) = bias
            && b.len() != n
        {
            return Err(Error::shape(format!(
                "bias has {} values, the layer has {n} outputs",
                b.len()
            )));
        }
        let limit = limit.min(gpu.caps.max_storage_binding);
        let row_bytes = (weights.row_words() * 4) as u64;
        let rows_per_chunk = (limit / row_bytes) as usize;
        if rows_per_chunk == 0 {
            return Err(Error::Input(InputError::TooLarge {
                what: format!("one weight row ({n} × {k} {})", weights.format.name()),
                bytes: row_bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            }));
        }
        // Never round up to more rows than fit: `PackedWeights::rows` re-packs int4 scales
        // and zero points from index 0, so a chunk may start at any row, and a row's scales
        // and zero points take fewer bytes than its weights.
        let rows_per_chunk = rows_per_chunk.min(n);
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
            activation: None,
            bias,
        })
    }

    /// A layer over dense weights already on the device, laid out as [`PackedWeights`] of
    /// `format` F32 or F16 lay them out (rows of `ceil(k / block_k)` 16-byte blocks), in one
    /// binding: e.g. sparse weights written out dense for a pass of many rows.
    pub fn over_buffer(
        gpu: &Gpu,
        weights: wgpu::Buffer,
        format: WeightFormat,
        (n, k): (usize, usize),
        bias: Option<wgpu::Buffer>,
    ) -> Result<Self> {
        if !matches!(format, WeightFormat::F32 | WeightFormat::F16) {
            return Err(Error::invalid(format!(
                "a layer over a device buffer takes f32 or f16 weights, not {}",
                format.name()
            )));
        }
        let row_blocks = k.div_ceil(format.block_k());
        let bytes = (n * row_blocks * 16) as u64;
        gpu.check_binding("dense weights", bytes)?;
        if weights.size() < bytes {
            return Err(Error::shape(format!(
                "{} bytes of weights, {n} × {k} {} needs {bytes}",
                weights.size(),
                format.name()
            )));
        }
        Ok(Linear {
            format,
            n,
            k,
            weight_bytes: bytes,
            row_blocks,
            groups: 0,
            chunks: vec![Chunk {
                row0: 0,
                rows: n,
                weights,
                scales: None,
                zeros: None,
            }],
            bias,
            activation: None,
        })
    }

    /// Number of weight chunks (1 unless the weights exceed one binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The strategy `Auto` picks for `m` activation rows on `gpu` for this layer's format:
    /// where the adapter has tensor cores, the tensor-core GEMM from [`coop_min_rows`] rows;
    /// below that, and on other adapters, [`Linear::portable_strategy`].
    pub fn strategy_for(&self, gpu: &Gpu, m: usize) -> Strategy {
        if self.format != WeightFormat::F32
            && coop::available(gpu)
            && m >= coop_min_rows(self.format)
        {
            return Strategy::GemmCoop;
        }
        self.portable_strategy(gpu, m)
    }

    /// The strategy for `m` activation rows without tensor cores.
    ///
    /// Up to [`GEMV_MAX_ROWS`] rows run as GEMV dispatches of 8 rows each, which re-read the
    /// weights per slice but still beat the portable tiled GEMM there (H100, 8192²: one 8-row
    /// slice of int4 31 µs, f16 62 µs, against 1.4-1.6 ms for the GEMM at m = 32).
    ///
    /// Integer weights use int8 activations and `dot4I8Packed` where the adapter has it: on the
    /// H100 that made int4 GEMV 1.6× (m = 1) to 2.4× (m = 8) faster than decoding weights to
    /// floats (BENCHMARKS.md), at a cost in accuracy far below int4's own quantization error;
    /// int8 weights at one or two rows ran as fast with exact activations, so they keep them.
    /// Binary and ternary weights take int8 activations at every row count: at 1 to 2 bits a
    /// weight, decoding to floats costs far more instructions than the bytes take to arrive.
    /// `SPARQ_Q8=0` ([`crate::config::GemmConfig::q8`]) turns this off (exact f32 activations).
    pub fn portable_strategy(&self, gpu: &Gpu, m: usize) -> Strategy {
        if m > GEMV_MAX_ROWS {
            return Strategy::GemmTiled;
        }
        let int = match self.format {
            WeightFormat::Int4 { .. } => true,
            WeightFormat::Int8 => m > 2,
            // Their codes meet int8 activations with a mask and no multiply (low_bit_q8).
            f => low_bit_q8::Shape::of(f).is_some(),
        };
        let q8 = int && gpu.caps.dot4_i8 && gpu.config.gemm.q8;
        match (gpu.caps.subgroups, q8) {
            (true, true) => Strategy::GemvSubgroupQ8,
            (true, false) => Strategy::GemvSubgroup,
            (false, true) => Strategy::GemvWorkgroupQ8,
            (false, false) => Strategy::GemvWorkgroup,
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

    /// Applies `act` to every output in the kernels' epilogue: `y = act(x · Wᵀ + b)` saves
    /// the elementwise pass (a read and a write of y) that would follow.
    pub fn set_activation(&mut self, act: Option<Activation>) {
        self.activation = act;
    }

    /// The activation fused into the epilogue, if any.
    pub fn activation(&self) -> Option<Activation> {
        self.activation
    }

    /// Validates shapes and builds the dispatches that write `y = x · Wᵀ (+ bias)`.
    pub fn plan(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        choice: KernelChoice,
    ) -> Result<Vec<Dispatch>> {
        self.validate(x, y)?;
        let strategy = match choice {
            KernelChoice::Auto => self.strategy_for(gpu, x.rows),
            KernelChoice::Force(s) => s,
        };
        self.plan_with(gpu, x, y, strategy, None)
    }

    fn validate(&self, x: &Tensor, y: &Tensor) -> Result<()> {
        validate_io(self.n, self.k, x, y)
    }

    fn plan_with(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        y: &Tensor,
        strategy: Strategy,
        tiling: Option<CoopTiling>,
    ) -> Result<Vec<Dispatch>> {
        if strategy == Strategy::GemmDp4a {
            return self.plan_dp4a(gpu, x, y);
        }
        if strategy.needs_subgroups() && !gpu.caps.subgroups {
            return Err(Error::Device(DeviceError::MissingFeature {
                adapter: gpu.caps.name.clone(),
                feature: "SUBGROUP".into(),
            }));
        }
        let mut out = Vec::new();
        // Int8-activation GEMV reads a quantized copy of x that a first dispatch writes.
        let xq = if strategy.quantizes_activations() {
            let low_bit = low_bit_q8::Shape::of(self.format);
            let paired = match self.format {
                WeightFormat::Int4 { .. } => true,
                WeightFormat::Int8 => false,
                _ if low_bit.is_some() => false,
                f => {
                    return Err(Error::invalid(format!(
                        "{} weights have no int8-activation kernel",
                        f.name()
                    )));
                }
            };
            if !gpu.caps.dot4_i8 {
                return Err(Error::Device(DeviceError::MissingFeature {
                    adapter: gpu.caps.name.clone(),
                    feature: "WGSL dot4I8Packed".into(),
                }));
            }
            let (buf, d) = match low_bit {
                Some(shape) => low_bit_q8::quantize(gpu, x, shape, self.row_blocks)?,
                None => quant_x::quantize_rows(gpu, x, self.k.div_ceil(32), paired)?,
            };
            out.push(d);
            Some(buf)
        } else {
            None
        };
        // GEMV kernels take at most 8 rows per dispatch; larger inputs go in slices of 8.
        let slice = strategy.max_rows().min(x.rows);
        for m0 in (0..x.rows).step_by(slice) {
            let m = slice.min(x.rows - m0);
            for (ci, c) in self.chunks.iter().enumerate() {
                let last = ci + 1 == self.chunks.len();
                let inputs = Inputs {
                    x: xq.as_ref(),
                    binding4: None,
                };
                out.push(self.dispatch(gpu, (strategy, tiling), x, y, m0, m, c, last, inputs)?);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        gpu: &Gpu,
        (strategy, tiling): (Strategy, Option<CoopTiling>),
        x: &Tensor,
        y: &Tensor,
        m0: usize,
        m: usize,
        c: &Chunk,
        last_chunk: bool,
        inputs: Inputs<'_>,
    ) -> Result<Dispatch> {
        let x_buf = inputs.x.unwrap_or(&x.buffer);
        let b4 = inputs.binding4.or(c.zeros.as_ref());
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
        let act = x.dtype;
        let (vars, constants, grid) = self.variant(gpu, (strategy, tiling), act, m, n_out)?;
        let name = shader::variant_name(strategy, self.format, act, &vars);
        let format = self.format;
        LINEAR
            .launch(gpu)
            .label(format!(
                "{} {} {m}×{}×{}",
                strategy.name(),
                self.format.name(),
                self.n,
                self.k
            ))
            .shader(name, move || shader::source(strategy, format, act, &vars))
            .constants(&constants)
            .trusted()
            .params(&params)
            .buffers(&[
                Some(x_buf),
                Some(&c.weights),
                c.scales.as_ref(),
                b4,
                self.bias.as_ref(),
                Some(&y.buffer),
            ])
            .grid(grid)
            .build()
    }

    /// x vec4s per activation row that GEMV stages in workgroup memory at once: what fits
    /// beside `other_bytes` of workgroup memory (at most 32 KiB in all), never more than a row
    /// (see `tuning::x_chunk4`).
    fn x_chunk4(&self, gpu: &Gpu, m: usize, other_bytes: u64, staged: bool) -> i64 {
        let block4 = self.format.block_k() / 4;
        let row4 = self.row_blocks * block4;
        let storage = gpu.caps.workgroup_storage;
        tuning::x_chunk4(row4, block4, storage, m, other_bytes, staged)
    }

    /// The shader variables, override constants and grid of `strategy` for `m` rows and
    /// `n_out` output columns.
    #[allow(clippy::type_complexity)]
    fn variant(
        &self,
        gpu: &Gpu,
        (strategy, tiling): (Strategy, Option<CoopTiling>),
        act: ActDType,
        m: usize,
        n_out: usize,
    ) -> Result<(
        Vec<(&'static str, i64)>,
        Vec<(&'static str, f64)>,
        (u32, u32),
    )> {
        let mut constants: Vec<(&str, f64)> = vec![
            ("HAS_BIAS", self.bias.is_some() as u8 as f64),
            ("ACT", self.activation.map_or(0, Activation::code) as f64),
        ];
        constants.extend(shader::decoder_constants(self.format));
        let mut vars: Vec<(&str, i64)> = Vec::new();
        let grid = match strategy {
            Strategy::GemvSubgroup | Strategy::GemvSubgroupQ8 => {
                let t = if strategy.quantizes_activations() {
                    GemvTuning::for_q8(&gpu.config, self.format, m, true)
                } else {
                    GemvTuning::for_rows(&gpu.config, self.format, m, true)
                };
                let wg = t.workgroup.min(gpu.caps.max_invocations);
                let rows = (wg / gpu.caps.subgroup_min.max(1)).max(1) * t.rows_per_team;
                let chunk4 = self.x_chunk4(gpu, m, 0, t.x_staged);
                vars.extend(shader::gemv_vars(strategy, m, &t, chunk4));
                constants.extend([("WG", wg as f64), ("ROWS_PER_WG", rows as f64)]);
                gpu.grid((n_out as u32).div_ceil(rows))
            }
            Strategy::GemvWorkgroup | Strategy::GemvWorkgroupQ8 => {
                let t = if strategy.quantizes_activations() {
                    GemvTuning::for_q8(&gpu.config, self.format, m, false)
                } else {
                    GemvTuning::for_rows(&gpu.config, self.format, m, false)
                };
                let wg = t.workgroup.min(gpu.caps.max_invocations);
                let team = 32u32;
                let r = t.rows_per_team;
                let chunk4 = self.x_chunk4(gpu, m, (wg * m as u32 * r * 4) as u64, t.x_staged);
                vars.extend(shader::gemv_vars(strategy, m, &t, chunk4));
                constants.extend([("WG", wg as f64), ("TEAM", team as f64)]);
                gpu.grid((n_out as u32).div_ceil(wg / team * r))
            }
            Strategy::GemmTiled => {
                let t = GemmTiling::for_shape(gpu, self.format, m, n_out);
                vars.extend(t.vars());
                let gx = (n_out as u32).div_ceil(16 * t.tn);
                let gy = (m as u32).div_ceil(16 * t.tm);
                let max = gpu.caps.max_workgroups_per_dim;
                if gx > max || gy > max {
                    return Err(Error::Input(InputError::TooLarge {
                        what: format!("GEMM grid {gx} × {gy} workgroups"),
                        bytes: gx.max(gy) as u64,
                        limit_name: "max_compute_workgroups_per_dimension",
                        limit: max as u64,
                    }));
                }
                (gx, gy)
            }
            Strategy::GemmCoop => {
                let t = tiling.unwrap_or_else(|| coop::tiling_for(gpu, self.format, act, m, n_out));
                coop::prepare(gpu, self.format, &t, m, n_out, &mut vars)?
            }
            Strategy::GemmDp4a => {
                dp4a::check(gpu, self.format)?;
                dp4a::prepare(m, n_out, &mut vars)
            }
        };
        Ok((vars, constants, grid))
    }
}

/// Buffers a dispatch binds in place of the usual ones: quantized activations at binding 1,
/// and at binding 4 (zero points otherwise) the DP4A GEMM's row scales.
#[derive(Clone, Copy, Default)]
struct Inputs<'a> {
    x: Option<&'a wgpu::Buffer>,
    binding4: Option<&'a wgpu::Buffer>,
}

/// Every linear kernel: activations (or their int8 copy), weights, int4 scales, zero points
/// (or the DP4A GEMM's row scales), bias, output.
const LINEAR: Kernel<Params> = Kernel::new(
    "linear",
    &[
        Read("x"),
        Read("w"),
        Read("scales"),
        Read("zeros"),
        Read("bias"),
        ReadWrite("y"),
    ],
);

/// The params layouts of the linear family, for the layout test.
#[cfg(test)]
pub(crate) fn params_layouts() -> Vec<crate::gpu::ParamsLayout> {
    use crate::params_layout;
    vec![
        params_layout!(LINEAR.name, shader::LINEAR_IO, "Params", Params;
            n, k, row_blocks, groups, m, x_stride4, y_stride, n_out, y_offset, k4, row0, pad),
        quant_x::params_layout(),
        low_bit_q8::params_layout(),
        dp4a::params_layout(),
        gather::params_layout(),
    ]
}

/// Every WGSL module the linear kernels can ask for, as (pipeline name, WGSL or the template
/// error), for validating them offline (see `tests/shader_variants.rs`).
pub fn shader_variants() -> Vec<(String, Result<String>)> {
    let mut v = variants::variants();
    v.extend(gather::variants());
    v
}
