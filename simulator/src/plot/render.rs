//! Draws a prepared [`Chart`] into an SVG file with plotters: the data on the left, the
//! legend in a column of its own on the right, so it never covers a line.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use super::prepare::{Axis, Chart, Scale, tick};
use crate::error::SimError;

/// Size of the whole image (pixels).
pub const SIZE: (u32, u32) = (1120, 540);

/// Width of the legend column right of the data (pixels).
pub const LEGEND_WIDTH: u32 = 250;

/// Legend labels longer than this are cut (with "…").
pub const MAX_LABEL_CHARS: usize = 30;

/// Distinct colors for the lines (Tableau 10 without its gray, which marks "others").
const COLORS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The color of "others" lines.
const MUTED: RGBColor = RGBColor(127, 127, 127);

fn err(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The color of the `i`-th series (gray when muted).
fn color(i: usize, muted: bool) -> RGBColor {
    if muted {
        MUTED
    } else {
        COLORS[i % COLORS.len()]
    }
}

/// `label` cut to [`MAX_LABEL_CHARS`].
pub fn short_label(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        label.to_string()
    } else {
        let cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// Writes `chart` as an SVG file at `path`.
pub fn svg(path: &Path, chart: &Chart) -> Result<(), SimError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (data, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
    let (x, y) = (range(&chart.x), range(&chart.y));
    match (chart.x.scale, chart.y.scale) {
        (Scale::Linear, Scale::Linear) => draw(&data, chart, x, y),
        (Scale::Linear, Scale::Log) => draw(&data, chart, x, y.log_scale()),
        (Scale::Log, Scale::Linear) => draw(&data, chart, x.log_scale(), y),
        (Scale::Log, Scale::Log) => draw(&data, chart, x.log_scale(), y.log_scale()),
    }
    .map_err(|e| err(path, e))?;
    draw_legend(&legend, chart).map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// The range plotters is given for an axis. A log axis starts a hair below its minimum: its
/// ticks are the powers of ten from 10^ceil(log10(min)), and rounding in the logarithm of an
/// exact power of ten (log10(0.001) = -2.9999999999999996) would leave the first unlabeled.
fn range(a: &Axis) -> std::ops::Range<f64> {
    match a.scale {
        Scale::Linear => a.min..a.max,
        Scale::Log => a.min * (1.0 - 1e-9)..a.max,
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<XR, YR>(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    chart: &Chart,
    xr: XR,
    yr: YR,
) -> DrawResult
where
    XR: AsRangedCoord<Value = f64>,
    YR: AsRangedCoord<Value = f64>,
    XR::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    YR::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut c = ChartBuilder::on(area)
        .caption(&chart.caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)?;
    c.configure_mesh()
        .x_desc(chart.x.label.as_str())
        .y_desc(chart.y.label.as_str())
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    // "Others" first, so the named lines are drawn over it.
    let order = chart
        .series
        .iter()
        .enumerate()
        .filter(|(_, s)| s.muted)
        .chain(chart.series.iter().enumerate().filter(|(_, s)| !s.muted));
    for (i, s) in order {
        let style = color(i, s.muted).stroke_width(2);
        c.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
    }
    Ok(())
}

fn draw_legend(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    chart: &Chart,
) -> DrawResult {
    let font = ("sans-serif", 14).into_font();
    let top = 56;
    for (i, s) in chart.series.iter().enumerate() {
        let y = top + 22 * i as i32;
        let c = color(i, s.muted);
        area.draw(&PathElement::new(vec![(4, y), (30, y)], c.stroke_width(3)))?;
        let style = font
            .clone()
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            ));
        area.draw(&Text::new(short_label(&s.label), (38, y), style))?;
    }
    Ok(())
}
