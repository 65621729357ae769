//! Intermediate buffers of a forward pass, by role (`hidden`, `qkv`, `ffn`, ...), shared by
//! every layer and kept across calls. A slot grows when a larger batch arrives; the
//! generation counter then changes so that plans holding the old buffers are rebuilt.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::{ActDType, Tensor, stride_of};
use std::collections::HashMap;

/// Named, growable device buffers.
#[derive(Default)]
pub struct Arena {
    slots: HashMap<&'static str, wgpu::Buffer>,
    generation: u64,
}

impl Arena {
    /// Makes sure slot `name` holds at least `bytes`; returns whether it had to grow.
    pub fn reserve(&mut self, gpu: &Gpu, name: &'static str, bytes: u64) -> Result<bool> {
        let bytes = bytes.max(16).next_multiple_of(16);
        if self.slots.get(name).is_some_and(|b| b.size() >= bytes) {
            return Ok(false);
        }
        self.slots
            .insert(name, gpu.storage(&format!("arena {name}"), bytes)?);
        self.generation += 1;
        Ok(true)
    }

    /// An f32 `rows × cols` tensor view of slot `name` (reserving it first).
    pub fn tensor(
        &mut self,
        gpu: &Gpu,
        name: &'static str,
        rows: usize,
        cols: usize,
    ) -> Result<Tensor> {
        self.reserve(gpu, name, (rows * stride_of(cols) * 4) as u64)?;
        Ok(Tensor {
            buffer: self.slots[name].clone(),
            rows,
            cols,
            dtype: ActDType::F32,
        })
    }

    /// The buffer of slot `name` (reserving `bytes`).
    pub fn buffer(&mut self, gpu: &Gpu, name: &'static str, bytes: u64) -> Result<wgpu::Buffer> {
        self.reserve(gpu, name, bytes)?;
        Ok(self.slots[name].clone())
    }

    /// Changes whenever a slot is reallocated.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes held by all slots.
    pub fn bytes(&self) -> u64 {
        self.slots.values().map(|b| b.size()).sum()
    }
}
