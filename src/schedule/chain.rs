//! A replica made of chained [`Linear`] layers (`x → L₁ → L₂ → …`, f32 activations): the
//! workload of the scheduler's tests and of `sparq bench --adapters`.
//!
//! Every layer runs the tiled GEMM kernel whatever the micro-batch size: its result for a
//! row does not depend on the other rows of the micro-batch, which the schedulers need to
//! return results bit-identical to a single-device run. The chain is a graph of linear steps
//! on the one executor ([`crate::graph::Executor`]): one plan per micro-batch size over
//! scratch slots reserved for `max_rows` up front, activations alternating between two of
//! them; two passes may be in flight, each read back through its own reader.

use super::{Finished, Replica};
use crate::Gpu;
use crate::error::{Error, Result};
use crate::formats::PackedWeights;
use crate::graph::{Executor, Pass, Step, Submitted};
use crate::matmul::{KernelChoice, Linear, Strategy};
use crate::tensor::stride_of;
use std::sync::Arc;

/// Plans kept at once: micro-batch sizes seen recently.
const MAX_PLANS: usize = 16;

/// Scratch slots: the input, and the two the layers' outputs alternate between.
const INPUT: &str = "chain_input";
const ACTS: [&str; 2] = ["chain_a", "chain_b"];

/// One layer of a chain: packed weights (`n × k`) and an optional bias of length `n`.
#[derive(Clone, Debug)]
pub struct ChainLayer {
    /// Weights in any format.
    pub weights: PackedWeights,
    /// Bias, one value per output.
    pub bias: Option<Vec<f32>>,
}

/// Chained linear layers on one device, double-buffered.
pub struct LinearChain {
    gpu: Arc<Gpu>,
    layers: Vec<Linear>,
    max_rows: usize,
    exec: Executor<usize>,
    /// The pass in flight in each of the two slots, with its rows.
    pending: [Option<(Submitted, usize)>; 2],
}

impl LinearChain {
    /// Uploads `layers` to `gpu`, with room for micro-batches of up to `max_rows` rows.
    pub fn new(gpu: &Arc<Gpu>, layers: &[ChainLayer], max_rows: usize) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::invalid("a chain needs at least one layer"));
        }
        if max_rows == 0 {
            return Err(Error::invalid("max_rows must be at least 1"));
        }
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].weights.n != pair[1].weights.k {
                return Err(Error::shape(format!(
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
        let widest = linears.iter().map(|l| l.n).max().unwrap_or(0);
        // Every slot at its largest up front: no plan is ever invalidated by growth.
        let mut exec = Executor::new(MAX_PLANS);
        let slots = exec.slots_mut();
        slots.reserve(gpu, INPUT, f32_bytes(linears[0].k))?;
        for name in ACTS {
            slots.reserve(gpu, name, f32_bytes(widest))?;
        }
        let out_bytes = f32_bytes(linears.last().map_or(0, |l| l.n));
        exec.reserve_readers(gpu, 2, out_bytes)?;
        gpu.check()?;
        Ok(LinearChain {
            gpu: gpu.clone(),
            layers: linears,
            max_rows,
            exec,
            pending: [None, None],
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
        self.exec.poison(&self.gpu);
    }

    /// The pass of `m` rows: every layer with the tiled GEMM, outputs alternating between
    /// the two activation slots.
    fn plan(
        layers: &[Linear],
        gpu: &Gpu,
        slots: &mut crate::graph::Slots,
        m: usize,
    ) -> Result<Pass> {
        let k = layers[0].k;
        let mut x = slots.tensor(gpu, INPUT, m, k)?;
        let input = x.buffer.clone();
        let mut dispatches = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let y = slots.tensor(gpu, ACTS[i % 2], m, layer.n)?;
            dispatches.extend(layer.plan(gpu, &x, &y, KernelChoice::Force(Strategy::GemmTiled))?);
            x = y;
        }
        Ok(Pass {
            steps: vec![Step::Compute(dispatches)],
            inputs: vec![input],
            outputs: vec![x],
        })
    }
}

impl Replica for LinearChain {
    type In = Vec<f32>;
    type Out = Vec<f32>;

    fn max_rows(&self) -> usize {
        self.max_rows
    }

    fn slots(&self) -> usize {
        self.pending.len()
    }

    fn start(&mut self, slot: usize, inputs: &[Vec<f32>]) -> Result<()> {
        let (k, max_rows) = (self.in_features(), self.max_rows);
        let m = inputs.len();
        if m == 0 || m > max_rows {
            return Err(Error::invalid(format!(
                "micro-batch of {m} rows; this chain takes 1..={max_rows}"
            )));
        }
        if let Some((i, r)) = inputs.iter().enumerate().find(|(_, r)| r.len() != k) {
            return Err(Error::shape(format!(
                "input row {i} has {} values, the chain takes {k}",
                r.len()
            )));
        }
        let n = self.pending.len();
        match self.pending.get(slot) {
            None => return Err(Error::invalid(format!("slot {slot} out of {n}"))),
            Some(Some(_)) => return Err(Error::invalid(format!("slot {slot} is still in flight"))),
            Some(None) => {}
        }
        let gpu = self.gpu.clone();
        // A lost device makes wgpu panic on buffer creation: report it before planning.
        gpu.check()?;
        let layers = &self.layers;
        self.exec
            .prepare(&gpu, &m, |gpu, slots| Self::plan(layers, gpu, slots, m))?;
        // Rows padded to the kernels' stride with zeros.
        let row = stride_of(k);
        let mut x = vec![0f32; m * row];
        for (r, src) in inputs.iter().enumerate() {
            x[r * row..r * row + k].copy_from_slice(src);
        }
        let submitted = self.exec.submit(&gpu, &m, &[bytemuck::cast_slice(&x)])?;
        self.pending[slot] = Some((submitted, m));
        Ok(())
    }

    fn finish(&mut self, slot: usize) -> Result<Finished<Vec<f32>>> {
        let (submitted, _) = self
            .pending
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| Error::invalid(format!("nothing was started in slot {slot}")))?;
        let (readout, reader) = submitted.read(&self.gpu)?;
        self.exec.recycle(reader);
        let started = std::time::Instant::now();
        let n_out = self.out_features();
        let values = readout.tensors.into_iter().next().unwrap_or_default();
        let outputs = values.chunks_exact(n_out).map(<[f32]>::to_vec).collect();
        Ok(Finished {
            outputs,
            compute_s: readout.gpu_seconds,
            readback_s: readout.copy_seconds + started.elapsed().as_secs_f64(),
        })
    }
}
