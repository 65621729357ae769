//! `sparq bench`: the streaming-read ceiling, then every weight format at LLM-like shapes,
//! timed on the GPU with timestamp queries (median of many runs, weights rotated through
//! several buffers so that repeated runs do not measure the cache).

mod ceiling;
pub mod gemm;
pub mod llm;
mod report;
pub mod sparse;
pub mod sparse_tune;

pub use ceiling::{shader_variants, stream_read_gbps};
pub use report::{BenchReport, BenchRow, TorchBaseline};

use crate::error::Result;
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::{Gpu, keep_busy, median, time_dispatches};
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
    for r in 0..gpu.config.bench.replace {
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

fn packed_for_diag(
    gpu: &Gpu,
    w: &[f32],
    n: usize,
    k: usize,
    f: WeightFormat,
) -> Result<Option<PackedWeights>> {
    if gpu.config.bench.replace == 0 {
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
    let max_m = cfg.ms.iter().copied().max().unwrap_or(1);
    for &shape in &cfg.shapes {
        // The floats, one packed copy at a time, and the device's copies where it is the host.
        gpu.check_layer_shape(shape, max_m, 3)?;
    }
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
                diagnose_placement(gpu, &packed_for_diag(gpu, &w, n, k, format)?, &x, &y, cfg)?;
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
                    gpu_us_stddev: crate::report::stddev(&times),
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
