//! Registry benchmarks (prints figures; `cargo bench -p proffer-master --bench registry`):
//! 1. redb write throughput and latency percentiles for batches of agent-sized records, side by
//!    side with the in-memory backend (the cost of the core's bookkeeping alone);
//! 2. restart of a master whose registry holds 10,000 agents and 1,000 frameworks: load the
//!    redb file, recover the core, take 10,000 agent re-registrations (through the core, no
//!    network) and run the first full allocation cycle.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use proffer_master::core::{ConnId, Input, Master, MasterConfig, Output, Timestamp};
use proffer_master::registry::{MemoryRegistry, RedbRegistry, Registry, RegistryOp, Table};
use proffer_proto::Resources;
use proffer_proto::v1::{self, agent_message::Msg as AIn};

const AGENTS: usize = 10_000;
const FRAMEWORKS: usize = 1_000;
const AGENT_RES: &str = "cpus:16;mem:65536;disk:100000;ports:[31000-32000]";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// Commits `batches` batches of `per_batch` records of ~`bytes` bytes; prints the figures.
fn writes(name: &str, reg: &mut dyn Registry, batches: usize, per_batch: usize, bytes: usize) {
    let value = vec![0x5a; bytes];
    let mut lat = Vec::with_capacity(batches);
    let start = Instant::now();
    for b in 0..batches {
        let ops: Vec<RegistryOp> = (0..per_batch)
            .map(|i| RegistryOp {
                table: Table::Agents,
                key: format!("agent-{:06}", (b * per_batch + i) % 20_000),
                value: Some(value.clone()),
            })
            .collect();
        let t = Instant::now();
        if let Err(e) = reg.commit(&ops) {
            eprintln!("{name}: commit failed: {e}");
            return;
        }
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort_unstable();
    println!(
        "registry/{name}/batch={per_batch}: {:.0} commits/s, {:.0} records/s, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        batches as f64 / total.as_secs_f64(),
        (batches * per_batch) as f64 / total.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        percentile(&lat, 1.0).as_secs_f64() * 1e3,
    );
}

fn agent_msg(id: &str, host: usize, reregister: bool) -> v1::AgentMessage {
    let info = v1::AgentInfo {
        id: id.to_string(),
        hostname: format!("host-{host:05}"),
        port: 5051,
        resources: Resources::parse(AGENT_RES).unwrap_or_default().to_proto(),
        ..Default::default()
    };
    let msg = if reregister {
        AIn::Reregister(v1::ReregisterAgent {
            info: Some(info),
            tasks: Vec::new(),
        })
    } else {
        AIn::Register(v1::RegisterAgent { info: Some(info) })
    };
    v1::AgentMessage { msg: Some(msg) }
}

/// Feeds the master's persist batches to `reg` (acknowledging them); returns agent ids seen.
fn pump(m: &mut Master, reg: &mut dyn Registry, now: Timestamp, ids: &mut Vec<String>) {
    loop {
        let mut acked = false;
        for out in m.take_outbox() {
            match out {
                Output::Persist { seq, ops } => {
                    if let Err(e) = reg.commit(&ops) {
                        eprintln!("commit failed: {e}");
                        return;
                    }
                    let _ = m.handle(now, Input::Persisted { seq });
                    acked = true;
                }
                Output::ToAgent { msg, .. } => {
                    if let Some(v1::master_message::Msg::Registered(r)) = msg.msg {
                        ids.push(r.agent_id);
                    }
                }
                Output::ToFramework { event, .. } => {
                    if let Some(v1::event::Event::Subscribed(s)) = event.event {
                        ids.push(s.framework_id);
                    }
                }
                _ => {}
            }
        }
        if !acked {
            break;
        }
    }
}

/// A redb registry with `AGENTS` agents and `FRAMEWORKS` frameworks, made through the core;
/// returns (agent ids, framework ids).
fn populate(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let mut reg = match RedbRegistry::open(dir) {
        Ok(r) => r,
        Err(e) => panic!("open: {e}"),
    };
    let stored = reg.load().unwrap_or_default();
    let mut m = match Master::recover(MasterConfig::default(), 1, &stored, Timestamp(0)) {
        Ok(m) => m,
        Err(e) => panic!("recover: {e}"),
    };
    let mut ids = Vec::new();
    let now = Timestamp(1);
    for chunk in 0..AGENTS / 500 {
        for i in chunk * 500..(chunk + 1) * 500 {
            let _ = m.handle(
                now,
                Input::Agent {
                    conn: i as ConnId + 1,
                    msg: agent_msg("", i, false),
                },
            );
        }
        pump(&mut m, &mut reg, now, &mut ids);
    }
    for f in 0..FRAMEWORKS {
        let info = v1::FrameworkInfo {
            name: format!("fw-{f}"),
            failover_timeout: 86_400.0,
            ..Default::default()
        };
        let _ = m.handle(
            now,
            Input::Subscribe {
                conn: 1_000_000 + f as ConnId,
                info: Box::new(info),
            },
        );
    }
    let mut fws = Vec::new();
    pump(&mut m, &mut reg, now, &mut fws);
    (ids, fws)
}

fn restart(dir: &std::path::Path, ids: &[String], fws: &[String]) {
    let t0 = Instant::now();
    let mut reg = match RedbRegistry::open(dir) {
        Ok(r) => r,
        Err(e) => panic!("open: {e}"),
    };
    let stored = match reg.load() {
        Ok(s) => s,
        Err(e) => panic!("load: {e}"),
    };
    let loaded = t0.elapsed();
    let now = Timestamp(10_000);
    let mut m = match Master::recover(MasterConfig::default(), 2, &stored, now) {
        Ok(m) => m,
        Err(e) => panic!("recover: {e}"),
    };
    let recovered = t0.elapsed();
    let mut sink = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let _ = m.handle(
            now,
            Input::Agent {
                conn: 5_000_000 + i as ConnId,
                msg: agent_msg(id, i, true),
            },
        );
        if i % 500 == 499 {
            pump(&mut m, &mut reg, now, &mut sink);
        }
    }
    pump(&mut m, &mut reg, now, &mut sink);
    let reregistered = t0.elapsed();
    for (f, id) in fws.iter().enumerate() {
        let info = v1::FrameworkInfo {
            id: id.clone(),
            name: format!("fw-{f}"),
            failover_timeout: 86_400.0,
            ..Default::default()
        };
        let _ = m.handle(
            now,
            Input::Subscribe {
                conn: 9_000_000 + f as ConnId,
                info: Box::new(info),
            },
        );
    }
    pump(&mut m, &mut reg, now, &mut sink);
    let resubscribed = t0.elapsed();
    let c0 = Instant::now();
    m.allocate(now);
    let cycle_alone = c0.elapsed();
    let cycle = t0.elapsed();
    let offers = m
        .take_outbox()
        .iter()
        .map(|o| match o {
            Output::ToFramework { event, .. } => match &event.event {
                Some(v1::event::Event::Offers(o)) => o.offers.len(),
                _ => 0,
            },
            _ => 0,
        })
        .sum::<usize>();
    let snap = m.snapshot(now);
    let active = snap
        .agents
        .iter()
        .filter(|a| a.state != "recovering")
        .count();
    println!(
        "registry/restart/{AGENTS}x{FRAMEWORKS}: {} records loaded in {:.0} ms, core recovered at {:.0} ms, {active} agents re-registered at {:.0} ms, {} frameworks re-subscribed at {:.0} ms, first full allocation cycle ({offers} offers, {:.0} ms) done at {:.0} ms",
        stored.record_count(),
        loaded.as_secs_f64() * 1e3,
        recovered.as_secs_f64() * 1e3,
        reregistered.as_secs_f64() * 1e3,
        fws.len(),
        resubscribed.as_secs_f64() * 1e3,
        cycle_alone.as_secs_f64() * 1e3,
        cycle.as_secs_f64() * 1e3,
    );
}

fn main() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let mut mem = MemoryRegistry::new();
    let _ = mem.load();
    let mut redb = match RedbRegistry::open(&dir.path().join("writes")) {
        Ok(r) => r,
        Err(e) => panic!("open: {e}"),
    };
    let _ = redb.load();
    for per_batch in [1, 100, 1_000] {
        let batches = if per_batch == 1 { 500 } else { 100 };
        writes("memory", &mut mem, batches, per_batch, 300);
        writes("redb", &mut redb, batches, per_batch, 300);
    }
    let restart_dir = dir.path().join("restart");
    let t = Instant::now();
    let (ids, fws) = populate(&restart_dir);
    println!(
        "registry/populate: {} agents and {FRAMEWORKS} frameworks registered and persisted in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    restart(&restart_dir, &ids, &fws);
}
