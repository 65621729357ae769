//! The one submit / read-back path: plans cached by signature, a pass recorded into one
//! encoder with the copies of its outputs, and read-back buffers from a free list.
//!
//! Why overlapping passes are sound: they share the scratch slots, but one queue runs
//! submissions in order and wgpu puts a barrier between them, so a later pass touches those
//! buffers only after the earlier one is done; an input written with `write_buffer` is
//! likewise copied in just before the next submission's commands. The one buffer a later
//! pass could overwrite before the host has read it is the read-back buffer, so every
//! in-flight pass owns a [`Reader`] of its own, taken from the free list and given back with
//! [`Executor::recycle`].

use super::{Pass, Slots, Step};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PassStamps, map_read, record_pass};
use std::collections::HashMap;
use std::hash::Hash;

/// Read-back buffers kept for reuse at most.
const MAX_READERS: usize = 4;

/// A read-back buffer with, where the device has them, timestamps for the pass.
pub struct Reader {
    staging: wgpu::Buffer,
    stamps: Option<PassStamps>,
}

impl Reader {
    fn new(gpu: &Gpu, bytes: u64) -> Result<Reader> {
        let size = PassStamps::staging_bytes(bytes);
        gpu.check_binding("read-back", size)?;
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("graph read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Reader {
            staging,
            stamps: PassStamps::new(gpu, "graph pass time"),
        })
    }

    fn fits(&self, bytes: u64) -> bool {
        self.staging.size() >= PassStamps::staging_bytes(bytes)
    }
}

/// Counters of an [`Executor`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Passes submitted.
    pub submits: u64,
    /// Plans built (cache misses).
    pub plans_built: u64,
    /// Plans dropped because the cache was full.
    pub plans_evicted: u64,
    /// Dispatches in the last pass submitted.
    pub last_dispatches: usize,
}

/// A pass recorded and not yet submitted, with the read-back buffer its copies target.
struct Recorded {
    commands: wgpu::CommandBuffer,
    reader: Reader,
    layout: Vec<(usize, usize, usize)>,
    bytes: u64,
    timed: bool,
}

/// A pass submitted and not yet read back: [`Submitted::read`] waits for it.
pub struct Submitted {
    reader: Reader,
    index: wgpu::SubmissionIndex,
    /// (rows, cols, row stride in floats) of each output, in read-back order.
    layout: Vec<(usize, usize, usize)>,
    bytes: u64,
    timed: bool,
}

/// The outputs of a pass, read back.
#[derive(Clone, Debug)]
pub struct Readout {
    /// Each output tensor, `rows × cols` without padding, in the plan's order.
    pub tensors: Vec<Vec<f32>>,
    /// GPU time of the pass (timestamp queries), where the device has them.
    pub gpu_seconds: Option<f64>,
    /// Host time spent copying the results out once the pass was done.
    pub copy_seconds: f64,
}

impl Submitted {
    /// Waits for the pass and reads its outputs; the reader goes back to its executor with
    /// [`Executor::recycle`]. Passes may be read in any order.
    pub fn read(self, gpu: &Gpu) -> Result<(Readout, Reader)> {
        let Submitted {
            reader,
            index,
            layout,
            bytes,
            timed,
        } = self;
        let stamps = reader.stamps.as_ref().filter(|_| timed);
        let end = PassStamps::mapped_bytes(stamps, bytes);
        let slice = reader.staging.slice(..end.max(4));
        map_read(gpu, &slice, index)?;
        let started = std::time::Instant::now();
        let mut readout = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::device_failed(e.to_string()))?;
            let floats: &[f32] = bytemuck::cast_slice(&view[..bytes as usize]);
            let mut tensors = Vec::with_capacity(layout.len());
            let mut at = 0;
            for &(rows, cols, stride) in &layout {
                tensors.push(
                    (0..rows)
                        .flat_map(|r| floats[at + r * stride..at + r * stride + cols].iter())
                        .copied()
                        .collect::<Vec<f32>>(),
                );
                at += rows * stride;
            }
            Readout {
                tensors,
                gpu_seconds: stamps.map(|_| PassStamps::seconds(gpu, &view, bytes)),
                copy_seconds: 0.0,
            }
        };
        reader.staging.unmap();
        readout.copy_seconds = started.elapsed().as_secs_f64();
        Ok((readout, reader))
    }
}

/// Plans by signature `K` over one set of [`Slots`], and the submit / read-back path.
pub struct Executor<K> {
    slots: Slots,
    plans: HashMap<K, Pass>,
    /// A command buffer recorded ahead for a plan's next call (see [`Executor::prerecord`]).
    ahead: HashMap<K, Recorded>,
    /// Keys from least to most recently used.
    order: Vec<K>,
    readers: Vec<Reader>,
    max_plans: usize,
    stats: ExecStats,
}

impl<K: Hash + Eq + Clone> Executor<K> {
    /// An executor keeping at most `max_plans` plans (at least one).
    pub fn new(max_plans: usize) -> Self {
        Executor {
            slots: Slots::default(),
            plans: HashMap::new(),
            ahead: HashMap::new(),
            order: Vec::new(),
            readers: Vec::new(),
            max_plans: max_plans.max(1),
            stats: ExecStats::default(),
        }
    }

    /// Builds the plan of `key` with `build` unless it is cached; returns whether it built.
    /// A build that grows scratch drops every other plan (they bind the replaced buffers);
    /// a full cache drops the least recently used plan.
    pub fn prepare(
        &mut self,
        gpu: &Gpu,
        key: &K,
        build: impl FnOnce(&Gpu, &mut Slots) -> Result<Pass>,
    ) -> Result<bool> {
        if self.plans.contains_key(key) {
            if let Some(i) = self.order.iter().position(|k| k == key) {
                let k = self.order.remove(i);
                self.order.push(k);
            }
            return Ok(false);
        }
        let generation = self.slots.generation();
        let pass = build(gpu, &mut self.slots)?;
        if self.slots.generation() != generation {
            self.plans.clear();
            self.ahead.clear();
            self.order.clear();
        }
        if self.order.len() >= self.max_plans {
            let old = self.order.remove(0);
            self.plans.remove(&old);
            if let Some(r) = self.ahead.remove(&old) {
                self.readers.push(r.reader);
            }
            self.stats.plans_evicted += 1;
        }
        self.plans.insert(key.clone(), pass);
        self.order.push(key.clone());
        self.stats.plans_built += 1;
        Ok(true)
    }

    /// The cached plan of `key`.
    pub fn plan(&self, key: &K) -> Option<&Pass> {
        self.plans.get(key)
    }

    /// Whether `key` has a cached plan.
    pub fn contains(&self, key: &K) -> bool {
        self.plans.contains_key(key)
    }

    /// Writes `inputs` (one byte string per input of the plan, each at most its buffer's
    /// size), replays the plan's writes, records its steps and the copies of its outputs into
    /// one encoder and submits it, without waiting. A command buffer recorded ahead by
    /// [`Executor::prerecord`] is submitted instead of recording one.
    pub fn submit(&mut self, gpu: &Gpu, key: &K, inputs: &[&[u8]]) -> Result<Submitted> {
        // A lost device makes wgpu panic on buffer creation: report it before recording.
        gpu.check()?;
        let pass = self
            .plans
            .get(key)
            .ok_or_else(|| Error::invalid("no plan for this signature: prepare it first"))?;
        if inputs.len() != pass.inputs.len() {
            return Err(Error::shape(format!(
                "{} inputs for a pass of {}",
                inputs.len(),
                pass.inputs.len()
            )));
        }
        for (i, (bytes, buffer)) in inputs.iter().zip(&pass.inputs).enumerate() {
            if bytes.len() as u64 > buffer.size() || bytes.len() % 4 != 0 {
                return Err(Error::shape(format!(
                    "input {i} has {} bytes; its buffer takes a multiple of 4 up to {}",
                    bytes.len(),
                    buffer.size()
                )));
            }
        }
        let recorded = match self.ahead.remove(key) {
            Some(r) => r,
            None => self.record(gpu, key)?,
        };
        let pass = &self.plans[key];
        for (bytes, buffer) in inputs.iter().zip(&pass.inputs) {
            if !bytes.is_empty() {
                gpu.queue.write_buffer(buffer, 0, bytes);
            }
        }
        for step in &pass.steps {
            if let Step::Write { dst, offset, bytes } = step {
                gpu.queue.write_buffer(dst, *offset, bytes);
            }
        }
        self.stats.last_dispatches = pass.dispatch_count();
        let Recorded {
            commands,
            reader,
            layout,
            bytes,
            timed,
        } = recorded;
        let index = gpu.queue.submit([commands]);
        self.stats.submits += 1;
        gpu.check()?;
        Ok(Submitted {
            reader,
            index,
            layout,
            bytes,
            timed,
        })
    }

    /// Records the pass of `key` for its next [`Executor::submit`] now (with a read-back
    /// buffer of its own), so that the host's recording overlaps the GPU's work on the pass
    /// in flight: a decoder's next step has the same shape and only new input bytes, which
    /// `submit` writes before submitting. Does nothing if one is recorded already.
    pub fn prerecord(&mut self, gpu: &Gpu, key: &K) -> Result<()> {
        if self.ahead.contains_key(key) {
            return Ok(());
        }
        let r = self.record(gpu, key)?;
        self.ahead.insert(key.clone(), r);
        Ok(())
    }

    /// The command buffer of the pass of `key` and the copies of its outputs into a free
    /// read-back buffer.
    fn record(&mut self, gpu: &Gpu, key: &K) -> Result<Recorded> {
        let pass = self
            .plans
            .get(key)
            .ok_or_else(|| Error::invalid("no plan for this signature: prepare it first"))?;
        let layout: Vec<(usize, usize, usize)> = pass
            .outputs
            .iter()
            .map(|t| (t.rows, t.cols, t.stride()))
            .collect();
        let sizes: Vec<u64> = pass.outputs.iter().map(|t| t.bytes()).collect();
        let bytes: u64 = sizes.iter().sum();
        let reader = match self.readers.iter().position(|r| r.fits(bytes)) {
            Some(i) => self.readers.swap_remove(i),
            None => Reader::new(gpu, bytes)?,
        };
        let mut enc = gpu.encoder("graph pass");
        let timed = record(&mut enc, &pass.steps, reader.stamps.as_ref());
        let mut offset = 0;
        for (t, &n) in pass.outputs.iter().zip(&sizes) {
            enc.copy_buffer_to_buffer(&t.buffer, 0, &reader.staging, offset, n);
            offset += n;
        }
        if let (Some(stamps), true) = (&reader.stamps, timed) {
            stamps.copy_to(&mut enc, &reader.staging, bytes);
        }
        Ok(Recorded {
            commands: enc.finish(),
            reader,
            layout,
            bytes,
            timed,
        })
    }

    /// Takes back the reader of a pass that was read.
    pub fn recycle(&mut self, reader: Reader) {
        if self.readers.len() < MAX_READERS {
            self.readers.push(reader);
        }
    }

    /// Makes sure `count` free readers of at least `bytes` of outputs exist (so that tests can
    /// poison them, and the first passes allocate nothing).
    pub fn reserve_readers(&mut self, gpu: &Gpu, count: usize, bytes: u64) -> Result<()> {
        let have = self.readers.iter().filter(|r| r.fits(bytes)).count();
        for _ in have..count.min(MAX_READERS) {
            self.readers.push(Reader::new(gpu, bytes)?);
        }
        Ok(())
    }

    /// Fills the scratch slots and free read-back buffers with NaN bit patterns (for tests).
    pub fn poison(&self, gpu: &Gpu) {
        self.slots.poison(gpu);
        for r in &self.readers {
            gpu.queue
                .write_buffer(&r.staging, 0, &vec![0xFFu8; r.staging.size() as usize]);
        }
    }

    /// The slots plans are built over.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The slots, to reserve or fill outside a plan (e.g. a persistent slot).
    pub fn slots_mut(&mut self) -> &mut Slots {
        &mut self.slots
    }

    /// Counters.
    pub fn stats(&self) -> ExecStats {
        self.stats
    }
}

/// Records `steps` into `enc`: each run of dispatches as one compute pass, timed from the
/// start of the first to the end of the last where `stamps` is given; returns whether it was
/// timed (a pass without dispatches is not).
fn record(enc: &mut wgpu::CommandEncoder, steps: &[Step], stamps: Option<&PassStamps>) -> bool {
    let computes = steps
        .iter()
        .filter(|s| matches!(s, Step::Compute(_)))
        .count();
    let mut seen = 0;
    for step in steps {
        match step {
            Step::Compute(dispatches) => {
                let writes = stamps.and_then(|s| s.writes_of(seen == 0, seen + 1 == computes));
                record_pass(enc, dispatches, writes);
                seen += 1;
            }
            Step::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                bytes,
            } => enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes),
            // Written through the queue before the encoder runs.
            Step::Write { .. } => {}
        }
    }
    stamps.is_some() && computes > 0
}
