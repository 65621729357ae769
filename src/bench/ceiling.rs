//! The adapter's streaming-read bandwidth, measured in the same run as the kernels it judges.

use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, PipelineKey};

const STREAM_READ: &str = include_str!("../../shaders/bench/stream_read.wgsl");

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
    let layout = gpu.pipelines.get_or_create(
        &gpu.device,
        &PipelineKey::new("stream_read", &[("WG", WG as f64), ("READS", READS as f64)]),
        None,
        || source().to_string(),
    )?;
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("stream read"),
        layout: &layout.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: src.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: sink.as_entire_binding(),
            },
        ],
    });
    let dispatch = Dispatch {
        label: "stream read".into(),
        pipeline: layout.clone(),
        bind_group,
        grid: gpu.grid(workgroups),
    };
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
