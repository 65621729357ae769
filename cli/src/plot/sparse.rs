//! `sparq bench --sparse --plot`: speed-up of each sparse format over dense of the same
//! precision against the weights' sparsity, with the break-even (speed-up 1) marked. The
//! sparse kernels only: the "→dense" rows (weights expanded then the dense GEMM) would double
//! the lines and sit near 1 by construction.

use super::{Key, KeyStyle, Series, color, err, log_range, positive, tick};
use plotters::prelude::*;
use sparq::Result;
use sparq::bench::sparse::SparseReport;

/// The plot of `report` as an SVG document.
pub fn svg(report: &SparseReport) -> Result<String> {
    let distinct = |f: &dyn Fn(&sparq::bench::sparse::SparseRow) -> (usize, usize)| {
        let mut v: Vec<_> = report.rows.iter().map(f).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let many_m = distinct(&|r| (r.m, 0)) > 1;
    let many_shapes = distinct(&|r| (r.n, r.k)) > 1;
    let mut series = Series::new();
    // Colour by format, solid for the first m and dashed for the others.
    let (mut bases, mut ms, mut styles) = (Vec::new(), Vec::new(), Vec::new());
    for r in &report.rows {
        let Some(s) = r.speedup.and_then(positive) else {
            continue;
        };
        if r.pruning == "-" || r.format.contains("→dense") {
            continue;
        }
        let mut name = r.format.clone();
        let base = name.clone();
        if many_m {
            name += &format!(" m={}", r.m);
        }
        if many_shapes {
            name += &format!(" {}×{}", r.n, r.k);
        }
        if !bases.contains(&base) {
            bases.push(base.clone());
        }
        if !ms.contains(&r.m) {
            ms.push(r.m);
        }
        styles.push((name.clone(), base, r.m));
        series.push(name, r.sparsity, s);
    }
    for (_, v) in &mut series.list {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let lo = series
        .list
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(1.0, f64::min);
    let y = log_range(lo, series.max_y(1.0));
    let style = |name: &str| {
        let (_, base, m) = styles
            .iter()
            .find(|s| s.0 == name)
            .expect("every series styled");
        let c = color(bases.iter().position(|b| b == base).unwrap_or(0));
        (c, ms.first() != Some(m))
    };
    let mut out = String::new();
    {
        let canvas = super::canvas(&mut out, super::SIZE)?;
        let title = format!(
            "Sparse speed-up over dense — {} ({})",
            report.adapter.name, report.adapter.backend
        );
        let mut chart = ChartBuilder::on(&canvas.chart)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, y.log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format!("{:.0} %", 100.0 * v))
            .y_label_formatter(&|v| format!("{}×", tick(*v)))
            .y_labels(12)
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc("sparsity (fraction of the weights that are zero)")
            .y_desc("speed-up over dense of the same precision (×, log)")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 1.0), (1.0, 1.0)],
                8,
                5,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
        let mut keys = vec![Key {
            label: "break-even (speed-up 1×)".into(),
            color: BLACK,
            style: KeyStyle::Dashed,
        }];
        for (name, points) in &series.list {
            let (c, dashed) = style(name);
            if dashed {
                chart
                    .draw_series(DashedLineSeries::new(
                        points.clone(),
                        6,
                        4,
                        c.stroke_width(2),
                    ))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                    .map_err(err)?;
            }
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(err)?;
            keys.push(Key {
                label: name.clone(),
                color: c,
                style: if dashed {
                    KeyStyle::Dashed
                } else {
                    KeyStyle::Solid
                },
            });
        }
        canvas.finish(&keys)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::svg;
    use crate::plot::tests::{caps, svg_text};
    use sparq::bench::sparse::{SparseReport, SparseRow};

    fn row(format: &str, m: usize, sparsity: f64, speedup: Option<f64>) -> SparseRow {
        SparseRow {
            n: 256,
            k: 512,
            m,
            format: format.into(),
            precision: "f16".into(),
            pruning: if format.starts_with("dense") {
                "-"
            } else {
                "magnitude"
            }
            .into(),
            sparsity,
            gpu_us: 10.0,
            gpu_us_stddev: 0.5,
            bytes: 1000,
            gbps: 0.1,
            speedup,
            pick: None,
        }
    }

    fn report(rows: Vec<SparseRow>) -> SparseReport {
        SparseReport {
            adapter: caps("Test GPU"),
            rows,
            model: sparq::sparse::CostModel::h100(),
        }
    }

    #[test]
    fn one_line_per_sparse_format_and_the_break_even() {
        let r = report(vec![
            row("dense-f16", 1, 0.0, Some(1.0)),
            row("csr-f16", 1, 0.5, Some(0.4)),
            row("csr-f16", 1, 0.99, Some(12.0)),
            row("bsr4x32-int4", 1, 0.9, Some(3.0)),
            row("2:4-int8", 1, 0.5, Some(1.3)),
            row("csr-f16 →dense", 8, 0.5, Some(0.9)),
            row("csr-f16", 8, 0.5, None),
        ]);
        let text = svg_text(&svg(&r).unwrap());
        for want in [
            "csr-f16 m=1",
            "bsr4x32-int4 m=1",
            "2:4-int8 m=1",
            "break-even",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        assert!(!text.contains("dense-f16"), "dense is the baseline: {text}");
        assert!(!text.contains("→dense"), "{text}");
        assert!(text.contains("sparsity"));
    }

    #[test]
    fn nothing_to_plot_still_draws_the_break_even() {
        let text = svg_text(&svg(&report(Vec::new())).unwrap());
        assert!(text.contains("break-even"), "{text}");
    }
}
