//! `sparq gemm`: GEMM-shaped cases (many activation rows) for the tensor-core and DP4A
//! paths next to the portable kernels: f16 GEMM at n = m = k, quantized-weight GEMM over a
//! range of rows, the rows at which tensor cores start to win, every tiling the autotuner
//! knows, and int8 DP4A throughput. GPU time from timestamp queries, compared with PyTorch
//! timings of the same shapes from the same run when given.

use super::{TorchBaseline, median, time_dispatches};
use crate::error::{Error, Result};
use crate::formats::{PackedWeights, WeightFormat};
use crate::gpu::{Dispatch, Gpu};
use crate::matmul::{CoopTiling, KernelChoice, Linear, Strategy, coop};
use crate::tensor::{ActDType, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// What `sparq gemm` measures.
#[derive(Clone, Debug)]
pub struct GemmBenchConfig {
    /// Sizes of the square f16 GEMM (m = n = k).
    pub square: Vec<usize>,
    /// Rows of the quantized-weight GEMM.
    pub ms: Vec<usize>,
    /// (n, k) of the quantized-weight GEMM.
    pub shapes: Vec<(usize, usize)>,
    /// Weight formats of the quantized-weight GEMM.
    pub formats: Vec<WeightFormat>,
    /// Rows of the crossover sweep (at the first of `shapes`).
    pub crossover: Vec<usize>,
    /// Time every tiling of the square GEMM, not only the tuned one.
    pub all_tilings: bool,
    /// Timed runs per case (capped at ~0.2 s of GPU time).
    pub iters: usize,
    /// Sections to run (`square`, `weights`, `crossover`, `dp4a`); empty: all.
    pub sections: Vec<String>,
}

/// The sections of [`GemmBenchConfig::sections`].
pub const SECTIONS: [&str; 4] = ["square", "weights", "crossover", "dp4a"];

impl GemmBenchConfig {
    /// Refuses a section name that is not one of [`SECTIONS`] (an unknown name would run
    /// nothing and print an empty table).
    pub fn check_sections(&self) -> Result<()> {
        match self
            .sections
            .iter()
            .find(|s| !SECTIONS.contains(&s.as_str()))
        {
            Some(bad) => Err(Error::invalid(format!(
                "unknown GEMM section '{bad}'; the sections are {}",
                SECTIONS.join(", ")
            ))),
            None => Ok(()),
        }
    }

    fn has(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

impl GemmBenchConfig {
    /// The set for a GPU (`quick`: tiny shapes for CPU adapters and smoke tests).
    pub fn new(quick: bool) -> Self {
        if quick {
            return GemmBenchConfig {
                square: vec![256],
                ms: vec![64],
                shapes: vec![(256, 256)],
                formats: vec![WeightFormat::F16, WeightFormat::Int8],
                crossover: vec![8, 64],
                all_tilings: false,
                iters: 3,
                sections: Vec::new(),
            };
        }
        GemmBenchConfig {
            square: vec![4096, 8192],
            ms: vec![256, 512, 1024, 2048, 4096],
            shapes: vec![(4096, 4096), (8192, 8192)],
            formats: vec![
                WeightFormat::F16,
                WeightFormat::Int8,
                WeightFormat::Int4 {
                    group: 32,
                    asymmetric: false,
                },
                WeightFormat::Int4 {
                    group: 128,
                    asymmetric: false,
                },
            ],
            crossover: vec![8, 16, 32, 48, 64, 96, 128, 256],
            all_tilings: true,
            iters: 200,
            sections: Vec::new(),
        }
    }
}

/// One measured GEMM case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GemmRow {
    /// Which part of the benchmark.
    pub section: &'static str,
    /// Weight format.
    pub format: String,
    /// Kernel strategy.
    pub kernel: String,
    /// Tile shape (tensor-core kernel) or empty.
    pub tiling: String,
    /// Activation rows.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Median GPU µs.
    pub us: f64,
    /// Sample standard deviation of the timed runs, µs.
    pub us_stddev: f64,
    /// 2·m·n·k / time, in TFLOP/s (TOP/s for integer kernels).
    pub tflops: f64,
    /// PyTorch fp16 time of the same shape, µs.
    pub torch_us: Option<f64>,
}

/// A layer of `format` with random weights (seeded per shape).
fn layer(gpu: &Gpu, format: WeightFormat, n: usize, k: usize) -> Result<Linear> {
    let mut rng = StdRng::seed_from_u64((n * 7 + k) as u64);
    let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Linear::new(gpu, &PackedWeights::quantize(&w, n, k, format)?, None)
}

fn activations(gpu: &Gpu, m: usize, k: usize) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64((m * 13 + k) as u64);
    let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_f32_as(gpu, &x, m, k, ActDType::F16)
}

struct Case<'a> {
    section: &'static str,
    layer: &'a Linear,
    x: &'a Tensor,
    y: &'a Tensor,
}

impl Case<'_> {
    /// Median and sample standard deviation, µs.
    fn time(&self, gpu: &Gpu, plan: Vec<Dispatch>, iters: usize) -> Result<(f64, f64)> {
        let times = time_dispatches(gpu, &[plan], 2, iters)?;
        Ok((median(&times), crate::report::stddev(&times)))
    }

    fn row(
        &self,
        kernel: Strategy,
        tiling: Option<CoopTiling>,
        (us, us_stddev): (f64, f64),
    ) -> GemmRow {
        let (m, n, k) = (self.x.rows, self.layer.n, self.layer.k);
        GemmRow {
            section: self.section,
            format: self.layer.format.name(),
            kernel: kernel.name().into(),
            tiling: tiling.map_or(String::new(), |t| t.label()),
            m,
            n,
            k,
            us,
            us_stddev,
            tflops: 2.0 * (m * n * k) as f64 / us / 1e6,
            torch_us: None,
        }
    }

    /// Times `strategy` (the tensor-core one with `tiling`, or the tuned tiling).
    fn run(
        &self,
        gpu: &Gpu,
        strategy: Strategy,
        tiling: Option<CoopTiling>,
        iters: usize,
    ) -> Result<GemmRow> {
        let (plan, t) = match (strategy, tiling) {
            (Strategy::GemmCoop, Some(t)) => (self.layer.plan_coop(gpu, self.x, self.y, t)?, t),
            (Strategy::GemmCoop, None) => {
                let t = coop::tiling_for(
                    gpu,
                    self.layer.format,
                    self.x.dtype,
                    self.x.rows,
                    self.layer.n,
                );
                (self.layer.plan_coop(gpu, self.x, self.y, t)?, t)
            }
            _ => {
                let plan = self
                    .layer
                    .plan(gpu, self.x, self.y, KernelChoice::Force(strategy))?;
                let us = self.time(gpu, plan, iters)?;
                return Ok(self.row(strategy, None, us));
            }
        };
        let us = self.time(gpu, plan, iters)?;
        Ok(self.row(strategy, Some(t), us))
    }
}

/// Tilings of the square GEMM that [`run`] times on `gpu`.
fn square_tilings(gpu: &Gpu, cfg: &GemmBenchConfig) -> Vec<Option<CoopTiling>> {
    if !coop::available(gpu) {
        return Vec::new();
    }
    if !cfg.all_tilings {
        return vec![None];
    }
    CoopTiling::candidates()
        .into_iter()
        .filter(|t| t.fits(gpu, WeightFormat::F16))
        .map(Some)
        .collect()
}

/// Cases of `cfg` on `gpu` (what [`run`] reports progress over): per square size its
/// tilings (and the portable kernel at the first), per shape, format and m one, per format
/// and crossover m one, and the DP4A cases where the device has DP4A.
pub fn steps(gpu: &Gpu, cfg: &GemmBenchConfig) -> usize {
    let square = if cfg.has("square") && !cfg.square.is_empty() {
        cfg.square.len() * square_tilings(gpu, cfg).len() + 1
    } else {
        0
    };
    let weights = if cfg.has("weights") {
        cfg.shapes.len() * cfg.formats.len() * cfg.ms.len()
    } else {
        0
    };
    let crossover = if cfg.has("crossover") {
        cfg.formats.len() * cfg.crossover.len()
    } else {
        0
    };
    let dp4a = if gpu.caps.dot4_i8 && cfg.has("dp4a") {
        cfg.square.len() + cfg.ms.len()
    } else {
        0
    };
    square + weights + crossover + dp4a
}

/// Runs every case of `cfg`, calling `progress(done, total, label)` before each of the
/// [`steps`] cases and `(total, total, "done")` at the end.
pub fn run(
    gpu: &Gpu,
    cfg: &GemmBenchConfig,
    mut report: impl FnMut(usize, usize, &str),
) -> Result<Vec<GemmRow>> {
    cfg.check_sections()?;
    let total = steps(gpu, cfg);
    let mut done = 0;
    let mut progress = |label: &str| {
        report(done.min(total), total, label);
        done += 1;
    };
    let tc = coop::available(gpu);
    let mut rows = Vec::new();
    // 1. Square f16 GEMM: every tiling, and the portable kernel at the smallest size.
    let square: &[usize] = if cfg.has("square") { &cfg.square } else { &[] };
    for (i, &s) in square.iter().enumerate() {
        let l = layer(gpu, WeightFormat::F16, s, s)?;
        let x = activations(gpu, s, s)?;
        let y = Tensor::empty(gpu, s, s, ActDType::F16)?;
        let case = Case {
            section: "square",
            layer: &l,
            x: &x,
            y: &y,
        };
        for t in square_tilings(gpu, cfg) {
            progress(&format!("f16 gemm {s}³ {:?}", t.map(|t| t.label())));
            rows.push(case.run(gpu, Strategy::GemmCoop, t, cfg.iters)?);
        }
        if i == 0 {
            progress(&format!("f16 gemm {s}³ portable"));
            rows.push(case.run(gpu, Strategy::GemmTiled, None, cfg.iters)?);
        }
    }
    // 2. Quantized-weight GEMM over rows: tuned tiling (the first shape tunes each bucket).
    let shapes: &[(usize, usize)] = if cfg.has("weights") { &cfg.shapes } else { &[] };
    for &(n, k) in shapes {
        for &format in &cfg.formats {
            let l = layer(gpu, format, n, k)?;
            for &m in &cfg.ms {
                progress(&format!("{} m={m} {n}x{k}", format.name()));
                let x = activations(gpu, m, k)?;
                let y = Tensor::empty(gpu, m, n, ActDType::F16)?;
                let case = Case {
                    section: "weights",
                    layer: &l,
                    x: &x,
                    y: &y,
                };
                if tc {
                    if (n, k) == cfg.shapes[0] && cfg.all_tilings {
                        coop::autotune(gpu, &l, m, ActDType::F16, cfg.iters / 4)?;
                    }
                    rows.push(case.run(gpu, Strategy::GemmCoop, None, cfg.iters)?);
                }
                if m <= 512 || !tc {
                    rows.push(case.run(gpu, Strategy::GemmTiled, None, cfg.iters)?);
                }
            }
        }
    }
    // 3. Where tensor cores start to win over GEMV and the portable GEMM.
    let formats: &[WeightFormat] = if cfg.has("crossover") {
        &cfg.formats
    } else {
        &[]
    };
    for &format in formats {
        let (n, k) = cfg.shapes[0];
        let l = layer(gpu, format, n, k)?;
        for &m in &cfg.crossover {
            progress(&format!("crossover {} m={m}", format.name()));
            let x = activations(gpu, m, k)?;
            let y = Tensor::empty(gpu, m, n, ActDType::F16)?;
            let case = Case {
                section: "crossover",
                layer: &l,
                x: &x,
                y: &y,
            };
            // The portable choice: GEMV slices up to GEMV_MAX_ROWS rows, else the tiled GEMM.
            let mut strategies = vec![Strategy::GemmTiled];
            let portable = l.portable_strategy(gpu, m);
            if portable != Strategy::GemmTiled {
                strategies.push(portable);
            }
            if tc {
                strategies.push(Strategy::GemmCoop);
            }
            for s in strategies {
                rows.push(case.run(gpu, s, None, cfg.iters)?);
            }
        }
    }
    // 4. int8 × int8 with dot4I8Packed (activation quantization included in the time).
    if gpu.caps.dot4_i8 && cfg.has("dp4a") {
        let mut cases: Vec<(usize, usize, usize)> = cfg.square.iter().map(|&s| (s, s, s)).collect();
        cases.extend(
            cfg.ms
                .iter()
                .map(|&m| (m, cfg.shapes[0].0, cfg.shapes[0].1)),
        );
        for (m, n, k) in cases {
            progress(&format!("dp4a m={m} {n}x{k}"));
            let l = layer(gpu, WeightFormat::Int8, n, k)?;
            let x = activations(gpu, m, k)?;
            let y = Tensor::empty(gpu, m, n, ActDType::F16)?;
            let case = Case {
                section: "dp4a",
                layer: &l,
                x: &x,
                y: &y,
            };
            rows.push(case.run(gpu, Strategy::GemmDp4a, None, cfg.iters)?);
        }
    }
    report(total, total, "done");
    Ok(rows)
}

/// Fills `torch_us` from a PyTorch fp16 linear baseline of the same shapes.
pub fn attach_torch(rows: &mut [GemmRow], t: &TorchBaseline) {
    for r in rows {
        r.torch_us = t
            .linear_fp16
            .iter()
            .find(|b| (b.m, b.n, b.k) == (r.m, r.n, r.k))
            .map(|b| b.us);
    }
}

/// The rows as a markdown table, numbers to 3 significant digits with SI prefixes.
pub fn markdown(gpu: &Gpu, rows: &[GemmRow]) -> String {
    use crate::report::{Align::*, Table, num};
    let mut t = Table::new(&[
        ("section", Left),
        ("weights", Left),
        ("kernel", Left),
        ("tiling", Left),
        ("m", Right),
        ("n", Right),
        ("k", Right),
        ("time (median ± sd)", Right),
        ("FLOP/s", Right),
        ("torch fp16", Right),
        ("% of torch", Right),
    ]);
    for r in rows {
        let (tu, pct) = match r.torch_us {
            Some(t) => (num::time_us(t), num::pct(100.0 * t / r.us)),
            None => (String::new(), String::new()),
        };
        t.push([
            r.section.to_string(),
            r.format.clone(),
            r.kernel.clone(),
            r.tiling.clone(),
            r.m.to_string(),
            r.n.to_string(),
            r.k.to_string(),
            num::time_us_pm(r.us, r.us_stddev),
            num::rate(r.tflops * 1e12, "FLOP/s"),
            tu,
            pct,
        ]);
    }
    format!(
        "GEMM on {} ({}), f16 activations, GPU time\n\n{}",
        gpu.caps.name,
        gpu.caps.backend,
        t.markdown()
    )
}
