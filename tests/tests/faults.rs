//! Fault injection on an in-process cluster with virtual time (see `proffer_tests::faults`):
//! connections break at seeded random moments, messages are delayed, agents vanish — and still
//! every task runs exactly once, every update is acknowledged, nothing is left behind. With a
//! registry the master also crashes at random points (between a persist batch and its
//! acknowledgement too) and recovers from what was written; messages are duplicated.
//!
//! With several masters (the HA profile) one leads at a time by a simulated etcd election:
//! leaders crash, lose their lease, are cut off from etcd, or are paused and resumed after a
//! new leader took over — and still no task is lost or run twice, no two masters act at once,
//! no stale write is accepted, and the cluster carries on.
//!
//! `PROFFER_FAULT_SEEDS=N` runs N seeds of the crash and HA profiles (default 1,000 and 300);
//! `PROFFER_FAULT_SEED=S` replays one; `PROFFER_FAULT_LOG=TEXT` prints a failed seed's log
//! lines mentioning TEXT.

use proffer_master_core::core::{MasterConfig, Timestamp};
use proffer_proto::v1::TaskState;
use proffer_tests::faults::{Cluster, Faults, HaFaults, HaStats};

/// Agents with a static reservation for a role no framework here has: the frameworks (role
/// `*`) must only ever be offered the unreserved part (issue 15: they were offered it twice).
const AGENT: &str = "cpus:3;cpus(web):1;mem:3072;mem(web):1024";
const FRAMEWORKS: [(usize, &str, u64); 3] = [
    (40, "cpus:0.5;mem:256", 6_000),
    (40, "cpus:1;mem:512", 8_000),
    (30, "cpus:0.25;mem:128", 4_000),
];

fn stormy(seed: u64) -> Cluster {
    let config = MasterConfig {
        allocation_interval_ms: 200,
        ..MasterConfig::default()
    };
    let faults = Faults {
        max_delay_ms: 60,
        agent_break: 0.05,
        framework_break: 0.03,
        until_ms: 60_000,
        ..Faults::none()
    };
    Cluster::new(seed, config, 5, AGENT, &FRAMEWORKS, faults)
}

/// Lets in-flight acknowledgements land after the frameworks are done.
fn settle(c: &mut Cluster) {
    let until = c.now() + 5_000;
    while c.now() < until {
        c.run_ticks(1);
    }
}

fn check_clean(c: &Cluster) {
    assert!(
        c.violations.is_empty(),
        "accounting broken {} times, first: {}",
        c.violations.len(),
        c.violations[0]
    );
    for (i, f) in c.frameworks.iter().enumerate() {
        assert!(
            f.done(),
            "framework {i} finished only {} tasks",
            f.finished()
        );
        assert!(f.conflicts.is_empty(), "framework {i}: {:?}", f.conflicts);
    }
    for a in &c.agents {
        for (key, n) in &a.starts {
            assert_eq!(*n, 1, "task {key:?} started {n} times on one agent");
        }
        assert!(
            a.quiet(),
            "agent {} still has unacknowledged updates",
            a.agent_id
        );
    }
    let snap = c.master().expect("a master").snapshot(Timestamp(c.now()));
    assert!(
        snap.tasks.iter().all(|t| t.state != "TASK_RUNNING"),
        "tasks still running: {:?}",
        snap.tasks
    );
}

#[test]
fn breaks_and_delays_lose_no_task_and_duplicate_none() {
    for seed in [1, 2, 3] {
        let mut c = stormy(seed);
        c.run(600_000);
        assert!(
            c.breaks > 20,
            "seed {seed}: only {} breaks injected",
            c.breaks
        );
        settle(&mut c);
        check_clean(&c);
        // No task started on two agents either.
        let mut seen = std::collections::BTreeSet::new();
        for a in &c.agents {
            for key in a.starts.keys() {
                assert!(seen.insert(key.clone()), "{key:?} ran on two agents");
            }
        }
        // Without agent removals (breaks are shorter than the ping timeout) the only tasks lost
        // are launches that never reached an agent (the ACCEPT or the RunTask died with a
        // broken connection): the master reports them LOST on reconciliation or re-registration,
        // and they never ran anywhere.
        for f in &c.frameworks {
            for (task, reason) in &f.lost_reasons {
                assert!(
                    reason == "REASON_RECONCILIATION" || reason == "REASON_TASK_UNKNOWN",
                    "seed {seed}: {task} lost for {reason}"
                );
                assert!(
                    !seen.iter().any(|(_, t)| t == task),
                    "seed {seed}: {task} ran but was reported lost"
                );
            }
        }
        assert!(c.frameworks.iter().all(|f| {
            f.terminal
                .values()
                .all(|s| matches!(s, TaskState::TaskFinished | TaskState::TaskLost))
        }));
    }
}

#[test]
fn a_vanished_agent_has_its_tasks_lost_and_redone_elsewhere() {
    let config = MasterConfig {
        allocation_interval_ms: 200,
        agent_ping_interval_ms: 500,
        agent_max_missed_pings: 3,
        ..MasterConfig::default()
    };
    let faults = Faults {
        max_delay_ms: 20,
        agent_break: 0.0,
        framework_break: 0.0,
        until_ms: 0,
        ..Faults::none()
    };
    let mut c = Cluster::new(
        9,
        config,
        4,
        AGENT,
        &[(60, "cpus:0.5;mem:256", 10_000)],
        faults,
    );
    c.run_ticks(150); // 3 s: tasks are running everywhere
    let running_on_0 = c.agents[0].starts.len();
    assert!(running_on_0 > 0);
    c.vanish_agent(0);
    c.run(600_000);
    settle(&mut c);
    let f = &c.frameworks[0];
    assert!(f.done(), "finished {}", f.finished());
    let lost = f
        .terminal
        .values()
        .filter(|s| **s == TaskState::TaskLost)
        .count();
    assert_eq!(
        lost, running_on_0,
        "exactly the vanished agent's tasks were lost"
    );
    assert!(f.conflicts.is_empty(), "{:?}", f.conflicts);
    assert!(c.violations.is_empty(), "{:?}", c.violations.first());
    let snap = c.master().expect("a master").snapshot(Timestamp(c.now()));
    let states: Vec<&str> = snap.agents.iter().map(|a| a.state.as_str()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "unreachable").count(),
        1,
        "the vanished agent is unreachable: {states:?}"
    );
    assert_eq!(states.iter().filter(|s| **s == "active").count(), 3);
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut c = stormy(seed);
        c.run(120_000);
        c.log
    };
    let a = run(5);
    assert!(a.len() > 1_000);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}

/// One run of the crash profile: 3 agents with a reservation nobody uses, 2 frameworks of 8
/// short tasks, connection breaks, duplicated messages, master crashes; then a settle.
fn crash_run(seed: u64) -> Cluster {
    let config = MasterConfig {
        allocation_interval_ms: 200,
        agent_ping_interval_ms: 1_000,
        agent_max_missed_pings: 5,
        agent_reregister_timeout_ms: 20_000,
        ..MasterConfig::default()
    };
    let faults = Faults {
        max_delay_ms: 40,
        agent_break: 0.01,
        framework_break: 0.01,
        until_ms: 15_000,
        master_crash: 0.006,
        duplicate: 0.05,
        agent_outage: 0.002,
    };
    let mut c = Cluster::with_registry(
        seed,
        config,
        3,
        AGENT,
        &[(8, "cpus:0.5;mem:256", 1_500), (8, "cpus:1;mem:512", 2_500)],
        faults,
    );
    // One framework is partition-aware, the other is not.
    c.frameworks[0].partition_aware = true;
    c.run(120_000);
    // Settle: until every agent's updates are acknowledged (bounded: 60 s more).
    let until = c.now() + 60_000;
    settle(&mut c);
    while c.now() < until && !c.agents.iter().all(|a| a.quiet()) {
        c.run_ticks(1);
    }
    c
}

/// Everything a crash run must hold; the error names the seed and how to replay it.
fn check_crash_run(seed: u64, c: &Cluster, test: &str) -> Result<(), String> {
    let replay = format!(
        "replay: PROFFER_FAULT_SEED={seed} cargo test -p proffer-tests --test faults {test} -- --nocapture"
    );
    let fail = |what: String| Err(format!("seed {seed}: {what}\n{replay}"));
    if let Some(v) = c.violations.first() {
        return fail(format!("invariant broken: {v}"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &c.agents {
        for (key, n) in &a.starts {
            if *n != 1 || !seen.insert(key.clone()) {
                return fail(format!("task {key:?} started more than once"));
            }
        }
        if !a.quiet() {
            return fail(format!(
                "agent {} has unacknowledged updates {:?} at {} ms (registered: {})",
                a.agent_id,
                a.unacked(),
                c.now(),
                a.conn.is_some()
            ));
        }
    }
    for (i, f) in c.frameworks.iter().enumerate() {
        if !f.done() {
            return fail(format!(
                "framework {i} finished only {} tasks; waiting for {:?}; ended {:?}; unknown {:?}",
                f.finished(),
                f.pending_tasks(),
                f.terminal,
                f.unknown
            ));
        }
        if !f.conflicts.is_empty() {
            return fail(format!("framework {i}: {:?}", f.conflicts));
        }
        for (task, reason) in &f.lost_reasons {
            if seen.iter().any(|(_, t)| t == task) && reason != "REASON_AGENT_UNREACHABLE" {
                return fail(format!("{task} ran but was reported lost ({reason})"));
            }
        }
        for task in &f.unknown {
            if seen.iter().any(|(_, t)| t == task) {
                return fail(format!("{task} ran but was reported unknown"));
            }
        }
    }
    let registry = c
        .registry
        .as_ref()
        .map(|r| r.contents())
        .unwrap_or_default();
    let Some(master) = c.master() else {
        return fail("no master holds a core".into());
    };
    if let Err(e) = master.check_registry(&registry) {
        return fail(e.to_string());
    }
    Ok(())
}

/// The seeds to run: `PROFFER_FAULT_SEED` alone, or 1..=`PROFFER_FAULT_SEEDS` (`default`).
fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("PROFFER_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("PROFFER_FAULT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("PROFFER_FAULT_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(default);
            (1..=n).collect()
        }
    }
}

/// With `PROFFER_FAULT_LOG=TEXT`, prints the log lines of a failed run mentioning TEXT, and
/// the master crashes, elections and step-downs.
fn print_log(c: &Cluster) {
    if let Ok(needle) = std::env::var("PROFFER_FAULT_LOG") {
        for line in c.log.iter().filter(|l| {
            l.contains(&needle)
                || l.contains("crash")
                || (l.contains(" master ") && !l.contains("->"))
        }) {
            println!("{}", &line[..line.len().min(400)]);
        }
    }
}

#[test]
fn master_crashes_lose_no_task_and_run_none_twice() {
    let seeds = seeds(1_000);
    let mut crashes = 0;
    let mut failures = Vec::new();
    for &seed in &seeds {
        let c = crash_run(seed);
        crashes += c.master_crashes;
        if let Err(e) = check_crash_run(seed, &c, "master_crashes") {
            print_log(&c);
            failures.push(e);
        }
    }
    println!(
        "{} seeds, {crashes} master crashes, {} failed",
        seeds.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    if seeds.len() >= 100 {
        assert!(
            crashes as usize >= seeds.len() / 2,
            "only {crashes} crashes over {} seeds",
            seeds.len()
        );
    }
}

/// One run of the HA profile: 2 or 3 masters (by the seed), 3 agents, 2 frameworks with more
/// work than fits in the 20 s fault window; leader faults, connection breaks, duplicates; then
/// a settle.
fn ha_run(seed: u64) -> Cluster {
    let config = MasterConfig {
        allocation_interval_ms: 200,
        agent_ping_interval_ms: 1_000,
        agent_max_missed_pings: 5,
        agent_reregister_timeout_ms: 20_000,
        framework_heartbeat_interval_ms: 1_000,
        ..MasterConfig::default()
    };
    let faults = Faults {
        max_delay_ms: 40,
        agent_break: 0.004,
        framework_break: 0.004,
        until_ms: 20_000,
        duplicate: 0.02,
        ..Faults::none()
    };
    let ha = HaFaults {
        masters: 2 + (seed % 2) as usize,
        leader_fault: 0.004,
        silence_ms: 4_000,
    };
    let mut c = Cluster::with_ha(
        seed,
        config,
        ha,
        3,
        AGENT,
        &[
            (20, "cpus:0.5;mem:256", 3_000),
            (16, "cpus:1;mem:512", 4_000),
        ],
        faults,
    );
    c.frameworks[0].partition_aware = true;
    c.run(180_000);
    // Until every fault is over, every master runs and one leads (the last fault ends by
    // 28 s); then a settle.
    while !c.ha_calm() && c.now() < 60_000 {
        c.run_ticks(1);
    }
    let until = c.now() + 60_000;
    settle(&mut c);
    while c.now() < until && !c.agents.iter().all(|a| a.quiet()) {
        c.run_ticks(1);
    }
    c
}

/// The crash profile's checks, plus: a master leads at the end, and every failover while work
/// remained was followed by a finished task within 30 s.
fn check_ha_run(seed: u64, c: &Cluster) -> Result<(), String> {
    check_crash_run(seed, c, "ha_failovers")?;
    let replay = format!(
        "replay: PROFFER_FAULT_SEED={seed} cargo test -p proffer-tests --test faults ha_failovers -- --nocapture"
    );
    let now = c.now();
    if !c.masters.iter().any(|m| m.acting(now)) {
        return Err(format!("seed {seed}: no master leads at the end\n{replay}"));
    }
    let stats = c.ha_stats().cloned().unwrap_or_default();
    if stats.max_failover_to_finish_ms > 30_000 {
        return Err(format!(
            "seed {seed}: {} ms from a failover to the next finished task\n{replay}",
            stats.max_failover_to_finish_ms
        ));
    }
    Ok(())
}

/// Adds one run's HA statistics to `total`.
fn add_stats(total: &mut HaStats, s: &HaStats) {
    total.crashes += s.crashes;
    total.lease_losses += s.lease_losses;
    total.partitions += s.partitions;
    total.pauses += s.pauses;
    total.deposed_resumes += s.deposed_resumes;
    total.elections += s.elections;
    total.deadline_step_downs += s.deadline_step_downs;
    total.fence_step_downs += s.fence_step_downs;
    total.refused_writes += s.refused_writes;
    total.unsent += s.unsent;
    total.silences += s.silences;
    total.failovers.extend(s.failovers.iter().copied());
    total.max_failover_to_finish_ms = total
        .max_failover_to_finish_ms
        .max(s.max_failover_to_finish_ms);
}

#[test]
fn ha_failovers_lose_no_task_and_never_two_leaders() {
    let seeds = seeds(300);
    let started = std::time::Instant::now();
    let mut total = HaStats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        let c = ha_run(seed);
        if let Some(s) = c.ha_stats() {
            add_stats(&mut total, s);
        }
        if let Err(e) = check_ha_run(seed, &c) {
            print_log(&c);
            failures.push(e);
        }
    }
    println!(
        "{} HA seeds in {:.1} s: {} leader crashes, {} lease losses, {} etcd partitions, {} pauses \
         ({} resumed deposed); {} elections, {} step-downs by deadline, {} by a refused write, \
         {} writes refused by the fence, {} messages left unsent, {} silent connections given up; \
         longest failover to next finished task {} ms; {} failed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        total.crashes,
        total.lease_losses,
        total.partitions,
        total.pauses,
        total.deposed_resumes,
        total.elections,
        total.deadline_step_downs,
        total.fence_step_downs,
        total.refused_writes,
        total.unsent,
        total.silences,
        total.max_failover_to_finish_ms,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    if seeds.len() >= 100 {
        let n = seeds.len() as u32 / 10;
        for (what, count) in [
            ("leader crashes", total.crashes),
            ("lease losses", total.lease_losses),
            ("etcd partitions", total.partitions),
            ("pauses", total.pauses),
            ("deposed leaders resumed", total.deposed_resumes),
            ("step-downs by deadline", total.deadline_step_downs),
        ] {
            assert!(count >= n, "only {count} {what} over {} seeds", seeds.len());
        }
        assert!(total.refused_writes > 0, "the fence never refused a write");
    }
}

#[test]
fn ha_same_seed_same_run() {
    // Seed 3: a leader paused and deposed, a crash, three elections.
    let a = ha_run(3);
    assert!(a.log.len() > 500, "only {} lines", a.log.len());
    for what in [
        "paused",
        "resumes",
        "steps down",
        "crashes",
        "leads with epoch 6",
    ] {
        assert!(
            a.log.iter().any(|l| l.contains(what)),
            "no {what:?} in the log"
        );
    }
    assert_eq!(a.log, ha_run(3).log);
    assert_ne!(a.log, ha_run(4).log);
}
