//! The model interface: what the runtime ([`super::Model`]) needs of a network on the device
//! ([`Network`]), and what the tools need of an architecture ([`Family`]: load, pack, shrink,
//! calibrate). An architecture is one folder implementing both (see `bert/` and `mlp/`); the
//! one place that names them all is [`Architecture::family`].

use super::compress::{Floats, Linears};
use super::config::Architecture;
use super::loader::{Store, WeightFile};
use super::{Batch, LoadOptions, Output};
use crate::error::{Error, Result};
use crate::formats::gptq::Hessian;
use crate::gpu::Gpu;
use crate::graph::{Pass, Readout, Signature, Slots};
use crate::linear::LinearLayer;
use std::collections::HashMap;
use std::path::Path;

/// A batch made ready for the device: the plan it runs, its input bytes (one string per input
/// of the plan) and the rows of results it yields.
pub struct Request {
    /// The plan's signature.
    pub signature: Signature,
    /// Bytes written to the plan's inputs.
    pub inputs: Vec<Vec<u8>>,
    /// Result rows (one per input of the batch).
    pub rows: usize,
}

/// A network loaded on a device.
pub trait Network: Send + Sync {
    /// Width of a result row.
    fn output_dim(&self) -> usize;
    /// Every linear layer, in order.
    fn linear_layers(&self) -> Vec<&LinearLayer>;
    /// Bytes of parameters on the device.
    fn weight_bytes(&self) -> u64;
    /// The tokenizer for text input, if the network reads text and has one.
    fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        None
    }
    /// The error text input meets when [`Network::tokenizer`] is `None`.
    fn no_tokenizer(&self) -> Error {
        Error::invalid("this model does not read text")
    }
    /// Checks `batch` and turns it into requests, in order, each small enough for one pass
    /// on `gpu` (typed errors for bad input): a batch over the device's binding limits is
    /// split by rows (see [`rows_per_pass`]), and the outputs of the passes concatenate to
    /// the batch's.
    fn requests(&self, gpu: &Gpu, batch: &Batch) -> Result<Vec<Request>>;
    /// Plans the pass of `signature` over `slots`.
    fn plan(&self, gpu: &Gpu, slots: &mut Slots, signature: Signature) -> Result<Pass>;
    /// The results of a request of `rows` rows from its pass's outputs.
    fn output(&self, rows: usize, readout: Readout) -> Result<Output>;
    /// A request of `batch` sequences of `seq` tokens in one pass, for benchmarks replaying
    /// a plan, refused before anything is allocated when the pass does not fit `gpu`; an
    /// error for networks without sequences.
    fn bench_request(&self, gpu: &Gpu, batch: usize, seq: usize) -> Result<Request> {
        self.check_bench(gpu, batch, seq)?;
        Err(Error::invariant(
            "a network that passes check_bench builds its request",
        ))
    }
    /// Refuses, before anything is allocated, a [`Network::bench_request`] that one pass on
    /// `gpu` cannot hold; an error for networks without sequences.
    fn check_bench(&self, _gpu: &Gpu, _batch: usize, _seq: usize) -> Result<()> {
        Err(Error::invalid(
            "model-bench times encoders (text models, by batch and sequence length); \
             this model does not read token sequences",
        ))
    }
}

/// Most rows one pass takes on `gpu` when a row needs `row_bytes` of the pass's largest
/// buffer, with rows padded as [`crate::model::decode::bucket_rows`] pads them when `padded`;
/// 0 when not even one row fits.
pub fn rows_per_pass(gpu: &Gpu, row_bytes: u64, padded: bool) -> usize {
    let limit = gpu.caps.max_storage_binding.min(gpu.caps.max_buffer);
    let cap = usize::try_from(limit / row_bytes.max(1)).unwrap_or(usize::MAX);
    match cap {
        _ if !padded => cap,
        0 => 0,
        // `bucket_rows` pads up to a multiple of 64 from 64 rows, to a power of two below.
        64.. => cap / 64 * 64,
        _ => 1 << cap.ilog2(),
    }
}

/// `rows` split into consecutive ranges of at most `per_pass` (at least one range).
pub(crate) fn passes(rows: usize, per_pass: usize) -> Vec<std::ops::Range<usize>> {
    let per = per_pass.max(1);
    (0..rows.div_ceil(per).max(1))
        .map(|p| p * per..((p + 1) * per).min(rows))
        .collect()
}

/// Neurons that [`super::shrink::drop_neurons`] cuts: per hidden layer, the tensors whose rows
/// go (weight and bias of `hidden[i]` rows) and the weight whose matching columns go.
pub struct NeuronCuts {
    /// (input weight, input bias, output weight) per hidden layer.
    pub tensors: Vec<(String, String, String)>,
    /// Neurons of each hidden layer before the cut.
    pub hidden: Vec<usize>,
    /// Neurons each keeps.
    pub kept: Vec<usize>,
    /// The architecture of the smaller model.
    pub arch: Architecture,
}

/// An architecture's parameters, with what each tool does with them.
pub trait Family {
    /// Checks every parameter.
    fn validate(&self) -> Result<()>;
    /// Loads the network of `file` (companions such as a tokenizer from `dir`).
    fn load(
        &self,
        gpu: &Gpu,
        file: &WeightFile,
        dir: &Path,
        options: LoadOptions,
    ) -> Result<Box<dyn Network>>;
    /// Every tensor `sparq pack` writes: linear weights through `store` (weights the file holds
    /// packed stay as they are), the rest as f32.
    fn pack(&self, file: &WeightFile, store: &mut Store<'_>) -> Result<(Floats, Linears)>;
    /// Whether the tensor `name`, when the model does not read it, is one its checkpoints are
    /// known to carry besides the model (a pooler or pre-training head): not worth a warning.
    fn expected_unused(&self, _name: &str) -> bool {
        false
    }
    /// Whether the linear weight `name` must stay dense when `sparq pack` prunes (a
    /// decoder's embedding, which a row gather reads).
    fn dense_only(&self, _name: &str) -> bool {
        false
    }
    /// What dropping the fraction `sparsity` of hidden neurons cuts.
    fn neuron_cuts(&self, file: &WeightFile, sparsity: f64) -> Result<NeuronCuts>;
    /// Calibration sums of each linear weight's inputs, keyed by the tensor name `pack`
    /// stores it under, over `texts` tokenised by the tokenizer in `dir`; with the tokens seen.
    /// Calls `progress(done, total, label)` before each step (a layer of a text, the total
    /// known from the first call) and `(total, total, "done")` at the end.
    fn calibrate(
        &self,
        _file: &WeightFile,
        _dir: &Path,
        _texts: &[String],
        _progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<(HashMap<String, Hessian>, usize)> {
        Err(Error::invalid(
            "--calibrate needs a text model (BERT with tokenizer.json)",
        ))
    }
}

impl Architecture {
    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        self.family().validate()
    }

    /// What this architecture's folder implements: loading, packing, shrinking, calibration.
    /// The one place that names every architecture.
    pub fn family(&self) -> &dyn Family {
        match self {
            Architecture::Bert(c) => c,
            Architecture::Mlp(c) => c,
            Architecture::Llama(c) => c,
        }
    }
}
