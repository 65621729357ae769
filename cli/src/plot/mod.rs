//! SVG plots of the benchmark reports (`--plot FILE.svg`), drawn with `plotters`' SVG backend
//! only: text is written as SVG `<text>` (sized by plotters' built-in estimate, no font files),
//! so the build needs no font library and the picture renders wherever SVG does.

pub mod bench;
pub mod model;
pub mod sparse;

use plotters::prelude::*;
use sparq::{Error, Result};
use std::path::Path;

/// Plot size in pixels: wide enough for a dozen labelled cases.
pub const SIZE: (u32, u32) = (1000, 600);

/// A plotters failure as the crate's error (a plot is a rendering of numbers we hold: a
/// failure here is a bug or a degenerate input, reported rather than panicking).
fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::invalid(format!("plot: {e}"))
}

/// The i-th series colour, stable across plots.
fn color(i: usize) -> RGBColor {
    // Palette99 without the washed-out entries; enough for a dozen series.
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// Writes `svg` to `path` atomically and says so on stderr.
pub fn write(path: &Path, svg: &str) -> Result<()> {
    sparq::error::write_file(path, svg)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Width of the legend column right of the chart, pixels: the legend never hides data.
const LEGEND_WIDTH: u32 = 280;

/// One line of the legend: what is drawn in `color`, as a dashed line or solid, or a marker.
struct Key {
    label: String,
    color: RGBColor,
    style: KeyStyle,
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, PartialEq)]
enum KeyStyle {
    Solid,
    Dashed,
    Triangle,
}

/// A chart area left, and the legend column right, of an SVG of `size` drawn into `out`.
fn canvas(out: &mut String, size: (u32, u32)) -> Result<Canvas<'_>> {
    let root = SVGBackend::with_string(out, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (chart, legend) = root.split_horizontally(size.0 - LEGEND_WIDTH);
    Ok(Canvas { chart, legend })
}

/// The two areas of a plot.
struct Canvas<'a> {
    chart: DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    legend: DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
}

impl Canvas<'_> {
    /// Draws the legend (in the order given, top down) and finishes the document.
    fn finish(self, keys: &[Key]) -> Result<()> {
        let top = 60;
        for (i, k) in keys.iter().enumerate() {
            let y = top + 20 * i as i32;
            let style = k.color.stroke_width(2);
            let a = &self.legend;
            match k.style {
                KeyStyle::Solid => a.draw(&PathElement::new(vec![(5, y), (35, y)], style)),
                KeyStyle::Dashed => {
                    for x in [5, 17, 29] {
                        a.draw(&PathElement::new(vec![(x, y), (x + 7, y)], style))
                            .map_err(err)?;
                    }
                    Ok(())
                }
                KeyStyle::Triangle => a.draw(&TriangleMarker::new((20, y), 6, k.color.filled())),
            }
            .map_err(err)?;
            a.draw(&Text::new(k.label.clone(), (42, y - 7), ("sans-serif", 14)))
                .map_err(err)?;
        }
        self.chart.present().map_err(err)?;
        Ok(())
    }
}

/// `v` if it is a finite positive number (a plot on a log axis cannot place 0 or NaN).
fn positive(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then_some(v)
}

/// Series keyed by name in first-seen order (so the legend follows the table's order).
struct Series<X> {
    list: Vec<(String, Vec<(X, f64)>)>,
}

impl<X> Series<X> {
    fn new() -> Self {
        Series { list: Vec::new() }
    }

    fn push(&mut self, name: String, x: X, y: f64) {
        match self.list.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push((x, y)),
            None => self.list.push((name, vec![(x, y)])),
        }
    }

    /// The largest y of every series, at least `floor`.
    fn max_y(&self, floor: f64) -> f64 {
        self.list
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .fold(floor, f64::max)
    }
}

/// The y-axis range of a log axis holding `lo..hi`, padded by a factor and never empty.
fn log_range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    // Nothing positive to show: a decade around 1.
    let lo = match (positive(lo), positive(hi)) {
        (Some(lo), _) => lo,
        (None, Some(hi)) => hi,
        (None, None) => 1.0,
    };
    let hi = positive(hi).unwrap_or(lo).max(lo);
    let (lo, hi) = if hi / lo < 4.0 {
        (lo / 2.0, hi * 2.0)
    } else {
        (lo / 1.3, hi * 1.3)
    };
    lo..hi
}

/// A number for an axis tick: three significant digits, no trailing noise.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else {
        let decimals = (2 - a.log10().floor() as i32).clamp(0, 9) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

#[cfg(test)]
mod tests {
    /// An adapter description for synthetic reports.
    pub fn caps(name: &str) -> sparq::gpu::Caps {
        sparq::gpu::Caps {
            name: name.into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: "test".into(),
            f16: false,
            subgroups: false,
            subgroup_min: 0,
            subgroup_max: 0,
            timestamps: true,
            dot4_i8: false,
            coop_matrix: Vec::new(),
            max_buffer: 0,
            max_storage_binding: 0,
            workgroup_storage: 0,
            max_invocations: 0,
            max_workgroups_per_dim: 0,
        }
    }

    /// The SVG parses as XML and its text (every `<text>` node, joined) — what a reader sees.
    pub fn svg_text(svg: &str) -> String {
        let doc = roxmltree::Document::parse(svg).expect("the plot is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.tag_name().name() == "text")
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn ticks_keep_small_numbers_readable() {
        assert_eq!(super::tick(0.0), "0");
        assert_eq!(super::tick(0.012), "0.012");
        assert_eq!(super::tick(0.5), "0.5");
        assert_eq!(super::tick(1.0), "1");
        assert_eq!(super::tick(2.70), "2.7");
        assert_eq!(super::tick(0.00012345), "0.000123");
        assert_eq!(super::tick(1234.4), "1234");
    }

    #[test]
    fn log_range_is_never_empty() {
        let r = super::log_range(3.0, 3.0);
        assert!(r.start < 3.0 && r.end > 3.0);
        let r = super::log_range(0.0, 0.0);
        assert!(r.start > 0.0 && r.end > r.start);
    }
}
