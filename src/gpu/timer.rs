//! GPU time of compute passes from timestamp queries: each timed pass writes a begin and an
//! end timestamp, so host scheduling and submission gaps are excluded.

use super::{Gpu, read_buffer};
use crate::error::DeviceError;
use crate::error::{Error, Result};

/// A set of timestamp pairs, one pair per timed pass.
pub struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    used: u32,
    period_ns: f64,
}

impl GpuTimer {
    /// Room for `passes` timed passes; fails when the device has no timestamp queries.
    pub fn new(gpu: &Gpu, passes: u32) -> Result<Self> {
        if !gpu.caps.timestamps {
            return Err(Error::Device(DeviceError::MissingFeature {
                adapter: gpu.caps.name.clone(),
                feature: "TIMESTAMP_QUERY".into(),
            }));
        }
        let count = (passes * 2).clamp(2, 4096);
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("sparq timer"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sparq timer resolve"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(GpuTimer {
            queries,
            resolve,
            capacity: count / 2,
            used: 0,
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// Timestamp writes for the next timed pass, or `None` when the timer is full.
    pub fn next_pass(&mut self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        if self.used >= self.capacity {
            return None;
        }
        let i = self.used;
        self.used += 1;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }

    /// Records the copy of all written timestamps into the resolve buffer.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        if self.used > 0 {
            encoder.resolve_query_set(&self.queries, 0..2 * self.used, &self.resolve, 0);
        }
    }

    /// Durations in microseconds of the passes timed so far (after the encoder holding
    /// [`GpuTimer::resolve`] was submitted), then starts over.
    pub fn read_us(&mut self, gpu: &Gpu) -> Result<Vec<f64>> {
        let n = self.used;
        self.used = 0;
        if n == 0 {
            return Ok(Vec::new());
        }
        let raw = read_buffer(gpu, &self.resolve, n as u64 * 16)?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        Ok(ticks
            .chunks_exact(2)
            .map(|p| p[1].saturating_sub(p[0]) as f64 * self.period_ns / 1000.0)
            .collect())
    }
}

/// Begin and end timestamps of one pass that travel to the host inside the pass's read-back
/// buffer, behind its results, so one mapping brings back both.
pub struct PassStamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
}

impl PassStamps {
    /// Bytes the stamps take in a read-back buffer.
    pub const BYTES: u64 = 16;

    /// Stamps for one pass, or `None` where the device has no timestamp queries.
    pub fn new(gpu: &Gpu, label: &str) -> Option<Self> {
        gpu.caps.timestamps.then(|| PassStamps {
            set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: Self::BYTES,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
        })
    }

    /// Where the stamps go in a read-back buffer holding `result_bytes` of results first.
    fn offset(result_bytes: u64) -> u64 {
        result_bytes.next_multiple_of(8)
    }

    /// Size of a read-back buffer for `result_bytes` of results and the stamps behind them.
    pub fn staging_bytes(result_bytes: u64) -> u64 {
        Self::offset(result_bytes) + Self::BYTES
    }

    /// Bytes to map after a pass: the results, and the stamps behind them where `stamps`
    /// timed it.
    pub fn mapped_bytes(stamps: Option<&Self>, result_bytes: u64) -> u64 {
        match stamps {
            Some(_) => Self::staging_bytes(result_bytes),
            None => result_bytes,
        }
    }

    /// The timestamp writes of the pass to time.
    pub fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// The timestamp writes of one of several compute passes timed as one: the beginning of
    /// the `first`, the end of the `last`; `None` for a pass in between.
    pub fn writes_of(
        &self,
        first: bool,
        last: bool,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        (first || last).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: first.then_some(0),
            end_of_pass_write_index: last.then_some(1),
        })
    }

    /// Records, after the pass, the copy of the stamps to `Self::offset(result_bytes)` in
    /// `staging`.
    pub fn copy_to(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
        result_bytes: u64,
    ) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(
            &self.resolve,
            0,
            staging,
            Self::offset(result_bytes),
            Self::BYTES,
        );
    }

    /// Seconds between the stamps, read from the mapped read-back bytes.
    pub fn seconds(gpu: &Gpu, mapped: &[u8], result_bytes: u64) -> f64 {
        let at = Self::offset(result_bytes) as usize;
        let t: [u64; 2] = bytemuck::pod_read_unaligned(&mapped[at..at + Self::BYTES as usize]);
        t[1].saturating_sub(t[0]) as f64 * gpu.queue.get_timestamp_period() as f64 * 1e-9
    }
}
