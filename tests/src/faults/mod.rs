//! A deterministic in-process cluster for fault injection: the real master core, simulated
//! agents and frameworks that speak the real protocol messages, and a network of connections
//! on a virtual clock. Every connection is a FIFO (like TCP) with seeded delays; faults break
//! connections (both ends notice, messages in flight are lost) and the peers reconnect.
//!
//! Agents keep their tasks across a broken session (as with per-task executors) and re-register
//! with them; their status updates are retried until acknowledged. Frameworks re-subscribe
//! with their id and reconcile. Everything is driven by one seeded RNG, so a seed replays the
//! same run exactly.

mod agent;
mod framework;
mod net;

use std::collections::BTreeMap;

use std::collections::VecDeque;

use proffer_master_core::core::rng::SplitMix64;
use proffer_master_core::core::{ConnId, Input, Master, MasterConfig, Output, Timestamp};
use proffer_master_core::registry::{MemoryRegistry, Registry, RegistryOp};

pub use agent::SimAgent;
pub use framework::SimFramework;
use net::{Delivery, Net};

/// Fault settings.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Largest one-way delay (ms) of a message.
    pub max_delay_ms: u64,
    /// Chance per tick (every `tick_ms`) that one random agent session breaks.
    pub agent_break: f64,
    /// Chance per tick that one random framework stream breaks.
    pub framework_break: f64,
    /// Faults stop after this time (ms) so the run can settle.
    pub until_ms: u64,
    /// Chance per tick that the master crashes (needs a registry: [`Cluster::with_registry`]);
    /// it restarts from its registry at once.
    pub master_crash: f64,
    /// Chance that a status update or a framework call is delivered twice.
    pub duplicate: f64,
    /// Chance per tick that one agent goes away for 6–10 s (longer than a short ping timeout:
    /// it is marked unreachable, then comes back).
    pub agent_outage: f64,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults {
            max_delay_ms: 0,
            agent_break: 0.0,
            framework_break: 0.0,
            until_ms: 0,
            master_crash: 0.0,
            duplicate: 0.0,
            agent_outage: 0.0,
        }
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The master core under test.
    pub master: Master,
    /// Simulated agents.
    pub agents: Vec<SimAgent>,
    /// Simulated frameworks.
    pub frameworks: Vec<SimFramework>,
    net: Net,
    rng: SplitMix64,
    now: u64,
    next_conn: ConnId,
    /// conn → (is_agent, index)
    owners: BTreeMap<ConnId, (bool, usize)>,
    faults: Faults,
    /// Every delivered message, as text, for determinism checks.
    pub log: Vec<String>,
    /// Connections broken so far.
    pub breaks: u32,
    /// The master's registry (None: the master persists nothing).
    pub registry: Option<MemoryRegistry>,
    /// Persist batches being written: (done at, seq, ops).
    disk: VecDeque<(u64, u64, Vec<RegistryOp>)>,
    config: MasterConfig,
    /// Master crashes so far.
    pub master_crashes: u32,
    /// Broken accounting invariants (`Master::check_accounting`, checked after every step),
    /// with the virtual time they were seen.
    pub violations: Vec<String>,
}

/// Milliseconds between ticks of the master and the peers.
pub const TICK_MS: u64 = 20;

impl Cluster {
    /// A master, `agents` agents of `agent_res`, and frameworks each wanting `tasks` tasks.
    pub fn new(
        seed: u64,
        config: MasterConfig,
        agents: usize,
        agent_res: &str,
        frameworks: &[(usize, &str, u64)],
        faults: Faults,
    ) -> Cluster {
        let mut rng = SplitMix64::new(seed);
        let master = Master::new(config.clone(), rng.next_u64());
        let mut c = Cluster {
            master,
            agents: Vec::new(),
            frameworks: Vec::new(),
            net: Net::default(),
            rng,
            now: 0,
            next_conn: 1,
            owners: BTreeMap::new(),
            faults,
            log: Vec::new(),
            breaks: 0,
            violations: Vec::new(),
            registry: None,
            disk: VecDeque::new(),
            config,
            master_crashes: 0,
        };
        for i in 0..agents {
            c.agents.push(SimAgent::new(&format!("host{i}"), agent_res));
        }
        for (i, (tasks, res, duration)) in frameworks.iter().enumerate() {
            c.frameworks
                .push(SimFramework::new(&format!("fw{i}"), *tasks, res, *duration));
        }
        c
    }

    /// [`Cluster::new`] with a master that persists to an in-memory registry (and so can
    /// crash and recover: `Faults::master_crash`).
    pub fn with_registry(
        seed: u64,
        config: MasterConfig,
        agents: usize,
        agent_res: &str,
        frameworks: &[(usize, &str, u64)],
        faults: Faults,
    ) -> Cluster {
        let mut c = Cluster::new(seed, config, agents, agent_res, frameworks, faults);
        let mut registry = MemoryRegistry::new();
        let stored = registry.load().unwrap_or_default();
        let seed = c.rng.next_u64();
        c.master = Master::recover(c.config.clone(), seed, &stored, Timestamp(0))
            .unwrap_or_else(|e| panic!("recover from an empty registry: {e}"));
        c.registry = Some(registry);
        c.flush_master();
        c
    }

    /// The master crashes: every connection breaks, writes in progress are lost (the first
    /// may have reached the registry without being acknowledged), and a new master recovers
    /// from the registry.
    fn crash_master(&mut self) {
        let Some(registry) = self.registry.as_mut() else {
            return;
        };
        let now = self.now;
        self.master_crashes += 1;
        if let Some((_, _, ops)) = self.disk.pop_front()
            && self.rng.below(2) == 0
        {
            let _ = registry.commit(&ops);
        }
        self.disk.clear();
        let stored = registry.contents();
        let conns: Vec<(ConnId, (bool, usize))> =
            self.owners.iter().map(|(c, o)| (*c, *o)).collect();
        for (conn, (is_agent, i)) in conns {
            self.net.drop_conn(conn);
            let backoff = 100 + self.rng.below(1_500);
            if is_agent && self.agents[i].conn == Some(conn) {
                self.agents[i].disconnected(now + backoff);
            } else if !is_agent && self.frameworks[i].conn == Some(conn) {
                self.frameworks[i].disconnected(now + backoff);
            }
        }
        let seed = self.rng.next_u64();
        self.master = Master::recover(self.config.clone(), seed, &stored, Timestamp(now))
            .unwrap_or_else(|e| panic!("recover at {now} ms: {e}"));
        self.log.push(format!("{now} master crash"));
        self.flush_master();
    }

    /// Commits the persist batches whose write is done, in order, and acknowledges them.
    fn write_disk(&mut self) {
        let now = self.now;
        while self.disk.front().is_some_and(|(t, _, _)| *t <= now) {
            let Some((_, seq, ops)) = self.disk.pop_front() else {
                break;
            };
            if let Some(r) = self.registry.as_mut() {
                let _ = r.commit(&ops);
            }
            let _ = self.master.handle(Timestamp(now), Input::Persisted { seq });
            self.flush_master();
        }
    }

    fn conn(&mut self, is_agent: bool, idx: usize) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.owners.insert(id, (is_agent, idx));
        id
    }

    /// Runs until `limit_ms` or until every framework is done.
    pub fn run(&mut self, limit_ms: u64) {
        while self.now < limit_ms && !self.frameworks.iter().all(SimFramework::done) {
            self.step();
        }
    }

    fn step(&mut self) {
        self.now += TICK_MS;
        let now = self.now;
        // Peers that need a connection open one; peers act on their timers.
        for i in 0..self.agents.len() {
            if self.agents[i].conn.is_none() && self.agents[i].reconnect_at <= now {
                let conn = self.conn(true, i);
                let msg = self.agents[i].connect(conn);
                self.send(conn, now, Delivery::Master(Input::Agent { conn, msg }));
            }
            for msg in self.agents[i].tick(now) {
                if let Some(conn) = self.agents[i].conn {
                    self.send(conn, now, Delivery::Master(Input::Agent { conn, msg }));
                }
            }
        }
        for i in 0..self.frameworks.len() {
            if let Some(conn) = self.frameworks[i].conn {
                for call in self.frameworks[i].tick(now) {
                    self.send(conn, now, Delivery::Master(Input::Call(call)));
                }
            }
            if self.frameworks[i].conn.is_none() && self.frameworks[i].reconnect_at <= now {
                let conn = self.conn(false, i);
                let info = self.frameworks[i].subscribe_info();
                self.frameworks[i].conn = Some(conn);
                self.send(
                    conn,
                    now,
                    Delivery::Master(Input::Subscribe {
                        conn,
                        info: Box::new(info),
                    }),
                );
            }
        }
        // Faults.
        if now < self.faults.until_ms {
            if !self.agents.is_empty() && self.chance(self.faults.agent_break) {
                let i = self.rng.below(self.agents.len() as u64) as usize;
                if let Some(conn) = self.agents[i].conn {
                    self.break_conn(conn);
                }
            }
            if !self.frameworks.is_empty() && self.chance(self.faults.framework_break) {
                let i = self.rng.below(self.frameworks.len() as u64) as usize;
                if let Some(conn) = self.frameworks[i].conn {
                    self.break_conn(conn);
                }
            }
            if !self.agents.is_empty() && self.chance(self.faults.agent_outage) {
                let i = self.rng.below(self.agents.len() as u64) as usize;
                if let Some(conn) = self.agents[i].conn {
                    self.break_conn(conn);
                    let back = now + 6_000 + self.rng.below(4_000);
                    self.agents[i].disconnected(back);
                }
            }
            if self.registry.is_some() && self.chance(self.faults.master_crash) {
                self.crash_master();
            }
        }
        self.write_disk();
        // Deliver what is due, in order.
        while let Some((conn, d)) = self.net.pop_due(now) {
            self.deliver(conn, d);
        }
        self.master.tick(Timestamp(now));
        self.flush_master();
        if let Err(e) = self.master.check_accounting() {
            self.violations.push(format!("at {now} ms: {e}"));
        }
    }

    fn send(&mut self, conn: ConnId, now: u64, d: Delivery) {
        let again = matches!(
            &d,
            Delivery::Master(Input::Call(_))
                | Delivery::Master(Input::Agent {
                    msg: proffer_proto::v1::AgentMessage {
                        msg: Some(proffer_proto::v1::agent_message::Msg::StatusUpdate(_)),
                    },
                    ..
                })
        ) && self.faults.duplicate > 0.0
            && self.chance(self.faults.duplicate);
        if again {
            let delay = self.delay();
            self.net.send(conn, now, delay, d.clone());
        }
        let delay = self.delay();
        self.net.send(conn, now, delay, d);
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.below(1_000_000) as f64) < p * 1_000_000.0
    }

    fn delay(&mut self) -> u64 {
        if self.faults.max_delay_ms == 0 {
            0
        } else {
            self.rng.below(self.faults.max_delay_ms + 1)
        }
    }

    /// Breaks a connection: in-flight messages are lost, both ends are told.
    fn break_conn(&mut self, conn: ConnId) {
        self.breaks += 1;
        self.net.drop_conn(conn);
        let now = self.now;
        let backoff = 100 + self.rng.below(500);
        match self.owners.get(&conn).copied() {
            Some((true, i)) => {
                self.agents[i].disconnected(now + backoff);
                let _ = self
                    .master
                    .handle(Timestamp(now), Input::AgentDisconnected { conn });
            }
            Some((false, i)) => {
                self.frameworks[i].disconnected(now + backoff);
                let _ = self
                    .master
                    .handle(Timestamp(now), Input::FrameworkDisconnected { conn });
            }
            None => {}
        }
        self.log.push(format!("{now} break {conn}"));
        self.flush_master();
    }

    fn deliver(&mut self, conn: ConnId, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Master(input) => {
                self.log.push(format!("{now} ->master {input:?}"));
                let _ = self.master.handle(Timestamp(now), input);
                self.flush_master();
            }
            Delivery::Agent(msg) => {
                self.log.push(format!("{now} ->agent {conn} {msg:?}"));
                let Some((true, i)) = self.owners.get(&conn).copied() else {
                    return;
                };
                if self.agents[i].conn != Some(conn) {
                    return;
                }
                for reply in self.agents[i].handle(now, msg) {
                    self.send(
                        conn,
                        now,
                        Delivery::Master(Input::Agent { conn, msg: reply }),
                    );
                }
            }
            Delivery::Framework(event) => {
                self.log.push(format!("{now} ->framework {conn} {event:?}"));
                let Some((false, i)) = self.owners.get(&conn).copied() else {
                    return;
                };
                if self.frameworks[i].conn != Some(conn) {
                    return;
                }
                for call in self.frameworks[i].handle(event) {
                    // Calls are unary RPCs: they reach the master on the same connection.
                    self.send(conn, now, Delivery::Master(Input::Call(call)));
                }
            }
        }
    }

    fn flush_master(&mut self) {
        for out in self.master.take_outbox() {
            let now = self.now;
            match out {
                Output::ToAgent { conn, msg } => {
                    let d = self.delay();
                    self.net.send(conn, now, d, Delivery::Agent(msg));
                }
                Output::ToFramework { conn, event } => {
                    let d = self.delay();
                    self.net.send(conn, now, d, Delivery::Framework(event));
                }
                Output::Persist { seq, ops } => {
                    if self.registry.is_some() {
                        let d = self.delay();
                        let at = self
                            .disk
                            .back()
                            .map_or(now + d, |(t, _, _)| (*t).max(now + d));
                        self.disk.push_back((at, seq, ops));
                    } else {
                        let _ = self.master.handle(Timestamp(now), Input::Persisted { seq });
                    }
                }
                Output::CloseAgent { conn } | Output::CloseFramework { conn } => {
                    // The master ended the stream: the peer notices and reconnects.
                    self.net.drop_conn(conn);
                    match self.owners.get(&conn).copied() {
                        Some((true, i)) if self.agents[i].conn == Some(conn) => {
                            self.agents[i].disconnected(now + 200)
                        }
                        Some((false, i)) if self.frameworks[i].conn == Some(conn) => {
                            self.frameworks[i].disconnected(now + 200)
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Runs `n` ticks regardless of the frameworks' progress.
    pub fn run_ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Agent `i` disappears for good: its session breaks and it never reconnects.
    pub fn vanish_agent(&mut self, i: usize) {
        self.agents[i].gone = true;
        if let Some(conn) = self.agents[i].conn {
            self.break_conn(conn);
        }
        self.agents[i].disconnected(u64::MAX);
    }

    /// Current virtual time (ms).
    pub fn now(&self) -> u64 {
        self.now
    }
}
