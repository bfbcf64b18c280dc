//! Data preparation for the plots, apart from drawing: which series get a line, the "others"
//! sum, step lines, axis ranges and scales, empirical CDFs, tick labels. Everything here is
//! pure, so the choices a plot makes can be tested without looking at pixels.

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Evenly spaced powers of ten; every point drawn is at least the axis minimum (> 0).
    Log,
}

/// An axis: its label, range and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The label drawn along the axis.
    pub label: String,
    /// Smallest value shown (> 0 on a log axis).
    pub min: f64,
    /// Largest value shown.
    pub max: f64,
    /// Linear or log.
    pub scale: Scale,
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub label: String,
    /// The points, in drawing order, all within the chart's axes.
    pub points: Vec<(f64, f64)>,
    /// Drawn in gray: a sum of the series left out ("others").
    pub muted: bool,
}

/// A chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The title.
    pub caption: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// The lines, in legend order.
    pub series: Vec<Series>,
}

/// A log axis is chosen when the drawn series' peaks span at least this ratio (well over a
/// decade: at 50 frameworks the summed "others" line is often 30 times the smallest line
/// drawn, which a linear axis would press flat along the bottom).
pub const LOG_SPREAD: f64 = 20.0;

/// A log axis spans at most this many decades below its top; smaller values sit at the bottom.
pub const MAX_DECADES: i32 = 4;

/// Headroom above the largest value on a linear axis fitted to the data.
pub const HEADROOM: f64 = 1.1;

/// At most this many points of an empirical CDF are kept.
pub const MAX_CDF_POINTS: usize = 1000;

/// Which columns (one per series, a value per sample) get a line of their own: the `n` with
/// the largest mean, ties broken by the larger peak and then by the earlier column, in that
/// order; and the rest, in column order, to be summed as "others". When at most `n + 1`
/// columns exist every one gets its own line (an "others" of one column says nothing).
pub fn pick_top(columns: &[Vec<f64>], n: usize) -> (Vec<usize>, Vec<usize>) {
    if columns.len() <= n + 1 {
        return ((0..columns.len()).collect(), Vec::new());
    }
    let stats: Vec<(f64, f64)> = columns.iter().map(|c| (mean(c), peak(c))).collect();
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by(|&a, &b| {
        let (ma, pa) = stats[a];
        let (mb, pb) = stats[b];
        mb.total_cmp(&ma).then(pb.total_cmp(&pa)).then(a.cmp(&b))
    });
    let mut rest = order.split_off(n);
    rest.sort_unstable();
    (order, rest)
}

/// The sum of the columns `which` at each of the `len` samples (missing values count 0).
pub fn sum_columns(columns: &[Vec<f64>], which: &[usize], len: usize) -> Vec<f64> {
    (0..len)
        .map(|t| {
            which
                .iter()
                .filter_map(|&c| columns.get(c).and_then(|col| col.get(t)))
                .sum()
        })
        .collect()
}

/// The arithmetic mean (0 for no values).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// The largest value (0 for no values).
pub fn peak(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(0.0, f64::max)
}

/// A step line through sampled values: each value holds until the next point's x, where the
/// line rises or falls vertically.
pub fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if let Some(&(px, prev)) = i.checked_sub(1).and_then(|j| points.get(j))
            && prev != y
            && px != x
        {
            out.push((x, prev));
        }
        out.push((x, y));
    }
    out
}

/// A linear axis from 0 to the largest value × [`HEADROOM`] (1 when nothing is positive).
pub fn linear_axis(label: &str, values: impl IntoIterator<Item = f64>) -> Axis {
    let max = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    Axis {
        label: label.to_string(),
        min: 0.0,
        max: if max > 0.0 { max * HEADROOM } else { 1.0 },
        scale: Scale::Linear,
    }
}

/// A log axis from the power of ten at or below the smallest positive value (but at most
/// [`MAX_DECADES`] below the top) to the power of ten at or above the largest.
pub fn log_axis(label: &str, values: impl IntoIterator<Item = f64>) -> Axis {
    let (lo, hi) = positive_range(values).unwrap_or((0.1, 1.0));
    let top = decade_ceil(hi);
    let bottom = decade_floor(lo).max(top / 10f64.powi(MAX_DECADES));
    Axis {
        label: label.to_string(),
        min: if bottom < top { bottom } else { top / 10.0 },
        max: top,
        scale: Scale::Log,
    }
}

/// A linear axis fitted to the series, or a log one when their peaks span [`LOG_SPREAD`] or
/// more.
pub fn fitted_axis<S: AsRef<[f64]>>(label: &str, series: &[S]) -> Axis {
    let all = || series.iter().flat_map(|s| s.as_ref().iter().copied());
    match positive_range(series.iter().map(|s| peak(s.as_ref()))) {
        Some((lo, hi)) if hi / lo >= LOG_SPREAD => {
            log_axis(&format!("{label} (log scale, 0 at the bottom)"), all())
        }
        _ => linear_axis(label, all()),
    }
}

/// Moves every point into the axes: on a log axis values below the minimum (zeros) are drawn
/// at the minimum.
pub fn clamp_points(points: &mut [(f64, f64)], x: &Axis, y: &Axis) {
    for p in points {
        p.0 = p.0.clamp(x.min, x.max);
        p.1 = p.1.clamp(y.min, y.max);
    }
}

fn positive_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// The largest power of ten ≤ `v` (`v` > 0).
pub fn decade_floor(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    // Rounding in log10 can land one decade off around exact powers of ten.
    if p > v { p / 10.0 } else { p }
}

/// The smallest power of ten ≥ `v` (`v` > 0).
pub fn decade_ceil(v: f64) -> f64 {
    let p = decade_floor(v);
    if p < v { p * 10.0 } else { p }
}

/// The empirical CDF of `values` as (value, fraction of values ≤ it), one point per distinct
/// value, ascending; at most [`MAX_CDF_POINTS`] (every k-th and the last). Sorts `values`.
pub fn cdf(values: &mut [u64]) -> Vec<(u64, f64)> {
    values.sort_unstable();
    let n = values.len() as f64;
    let mut out: Vec<(u64, f64)> = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let f = (i + 1) as f64 / n;
        match out.last_mut() {
            Some(last) if last.0 == v => last.1 = f,
            _ => out.push((v, f)),
        }
    }
    if out.len() > MAX_CDF_POINTS {
        let k = out.len().div_ceil(MAX_CDF_POINTS);
        let last = out.last().copied();
        out = out.into_iter().step_by(k).collect();
        if let Some(l) = last
            && out.last() != Some(&l)
        {
            out.push(l);
        }
    }
    out
}

/// A tick label: at most three significant digits, no trailing zeros ("0.25", "1200", "1e-5").
pub fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { v.to_string() };
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
            None => s,
        };
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    trim_zeros(&format!("{v:.digits$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// The unit time is shown in for a run of `end_s` seconds: its name and seconds per unit
/// (seconds up to 10 minutes, minutes up to 3 hours, then hours).
pub fn time_unit(end_s: f64) -> (&'static str, f64) {
    if end_s <= 600.0 {
        ("s", 1.0)
    } else if end_s <= 3.0 * 3600.0 {
        ("min", 60.0)
    } else {
        ("h", 3600.0)
    }
}
