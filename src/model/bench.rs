//! Speed of whole forward passes (`sparq model-bench`): GPU time of the one-pass forward from
//! timestamp queries, the time of each dispatch alone, and from both the overhead per
//! dispatch that chaining layers costs. Measured, never asserted.

use crate::error::Result;
use crate::gpu::{Gpu, GpuTimer};
use crate::gpu::{median, time_dispatches};
use crate::model::Model;

/// One measured (format, batch, sequence) case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelBenchRow {
    /// Weight format.
    pub format: String,
    /// Sequences per batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Median GPU time of one forward pass, µs.
    pub forward_us: f64,
    /// Sequences per second.
    pub seqs_per_s: f64,
    /// Dispatches per forward pass.
    pub dispatches: usize,
    /// Sum of the dispatches' medians when each runs alone in a timed pass, µs.
    pub kernels_us: f64,
    /// (forward − Σ kernels) / dispatches, µs: what chaining costs per dispatch.
    pub overhead_per_dispatch_us: f64,
    /// Where the time goes: each kind of dispatch (label), how many of it one forward runs
    /// and their summed µs alone, the largest sum first.
    pub by_kernel: Vec<(String, usize, f64)>,
    /// PyTorch eager fp32 forward on the same GPU, µs (from `--torch`).
    pub torch_fp32_us: Option<f64>,
    /// PyTorch eager fp16 forward, µs.
    pub torch_fp16_us: Option<f64>,
}

/// Warm-up passes before the timed ones, at most (fewer when `iters` is smaller).
pub const WARMUPS: usize = 3;
/// Timed passes of each dispatch alone, at most (fewer when `iters` is smaller).
pub const PER_DISPATCH_REPEATS: usize = 5;

/// Times `model` at each batch size with `seq` tokens per sequence: `iters` timed forward
/// passes, after `min(iters, WARMUPS)` untimed ones, then `min(iters, PER_DISPATCH_REPEATS)`
/// passes of each dispatch alone, so that `iters` bounds the whole run. Calls
/// `progress(done, total, label)` before each of the `2 · batches.len()` steps (the forward
/// passes, then the dispatches alone, of each batch) and `(total, total, "done")` at the end.
pub fn run(
    model: &Model<'_>,
    gpu: &Gpu,
    batches: &[usize],
    seq: usize,
    iters: usize,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<ModelBenchRow>> {
    // Every shape first: a size the device cannot hold is refused before any is timed.
    for &batch in batches {
        model.check_plan(batch, seq)?;
    }
    let iters = iters.max(1);
    let total = 2 * batches.len();
    let mut rows = Vec::new();
    for (i, &batch) in batches.iter().enumerate() {
        let row = model.with_plan(batch, seq, |d| {
            progress(
                2 * i,
                total,
                &format!("batch {batch}: {iters} forward passes"),
            );
            let whole = time_dispatches(gpu, &[copy(d)], WARMUPS.min(iters), iters)?;
            let forward_us = median(&whole);
            let reps = PER_DISPATCH_REPEATS.min(iters);
            progress(
                2 * i + 1,
                total,
                &format!("batch {batch}: {} dispatches alone ×{reps}", d.len()),
            );
            let (per, labels) = per_dispatch(gpu, d, reps)?;
            let kernels_us: f64 = per.iter().sum();
            let by_kernel = sum_by_label(&labels, &per);
            Ok(ModelBenchRow {
                format: model.layer_formats().join(","),
                batch,
                seq,
                forward_us,
                seqs_per_s: batch as f64 / (forward_us * 1e-6),
                dispatches: d.len(),
                kernels_us,
                overhead_per_dispatch_us: (forward_us - kernels_us) / d.len() as f64,
                by_kernel,
                torch_fp32_us: None,
                torch_fp16_us: None,
            })
        })?;
        rows.push(row);
    }
    progress(total, total, "done");
    Ok(rows)
}

/// Sums the times of dispatches with the same label (the layers of a model repeat shapes).
fn sum_by_label(labels: &[String], us: &[f64]) -> Vec<(String, usize, f64)> {
    let mut sums: Vec<(String, usize, f64)> = Vec::new();
    for (l, &t) in labels.iter().zip(us) {
        match sums.iter_mut().find(|s| &s.0 == l) {
            Some(s) => {
                s.1 += 1;
                s.2 += t;
            }
            None => sums.push((l.clone(), 1, t)),
        }
    }
    sums.sort_by(|a, b| b.2.total_cmp(&a.2));
    sums
}

/// Each dispatch alone in its own timed pass, `reps` times; medians in µs and labels.
fn per_dispatch(
    gpu: &Gpu,
    d: &[crate::gpu::Dispatch],
    reps: usize,
) -> Result<(Vec<f64>, Vec<String>)> {
    if !gpu.caps.timestamps {
        return Ok((
            vec![0.0; d.len()],
            d.iter().map(|x| x.label.clone()).collect(),
        ));
    }
    let mut samples = vec![Vec::new(); d.len()];
    for _ in 0..reps {
        let mut timer = GpuTimer::new(gpu, d.len() as u32)?;
        let mut enc = gpu.encoder("per-dispatch");
        for x in d {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("one dispatch"),
                timestamp_writes: timer.next_pass(),
            });
            x.record(&mut pass);
        }
        timer.resolve(&mut enc);
        gpu.submit_and_wait(enc)?;
        for (s, t) in samples.iter_mut().zip(timer.read_us(gpu)?) {
            s.push(t);
        }
    }
    Ok((
        samples.iter().map(|s| median(s)).collect(),
        d.iter().map(|x| x.label.clone()).collect(),
    ))
}

fn copy(d: &[crate::gpu::Dispatch]) -> Vec<crate::gpu::Dispatch> {
    d.iter()
        .map(|x| crate::gpu::Dispatch {
            label: x.label.clone(),
            pipeline: x.pipeline.clone(),
            bind_group: x.bind_group.clone(),
            offsets: x.offsets.clone(),
            grid: x.grid,
        })
        .collect()
}
