//! The plots of a seeded 50-framework run: their axis ranges and series counts, in the
//! prepared charts and in the SVG files drawn from them (text only, no pixel positions).

use proffer_sim::generate::{self, GenParams};
use proffer_sim::plot::{self, MAX_SERIES, Scale};
use proffer_sim::{Policy, Scenario, Sim, report};

/// A generated run of 50 frameworks on 40 agents, 12 simulated minutes, seed 5.
fn run_50() -> anyhow::Result<Sim> {
    let text = generate::scenario_toml(&GenParams {
        name: "plots-50".into(),
        agents: 40,
        frameworks: 50,
        hours: 0.2,
        seed: 5,
        sample_interval_s: 10.0,
        ..GenParams::default()
    });
    let s = Scenario::parse(&text, "plots-50.toml".as_ref())?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    Ok(sim)
}

/// The text of every `<text>` element of an SVG file.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_string())
        })
        .collect()
}

#[test]
fn fifty_framework_plots_fit_their_data_and_keep_nine_lines() -> anyhow::Result<()> {
    let sim = run_50()?;
    let m = sim.metrics();
    assert_eq!(m.names.len(), 50);
    let chart = plot::shares_chart(m, MAX_SERIES);
    assert_eq!(chart.series.len(), MAX_SERIES + 1, "top 8 and others");
    let others = &chart.series[MAX_SERIES];
    assert!(others.muted && others.label == "others (42 summed)");

    // The named lines are the frameworks with the largest mean share.
    let n = m.samples.len() as f64;
    let mean = |i: usize| m.samples.iter().map(|s| s.shares[i]).sum::<f64>() / n;
    let named: Vec<usize> = chart.series[..MAX_SERIES]
        .iter()
        .filter_map(|s| m.names.iter().position(|x| *x == s.label))
        .collect();
    assert_eq!(named.len(), MAX_SERIES);
    let least_named = named.iter().map(|&i| mean(i)).fold(f64::MAX, f64::min);
    for i in (0..50).filter(|i| !named.contains(i)) {
        assert!(mean(i) <= least_named, "{} left out", m.names[i]);
    }

    // The y axis fits the data: it holds the largest value drawn (the others' sum at its
    // peak) and is not much larger, whatever the scale.
    let sums = m.samples.iter().map(|s| {
        (0..50)
            .filter(|i| !named.contains(i))
            .map(|i| s.shares[i])
            .sum::<f64>()
    });
    let largest = m
        .samples
        .iter()
        .flat_map(|s| named.iter().map(|&i| s.shares[i]))
        .chain(sums)
        .fold(0.0, f64::max);
    assert!(largest > 0.1 && largest < 1.0, "{largest}");
    let y = &chart.y;
    assert!(y.max >= largest, "{y:?} below {largest}");
    match y.scale {
        Scale::Linear => assert!(y.min == 0.0 && y.max <= 1.11 * largest, "{y:?}"),
        Scale::Log => assert!(y.min > 0.0 && y.max <= 10.0 * largest, "{y:?}"),
    }
    assert_eq!(chart.x.label, "time (min)");
    assert!((chart.x.max - 12.0).abs() < 1e-9, "{:?}", chart.x);
    for s in &chart.series {
        for &(px, py) in &s.points {
            assert!(
                px >= chart.x.min && px <= chart.x.max,
                "{}: x {px}",
                s.label
            );
            assert!(py >= y.min && py <= y.max, "{}: y {py}", s.label);
        }
    }

    // The wait-time CDF: one line on a log time axis.
    let waits = vec![("all tasks".to_string(), plot::waits(&sim))];
    let cdf = plot::wait_cdf_chart("waits", &waits);
    assert_eq!(cdf.series.len(), 1);
    assert_eq!(cdf.x.scale, Scale::Log);
    let longest = waits[0].1.iter().max().copied().unwrap_or(0) as f64 / 1000.0;
    assert!(cdf.x.min > 0.0 && cdf.x.max >= longest && cdf.x.max <= 10.0 * longest);

    // The files drawn from these charts name exactly these lines in their legends.
    let tmp = tempfile::tempdir()?;
    report::write_outputs(&sim, tmp.path(), true)?;
    let texts = svg_texts(&std::fs::read_to_string(tmp.path().join("shares.svg"))?);
    let mentioned: Vec<&String> = m.names.iter().filter(|n| texts.contains(n)).collect();
    assert_eq!(mentioned.len(), MAX_SERIES, "{texts:?}");
    assert!(texts.iter().any(|t| t == "others (42 summed)"), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("top 8 of 50")), "{texts:?}");
    let texts = svg_texts(&std::fs::read_to_string(tmp.path().join("wait_cdf.svg"))?);
    assert!(texts.iter().any(|t| t.contains("log scale")), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.starts_with("all tasks (")),
        "{texts:?}"
    );
    Ok(())
}
