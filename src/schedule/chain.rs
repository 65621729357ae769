//! A replica made of chained [`Linear`] layers (`x → L₁ → L₂ → …`, f32 activations): the
//! workload of the scheduler's tests and of `sparq bench --adapters`.
//!
//! Every layer runs the tiled GEMM kernel whatever the micro-batch size: its result for a
//! row does not depend on the other rows of the micro-batch, which the schedulers need to
//! return results bit-identical to a single-device run. Each of the two buffer slots has its
//! own input, activation and read-back buffers, so one micro-batch can be uploaded and another
//! read back while a third computes.

use super::{Finished, Replica};
use crate::Gpu;
use crate::error::{Error, Result};
use crate::formats::PackedWeights;
use crate::gpu::{PassStamps, map_read, record_pass};
use crate::matmul::{KernelChoice, Linear, Strategy};
use crate::tensor::{ActDType, Tensor, stride_of};
use std::sync::Arc;
use std::time::Instant;

/// One layer of a chain: packed weights (`n × k`) and an optional bias of length `n`.
#[derive(Clone, Debug)]
pub struct ChainLayer {
    /// Weights in any format.
    pub weights: PackedWeights,
    /// Bias, one value per output.
    pub bias: Option<Vec<f32>>,
}

/// The buffers of one in-flight micro-batch.
struct Slot {
    x: wgpu::Buffer,
    acts: Vec<wgpu::Buffer>,
    staging: wgpu::Buffer,
    timer: Option<PassStamps>,
    pending: Option<(wgpu::SubmissionIndex, usize)>,
}

/// Chained linear layers on one device, double-buffered.
pub struct LinearChain {
    gpu: Arc<Gpu>,
    layers: Vec<Linear>,
    max_rows: usize,
    slots: Vec<Slot>,
}

impl LinearChain {
    /// Uploads `layers` to `gpu`, with room for micro-batches of up to `max_rows` rows.
    pub fn new(gpu: &Arc<Gpu>, layers: &[ChainLayer], max_rows: usize) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Invalid("a chain needs at least one layer".into()));
        }
        if max_rows == 0 {
            return Err(Error::Invalid("max_rows must be at least 1".into()));
        }
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].weights.n != pair[1].weights.k {
                return Err(Error::Shape(format!(
                    "layer {i} has {} outputs but layer {} takes {} inputs",
                    pair[0].weights.n,
                    i + 1,
                    pair[1].weights.k
                )));
            }
        }
        let linears = layers
            .iter()
            .map(|l| Linear::new(gpu, &l.weights, l.bias.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        let f32_bytes = |cols: usize| (max_rows * stride_of(cols) * 4) as u64;
        let out_bytes = f32_bytes(linears.last().map_or(0, |l| l.n));
        let slots = (0..2)
            .map(|_| {
                let acts = linears
                    .iter()
                    .map(|l| gpu.storage("chain activations", f32_bytes(l.n)))
                    .collect::<Result<Vec<_>>>()?;
                let staging_bytes = PassStamps::staging_bytes(out_bytes);
                gpu.check_binding("chain read-back", staging_bytes)?;
                let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("chain read-back"),
                    size: staging_bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let timer = PassStamps::new(gpu, "chain timer");
                Ok(Slot {
                    x: gpu.storage("chain input", f32_bytes(linears[0].k))?,
                    acts,
                    staging,
                    timer,
                    pending: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        gpu.check()?;
        Ok(LinearChain {
            gpu: gpu.clone(),
            layers: linears,
            max_rows,
            slots,
        })
    }

    /// Input features of the first layer.
    pub fn in_features(&self) -> usize {
        self.layers[0].k
    }

    /// Output features of the last layer.
    pub fn out_features(&self) -> usize {
        self.layers[self.layers.len() - 1].n
    }

    /// The device it lives on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Fills every activation and read-back buffer with NaN bit patterns (for tests: a row
    /// the kernels fail to write cannot pass for a result).
    pub fn poison(&self) {
        for s in &self.slots {
            for b in s.acts.iter().chain([&s.staging]) {
                self.gpu
                    .queue
                    .write_buffer(b, 0, &vec![0xFFu8; b.size() as usize]);
            }
        }
    }

    fn slot(&mut self, slot: usize) -> Result<&mut Slot> {
        let n = self.slots.len();
        self.slots
            .get_mut(slot)
            .ok_or_else(|| Error::Invalid(format!("slot {slot} out of {n}")))
    }
}

impl Replica for LinearChain {
    type In = Vec<f32>;
    type Out = Vec<f32>;

    fn max_rows(&self) -> usize {
        self.max_rows
    }

    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn start(&mut self, slot: usize, inputs: &[Vec<f32>]) -> Result<()> {
        let (k, n_out, max_rows) = (self.in_features(), self.out_features(), self.max_rows);
        let m = inputs.len();
        if m == 0 || m > max_rows {
            return Err(Error::Invalid(format!(
                "micro-batch of {m} rows; this chain takes 1..={max_rows}"
            )));
        }
        if let Some((i, r)) = inputs.iter().enumerate().find(|(_, r)| r.len() != k) {
            return Err(Error::Shape(format!(
                "input row {i} has {} values, the chain takes {k}",
                r.len()
            )));
        }
        let gpu = self.gpu.clone();
        // A lost device makes wgpu panic on buffer creation: report it before planning.
        gpu.check()?;
        let layers = std::mem::take(&mut self.layers);
        let result = (|| {
            let s = self.slot(slot)?;
            if s.pending.is_some() {
                return Err(Error::Invalid(format!("slot {slot} is still in flight")));
            }
            // Rows go straight into wgpu's staging memory (one host copy, padding zeroed).
            let row_bytes = stride_of(k) * 4;
            let size = wgpu::BufferSize::new((m * row_bytes) as u64)
                .ok_or_else(|| Error::Invalid("empty micro-batch".into()))?;
            let mut staged = gpu
                .queue
                .write_buffer_with(&s.x, 0, size)
                .ok_or_else(|| Error::Gpu("could not stage the input upload".into()))?;
            let zeros = [0u8; 16];
            for (r, src) in inputs.iter().enumerate() {
                let at = r * row_bytes;
                staged
                    .slice(at..at + k * 4)
                    .copy_from_slice(bytemuck::cast_slice(src));
                staged
                    .slice(at + k * 4..at + row_bytes)
                    .copy_from_slice(&zeros[..row_bytes - k * 4]);
            }
            drop(staged);
            let view = |buffer: &wgpu::Buffer, cols| Tensor {
                buffer: buffer.clone(),
                rows: m,
                cols,
                dtype: ActDType::F32,
            };
            let mut dispatches = Vec::new();
            let mut x = view(&s.x, k);
            for (layer, act) in layers.iter().zip(&s.acts) {
                let y = view(act, layer.n);
                dispatches.extend(layer.plan(
                    &gpu,
                    &x,
                    &y,
                    KernelChoice::Force(Strategy::GemmTiled),
                )?);
                x = y;
            }
            let mut enc = gpu.encoder("chain");
            record_pass(
                &mut enc,
                &dispatches,
                s.timer.as_ref().map(PassStamps::writes),
            );
            let out_bytes = (m * stride_of(n_out) * 4) as u64;
            enc.copy_buffer_to_buffer(&x.buffer, 0, &s.staging, 0, out_bytes);
            if let Some(stamps) = &s.timer {
                stamps.copy_to(&mut enc, &s.staging, out_bytes);
            }
            let index = gpu.queue.submit([enc.finish()]);
            s.pending = Some((index, m));
            gpu.check()
        })();
        self.layers = layers;
        result
    }

    fn finish(&mut self, slot: usize) -> Result<Finished<Vec<f32>>> {
        let gpu = self.gpu.clone();
        let n_out = self.out_features();
        let s = self.slot(slot)?;
        let (index, m) = s
            .pending
            .take()
            .ok_or_else(|| Error::Invalid(format!("nothing was started in slot {slot}")))?;
        let stride = stride_of(n_out);
        let out_bytes = (m * stride * 4) as u64;
        let end = PassStamps::mapped_bytes(s.timer.as_ref(), out_bytes);
        map_read(&gpu, &s.staging.slice(..end), index)?;
        let t = Instant::now();
        let (outputs, compute_s) = {
            let view = s
                .staging
                .slice(..end)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            let vals: &[f32] = bytemuck::cast_slice(&view[..out_bytes as usize]);
            let outputs: Vec<Vec<f32>> = vals
                .chunks_exact(stride)
                .map(|r| r[..n_out].to_vec())
                .collect();
            let compute_s = s
                .timer
                .as_ref()
                .map(|_| PassStamps::seconds(&gpu, &view, out_bytes));
            (outputs, compute_s)
        };
        s.staging.unmap();
        Ok(Finished {
            outputs,
            compute_s,
            readback_s: t.elapsed().as_secs_f64(),
        })
    }
}
