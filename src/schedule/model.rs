//! A [`Model`] as a [`Replica`]: text (or token ids, [`TokenReplica`]) in, one output row
//! (sentence vector) per input out, so a [`super::Cluster`] spreads an embedding batch over
//! several devices.

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
        Self::load_as_given(path, gpu, options, max_rows)
    }

    /// [`ModelReplica::load`] with `options` untouched (batch invariance included).
    fn load_as_given(
        path: impl AsRef<Path>,
        gpu: &Arc<Gpu>,
        options: LoadOptions,
        max_rows: usize,
    ) -> Result<Self> {
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

    fn check_batch(inputs: &[Self::In]) -> Result<()> {
        super::refuse_empty(inputs)
    }

    fn max_rows(&self) -> usize {
        self.max_rows
    }

    fn slots(&self) -> usize {
        self.pending.len()
    }

    fn start(&mut self, slot: usize, inputs: &[String]) -> Result<()> {
        self.start_batch(slot, &Batch::Text(inputs.to_vec()))
    }

    fn finish(&mut self, slot: usize) -> Result<Finished<Vec<f32>>> {
        self.finish_slot(slot)
    }
}

impl ModelReplica {
    /// Submits `batch` into buffer slot `slot` (free, or an error).
    fn start_batch(&mut self, slot: usize, batch: &Batch) -> Result<()> {
        let n = self.pending.len();
        let free = self
            .pending
            .get_mut(slot)
            .ok_or_else(|| Error::invalid(format!("slot {slot} out of {n}")))?;
        if free.is_some() {
            return Err(Error::invalid(format!("slot {slot} is still in flight")));
        }
        *free = Some(self.model.submit(batch)?);
        Ok(())
    }

    /// Waits for the pass in slot `slot` and splits its output into rows.
    fn finish_slot(&mut self, slot: usize) -> Result<Finished<Vec<f32>>> {
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

/// One tokenised input row of a [`TokenReplica`]: ids and token types, both already truncated
/// to the model's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token types (segments), one per id.
    pub types: Vec<u32>,
}

/// A [`ModelReplica`] fed token ids instead of text: whoever builds the rows tokenises once
/// (and can count the tokens), as [`super::embedding::EmbeddingService`] does. Rows pass
/// through [`Model::submit`]'s [`Batch::Tokens`] unchanged, so a row equal to a text's
/// tokenisation gives that text's vector, bit for bit; rows the model refuses (empty, longer
/// than its position table, ids outside the vocabulary) are input errors.
pub struct TokenReplica(ModelReplica);

impl TokenReplica {
    /// Loads the model at `path` on `gpu` with `options` as given; micro-batches of at most
    /// `max_rows` rows. Unlike [`ModelReplica::load`] it is batch-invariant only when
    /// `options.batch_invariant` says so: a server trades the last bits of a row's result
    /// (which then depend on the rows sharing its pass) for the fastest kernel per shape.
    pub fn load(
        path: impl AsRef<Path>,
        gpu: &Arc<Gpu>,
        options: LoadOptions,
        max_rows: usize,
    ) -> Result<Self> {
        ModelReplica::load_as_given(path, gpu, options, max_rows).map(TokenReplica)
    }

    /// The model.
    pub fn model(&self) -> &Model<'static> {
        self.0.model()
    }
}

impl Replica for TokenReplica {
    type In = TokenRow;
    type Out = Vec<f32>;

    fn check_batch(inputs: &[Self::In]) -> Result<()> {
        super::refuse_empty(inputs)
    }

    fn max_rows(&self) -> usize {
        self.0.max_rows
    }

    fn slots(&self) -> usize {
        self.0.pending.len()
    }

    fn start(&mut self, slot: usize, inputs: &[TokenRow]) -> Result<()> {
        let batch = Batch::Tokens {
            ids: inputs.iter().map(|r| r.ids.clone()).collect(),
            types: Some(inputs.iter().map(|r| r.types.clone()).collect()),
        };
        self.0.start_batch(slot, &batch)
    }

    fn finish(&mut self, slot: usize) -> Result<Finished<Vec<f32>>> {
        self.0.finish_slot(slot)
    }
}
