//! `proffer sim`: run scenarios through the simulator, compare policies, generate synthetic
//! scenarios, and benchmark the simulator.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use proffer_sim::generate::{self, GenParams};
use proffer_sim::{Policy, Scenario, Sim, report};

/// Flags of `proffer sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Run a scenario; write CSV, JSON and SVG plots to --out and print a summary.
    Run(RunArgs),
    /// Run one scenario under several policies and print them side by side.
    Compare(CompareArgs),
    /// Write a synthetic scenario (agents, frameworks, churn) as TOML.
    Gen(GenArgs),
    /// Measure simulated events per second on generated clusters of several sizes.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Directory for the results.
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
    /// Allocation policy (overrides the scenario's): drf, wdrf, random.
    #[arg(long)]
    policy: Option<String>,
    /// Seed (overrides the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the decision log (every offer, launch and decline) to decisions.csv.
    #[arg(long)]
    decisions: bool,
    /// Skip the SVG plots.
    #[arg(long)]
    no_plots: bool,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// Comma-separated policies.
    #[arg(long, default_value = "drf,wdrf,random", value_delimiter = ',')]
    policies: Vec<String>,
    /// Directory for the results (one subdirectory per policy).
    #[arg(long, default_value = "sim-compare")]
    out: PathBuf,
    /// Seed (overrides the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Skip the SVG plots.
    #[arg(long)]
    no_plots: bool,
}

#[derive(Debug, clap::Args)]
struct GenArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 100)]
    agents: u32,
    /// Number of frameworks.
    #[arg(long, default_value_t = 10)]
    frameworks: u32,
    /// Simulated hours.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    hours: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No agent failures.
    #[arg(long)]
    no_churn: bool,
    /// Metric sampling interval in seconds.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true)]
    sample_interval: f64,
    #[command(flatten)]
    mix: MixArgs,
    /// Write here instead of stdout.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// How the generated frameworks behave (shared by `sim gen` and `sim bench`).
#[derive(Debug, clap::Args)]
struct MixArgs {
    /// Multiply task durations and divide arrival rates by this: the same load, less churn.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    task_time_scale: f64,
    /// Every framework holds at most this many offers at once (0 = no limit, as in Mesos).
    #[arg(long, default_value_t = generate::DEFAULT_OFFER_LIMIT)]
    max_outstanding_offers: u32,
    /// Frameworks ask for no minimum offer (by default each asks for at least one task's
    /// resources through `offer_filters`).
    #[arg(long)]
    no_min_offers: bool,
    /// Frameworks keep a fixed offer limit (by default each moves its limit with its queue
    /// through UPDATE_FRAMEWORK, up to --max-outstanding-offers).
    #[arg(long)]
    fixed_offer_limit: bool,
}

impl MixArgs {
    /// Generator parameters with these settings (the rest default), after checking them.
    fn params(&self) -> anyhow::Result<GenParams> {
        let scale = self.task_time_scale;
        positive_finite("--task-time-scale", scale)?;
        Ok(GenParams {
            task_time_scale: scale,
            max_outstanding_offers: self.max_outstanding_offers,
            min_offers: !self.no_min_offers,
            adaptive_offer_limit: !self.fixed_offer_limit,
            ..GenParams::default()
        })
    }
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Cluster sizes (agents), comma-separated.
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    agents: Vec<u32>,
    /// Frameworks in each run.
    #[arg(long, default_value_t = 100)]
    frameworks: u32,
    /// Simulated hours per run.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    hours: f64,
    /// Allocation policy.
    #[arg(long, default_value = "drf")]
    policy: String,
    #[command(flatten)]
    mix: MixArgs,
}

/// Runs `proffer sim …`.
pub fn run(args: SimArgs) -> anyhow::Result<bool> {
    match args.command {
        SimCommand::Run(a) => run_one(a),
        SimCommand::Compare(a) => compare(a),
        SimCommand::Gen(a) => gen_scenario(a),
        SimCommand::Bench(a) => bench(a),
    }
}

fn progress_bar(end_ms: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(end_ms / 1000);
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} simulated s ({eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

fn load(path: &std::path::Path, seed: Option<u64>) -> anyhow::Result<Scenario> {
    let mut s = Scenario::load(path)?;
    if let Some(seed) = seed {
        s.seed = seed;
    }
    Ok(s)
}

fn run_one(a: RunArgs) -> anyhow::Result<bool> {
    let mut s = load(&a.scenario, a.seed)?;
    if a.decisions {
        s.sim.record_decisions = true;
    }
    let policy = match &a.policy {
        Some(p) => Policy::parse(p)?,
        None => s.master.policy,
    };
    let mut sim = Sim::new(&s, policy)?;
    let bar = progress_bar(sim.end_ms(), policy.name());
    sim.run_with_progress(&mut |now, _| bar.set_position(now / 1000));
    bar.finish_and_clear();
    let summary = report::write_outputs(&sim, &a.out, !a.no_plots)
        .with_context(|| format!("writing results to {}", a.out.display()))?;
    let timing = sim.timing();
    crate::output::text(&report::table(&[&summary]));
    crate::output::text(&report::ending(summary.simulated_s, &summary.per_framework));
    crate::output::text(&format!(
        "wall {:.2} s, {:.0} simulated events/s, master tick (allocation cycle) p50 {} µs / \
         p99 {} µs; results in {}",
        timing.wall_s,
        timing.events_per_s,
        timing.tick_us.p50,
        timing.tick_us.p99,
        a.out.display()
    ));
    Ok(true)
}

fn compare(a: CompareArgs) -> anyhow::Result<bool> {
    let s = load(&a.scenario, a.seed)?;
    let policies = a
        .policies
        .iter()
        .map(|p| Policy::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let bar = progress_bar(s.duration_ms(), "");
    let summaries = proffer_sim::compare::compare(
        &s,
        &policies,
        Some(&a.out),
        !a.no_plots,
        &mut |p, now, _| {
            bar.set_prefix(p.name());
            bar.set_position(now / 1000);
        },
    )?;
    bar.finish_and_clear();
    crate::output::text(&report::table(&summaries.iter().collect::<Vec<_>>()));
    crate::output::text(&format!("results in {}", a.out.display()));
    Ok(true)
}

/// Checks a flag that must be a positive finite number.
fn positive_finite(flag: &str, value: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0,
        "{flag} must be a positive number, got {value}"
    );
    Ok(())
}

fn gen_scenario(a: GenArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(a.agents > 0, "--agents must be at least 1");
    positive_finite("--hours", a.hours)?;
    positive_finite("--sample-interval", a.sample_interval)?;
    let text = generate::scenario_toml(&GenParams {
        name: format!("synthetic-{}a-{}f", a.agents, a.frameworks),
        agents: a.agents,
        frameworks: a.frameworks,
        hours: a.hours,
        seed: a.seed,
        churn: !a.no_churn,
        sample_interval_s: a.sample_interval,
        ..a.mix.params()?
    });
    match a.out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => crate::output::text(&text),
    }
    Ok(true)
}

fn bench(a: BenchArgs) -> anyhow::Result<bool> {
    positive_finite("--hours", a.hours)?;
    anyhow::ensure!(
        a.agents.iter().all(|&n| n > 0),
        "--agents must be at least 1 each, got {:?}",
        a.agents
    );
    let policy = Policy::parse(&a.policy)?;
    let mix = a.mix.params()?;
    crate::output::text(&format!(
        "{:>8} {:>10} {:>6} {:>12} {:>9} {:>12} {:>10} {:>10} {:>9} {:>11}",
        "agents",
        "frameworks",
        "hours",
        "events",
        "wall s",
        "events/s",
        "tick p50",
        "tick p99",
        "launched",
        "offers/task"
    ));
    for &agents in &a.agents {
        let text = generate::scenario_toml(&GenParams {
            name: format!("bench-{agents}"),
            agents,
            frameworks: a.frameworks,
            hours: a.hours,
            seed: 1,
            churn: true,
            sample_interval_s: 60.0,
            ..mix.clone()
        });
        let s = Scenario::parse(&text, "bench.toml".as_ref())?;
        let mut sim = Sim::new(&s, policy)?;
        let bar = progress_bar(sim.end_ms(), &format!("{agents} agents"));
        sim.run_with_progress(&mut |now, _| bar.set_position(now / 1000));
        bar.finish_and_clear();
        let t = sim.timing();
        let summary = report::summarize(&sim);
        crate::output::text(&format!(
            "{:>8} {:>10} {:>6} {:>12} {:>9.2} {:>12.0} {:>8}µs {:>8}µs {:>9} {:>11.2}",
            agents,
            a.frameworks,
            a.hours,
            sim.counters().events(),
            t.wall_s,
            t.events_per_s,
            t.tick_us.p50,
            t.tick_us.p99,
            summary.tasks_launched,
            summary.offers_per_launched_task.unwrap_or(f64::NAN)
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(subcommand)]
        command: SimCommand,
    }

    fn parse(args: &[&str]) -> anyhow::Result<SimArgs> {
        let w = Wrap::try_parse_from(std::iter::once("sim").chain(args.iter().copied()))?;
        Ok(SimArgs { command: w.command })
    }

    fn scenario(name: &str) -> String {
        format!(
            "{}/../simulator/scenarios/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn run_writes_results() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("drf");
        let out_s = out.to_string_lossy().to_string();
        let args = parse(&[
            "run",
            &scenario("drf-paper.toml"),
            "--out",
            &out_s,
            "--no-plots",
        ])?;
        assert!(run(args)?);
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json"))?)?;
        assert_eq!(summary["tasks_launched"], 5);
        assert_eq!(summary["policy"], "drf");
        assert!(!out.join("shares.svg").exists());
        // A policy that does not exist is an error naming the ones that do.
        let args = parse(&[
            "run",
            &scenario("drf-paper.toml"),
            "--out",
            &out_s,
            "--policy",
            "fifo",
        ])?;
        let err = run(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("drf, wdrf, random"), "{err}");
        Ok(())
    }

    #[test]
    fn task_time_scale_must_be_positive() -> anyhow::Result<()> {
        for bad in ["0", "-2", "NaN"] {
            let flag = format!("--task-time-scale={bad}");
            let args = parse(&["bench", "--agents", "1", &flag])?;
            let err = run(args).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains("--task-time-scale must be a positive number"),
                "{err}"
            );
        }
        Ok(())
    }

    #[test]
    fn hours_and_intervals_must_be_positive_and_finite() -> anyhow::Result<()> {
        let table: &[(&[&str], &str)] = &[
            (
                &["gen", "--hours", "-1"],
                "--hours must be a positive number, got -1",
            ),
            (
                &["gen", "--hours", "inf"],
                "--hours must be a positive number, got inf",
            ),
            (
                &["gen", "--sample-interval", "0"],
                "--sample-interval must be a positive number",
            ),
            (
                &["gen", "--sample-interval", "NaN"],
                "--sample-interval must be a positive number",
            ),
            (
                &["bench", "--hours", "-2"],
                "--hours must be a positive number, got -2",
            ),
            (
                &["bench", "--hours", "NaN"],
                "--hours must be a positive number, got NaN",
            ),
            (&["bench", "--agents", "0"], "--agents must be at least 1"),
        ];
        for (args, want) in table {
            let err = run(parse(args)?)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{args:?}: `{err}` lacks `{want}`");
        }
        Ok(())
    }

    #[test]
    fn gen_writes_a_scenario_that_runs() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("g.toml");
        let file_s = file.to_string_lossy().to_string();
        let args = parse(&[
            "gen",
            "--agents",
            "5",
            "--frameworks",
            "5",
            "--hours",
            "0.05",
            "--out",
            &file_s,
        ])?;
        assert!(run(args)?);
        let s = Scenario::load(&file)?;
        assert_eq!(s.frameworks.len(), 5);
        let out = tmp.path().join("cmp").to_string_lossy().to_string();
        let args = parse(&[
            "compare",
            &file_s,
            "--policies",
            "drf,random",
            "--out",
            &out,
            "--no-plots",
        ])?;
        assert!(run(args)?);
        assert!(tmp.path().join("cmp/random/summary.json").is_file());
        Ok(())
    }
}
