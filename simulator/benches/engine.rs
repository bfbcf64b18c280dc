//! Simulator benchmarks (criterion): whole runs through the real master core.
//!
//! - `drf_paper`: the 30-second DRF paper scenario (1 agent, 2 frameworks).
//! - `generated/AxF/Ss`: a `proffer sim gen` scenario with A agents, F frameworks and churn, run
//!   for S simulated seconds. Each iteration builds and runs it; criterion reports the time per
//!   run (divide the run's simulated events, printed once, by it for events/s).
//!
//! `proffer sim bench` reports events/s and master tick times for larger clusters.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use proffer_sim::generate::{GenParams, scenario_toml};
use proffer_sim::{Policy, Scenario, Sim};

fn run(s: &Scenario) -> u64 {
    match Sim::new(s, Policy::Drf) {
        Ok(mut sim) => {
            sim.run();
            sim.counters().events()
        }
        Err(e) => panic!("scenario: {e}"),
    }
}

fn benches(c: &mut Criterion) {
    let drf = Scenario::parse(
        include_str!("../scenarios/drf-paper.toml"),
        "drf-paper.toml".as_ref(),
    );
    let Ok(drf) = drf else {
        panic!("drf-paper.toml does not parse")
    };
    c.bench_function("drf_paper", |b| b.iter(|| run(&drf)));

    let mut group = c.benchmark_group("generated");
    group.sample_size(10);
    for (agents, frameworks, secs) in [(100u32, 10u32, 600.0), (1000, 100, 120.0)] {
        let text = scenario_toml(&GenParams {
            agents,
            frameworks,
            hours: secs / 3600.0,
            sample_interval_s: 60.0,
            ..GenParams::default()
        });
        let Ok(s) = Scenario::parse(&text, "gen.toml".as_ref()) else {
            panic!("generated scenario does not parse")
        };
        println!(
            "generated/{agents}x{frameworks}/{secs}s: {} simulated events per run",
            run(&s)
        );
        group.bench_function(format!("{agents}x{frameworks}/{secs}s"), |b| {
            b.iter(|| run(&s))
        });
    }
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
