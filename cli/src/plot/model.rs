//! `sparq model-bench --plot`: model throughput (sequences per second) per batch size, one
//! line per weight format, and PyTorch's eager forward (when `--torch` gave its timings).

use super::{Key, KeyStyle, Series, color, err, log_range, positive, tick};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use sparq::Result;
use sparq::model::bench::ModelBenchRow;

/// The plot of `rows`, measured on the adapter named `adapter`, as an SVG document.
pub fn svg(adapter: &str, rows: &[ModelBenchRow]) -> Result<String> {
    let mut batches: Vec<usize> = rows.iter().map(|r| r.batch).collect();
    batches.sort_unstable();
    batches.dedup();
    let at = |b: usize| batches.iter().position(|&x| x == b).unwrap_or(0) as i32;
    let mut series = Series::new();
    let mut torch = Series::new();
    for r in rows {
        let x = at(r.batch);
        if let Some(v) = positive(r.seqs_per_s) {
            series.push(r.format.clone(), x, v);
        }
        // The torch timings ride on every format's row: one point per batch.
        for (name, us) in [
            ("PyTorch fp32", r.torch_fp32_us),
            ("PyTorch fp16", r.torch_fp16_us),
        ] {
            if let Some(us) = us.and_then(positive) {
                let seen = torch
                    .list
                    .iter()
                    .any(|(n, v)| n == name && v.iter().any(|p| p.0 == x));
                if !seen {
                    torch.push(name.to_string(), x, r.batch as f64 / (us * 1e-6));
                }
            }
        }
    }
    let all = || {
        series
            .list
            .iter()
            .chain(&torch.list)
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
    };
    let lo = all().fold(f64::INFINITY, f64::min);
    let hi = all().fold(0.0, f64::max);
    let y = if lo.is_finite() {
        log_range(lo, hi)
    } else {
        log_range(1.0, 1.0)
    };
    let seqs: Vec<usize> = {
        let mut s: Vec<usize> = rows.iter().map(|r| r.seq).collect();
        s.dedup();
        s
    };
    let seq = match seqs.as_slice() {
        [s] => format!(", {s} tokens per sequence"),
        _ => String::new(),
    };
    let mut out = String::new();
    {
        let canvas = super::canvas(&mut out, super::SIZE)?;
        let last = batches.len().max(1) as i32 - 1;
        let mut chart = ChartBuilder::on(&canvas.chart)
            .caption(
                format!("Model throughput — {adapter}{seq}"),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d((0..last).into_segmented(), y.log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(batches.len().max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => batches
                    .get(*i as usize)
                    .map_or(String::new(), |b| b.to_string()),
                _ => String::new(),
            })
            .y_label_formatter(&|v| tick(*v))
            .y_labels(12)
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc("batch size (sequences per forward pass)")
            .y_desc("throughput, sequences/s (log)")
            .draw()
            .map_err(err)?;
        let n = series.list.len();
        let mut keys = Vec::new();
        for (i, (name, points)) in series.list.iter().chain(&torch.list).enumerate() {
            let pts: Vec<_> = points
                .iter()
                .map(|&(x, y)| (SegmentValue::CenterOf(x), y))
                .collect();
            if i < n {
                let c = color(i);
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                    .map_err(err)?;
                keys.push(Key {
                    label: name.clone(),
                    color: c,
                    style: KeyStyle::Solid,
                });
            } else {
                // PyTorch: the reference, dashed in black (fp16) and grey (fp32).
                let c = if name.ends_with("fp16") {
                    BLACK
                } else {
                    RGBColor(120, 120, 120)
                };
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, c.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(
                        pts.into_iter()
                            .map(|p| TriangleMarker::new(p, 7, c.filled())),
                    )
                    .map_err(err)?;
                keys.push(Key {
                    label: name.clone(),
                    color: c,
                    style: KeyStyle::Dashed,
                });
            }
        }
        canvas.finish(&keys)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::svg;
    use crate::plot::tests::svg_text;
    use sparq::model::bench::ModelBenchRow;

    fn row(format: &str, batch: usize, seqs: f64, torch16: Option<f64>) -> ModelBenchRow {
        ModelBenchRow {
            format: format.into(),
            batch,
            seq: 16,
            forward_us: 1e6 * batch as f64 / seqs,
            seqs_per_s: seqs,
            dispatches: 40,
            kernels_us: 100.0,
            forward_us_stddev: 1.0,
            kernels_us_stddev: 1.0,
            overhead_meaningful: true,
            overhead_per_dispatch_us: 1.0,
            by_kernel: Vec::new(),
            torch_fp32_us: None,
            torch_fp16_us: torch16,
        }
    }

    #[test]
    fn one_line_per_format_and_pytorch() {
        let rows = vec![
            row("f32", 1, 100.0, Some(2000.0)),
            row("f32", 8, 500.0, Some(4000.0)),
            row("int4g32", 1, 150.0, Some(2000.0)),
            row("int4g32", 8, 0.0, Some(4000.0)),
        ];
        let text = svg_text(&svg("Test GPU & co", &rows).unwrap());
        for want in [
            "f32",
            "int4g32",
            "PyTorch fp16",
            "Test GPU & co",
            "16 tokens",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        assert!(
            !text.contains("PyTorch fp32"),
            "no fp32 timings were given: {text}"
        );
        assert!(text.contains("sequences/s"));
    }

    #[test]
    fn no_rows_still_draws() {
        svg_text(&svg("x", &[]).unwrap());
    }
}
