//! The adapter's streaming-read bandwidth, measured in the same run as the kernels it judges.

use crate::error::Result;
use crate::gpu::Slot::{Read, ReadWrite};
use crate::gpu::{Gpu, Kernel};

const STREAM_READ: &str = include_str!("../../shaders/bench/stream_read.wgsl");

/// The read kernel: no params, the buffer it streams and a sink that keeps the reads alive.
const STREAM: Kernel<()> = Kernel::new("stream_read", &[Read("src"), ReadWrite("sink")]);

/// Reads a buffer of about `bytes` bytes `iters` times; returns the median GB/s.
pub fn stream_read_gbps(gpu: &Gpu, bytes: u64, iters: usize) -> Result<f64> {
    const WG: u64 = 256;
    const READS: u64 = 8;
    let per_wg = WG * READS * 16;
    let bytes = bytes.min(gpu.caps.max_storage_binding).max(per_wg) / per_wg * per_wg;
    let workgroups = (bytes / per_wg) as u32;
    // Random-looking contents: a hash of the index, so no compression or zero shortcut helps.
    let data: Vec<u32> = (0..bytes / 4)
        .map(|i| (i as u32).wrapping_mul(0x9E37_79B9) ^ 0x5bd1_e995)
        .collect();
    let src = gpu.upload("stream src", &data)?;
    drop(data);
    let sink = gpu.storage("stream sink", workgroups as u64 * WG * 4)?;
    let dispatch = STREAM
        .launch(gpu)
        .label("stream read")
        .shader("stream_read", || Ok(source().to_string()))
        .constants(&[("WG", WG as f64), ("READS", READS as f64)])
        .buffers(&[Some(&src), Some(&sink)])
        .workgroups(workgroups as u64)
        .build()?;
    let times = super::time_dispatches(gpu, &[vec![dispatch]], 1, iters)?;
    Ok(bytes as f64 / (super::median(&times) * 1e-6) / 1e9)
}

/// The WGSL of the streaming-read kernel (no template variables; its shape is override
/// constants).
fn source() -> &'static str {
    STREAM_READ
}

/// Every WGSL module the bandwidth measurement can ask for, as (pipeline name, WGSL), for
/// validating them offline (see `tests/shader_variants.rs`).
pub fn shader_variants() -> Vec<(String, Result<String>)> {
    vec![("stream_read".to_string(), Ok(source().to_string()))]
}
