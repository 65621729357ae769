//! `sparq bench`: the streaming-read ceiling, then every weight format at LLM-like shapes,
//! timed on the GPU with timestamp queries (median of many runs, weights rotated through
//! several buffers so that repeated runs do not measure the cache).

mod ceiling;
pub mod gemm;
mod report;
pub mod sparse;
pub mod sparse_tune;

pub use ceiling::{shader_variants, stream_read_gbps};
pub use report::{BenchReport, BenchRow, TorchBaseline};

use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::{Dispatch, Gpu, GpuTimer, record_pass};
use crate::matmul::{KernelChoice, Linear};
use crate::tensor::{ActDType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Weight formats.
    pub formats: Vec<WeightFormat>,
    /// Activation rows.
    pub ms: Vec<usize>,
    /// (n, k) weight shapes.
    pub shapes: Vec<(usize, usize)>,
    /// Timed runs per case (after warm-up).
    pub iters: usize,
    /// Bytes read by the bandwidth-ceiling kernel.
    pub ceiling_bytes: u64,
    /// Activation type.
    pub act: ActDType,
}

impl BenchConfig {
    /// The full set for `gpu`: LLM shapes on GPUs, a smaller set on CPU adapters.
    pub fn default_for(gpu: &Gpu) -> Self {
        if gpu.caps.is_cpu() {
            BenchConfig {
                formats: WeightFormat::all(),
                ms: vec![1, 8, 32],
                shapes: vec![(1024, 1024), (2752, 1024), (1024, 2752)],
                iters: 5,
                ceiling_bytes: 64 << 20,
                act: ActDType::F32,
            }
        } else {
            BenchConfig {
                formats: WeightFormat::all(),
                ms: vec![1, 8, 32, 256],
                shapes: vec![
                    (4096, 4096),
                    (11008, 4096),
                    (4096, 11008),
                    (14336, 4096),
                    (8192, 8192),
                ],
                iters: 400,
                ceiling_bytes: 1 << 30,
                act: ActDType::F32,
            }
        }
    }

    /// A reduced set that runs in seconds (smoke tests).
    pub fn quick() -> Self {
        BenchConfig {
            formats: WeightFormat::all(),
            ms: vec![1, 32],
            shapes: vec![(256, 512)],
            iters: 3,
            ceiling_bytes: 4 << 20,
            act: ActDType::F32,
        }
    }
}

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
        return Err(Error::Invalid("nothing to time".into()));
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

/// Least and most time to run a case untimed before timing it: `SPARQ_WARMUP_MS` (least,
/// default 500 ms on GPUs, none on CPU adapters) and four times that, at least 3 s (most).
fn warm_up_time(gpu: &Gpu) -> (std::time::Duration, std::time::Duration) {
    let default = if gpu.caps.is_cpu() { 0 } else { 500 };
    let ms = std::env::var("SPARQ_WARMUP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
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

/// Random weights in [-1, 1), deterministic per shape.
fn random_weights(n: usize, k: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64((n * 31 + k) as u64);
    (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// How many copies of `bytes` of weights to rotate through so the working set exceeds the
/// last-level cache (taken as 64 MiB; four times that when it fits the device easily).
fn rotations(gpu: &Gpu, bytes: u64) -> usize {
    if gpu.caps.is_cpu() {
        return 1;
    }
    (256u64 << 20).div_ceil(bytes.max(1)).clamp(1, 8) as usize
}

/// `SPARQ_BENCH_REPLACE=N`: re-creates the case's weight buffers N times and prints each
/// placement's median to stderr, to tell allocation-dependent speed from kernel speed.
fn diagnose_placement(
    gpu: &Gpu,
    packed: &Option<PackedWeights>,
    x: &Tensor,
    y: &Tensor,
    cfg: &BenchConfig,
) -> Result<()> {
    let Some(packed) = packed else { return Ok(()) };
    let copies = rotations(gpu, packed.bytes());
    for r in 0..replacements() {
        let layers = (0..copies)
            .map(|_| Linear::new(gpu, packed, None))
            .collect::<Result<Vec<_>>>()?;
        let sets = layers
            .iter()
            .map(|l| l.plan(gpu, x, y, KernelChoice::Auto))
            .collect::<Result<Vec<_>>>()?;
        let times = time_dispatches(gpu, &sets, 3.max(copies), cfg.iters)?;
        eprintln!("placement {r}: {:.1} us", median(&times));
    }
    Ok(())
}

fn replacements() -> usize {
    std::env::var("SPARQ_BENCH_REPLACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn packed_for_diag(
    w: &[f32],
    n: usize,
    k: usize,
    f: WeightFormat,
) -> Result<Option<PackedWeights>> {
    if replacements() == 0 {
        return Ok(None);
    }
    PackedWeights::quantize(w, n, k, f).map(Some)
}

/// Measures every case of `cfg`, calling `progress(done, total, label)` as it goes.
pub fn run(
    gpu: &Gpu,
    cfg: &BenchConfig,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<BenchReport> {
    let total = 1 + cfg.shapes.len() * cfg.formats.len() * cfg.ms.len();
    progress(0, total, "streaming-read ceiling");
    let ceiling = stream_read_gbps(gpu, cfg.ceiling_bytes, cfg.iters.max(10))?;
    let mut rows = Vec::new();
    let mut done = 1;
    for &(n, k) in &cfg.shapes {
        let w = random_weights(n, k);
        let mut rng = StdRng::seed_from_u64(7);
        // Quantize and upload every format of this shape first, so the GPU is left idle once
        // per shape rather than before every case (see `keep_busy`).
        let mut prepared = Vec::new();
        for &format in &cfg.formats {
            let packed = PackedWeights::quantize(&w, n, k, format)?;
            let qerr = packed.error(&w).relative;
            let copies = rotations(gpu, packed.bytes());
            let layers = (0..copies)
                .map(|_| Linear::new(gpu, &packed, None))
                .collect::<Result<Vec<_>>>()?;
            prepared.push((format, qerr, copies, layers));
        }
        let mut rewarm = !gpu.caps.is_cpu();
        for (format, qerr, copies, layers) in prepared {
            for &m in &cfg.ms {
                progress(done, total, &format!("{} m={m} {n}x{k}", format.name()));
                done += 1;
                let xs: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let x = Tensor::from_f32_as(gpu, &xs, m, k, cfg.act)?;
                let y = Tensor::empty(gpu, m, n, cfg.act)?;
                let sets = layers
                    .iter()
                    .map(|l| l.plan(gpu, &x, &y, KernelChoice::Auto))
                    .collect::<Result<Vec<_>>>()?;
                if std::mem::take(&mut rewarm) {
                    let long = std::time::Duration::from_secs(2);
                    keep_busy(gpu, &sets, copies, long, long)?;
                }
                let times = time_dispatches(gpu, &sets, 3.max(copies), cfg.iters)?;
                diagnose_placement(gpu, &packed_for_diag(&w, n, k, format)?, &x, &y, cfg)?;
                let us = median(&times);
                let weight_bytes = layers[0].weight_bytes;
                let act_bytes = ((m * k + m * n) * cfg.act.size()) as u64;
                let secs = us * 1e-6;
                rows.push(BenchRow {
                    format: format.name(),
                    kernel: layers[0].strategy_for(gpu, m).name().to_string(),
                    m,
                    n,
                    k,
                    gpu_us: us,
                    gpu_us_min: times.iter().copied().fold(f64::INFINITY, f64::min),
                    weight_gbps: weight_bytes as f64 / secs / 1e9,
                    tflops: 2.0 * (m * n * k) as f64 / secs / 1e12,
                    pct_ceiling: 100.0 * (weight_bytes + act_bytes) as f64 / secs / 1e9 / ceiling,
                    quant_error: qerr,
                    torch_fp16_us: None,
                    speedup_vs_torch: None,
                });
            }
        }
    }
    progress(total, total, "done");
    Ok(BenchReport {
        adapter: gpu.caps.clone(),
        timing: if gpu.caps.timestamps {
            "GPU timestamps".into()
        } else {
            "wall clock per submit".into()
        },
        ceiling_gbps: ceiling,
        rows,
    })
}
