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
use crate::gpu::{Gpu, record_pass};
use std::sync::{Arc, Mutex};

/// Read-back buffers kept for reuse at most.
const MAX_READERS: usize = 4;

/// A read-back buffer with, where the device has them, two timestamps for the pass.
pub(super) struct Reader {
    staging: wgpu::Buffer,
    timer: Option<(wgpu::QuerySet, wgpu::Buffer)>,
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

/// Where the two timestamps start in a read-back buffer holding `bytes` of results.
fn timestamp_offset(bytes: u64) -> u64 {
    bytes.next_multiple_of(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT)
}

impl Reader {
    fn new(gpu: &Gpu, bytes: u64) -> Reader {
        let timer = gpu.caps.timestamps.then(|| {
            let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("model pass time"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("model pass time resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("model read-back"),
            size: timestamp_offset(bytes) + 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Reader { staging, timer }
    }

    fn fits(&self, bytes: u64) -> bool {
        self.staging.size() >= timestamp_offset(bytes) + 16
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
        let writes = reader
            .timer
            .as_ref()
            .map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
        record_pass(&mut enc, &p.dispatches, writes);
        let mut offset = 0;
        for (t, &n) in p.outputs.iter().zip(&sizes) {
            enc.copy_buffer_to_buffer(&t.buffer, 0, &reader.staging, offset, n);
            offset += n;
        }
        if let Some((set, resolve)) = &reader.timer {
            enc.resolve_query_set(set, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, &reader.staging, timestamp_offset(bytes), 16);
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
        let end = if reader.timer.is_some() {
            timestamp_offset(bytes) + 16
        } else {
            bytes
        };
        let slice = reader.staging.slice(..end);
        let outcome = Arc::new(Mutex::new(None));
        let o = outcome.clone();
        slice.map_async(wgpu::MapMode::Read, move |r| *o.lock().unwrap() = Some(r));
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu(e.to_string()))?;
        gpu.check()?;
        match outcome.lock().unwrap().take() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Gpu(format!("mapping results: {e}"))),
            None => return Err(Error::Gpu("result mapping never completed".into())),
        }
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
            let gpu_seconds = reader.timer.as_ref().map(|_| {
                let ts = timestamp_offset(bytes) as usize;
                let t: [u64; 2] = bytemuck::pod_read_unaligned(&view[ts..ts + 16]);
                t[1].saturating_sub(t[0]) as f64 * gpu.queue.get_timestamp_period() as f64 * 1e-9
            });
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
