//! One executor above [`crate::gpu`], for every network: a pass is data, an ordered list of
//! [`Step`]s over [`Slots`] (per-pass scratch shared by every plan, persistent state that
//! survives scratch growth), with input buffers written per call and output tensors read
//! back. An [`Executor`] caches plans by a shape signature (least recently used dropped
//! first), rebuilds them when scratch grows, and owns the one submit / read-back path: a pass
//! and the copies of its outputs in one encoder and one submission, read back through a
//! free list of read-back buffers with their GPU timestamps, several passes in flight at once.
//!
//! Per-call scalars: a [`Step::Write`] is replayed through the queue before each submission
//! of its pass, so a plan can keep its parameters at an offset of one buffer and rewrite them
//! every call (the slot for dynamic-offset parameters: the pass's parameter buffer is then one
//! of its inputs or a scratch slot, and each dispatch names its offset there).

mod exec;
mod slots;

pub use exec::{ExecStats, Executor, Reader, Readout, Submitted};
pub use slots::Slots;

use crate::gpu::Dispatch;
use crate::tensor::Tensor;

/// The shape signature plans are cached by: rows of the batch and the padded sequence
/// length (0 where a network has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signature {
    /// Rows (sequences or feature rows).
    pub batch: usize,
    /// Padded sequence length, or 0.
    pub seq: usize,
}

impl Signature {
    /// The signature of `batch` rows of `seq` positions.
    pub fn new(batch: usize, seq: usize) -> Self {
        Signature { batch, seq }
    }
}

/// One step of a pass.
pub enum Step {
    /// Dispatches recorded in order into one compute pass.
    Compute(Vec<Dispatch>),
    /// A buffer-to-buffer copy, in order with the other steps.
    Copy {
        /// Source buffer.
        src: wgpu::Buffer,
        /// Byte offset in the source.
        src_offset: u64,
        /// Destination buffer.
        dst: wgpu::Buffer,
        /// Byte offset in the destination.
        dst_offset: u64,
        /// Bytes copied (a multiple of 4).
        bytes: u64,
    },
    /// Bytes written to `dst` at `offset` through the queue before every submission of the
    /// pass (so before all of its other steps), e.g. a plan's parameter block.
    Write {
        /// Destination buffer.
        dst: wgpu::Buffer,
        /// Byte offset (a multiple of 4).
        offset: u64,
        /// The bytes (a multiple of 4).
        bytes: Vec<u8>,
    },
}

/// A planned pass: its steps, the buffers its per-call inputs are written to, and the
/// tensors read back after it.
pub struct Pass {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// Where each call's inputs are written, in the order [`Executor::submit`] takes them.
    pub inputs: Vec<wgpu::Buffer>,
    /// Results read back after the pass, in order.
    pub outputs: Vec<Tensor>,
}

impl Pass {
    /// The common pass: `dispatches` in one compute pass over one input buffer.
    pub fn compute(dispatches: Vec<Dispatch>, input: wgpu::Buffer, outputs: Vec<Tensor>) -> Self {
        Pass {
            steps: vec![Step::Compute(dispatches)],
            inputs: vec![input],
            outputs,
        }
    }

    /// Dispatches over all steps.
    pub fn dispatch_count(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Compute(d) => d.len(),
                _ => 0,
            })
            .sum()
    }

    /// The dispatches of a pass made of one compute pass and nothing else (what benchmarks
    /// replay), else `None`.
    pub fn only_dispatches(&self) -> Option<&[Dispatch]> {
        match self.steps.as_slice() {
            [Step::Compute(d)] => Some(d),
            _ => None,
        }
    }
}
