//! The model runtime: load a model (weights, architecture, tokenizer) and run whole forward
//! passes on the GPU.
//!
//! ```no_run
//! use sparq::model::{Batch, Model};
//! # fn main() -> sparq::Result<()> {
//! let gpu = sparq::Gpu::from_env()?;
//! let model = Model::load("models/all-MiniLM-L6-v2", &gpu)?;
//! let out = model.forward(&Batch::text(["A sentence.", "Another one."]))?;
//! println!("{} vectors of {}", out.rows, out.cols);
//! # Ok(()) }
//! ```
//!
//! Each architecture is a folder (`bert/`, `mlp/`) implementing [`network::Network`] (the net
//! on the device) and [`network::Family`] (load, pack, shrink, calibrate). A forward pass is
//! planned once per shape signature (batch, padded sequence length) by the graph executor
//! ([`crate::graph`]): the dispatches with their bind groups, over scratch buffers that every
//! layer and every later call shares. Each call then writes its inputs, records the whole pass
//! into one command encoder with the copy of the results, and submits once. Sequence lengths
//! are padded to a multiple of [`SEQ_BUCKET`] (masked), so few plans are ever built.

mod batching;
// The harness of `sparq model-bench`: public for the binary, not an API.
#[doc(hidden)]
pub mod bench;
pub mod bert;
pub use bert::calibrate;
pub mod compress;
pub mod config;
pub mod decode;
mod exec;
pub mod generate;
mod input;
pub mod kv;
pub mod llama;
mod load_options;
pub mod loader;
pub mod mlp;
pub mod names;
pub mod network;
pub mod ops;
pub mod perplexity;
pub mod prefix;
pub mod reference;
pub mod sampling;
pub mod shrink;
mod similarity;
pub mod text;
pub mod tokenizer_source;
mod truncation;

pub use exec::Pending;
pub use similarity::{Rows, cosine, cosine_matrix};
pub use truncation::Encoded;

use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::{Dispatch, Gpu};
use crate::graph::{Executor, Signature};
use crate::tensor::Tensor;
use config::Architecture;
use loader::WeightFile;
use network::Network;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Sequence lengths are padded up to a multiple of this.
pub const SEQ_BUCKET: usize = 8;
/// Plans kept at once (least recently used dropped first).
const MAX_PLANS: usize = 16;

/// An input batch.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Batch {
    /// Sentences, tokenised with the model's tokenizer.
    Text(Vec<String>),
    /// Token ids per sequence (any lengths), with optional token types.
    Tokens {
        /// Ids.
        ids: Vec<Vec<u32>>,
        /// Token types (segments); zeros when absent.
        types: Option<Vec<Vec<u32>>>,
    },
    /// Feature rows (`rows × cols`, row-major) for a classifier.
    Features {
        /// Rows.
        rows: usize,
        /// Features per row.
        cols: usize,
        /// Values.
        data: Vec<f32>,
    },
}

impl Batch {
    /// A batch of sentences.
    pub fn text<S: AsRef<str>>(s: impl IntoIterator<Item = S>) -> Self {
        Batch::Text(s.into_iter().map(|s| s.as_ref().to_string()).collect())
    }
}

/// Results of a forward pass: one row per input.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Output {
    /// Inputs.
    pub rows: usize,
    /// Width of a result (embedding size or classes).
    pub cols: usize,
    /// Sentence vectors (encoder) or logits (classifier), `rows × cols`.
    pub values: Vec<f32>,
    /// Class probabilities (classifier only).
    pub probabilities: Option<Vec<f32>>,
    /// GPU time of the pass (timestamp queries), where the device has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_seconds: Option<f64>,
}

impl Output {
    /// Row `i` of the values.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }
}

/// Counters of the execution machinery (for tests and reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Forward passes run.
    pub forwards: u64,
    /// Queue submissions made by forward passes.
    pub submits: u64,
    /// Plans built (cache misses).
    pub plans_built: u64,
    /// Dispatches in the last forward pass.
    pub last_dispatches: usize,
    /// Bytes of the scratch buffers of its passes (`graph::Slots`).
    pub arena_bytes: u64,
}

struct State {
    exec: Executor<Signature>,
    forwards: u64,
}

/// Options of [`Model::load_with`]: `LoadOptions::default()` (f32 weights) with the builder
/// methods of its fields, e.g. `LoadOptions::default().format(WeightFormat::F16)`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Format of linear weights stored as floats (packed weights stay as stored).
    pub format: WeightFormat,
    /// Each row's result independent of the batch around it, to the last bit, as the
    /// data-parallel scheduler's bit-identity needs: every linear layer is then
    /// [`crate::linear::LinearOptions::batch_invariant`] and attention keeps one layout whatever the batch.
    /// Off, kernels are picked per shape for speed.
    pub batch_invariant: bool,
    /// Most rows (inputs) one forward pass takes; a larger batch runs as several passes,
    /// its sequences sorted by length first so that each pads little. `None`: as many as
    /// the device's binding limits hold.
    pub max_batch: Option<std::num::NonZeroUsize>,
    /// A `tokenizer.json` for text input, preferred to the tokenizer a packed file carries
    /// and to `tokenizer.json` beside the weights (see [`tokenizer_source`]).
    pub tokenizer: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            format: WeightFormat::F32,
            batch_invariant: false,
            max_batch: None,
            tokenizer: None,
        }
    }
}

/// A loaded model on a device.
pub struct Model<'g> {
    gpu: GpuRef<'g>,
    /// Its architecture.
    pub arch: Architecture,
    /// Format of its linear weights.
    pub format: WeightFormat,
    max_batch: Option<std::num::NonZeroUsize>,
    net: Box<dyn Network>,
    state: Mutex<State>,
}

/// Where a model's files are: the weights file and the directory of its companions
/// (`config.json`, `tokenizer.json`), for a model directory or a `.safetensors` file.
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf)> {
    if path.is_dir() {
        let w = path.join("model.safetensors");
        if !w.is_file() {
            return Err(Error::config(format!(
                "the directory {} has no model.safetensors: pass a model directory (with \
                 model.safetensors and config.json) or a .safetensors file",
                path.display()
            )));
        }
        Ok((w, path.to_path_buf()))
    } else if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok((path.to_path_buf(), dir))
    } else {
        Err(Error::config(format!("{} does not exist", path.display())))
    }
}

/// A tensor view sharing `t`'s buffer.
pub(crate) fn view(t: &Tensor) -> Tensor {
    Tensor {
        buffer: t.buffer.clone(),
        rows: t.rows,
        cols: t.cols,
        dtype: t.dtype,
    }
}

impl Model<'static> {
    /// Like [`Model::load_with`], on a device the model shares ownership of: a
    /// `Model<'static>` that can move to another thread with its device, as the data-parallel
    /// scheduler's replicas and a server's workers need. Use [`Model::load`] when one thread
    /// owns the device and the model lives no longer than it.
    pub fn load_shared(
        path: impl AsRef<Path>,
        gpu: std::sync::Arc<Gpu>,
        options: LoadOptions,
    ) -> Result<Self> {
        Self::load_on(path, GpuRef::Shared(gpu), options)
    }
}

/// The device a model runs on: borrowed from the caller, or shared through an `Arc`.
pub(crate) enum GpuRef<'g> {
    Borrowed(&'g Gpu),
    Shared(std::sync::Arc<Gpu>),
}

impl std::ops::Deref for GpuRef<'_> {
    type Target = Gpu;

    fn deref(&self) -> &Gpu {
        match self {
            GpuRef::Borrowed(g) => g,
            GpuRef::Shared(g) => g,
        }
    }
}

impl<'g> Model<'g> {
    /// Loads the model at `path` (a directory with `model.safetensors`, or the file itself)
    /// on `gpu`, which the model borrows, with the default [`LoadOptions`]: linear weights
    /// stored as floats stay f32, the format whose results match the original model most
    /// closely (ask for f16 or int8/int4 through [`Model::load_with`]); weights a packed file
    /// holds compressed load as stored. For a model that must outlive the borrow or move to
    /// another thread, see [`Model::load_shared`].
    pub fn load(path: impl AsRef<Path>, gpu: &'g Gpu) -> Result<Self> {
        Self::load_with(path, gpu, LoadOptions::default())
    }

    /// Loads the model at `path` with `options`. The architecture comes from sparq's JSON in
    /// the file's metadata, else from `config.json` beside it. The tokenizer for text input is
    /// `options.tokenizer`, else the one a packed file carries, else a `tokenizer.json`
    /// beside it ([`tokenizer_source`]); one that does not parse is an error here.
    pub fn load_with(path: impl AsRef<Path>, gpu: &'g Gpu, options: LoadOptions) -> Result<Self> {
        Self::load_on(path, GpuRef::Borrowed(gpu), options)
    }

    fn load_on(path: impl AsRef<Path>, gpu_ref: GpuRef<'g>, options: LoadOptions) -> Result<Self> {
        let gpu: &Gpu = &gpu_ref;
        let (weights, dir) = locate(path.as_ref())?;
        let file = WeightFile::open(&weights)?;
        let arch = match file.metadata(loader::CONFIG_KEY) {
            Some(json) => Architecture::from_sparq_json(json)?,
            None => Architecture::from_hf_dir(&dir)?,
        };
        let (format, max_batch) = (options.format, options.max_batch);
        let net = arch.family().load(gpu, &file, &dir, options)?;
        let family = arch.family();
        loader::check_unused_except(&[&file], &|n| family.expected_unused(n))?;
        gpu.check()?;
        Ok(Model {
            gpu: gpu_ref,
            arch,
            format,
            max_batch,
            net,
            state: Mutex::new(State {
                exec: Executor::new(MAX_PLANS),
                forwards: 0,
            }),
        })
    }

    /// Width of the results.
    pub fn output_dim(&self) -> usize {
        self.net.output_dim()
    }

    /// The formats its linear layers hold, sorted, each once: the requested format for
    /// weights stored as floats, the stored one for packed and sparse weights.
    pub fn layer_formats(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<String> = self
            .net
            .linear_layers()
            .iter()
            .map(|l| l.format_name())
            .collect();
        set.into_iter().collect()
    }

    /// The precisions the linear layers' kernels have read activations in over the passes
    /// planned so far ([`LinearLayer::activations`](crate::linear::LinearLayer::activations)):
    /// `[Int8]` where int4/int8 weights ran int8 GEMVs, `[F32]` for the batch-invariant tiled
    /// GEMM of the same weights; empty before the first pass.
    pub fn activation_precisions(&self) -> Vec<crate::matmul::ActivationPrecision> {
        let set: std::collections::BTreeSet<_> = self
            .net
            .linear_layers()
            .iter()
            .flat_map(|l| l.activations())
            .collect();
        set.into_iter().collect()
    }

    /// Bytes of parameters on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.net.weight_bytes()
    }

    /// Execution counters.
    pub fn stats(&self) -> Stats {
        let st = self.state.lock().unwrap();
        let e = st.exec.stats();
        Stats {
            forwards: st.forwards,
            submits: e.submits,
            plans_built: e.plans_built,
            last_dispatches: e.last_dispatches,
            arena_bytes: st.exec.slots().bytes(),
        }
    }

    /// Tokenises `texts` with the model's tokenizer (ids and types per sentence).
    #[allow(clippy::type_complexity)]
    pub fn tokenize(&self, texts: &[String]) -> Result<(Vec<Vec<u32>>, Vec<Vec<u32>>)> {
        let tok = self.text_tokenizer()?;
        Ok(encode(tok, texts)?.into_iter().unzip())
    }

    /// The tokenizer text input goes through (with its truncation), if the model has one.
    pub(crate) fn tokenizer(&self) -> Option<&tokenizers::Tokenizer> {
        self.net.tokenizer()
    }

    /// The tokenizer, or the error text input meets without one (naming where it looked).
    pub(crate) fn text_tokenizer(&self) -> Result<&tokenizers::Tokenizer> {
        self.net.tokenizer().ok_or_else(|| self.net.no_tokenizer())
    }

    /// Runs the forward pass of `batch` (one command encoder, one submission, when the
    /// batch fits one pass; see [`Model::submit`] for larger ones) and returns one row of
    /// results per input, in the batch's order.
    pub fn forward(&self, batch: &Batch) -> Result<Output> {
        self.wait(self.submit(batch)?)
    }

    /// Tokenises and uploads `batch` and submits its forward pass without waiting for it:
    /// [`Model::wait`] returns the results. Several passes may be in flight at once.
    /// A batch over `max_batch` rows ([`LoadOptions`]) or over the device's binding limits runs as
    /// several passes; its sequences are then sorted by length, so that each pass pads to
    /// its own longest, and the results still come back in the batch's order.
    pub fn submit(&self, batch: &Batch) -> Result<Pending> {
        let arranged = self.arrange(batch)?;
        self.submit_all(arranged.requests, arranged.order)
    }

    /// The `max_batch` of the [`LoadOptions`] this model was loaded with.
    pub fn max_batch(&self) -> Option<std::num::NonZeroUsize> {
        self.max_batch
    }

    /// Refuses, before anything is allocated, a (batch, sequence) shape that
    /// [`Model::with_plan`] cannot run in one pass on this device (or at all: a model
    /// without sequences).
    pub fn check_plan(&self, batch: usize, seq: usize) -> Result<()> {
        self.net.check_bench(&self.gpu, batch, seq)
    }

    /// The planned dispatches of a (batch, sequence) shape, for benchmarks: `record` gets
    /// them after the inputs (zero tokens of mask 1) were written. A shape one pass cannot
    /// hold on this device is refused before anything is allocated; a model without
    /// sequences (the MLP) is an error.
    pub fn with_plan<R>(
        &self,
        batch: usize,
        seq: usize,
        record: impl FnOnce(&[Dispatch]) -> Result<R>,
    ) -> Result<R> {
        let request = self.net.bench_request(&self.gpu, batch, seq)?;
        let key = request.signature;
        self.wait(self.submit_request(request)?)?;
        let st = self.state.lock().unwrap();
        let dispatches = st
            .exec
            .plan(&key)
            .and_then(|p| p.only_dispatches())
            .ok_or_else(|| Error::invalid("plan missing"))?;
        record(dispatches)
    }
}

/// The padded length of a batch whose longest sequence has `longest` tokens.
pub(crate) fn bucket(longest: usize) -> usize {
    longest
        .next_multiple_of(SEQ_BUCKET)
        .min(ops::MAX_SEQ)
        .max(longest)
}

/// Token ids and types of each of `texts`, as a BERT model tokenises a [`Batch::Text`]
/// (with the tokenizer of [`load_tokenizer`]), tokenising only the prefix of a long text that
/// its truncation keeps ([`prefix`]).
pub fn encode(tok: &tokenizers::Tokenizer, texts: &[String]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    prefix::encode(tok, texts)
}

/// The tokenizer at `path`, truncating to `c`'s longest sequence and not padding: the one a
/// BERT model loads from its `tokenizer.json`.
pub fn load_tokenizer(path: &Path, c: &config::BertConfig) -> Result<tokenizers::Tokenizer> {
    let t = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
    for_bert(t, c)
}

/// `t` truncating to `c`'s longest sequence and not padding.
pub(crate) fn for_bert(
    mut t: tokenizers::Tokenizer,
    c: &config::BertConfig,
) -> Result<tokenizers::Tokenizer> {
    // sparq pads itself (per batch, to its bucket); the tokenizer only truncates.
    t.with_padding(None);
    let max = c
        .max_seq_length
        .unwrap_or(c.max_position_embeddings)
        .min(c.max_position_embeddings);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max,
        ..Default::default()
    }))
    .map_err(|e| Error::config(format!("tokenizer truncation: {e}")))?;
    Ok(t)
}
