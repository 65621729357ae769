//! Fault injection, so that the recovery paths can be tested on CPU adapters.
//!
//! A lost device and a validation error are provoked for real on the device (the error then
//! reaches the replica through the normal error capture of [`Gpu`]); out-of-memory cannot be
//! provoked safely on a host-memory adapter, so it is reported in place of the micro-batch's
//! result with the message a driver gives.

use crate::Gpu;
use crate::error::{Error, Result};
use std::time::Duration;

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The device is destroyed (as on a driver reset or removal).
    DeviceLost,
    /// The device runs out of memory.
    OutOfMemory,
    /// The device reports a validation error.
    Validation,
}

/// A fault or slowdown attached to one device of a [`super::Cluster`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Injection {
    /// After `after` micro-batches have been started on the device (so that one is in
    /// flight), `kind` happens.
    Fail {
        /// Micro-batches started before the fault.
        after: usize,
        /// The fault.
        kind: FaultKind,
    },
    /// Every micro-batch takes this much longer per row (a slower device).
    Delay(Duration),
}

/// Makes `kind` happen on `gpu`; returns the error to report instead of the next result, for
/// faults that cannot be provoked for real.
pub(crate) fn trigger(gpu: &Gpu, kind: FaultKind) -> Option<Error> {
    match kind {
        FaultKind::DeviceLost => {
            // wgpu reports the loss from its next maintenance pass, once the queue is empty;
            // wait for that, as for a real loss reported by the driver.
            gpu.device.destroy();
            let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
            None
        }
        FaultKind::Validation => {
            // MAP_READ may only be combined with COPY_DST: a validation error, captured by
            // the device's error sink and returned by the next `Gpu::check`.
            let _ = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sparq injected fault"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            None
        }
        FaultKind::OutOfMemory => Some(Error::out_of_memory(
            "Out of Memory (injected by the scheduler's fault hook)",
        )),
    }
}

/// Sleeps as `delay` per row demands.
pub(crate) fn delay(injection: Option<Injection>, rows: usize) -> Result<()> {
    if let Some(Injection::Delay(d)) = injection {
        std::thread::sleep(d * rows as u32);
    }
    Ok(())
}
