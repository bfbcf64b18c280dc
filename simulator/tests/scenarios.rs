//! Whole runs of the shipped scenarios through the real master core.

use std::path::{Path, PathBuf};

use proffer_sim::{Policy, Scenario, Sim, report};

fn scenario(name: &str) -> anyhow::Result<Scenario> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Ok(Scenario::load(&path)?)
}

#[test]
fn drf_paper_example() -> anyhow::Result<()> {
    let s = scenario("drf-paper.toml")?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    let fws = sim.frameworks();
    let a = fws
        .iter()
        .find(|f| f.name == "A")
        .ok_or_else(|| anyhow::anyhow!("no A"))?;
    let b = fws
        .iter()
        .find(|f| f.name == "B")
        .ok_or_else(|| anyhow::anyhow!("no B"))?;
    assert_eq!((a.running, b.running), (3, 2), "A runs 3 tasks, B runs 2");
    // A: 3 × <1 CPU, 4 GB> = <3 CPU, 12 GB>; B: 2 × <3 CPU, 1 GB> = <6 CPU, 2 GB>.
    assert_eq!((a.used_cpus, a.used_mem), (3_000, 12_288_000));
    assert_eq!((b.used_cpus, b.used_mem), (6_000, 2_048_000));
    let (sa, sb) = (a.share(9_000, 18_432_000), b.share(9_000, 18_432_000));
    assert!(
        (sa - 2.0 / 3.0).abs() < 1e-9 && (sb - 2.0 / 3.0).abs() < 1e-9,
        "{sa} {sb}"
    );
    // The allocator's own view agrees (nothing else is outstanding at the end but offers of
    // the 4 GB left over, which neither can use).
    let summary = report::summarize(&sim);
    assert_eq!(summary.tasks_launched, 5);
    assert_eq!(summary.counters.master_errors, 0);
    assert!(summary.jain_min.is_some());
    // What `proffer sim run` prints about the end, computed from the run.
    assert_eq!(
        report::ending(summary.simulated_s, &summary.per_framework),
        "at the end (30 s): A runs 3 tasks, B 2; dominant shares 2/3 and 2/3"
    );
    // The progressive filling order: A, B, A, B, A.
    let launches: Vec<&str> = sim
        .decisions()
        .unwrap_or_default()
        .iter()
        .filter(|d| d.kind == "launch")
        .map(|d| if d.framework_id == a.id { "A" } else { "B" })
        .collect();
    assert_eq!(launches, ["A", "B", "A", "B", "A"]);
    Ok(())
}

fn run_into(s: &Scenario, dir: &Path) -> anyhow::Result<()> {
    let mut sim = Sim::new(s, s.master.policy)?;
    sim.run();
    report::write_outputs(&sim, dir, true)?;
    Ok(())
}

/// Every output file except `timing.json` (wall-clock figures).
fn outputs(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name != "timing.json" {
            files.push((name, std::fs::read(entry.path())?));
        }
    }
    files.sort();
    Ok(files)
}

#[test]
fn same_seed_same_files_different_seed_different_run() -> anyhow::Result<()> {
    let mut s = scenario("mixed.toml")?;
    s.sim.record_decisions = true;
    let tmp = tempfile::tempdir()?;
    let (d1, d2, d3) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    run_into(&s, &d1)?;
    run_into(&s, &d2)?;
    let (o1, o2) = (outputs(&d1)?, outputs(&d2)?);
    let names: Vec<&str> = o1.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "decisions.csv",
            "frameworks.csv",
            "shares.svg",
            "summary.json",
            "timeseries.csv",
            "utilization.svg",
            "wait_cdf.svg"
        ]
    );
    for ((n1, b1), (_, b2)) in o1.iter().zip(&o2) {
        assert!(b1 == b2, "{n1} differs between two runs with the same seed");
    }
    s.seed += 1;
    run_into(&s, &d3)?;
    let o3 = outputs(&d3)?;
    let get =
        |o: &[(String, Vec<u8>)], n: &str| o.iter().find(|(x, _)| x == n).map(|(_, b)| b.clone());
    assert_ne!(get(&o1, "decisions.csv"), get(&o3, "decisions.csv"));
    assert_ne!(get(&o1, "summary.json"), get(&o3, "summary.json"));
    Ok(())
}

#[test]
fn mixed_workload_exercises_every_behaviour() -> anyhow::Result<()> {
    let s = scenario("mixed.toml")?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    let summary = report::summarize(&sim);
    assert_eq!(summary.counters.master_errors, 0, "{summary:#?}");
    for f in &summary.per_framework {
        assert!(f.launched > 0, "{} launched nothing", f.name);
    }
    // Finished tasks were acknowledged and retired: the master holds only live ones.
    let live: u64 = summary
        .per_framework
        .iter()
        .map(|f| u64::from(f.running_at_end))
        .sum();
    assert!(summary.tasks_finished > 100);
    assert!(live > 0);
    // Picky declines, hoarding holds: some offers were declined outright.
    let picky = summary
        .per_framework
        .iter()
        .find(|f| f.name == "analytics")
        .ok_or_else(|| anyhow::anyhow!("no analytics"))?;
    assert!(picky.declined > 0);
    // Its constraint (`kind:big`) holds: it launched only on the four big agents.
    let mut s2 = s.clone();
    s2.sim.record_decisions = true;
    let mut sim2 = Sim::new(&s2, Policy::Drf)?;
    sim2.run();
    let big: Vec<&str> = sim2
        .agents()
        .iter()
        .filter(|a| a.group == 1)
        .map(|a| a.id.as_str())
        .collect();
    let analytics = sim2
        .frameworks()
        .iter()
        .find(|f| f.name == "analytics")
        .map(|f| f.id.clone())
        .unwrap_or_default();
    let launches: Vec<_> = sim2
        .decisions()
        .unwrap_or_default()
        .iter()
        .filter(|d| d.kind == "launch" && d.framework_id == analytics)
        .collect();
    assert!(!launches.is_empty());
    assert!(launches.iter().all(|d| big.contains(&d.agent_id.as_str())));
    // Churn: agents failed, so some tasks were lost and re-queued.
    assert!(summary.tasks_lost > 0, "{summary:#?}");
    assert!(summary.cpu_util_mean > 0.1 && summary.cpu_util_mean <= 1.0);
    // Per-role shares: the `service` role holds exactly what its one framework holds.
    let roles: Vec<&str> = summary.per_role.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(roles, ["*", "service"]);
    let service = summary
        .per_framework
        .iter()
        .find(|f| f.name == "service")
        .ok_or_else(|| anyhow::anyhow!("no service"))?;
    assert!((summary.per_role[1].final_share - service.final_share).abs() < 1e-12);
    assert!(summary.per_role[0].mean_share > 0.0);
    Ok(())
}

#[test]
fn compare_runs_each_policy_on_the_same_workload() -> anyhow::Result<()> {
    let s = scenario("mixed.toml")?;
    let tmp = tempfile::tempdir()?;
    let policies = [Policy::Drf, Policy::WeightedDrf, Policy::Random];
    let mut seen = Vec::new();
    let summaries =
        proffer_sim::compare::compare(&s, &policies, Some(tmp.path()), true, &mut |p, _, _| {
            if seen.last() != Some(&p) {
                seen.push(p)
            }
        })?;
    assert_eq!(seen, policies);
    let names: Vec<&str> = summaries.iter().map(|s| s.policy.as_str()).collect();
    assert_eq!(names, ["drf", "wdrf", "random"]);
    // The same workload: every run had the same frameworks and agents …
    assert!(
        summaries
            .iter()
            .all(|x| x.frameworks == 4 && x.agents == 20)
    );
    // … but the policies decided differently (weights matter for wdrf: `service` has weight 3).
    assert_ne!(summaries[0].offers, summaries[2].offers);
    assert_ne!(summaries[0].tasks_launched, summaries[1].tasks_launched);
    for f in [
        "compare.txt",
        "compare.json",
        "compare_jain.svg",
        "compare_wait_cdf.svg",
        "drf/summary.json",
        "random/timeseries.csv",
    ] {
        assert!(tmp.path().join(f).is_file(), "{f} missing");
    }
    let err = Policy::parse("fifo")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("fifo") && err.contains("drf, wdrf, random"),
        "{err}"
    );
    Ok(())
}

/// Runs scenario `text` (named `name` in errors) under DRF and summarizes it.
fn run_text(text: &str, name: &str) -> anyhow::Result<report::Summary> {
    let s = Scenario::parse(text, name.as_ref())?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    Ok(report::summarize(&sim))
}

/// `max_outstanding_offers` in a scenario reaches the master: a greedy framework with little
/// work is sent at most that many offers per cycle instead of one per agent, and still runs
/// everything it has.
#[test]
fn offer_limit_cuts_offers_not_launches() -> anyhow::Result<()> {
    let run = |limit: u32| -> anyhow::Result<report::Summary> {
        let text = format!(
            "duration_s = 60\n\
             [[agents]]\ncount = 200\nresources = \"cpus:4;mem:8192\"\n\
             [[frameworks]]\nname = \"few\"\ntask = \"cpus:1;mem:512\"\ntasks = 3\n\
             max_outstanding_offers = {limit}\nrefuse_s = 5\nsuppress_when_idle = false\n\
             arrivals = {{ process = \"poisson\", rate_per_s = 0.5 }}\n\
             duration = {{ dist = \"constant\", value_s = 10 }}\n"
        );
        run_text(&text, "limit.toml")
    };
    let unlimited = run(0)?;
    let limited = run(2)?;
    assert_eq!(
        limited.tasks_launched, unlimited.tasks_launched,
        "same work done"
    );
    assert!(limited.tasks_launched > 3, "arrivals ran too");
    // Unlimited: every agent is offered and (but for one) declined every 5 s.
    assert!(unlimited.offers > 1_000, "{}", unlimited.offers);
    // Limited: at most 2 per cycle (60 cycles).
    assert!(limited.offers <= 2 * 61, "{}", limited.offers);
    Ok(())
}

/// `adaptive_offer_limit`: a framework moves its offer limit with its queue (UPDATE_FRAMEWORK
/// calls through the real master) and so declines far fewer offers than with a fixed limit,
/// while running the same work.
#[test]
fn adaptive_offer_limit_follows_the_queue() -> anyhow::Result<()> {
    let run = |adaptive: bool| -> anyhow::Result<report::Summary> {
        let text = format!(
            "duration_s = 120\n\
             [[agents]]\ncount = 200\nresources = \"cpus:4;mem:8192\"\n\
             [[frameworks]]\nname = \"bursty\"\ntask = \"cpus:1;mem:512\"\ntasks = 40\n\
             max_outstanding_offers = 16\nadaptive_offer_limit = {adaptive}\nrefuse_s = 5\n\
             arrivals = {{ process = \"poisson\", rate_per_s = 0.5 }}\n\
             duration = {{ dist = \"constant\", value_s = 10 }}\n"
        );
        run_text(&text, "adaptive.toml")
    };
    let fixed = run(false)?;
    let adaptive = run(true)?;
    assert_eq!(fixed.offer_limit_updates, 0);
    assert!(adaptive.offer_limit_updates > 0, "it sent updates");
    assert_eq!(adaptive.tasks_launched, fixed.tasks_launched, "same work");
    assert!(
        adaptive.offers_declined * 2 < fixed.offers_declined,
        "adaptive {} declines, fixed {}",
        adaptive.offers_declined,
        fixed.offers_declined
    );
    // Bad input: an adaptive limit needs a cap.
    let err = Scenario::parse(
        "duration_s = 1\n[[agents]]\ncount = 1\nresources = \"cpus:1;mem:1024\"\n\
         [[frameworks]]\nname = \"x\"\ntask = \"cpus:1;mem:512\"\nadaptive_offer_limit = true\n",
        "bad.toml".as_ref(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("bad.toml") && err.contains("max_outstanding_offers"),
        "{err}"
    );
    Ok(())
}

/// Found by the scenario fuzz target: times far in the future (an agent down for about 10^16
/// s on average, a hoarding framework holding offers 10^300 s, arrivals 10^300 s apart)
/// overflowed `now + delay` in the engine (a panic in debug builds, a wrap to the past in
/// release ones). Such events now land at the end of time, after the run.
#[test]
fn regression_delays_beyond_the_end_of_time_do_not_overflow() -> anyhow::Result<()> {
    let text = "duration_s = 2\n\n[[agents]]\nresources = \"cpus:4;mem:4096\"\n\n[agents.churn]\nmean_downtime_s = 15270213574308943\nmean_uptime_s = 0.5\n\n[[frameworks]]\nname = \"h\"\nbehaviour = \"hoarding\"\nhold_s = 1e300\ntask = \"cpus:1;mem:64\"\narrivals = { process = \"poisson\", rate_per_s = 1e-300 }\n";
    let s = Scenario::parse(text, Path::new("overflow.toml"))?;
    let mut sim = Sim::new(&s, Policy::Drf)?;
    sim.run();
    assert_eq!(sim.now_ms(), 2_000);
    Ok(())
}

/// Short tasks on a master ticked every millisecond, with and without offer coalescing.
fn short_tasks(coalesce_ms: u64) -> anyhow::Result<Scenario> {
    let text = format!(
        r#"
name = "short-tasks"
seed = 3
duration_s = 8

[master]
offer_coalesce_ms = {coalesce_ms}

[sim]
tick_ms = 1
sample_interval_s = 5
record_decisions = true

[[agents]]
count = 4
resources = "cpus:4;mem:4096"

[[frameworks]]
name = "short"
task = "cpus:1;mem:256"
tasks = 2000
duration = {{ dist = "exponential", mean_s = 0.05 }}

[[frameworks]]
name = "other"
task = "cpus:1;mem:256"
tasks = 2000
duration = {{ dist = "exponential", mean_s = 0.08 }}
"#
    );
    Ok(Scenario::parse(&text, "short-tasks.toml".as_ref())?)
}

fn decisions(s: &Scenario) -> anyhow::Result<Vec<String>> {
    let mut sim = Sim::new(s, s.master.policy)?;
    sim.run();
    Ok(sim
        .decisions()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {} {} {}",
                d.time_ms, d.kind, d.framework_id, d.agent_id, d.offer_id, d.detail
            )
        })
        .collect())
}

#[test]
fn offer_coalescing_is_deterministic_and_gathers_freed_slots() -> anyhow::Result<()> {
    let coalesced = short_tasks(3)?;
    let (a, b) = (decisions(&coalesced)?, decisions(&coalesced)?);
    assert!(!a.is_empty());
    assert_eq!(
        a, b,
        "the same scenario gives the same decisions run to run"
    );
    let at_once = decisions(&short_tasks(0)?)?;
    let offers = |d: &[String]| d.len();
    assert!(
        offers(&a) < offers(&at_once),
        "a 3 ms window made {} decisions, none made {}",
        offers(&a),
        offers(&at_once)
    );
    Ok(())
}
