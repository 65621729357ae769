//! The buffers a pass runs over, by lifetime. **Scratch** slots (`hidden`, `qkv`, `ffn`, ...)
//! are shared by every layer and every plan and kept across calls; one grows when a larger
//! shape arrives, and the generation counter then changes so that plans holding the old
//! buffer are rebuilt. **Persistent** slots (state that must outlive any one pass) are
//! allocated once at their full size and never reallocated, so their contents and identity
//! survive scratch growth and every plan that binds them stays valid. The Llama decoder's KV
//! pools have that lifetime too but belong to the decoder (one pair per layer, allocated when
//! it loads, sized by its options), so its plans bind them directly.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{ActDType, Tensor, stride_of};
use std::collections::HashMap;

/// Named device buffers of a pass: growable scratch, fixed persistent state.
#[derive(Default)]
pub struct Slots {
    scratch: HashMap<&'static str, wgpu::Buffer>,
    persistent: HashMap<&'static str, wgpu::Buffer>,
    generation: u64,
}

impl Slots {
    /// Makes sure scratch slot `name` holds at least `bytes`; returns whether it had to grow.
    pub fn reserve(&mut self, gpu: &Gpu, name: &'static str, bytes: u64) -> Result<bool> {
        let bytes = bytes.max(16).next_multiple_of(16);
        if self.scratch.get(name).is_some_and(|b| b.size() >= bytes) {
            return Ok(false);
        }
        self.scratch
            .insert(name, gpu.storage(&format!("scratch {name}"), bytes)?);
        self.generation += 1;
        Ok(true)
    }

    /// An f32 `rows × cols` tensor view of scratch slot `name` (reserving it first).
    pub fn tensor(
        &mut self,
        gpu: &Gpu,
        name: &'static str,
        rows: usize,
        cols: usize,
    ) -> Result<Tensor> {
        self.reserve(gpu, name, (rows * stride_of(cols) * 4) as u64)?;
        Ok(Tensor {
            buffer: self.scratch[name].clone(),
            rows,
            cols,
            dtype: ActDType::F32,
        })
    }

    /// The buffer of scratch slot `name` (reserving `bytes`).
    pub fn buffer(&mut self, gpu: &Gpu, name: &'static str, bytes: u64) -> Result<wgpu::Buffer> {
        self.reserve(gpu, name, bytes)?;
        Ok(self.scratch[name].clone())
    }

    /// The persistent slot `name`, allocated with `bytes` on first use. It is never
    /// reallocated: asking for more than it was allocated with is an error, since growing it
    /// would lose its contents and invalidate the plans that bind it.
    pub fn persistent(
        &mut self,
        gpu: &Gpu,
        name: &'static str,
        bytes: u64,
    ) -> Result<wgpu::Buffer> {
        if let Some(b) = self.persistent.get(name) {
            if b.size() < bytes {
                return Err(Error::shape(format!(
                    "persistent slot {name} holds {} bytes, {bytes} were asked for",
                    b.size()
                )));
            }
            return Ok(b.clone());
        }
        let b = gpu.storage(
            &format!("persistent {name}"),
            bytes.max(16).next_multiple_of(16),
        )?;
        self.persistent.insert(name, b.clone());
        Ok(b)
    }

    /// Changes whenever a scratch slot is reallocated (never for persistent slots).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes held by the scratch slots.
    pub fn bytes(&self) -> u64 {
        self.scratch.values().map(|b| b.size()).sum()
    }

    /// Bytes held by the persistent slots.
    pub fn persistent_bytes(&self) -> u64 {
        self.persistent.values().map(|b| b.size()).sum()
    }

    /// Fills every scratch slot with NaN bit patterns (for tests: a value a kernel fails to
    /// write cannot pass for a result).
    pub fn poison(&self, gpu: &Gpu) {
        for b in self.scratch.values() {
            gpu.queue
                .write_buffer(b, 0, &vec![0xFFu8; b.size() as usize]);
        }
    }
}
