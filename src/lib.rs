//! # sparq
//!
//! A GPU compute engine on wgpu for serving compressed neural networks on any GPU vendor.
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
pub mod weights;

pub use config::Config;
pub use error::{
    DeviceError, Error, ErrorKind, InputError, InternalError, Result, ServiceError, TokenizerError,
};
pub use gpu::{AdapterSelector, Gpu};
pub use tensor::Tensor;
