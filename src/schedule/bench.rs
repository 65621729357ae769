//! `sparq bench --adapters ...`: data-parallel throughput of a [`LinearChain`] over several
//! devices: each device alone, all together, the scaling efficiency (together ÷ sum of
//! alone) and the split the scheduler chose.

use super::{ChainLayer, Cluster, ClusterConfig, LinearChain, Replica, open_devices};
use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// What to measure.
#[derive(Clone, Debug)]
pub struct DataParallelConfig {
    /// Devices: `all` or a comma-separated list of adapter selectors (see [`open_devices`]).
    pub adapters: String,
    /// Input features of the first layer.
    pub k: usize,
    /// Outputs of every layer (the hidden width).
    pub n: usize,
    /// One weight format per layer.
    pub formats: Vec<WeightFormat>,
    /// Rows per batch.
    pub batch: usize,
    /// Largest micro-batch, rows.
    pub max_rows: usize,
    /// Timed batches per measurement (the best is kept).
    pub repeats: usize,
    /// Rows each device is calibrated on.
    pub calibration_rows: usize,
    /// Target wall time of a device's alone measurement, seconds (slow devices get fewer rows).
    pub alone_seconds: f64,
}

impl DataParallelConfig {
    /// LLM-like widths for GPUs.
    pub fn gpu(adapters: &str) -> Self {
        DataParallelConfig {
            adapters: adapters.into(),
            k: 4096,
            n: 4096,
            formats: vec![
                WeightFormat::Int4 {
                    group: 32,
                    asymmetric: false,
                },
                WeightFormat::F16,
                WeightFormat::Int4 {
                    group: 32,
                    asymmetric: false,
                },
            ],
            batch: 16384,
            max_rows: 2048,
            repeats: 3,
            calibration_rows: 64,
            alone_seconds: 1.0,
        }
    }

    /// A size that runs in seconds on CPU adapters.
    pub fn quick(adapters: &str) -> Self {
        DataParallelConfig {
            k: 256,
            n: 256,
            batch: 512,
            max_rows: 128,
            repeats: 2,
            calibration_rows: 32,
            alone_seconds: 0.3,
            ..Self::gpu(adapters)
        }
    }

    /// Floating-point operations per row of the chain.
    pub fn flops_per_row(&self) -> f64 {
        (0..self.formats.len())
            .map(|i| 2.0 * self.n as f64 * if i == 0 { self.k } else { self.n } as f64)
            .sum()
    }
}

/// One device's throughput alone.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AloneRow {
    /// `[index] adapter (backend)`.
    pub device: String,
    /// Rows of the measurement.
    pub rows: usize,
    /// Rows per second.
    pub rows_per_s: f64,
}

/// The outcome of the data-parallel benchmark.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DataParallelReport {
    /// Chain description.
    pub model: String,
    /// Each device alone.
    pub alone: Vec<AloneRow>,
    /// All devices together, rows per second.
    pub together_rows_per_s: f64,
    /// `together ÷ Σ alone`.
    pub efficiency: f64,
    /// `together ÷ best alone`.
    pub speedup_over_best: f64,
    /// Largest |difference| between the together run and device 0 alone, on the rows device 0
    /// computed alone.
    pub max_abs_diff_vs_device0: f32,
    /// Rows computed by devices of device 0's adapter that differ from its alone run in any bit.
    pub rows_not_bit_identical: usize,
    /// Split and time per device of the best together run.
    pub split: super::BatchReport,
    /// TFLOP/s of the together run.
    pub together_tflops: f64,
}

impl DataParallelReport {
    /// Markdown tables, numbers to 3 significant digits with SI prefixes.
    pub fn markdown(&self) -> String {
        use crate::report::{Align::*, Table, num};
        let mut s = format!("### Data parallel: {}\n\n", self.model);
        let mut t = Table::new(&[("device", Left), ("rows", Right), ("alone", Right)]);
        for a in &self.alone {
            t.push([
                a.device.clone(),
                a.rows.to_string(),
                num::rate(a.rows_per_s, "rows/s"),
            ]);
        }
        s += &t.markdown();
        let sum: f64 = self.alone.iter().map(|a| a.rows_per_s).sum();
        let mut t = Table::new(&[
            ("together", Right),
            ("Σ alone", Right),
            ("scaling efficiency", Right),
            ("speed-up over best alone", Right),
            ("FLOP/s together", Right),
            ("max abs diff vs [0] alone", Right),
            ("rows not bit-identical", Right),
        ]);
        t.push([
            num::rate(self.together_rows_per_s, "rows/s"),
            num::rate(sum, "rows/s"),
            num::pct(self.efficiency * 100.0),
            num::ratio(self.speedup_over_best),
            if self.together_tflops > 0.0 {
                num::rate(self.together_tflops * 1e12, "FLOP/s")
            } else {
                "–".into()
            },
            format!("{:.2e}", self.max_abs_diff_vs_device0),
            self.rows_not_bit_identical.to_string(),
        ]);
        s += "\n";
        s += &t.markdown();
        s += &format!(
            "\nSplit of the best together run ({} rows, {}):\n\n",
            self.split.rows,
            num::time_us(self.split.wall_s * 1e6)
        );
        s += &self.split.markdown();
        s
    }
}

/// Steps of [`run`] over `devices` devices: building the chain on every device,
/// calibrating, each device alone, all together.
pub fn steps(devices: usize) -> usize {
    3 + devices
}

/// Runs the benchmark. Once the devices are open, calls `progress(done, total, label)` before
/// each of the [`steps`] steps and `(total, total, "done")` at the end.
pub fn run(
    cfg: &DataParallelConfig,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<DataParallelReport> {
    if cfg.formats.is_empty() || cfg.batch == 0 || cfg.k == 0 || cfg.n == 0 {
        return Err(Error::invalid(
            "the benchmark needs at least one layer, one row and one feature",
        ));
    }
    let gpus = open_devices(&cfg.adapters)?;
    let total = steps(gpus.len());
    progress(0, total, "building the layers on every device");
    for g in &gpus {
        // Every layer's floats, one packed copy at a time, and the device's copies.
        g.check_layer_shape((cfg.n, cfg.k), cfg.batch, cfg.formats.len() + 2)?;
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut layers = Vec::new();
    for (i, &f) in cfg.formats.iter().enumerate() {
        let k = if i == 0 { cfg.k } else { cfg.n };
        // Scaled so activations keep their size through the chain.
        let scale = (3.0 / k as f32).sqrt();
        let w: Vec<f32> = (0..cfg.n * k)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        layers.push(ChainLayer {
            weights: PackedWeights::quantize(&w, cfg.n, k, f)?,
            bias: Some((0..cfg.n).map(|_| rng.random_range(-0.1..0.1)).collect()),
        });
    }
    let model = format!(
        "{} layers {}, k={} n={}, batch {} rows, micro-batches ≤ {}",
        layers.len(),
        cfg.formats
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join("/"),
        cfg.k,
        cfg.n,
        cfg.batch,
        cfg.max_rows
    );
    let max_rows = cfg.max_rows.max(1);
    let mut cluster = Cluster::new(
        gpus,
        |g| LinearChain::new(g, &layers, max_rows),
        ClusterConfig::default(),
    )?;
    let inputs: Vec<Vec<f32>> = (0..cfg.batch)
        .map(|_| (0..cfg.k).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut done = 1;
    let report = measure(
        &mut cluster,
        &inputs,
        &Measure {
            model,
            flops_per_row: cfg.flops_per_row(),
            repeats: cfg.repeats,
            calibration_rows: cfg.calibration_rows,
            alone_seconds: cfg.alone_seconds,
        },
        &mut |label| {
            progress(done.min(total), total, label);
            done += 1;
        },
    )?;
    progress(total, total, "done");
    Ok(report)
}

/// How [`measure`] runs.
struct Measure {
    model: String,
    flops_per_row: f64,
    repeats: usize,
    calibration_rows: usize,
    alone_seconds: f64,
}

/// Calibrates `cluster` on the first rows of `inputs`, times each device alone and all
/// together, and compares the together run with device 0's alone run; `step(label)` before
/// calibrating, before each device alone and before the together run.
fn measure<R: Replica<Out = Vec<f32>>>(
    cluster: &mut Cluster<R>,
    inputs: &[R::In],
    cfg: &Measure,
    step: &mut dyn FnMut(&str),
) -> Result<DataParallelReport> {
    let batch = inputs.len();
    if batch == 0 {
        return Err(Error::invalid("the benchmark needs at least one row"));
    }
    let sample = &inputs[..cfg.calibration_rows.clamp(1, batch)];
    step("calibrating each device");
    cluster.calibrate(sample)?;
    eprintln!("calibrated rows/s: {:?}", cluster.rates());

    let mut alone = Vec::new();
    let mut reference: Option<Vec<Vec<f32>>> = None;
    for i in 0..cluster.len() {
        // The whole batch, unless that takes a device much longer than `alone_seconds`: slow
        // devices measure on fewer rows (whole micro-batches), so the benchmark ends in time.
        let rate = cluster.rates()[i];
        let rows = if batch as f64 <= 4.0 * rate * cfg.alone_seconds {
            batch
        } else {
            ((rate * cfg.alone_seconds) as usize).clamp(cfg.calibration_rows.max(1), batch)
        };
        let repeats = if rows < batch { 1 } else { cfg.repeats.max(1) };
        step(&format!("{} alone", cluster.names()[i]));
        let mut best = 0f64;
        for _ in 0..repeats {
            let out = cluster.run_on(&[i], &inputs[..rows])?;
            best = best.max(rows as f64 / out.report.wall_s);
            if i == 0 && reference.is_none() {
                reference = Some(out.outputs);
            }
        }
        eprintln!(
            "{} alone: {best:.0} rows/s on {rows} rows",
            cluster.names()[i]
        );
        alone.push(AloneRow {
            device: cluster.names()[i].clone(),
            rows,
            rows_per_s: best,
        });
    }
    step("all devices together");
    let mut best: Option<(f64, super::BatchOutput<Vec<f32>>)> = None;
    for _ in 0..cfg.repeats.max(1) {
        let out = cluster.run(inputs)?;
        let rate = batch as f64 / out.report.wall_s;
        if best.as_ref().is_none_or(|(r, _)| rate > *r) {
            best = Some((rate, out));
        }
    }
    let (together, out) = best.expect("at least one repeat");
    let (mut max_diff, mut not_identical) = (0f32, 0usize);
    if let Some(reference) = &reference {
        let same_adapter: Vec<bool> = (0..cluster.len())
            .map(|i| {
                cluster.gpu(i).caps.name == cluster.gpu(0).caps.name
                    && cluster.gpu(i).caps.backend == cluster.gpu(0).caps.backend
            })
            .collect();
        for mb in &out.report.micro_batches {
            let end = (mb.start + mb.rows).min(reference.len());
            let pairs = out.outputs[mb.start.min(end)..end]
                .iter()
                .zip(&reference[mb.start.min(end)..end]);
            for (a, b) in pairs {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                max_diff = max_diff.max(d);
                let identical = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                if same_adapter[mb.device] && !identical {
                    not_identical += 1;
                }
            }
        }
    }
    let sum: f64 = alone.iter().map(|a| a.rows_per_s).sum();
    let best_alone = alone.iter().map(|a| a.rows_per_s).fold(0f64, f64::max);
    Ok(DataParallelReport {
        model: cfg.model.clone(),
        together_tflops: together * cfg.flops_per_row / 1e12,
        alone,
        together_rows_per_s: together,
        efficiency: together / sum.max(1e-9),
        speedup_over_best: together / best_alone.max(1e-9),
        max_abs_diff_vs_device0: max_diff,
        rows_not_bit_identical: not_identical,
        split: out.report,
    })
}

/// `count` sentences of about `words` words each (lengths vary from a quarter of it to all of
/// it), deterministic: the text input of the model benchmark.
pub fn sentences(count: usize, words: usize) -> Vec<String> {
    const VOCAB: [&str; 24] = [
        "the",
        "model",
        "runs",
        "on",
        "every",
        "device",
        "and",
        "a",
        "batch",
        "of",
        "sentences",
        "is",
        "split",
        "into",
        "parts",
        "that",
        "each",
        "GPU",
        "takes",
        "when",
        "it",
        "has",
        "room",
        "quickly",
    ];
    let words = words.max(1);
    (0..count)
        .map(|i| {
            let len = words / 4 + (i * 37) % (words - words / 4 + 1);
            (0..len.max(1))
                .map(|j| VOCAB[(i * 7 + j * 5 + j / 3) % VOCAB.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Data-parallel throughput of a text model (sentence embeddings) over the devices of
/// `adapters`, one report per batch size: `sparq bench --adapters ... --model DIR`. Calls
/// `progress(done, total, label)` before loading the replicas and before each batch size
/// (`total` = 1 + `batches.len()`), and `(total, total, "done")` at the end.
pub fn run_model(
    adapters: &str,
    model: &std::path::Path,
    options: crate::model::LoadOptions,
    batches: &[usize],
    words: usize,
    max_rows: usize,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<DataParallelReport>> {
    let total = 1 + batches.len();
    for &batch in batches {
        // Each sentence (its words and the String), and its vector coming back.
        let what = format!("a batch of {batch} sentences of ≤ {words} words and their vectors");
        let per_row = 24 + 8 * words + 4 * 1024;
        crate::gpu::limits::check_host(
            &what,
            crate::gpu::limits::byte_size(&what, &[batch, per_row], 1)?,
        )?;
    }
    progress(0, total, "opening the devices and loading the model");
    let gpus = open_devices(adapters)?;
    let mut cluster = Cluster::new(
        gpus,
        |g| super::ModelReplica::load(model, g, options.clone(), max_rows),
        ClusterConfig::default(),
    )?;
    let mut reports = Vec::new();
    for (i, &batch) in batches.iter().enumerate() {
        progress(1 + i, total, &format!("batch {batch}"));
        let inputs = sentences(batch, words);
        let name = format!(
            "{} ({} weights), batch {batch} sentences of ≤ {words} words, micro-batches ≤ {max_rows}",
            model.display(),
            options.format.name()
        );
        reports.push(measure(
            &mut cluster,
            &inputs,
            &Measure {
                model: name,
                flops_per_row: 0.0,
                repeats: 2,
                calibration_rows: max_rows.min(batch),
                alone_seconds: 2.0,
            },
            // Counted by batch size, not by measure's own steps.
            &mut |_| {},
        )?);
    }
    progress(total, total, "done");
    Ok(reports)
}

/// The configuration of `sparq bench --adapters`: `formats` one per layer, the first of
/// `shapes` (`(n, k)`) for the widths, the first of `ms` for the batch.
pub fn cli_config(
    adapters: &str,
    quick: bool,
    formats: Option<&[WeightFormat]>,
    shapes: Option<&[(usize, usize)]>,
    ms: Option<&[usize]>,
) -> DataParallelConfig {
    let mut cfg = if quick {
        DataParallelConfig::quick(adapters)
    } else {
        DataParallelConfig::gpu(adapters)
    };
    if let Some(f) = formats {
        cfg.formats = f.to_vec();
    }
    if let Some(&(n, k)) = shapes.and_then(|s| s.first()) {
        (cfg.n, cfg.k) = (n, k);
    }
    if let Some(&m) = ms.and_then(|m| m.first()) {
        cfg.batch = m;
    }
    cfg
}
