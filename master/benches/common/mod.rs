//! Helpers shared by the registry and failover benchmarks: batches of agent-sized writes, a
//! registry holding 10,000 agents and 1,000 frameworks made through the core, and a master
//! taking that cluster over from its registry (load, recover, re-registrations, first cycle).

use std::time::{Duration, Instant};

use proffer_master::core::{ConnId, Input, Master, MasterConfig, Output, Timestamp};
use proffer_master::registry::{
    CommitStats, Registry, RegistryError, RegistryInfo, RegistryOp, Stored, Table,
};
use proffer_proto::Resources;
use proffer_proto::v1::{self, agent_message::Msg as AIn};

pub const AGENTS: usize = 10_000;
pub const FRAMEWORKS: usize = 1_000;
const AGENT_RES: &str = "cpus:16;mem:65536;disk:100000;ports:[31000-32000]";

/// The value of `r`, or a panic naming `what` (a benchmark has nothing better to do).
pub fn or_die<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Commits `batches` batches of `per_batch` records of ~`bytes` bytes; prints the figures.
pub fn writes(name: &str, reg: &mut dyn Registry, batches: usize, per_batch: usize, bytes: usize) {
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
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 1.0)),
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
            info: Some(Box::new(info)),
            tasks: Vec::new(),
        })
    } else {
        AIn::Register(v1::RegisterAgent {
            info: Some(Box::new(info)),
        })
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

/// Fills `reg` with `AGENTS` agents and `FRAMEWORKS` frameworks, made through the core;
/// returns (agent ids, framework ids).
pub fn populate(reg: &mut dyn Registry) -> (Vec<String>, Vec<String>) {
    let stored = or_die(reg.load(), "load");
    let mut m = or_die(
        Master::recover(MasterConfig::default(), 1, &stored, Timestamp(0)),
        "recover",
    );
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
        pump(&mut m, reg, now, &mut ids);
    }
    let fws = subscribe(&mut m, reg, now, &[], 1_000_000);
    (ids, fws)
}

/// Subscribes `FRAMEWORKS` frameworks, with the ids in `ids` when given (re-subscriptions);
/// returns the ids the master answered with.
fn subscribe(
    m: &mut Master,
    reg: &mut dyn Registry,
    now: Timestamp,
    ids: &[String],
    conn: ConnId,
) -> Vec<String> {
    for f in 0..FRAMEWORKS {
        let info = v1::FrameworkInfo {
            id: ids.get(f).cloned().unwrap_or_default(),
            name: format!("fw-{f}"),
            failover_timeout: 86_400.0,
            ..Default::default()
        };
        let _ = m.handle(
            now,
            Input::Subscribe {
                conn: conn + f as ConnId,
                info: Box::new(info),
            },
        );
    }
    let mut subscribed = Vec::new();
    pump(m, reg, now, &mut subscribed);
    subscribed
}

/// A registry that counts its commits and the time they take.
struct Timed<'a> {
    inner: &'a mut dyn Registry,
    commits: usize,
    spent: Duration,
}

impl Registry for Timed<'_> {
    fn info(&self) -> RegistryInfo {
        self.inner.info()
    }

    fn load(&mut self) -> Result<Stored, RegistryError> {
        self.inner.load()
    }

    fn commit(&mut self, ops: &[RegistryOp]) -> Result<CommitStats, RegistryError> {
        let t = Instant::now();
        let r = self.inner.commit(ops);
        self.commits += 1;
        self.spent += t.elapsed();
        r
    }
}

/// When each phase of a take-over ended, from the caller's start.
#[derive(Debug, Clone, Default)]
pub struct TakeOver {
    pub records: usize,
    /// Keys and values loaded, in bytes.
    pub bytes: usize,
    /// Commits of the re-registrations and re-subscriptions, and the time they took.
    pub commits: usize,
    pub commit_time: Duration,
    pub loaded: Duration,
    pub recovered: Duration,
    pub active: usize,
    pub reregistered: Duration,
    pub resubscribed: Duration,
    pub offers: usize,
    pub cycle_alone: Duration,
    pub done: Duration,
}

/// A master taking the cluster over from `reg` (opened at `t0`): load, recover, the agents in
/// `ids` re-register and the frameworks in `fws` re-subscribe (through the core, no network,
/// their writes committed to `reg`), then the first full allocation cycle.
pub fn take_over(
    reg: &mut dyn Registry,
    t0: Instant,
    seed: u64,
    now: Timestamp,
    ids: &[String],
    fws: &[String],
) -> TakeOver {
    let stored = or_die(reg.load(), "load");
    let mut t = TakeOver {
        records: stored.record_count(),
        loaded: t0.elapsed(),
        bytes: (stored.tables.values().flatten())
            .map(|(k, v)| k.len() + v.len())
            .sum(),
        ..TakeOver::default()
    };
    let mut m = or_die(
        Master::recover(MasterConfig::default(), seed, &stored, now),
        "recover",
    );
    drop(stored);
    t.recovered = t0.elapsed();
    let reg = &mut Timed {
        inner: reg,
        commits: 0,
        spent: Duration::ZERO,
    };
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
            pump(&mut m, reg, now, &mut sink);
        }
    }
    pump(&mut m, reg, now, &mut sink);
    t.reregistered = t0.elapsed();
    let _ = subscribe(&mut m, reg, now, fws, 9_000_000);
    t.resubscribed = t0.elapsed();
    (t.commits, t.commit_time) = (reg.commits, reg.spent);
    let c0 = Instant::now();
    m.allocate(now);
    t.cycle_alone = c0.elapsed();
    t.done = t0.elapsed();
    t.offers = m
        .take_outbox()
        .iter()
        .map(|o| match o {
            Output::ToFramework { event, .. } => match &event.event {
                Some(v1::event::Event::Offers(o)) => o.offers.len(),
                _ => 0,
            },
            _ => 0,
        })
        .sum();
    let snap = m.snapshot(now);
    t.active = snap
        .agents
        .iter()
        .filter(|a| a.state != "recovering")
        .count();
    t
}
