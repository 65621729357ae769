//! # sparq
//!
//! A GPU compute engine on wgpu for serving compressed neural networks on any GPU vendor.
//!
//! Most programs open a device ([`Gpu::from_env`] or [`Gpu::new`]), load a model with
//! [`model::Model::load`] and call [`model::Model::forward`] on a [`model::Batch`]:
//!
//! ```no_run
//! use sparq::model::{Batch, Model, cosine};
//! # fn main() -> sparq::Result<()> {
//! let gpu = sparq::Gpu::from_env()?;
//! let model = Model::load("models/all-MiniLM-L6-v2", &gpu)?;
//! let out = model.forward(&Batch::text(["A cat sits.", "A kitten is sitting."]))?;
//! let rows: Vec<&[f32]> = out.rows().collect();
//! println!("cosine {:.3}", cosine(rows[0], rows[1]));
//! # Ok(()) }
//! ```
//!
//! **Which load.** [`model::Model::load`] borrows the device (`Model<'g>` lives no longer
//! than its `&Gpu`): the simple case, one model on one device in one thread.
//! [`model::Model::load_shared`] takes an `Arc<Gpu>` and gives a `Model<'static>` that can
//! move to another thread with its device: what the data-parallel scheduler
//! ([`schedule::Cluster`]) and a server need. Both read the same files.
//!
//! **Which format.** Weights stored as floats load as f32 by default
//! ([`model::LoadOptions`]): the results then match the original (PyTorch) model as closely
//! as f32 arithmetic allows, on every adapter, and no accuracy is traded without asking.
//! Ask for `LoadOptions::default().format(WeightFormat::F16)` (half the weight memory) or an
//! int8/int4 format (a quarter or an eighth, faster where reading weights is the cost) with
//! [`model::Model::load_with`]; a file written by `sparq pack` is already compressed and
//! loads as stored, whatever the format asked.
//!
//! The [`wgpu`] sparq is built on is re-exported, since its types appear in sparq's API.
//!
//! Lower down, single layers run on their own:
//!
//! ```no_run
//! use sparq::{Gpu, AdapterSelector, formats::{WeightFormat, PackedWeights}, matmul::Linear};
//! # fn main() -> sparq::Result<()> {
//! let gpu = Gpu::new(&AdapterSelector::Best)?;
//! let (n, k) = (64, 128);
//! let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
//! let packed = PackedWeights::quantize(&w, n, k, WeightFormat::Int4 { group: 32, asymmetric: false })?;
//! let layer = Linear::new(&gpu, &packed, None)?;
//! let x = sparq::Tensor::from_f32(&gpu, &vec![1.0; 3 * k], 3, k)?;
//! let y = layer.forward(&gpu, &x)?.to_f32(&gpu)?; // 3 × 64
//! # Ok(()) }
//! ```

pub mod activation;
// The benchmark harness of `sparq bench` and `sparq gemm`: public for the binary, not an API.
#[doc(hidden)]
pub mod bench;
pub mod config;
pub mod error;
pub mod files;
pub mod formats;
pub mod gguf;
pub mod gpu;
pub mod graph;
#[cfg(test)]
mod kernel_params;
pub mod linear;
pub mod matmul;
pub mod model;
pub mod prune;
pub mod reference;
pub mod report;
pub mod schedule;
pub mod sparse;
pub mod tensor;
pub mod train;
pub mod weights;

/// The wgpu sparq is built on: its types ([`wgpu::Device`], [`wgpu::Buffer`], ...) appear in
/// sparq's API, and this is the version they come from.
pub use wgpu;

pub use config::Config;
pub use error::{
    DeviceError, Error, ErrorKind, InputError, InternalError, Result, ServiceError, TokenizerError,
};
pub use gpu::{AdapterSelector, Gpu};
pub use tensor::Tensor;
