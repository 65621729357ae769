//! Benchmark results as a llama-bench-style markdown table and as JSON.

use crate::error::{Error, Result};
use crate::gpu::Caps;
use std::fmt::Write;

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

    /// The markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "adapter: {} ({}, {}) | timing: {} | streaming-read ceiling: {:.0} GB/s\n",
            self.adapter.name,
            self.adapter.backend,
            self.adapter.device_type,
            self.timing,
            self.ceiling_gbps
        );
        let torch = self.rows.iter().any(|r| r.torch_fp16_us.is_some());
        let _ = write!(
            s,
            "| format | kernel | M | N | K | GPU µs (median) | GPU µs (min) | weight GB/s | TFLOP/s | % of ceiling | quant. error |"
        );
        if torch {
            let _ = write!(s, " torch fp16 µs | speed-up |");
        }
        let _ = write!(s, "\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        if torch {
            let _ = write!(s, "--:|--:|");
        }
        s.push('\n');
        for r in &self.rows {
            let _ = write!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.2} | {:.1} | {:.2e} |",
                r.format,
                r.kernel,
                r.m,
                r.n,
                r.k,
                r.gpu_us,
                r.gpu_us_min,
                r.weight_gbps,
                r.tflops,
                r.pct_ceiling,
                r.quant_error
            );
            if torch {
                match (r.torch_fp16_us, r.speedup_vs_torch) {
                    (Some(t), Some(x)) => {
                        let _ = write!(s, " {t:.1} | {x:.2}× |");
                    }
                    _ => {
                        let _ = write!(s, " – | – |");
                    }
                }
            }
            s.push('\n');
        }
        s
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
}
