//! `sparq bench --plot`: achieved weight-read bandwidth of each format over the cases (m and
//! shape), against the streaming-read ceiling and the PyTorch fp16 anchor.

use super::{Key, KeyStyle, Series, color, err, tick};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use sparq::Result;
use sparq::bench::BenchReport;

/// The plot of `report` as an SVG document.
pub fn svg(report: &BenchReport) -> Result<String> {
    // The cases in the table's order: (m, n, k) → x position.
    let mut cases: Vec<(usize, usize, usize)> = Vec::new();
    for r in &report.rows {
        if !cases.contains(&(r.m, r.n, r.k)) {
            cases.push((r.m, r.n, r.k));
        }
    }
    let at = |m, n, k| cases.iter().position(|c| *c == (m, n, k)).unwrap_or(0) as i32;
    let mut series = Series::new();
    let mut torch = Vec::new();
    for r in &report.rows {
        let x = at(r.m, r.n, r.k);
        if r.weight_gbps.is_finite() {
            series.push(r.format.clone(), x, r.weight_gbps);
        }
        // The anchor reads the same weights as fp16: 2 bytes each in its time.
        if let Some(us) = r.torch_fp16_us.and_then(super::positive)
            && !torch.iter().any(|(tx, _)| *tx == x)
        {
            torch.push((x, (2 * r.n * r.k) as f64 / us / 1e3));
        }
    }
    let ceiling = report.ceiling_gbps;
    let top = series
        .max_y(0.0)
        .max(torch.iter().map(|t| t.1).fold(0.0, f64::max))
        .max(if ceiling.is_finite() { ceiling } else { 0.0 });
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let labels: Vec<String> = cases
        .iter()
        .map(|(m, n, k)| format!("m={m} {n}×{k}"))
        .collect();
    let width = super::SIZE
        .0
        .max(125 * cases.len() as u32 + super::LEGEND_WIDTH + 100);
    let mut out = String::new();
    {
        let canvas = super::canvas(&mut out, (width, super::SIZE.1))?;
        let title = format!(
            "Weight-read bandwidth per format — {} ({})",
            report.adapter.name, report.adapter.backend
        );
        // Segments 0..=n-1: one per case.
        let last = cases.len().max(1) as i32 - 1;
        let mut chart = ChartBuilder::on(&canvas.chart)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((0..last).into_segmented(), 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(cases.len().max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc("case: activation rows m, weight N×K")
            .y_desc("weight bytes read, GB/s")
            .draw()
            .map_err(err)?;
        let mut keys = Vec::new();
        if ceiling.is_finite() && ceiling > 0.0 {
            let line = vec![
                (SegmentValue::Exact(0), ceiling),
                (SegmentValue::Last, ceiling),
            ];
            chart
                .draw_series(DashedLineSeries::new(line, 8, 5, BLACK.stroke_width(2)))
                .map_err(err)?;
            keys.push(Key {
                label: format!("streaming-read ceiling {} GB/s", tick(ceiling)),
                color: BLACK,
                style: KeyStyle::Dashed,
            });
        }
        for (i, (name, points)) in series.list.iter().enumerate() {
            let c = color(i);
            let pts: Vec<_> = points
                .iter()
                .map(|&(x, y)| (SegmentValue::CenterOf(x), y))
                .collect();
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
        }
        if !torch.is_empty() {
            let pts = torch.iter().map(|&(x, y)| (SegmentValue::CenterOf(x), y));
            chart
                .draw_series(pts.map(|p| TriangleMarker::new(p, 8, BLACK.filled())))
                .map_err(err)?;
            keys.push(Key {
                label: "PyTorch fp16 (its fp16 weights)".into(),
                color: BLACK,
                style: KeyStyle::Triangle,
            });
        }
        canvas.finish(&keys)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::svg;
    use crate::plot::tests::svg_text;
    use sparq::bench::{BenchReport, BenchRow};

    fn row(format: &str, m: usize, gbps: f64, torch: Option<f64>) -> BenchRow {
        BenchRow {
            format: format.into(),
            kernel: "gemv".into(),
            m,
            n: 64,
            k: 128,
            gpu_us: 10.0,
            gpu_us_min: 9.0,
            gpu_us_stddev: 0.5,
            weight_gbps: gbps,
            tflops: 0.01,
            pct_ceiling: 50.0,
            quant_error: 0.0,
            torch_fp16_us: torch,
            speedup_vs_torch: None,
        }
    }

    fn report(rows: Vec<BenchRow>) -> BenchReport {
        BenchReport {
            adapter: crate::plot::tests::caps("Test GPU <1>"),
            timing: "timestamps".into(),
            ceiling_gbps: 123.0,
            rows,
        }
    }

    #[test]
    fn names_every_format_the_ceiling_and_the_anchor() {
        let r = report(vec![
            row("f16", 1, 80.0, Some(2.0)),
            row("int4g32", 1, 60.0, None),
            row("f16", 8, 90.0, None),
            row("int4g32", 8, f64::NAN, None),
        ]);
        let text = svg_text(&svg(&r).unwrap());
        for want in [
            "f16",
            "int4g32",
            "streaming-read ceiling 123 GB/s",
            "PyTorch fp16",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        // The adapter's name survives XML escaping.
        assert!(text.contains("Test GPU <1>"), "{text}");
        assert!(text.contains("m=8 64×128"), "{text}");
        assert!(text.contains("GB/s"));
    }

    #[test]
    fn no_anchor_without_torch_and_no_rows_still_draws() {
        let text = svg_text(&svg(&report(vec![row("f32", 1, 5.0, None)])).unwrap());
        assert!(!text.contains("PyTorch"), "{text}");
        svg_text(&svg(&report(Vec::new())).unwrap());
    }
}
