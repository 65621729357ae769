//! A [`Model`] as a [`Replica`]: text in, one output row (sentence vector) per text out, so a
//! [`super::Cluster`] spreads an embedding batch over several devices.

use super::{Finished, Replica};
use crate::Gpu;
use crate::error::{Error, Result};
use crate::matmul::{KernelChoice, Strategy};
use crate::model::{Batch, LoadOptions, Model};
use std::path::Path;
use std::sync::Arc;

/// One copy of a text model on one device.
///
/// Its linear layers run the tiled GEMM whatever the batch (`LoadOptions::kernel`): with
/// `Auto` the kernel, and so the last bits of a row's result, would depend on how many rows
/// share the micro-batch, and the scheduler promises results independent of the split.
pub struct ModelReplica {
    model: Model<'static>,
    max_rows: usize,
    pending: Option<(Vec<f32>, usize)>,
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
            kernel: KernelChoice::Force(Strategy::GemmTiled),
            ..options
        };
        Ok(ModelReplica {
            model: Model::load_shared(path, gpu.clone(), options)?,
            max_rows: max_rows.max(1),
            pending: None,
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

    fn start(&mut self, _slot: usize, inputs: &[String]) -> Result<()> {
        // A model pass is one submission that waits for its result: run it here and hand the
        // rows over in `finish` (so the report counts the whole pass as upload time).
        let out = self.model.forward(&Batch::Text(inputs.to_vec()))?;
        self.pending = Some((out.values, out.cols));
        Ok(())
    }

    fn finish(&mut self, _slot: usize) -> Result<Finished<Vec<f32>>> {
        let started = std::time::Instant::now();
        let (values, cols) = self
            .pending
            .take()
            .ok_or_else(|| Error::Invalid("finish without start".into()))?;
        let outputs = values.chunks(cols.max(1)).map(<[f32]>::to_vec).collect();
        Ok(Finished {
            outputs,
            compute_s: None,
            readback_s: started.elapsed().as_secs_f64(),
        })
    }
}
