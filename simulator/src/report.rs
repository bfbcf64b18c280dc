//! The run's results: a JSON summary, CSV time series and per-framework table, the decision
//! log, wall-clock timing, and the plots.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::engine::Sim;
use crate::error::SimError;
use crate::metrics::Percentiles;

/// Per-framework results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameworkSummary {
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Id given by the master.
    pub framework_id: String,
    /// Tasks launched.
    pub launched: u64,
    /// Tasks finished.
    pub finished: u64,
    /// Tasks lost, killed or failed (and queued again).
    pub lost: u64,
    /// Tasks still waiting at the end.
    pub queued_at_end: u64,
    /// Tasks running at the end.
    pub running_at_end: u32,
    /// Queueing delay (ms).
    pub wait_ms: Percentiles,
    /// Dominant share averaged over the samples after it joined.
    pub mean_share: f64,
    /// Dominant share at the end.
    pub final_share: f64,
    /// Seconds from joining until it reached its fair share (see `metrics`).
    pub time_to_fair_share_s: Option<f64>,
    /// Offers received.
    pub offers: u64,
    /// Offers declined outright.
    pub declined: u64,
}

/// Per-role results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSummary {
    /// The role.
    pub role: String,
    /// Frameworks in it.
    pub frameworks: usize,
    /// Dominant share of the role's tasks, averaged over the samples.
    pub mean_share: f64,
    /// The same at the end.
    pub final_share: f64,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Policy run.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Simulated seconds.
    pub simulated_s: f64,
    /// Agents simulated.
    pub agents: usize,
    /// Frameworks simulated.
    pub frameworks: usize,
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Tasks finished.
    pub tasks_finished: u64,
    /// Tasks lost, killed or failed.
    pub tasks_lost: u64,
    /// Queueing delay over all launches (ms).
    pub wait_ms: Percentiles,
    /// Offers made.
    pub offers: u64,
    /// Offers declined outright.
    pub offers_declined: u64,
    /// Declined / made.
    pub decline_rate: f64,
    /// Offers made per task launched.
    pub offers_per_launched_task: Option<f64>,
    /// UPDATE_FRAMEWORK calls frameworks sent to move their offer limits.
    pub offer_limit_updates: u64,
    /// Jain's index averaged over samples with active frameworks.
    pub jain_mean: Option<f64>,
    /// Lowest Jain's index seen.
    pub jain_min: Option<f64>,
    /// Max/min dominant share ratio averaged over samples.
    pub max_min_ratio_mean: Option<f64>,
    /// Mean cpu utilization.
    pub cpu_util_mean: f64,
    /// Mean mem utilization.
    pub mem_util_mean: f64,
    /// Mean time to fair share over frameworks that reached it (s).
    pub time_to_fair_share_mean_s: Option<f64>,
    /// Frameworks that never reached their fair share.
    pub frameworks_never_fair: usize,
    /// Allocation cycles the allocator ran.
    pub allocation_cycles: u64,
    /// Engine counters.
    pub counters: crate::engine::Counters,
    /// Per role.
    pub per_role: Vec<RoleSummary>,
    /// Per framework.
    pub per_framework: Vec<FrameworkSummary>,
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut n, mut s) = (0usize, 0.0);
    for x in xs {
        n += 1;
        s += x;
    }
    (n > 0).then(|| s / n as f64)
}

/// Summarizes a finished run.
pub fn summarize(sim: &Sim) -> Summary {
    let samples = &sim.metrics().samples;
    let mut per_framework = Vec::new();
    let mut all_waits = Vec::new();
    let (mut offers, mut declined, mut launched, mut finished, mut lost) = (0, 0, 0, 0, 0);
    let mut limit_updates = 0;
    for (i, f) in sim.frameworks().iter().enumerate() {
        let mut w = f.stats.waits.clone();
        all_waits.extend_from_slice(&f.stats.waits);
        let joined = f.joined_at.unwrap_or(u64::MAX);
        per_framework.push(FrameworkSummary {
            name: f.name.clone(),
            role: f.role.clone(),
            framework_id: f.id.clone(),
            launched: f.stats.launched,
            finished: f.stats.finished,
            lost: f.stats.lost,
            queued_at_end: f.queue.len() as u64,
            running_at_end: f.running,
            wait_ms: Percentiles::of(&mut w),
            mean_share: mean(
                samples
                    .iter()
                    .filter(|s| s.time_ms >= joined)
                    .filter_map(|s| s.shares.get(i).copied()),
            )
            .unwrap_or(0.0),
            final_share: samples
                .last()
                .and_then(|s| s.shares.get(i).copied())
                .unwrap_or(0.0),
            time_to_fair_share_s: f.fair_after_ms.map(|ms| ms as f64 / 1000.0),
            offers: f.stats.offers,
            declined: f.stats.declined,
        });
        offers += f.stats.offers;
        declined += f.stats.declined;
        limit_updates += f.stats.limit_updates;
        launched += f.stats.launched;
        finished += f.stats.finished;
        lost += f.stats.lost;
    }
    let m = sim.metrics();
    let per_role = m
        .roles
        .iter()
        .enumerate()
        .map(|(r, role)| RoleSummary {
            role: role.clone(),
            frameworks: m.role_of.iter().filter(|&&x| x == r).count(),
            mean_share: mean(samples.iter().filter_map(|s| s.role_shares.get(r).copied()))
                .unwrap_or(0.0),
            final_share: samples
                .last()
                .and_then(|s| s.role_shares.get(r).copied())
                .unwrap_or(0.0),
        })
        .collect();
    let fair: Vec<f64> = per_framework
        .iter()
        .filter_map(|f| f.time_to_fair_share_s)
        .collect();
    Summary {
        scenario: sim.scenario_name().to_string(),
        policy: sim.policy().name().to_string(),
        seed: sim.seed(),
        simulated_s: sim.end_ms() as f64 / 1000.0,
        agents: sim.agents().len(),
        frameworks: sim.frameworks().len(),
        tasks_launched: launched,
        tasks_finished: finished,
        tasks_lost: lost,
        wait_ms: Percentiles::of(&mut all_waits),
        offers,
        offers_declined: declined,
        decline_rate: if offers > 0 {
            declined as f64 / offers as f64
        } else {
            0.0
        },
        offers_per_launched_task: (launched > 0).then(|| offers as f64 / launched as f64),
        offer_limit_updates: limit_updates,
        jain_mean: mean(samples.iter().filter_map(|s| s.jain)),
        jain_min: samples.iter().filter_map(|s| s.jain).reduce(f64::min),
        max_min_ratio_mean: mean(samples.iter().filter_map(|s| s.max_min_ratio)),
        cpu_util_mean: mean(samples.iter().map(|s| s.cpu_util)).unwrap_or(0.0),
        mem_util_mean: mean(samples.iter().map(|s| s.mem_util)).unwrap_or(0.0),
        time_to_fair_share_mean_s: mean(fair.iter().copied()),
        frameworks_never_fair: per_framework.len() - fair.len(),
        allocation_cycles: sim.master().allocator().cycles(),
        counters: sim.counters().clone(),
        per_role,
        per_framework,
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.6}")).unwrap_or_default()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), SimError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| SimError::io(path, e))
}

/// Writes `summary.json`, `timeseries.csv`, `frameworks.csv`, `decisions.csv` (when
/// recorded), `timing.json` and, with `plots`, the SVG plots into `dir`.
pub fn write_outputs(sim: &Sim, dir: &Path, plots: bool) -> Result<Summary, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
    let summary = summarize(sim);
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write(dir, "summary.json", &(json + "\n"))?;
    let timing = serde_json::to_string_pretty(&sim.timing()).unwrap_or_default();
    write(dir, "timing.json", &(timing + "\n"))?;

    let m = sim.metrics();
    let mut ts = String::from("time_s,active,jain,max_min_ratio,cpu_util,mem_util,queued,running");
    for n in &m.names {
        let _ = write!(ts, ",{}", csv_field(&format!("share:{n}")));
    }
    for r in &m.roles {
        let _ = write!(ts, ",{}", csv_field(&format!("role:{r}")));
    }
    ts.push('\n');
    for s in &m.samples {
        let _ = write!(
            ts,
            "{:.3},{},{},{},{:.6},{:.6},{},{}",
            s.time_ms as f64 / 1000.0,
            s.active,
            opt(s.jain),
            opt(s.max_min_ratio),
            s.cpu_util,
            s.mem_util,
            s.queued,
            s.running
        );
        for x in s.shares.iter().chain(&s.role_shares) {
            let _ = write!(ts, ",{x:.6}");
        }
        ts.push('\n');
    }
    write(dir, "timeseries.csv", &ts)?;

    let mut fw = String::from(
        "name,role,framework_id,launched,finished,lost,queued_at_end,running_at_end,\
         wait_p50_ms,wait_p90_ms,wait_p99_ms,mean_share,final_share,time_to_fair_share_s,\
         offers,declined\n",
    );
    for f in &summary.per_framework {
        let _ = writeln!(
            fw,
            "{},{},{},{},{},{},{},{},{},{},{},{:.6},{:.6},{},{},{}",
            csv_field(&f.name),
            csv_field(&f.role),
            f.framework_id,
            f.launched,
            f.finished,
            f.lost,
            f.queued_at_end,
            f.running_at_end,
            f.wait_ms.p50,
            f.wait_ms.p90,
            f.wait_ms.p99,
            f.mean_share,
            f.final_share,
            opt(f.time_to_fair_share_s),
            f.offers,
            f.declined
        );
    }
    write(dir, "frameworks.csv", &fw)?;

    if let Some(log) = sim.decisions() {
        write(dir, "decisions.csv", &decisions_csv(log))?;
    }
    if plots {
        crate::plot::all(sim, dir)?;
    }
    Ok(summary)
}

/// The decision log as CSV (`time_ms,kind,framework_id,agent_id,offer_id,detail`).
pub fn decisions_csv(log: &[crate::engine::Decision]) -> String {
    let mut out = String::from("time_ms,kind,framework_id,agent_id,offer_id,detail\n");
    for d in log {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            d.time_ms,
            d.kind,
            d.framework_id,
            d.agent_id,
            d.offer_id,
            csv_field(&d.detail)
        );
    }
    out
}

fn f3(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// Rows of the side-by-side table: (label, value per summary).
pub fn rows(summaries: &[&Summary]) -> Vec<(String, Vec<String>)> {
    type Get = fn(&Summary) -> String;
    let metrics: Vec<(&str, Get)> = vec![
        ("policy", |s| s.policy.clone()),
        ("tasks launched", |s| s.tasks_launched.to_string()),
        ("tasks finished", |s| s.tasks_finished.to_string()),
        ("tasks lost", |s| s.tasks_lost.to_string()),
        ("wait p50 (s)", |s| format!("{:.3}", s.wait_ms.p50 / 1000.0)),
        ("wait p90 (s)", |s| format!("{:.3}", s.wait_ms.p90 / 1000.0)),
        ("wait p99 (s)", |s| format!("{:.3}", s.wait_ms.p99 / 1000.0)),
        ("Jain's index (mean)", |s| f3(s.jain_mean)),
        ("Jain's index (min)", |s| f3(s.jain_min)),
        ("max/min share (mean)", |s| f3(s.max_min_ratio_mean)),
        (
            "time to fair share (s)",
            |s| f3(s.time_to_fair_share_mean_s),
        ),
        ("never fair (frameworks)", |s| {
            s.frameworks_never_fair.to_string()
        }),
        ("cpu utilization", |s| format!("{:.3}", s.cpu_util_mean)),
        ("mem utilization", |s| format!("{:.3}", s.mem_util_mean)),
        ("offers", |s| s.offers.to_string()),
        ("offers per launched task", |s| {
            f3(s.offers_per_launched_task)
        }),
        ("decline rate", |s| format!("{:.3}", s.decline_rate)),
        ("offer limit updates", |s| s.offer_limit_updates.to_string()),
        ("allocation cycles", |s| s.allocation_cycles.to_string()),
        ("simulated events", |s| s.counters.events().to_string()),
    ];
    metrics
        .into_iter()
        .map(|(label, get)| {
            (
                label.to_string(),
                summaries.iter().map(|s| get(s)).collect(),
            )
        })
        .collect()
}

/// A plain-text table of summaries side by side.
pub fn table(summaries: &[&Summary]) -> String {
    let rows = rows(summaries);
    let w0 = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..summaries.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].len())
                .max()
                .unwrap_or(0)
                .max(8)
        })
        .collect();
    let mut out = String::new();
    for (label, vals) in rows {
        let _ = write!(out, "{label:<w0$}");
        for (v, w) in vals.iter().zip(&widths) {
            let _ = write!(out, "  {v:>w$}");
        }
        out.push('\n');
    }
    out
}

/// `x` as a fraction with a denominator up to 12 when it is one (to within 1e-9): `(2, 3)`
/// for 0.666…; `None` otherwise.
pub fn simple_fraction(x: f64) -> Option<(u32, u32)> {
    (1..=12u32).find_map(|d| {
        let n = (x * f64::from(d)).round();
        ((x * f64::from(d) - n).abs() < 1e-9 && n >= 0.0).then_some((n as u32, d))
    })
}

/// A share for people: "2/3", "1/2", "0", "1", or three decimals ("0.137").
pub fn share_text(x: f64) -> String {
    match simple_fraction(x) {
        Some((n, 1)) => n.to_string(),
        Some((n, d)) => format!("{n}/{d}"),
        None => format!("{x:.3}"),
    }
}

/// Frameworks named one by one in [`ending`]; with more, the largest shares and a count.
pub const ENDING_NAMED: usize = 4;

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [head @ .., last] => format!("{} and {last}", head.join(", ")),
    }
}

/// One line on how the run ended, from its summary: each framework's running tasks and
/// dominant share when there are at most [`ENDING_NAMED`] (the DRF paper example: "at the
/// end (30 s): A runs 3 tasks, B 2; dominant shares 2/3 and 2/3"), else the largest shares.
/// `simulated_s` and `fws` as in [`Summary`].
pub fn ending(simulated_s: f64, fws: &[FrameworkSummary]) -> String {
    let head = format!("at the end ({simulated_s} s):");
    if fws.is_empty() {
        return format!("{head} no frameworks");
    }
    if fws.len() <= ENDING_NAMED {
        let tasks: Vec<String> = fws
            .iter()
            .enumerate()
            .map(|(i, f)| match (i, f.running_at_end) {
                (0, 1) => format!("{} runs 1 task", f.name),
                (0, n) => format!("{} runs {n} tasks", f.name),
                (_, n) => format!("{} {n}", f.name),
            })
            .collect();
        let shares: Vec<String> = fws.iter().map(|f| share_text(f.final_share)).collect();
        let word = if fws.len() == 1 { "share" } else { "shares" };
        return format!(
            "{head} {}; dominant {word} {}",
            tasks.join(", "),
            list(&shares)
        );
    }
    let mut by_share: Vec<&FrameworkSummary> = fws.iter().collect();
    by_share.sort_by(|a, b| b.final_share.total_cmp(&a.final_share));
    let running: u64 = fws.iter().map(|f| u64::from(f.running_at_end)).sum();
    let largest: Vec<String> = by_share
        .iter()
        .take(3)
        .map(|f| {
            let share = share_text(f.final_share);
            format!("{} {share} ({} tasks)", f.name, f.running_at_end)
        })
        .collect();
    format!(
        "{head} {} frameworks run {running} tasks; largest dominant shares {}, {} more in \
         frameworks.csv",
        fws.len(),
        largest.join(", "),
        fws.len() - largest.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_share_text() {
        for (x, frac, text) in [
            (2.0 / 3.0, Some((2, 3)), "2/3"),
            (0.5, Some((1, 2)), "1/2"),
            (0.0, Some((0, 1)), "0"),
            (1.0, Some((1, 1)), "1"),
            (5.0 / 12.0, Some((5, 12)), "5/12"),
            (0.137, None, "0.137"),
            (1.0 / 13.0, None, "0.077"),
            (0.6666, None, "0.667"),
        ] {
            assert_eq!(simple_fraction(x), frac, "{x}");
            assert_eq!(share_text(x), text, "{x}");
        }
    }

    fn fw(name: &str, running: u32, share: f64) -> FrameworkSummary {
        FrameworkSummary {
            name: name.into(),
            role: "*".into(),
            framework_id: format!("id-{name}"),
            launched: u64::from(running),
            finished: 0,
            lost: 0,
            queued_at_end: 0,
            running_at_end: running,
            wait_ms: Percentiles::default(),
            mean_share: share,
            final_share: share,
            time_to_fair_share_s: None,
            offers: 0,
            declined: 0,
        }
    }

    #[test]
    fn ending_table() {
        let table: Vec<(f64, Vec<FrameworkSummary>, &str)> = vec![
            (30.0, vec![], "at the end (30 s): no frameworks"),
            (
                30.0,
                vec![fw("A", 3, 2.0 / 3.0), fw("B", 2, 2.0 / 3.0)],
                "at the end (30 s): A runs 3 tasks, B 2; dominant shares 2/3 and 2/3",
            ),
            (
                12.5,
                vec![fw("solo", 1, 0.25)],
                "at the end (12.5 s): solo runs 1 task; dominant share 1/4",
            ),
            (
                60.0,
                vec![fw("a", 1, 0.1), fw("b", 0, 0.0), fw("c", 4, 0.4)],
                "at the end (60 s): a runs 1 task, b 0, c 4; dominant shares 1/10, 0 and 2/5",
            ),
            (
                3600.0,
                (0..6)
                    .map(|i| fw(&format!("f{i}"), i, 0.011 * f64::from(i)))
                    .collect(),
                "at the end (3600 s): 6 frameworks run 15 tasks; largest dominant shares \
                 f5 0.055 (5 tasks), f4 0.044 (4 tasks), f3 0.033 (3 tasks), 3 more in \
                 frameworks.csv",
            ),
        ];
        for (s, fws, want) in table {
            assert_eq!(ending(s, &fws), want);
        }
    }
}
