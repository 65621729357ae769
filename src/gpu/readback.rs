//! Reading results back to the host.
//!
//! Sound because the map callback only records the outcome; the data are read after
//! `poll(Wait)` has returned for the submission that copied them and the callback has run,
//! when the mapping is complete, and the staging buffer is unmapped before it is dropped.

use super::Gpu;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// Copies `bytes` bytes from the start of `src` into host memory.
pub fn read_buffer(gpu: &Gpu, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let size = bytes.next_multiple_of(4).max(4);
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("sparq readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.encoder("readback");
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
    let index = gpu.queue.submit([enc.finish()]);
    map_read(gpu, &staging.slice(..), index)?;
    let data = {
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::device_failed(e.to_string()))?;
        view[..bytes as usize].to_vec()
    };
    staging.unmap();
    Ok(data)
}

/// Maps `slice` of a `MAP_READ` buffer for reading once submission `index` (the one that
/// copied into it) is done, waiting for both; the caller reads it and unmaps the buffer.
pub fn map_read(
    gpu: &Gpu,
    slice: &wgpu::BufferSlice<'_>,
    index: wgpu::SubmissionIndex,
) -> Result<()> {
    let outcome = Arc::new(Mutex::new(None));
    let o = outcome.clone();
    slice.map_async(wgpu::MapMode::Read, move |r| *o.lock().unwrap() = Some(r));
    gpu.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .map_err(|e| Error::device_failed(e.to_string()))?;
    gpu.check()?;
    // With several threads on one device, another thread's poll may have taken this
    // mapping's completion and not yet run its callback when ours returns: poll until the
    // callback has run (it comes within microseconds), within a bound.
    let started = std::time::Instant::now();
    loop {
        match outcome.lock().unwrap().take() {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => {
                return Err(Error::device_failed(format!(
                    "mapping read-back buffer: {e}"
                )));
            }
            None if started.elapsed() > CALLBACK_WAIT => {
                return Err(Error::device_failed("read-back mapping never completed"));
            }
            None => {}
        }
        gpu.device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| Error::device_failed(e.to_string()))?;
        std::thread::yield_now();
    }
}

/// How long a completed mapping's callback may take to run on another thread.
const CALLBACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
