//! Table and golden tests of the plots' data preparation: the series chosen, the "others"
//! sum, step lines, axis ranges and scales, CDFs and tick labels. No pixels.

use super::prepare::*;
use super::*;
use crate::metrics::{Metrics, Sample};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn pick_top_table() {
    let c = |means: &[f64]| -> Vec<Vec<f64>> { means.iter().map(|&m| vec![m, m]).collect() };
    // (columns, n, top, rest)
    type Case = (Vec<Vec<f64>>, usize, Vec<usize>, Vec<usize>);
    let table: Vec<Case> = vec![
        (vec![], 8, vec![], vec![]),
        (c(&[0.1, 0.3, 0.2]), 8, vec![0, 1, 2], vec![]),
        // n + 1 columns: an "others" of one says nothing, so each keeps its line.
        (c(&[0.1, 0.3, 0.2]), 2, vec![0, 1, 2], vec![]),
        (c(&[0.1, 0.3, 0.2, 0.05]), 2, vec![1, 2], vec![0, 3]),
        (c(&[0.0, 0.0, 0.4, 0.0, 0.1]), 1, vec![2], vec![0, 1, 3, 4]),
        // Equal means: the larger peak first, then the earlier column.
        (
            vec![
                vec![0.2, 0.2],
                vec![0.0, 0.4],
                vec![0.2, 0.2],
                vec![0.1, 0.1],
            ],
            2,
            vec![1, 0],
            vec![2, 3],
        ),
        // Missing samples count as nothing.
        (
            vec![vec![0.5], vec![0.1, 0.1], vec![], vec![0.3, 0.3, 0.3]],
            1,
            vec![0],
            vec![1, 2, 3],
        ),
    ];
    for (cols, n, top, rest) in table {
        assert_eq!(pick_top(&cols, n), (top, rest), "{cols:?} n={n}");
    }
}

#[test]
fn sum_columns_golden() {
    let cols = vec![vec![0.1, 0.2, 0.3], vec![1.0, 1.0], vec![0.5, 0.5, 0.5]];
    let got = sum_columns(&cols, &[0, 1], 3);
    let want = [1.1, 1.2, 0.3];
    assert!(got.iter().zip(want).all(|(g, w)| close(*g, w)), "{got:?}");
    assert_eq!(sum_columns(&cols, &[], 2), [0.0, 0.0]);
    assert_eq!(sum_columns(&cols, &[7], 1), [0.0], "unknown column");
}

#[test]
fn steps_golden() {
    type Points = Vec<(f64, f64)>;
    let table: Vec<(Points, Points)> = vec![
        (vec![], vec![]),
        (vec![(0.0, 1.0)], vec![(0.0, 1.0)]),
        (
            vec![(0.0, 0.0), (1.0, 1.0), (2.0, 1.0), (3.0, 0.5)],
            vec![
                (0.0, 0.0),
                (1.0, 0.0),
                (1.0, 1.0),
                (2.0, 1.0),
                (3.0, 1.0),
                (3.0, 0.5),
            ],
        ),
    ];
    for (input, want) in table {
        assert_eq!(steps(&input), want, "{input:?}");
    }
}

#[test]
fn axes_table() {
    // (values, min, max, scale)
    let lin = |v: &[f64]| linear_axis("y", v.iter().copied());
    for (v, max) in [
        (&[0.0, 0.2, 0.1][..], 0.22),
        (&[][..], 1.0),
        (&[0.0, f64::NAN][..], 1.0),
        (&[2.5][..], 2.75),
    ] {
        let a = lin(v);
        assert!(a.min == 0.0 && close(a.max, max), "{v:?}: {a:?}");
        assert_eq!(a.scale, Scale::Linear);
    }
    let log = |v: &[f64]| log_axis("y", v.iter().copied());
    for (v, min, max) in [
        (&[0.003, 0.0, 0.5][..], 0.001, 1.0),
        (&[0.01, 0.1][..], 0.01, 0.1),
        (&[1e-9, 0.5][..], 1e-4, 1.0),
        (&[0.2][..], 0.1, 1.0),
        (&[1.0][..], 0.1, 1.0),
        (&[][..], 0.1, 1.0),
    ] {
        let a = log(v);
        assert!(
            close(a.min, min) && close(a.max, max),
            "{v:?}: {a:?}, want {min}..{max}"
        );
        assert_eq!(a.scale, Scale::Log);
    }
    // Peaks within LOG_SPREAD: linear and fitted; beyond: log.
    let a = fitted_axis("share", &[vec![0.0, 0.3], vec![0.02, 0.03]]);
    assert_eq!((a.scale, a.label.as_str()), (Scale::Linear, "share"));
    assert!(close(a.max, 0.33));
    let a = fitted_axis("share", &[vec![0.0, 0.6], vec![0.02, 0.01]]);
    assert_eq!(a.scale, Scale::Log);
    assert!(a.label.starts_with("share (log scale"), "{}", a.label);
    assert!(close(a.min, 0.01) && close(a.max, 1.0), "{a:?}");
}

#[test]
fn decades_table() {
    for (v, floor, ceil) in [
        (0.001, 0.001, 0.001),
        (0.0015, 0.001, 0.01),
        (1.0, 1.0, 1.0),
        (999.0, 100.0, 1000.0),
        (1000.0, 1000.0, 1000.0),
        (0.3, 0.1, 1.0),
    ] {
        assert!(close(decade_floor(v), floor), "floor {v}");
        assert!(close(decade_ceil(v), ceil), "ceil {v}");
    }
}

#[test]
fn cdf_golden_and_thinned() {
    let mut v = vec![5, 0, 10, 5, 0, 5];
    let got = cdf(&mut v);
    let want = [(0, 2.0 / 6.0), (5, 5.0 / 6.0), (10, 1.0)];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(g.0 == w.0 && close(g.1, w.1), "{got:?}");
    }
    assert!(cdf(&mut []).is_empty());
    let mut many: Vec<u64> = (0..5000).rev().collect();
    let got = cdf(&mut many);
    assert!(got.len() <= MAX_CDF_POINTS + 1, "{}", got.len());
    assert_eq!(got.first(), Some(&(0, 1.0 / 5000.0)));
    assert_eq!(got.last(), Some(&(4999, 1.0)));
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
}

#[test]
fn tick_and_time_unit_tables() {
    for (v, want) in [
        (0.0, "0"),
        (0.25, "0.25"),
        (0.1 + 0.2, "0.3"),
        (2.0, "2"),
        (12.345, "12.3"),
        (1200.0, "1200"),
        (0.001, "0.001"),
        (0.00012345, "0.000123"),
        (1e-5, "1e-5"),
        (2.5e7, "2.5e7"),
        (-0.5, "-0.5"),
    ] {
        assert_eq!(tick(v), want, "{v}");
    }
    for (end, unit, per) in [
        (30.0, "s", 1.0),
        (600.0, "s", 1.0),
        (1800.0, "min", 60.0),
        (86_400.0, "h", 3600.0),
    ] {
        assert_eq!(time_unit(end), (unit, per), "{end}");
    }
}

#[test]
fn wait_axis_table() {
    // (waits in ms, min s, max s, mentions zeros)
    let table: &[(&[u64], f64, f64, bool)] = &[
        (&[0, 1, 250_000], 1e-4, 1000.0, true),
        (&[5, 50], 0.001, 0.1, false),
        (&[3, 0, 40], 0.001, 0.1, true),
        (&[1, 0, 40], 0.0001, 0.1, true),
        (&[20, 0], 0.01, 0.1, true),
        (&[0, 0], 1e-4, 0.001, true),
        (&[], 0.001, 0.01, false),
    ];
    for &(w, min, max, zeros) in table {
        let a = wait_axis(w);
        assert!(close(a.min, min) && close(a.max, max), "{w:?}: {a:?}");
        assert_eq!(a.scale, Scale::Log);
        assert_eq!(a.label.contains("0 ms"), zeros, "{w:?}: {}", a.label);
    }
}

/// Every point of every series lies within the chart's axes.
fn assert_within(chart: &Chart) {
    for s in &chart.series {
        for &(x, y) in &s.points {
            assert!(
                (chart.x.min..=chart.x.max).contains(&x)
                    && (chart.y.min..=chart.y.max).contains(&y),
                "{}: ({x}, {y}) outside {:?} {:?}",
                s.label,
                chart.x,
                chart.y
            );
        }
    }
}

#[test]
fn wait_cdf_chart_starts_at_the_zero_waits() {
    let lines = vec![
        ("drf".to_string(), vec![0, 0, 0, 1500, 2000, 60_000]),
        ("none".to_string(), vec![]),
    ];
    let c = wait_cdf_chart("waits", &lines);
    assert_eq!(c.series.len(), 1, "lines without waits are left out");
    let s = &c.series[0];
    assert_eq!(s.label, "drf (50 % at 0 ms)");
    assert_within(&c);
    // The shortest positive wait is 1.5 s: the zeros are drawn at 1 s, the left edge.
    assert!(close(c.x.min, 1.0) && close(c.x.max, 100.0), "{:?}", c.x);
    // From 0 at the left edge up to the zero waits' half, then steps to 1 at the right edge.
    assert_eq!(s.points.first(), Some(&(c.x.min, 0.0)));
    assert_eq!(s.points.get(1), Some(&(c.x.min, 0.5)));
    assert_eq!(s.points.get(2), Some(&(1.5, 0.5)));
    assert_eq!(s.points.last(), Some(&(c.x.max, 1.0)));
    assert!(
        s.points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
    );
}

/// A seeded stand-in for a run's metrics: `n` frameworks over `samples` samples, framework
/// `i` holding `weight(i) · scale · noise(t)` (noise in 0.5..1.5 from a fixed LCG, the same
/// for every framework at a sample, so the ranking is `weight`'s), nothing at the first
/// sample (before the frameworks join).
fn metrics(n: usize, samples: u64, scale: f64, weight: impl Fn(usize) -> f64) -> Metrics {
    let names = (0..n).map(|i| format!("fw{i:04}")).collect();
    let mut m = Metrics::new(names, vec!["*".to_string(); n]);
    let mut state: u64 = 42;
    for t in 0..samples {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = 0.5 + (state >> 11) as f64 / (1u64 << 53) as f64;
        let shares = (0..n)
            .map(|i| {
                if t == 0 {
                    0.0
                } else {
                    weight(i) * scale * noise
                }
            })
            .collect();
        m.samples.push(Sample {
            time_ms: t * 10_000,
            shares,
            role_shares: vec![],
            active: n as u32,
            jain: None,
            max_min_ratio: None,
            cpu_util: 0.5,
            mem_util: 0.25,
            queued: 0,
            running: 0,
        });
    }
    m
}

#[test]
fn shares_chart_of_50_frameworks_keeps_the_top_8_and_sums_the_rest() {
    // Five large frameworks (every tenth), 45 small ones; each grows a little with its index.
    let weight = |i: usize| i as f64 / 100.0 + if i % 10 == 9 { 20.0 } else { 1.0 };
    let m = metrics(50, 100, 0.0005, weight);
    let c = shares_chart(&m, MAX_SERIES);
    assert_eq!(c.series.len(), MAX_SERIES + 1);
    let labels: Vec<&str> = c.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "fw0049",
            "fw0039",
            "fw0029",
            "fw0019",
            "fw0009",
            "fw0048",
            "fw0047",
            "fw0046",
            "others (42 summed)"
        ]
    );
    let top = [49, 39, 29, 19, 9, 48, 47, 46];
    assert_eq!(
        c.series.iter().map(|s| s.muted).collect::<Vec<_>>(),
        [false, false, false, false, false, false, false, false, true]
    );
    assert!(c.caption.contains("top 8 of 50"), "{}", c.caption);
    // "others" is the sum of the 42 others at every sample (step points repeat values; on
    // the log axis 0 is drawn at the bottom).
    let others = &c.series[8];
    for s in &m.samples {
        let sum: f64 = (0..50)
            .filter(|i| !top.contains(i))
            .map(|i| s.shares[i])
            .sum();
        let want = sum.max(c.y.min);
        let x = s.time_ms as f64 / 1000.0 / 60.0;
        assert!(
            others
                .points
                .iter()
                .any(|&(px, py)| px == x && close(py, want)),
            "no others point ({x}, {want})"
        );
    }
    // Peaks span ≈ 0.04 (others, 42 × ≈ 0.0006 × 1.5) to ≈ 0.0011 (fw0046): a log axis.
    let top = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    assert_eq!(c.y.scale, Scale::Log);
    assert!(
        c.y.max >= top && c.y.max <= 10.0 * top,
        "{:?} for {top}",
        c.y
    );
    assert!(c.y.min > 0.0 && c.y.min <= 0.0001, "{:?}", c.y);
    assert_eq!((c.x.min, c.x.label.as_str()), (0.0, "time (min)"));
    assert!(close(c.x.max, 16.5), "{:?}", c.x);
    assert_within(&c);
}

#[test]
fn shares_chart_fits_a_linear_axis_to_small_shares() {
    // Ten similar frameworks: two are summed, peaks within LOG_SPREAD, so linear from 0 to
    // the largest value drawn × HEADROOM — far below 1.
    let m = metrics(10, 30, 0.002, |i| 1.0 + i as f64 / 10.0);
    let c = shares_chart(&m, MAX_SERIES);
    assert_eq!(c.series.len(), MAX_SERIES + 1);
    assert_eq!(c.series[8].label, "others (2 summed)");
    let top = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    assert_eq!(c.y.scale, Scale::Linear);
    assert!(close(c.y.max, top * HEADROOM), "{:?} for {top}", c.y);
    assert!(c.y.max < 0.1);
    assert_eq!(c.x.label, "time (s)");
    assert_within(&c);
    // Few frameworks: one line each, the plain caption.
    let c = shares_chart(&metrics(3, 5, 0.1, |_| 1.0), MAX_SERIES);
    assert_eq!(c.series.len(), 3);
    assert_eq!(c.caption, "Dominant share per framework");
}

#[test]
fn utilization_chart_is_on_0_to_1() {
    let c = utilization_chart(&metrics(2, 4, 0.1, |_| 1.0));
    let labels: Vec<&str> = c.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["cpus", "mem", "Jain's index"]);
    assert_eq!((c.y.min, c.y.max), (0.0, 1.05));
    assert!(c.series[2].points.is_empty(), "no Jain samples");
    assert_within(&c);
}
