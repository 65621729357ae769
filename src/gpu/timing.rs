//! Timing of recorded dispatches for benchmarks and autotuning: a warm-up that runs until the
//! GPU's speed has settled, then GPU time per iteration from timestamp queries (wall time per
//! submit on adapters without them). Measured, never asserted.

use super::{Dispatch, Gpu, GpuTimer, record_pass};
use crate::error::{Error, Result};

/// Median of `v` (which must not be empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Runs `sets` round-robin in long submits for at least `min_time` and until the time per
/// iteration has settled (or `max_time` has passed); returns the last seconds per iteration.
///
/// Why: after the host has left the GPU idle (quantizing, uploading), the H100 ran integer-heavy
/// kernels 2-5x slower for a second or more although its SM clock already read full speed;
/// f16 streaming kernels were not affected. Timing starts only once that has passed.
pub fn keep_busy(
    gpu: &Gpu,
    sets: &[Vec<Dispatch>],
    first_submit: usize,
    min_time: std::time::Duration,
    max_time: std::time::Duration,
) -> Result<f64> {
    let start_all = std::time::Instant::now();
    let mut per_submit = first_submit.max(1);
    let mut recent: Vec<f64> = Vec::new();
    loop {
        let start = std::time::Instant::now();
        let mut enc = gpu.encoder("warm-up");
        for i in 0..per_submit {
            record_pass(&mut enc, &sets[i % sets.len()], None);
        }
        gpu.submit_and_wait(enc)?;
        let now = std::time::Instant::now();
        let took = now - start;
        let per_iter = took.as_secs_f64() / per_submit as f64;
        if took < std::time::Duration::from_millis(20) {
            // Long submits, so the GPU sees sustained load rather than short bursts.
            per_submit = (per_submit * 2).min(1 << 14);
            recent.clear();
        } else {
            recent.push(per_iter);
        }
        let elapsed = now - start_all;
        if elapsed >= max_time || (elapsed >= min_time && settled(&recent)) {
            return Ok(per_iter);
        }
    }
}

/// Runs `iters` iterations, iteration `i` recording `sets[i % sets.len()]` into one pass,
/// after a short warm-up; returns per-iteration microseconds (GPU time from timestamps,
/// or wall time per submit where the adapter has no timestamp queries).
pub fn time_dispatches(
    gpu: &Gpu,
    sets: &[Vec<Dispatch>],
    warmup: usize,
    iters: usize,
) -> Result<Vec<f64>> {
    if sets.is_empty() || iters == 0 {
        return Err(Error::invalid("nothing to time"));
    }
    let (min_time, max_time) = warm_up_time(gpu);
    let per_iter = keep_busy(gpu, sets, warmup, min_time, max_time)?;
    // Slow cases (large GEMMs) need fewer runs for a stable median: cap at ~0.2 s.
    let iters = iters.min(((0.2 / per_iter.max(1e-9)) as usize).max(3 * BATCH));
    // Each timed pass runs a batch of back-to-back iterations (as a framework's loop would)
    // and counts batch time / batch size, so timestamp placement around a single short
    // dispatch cannot inflate it. The median over batches is what gets reported.
    let batch = if gpu.caps.is_cpu() { 1 } else { BATCH };
    let batches = iters.div_ceil(batch).max(1);
    fn record_batch(
        enc: &mut wgpu::CommandEncoder,
        sets: &[Vec<Dispatch>],
        iters: std::ops::Range<usize>,
        timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timed batch"),
            timestamp_writes,
        });
        for i in iters {
            for d in &sets[i % sets.len()] {
                d.record(&mut pass);
            }
        }
    }
    if gpu.caps.timestamps {
        let mut timer = GpuTimer::new(gpu, batches as u32)?;
        let mut enc = gpu.encoder("timed");
        for b in 0..batches {
            let writes = timer.next_pass();
            record_batch(&mut enc, sets, b * batch..(b + 1) * batch, writes);
        }
        timer.resolve(&mut enc);
        gpu.submit_and_wait(enc)?;
        Ok(timer
            .read_us(gpu)?
            .into_iter()
            .map(|t| t / batch as f64)
            .collect())
    } else {
        let mut out = Vec::with_capacity(batches);
        for b in 0..batches {
            let t = std::time::Instant::now();
            let mut enc = gpu.encoder("timed");
            record_batch(&mut enc, sets, b * batch..(b + 1) * batch, None);
            gpu.submit_and_wait(enc)?;
            out.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
        }
        Ok(out)
    }
}

/// Iterations per timed pass on GPUs.
const BATCH: usize = 20;

/// Least and most time to run a case untimed before timing it: the config's warm-up
/// (`SPARQ_WARMUP_MS`; least, default 500 ms on GPUs, none on CPU adapters) and four times
/// that, at least 3 s (most).
fn warm_up_time(gpu: &Gpu) -> (std::time::Duration, std::time::Duration) {
    let default = if gpu.caps.is_cpu() { 0 } else { 500 };
    let ms = gpu.config.bench.warmup_ms.unwrap_or(default);
    let most = if ms == 0 { 0 } else { (4 * ms).max(3000) };
    (
        std::time::Duration::from_millis(ms),
        std::time::Duration::from_millis(most),
    )
}

/// Whether the last four warm-up submits took the same time per iteration within 3%.
fn settled(recent: &[f64]) -> bool {
    let Some(last) = recent.get(recent.len().wrapping_sub(4)..) else {
        return false;
    };
    let (lo, hi) = last
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    hi <= lo * 1.03
}
