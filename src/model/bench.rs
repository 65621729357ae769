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
    /// Sample standard deviation of the timed forward passes, µs.
    pub forward_us_stddev: f64,
    /// Sequences per second.
    pub seqs_per_s: f64,
    /// Dispatches per forward pass.
    pub dispatches: usize,
    /// Sum of the dispatches' medians when each runs alone in a timed pass, µs (0 where the
    /// adapter has no timestamp queries: nothing was timed alone).
    pub kernels_us: f64,
    /// Spread of that sum: the square root of the sum of the dispatches' variances, µs.
    pub kernels_us_stddev: f64,
    /// (forward − Σ kernels) / dispatches, µs: what chaining costs per dispatch. An estimate
    /// only where `overhead_meaningful`.
    pub overhead_per_dispatch_us: f64,
    /// Whether the dispatches were timed alone and forward − Σ kernels is positive and larger
    /// than the spread of the two measurements; otherwise `overhead_per_dispatch_us` says
    /// nothing about chaining (see [`OVERHEAD_NOTE`]).
    pub overhead_meaningful: bool,
    /// Where the time goes: each kind of dispatch (label), how many of it one forward runs
    /// and their summed µs alone, the largest sum first.
    pub by_kernel: Vec<(String, usize, f64)>,
    /// PyTorch eager fp32 forward on the same GPU, µs (from `--torch`).
    pub torch_fp32_us: Option<f64>,
    /// PyTorch eager fp16 forward, µs.
    pub torch_fp16_us: Option<f64>,
}

/// Why a per-dispatch overhead reads `n/a`: the note under `sparq model-bench`'s table.
pub const OVERHEAD_NOTE: &str = "overhead µs/dispatch is (forward − Σ kernels alone) / dispatches; \
    it reads n/a where that difference is negative or within the spread (± sd) of the two \
    measurements, or where the adapter has no timestamp queries to time dispatches alone: \
    on CPU adapters and with coarse timers, a dispatch alone in its own pass costs more than \
    it does inside the chained forward pass, so the difference measures that, not chaining";

/// Whether the chaining overhead `forward − kernels` stands above the spread of both.
fn meaningful(timed: bool, forward: (f64, f64), kernels: (f64, f64)) -> bool {
    let diff = forward.0 - kernels.0;
    let spread = (forward.1.powi(2) + kernels.1.powi(2)).sqrt();
    timed && diff > 0.0 && diff > spread
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
            let forward_us_stddev = crate::report::stddev(&whole);
            let (per, sds, labels) = per_dispatch(gpu, d, reps)?;
            let kernels_us: f64 = per.iter().sum();
            let kernels_us_stddev = sds.iter().map(|s| s * s).sum::<f64>().sqrt();
            let by_kernel = sum_by_label(&labels, &per);
            Ok(ModelBenchRow {
                format: model.layer_formats().join(","),
                batch,
                seq,
                forward_us,
                forward_us_stddev,
                seqs_per_s: batch as f64 / (forward_us * 1e-6),
                dispatches: d.len(),
                kernels_us,
                kernels_us_stddev,
                overhead_per_dispatch_us: (forward_us - kernels_us) / d.len() as f64,
                overhead_meaningful: meaningful(
                    gpu.caps.timestamps,
                    (forward_us, forward_us_stddev),
                    (kernels_us, kernels_us_stddev),
                ),
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

/// `sparq model-bench`'s table, numbers to 3 significant digits with SI prefixes, and under
/// it the note on overheads that read `n/a` where any does.
pub fn markdown(rows: &[ModelBenchRow]) -> String {
    use crate::report::{Align::*, Table, num};
    let mut t = Table::new(&[
        ("format", Left),
        ("batch", Right),
        ("seq", Right),
        ("forward (median ± sd)", Right),
        ("seq/s", Right),
        ("dispatches", Right),
        ("Σ kernels alone", Right),
        ("overhead/dispatch", Right),
        ("torch fp32", Right),
        ("torch fp16", Right),
        ("vs fp16", Right),
    ]);
    let opt = |v: Option<f64>| v.map_or("-".to_string(), num::time_us);
    for r in rows {
        t.push([
            r.format.clone(),
            r.batch.to_string(),
            r.seq.to_string(),
            num::time_us_pm(r.forward_us, r.forward_us_stddev),
            num::rate(r.seqs_per_s, "seq/s"),
            r.dispatches.to_string(),
            num::time_us_pm(r.kernels_us, r.kernels_us_stddev),
            if r.overhead_meaningful {
                num::time_us(r.overhead_per_dispatch_us)
            } else {
                "n/a".into()
            },
            opt(r.torch_fp32_us),
            opt(r.torch_fp16_us),
            r.torch_fp16_us
                .map_or("-".into(), |t| num::ratio(t / r.forward_us)),
        ]);
    }
    let mut s = t.markdown();
    if rows.iter().any(|r| !r.overhead_meaningful) {
        s += &format!("\nn/a: {}.\n", OVERHEAD_NOTE);
    }
    s
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

/// Each dispatch alone in its own timed pass, `reps` times; medians and sample standard
/// deviations in µs, and labels.
fn per_dispatch(
    gpu: &Gpu,
    d: &[crate::gpu::Dispatch],
    reps: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<String>)> {
    if !gpu.caps.timestamps {
        return Ok((
            vec![0.0; d.len()],
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
        samples.iter().map(|s| crate::report::stddev(s)).collect(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn overhead_is_meaningful_only_above_the_spread() {
        use super::meaningful;
        assert!(meaningful(true, (1000.0, 10.0), (900.0, 10.0)));
        // The slow-adapter case: dispatches alone took longer than the whole pass.
        assert!(!meaningful(true, (1000.0, 10.0), (30_000.0, 10.0)));
        // Positive but within the spread.
        assert!(!meaningful(true, (1000.0, 80.0), (950.0, 60.0)));
        // Nothing timed alone.
        assert!(!meaningful(false, (1000.0, 1.0), (0.0, 0.0)));
    }

    #[test]
    fn table_says_n_a_and_why() {
        let row = |meaningful| super::ModelBenchRow {
            format: "f32".into(),
            batch: 8,
            seq: 128,
            forward_us: 107_000.0,
            forward_us_stddev: 2600.0,
            seqs_per_s: 0.87,
            dispatches: 45,
            kernels_us: 1_300_000.0,
            kernels_us_stddev: 4800.0,
            overhead_per_dispatch_us: -26_000.0,
            overhead_meaningful: meaningful,
            by_kernel: Vec::new(),
            torch_fp32_us: None,
            torch_fp16_us: None,
        };
        let md = super::markdown(&[row(false)]);
        assert!(
            md.contains(" n/a |") && md.contains(" 0.870 seq/s |"),
            "{md}"
        );
        assert!(md.contains("107 ± 2.6 ms"), "{md}");
        assert!(!md.contains("-26"), "{md}");
        assert!(md.contains("n/a: overhead µs/dispatch is"), "{md}");
        let md = super::markdown(&[row(true)]);
        assert!(md.contains("-26.0 ms") && !md.contains("n/a"), "{md}");
    }
}
