//! `sparq bench --sparse`: sparse kernels against the dense kernel of the same precision over
//! a sparsity sweep, with the break-even sparsity and the format chooser's pick.
//!
//! Per shape, random weights are pruned three ways: unstructured by magnitude (stored as CSR
//! f16), by whole blocks of each shape in the config (BSR f16 and, where the block rows are
//! whole 16-byte vectors of int4, int4; 4 × 32 and 16 × 16 on GPUs), and 2:4 (f16, int8, int4). Each case reports
//! the median GPU time, the effective GB/s of everything the kernel reads (weights with their
//! indices and scales, x, y), and the speed-up over the dense kernel of the same precision on
//! the same shape. The chooser's cost model is calibrated from this run's m = 1 figures.

use super::{median, time_dispatches};
use crate::error::Result;
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::{Caps, Dispatch, Gpu};
use crate::matmul::{KernelChoice, Linear};
use crate::prune::{blocks_l2, n_of_m};
use crate::sparse::{
    Bsr, CostModel, Csr, Representation, SparseLinear, SparsePath, SparseWeights, TwoFour,
    ValueType, choose,
};
use crate::tensor::{ActDType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// What the sparse sweep measures.
#[derive(Clone, Debug)]
pub struct SparseBenchConfig {
    /// (n, k) weight shapes.
    pub shapes: Vec<(usize, usize)>,
    /// Fractions of weights (CSR) or blocks (BSR) pruned.
    pub sparsities: Vec<f64>,
    /// Activation rows.
    pub ms: Vec<usize>,
    /// Timed runs per case.
    pub iters: usize,
    /// BSR block shapes (rows, columns) to prune by and measure.
    pub block_shapes: Vec<(usize, usize)>,
}

impl SparseBenchConfig {
    /// The sweep on GPUs; smaller shapes on CPU adapters.
    pub fn default_for(gpu: &Gpu) -> Self {
        let sparsities = vec![0.0, 0.5, 0.7, 0.9, 0.95, 0.99];
        if gpu.caps.is_cpu() {
            SparseBenchConfig {
                shapes: vec![(1024, 1024), (1024, 3584)],
                sparsities,
                ms: vec![1, 8, 32],
                iters: 5,
                block_shapes: vec![(1, 32)],
            }
        } else {
            SparseBenchConfig {
                shapes: vec![(8192, 8192), (4096, 14336)],
                sparsities,
                ms: vec![1, 8, 32],
                iters: 200,
                // The fastest of 1×32, 4×32 and 16×16 on the H200 (8192², 50 and 90 %):
                // 4×32 at m = 1, 16×16 from m = 8.
                block_shapes: vec![(4, 32), (16, 16)],
            }
        }
    }

    /// Seconds, for smoke tests.
    pub fn quick() -> Self {
        SparseBenchConfig {
            shapes: vec![(256, 512)],
            sparsities: vec![0.0, 0.9, 0.99],
            ms: vec![1, 8],
            iters: 3,
            block_shapes: vec![(1, 32), (4, 16)],
        }
    }
}

/// One measured case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SparseRow {
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Activation rows.
    pub m: usize,
    /// Format (`dense-f16`, `csr-f16`, `bsr1x32-int4`, `2:4-int8`, ...).
    pub format: String,
    /// Precision of the values, for the comparison with dense.
    pub precision: String,
    /// How the matrix was pruned (`-` for the dense baselines).
    pub pruning: String,
    /// Achieved sparsity of the weights (zeros / all).
    pub sparsity: f64,
    /// Median GPU µs.
    pub gpu_us: f64,
    /// Sample standard deviation of the timed runs, µs.
    pub gpu_us_stddev: f64,
    /// Bytes read per run (weights, metadata, x) and written (y).
    pub bytes: u64,
    /// `bytes / gpu_us`, GB/s.
    pub gbps: f64,
    /// Dense time of the same precision, shape and m over this time.
    pub speedup: Option<f64>,
    /// The chooser's pick for this matrix (calibrated model).
    pub pick: Option<String>,
}

/// Everything the sweep measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SparseReport {
    /// The adapter.
    pub adapter: Caps,
    /// The cases.
    pub rows: Vec<SparseRow>,
    /// The chooser's model, calibrated from this run.
    pub model: CostModel,
}

/// Random weights in [-1, 1), deterministic per shape.
fn random_weights(n: usize, k: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64((n * 31 + k) as u64);
    (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Magnitude pruning by threshold: zeros the `round(s · len)` smallest magnitudes (ties at the
/// threshold may zero a few more; [`crate::prune::magnitude`] breaks them exactly but sorts
/// indices, too slow for 10⁸ weights in a benchmark).
fn magnitude_fast(w: &[f32], s: f64) -> Vec<f32> {
    let z = ((s * w.len() as f64).round() as usize).min(w.len());
    if z == 0 {
        return w.to_vec();
    }
    let mut mag: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let (_, t, _) = mag.select_nth_unstable_by(z - 1, f32::total_cmp);
    let t = *t;
    w.iter()
        .map(|&v| if v.abs() <= t { 0.0 } else { v })
        .collect()
}

fn sparsity_of(w: &[f32]) -> f64 {
    w.iter().filter(|&&v| v == 0.0).count() as f64 / w.len() as f64
}

/// Copies of a layer of `bytes` to rotate through so the working set exceeds the cache.
fn copies(gpu: &Gpu, bytes: u64) -> usize {
    if gpu.caps.is_cpu() {
        1
    } else {
        (256u64 << 20).div_ceil(bytes.max(1)).clamp(1, 48) as usize
    }
}

/// A layer under test: per activation-row count, the plans of all its copies.
struct Case {
    format: String,
    precision: ValueType,
    pruning: String,
    sparsity: f64,
    bytes: u64,
    rep: Representation,
    pick_of: Option<(usize, ValueType)>,
    plans: Vec<(usize, Vec<Vec<Dispatch>>)>,
}

/// Steps of the sweep of `cfg` (what [`run`] reports progress over): per shape, building each
/// case (dense baselines, pruning, each sparse format) and timing each case at each m.
pub fn steps(cfg: &SparseBenchConfig) -> usize {
    let dense = 3;
    let bsr_formats: usize = cfg
        .block_shapes
        .iter()
        .map(|&(_, bc)| 1 + usize::from((bc * ValueType::Int4.bits()).is_multiple_of(128)))
        .sum();
    let sparse = cfg.sparsities.len() * (1 + bsr_formats) + 3;
    let build = dense + cfg.sparsities.len() + sparse;
    let ms = cfg.ms.len();
    let dense_path_ms = cfg.ms.iter().filter(|&&m| m >= 8).count();
    let timing = dense * ms + sparse * (ms + dense_path_ms);
    cfg.shapes.len() * (build + timing)
}

/// Measures every case of `cfg`, calling `progress(done, total, label)` before each of the
/// [`steps`] steps and `(total, total, "done")` at the end.
pub fn run(
    gpu: &Gpu,
    cfg: &SparseBenchConfig,
    mut report: impl FnMut(usize, usize, &str),
) -> Result<SparseReport> {
    let total = steps(cfg);
    let mut done = 0;
    let mut progress = |label: &str| {
        report(done.min(total), total, label);
        done += 1;
    };
    let mut rows = Vec::new();
    let mut measured = Vec::new();
    // Pruned matrices the chooser looks at afterwards (by index in `matrices`).
    let mut matrices: Vec<(Vec<f32>, usize, usize)> = Vec::new();
    // For each row, the pruned matrix and precision the chooser judges.
    let mut row_src: Vec<Option<(usize, ValueType)>> = Vec::new();
    let max_m = cfg.ms.iter().copied().max().unwrap_or(1);
    // The floats, a pruned copy per sparsity and block shape, the chooser's kept matrices,
    // and the device's copies where it is the host.
    let host_copies = 3 + 2 * cfg.sparsities.len() * (1 + cfg.block_shapes.len());
    for &shape in &cfg.shapes {
        gpu.check_layer_shape(shape, max_m, host_copies)?;
    }
    for &(n, k) in &cfg.shapes {
        let w = random_weights(n, k);
        let mut rng = StdRng::seed_from_u64(7);
        let xs: Vec<(usize, Tensor, Tensor)> = cfg
            .ms
            .iter()
            .map(|&m| {
                let d: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                Ok((
                    m,
                    Tensor::from_f32(gpu, &d, m, k)?,
                    Tensor::empty(gpu, m, n, ActDType::F32)?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut cases: Vec<Case> = Vec::new();
        // Dense baselines.
        for (fmt, vt) in [
            (WeightFormat::F16, ValueType::F16),
            (WeightFormat::Int8, ValueType::Int8),
            (
                WeightFormat::Int4 {
                    group: 32,
                    asymmetric: false,
                },
                ValueType::Int4,
            ),
        ] {
            progress(&format!("dense {} {n}x{k}", fmt.name()));
            let packed = PackedWeights::quantize(&w, n, k, fmt)?;
            let layers = (0..copies(gpu, packed.bytes()))
                .map(|_| Linear::new(gpu, &packed, None))
                .collect::<Result<Vec<_>>>()?;
            let plans = xs
                .iter()
                .map(|(m, x, y)| {
                    let p = layers
                        .iter()
                        .map(|l| l.plan(gpu, x, y, KernelChoice::Auto))
                        .collect::<Result<Vec<_>>>()?;
                    Ok((*m, p))
                })
                .collect::<Result<Vec<_>>>()?;
            cases.push(Case {
                format: format!("dense-{}", vt.name()),
                precision: vt,
                pruning: "-".into(),
                sparsity: 0.0,
                bytes: packed.bytes(),
                rep: Representation::Dense,
                pick_of: None,
                plans,
            });
        }
        // Sparse formats: each pruned matrix, then each value type it is stored as.
        let mut sources: Vec<(String, Vec<f32>, Vec<SparseWeights>)> = Vec::new();
        for &s in &cfg.sparsities {
            progress(&format!("pruning {n}x{k} at {s}"));
            let wu = magnitude_fast(&w, s);
            let csr = Csr::from_dense(&wu, n, k, ValueType::F16)?;
            sources.push((format!("magnitude {s}"), wu, vec![csr.into()]));
            for &(br, bc) in &cfg.block_shapes {
                let wb = blocks_l2(&w, n, k, br, bc, s)?.w;
                let mut stored = vec![Bsr::from_dense(&wb, n, k, br, bc, ValueType::F16)?.into()];
                if (bc * ValueType::Int4.bits()).is_multiple_of(128) {
                    stored.push(Bsr::from_dense(&wb, n, k, br, bc, ValueType::Int4)?.into());
                }
                sources.push((format!("{br}x{bc} blocks {s}"), wb, stored));
            }
        }
        let w24 = n_of_m(&w, n, k, 2, 4)?.w;
        let tf = [ValueType::F16, ValueType::Int8, ValueType::Int4]
            .into_iter()
            .map(|vt| TwoFour::from_dense(&w24, n, k, vt).map(SparseWeights::from))
            .collect::<Result<Vec<_>>>()?;
        sources.push(("2:4".into(), w24, tf));
        // f32 values make the largest dense copy: k rounded to 4, 4 bytes each.
        let scratch = gpu.storage("dense path scratch", (n * k.next_multiple_of(4) * 4) as u64)?;
        for (pruning, wp, formats) in sources {
            let sparsity = sparsity_of(&wp);
            let mi = matrices.len();
            matrices.push((wp, n, k));
            for sw in formats {
                progress(&format!("{} {n}x{k} {pruning}", sw.name()));
                let vt = sw.value_type();
                let rep = match &sw {
                    SparseWeights::Csr(_) => Representation::Csr,
                    SparseWeights::Bsr(_) => Representation::Bsr,
                    SparseWeights::TwoFour(_) => Representation::TwoFour,
                };
                let first = SparseLinear::new(gpu, &sw, None)?;
                let bytes = first.weight_bytes;
                let mut layers = vec![first];
                for _ in 1..copies(gpu, bytes) {
                    layers.push(SparseLinear::new(gpu, &sw, None)?);
                }
                drop(sw);
                // The sparse kernel at every m, and from 8 rows the dense path beside it (the
                // weights written out dense each pass, then the dense GEMM).
                // All dense-path plans share one scratch, as a model's layers do: they run
                // one after another, and a copy per plan would not fit the GPU.
                let plan_all = |path: SparsePath, from: usize| {
                    xs.iter()
                        .filter(|(m, _, _)| *m >= from)
                        .map(|(m, x, y)| {
                            let p = layers
                                .iter()
                                .map(|l| l.plan_in(gpu, x, y, path, Some(&scratch)))
                                .collect::<Result<Vec<_>>>()?;
                            Ok((*m, p))
                        })
                        .collect::<Result<Vec<_>>>()
                };
                let dense_path = plan_all(SparsePath::Dense, 8)?;
                cases.push(Case {
                    format: layers[0].format.clone(),
                    precision: vt,
                    pruning: pruning.clone(),
                    sparsity,
                    bytes,
                    rep,
                    pick_of: Some((mi, vt)),
                    plans: plan_all(SparsePath::Kernel, 1)?,
                });
                if !dense_path.is_empty() {
                    cases.push(Case {
                        format: format!("{} →dense", layers[0].format),
                        precision: vt,
                        pruning: pruning.clone(),
                        sparsity,
                        bytes,
                        rep,
                        pick_of: None,
                        plans: dense_path,
                    });
                }
            }
        }
        // Time everything of this shape (its weights are all resident now), after a second of
        // load so that the first case is not measured at idle clocks.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !gpu.caps.is_cpu() && std::time::Instant::now() < until {
            time_dispatches(gpu, &cases[0].plans[0].1, 3, 20)?;
        }
        let mut dense_us: Vec<(ValueType, usize, f64)> = Vec::new();
        for c in cases {
            for (m, sets) in &c.plans {
                progress(&format!("timing {} m={m} {n}x{k} {}", c.format, c.pruning));
                let times = time_dispatches(gpu, sets, 3.max(sets.len()), cfg.iters)?;
                let us = median(&times);
                if c.rep == Representation::Dense {
                    dense_us.push((c.precision, *m, us));
                }
                let speedup = dense_us
                    .iter()
                    .find(|(vt, dm, _)| *vt == c.precision && dm == m)
                    .map(|(_, _, d)| d / us);
                let bytes = c.bytes + (4 * m * (k + n)) as u64;
                if *m == 1 {
                    measured.push((c.rep, c.bytes, us));
                }
                row_src.push(c.pick_of);
                rows.push(SparseRow {
                    n,
                    k,
                    m: *m,
                    format: c.format.clone(),
                    precision: c.precision.name().into(),
                    pruning: c.pruning.clone(),
                    sparsity: c.sparsity,
                    gpu_us: us,
                    gpu_us_stddev: crate::report::stddev(&times),
                    bytes,
                    gbps: bytes as f64 / us / 1e3,
                    speedup,
                    pick: None,
                });
            }
        }
    }
    // Calibrate the chooser on this run and record its pick for every sparse matrix.
    let model = CostModel::from_measurements(
        &measured,
        &CostModel::for_caps(&gpu.caps),
        &format!("calibrated on {} (m = 1, this run)", gpu.caps.name),
    );
    let mut picks: Vec<((usize, ValueType), Representation)> = Vec::new();
    for (r, src) in rows.iter_mut().zip(&row_src) {
        let Some(key) = *src else { continue };
        let pick = match picks.iter().find(|(q, _)| *q == key) {
            Some(&(_, p)) => p,
            None => {
                let (wp, n, k) = &matrices[key.0];
                let p = choose(wp, *n, *k, key.1, &model)?.pick;
                picks.push((key, p));
                p
            }
        };
        r.pick = Some(pick.name().to_string());
    }
    report(total, total, "done");
    Ok(SparseReport {
        adapter: gpu.caps.clone(),
        rows,
        model,
    })
}

impl SparseReport {
    /// Sparsity at which `format` first beats the dense kernel of its precision (linear
    /// interpolation of the speed-up between measured sparsities), per shape and m.
    pub fn break_even(&self) -> Vec<(usize, usize, usize, String, Option<f64>)> {
        let mut out = Vec::new();
        let mut keys: Vec<(usize, usize, usize, String)> = Vec::new();
        for r in &self.rows {
            let key = (r.n, r.k, r.m, r.format.clone());
            if r.pruning != "-" && r.pruning != "2:4" && !keys.contains(&key) {
                keys.push(key);
            }
        }
        for (n, k, m, f) in keys {
            let mut pts: Vec<(f64, f64)> = self
                .rows
                .iter()
                .filter(|r| (r.n, r.k, r.m) == (n, k, m) && r.format == f)
                .filter_map(|r| r.speedup.map(|s| (r.sparsity, s)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut be = None;
            for (i, &(s, x)) in pts.iter().enumerate() {
                if x >= 1.0 {
                    be = Some(if i == 0 {
                        s
                    } else {
                        let (s0, x0) = pts[i - 1];
                        s0 + (s - s0) * (1.0 - x0) / (x - x0)
                    });
                    break;
                }
            }
            out.push((n, k, m, f, be));
        }
        out
    }

    /// The markdown tables, numbers to 3 significant digits with SI prefixes.
    pub fn markdown(&self) -> String {
        use crate::report::{Align::*, Table, num};
        let mut s = format!(
            "adapter: {} ({}, {}) | sparse sweep\n\n",
            self.adapter.name, self.adapter.backend, self.adapter.device_type
        );
        let mut t = Table::new(&[
            ("N×K", Left),
            ("M", Right),
            ("format", Left),
            ("pruning", Left),
            ("sparsity", Right),
            ("GPU time (median ± sd)", Right),
            ("read", Right),
            ("× dense (same precision)", Right),
            ("chooser pick", Left),
        ]);
        for r in &self.rows {
            t.push([
                format!("{}×{}", r.n, r.k),
                r.m.to_string(),
                r.format.clone(),
                r.pruning.clone(),
                num::pct(100.0 * r.sparsity),
                num::time_us_pm(r.gpu_us, r.gpu_us_stddev),
                num::rate(r.gbps * 1e9, "B/s"),
                r.speedup.map_or("–".into(), num::ratio),
                r.pick.clone().unwrap_or_else(|| "–".into()),
            ]);
        }
        s += &t.markdown();
        s += "\nbreak-even sparsity (first sparsity where the format beats dense of its precision):\n\n";
        let mut t = Table::new(&[
            ("N×K", Left),
            ("M", Right),
            ("format", Left),
            ("break-even", Right),
        ]);
        for (n, k, m, f, be) in self.break_even() {
            t.push([
                format!("{n}×{k}"),
                m.to_string(),
                f,
                be.map_or("never in sweep".into(), |b| num::pct(100.0 * b)),
            ]);
        }
        s += &t.markdown();
        let m = &self.model;
        let gb = |x: f64| num::rate(x * 1e9, "B/s");
        s += &format!(
            "\nchooser model ({}): dense {}, csr {}, bsr {}, 2:4 {}; launch {}\n",
            m.source,
            gb(m.gbps[0]),
            gb(m.gbps[1]),
            gb(m.gbps[2]),
            gb(m.gbps[3]),
            num::time_us(m.launch_us)
        );
        s
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
}
