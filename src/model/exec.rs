//! Running a planned pass, split into [`Model::submit`] and [`Model::wait`] so that one device
//! can have several passes in flight: while the GPU computes one batch, the host tokenises and
//! uploads the next and reads back the one before (the scheduler's double buffering).
//!
//! Why overlapping passes of one model is sound: they share the arena's intermediate buffers,
//! but one queue runs submissions in order and wgpu puts a barrier between them, so a later
//! pass touches those buffers only after the earlier one is done; an input written with
//! `write_buffer` is likewise copied in just before the next submission's commands. The one
//! buffer a later pass could overwrite before the host has read it is the read-back buffer,
//! so every in-flight pass owns a [`Reader`] of its own, taken from a free list and returned
//! by [`Model::wait`].

use super::{Model, Output, Plan, State, arena};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PassStamps, map_read, record_pass};

/// Read-back buffers kept for reuse at most.
const MAX_READERS: usize = 4;

/// A read-back buffer with, where the device has them, timestamps for the pass.
pub(super) struct Reader {
    staging: wgpu::Buffer,
    stamps: Option<PassStamps>,
}

/// How the outputs of a pass become an [`Output`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Shape {
    /// One tensor: a vector of `cols` per row.
    Vectors { rows: usize, cols: usize },
    /// Two tensors: logits and probabilities over `classes` per row.
    Classes { rows: usize, classes: usize },
}

/// A forward pass submitted to the device and not yet read back: hand it to [`Model::wait`].
pub struct Pending {
    reader: Reader,
    index: wgpu::SubmissionIndex,
    /// (rows, cols, row stride in floats) of each output, in read-back order.
    layout: Vec<(usize, usize, usize)>,
    bytes: u64,
    shape: Shape,
}

impl Reader {
    fn new(gpu: &Gpu, bytes: u64) -> Reader {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("model read-back"),
            size: PassStamps::staging_bytes(bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Reader {
            staging,
            stamps: PassStamps::new(gpu, "model pass time"),
        }
    }

    fn fits(&self, bytes: u64) -> bool {
        self.staging.size() >= PassStamps::staging_bytes(bytes)
    }
}

impl Model<'_> {
    /// Plans (or reuses the plan of) `key`, writes `input`, records the pass and the copies of
    /// its outputs into one encoder and submits it, without waiting.
    pub(super) fn submit_planned(
        &self,
        key: (usize, usize),
        input: &[u8],
        shape: Shape,
        plan: impl FnOnce(&Gpu, &mut arena::Arena) -> Result<Plan>,
    ) -> Result<Pending> {
        let gpu: &Gpu = &self.gpu;
        // A lost device makes wgpu panic on buffer creation: report it before planning.
        gpu.check()?;
        let mut guard = self.state.lock().unwrap();
        let st = &mut *guard;
        st.ensure_plan(key, gpu, plan)?;
        let p = &st.plans[&key];
        let layout: Vec<(usize, usize, usize)> = p
            .outputs
            .iter()
            .map(|t| (t.rows, t.cols, t.stride()))
            .collect();
        let sizes: Vec<u64> = p.outputs.iter().map(|t| t.bytes()).collect();
        let bytes: u64 = sizes.iter().sum();
        let reader = match st.readers.iter().position(|r| r.fits(bytes)) {
            Some(i) => st.readers.swap_remove(i),
            None => Reader::new(gpu, bytes),
        };
        gpu.queue.write_buffer(&p.input, 0, input);
        let mut enc = gpu.encoder("model forward");
        record_pass(
            &mut enc,
            &p.dispatches,
            reader.stamps.as_ref().map(PassStamps::writes),
        );
        let mut offset = 0;
        for (t, &n) in p.outputs.iter().zip(&sizes) {
            enc.copy_buffer_to_buffer(&t.buffer, 0, &reader.staging, offset, n);
            offset += n;
        }
        if let Some(stamps) = &reader.stamps {
            stamps.copy_to(&mut enc, &reader.staging, bytes);
        }
        st.stats.last_dispatches = p.dispatches.len();
        let index = gpu.queue.submit([enc.finish()]);
        st.stats.submits += 1;
        st.stats.forwards += 1;
        st.stats.arena_bytes = st.arena.bytes();
        drop(guard);
        gpu.check()?;
        Ok(Pending {
            reader,
            index,
            layout,
            bytes,
            shape,
        })
    }

    /// Waits for a pass from [`Model::submit`] and returns its results. Passes may be waited
    /// for in any order.
    pub fn wait(&self, pending: Pending) -> Result<Output> {
        let gpu: &Gpu = &self.gpu;
        let Pending {
            reader,
            index,
            layout,
            bytes,
            shape,
        } = pending;
        let end = PassStamps::mapped_bytes(reader.stamps.as_ref(), bytes);
        let slice = reader.staging.slice(..end);
        map_read(gpu, &slice, index)?;
        let (mut tensors, gpu_seconds) = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
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
            let gpu_seconds = reader
                .stamps
                .as_ref()
                .map(|_| PassStamps::seconds(gpu, &view, bytes));
            (tensors, gpu_seconds)
        };
        reader.staging.unmap();
        {
            let mut st = self.state.lock().unwrap();
            if st.readers.len() < MAX_READERS {
                st.readers.push(reader);
            }
        }
        let expect = |t: Option<Vec<f32>>| t.ok_or_else(|| Error::Gpu("output missing".into()));
        Ok(match shape {
            Shape::Vectors { rows, cols } => Output {
                rows,
                cols,
                values: expect(tensors.drain(..).next())?,
                probabilities: None,
                gpu_seconds,
            },
            Shape::Classes { rows, classes } => {
                let probabilities = tensors.pop();
                Output {
                    rows,
                    cols: classes,
                    values: expect(tensors.pop())?,
                    probabilities,
                    gpu_seconds,
                }
            }
        })
    }
}

impl State {
    /// Builds (and caches) the plan of `key` unless it is cached.
    fn ensure_plan(
        &mut self,
        key: (usize, usize),
        gpu: &Gpu,
        plan: impl FnOnce(&Gpu, &mut arena::Arena) -> Result<Plan>,
    ) -> Result<()> {
        if !self.plans.contains_key(&key) {
            let generation = self.arena.generation();
            let p = plan(gpu, &mut self.arena)?;
            if self.arena.generation() != generation {
                // Older plans bind buffers the arena has replaced.
                self.plans.clear();
                self.order.clear();
            }
            if self.order.len() >= super::MAX_PLANS {
                let old = self.order.remove(0);
                self.plans.remove(&old);
            }
            self.plans.insert(key, p);
            self.order.push(key);
            self.stats.plans_built += 1;
        }
        Ok(())
    }
}
