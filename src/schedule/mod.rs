//! Running work on several devices at once.
//!
//! Two schedulers share one model interface, [`Replica`]: a copy of a model living on one
//! device, built there by a factory (`Fn(&Arc<Gpu>) -> Result<R>`), that turns a slice of
//! input rows into the same number of output rows.
//!
//! - [`Cluster`] is data parallelism: one replica per chosen device (any mix of backends and
//!   vendors, or several devices on one adapter). A batch is cut into micro-batches that each
//!   device pulls when it has room, sized by its measured throughput; results come back in
//!   input order, and a device that fails is taken out while its micro-batches re-run elsewhere.
//! - [`TaskPool`] is task parallelism: several models placed over the devices (by memory fit and
//!   measured speed, or pinned), one queue per device, devices running concurrently.
//!
//! [`ModelReplica`] runs a loaded text model (sentence embeddings) as a replica, and
//! [`TokenReplica`] the same model fed token ids; [`embedding::EmbeddingService`] batches
//! embedding requests dynamically over a cluster of the latter.
//! [`LinearChain`] is a replica made of [`crate::matmul::Linear`] layers, used by the tests and
//! `sparq bench --adapters`; [`open_devices`] opens the devices a command line names.
//!
//! Every [`Gpu`] is `Send + Sync` (checked at compile time below), so one can be shared with
//! worker threads behind an `Arc`.

mod batch;
// The harness of `sparq bench --adapters`: public for the binary, not an API.
#[doc(hidden)]
pub mod bench;
mod chain;
mod cluster;
pub mod embedding;
mod fault;
pub mod generation;
mod model;
mod split;
mod tasks;
mod worker;

pub use batch::{BatchOutput, BatchReport, ClusterConfig, DeviceReport, MicroBatch};
pub use chain::{ChainLayer, LinearChain};
pub use cluster::Cluster;
pub use fault::{FaultKind, Injection};
pub use model::{ModelReplica, TokenReplica, TokenRow};
pub use split::SplitPolicy;
pub use tasks::{ModelHandle, ModelSpec, TaskPool, Ticket, probe_speed};

use crate::Gpu;
use crate::error::InputError;
use crate::error::{Error, Result};
use crate::gpu::{AdapterSelector, enumerate_adapters, instance, select};
use std::sync::Arc;

// Worker threads hold `Arc<Gpu>`: this fails to compile if a field of `Gpu` stops being
// `Send + Sync`.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Gpu>();
};

/// What one replica returns for a micro-batch.
#[derive(Debug)]
pub struct Finished<O> {
    /// One output per input row, in input order.
    pub outputs: Vec<O>,
    /// GPU time of the computation (timestamp queries), when the device can measure it.
    pub compute_s: Option<f64>,
    /// Host time spent copying results out of mapped memory.
    pub readback_s: f64,
}

/// A model copy on one device, driven by the schedulers.
///
/// Contract: output row `i` depends only on input row `i` (and the weights), computed the same
/// way whatever the micro-batch around it; that is what makes a split run bit-identical to a
/// single-device run on a device of the same kind. Errors that depend only on the input
/// ([`crate::InputError::Shape`], [`crate::InputError::Invalid`], [`crate::InputError::DType`]) abort the batch; every other error
/// is taken as a failure of the device and its work re-runs elsewhere.
pub trait Replica: Send {
    /// One input row.
    type In: Sync;
    /// One output row.
    type Out: Send;

    /// Largest micro-batch (rows) one [`Replica::start`] accepts.
    fn max_rows(&self) -> usize;

    /// Micro-batches that may be in flight at once (2 = double buffering: the next upload and
    /// this read-back overlap the computation). Slots are numbered `0..slots()`.
    fn slots(&self) -> usize {
        1
    }

    /// Uploads `inputs` (1 ..= `max_rows` rows) into buffer slot `slot` and submits the work,
    /// returning without waiting for the device.
    fn start(&mut self, slot: usize, inputs: &[Self::In]) -> Result<()>;

    /// Waits for the micro-batch started in `slot` and returns its outputs.
    fn finish(&mut self, slot: usize) -> Result<Finished<Self::Out>>;

    /// Refuses a whole batch before it is split over devices, as one device would: a model
    /// refuses an empty batch, the same error as its own forward pass. Default: any batch,
    /// an empty one giving no outputs.
    fn check_batch(_inputs: &[Self::In]) -> Result<()> {
        Ok(())
    }
}

/// The error of a model's forward pass over no rows.
pub(crate) fn refuse_empty<T>(inputs: &[T]) -> Result<()> {
    match inputs.is_empty() {
        true => Err(Error::invalid("empty batch")),
        false => Ok(()),
    }
}

/// Runs `inputs` through `replica` alone, in micro-batches of at most `max_rows`: the
/// single-device reference a split run must equal.
pub fn run_single<R: Replica>(replica: &mut R, inputs: &[R::In]) -> Result<Vec<R::Out>> {
    let mut out = Vec::with_capacity(inputs.len());
    for part in inputs.chunks(replica.max_rows().max(1)) {
        replica.start(0, part)?;
        out.extend(replica.finish(0)?.outputs);
    }
    Ok(out)
}

/// Whether `e` is not the input's fault (a device failure or a bug, see
/// [`ErrorKind`](crate::ErrorKind)): such failures take the device out of the set and re-run
/// its work elsewhere, while an input error would fail the same way everywhere.
pub fn is_device_fault(e: &Error) -> bool {
    matches!(
        e.kind(),
        crate::ErrorKind::Device | crate::ErrorKind::Internal
    )
}

/// Opens the devices named by `spec`: `all` (one device per adapter), or a comma-separated
/// list of adapter selectors (index, backend, name substring; see [`AdapterSelector`]). A
/// selector named twice opens two devices on that adapter (`0,0`).
pub fn open_devices(spec: &str) -> Result<Vec<Arc<Gpu>>> {
    let inst = instance();
    let adapters = enumerate_adapters(&inst);
    let chosen: Vec<wgpu::Adapter> = if spec.trim().eq_ignore_ascii_case("all") {
        if adapters.is_empty() {
            return Err(Error::Input(InputError::NoAdapter {
                selector: "all".into(),
                available: "none (install a Vulkan driver, e.g. mesa-vulkan-drivers)".into(),
            }));
        }
        adapters
    } else {
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Error::invalid(format!(
                "adapter list '{spec}' has an empty entry"
            )));
        }
        parts
            .iter()
            .map(|p| select(adapters.clone(), &AdapterSelector::parse(p)))
            .collect::<Result<_>>()?
    };
    chosen
        .into_iter()
        .map(|a| Gpu::from_adapter(a, &inst).map(Arc::new))
        .collect()
}

/// A short name for device `i` of a set: `[i] adapter (backend)`.
pub fn device_name(i: usize, gpu: &Gpu) -> String {
    format!("[{i}] {} ({})", gpu.caps.name, gpu.caps.backend)
}
