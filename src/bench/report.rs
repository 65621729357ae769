//! Benchmark results as a llama-bench-style markdown table and as JSON.

use crate::error::{Error, Result};
use crate::gpu::Caps;

/// One measured case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    /// Weight format name.
    pub format: String,
    /// Kernel strategy used.
    pub kernel: String,
    /// Activation rows.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Median GPU time in µs.
    pub gpu_us: f64,
    /// Fastest run in µs.
    pub gpu_us_min: f64,
    /// Sample standard deviation of the timed runs, µs.
    pub gpu_us_stddev: f64,
    /// Weight bytes (with scales) per second, in GB/s.
    pub weight_gbps: f64,
    /// Achieved TFLOP/s (2·m·n·k per run).
    pub tflops: f64,
    /// All bytes moved (weights, x, y) per second as a percentage of the measured ceiling.
    pub pct_ceiling: f64,
    /// ‖W − Ŵ‖ / ‖W‖ of the format on the benchmark weights.
    pub quant_error: f64,
    /// PyTorch fp16 `x @ w.t()` time for the same shape from the same run, if given.
    pub torch_fp16_us: Option<f64>,
    /// `torch_fp16_us / gpu_us`.
    pub speedup_vs_torch: Option<f64>,
}

/// Everything one `sparq bench` run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// The adapter.
    pub adapter: Caps,
    /// How times were taken.
    pub timing: String,
    /// Streaming-read bandwidth measured in the same run, GB/s.
    pub ceiling_gbps: f64,
    /// The cases.
    pub rows: Vec<BenchRow>,
}

/// PyTorch timings of the same shapes, as written by `benches/torch_linear.py`.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct TorchBaseline {
    /// Device name torch saw.
    pub device: String,
    /// fp16 linear timings.
    pub linear_fp16: Vec<TorchLinear>,
}

/// One PyTorch linear timing.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct TorchLinear {
    /// Rows.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Median µs.
    pub us: f64,
}

impl TorchBaseline {
    /// Reads the JSON written by the torch script.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        serde_json::from_str(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }
}

impl BenchReport {
    /// Fills the torch columns for rows whose shape the baseline has.
    pub fn attach_torch(&mut self, t: &TorchBaseline) {
        for r in &mut self.rows {
            if let Some(b) = t
                .linear_fp16
                .iter()
                .find(|b| (b.m, b.n, b.k) == (r.m, r.n, r.k))
            {
                r.torch_fp16_us = Some(b.us);
                r.speedup_vs_torch = Some(b.us / r.gpu_us);
            }
        }
    }

    /// The markdown table, numbers to 3 significant digits with SI prefixes.
    pub fn markdown(&self) -> String {
        use crate::report::{Align::*, Table, num};
        let mut s = format!(
            "adapter: {} ({}, {}) | timing: {} | streaming-read ceiling: {}\n\n",
            self.adapter.name,
            self.adapter.backend,
            self.adapter.device_type,
            self.timing,
            num::rate(self.ceiling_gbps * 1e9, "B/s"),
        );
        let torch = self.rows.iter().any(|r| r.torch_fp16_us.is_some());
        let mut cols = vec![
            ("format", Left),
            ("kernel", Left),
            ("M", Right),
            ("N", Right),
            ("K", Right),
            ("GPU time (median ± sd)", Right),
            ("GPU time (min)", Right),
            ("weights read", Right),
            ("FLOP/s", Right),
            ("% of ceiling", Right),
            ("quant. error", Right),
        ];
        if torch {
            cols.extend([("torch fp16", Right), ("speed-up", Right)]);
        }
        let mut t = Table::new(&cols);
        for r in &self.rows {
            let mut cells = vec![
                r.format.clone(),
                r.kernel.clone(),
                r.m.to_string(),
                r.n.to_string(),
                r.k.to_string(),
                num::time_us_pm(r.gpu_us, r.gpu_us_stddev),
                num::time_us(r.gpu_us_min),
                num::rate(r.weight_gbps * 1e9, "B/s"),
                num::rate(r.tflops * 1e12, "FLOP/s"),
                num::pct(r.pct_ceiling),
                num::sig(r.quant_error, num::DIGITS),
            ];
            if torch {
                let (t, x) = match (r.torch_fp16_us, r.speedup_vs_torch) {
                    (Some(t), Some(x)) => (num::time_us(t), num::ratio(x)),
                    _ => ("–".into(), "–".into()),
                };
                cells.extend([t, x]);
            }
            t.push(cells);
        }
        s += &t.markdown();
        s
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
}
