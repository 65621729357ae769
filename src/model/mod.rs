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
//! A forward pass is planned once per (batch, padded sequence length): the dispatches with
//! their bind groups, over intermediate buffers from an [`arena::Arena`] that every layer and
//! every later call shares. Each call then writes its inputs, records the whole pass into one
//! command encoder with the copy of the results, and submits once. Sequence lengths are
//! padded to a multiple of [`SEQ_BUCKET`] (masked), so few plans are ever built.

pub mod arena;
mod attention;
pub mod bench;
pub mod bert;
pub mod calibrate;
pub mod compress;
pub mod config;
pub mod dense;
mod exec;
pub mod loader;
pub mod mlp;
pub mod names;
pub mod ops;
pub mod reference;
pub mod shrink;
pub mod sparse_file;

pub use exec::Pending;

use crate::error::{Error, Result};
use crate::formats::WeightFormat;
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::KernelChoice;
use crate::tensor::Tensor;
use config::Architecture;
use loader::WeightFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Sequence lengths are padded up to a multiple of this.
pub const SEQ_BUCKET: usize = 8;
/// Plans kept at once (least recently built dropped first).
const MAX_PLANS: usize = 16;

/// A planned forward pass.
pub struct Plan {
    /// Every dispatch, in order.
    pub dispatches: Vec<Dispatch>,
    /// Where the inputs are written (token rows or features).
    pub input: wgpu::Buffer,
    /// Results read back after the pass.
    pub outputs: Vec<Tensor>,
}

/// An input batch.
#[derive(Clone, Debug)]
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
    /// Bytes of the intermediate-buffer arena.
    pub arena_bytes: u64,
}

enum Net {
    Bert(Box<bert::Bert>),
    Mlp(mlp::Mlp),
}

#[derive(Default)]
struct State {
    arena: arena::Arena,
    plans: HashMap<(usize, usize), Plan>,
    order: Vec<(usize, usize)>,
    readers: Vec<exec::Reader>,
    stats: Stats,
}

/// Options of [`Model::load_with`].
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Format of linear weights stored as floats (packed weights stay as stored).
    pub format: WeightFormat,
    /// Kernel of every linear layer. `Auto` picks per shape, so one row's result can change
    /// in the last bits with the batch around it; a forced strategy (e.g. the tiled GEMM)
    /// makes each row's result independent of the batch, as the data-parallel scheduler's
    /// bit-identity needs (sparse layers then keep their sparse kernel and attention one
    /// layout).
    pub kernel: KernelChoice,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            format: WeightFormat::F32,
            kernel: KernelChoice::Auto,
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
    net: Net,
    tokenizer: Option<tokenizers::Tokenizer>,
    state: Mutex<State>,
}

/// Where a model's files are: the weights file and the directory of its companions.
fn locate(path: &Path) -> Result<(PathBuf, PathBuf)> {
    if path.is_dir() {
        let w = path.join("model.safetensors");
        if !w.is_file() {
            return Err(Error::Config(format!(
                "{} has no model.safetensors",
                path.display()
            )));
        }
        Ok((w, path.to_path_buf()))
    } else if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok((path.to_path_buf(), dir))
    } else {
        Err(Error::Config(format!("{} does not exist", path.display())))
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
    /// Like [`Model::load_with`], on a device the model shares ownership of: a model that can
    /// move to another thread with its device (the data-parallel scheduler's replicas).
    pub fn load_shared(
        path: impl AsRef<Path>,
        gpu: std::sync::Arc<Gpu>,
        options: LoadOptions,
    ) -> Result<Self> {
        Self::load_on(path, GpuRef::Shared(gpu), options)
    }
}

/// The device a model runs on: borrowed from the caller, or shared through an `Arc`.
enum GpuRef<'g> {
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
    /// with f32 linear weights.
    pub fn load(path: impl AsRef<Path>, gpu: &'g Gpu) -> Result<Self> {
        Self::load_with(path, gpu, LoadOptions::default())
    }

    /// Loads the model at `path` with `options`. The architecture comes from sparq's JSON in
    /// the file's metadata, else from `config.json` beside it; a `tokenizer.json` beside it
    /// is loaded for text input.
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
        let net = match &arch {
            Architecture::Bert(c) => Net::Bert(Box::new(bert::Bert::load(
                gpu,
                &file,
                c.clone(),
                options.format,
                options.kernel,
            )?)),
            Architecture::Mlp(c) => Net::Mlp(mlp::Mlp::load(
                gpu,
                &file,
                c.clone(),
                options.format,
                options.kernel,
            )?),
        };
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = match (&arch, tok_path.is_file()) {
            (Architecture::Bert(c), true) => Some(load_tokenizer(&tok_path, c)?),
            _ => None,
        };
        gpu.check()?;
        Ok(Model {
            gpu: gpu_ref,
            arch,
            format: options.format,
            net,
            tokenizer,
            state: Mutex::new(State::default()),
        })
    }

    /// Width of the results.
    pub fn output_dim(&self) -> usize {
        match &self.net {
            Net::Bert(b) => b.config.hidden_size,
            Net::Mlp(m) => m.classes(),
        }
    }

    /// The formats its linear layers hold, sorted, each once: the requested format for
    /// weights stored as floats, the stored one for packed and sparse weights.
    pub fn layer_formats(&self) -> Vec<String> {
        let layers = match &self.net {
            Net::Bert(b) => b.linear_layers(),
            Net::Mlp(m) => m.linear_layers(),
        };
        let set: std::collections::BTreeSet<String> =
            layers.iter().map(|l| l.format_name()).collect();
        set.into_iter().collect()
    }

    /// Bytes of parameters on the device.
    pub fn weight_bytes(&self) -> u64 {
        match &self.net {
            Net::Bert(b) => b.weight_bytes(),
            Net::Mlp(_) => 0,
        }
    }

    /// Execution counters.
    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats
    }

    /// Tokenises `texts` with the model's tokenizer (ids and types per sentence).
    #[allow(clippy::type_complexity)]
    pub fn tokenize(&self, texts: &[String]) -> Result<(Vec<Vec<u32>>, Vec<Vec<u32>>)> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| {
            Error::Config("the model has no tokenizer.json: pass token ids".into())
        })?;
        Ok(encode(tok, texts)?.into_iter().unzip())
    }

    /// Runs one forward pass of `batch` (one command encoder, one submission).
    pub fn forward(&self, batch: &Batch) -> Result<Output> {
        self.wait(self.submit(batch)?)
    }

    /// Tokenises and uploads `batch` and submits its forward pass without waiting for it:
    /// [`Model::wait`] returns the results. Several passes may be in flight at once.
    pub fn submit(&self, batch: &Batch) -> Result<Pending> {
        match (&self.net, batch) {
            (Net::Bert(b), Batch::Text(texts)) => {
                if texts.is_empty() {
                    return Err(Error::Invalid("empty batch".into()));
                }
                let (ids, types) = self.tokenize(texts)?;
                self.run_bert(b, &ids, Some(&types))
            }
            (Net::Bert(b), Batch::Tokens { ids, types }) => self.run_bert(b, ids, types.as_deref()),
            (Net::Mlp(m), Batch::Features { rows, cols, data }) => {
                self.run_mlp(m, *rows, *cols, data)
            }
            (Net::Bert(_), Batch::Features { .. }) => Err(Error::Invalid(
                "an encoder takes text or token ids, not feature rows".into(),
            )),
            (Net::Mlp(_), _) => Err(Error::Invalid(
                "a classifier takes feature rows, not text or tokens".into(),
            )),
        }
    }

    fn run_bert(
        &self,
        b: &bert::Bert,
        ids: &[Vec<u32>],
        types: Option<&[Vec<u32>]>,
    ) -> Result<Pending> {
        b.check_tokens(ids, types)?;
        let batch = ids.len();
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        let seq = bucket(longest);
        let mut rows = vec![[0u32; 4]; batch * seq];
        for (s, seq_ids) in ids.iter().enumerate() {
            for (p, &id) in seq_ids.iter().enumerate() {
                let ty = types.map_or(0, |t| t[s][p]);
                rows[s * seq + p] = [id, p as u32, ty, 1];
            }
        }
        let input = bytemuck::cast_slice(&rows).to_vec();
        let shape = exec::Shape::Vectors {
            rows: batch,
            cols: b.config.hidden_size,
        };
        self.submit_planned((batch, seq), &input, shape, |gpu, arena| {
            b.plan(gpu, arena, batch, seq)
        })
    }

    fn run_mlp(&self, m: &mlp::Mlp, rows: usize, cols: usize, data: &[f32]) -> Result<Pending> {
        if rows == 0 {
            return Err(Error::Invalid("empty batch".into()));
        }
        if cols != m.inputs() || data.len() != rows * cols {
            return Err(Error::Shape(format!(
                "{rows} × {cols} features ({} values) for a classifier of {} inputs",
                data.len(),
                m.inputs()
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!("feature {i} is {}", data[i])));
        }
        let s = crate::tensor::stride_of(cols);
        let mut padded = vec![0f32; rows * s];
        for r in 0..rows {
            padded[r * s..r * s + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
        }
        let input = bytemuck::cast_slice(&padded).to_vec();
        let shape = exec::Shape::Classes {
            rows,
            classes: m.classes(),
        };
        self.submit_planned((rows, 0), &input, shape, |gpu, arena| {
            m.plan(gpu, arena, rows)
        })
    }

    /// The planned dispatches of a (batch, sequence) shape, for benchmarks: `record` gets
    /// them after the inputs (zero tokens of mask 1) were written.
    pub fn with_plan<R>(
        &self,
        batch: usize,
        seq: usize,
        record: impl FnOnce(&[Dispatch]) -> Result<R>,
    ) -> Result<R> {
        let Net::Bert(b) = &self.net else {
            return Err(Error::Invalid("with_plan is for encoders".into()));
        };
        let ids = vec![vec![0u32; seq]; batch];
        self.wait(self.run_bert(b, &ids, None)?)?;
        let st = self.state.lock().unwrap();
        let p = st
            .plans
            .get(&(batch, bucket(seq)))
            .ok_or_else(|| Error::Invalid("plan missing".into()))?;
        record(&p.dispatches)
    }
}

/// The padded length of a batch whose longest sequence has `longest` tokens.
fn bucket(longest: usize) -> usize {
    longest
        .next_multiple_of(SEQ_BUCKET)
        .min(ops::MAX_SEQ)
        .max(longest)
}

/// Token ids and types of each of `texts`.
fn encode(tok: &tokenizers::Tokenizer, texts: &[String]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let enc = tok
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?;
    Ok(enc
        .iter()
        .map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
        .collect())
}

fn load_tokenizer(path: &Path, c: &config::BertConfig) -> Result<tokenizers::Tokenizer> {
    let mut t = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
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
    .map_err(|e| Error::Config(format!("tokenizer truncation: {e}")))?;
    Ok(t)
}
