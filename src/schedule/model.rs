//! A [`Model`] as a [`Replica`]: text in, one output row (sentence vector) per text out, so a
//! [`super::Cluster`] spreads an embedding batch over several devices.

use super::{Finished, Replica};
use crate::Gpu;
use crate::error::{Error, Result};
use crate::model::{Batch, LoadOptions, Model, Pending};
use std::path::Path;
use std::sync::Arc;

/// One copy of a text model on one device, double-buffered: while the GPU runs one
/// micro-batch, the next is tokenised, uploaded and submitted and the one before is read back
/// (see [`Model::submit`]).
///
/// It is loaded batch-invariant (`LoadOptions::batch_invariant`): with kernels picked per
/// shape, the last bits of a row's result would depend on how many rows share the
/// micro-batch, and the scheduler promises results independent of the split (dense layers
/// then run the tiled GEMM, sparse layers their one kernel per format, whose rows do not
/// depend on the batch either: `tests/sparse_kernels.rs`, `rows_do_not_depend_on_the_batch`).
pub struct ModelReplica {
    model: Model<'static>,
    max_rows: usize,
    pending: [Option<Pending>; 2],
}

impl ModelReplica {
    /// Loads the model at `path` on `gpu` with weights in `options.format`; micro-batches of at
    /// most `max_rows` texts.
    pub fn load(
        path: impl AsRef<Path>,
        gpu: &Arc<Gpu>,
        options: LoadOptions,
        max_rows: usize,
    ) -> Result<Self> {
        let options = LoadOptions {
            batch_invariant: true,
            ..options
        };
        Ok(ModelReplica {
            model: Model::load_shared(path, gpu.clone(), options)?,
            max_rows: max_rows.max(1),
            pending: [None, None],
        })
    }

    /// The model.
    pub fn model(&self) -> &Model<'static> {
        &self.model
    }
}

impl Replica for ModelReplica {
    type In = String;
    type Out = Vec<f32>;

    fn max_rows(&self) -> usize {
        self.max_rows
    }

    fn slots(&self) -> usize {
        self.pending.len()
    }

    fn start(&mut self, slot: usize, inputs: &[String]) -> Result<()> {
        let n = self.pending.len();
        let free = self
            .pending
            .get_mut(slot)
            .ok_or_else(|| Error::invalid(format!("slot {slot} out of {n}")))?;
        if free.is_some() {
            return Err(Error::invalid(format!("slot {slot} is still in flight")));
        }
        *free = Some(self.model.submit(&Batch::Text(inputs.to_vec()))?);
        Ok(())
    }

    fn finish(&mut self, slot: usize) -> Result<Finished<Vec<f32>>> {
        let pending = self
            .pending
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| Error::invalid(format!("nothing was started in slot {slot}")))?;
        // `wait` blocks until the pass is done: time only the copy out after it.
        let out = self.model.wait(pending)?;
        let started = std::time::Instant::now();
        let outputs = out
            .values
            .chunks(out.cols.max(1))
            .map(<[f32]>::to_vec)
            .collect();
        Ok(Finished {
            outputs,
            compute_s: out.gpu_seconds,
            readback_s: started.elapsed().as_secs_f64(),
        })
    }
}
