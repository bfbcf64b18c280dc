//! SVG plots: dominant shares over time, utilization, the wait-time CDF, and the comparison
//! of several policies.
//!
//! Each plot is first prepared as a [`Chart`] (series chosen, "others" summed, step lines,
//! axes fitted; pure functions in [`prepare`]) and then drawn by [`render`]. At 50 frameworks
//! and more the shares plot keeps its [`MAX_SERIES`] largest frameworks (by mean share) and
//! sums the rest as one gray "others" line; its axis fits the data (log when the lines' peaks
//! span more than a decade); the wait-time CDF has a log time axis; legends sit right of the data.

pub mod prepare;
pub mod render;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use prepare::{Axis, Chart, Scale, Series};
use prepare::{clamp_points, decade_ceil, decade_floor, fitted_axis, pick_top, steps};

use crate::engine::Sim;
use crate::error::SimError;
use crate::metrics::Metrics;

/// At most this many frameworks get their own line in the shares plot; the rest are summed.
pub const MAX_SERIES: usize = 8;

/// A time series to draw as a step line: label, (time in ms, value) samples, drawn in gray.
pub type TimeLine = (String, Vec<(u64, f64)>, bool);

/// A chart of step lines over time; `y` is fitted to the values when `None`.
pub fn time_chart(caption: &str, y: Option<Axis>, y_label: &str, lines: Vec<TimeLine>) -> Chart {
    let end_ms = lines
        .iter()
        .flat_map(|(_, pts, _)| pts.iter().map(|p| p.0))
        .max()
        .unwrap_or(0);
    let (unit, per) = prepare::time_unit(end_ms as f64 / 1000.0);
    let x = Axis {
        label: format!("time ({unit})"),
        min: 0.0,
        max: (end_ms as f64 / 1000.0 / per).max(1e-9),
        scale: Scale::Linear,
    };
    let y = y.unwrap_or_else(|| {
        let values: Vec<Vec<f64>> = lines
            .iter()
            .map(|(_, pts, _)| pts.iter().map(|p| p.1).collect())
            .collect();
        fitted_axis(y_label, &values)
    });
    let series = lines
        .into_iter()
        .map(|(label, pts, muted)| {
            let at: Vec<(f64, f64)> = pts
                .iter()
                .map(|&(t, v)| (t as f64 / 1000.0 / per, v))
                .collect();
            let mut points = steps(&at);
            clamp_points(&mut points, &x, &y);
            Series {
                label,
                points,
                muted,
            }
        })
        .collect();
    Chart {
        caption: caption.to_string(),
        x,
        y,
        series,
    }
}

/// The dominant share per framework over time: the `n` frameworks with the largest mean share
/// by name, the rest summed as "others (K frameworks)", step lines, a fitted axis.
pub fn shares_chart(m: &Metrics, n: usize) -> Chart {
    let columns: Vec<Vec<f64>> = (0..m.names.len())
        .map(|i| {
            m.samples
                .iter()
                .map(|s| s.shares.get(i).copied().unwrap_or(0.0))
                .collect()
        })
        .collect();
    let times: Vec<u64> = m.samples.iter().map(|s| s.time_ms).collect();
    let line = |values: &[f64]| times.iter().copied().zip(values.iter().copied()).collect();
    let (top, rest) = pick_top(&columns, n);
    let mut lines: Vec<TimeLine> = top
        .iter()
        .filter_map(|&i| Some((m.names.get(i)?.clone(), line(columns.get(i)?), false)))
        .collect();
    let caption = if rest.is_empty() {
        "Dominant share per framework".to_string()
    } else {
        let others = prepare::sum_columns(&columns, &rest, times.len());
        lines.push((
            format!("others ({} summed)", rest.len()),
            line(&others),
            true,
        ));
        format!(
            "Dominant share: top {} of {} frameworks by mean share, the rest summed",
            top.len(),
            columns.len()
        )
    };
    time_chart(&caption, None, "dominant share", lines)
}

/// Cpu and mem utilization and Jain's index over time, on 0–1.
pub fn utilization_chart(m: &Metrics) -> Chart {
    let y = Axis {
        label: "fraction".into(),
        min: 0.0,
        max: 1.05,
        scale: Scale::Linear,
    };
    let s = &m.samples;
    let lines = vec![
        (
            "cpus".into(),
            s.iter().map(|s| (s.time_ms, s.cpu_util)).collect(),
            false,
        ),
        (
            "mem".into(),
            s.iter().map(|s| (s.time_ms, s.mem_util)).collect(),
            false,
        ),
        (
            "Jain's index".into(),
            s.iter()
                .filter_map(|s| s.jain.map(|j| (s.time_ms, j)))
                .collect(),
            false,
        ),
    ];
    time_chart("Utilization and fairness", Some(y), "fraction", lines)
}

/// The log time axis of wait-time CDFs (`waits` in ms, shown in s): from the power of ten at
/// or below the shortest positive wait — a decade lower when some waits are 0 ms, which are
/// drawn at the left edge — to the power of ten at or above the longest.
pub fn wait_axis<'a>(waits: impl IntoIterator<Item = &'a u64>) -> Axis {
    let (mut lo, mut hi, mut zeros) = (u64::MAX, 0, false);
    for &w in waits {
        if w == 0 {
            zeros = true;
        } else {
            lo = lo.min(w);
            hi = hi.max(w);
        }
    }
    let (lo, hi) = if hi == 0 {
        (0.001, 0.001)
    } else {
        (lo as f64 / 1000.0, hi as f64 / 1000.0)
    };
    let mut min = decade_floor(lo);
    if zeros && min >= lo {
        min /= 10.0;
    }
    let max = decade_ceil(hi).max(min * 10.0);
    let label = if zeros {
        "wait (s, log scale; waits of 0 ms at the left edge)"
    } else {
        "wait (s, log scale)"
    };
    Axis {
        label: label.into(),
        min,
        max,
        scale: Scale::Log,
    }
}

/// Wait-time CDFs (waits in ms) on a log time axis, one step line per label; each legend
/// label says what share of its tasks waited 0 ms.
pub fn wait_cdf_chart(caption: &str, lines: &[(String, Vec<u64>)]) -> Chart {
    let x = wait_axis(lines.iter().flat_map(|(_, w)| w));
    let y = Axis {
        label: "fraction of tasks".into(),
        min: 0.0,
        max: 1.0,
        scale: Scale::Linear,
    };
    let series = lines
        .iter()
        .filter(|(_, w)| !w.is_empty())
        .map(|(label, waits)| {
            let mut w = waits.clone();
            let cdf = prepare::cdf(&mut w);
            let zero = cdf.first().filter(|p| p.0 == 0).map_or(0.0, |p| p.1);
            let mut at: Vec<(f64, f64)> = Vec::with_capacity(cdf.len() + 2);
            if let Some(&(first, _)) = cdf.first() {
                at.push((first as f64 / 1000.0, 0.0));
            }
            at.extend(cdf.iter().map(|&(v, f)| (v as f64 / 1000.0, f)));
            at.push((x.max, 1.0));
            let mut points = steps(&at);
            clamp_points(&mut points, &x, &y);
            Series {
                label: format!("{label} ({:.0} % at 0 ms)", zero * 100.0),
                points,
                muted: false,
            }
        })
        .collect();
    Chart {
        caption: caption.to_string(),
        x,
        y,
        series,
    }
}

/// Every task's wait (ms) in a run.
pub fn waits(sim: &Sim) -> Vec<u64> {
    sim.frameworks()
        .iter()
        .flat_map(|f| f.stats.waits.iter().copied())
        .collect()
}

/// Writes `shares.svg`, `utilization.svg` and `wait_cdf.svg` for a run.
pub fn all(sim: &Sim, dir: &Path) -> Result<(), SimError> {
    let m = sim.metrics();
    render::svg(&dir.join("shares.svg"), &shares_chart(m, MAX_SERIES))?;
    render::svg(&dir.join("utilization.svg"), &utilization_chart(m))?;
    let waits = vec![("all tasks".to_string(), waits(sim))];
    render::svg(
        &dir.join("wait_cdf.svg"),
        &wait_cdf_chart("Task wait time CDF", &waits),
    )
}
