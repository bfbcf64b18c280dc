//! SVG plots with plotters: dominant shares over time, utilization, wait-time CDF, and the
//! comparison of several policies.

use std::path::Path;

use plotters::prelude::*;

use crate::engine::Sim;
use crate::error::SimError;

/// At most this many frameworks get their own line in the shares plot.
pub const MAX_LINES: usize = 16;

fn err(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A line to draw: label and (x, y) points.
pub type Line = (String, Vec<(f64, f64)>);

/// Draws lines on one chart into an SVG file.
pub fn lines(
    path: &Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Line],
) -> Result<(), SimError> {
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max);
    let ymax = if ymax <= 1.0 { 1.0 } else { ymax * 1.05 };
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(path, e))?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(path, e))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// The empirical CDF of values (x ascending, y in (0, 1]), thinned to at most 500 points.
pub fn cdf(values: &mut [u64], scale: f64) -> Vec<(f64, f64)> {
    values.sort_unstable();
    let n = values.len();
    let step = n.div_ceil(500).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (values[i] as f64 * scale, (i + 1) as f64 / n as f64))
        .collect();
    if let Some(&last) = values.last() {
        out.push((last as f64 * scale, 1.0));
    }
    out
}

/// Writes `shares.svg`, `utilization.svg` and `wait_cdf.svg` for a run.
pub fn all(sim: &Sim, dir: &Path) -> Result<(), SimError> {
    let m = sim.metrics();
    let secs = |t: u64| t as f64 / 1000.0;
    let shares: Vec<Line> = m
        .names
        .iter()
        .enumerate()
        .take(MAX_LINES)
        .map(|(i, name)| {
            let pts = m
                .samples
                .iter()
                .map(|s| (secs(s.time_ms), s.shares.get(i).copied().unwrap_or(0.0)))
                .collect();
            (name.clone(), pts)
        })
        .collect();
    lines(
        &dir.join("shares.svg"),
        "Dominant share per framework",
        "time (s)",
        "dominant share",
        &shares,
    )?;
    let util = vec![
        (
            "cpus".to_string(),
            m.samples
                .iter()
                .map(|s| (secs(s.time_ms), s.cpu_util))
                .collect(),
        ),
        (
            "mem".to_string(),
            m.samples
                .iter()
                .map(|s| (secs(s.time_ms), s.mem_util))
                .collect(),
        ),
        (
            "Jain's index".to_string(),
            m.samples
                .iter()
                .filter_map(|s| s.jain.map(|j| (secs(s.time_ms), j)))
                .collect(),
        ),
    ];
    lines(
        &dir.join("utilization.svg"),
        "Utilization and fairness",
        "time (s)",
        "fraction",
        &util,
    )?;
    let mut waits: Vec<u64> = sim
        .frameworks()
        .iter()
        .flat_map(|f| f.stats.waits.iter().copied())
        .collect();
    lines(
        &dir.join("wait_cdf.svg"),
        "Task wait time CDF",
        "wait (s)",
        "fraction of tasks",
        &[("all tasks".to_string(), cdf(&mut waits, 0.001))],
    )
}
