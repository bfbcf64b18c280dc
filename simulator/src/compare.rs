//! One workload under several policies, in one process: each policy gets a fresh master and
//! the same seed, so the runs differ only by policy.

use std::path::Path;

use crate::engine::Sim;
use crate::error::SimError;
use crate::plot::{self, TimeLine, render};
use crate::policy::Policy;
use crate::report::{self, Summary};
use crate::scenario::Scenario;

/// Runs `scenario` under each policy; with `out`, writes each run into `out/<policy>/` and
/// comparison plots into `out/`. `progress(policy, now_ms, end_ms)` reports progress.
pub fn compare(
    scenario: &Scenario,
    policies: &[Policy],
    out: Option<&Path>,
    plots: bool,
    progress: &mut dyn FnMut(Policy, u64, u64),
) -> Result<Vec<Summary>, SimError> {
    let mut summaries = Vec::new();
    let mut jain_lines: Vec<TimeLine> = Vec::new();
    let mut wait_lines: Vec<(String, Vec<u64>)> = Vec::new();
    for &p in policies {
        let mut sim = Sim::new(scenario, p)?;
        sim.run_with_progress(&mut |now, end| progress(p, now, end));
        let summary = match out {
            Some(dir) => report::write_outputs(&sim, &dir.join(p.name()), plots)?,
            None => report::summarize(&sim),
        };
        jain_lines.push((
            p.name().to_string(),
            sim.metrics()
                .samples
                .iter()
                .filter_map(|s| s.jain.map(|j| (s.time_ms, j)))
                .collect(),
            false,
        ));
        wait_lines.push((p.name().to_string(), plot::waits(&sim)));
        summaries.push(summary);
    }
    if let Some(dir) = out {
        let table = report::table(&summaries.iter().collect::<Vec<_>>());
        let path = dir.join("compare.txt");
        std::fs::write(&path, table).map_err(|e| SimError::io(path, e))?;
        let json = serde_json::to_string_pretty(&summaries).unwrap_or_default();
        let path = dir.join("compare.json");
        std::fs::write(&path, json + "\n").map_err(|e| SimError::io(path, e))?;
        if plots {
            let jain = plot::Axis {
                label: "Jain's index".into(),
                min: 0.0,
                max: 1.05,
                scale: plot::Scale::Linear,
            };
            render::svg(
                &dir.join("compare_jain.svg"),
                &plot::time_chart(
                    "Jain's fairness index by policy",
                    Some(jain),
                    "",
                    jain_lines,
                ),
            )?;
            render::svg(
                &dir.join("compare_wait_cdf.svg"),
                &plot::wait_cdf_chart("Task wait time CDF by policy", &wait_lines),
            )?;
        }
    }
    Ok(summaries)
}
